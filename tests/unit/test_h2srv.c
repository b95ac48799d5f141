/* SPDX-License-Identifier: MIT */
/* Unit tests of the HTTP/2 server session: a real nghttp2 client talks to it in memory. */
#include <nghttp2/nghttp2.h>
#include <stdlib.h>
#include <string.h>
#include "keel/err.h"
#include "keel/h2srv.h"
#include "testutil.h"

/* ---- the server side's owner ----------------------------------------------------------- */

struct owner {
    struct keel_h2srv_stream *st;
    int requests;
    int closed;
    uint32_t close_code;
    char req[8192];
    size_t req_len;
};

static void *o_request(void *ud, struct keel_h2srv_stream *st)
{
    struct owner *o = ud;
    o->st = st;
    o->requests++;
    return o;
}

static void o_nop(void *ud, void *sud)
{
    (void)ud;
    (void)sud;
}

static void o_close(void *ud, void *sud, uint32_t code)
{
    struct owner *o = ud;
    (void)sud;
    o->closed++;
    o->close_code = code;
    o->st = NULL;
}

static const struct keel_h2srv_cbs cbs = {o_request, o_nop, o_nop, o_close};

/* ---- the client ------------------------------------------------------------------------ */

struct client {
    nghttp2_session *s;
    int status;
    char body[1 << 21];
    size_t body_len;
    char hdrs[4096]; /* "name: value\n" of every header and trailer received */
    size_t hdrs_len;
    int ended;
    uint32_t rst_code;
    int rst;
    int goaway;
    uint32_t goaway_code;
};

static int c_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *n, size_t nl,
                    const uint8_t *v, size_t vl, uint8_t flags, void *ud)
{
    struct client *c = ud;
    (void)s;
    (void)f;
    (void)flags;
    if (nl == 7 && !memcmp(n, ":status", 7))
        c->status = atoi((const char *)v);
    if (c->hdrs_len + nl + vl + 3 < sizeof(c->hdrs)) {
        memcpy(c->hdrs + c->hdrs_len, n, nl);
        c->hdrs_len += nl;
        memcpy(c->hdrs + c->hdrs_len, ": ", 2);
        c->hdrs_len += 2;
        memcpy(c->hdrs + c->hdrs_len, v, vl);
        c->hdrs_len += vl;
        c->hdrs[c->hdrs_len++] = '\n';
        c->hdrs[c->hdrs_len] = 0;
    }
    return 0;
}

static int c_data(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *d, size_t len,
                  void *ud)
{
    struct client *c = ud;
    (void)s;
    (void)flags;
    (void)id;
    if (c->body_len + len <= sizeof(c->body)) {
        memcpy(c->body + c->body_len, d, len);
        c->body_len += len;
    }
    return 0;
}

static int c_frame(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    struct client *c = ud;
    (void)s;
    if ((f->hd.type == NGHTTP2_HEADERS || f->hd.type == NGHTTP2_DATA) &&
        (f->hd.flags & NGHTTP2_FLAG_END_STREAM))
        c->ended = 1;
    if (f->hd.type == NGHTTP2_RST_STREAM) {
        c->rst++;
        c->rst_code = f->rst_stream.error_code;
    }
    if (f->hd.type == NGHTTP2_GOAWAY) {
        c->goaway = 1;
        c->goaway_code = f->goaway.error_code;
    }
    return 0;
}

static void client_init(struct client *c)
{
    memset(c, 0, sizeof(*c));
    nghttp2_session_callbacks *cb;
    nghttp2_session_callbacks_new(&cb);
    nghttp2_session_callbacks_set_on_header_callback(cb, c_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, c_data);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, c_frame);
    nghttp2_session_client_new(&c->s, cb, c);
    nghttp2_session_callbacks_del(cb);
    nghttp2_submit_settings(c->s, NGHTTP2_FLAG_NONE, NULL, 0);
}

/* Moves bytes both ways until neither side has anything to say. @return server recv rc. */
static ssize_t pump(struct client *c, struct keel_h2srv *h)
{
    ssize_t rc = 0;
    for (int round = 0; round < 64; round++) {
        int moved = 0;
        const uint8_t *d;
        ssize_t n;
        while ((n = nghttp2_session_mem_send(c->s, &d)) > 0) {
            moved = 1;
            if (rc >= 0)
                rc = keel_h2srv_recv(h, d, (size_t)n);
        }
        uint8_t buf[16384];
        while ((n = keel_h2srv_send(h, buf, sizeof(buf))) > 0) {
            moved = 1;
            nghttp2_session_mem_recv(c->s, buf, (size_t)n);
        }
        if (!moved)
            break;
    }
    return rc;
}

static void pull_all(struct owner *o)
{
    if (!o->st)
        return;
    o->req_len +=
        keel_h2srv_stream_pull(o->st, o->req + o->req_len, sizeof(o->req) - 1 - o->req_len);
    o->req[o->req_len] = 0;
}

static struct keel_h2srv *server(struct owner *o, size_t max_header_list)
{
    memset(o, 0, sizeof(*o));
    struct keel_h2srv_cfg cfg = {.max_concurrent_streams = 10, .max_header_list = max_header_list};
    struct keel_h2srv *h = keel_h2srv_new(&cfg, &cbs, o);
    keel_h2srv_set_now(h, 1000); /* the client session sends the preface itself */
    return h;
}

#define NV(n, v)                                                                                   \
    {                                                                                              \
        (uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, sizeof(v) - 1, 0                            \
    }

/* A GET with split cookies becomes one HTTP/1.1 head; a response written one byte at a time
 * arrives whole, with its fields lower-cased and connection-specific ones dropped. */
static void test_get(void)
{
    struct owner o;
    struct client c;
    struct keel_h2srv *h = server(&o, 0);
    client_init(&c);
    nghttp2_nv nv[] = {NV(":method", "GET"),  NV(":scheme", "http"), NV(":authority", "a.test"),
                       NV(":path", "/x?y=1"), NV("cookie", "a=1"),   NV("accept", "*/*"),
                       NV("cookie", "b=2")};
    int32_t id = nghttp2_submit_request(c.s, NULL, nv, 7, NULL, NULL);
    CHECK(pump(&c, h) >= 0);
    CHECK(o.requests == 1);
    pull_all(&o);
    CHECKF(!strcmp(o.req, "GET /x?y=1 HTTP/1.1\r\nhost: a.test\r\naccept: */*\r\ncookie: a=1; "
                          "b=2\r\n\r\n"),
           "%s", o.req);
    CHECK(keel_h2srv_stream_req_ended(o.st));
    const char *resp = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: keep-alive\r\n"
                       "Content-Length: 5\r\n\r\nhello";
    for (size_t i = 0; resp[i]; i++)
        CHECK(keel_h2srv_stream_write(o.st, resp + i, 1) == 1);
    CHECK(keel_h2srv_stream_resp_ended(o.st));
    pump(&c, h);
    CHECK(c.status == 200);
    CHECKF(c.body_len == 5 && !memcmp(c.body, "hello", 5), "%zu", c.body_len);
    CHECKF(strstr(c.hdrs, "content-type: text/plain\n") && !strstr(c.hdrs, "connection"), "%s",
           c.hdrs);
    CHECK(c.ended);
    CHECK(o.closed == 1 && o.close_code == 0);
    (void)id;
    nghttp2_session_del(c.s);
    keel_h2srv_free(h);
}

static ssize_t body_src(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
                        nghttp2_data_source *src, void *ud)
{
    (void)s;
    (void)id;
    (void)ud;
    const char *msg = src->ptr;
    size_t n = strlen(msg);
    if (n > len)
        n = len;
    memcpy(buf, msg, n);
    *flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
    return (ssize_t)n;
}

/* A body without content-length is chunked, request trailers become the trailer section; a
 * chunked response with trailers comes back as DATA plus trailing HEADERS. */
static void test_chunked_trailers(void)
{
    struct owner o;
    struct client c;
    struct keel_h2srv *h = server(&o, 0);
    client_init(&c);
    nghttp2_nv nv[] = {NV(":method", "POST"),
                       NV(":scheme", "http"),
                       NV(":authority", "g"),
                       NV(":path", "/svc/M"),
                       NV("content-type", "application/grpc"),
                       NV("te", "trailers"),
                       NV("grpc-timeout", "250m")};
    nghttp2_data_provider prd = {.source.ptr = "hello", .read_callback = body_src};
    int32_t id = nghttp2_submit_request(c.s, NULL, nv, 7, &prd, NULL);
    pump(&c, h);
    nghttp2_nv tr[] = {NV("x-req-trailer", "t1")};
    nghttp2_submit_trailer(c.s, id, tr, 1);
    pump(&c, h);
    CHECK(o.requests == 1 && o.st);
    if (!o.st)
        goto out;
    CHECK(keel_h2srv_stream_grpc(o.st));
    CHECK(keel_h2srv_stream_deadline_ms(o.st) == 250);
    pull_all(&o);
    CHECKF(strstr(o.req, "transfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nx-req-trailer: "
                         "t1\r\n\r\n") != NULL,
           "%s", o.req);
    CHECK(strstr(o.req, "te: trailers\r\n") != NULL);
    const char *resp =
        "HTTP/1.1 200 OK\r\nContent-Type: application/grpc\r\nTransfer-Encoding: "
        "chunked\r\n\r\n4\r\nabcd\r\n2\r\nef\r\n0\r\nGrpc-Status: 0\r\ngrpc-message: "
        "ok\r\n\r\n";
    size_t len = strlen(resp), off = 0;
    for (int i = 0; off < len && i < 1000; i++) {
        size_t k = len - off < 3 ? len - off : 3;
        ssize_t n = keel_h2srv_stream_write(o.st, resp + off, k);
        CHECK(n > 0);
        if (n <= 0)
            break;
        off += (size_t)n;
    }
    CHECK(keel_h2srv_stream_resp_ended(o.st));
    pump(&c, h);
    CHECK(c.status == 200);
    CHECKF(c.body_len == 6 && !memcmp(c.body, "abcdef", 6), "%zu", c.body_len);
    CHECKF(strstr(c.hdrs, "grpc-status: 0\ngrpc-message: ok\n") != NULL, "%s", c.hdrs);
    CHECK(c.ended);
out:
    nghttp2_session_del(c.s);
    keel_h2srv_free(h);
}

/* keel's own 503 to a gRPC request: a trailers-only answer with grpc-status 14. */
static void test_grpc_error(void)
{
    struct owner o;
    struct client c;
    struct keel_h2srv *h = server(&o, 0);
    client_init(&c);
    nghttp2_nv nv[] = {NV(":method", "POST"), NV(":scheme", "http"), NV(":authority", "g"),
                       NV(":path", "/svc/M"), NV("content-type", "application/grpc+proto")};
    nghttp2_submit_request(c.s, NULL, nv, 5, NULL, NULL);
    pump(&c, h);
    CHECK(o.st != NULL);
    if (o.st) {
        pull_all(&o);
        const char *resp =
            "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 3\r\nX-Keel-Reason: "
            "no eligible endpoint in cluster\r\n\r\nxyz";
        CHECK(keel_h2srv_stream_write(o.st, resp, strlen(resp)) == (ssize_t)strlen(resp));
    }
    pump(&c, h);
    CHECK(c.status == 200);
    CHECKF(strstr(c.hdrs, "grpc-status: 14\n") && strstr(c.hdrs, "grpc-message: no eligible"), "%s",
           c.hdrs);
    CHECK(c.body_len == 0 && c.ended);
    nghttp2_session_del(c.s);
    keel_h2srv_free(h);
}

/* A response the owner abandons half-way is reset, not ended as if complete. */
static void test_abandoned(void)
{
    struct owner o;
    struct client c;
    struct keel_h2srv *h = server(&o, 0);
    client_init(&c);
    nghttp2_nv nv[] = {NV(":method", "GET"), NV(":scheme", "http"), NV(":authority", "a"),
                       NV(":path", "/")};
    nghttp2_submit_request(c.s, NULL, nv, 4, NULL, NULL);
    pump(&c, h);
    const char *resp = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc";
    CHECK(o.st && keel_h2srv_stream_write(o.st, resp, strlen(resp)) == (ssize_t)strlen(resp));
    if (o.st)
        keel_h2srv_stream_detach(o.st);
    pump(&c, h);
    CHECK(c.rst == 1 && c.rst_code == NGHTTP2_INTERNAL_ERROR);
    CHECK(!c.ended);
    nghttp2_session_del(c.s);
    keel_h2srv_free(h);
}

/* Rapid reset: open and cancel streams faster than the bucket allows -> GOAWAY, failure. */
static void test_rapid_reset(void)
{
    struct owner o;
    struct client c;
    struct keel_h2srv *h = server(&o, 0);
    client_init(&c);
    nghttp2_nv nv[] = {NV(":method", "GET"), NV(":scheme", "http"), NV(":authority", "a"),
                       NV(":path", "/")};
    ssize_t rc = 0;
    for (int i = 0; i < 400 && rc >= 0; i++) {
        int32_t id = nghttp2_submit_request(c.s, NULL, nv, 4, NULL, NULL);
        rc = pump(&c, h);
        nghttp2_submit_rst_stream(c.s, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL);
        if (rc >= 0)
            rc = pump(&c, h);
    }
    CHECK(rc == KEEL_EBADMSG);
    CHECK(keel_h2srv_abuse(h) == KEEL_H2_ABUSE_RESET);
    CHECK(c.goaway && c.goaway_code == NGHTTP2_ENHANCE_YOUR_CALM);
    nghttp2_session_del(c.s);
    keel_h2srv_free(h);
}

/* A header list over the limit ends the connection (HPACK bombs decode to this). */
static void test_header_limit(void)
{
    struct owner o;
    struct client c;
    struct keel_h2srv *h = server(&o, 1024);
    client_init(&c);
    static char big[2000];
    memset(big, 'v', sizeof(big) - 1);
    nghttp2_nv nv[] = {NV(":method", "GET"),
                       NV(":scheme", "http"),
                       NV(":authority", "a"),
                       NV(":path", "/"),
                       {(uint8_t *)"x-big", (uint8_t *)big, 5, sizeof(big) - 1, 0}};
    nghttp2_submit_request(c.s, NULL, nv, 5, NULL, NULL);
    CHECK(pump(&c, h) == KEEL_EBADMSG);
    CHECK(keel_h2srv_abuse(h) == KEEL_H2_ABUSE_HEADERS);
    CHECK(o.requests == 0);
    CHECK(c.goaway);
    nghttp2_session_del(c.s);
    keel_h2srv_free(h);
}

static ssize_t deferred(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
                        nghttp2_data_source *src, void *ud)
{
    (void)s, (void)id, (void)buf, (void)len, (void)flags, (void)src, (void)ud;
    return NGHTTP2_ERR_DEFERRED;
}

/* The window opens only as the owner pulls: unpulled bytes hold the client back. */
static void test_flow_control(void)
{
    struct owner o;
    struct client c;
    struct keel_h2srv *h = server(&o, 0);
    client_init(&c);
    nghttp2_nv nv[] = {NV(":method", "PUT"), NV(":scheme", "http"), NV(":authority", "a"),
                       NV(":path", "/"), NV("content-length", "1000000")};
    nghttp2_data_provider later = {.read_callback = deferred};
    nghttp2_submit_request(c.s, NULL, nv, 5, &later, NULL);
    pump(&c, h);
    if (!CHECK(o.st != NULL))
        goto out;
    int32_t sid = 1;
    static uint8_t chunk[16384];
    size_t sent = 0;
    for (int i = 0; i < 100; i++) {
        int32_t win = nghttp2_session_get_stream_remote_window_size(c.s, sid);
        if (win <= 0)
            break;
        size_t k = (size_t)win < sizeof(chunk) ? (size_t)win : sizeof(chunk);
        /* Raw DATA frames through the client session would need a provider; build them. */
        uint8_t fr[9 + sizeof(chunk)];
        fr[0] = (uint8_t)(k >> 16);
        fr[1] = (uint8_t)(k >> 8);
        fr[2] = (uint8_t)k;
        fr[3] = 0; /* DATA */
        fr[4] = 0;
        fr[5] = fr[6] = fr[7] = 0;
        fr[8] = (uint8_t)sid;
        memcpy(fr + 9, chunk, k);
        if (keel_h2srv_recv(h, fr, 9 + k) < 0)
            break;
        sent += k;
        /* Tell the client session what it "sent" so its window view shrinks. */
        if (sent >= 256 * 1024)
            break;
    }
    CHECKF(sent == 256 * 1024, "%zu", sent);
    /* Nothing pulled yet: no WINDOW_UPDATE for the stream may go out. */
    uint8_t buf[4096];
    ssize_t n = keel_h2srv_send(h, buf, sizeof(buf));
    int stream_wu = 0;
    for (ssize_t off = 0; off + 9 <= n;) {
        size_t flen = ((size_t)buf[off] << 16) | ((size_t)buf[off + 1] << 8) | buf[off + 2];
        uint32_t fsid = ((uint32_t)buf[off + 5] << 24 | (uint32_t)buf[off + 6] << 16 |
                         (uint32_t)buf[off + 7] << 8 | buf[off + 8]) &
                        0x7fffffffu;
        if (buf[off + 3] == 8 && fsid == 1)
            stream_wu++;
        off += 9 + (ssize_t)flen;
    }
    CHECK(stream_wu == 0);
    CHECK(keel_h2srv_stream_readable(o.st) > 256 * 1024);
    /* Pulling reopens the window: a WINDOW_UPDATE for the stream goes out, for no more than
     * the payload pulled. */
    static char sink[200000];
    CHECK(keel_h2srv_stream_pull(o.st, sink, sizeof(sink)) == sizeof(sink));
    n = keel_h2srv_send(h, buf, sizeof(buf));
    uint32_t inc = 0;
    for (ssize_t off = 0; off + 9 <= n;) {
        size_t flen = ((size_t)buf[off] << 16) | ((size_t)buf[off + 1] << 8) | buf[off + 2];
        if (buf[off + 3] == 8 && buf[off + 8] == 1 && flen == 4)
            inc = ((uint32_t)buf[off + 9] << 24 | (uint32_t)buf[off + 10] << 16 |
                   (uint32_t)buf[off + 11] << 8 | buf[off + 12]);
        off += 9 + (ssize_t)flen;
    }
    CHECKF(inc > 0 && inc <= 200000, "%u", inc);
out:
    nghttp2_session_del(c.s);
    keel_h2srv_free(h);
}

/* ---- raw frames (what an nghttp2 client would never send) ------------------------------ */

static const char PREFACE[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/* Appends one frame header + payload to buf at *len. */
static void raw_frame(uint8_t *buf, size_t *len, uint8_t type, uint8_t flags, uint32_t id,
                      const uint8_t *p, size_t plen)
{
    uint8_t *o = buf + *len;
    o[0] = (uint8_t)(plen >> 16);
    o[1] = (uint8_t)(plen >> 8);
    o[2] = (uint8_t)plen;
    o[3] = type;
    o[4] = flags;
    o[5] = (uint8_t)(id >> 24);
    o[6] = (uint8_t)(id >> 16);
    o[7] = (uint8_t)(id >> 8);
    o[8] = (uint8_t)id;
    if (plen)
        memcpy(o + 9, p, plen);
    *len += 9 + plen;
}

/* GET / (HPACK: :method GET, :path /, :scheme http, :authority "a" without indexing). */
static const uint8_t GET_BLOCK[] = {0x82, 0x84, 0x86, 0x01, 0x01, 'a'};
static const uint8_t TRAILER_BLOCK[] = {0x00, 0x01, 'x', 0x01, 'y'}; /* x: y */

/* Feeds the preface, an empty SETTINGS and HEADERS frames on the given stream ids (END_STREAM
 * as given); returns the last recv result and the GOAWAY error code sent (-1: none). */
static ssize_t raw_headers(struct keel_h2srv *h, const uint32_t *ids, const uint8_t *ends,
                           const int *trailer, size_t n, long *goaway_code)
{
    uint8_t in[4096];
    size_t len = 0;
    memcpy(in, PREFACE, 24);
    len = 24;
    raw_frame(in, &len, NGHTTP2_SETTINGS, 0, 0, NULL, 0);
    for (size_t i = 0; i < n; i++) {
        uint8_t fl = NGHTTP2_FLAG_END_HEADERS | (ends[i] ? NGHTTP2_FLAG_END_STREAM : 0);
        if (trailer[i])
            raw_frame(in, &len, NGHTTP2_HEADERS, fl, ids[i], TRAILER_BLOCK, sizeof(TRAILER_BLOCK));
        else
            raw_frame(in, &len, NGHTTP2_HEADERS, fl, ids[i], GET_BLOCK, sizeof(GET_BLOCK));
    }
    ssize_t rc = keel_h2srv_recv(h, in, len);
    static uint8_t out[1 << 16];
    ssize_t on = keel_h2srv_send(h, out, sizeof(out));
    *goaway_code = -1;
    for (size_t off = 0; on > 0 && off + 9 <= (size_t)on;) {
        size_t fl = ((size_t)out[off] << 16) | ((size_t)out[off + 1] << 8) | out[off + 2];
        if (out[off + 3] == NGHTTP2_GOAWAY && fl >= 8 && off + 9 + 8 <= (size_t)on)
            *goaway_code = ((long)out[off + 13] << 24) | (out[off + 14] << 16) |
                           (out[off + 15] << 8) | out[off + 16];
        off += 9 + fl;
    }
    return rc;
}

/* RFC 9113 5.1.1: HEADERS on a lower stream id that was skipped (implicitly closed) is a
 * connection error PROTOCOL_ERROR (h2spec http2/5.1.1/2); trailers on a lower stream that is
 * still open are not. */
static void test_skipped_stream_id(void)
{
    struct owner o;
    long code;
    struct keel_h2srv *h = server(&o, 0);
    uint32_t ids1[] = {5, 3};
    uint8_t ends1[] = {1, 1};
    int trl1[] = {0, 0};
    CHECK(raw_headers(h, ids1, ends1, trl1, 2, &code) == KEEL_EBADMSG);
    CHECKF(code == NGHTTP2_PROTOCOL_ERROR, "%ld", code);
    CHECK(o.requests == 1);
    keel_h2srv_free(h);

    h = server(&o, 0);
    uint32_t ids2[] = {1, 7, 3};
    uint8_t ends2[] = {1, 1, 1};
    int trl2[] = {0, 0, 0};
    CHECK(raw_headers(h, ids2, ends2, trl2, 3, &code) == KEEL_EBADMSG);
    CHECKF(code == NGHTTP2_PROTOCOL_ERROR, "%ld", code);
    keel_h2srv_free(h);

    /* Stream 1 stays open while 3 starts; its trailers then end it: no error. */
    h = server(&o, 0);
    uint32_t ids3[] = {1, 3, 1};
    uint8_t ends3[] = {0, 1, 1};
    int trl3[] = {0, 0, 1};
    CHECK(raw_headers(h, ids3, ends3, trl3, 3, &code) > 0);
    CHECKF(code == -1, "%ld", code);
    CHECK(o.requests == 2);
    keel_h2srv_free(h);
}

/* A long chunked response (chunk sizes like the h2 upstream's, up to 64 KiB) written in
 * random pieces while the client reads at its own pace arrives byte-exact, with trailers. */
static void test_chunked_stress(void)
{
    struct owner o;
    struct client c;
    struct keel_h2srv *h = server(&o, 0);
    client_init(&c);
    nghttp2_nv nv[] = {NV(":method", "GET"), NV(":scheme", "http"), NV(":authority", "a"),
                       NV(":path", "/")};
    nghttp2_submit_request(c.s, NULL, nv, 4, NULL, NULL);
    pump(&c, h);
    if (!CHECK(o.st != NULL))
        goto out;
    static char resp[1100000];
    static char want[sizeof(c.body)];
    size_t rl = 0, wl = 0;
    uint64_t rng = 12345;
    rl += (size_t)snprintf(resp, sizeof(resp),
                           "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n");
    while (wl < 1000000) {
        rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
        size_t n = (size_t)(rng >> 33) % 20000 + 1;
        if (wl + n > 1000000)
            n = 1000000 - wl;
        rl += (size_t)snprintf(resp + rl, sizeof(resp) - rl, "%zx\r\n", n);
        for (size_t i = 0; i < n; i++)
            want[wl + i] = resp[rl + i] = (char)('a' + (wl + i) % 26);
        rl += n;
        wl += n;
        memcpy(resp + rl, "\r\n", 2);
        rl += 2;
    }
    rl += (size_t)snprintf(resp + rl, sizeof(resp) - rl, "0\r\ngrpc-status: 0\r\n\r\n");
    size_t off = 0;
    for (int round = 0; round < 100000 && off < rl; round++) {
        rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
        size_t k = (size_t)(rng >> 33) % 9000 + 1;
        if (k > rl - off)
            k = rl - off;
        ssize_t n = keel_h2srv_stream_write(o.st, resp + off, k);
        if (!CHECK(n >= 0))
            break;
        off += (size_t)n;
        pump(&c, h); /* the client reads and acknowledges what it got */
    }
    pump(&c, h);
    CHECKF(off == rl, "%zu of %zu", off, rl);
    CHECKF(c.body_len == wl && !memcmp(c.body, want, wl), "%zu of %zu", c.body_len, wl);
    CHECKF(strstr(c.hdrs, "grpc-status: 0\n") != NULL, "%s", c.hdrs);
    CHECK(c.ended);
out:
    nghttp2_session_del(c.s);
    keel_h2srv_free(h);
}

int main(void)
{
    test_chunked_stress();
    test_get();
    test_chunked_trailers();
    test_grpc_error();
    test_abandoned();
    test_rapid_reset();
    test_header_limit();
    test_flow_control();
    test_skipped_stream_id();
    return TEST_SUMMARY("test_h2srv");
}
