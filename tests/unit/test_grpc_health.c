/* SPDX-License-Identifier: MIT */
/* Unit tests for the in-memory gRPC health check (discovery/grpc_health.c), against a real
 * nghttp2 server session: the request it sends and the verdict on each kind of answer. */
#include <nghttp2/nghttp2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "keel/err.h"
#include "grpc_health.h"
#include "testutil.h"

int main(void);

/* ---- the request message and the response protobuf ---- */

static void test_request_msg(void)
{
    uint8_t b[2048];
    CHECK(keel_grpc_health_request_msg(b, sizeof(b), "") == 5);
    CHECK(memcmp(b, "\0\0\0\0\0", 5) == 0);
    CHECK(keel_grpc_health_request_msg(b, sizeof(b), "api") == 10);
    CHECK(memcmp(b,
                 "\0\0\0\0\x05\x0a\x03"
                 "api",
                 10) == 0);
    char s[201];
    memset(s, 'x', 200);
    s[200] = 0;
    /* 200 needs a two-byte varint: 0xc8 0x01 */
    CHECK(keel_grpc_health_request_msg(b, sizeof(b), s) == 5 + 1 + 2 + 200);
    CHECK(memcmp(b, "\0\0\0\0\xcb\x0a\xc8\x01xx", 10) == 0);
    CHECK(keel_grpc_health_request_msg(b, 12, s) == KEEL_EINVAL); /* does not fit */
    CHECK(keel_grpc_health_request_msg(b, 4, "") == KEEL_EINVAL);
    char big[KEEL_GRPC_HEALTH_SERVICE_MAX + 2];
    memset(big, 'y', sizeof(big) - 1);
    big[sizeof(big) - 1] = 0;
    CHECK(keel_grpc_health_request_msg(b, sizeof(b), big) == KEEL_EINVAL);
}

struct pb_case {
    const char *in;
    size_t len;
    int rc;
    uint64_t status;
};

#define PB(s) s, sizeof(s) - 1

static const struct pb_case pb_cases[] = {
    {PB("\x08\x01"), 0, 1},
    {PB("\x08\x02"), 0, 2},
    {PB("\x08\x03"), 0, 3},
    {PB(""), 0, 0},                                             /* proto3 default: UNKNOWN */
    {PB("\x08\x01\x08\x02"), 0, 2},                             /* the last one wins */
    {PB("\x10\x05\x08\x01"), 0, 1},                             /* unknown varint field skipped */
    {PB("\x1a\x02zz\x08\x01"), 0, 1},                           /* unknown bytes field */
    {PB("\x21\x01\x02\x03\x04\x05\x06\x07\x08\x08\x01"), 0, 1}, /* fixed64 */
    {PB("\x2d\x01\x02\x03\x04\x08\x01"), 0, 1},                 /* fixed32 */
    {PB("\x08\x81\x01"), 0, 129},                               /* two-byte varint */
    {PB("\x08"), KEEL_EBADMSG, 0},                              /* value missing */
    {PB("\x08\x81"), KEEL_EBADMSG, 0},                          /* varint cut */
    {PB("\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"), KEEL_EBADMSG, 0}, /* > 10 bytes */
    {PB("\x0a\x01\x01"), KEEL_EBADMSG, 0},                                     /* status as bytes */
    {PB("\x1a\x05zz"), KEEL_EBADMSG, 0},   /* length past the end */
    {PB("\x21\x01\x02"), KEEL_EBADMSG, 0}, /* fixed64 cut */
    {PB("\x0b\x0c"), KEEL_EBADMSG, 0},     /* group */
    {PB("\x0f"), KEEL_EBADMSG, 0},         /* wire type 7 */
    {PB("\x00\x01"), KEEL_EBADMSG, 0},     /* field 0 */
};

static void test_parse_response(void)
{
    for (size_t i = 0; i < sizeof(pb_cases) / sizeof(pb_cases[0]); i++) {
        const struct pb_case *tc = &pb_cases[i];
        uint64_t st = 99;
        int rc = keel_grpc_health_parse_response((const uint8_t *)tc->in, tc->len, &st);
        CHECKF(rc == tc->rc, "case %zu: rc %d", i, rc);
        if (rc == 0 && tc->rc == 0)
            CHECKF(st == tc->status, "case %zu: status %llu", i, (unsigned long long)st);
    }
}

/* ---- a fake gRPC server: an nghttp2 server session in memory ---- */

struct hdr {
    char name[64];
    char value[128];
};

enum { RESP_NORMAL, RESP_RST, RESP_GOAWAY };

struct srv_spec {
    const char *name;
    const char *const *headers; /* name, value, ..., NULL (the response HEADERS) */
    const char *data;           /* NULL: no DATA frame */
    size_t data_len;
    const char *const *trailers; /* NULL: the HEADERS end the stream (trailers-only) */
    int how;
    enum keel_grpc_health_state want;
    const char *reason;
};

struct srv {
    nghttp2_session *s;
    struct hdr hdrs[16];
    size_t n_hdrs;
    uint8_t body[2048];
    size_t body_len;
    int req_end_stream;
    int settings_acks;
    int32_t sid;
    const struct srv_spec *spec;
    size_t data_off;
};

static int srv_on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t nl,
                         const uint8_t *value, size_t vl, uint8_t flags, void *ud)
{
    struct srv *v = ud;
    if (v->n_hdrs < 16 && nl < 64 && vl < 128) {
        memcpy(v->hdrs[v->n_hdrs].name, name, nl);
        v->hdrs[v->n_hdrs].name[nl] = 0;
        memcpy(v->hdrs[v->n_hdrs].value, value, vl);
        v->hdrs[v->n_hdrs].value[vl] = 0;
        v->n_hdrs++;
    }
    v->sid = f->hd.stream_id;
    return 0;
}

static int srv_on_data(nghttp2_session *s, uint8_t flags, int32_t sid, const uint8_t *data,
                       size_t len, void *ud)
{
    struct srv *v = ud;
    if (len <= sizeof(v->body) - v->body_len) {
        memcpy(v->body + v->body_len, data, len);
        v->body_len += len;
    }
    return 0;
}

static int srv_on_frame(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    struct srv *v = ud;
    if ((f->hd.type == NGHTTP2_DATA || f->hd.type == NGHTTP2_HEADERS) &&
        (f->hd.flags & NGHTTP2_FLAG_END_STREAM))
        v->req_end_stream = 1;
    if (f->hd.type == NGHTTP2_SETTINGS && (f->hd.flags & NGHTTP2_FLAG_ACK))
        v->settings_acks++;
    return 0;
}

static void srv_init(struct srv *v)
{
    memset(v, 0, sizeof(*v));
    nghttp2_session_callbacks *cb;
    nghttp2_session_callbacks_new(&cb);
    nghttp2_session_callbacks_set_on_header_callback(cb, srv_on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, srv_on_data);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, srv_on_frame);
    nghttp2_session_server_new(&v->s, cb, v);
    nghttp2_session_callbacks_del(cb);
    nghttp2_submit_settings(v->s, NGHTTP2_FLAG_NONE, NULL, 0);
}

static const char *srv_hdr(const struct srv *v, const char *name)
{
    for (size_t i = 0; i < v->n_hdrs; i++)
        if (strcmp(v->hdrs[i].name, name) == 0)
            return v->hdrs[i].value;
    return NULL;
}

/* All the client has to say, into the server. */
static void pump_client_to_server(struct keel_grpc_health *g, struct srv *v)
{
    const uint8_t *p;
    size_t n;
    for (int guard = 0; guard < 100 && (n = keel_grpc_health_output(g, &p)) > 0; guard++) {
        ssize_t rv = nghttp2_session_mem_recv(v->s, p, n);
        CHECKF(rv == (ssize_t)n, "server mem_recv: %zd (%s)", rv,
               rv < 0 ? nghttp2_strerror((int)rv) : "short");
        keel_grpc_health_sent(g, n);
    }
}

/* Everything the server has queued, appended to out. */
static size_t drain_server(struct srv *v, uint8_t *out, size_t cap)
{
    size_t len = 0;
    for (;;) {
        const uint8_t *p;
        ssize_t n = nghttp2_session_mem_send(v->s, &p);
        if (n <= 0)
            break;
        if ((size_t)n > cap - len)
            n = (ssize_t)(cap - len);
        memcpy(out + len, p, (size_t)n);
        len += (size_t)n;
    }
    return len;
}

static void fill_nv(nghttp2_nv *nv, size_t *n, const char *const *kv)
{
    *n = 0;
    for (size_t i = 0; kv && kv[i]; i += 2) {
        nv[*n] = (nghttp2_nv){(uint8_t *)kv[i], (uint8_t *)kv[i + 1], strlen(kv[i]),
                              strlen(kv[i + 1]), NGHTTP2_NV_FLAG_NONE};
        (*n)++;
    }
}

static ssize_t srv_read(nghttp2_session *s, int32_t sid, uint8_t *buf, size_t len, uint32_t *flags,
                        nghttp2_data_source *src, void *ud)
{
    struct srv *v = ud;
    const struct srv_spec *sp = v->spec;
    size_t n = sp->data_len - v->data_off;
    if (n > len)
        n = len;
    memcpy(buf, sp->data + v->data_off, n);
    v->data_off += n;
    if (v->data_off == sp->data_len) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        if (sp->trailers) {
            nghttp2_nv nv[8];
            size_t nn;
            fill_nv(nv, &nn, sp->trailers);
            *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
            nghttp2_submit_trailer(s, sid, nv, nn);
        }
    }
    return (ssize_t)n;
}

/* The server's answer to a fresh check, as bytes (with its SETTINGS and ACK). */
static size_t server_answer(const struct srv_spec *sp, uint8_t *out, size_t cap)
{
    struct keel_grpc_health *g;
    struct srv v;
    srv_init(&v);
    v.spec = sp;
    CHECK(keel_grpc_health_new(&g, "h.test", "", 1000) == 0);
    pump_client_to_server(g, &v);
    keel_grpc_health_free(g);
    if (sp->how == RESP_RST) {
        nghttp2_submit_rst_stream(v.s, NGHTTP2_FLAG_NONE, v.sid, NGHTTP2_INTERNAL_ERROR);
    } else if (sp->how == RESP_GOAWAY) {
        nghttp2_submit_goaway(v.s, NGHTTP2_FLAG_NONE, 0, NGHTTP2_ENHANCE_YOUR_CALM, NULL, 0);
    } else {
        nghttp2_nv nv[8];
        size_t nn;
        fill_nv(nv, &nn, sp->headers);
        if (sp->data) {
            nghttp2_data_provider dp = {.source = {.ptr = &v}, .read_callback = srv_read};
            nghttp2_submit_response(v.s, v.sid, nv, nn, &dp);
        } else if (sp->trailers) {
            /* headers, then trailers, no DATA */
            nghttp2_submit_headers(v.s, NGHTTP2_FLAG_NONE, v.sid, NULL, nv, nn, NULL);
            nghttp2_nv tv[8];
            size_t tn;
            fill_nv(tv, &tn, sp->trailers);
            nghttp2_submit_trailer(v.s, v.sid, tv, tn);
        } else {
            nghttp2_submit_response(v.s, v.sid, nv, nn, NULL); /* trailers-only */
        }
    }
    size_t len = drain_server(&v, out, cap);
    nghttp2_session_del(v.s);
    return len;
}

/* A fresh check, its request taken, then in[] fed in pieces cut at the given positions. */
static enum keel_grpc_health_state run_check(const uint8_t *in, size_t len, size_t cut1,
                                             size_t cut2, char *reason, size_t rcap)
{
    struct keel_grpc_health *g;
    if (keel_grpc_health_new(&g, "h.test", "", 1000) != 0)
        return KEEL_GRPC_HEALTH_PENDING;
    const uint8_t *p;
    size_t n = keel_grpc_health_output(g, &p);
    keel_grpc_health_sent(g, n);
    keel_grpc_health_feed(g, in, cut1);
    keel_grpc_health_feed(g, in + cut1, cut2 - cut1);
    enum keel_grpc_health_state st = keel_grpc_health_feed(g, in + cut2, len - cut2);
    snprintf(reason, rcap, "%s", keel_grpc_health_reason(g));
    keel_grpc_health_free(g);
    return st;
}

static const char *const H200[] = {":status", "200", "content-type", "application/grpc", NULL};
static const char *const T0[] = {"grpc-status", "0", NULL};
static const char *const T12[] = {":status",     "200", "content-type", "application/grpc",
                                  "grpc-status", "12",  "grpc-message", "Method not found!",
                                  NULL};
static const char *const T12_BARE[] = {":status", "200", "grpc-status", "12", NULL};
static const char *const H503[] = {":status", "503", NULL};
static const char *const HHTML[] = {":status", "200", "content-type", "text/html", NULL};
static const char *const T_NONE[] = {"x-other", "1", NULL};

#define MSG(s) s, sizeof(s) - 1
static const char big_data[300] = {0, 0, 0, 0x01, 0x27};

static const struct srv_spec cases[] = {
    {"serving", H200, MSG("\0\0\0\0\x02\x08\x01"), T0, RESP_NORMAL, KEEL_GRPC_HEALTH_SERVING,
     "grpc SERVING"},
    {"not serving", H200, MSG("\0\0\0\0\x02\x08\x02"), T0, RESP_NORMAL, KEEL_GRPC_HEALTH_FAILED,
     "grpc NOT_SERVING"},
    {"service unknown", H200, MSG("\0\0\0\0\x02\x08\x03"), T0, RESP_NORMAL, KEEL_GRPC_HEALTH_FAILED,
     "grpc SERVICE_UNKNOWN"},
    {"unknown", H200, MSG("\0\0\0\0\x02\x08\x00"), T0, RESP_NORMAL, KEEL_GRPC_HEALTH_FAILED,
     "grpc UNKNOWN"},
    {"empty message", H200, MSG("\0\0\0\0\0"), T0, RESP_NORMAL, KEEL_GRPC_HEALTH_FAILED,
     "grpc UNKNOWN"},
    {"other status", H200, MSG("\0\0\0\0\x02\x08\x07"), T0, RESP_NORMAL, KEEL_GRPC_HEALTH_FAILED,
     "grpc serving status 7"},
    {"serving, unknown field", H200, MSG("\0\0\0\0\x04\x10\x05\x08\x01"), T0, RESP_NORMAL,
     KEEL_GRPC_HEALTH_SERVING, "grpc SERVING"},
    {"unimplemented", T12, NULL, 0, NULL, RESP_NORMAL, KEEL_GRPC_HEALTH_FAILED,
     "grpc-status 12: Method not found!"},
    {"unimplemented, bare", T12_BARE, NULL, 0, NULL, RESP_NORMAL, KEEL_GRPC_HEALTH_FAILED,
     "grpc-status 12"},
    {"missing message", H200, NULL, 0, T0, RESP_NORMAL, KEEL_GRPC_HEALTH_FAILED,
     "grpc response without a message"},
    {"no grpc-status", H200, MSG("\0\0\0\0\x02\x08\x01"), T_NONE, RESP_NORMAL,
     KEEL_GRPC_HEALTH_FAILED, "grpc response without grpc-status"},
    {"http 503", H503, NULL, 0, NULL, RESP_NORMAL, KEEL_GRPC_HEALTH_FAILED, "HTTP 503"},
    {"not grpc", HHTML, MSG("\0\0\0\0\x02\x08\x01"), T0, RESP_NORMAL, KEEL_GRPC_HEALTH_FAILED,
     "not a gRPC response (content-type \"text/html\")"},
    {"two messages", H200, MSG("\0\0\0\0\x02\x08\x01\0\0\0\0\x02\x08\x01"), T0, RESP_NORMAL,
     KEEL_GRPC_HEALTH_FAILED, "grpc response with more than one message"},
    {"truncated", H200, MSG("\0\0\0\0\x05\x08\x01"), T0, RESP_NORMAL, KEEL_GRPC_HEALTH_FAILED,
     "grpc response message truncated or malformed"},
    {"short prefix", H200, MSG("\0\0\0"), T0, RESP_NORMAL, KEEL_GRPC_HEALTH_FAILED,
     "grpc response message truncated"},
    {"compressed", H200, MSG("\x01\0\0\0\x02\x08\x01"), T0, RESP_NORMAL, KEEL_GRPC_HEALTH_FAILED,
     "compressed grpc response (not asked for)"},
    {"bad protobuf", H200, MSG("\0\0\0\0\x01\x08"), T0, RESP_NORMAL, KEEL_GRPC_HEALTH_FAILED,
     "malformed HealthCheckResponse"},
    {"too large", H200, big_data, sizeof(big_data), T0, RESP_NORMAL, KEEL_GRPC_HEALTH_FAILED,
     "grpc response larger than 256 bytes"},
    {"reset", NULL, NULL, 0, NULL, RESP_RST, KEEL_GRPC_HEALTH_FAILED,
     "grpc stream reset: INTERNAL_ERROR"},
    {"goaway", NULL, NULL, 0, NULL, RESP_GOAWAY, KEEL_GRPC_HEALTH_FAILED,
     "GOAWAY from the server: ENHANCE_YOUR_CALM"},
};

static void test_responses(void)
{
    static uint8_t in[8192];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct srv_spec *sp = &cases[i];
        size_t len = server_answer(sp, in, sizeof(in));
        CHECKF(len > 0 && len < sizeof(in), "%s: %zu bytes", sp->name, len);
        char reason[128];
        enum keel_grpc_health_state st = run_check(in, len, 0, 0, reason, sizeof(reason));
        CHECKF(st == sp->want && strcmp(reason, sp->reason) == 0, "%s: %s \"%s\", want %s \"%s\"",
               sp->name, keel_grpc_health_state_str(st), reason,
               keel_grpc_health_state_str(sp->want), sp->reason);
        /* The verdict does not depend on how the bytes arrive. */
        int bad = 0;
        for (size_t a = 0; a <= len && !bad; a++) {
            char r2[128];
            enum keel_grpc_health_state s2 = run_check(in, len, a, a, r2, sizeof(r2));
            if (s2 != st || strcmp(r2, reason) != 0) {
                bad = 1;
                CHECKF(0, "%s: split at %zu: %s \"%s\"", sp->name, a,
                       keel_grpc_health_state_str(s2), r2);
            }
        }
        /* three pieces, a few shapes */
        for (size_t a = 1; a < len && !bad; a += 7) {
            char r2[128];
            size_t b = a + (len - a) / 2;
            enum keel_grpc_health_state s2 = run_check(in, len, a, b, r2, sizeof(r2));
            if (s2 != st || strcmp(r2, reason) != 0) {
                bad = 1;
                CHECKF(0, "%s: split at %zu,%zu: %s \"%s\"", sp->name, a, b,
                       keel_grpc_health_state_str(s2), r2);
            }
        }
        CHECKF(!bad, "%s: all splits agree", sp->name);
    }
}

/* ---- the request as a server sees it ---- */

static void test_request_on_the_wire(void)
{
    struct keel_grpc_health *g;
    struct srv v;
    CHECK(keel_grpc_health_new(&g, "10.0.0.7:9090", "api.v1.Users", 1500) == 0);
    CHECK(keel_grpc_health_state(g) == KEEL_GRPC_HEALTH_PENDING);
    CHECK(strcmp(keel_grpc_health_reason(g), "") == 0);
    srv_init(&v);
    pump_client_to_server(g, &v);
    CHECK(v.sid == 1);
    CHECK(v.req_end_stream);
    const char *want[][2] = {
        {":method", "POST"},
        {":scheme", "http"},
        {":path", "/grpc.health.v1.Health/Check"},
        {":authority", "10.0.0.7:9090"},
        {"content-type", "application/grpc"},
        {"te", "trailers"},
        {"grpc-timeout", "1500m"},
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        const char *got = srv_hdr(&v, want[i][0]);
        CHECKF(got && strcmp(got, want[i][1]) == 0, "%s: %s", want[i][0], got ? got : "(none)");
    }
    /* one gRPC message, not compressed, HealthCheckRequest{service: "api.v1.Users"} */
    static const uint8_t body[] = "\0\0\0\0\x0e\x0a\x0c"
                                  "api.v1.Users";
    CHECKF(v.body_len == sizeof(body) - 1 && memcmp(v.body, body, v.body_len) == 0,
           "body %zu bytes", v.body_len);

    /* The server's SETTINGS get an ACK from the check. */
    uint8_t out[1024];
    size_t n = drain_server(&v, out, sizeof(out));
    CHECK(keel_grpc_health_feed(g, out, n) == KEEL_GRPC_HEALTH_PENDING);
    CHECK(v.settings_acks == 0);
    pump_client_to_server(g, &v);
    CHECK(v.settings_acks == 1);

    /* Then the answer. */
    nghttp2_nv nv[2];
    size_t nn;
    fill_nv(nv, &nn, H200);
    static const struct srv_spec sp = {"x", H200, MSG("\0\0\0\0\x02\x08\x01"), T0, RESP_NORMAL,
                                       0,   NULL};
    v.spec = &sp;
    nghttp2_data_provider dp = {.source = {.ptr = &v}, .read_callback = srv_read};
    nghttp2_submit_response(v.s, v.sid, nv, nn, &dp);
    n = drain_server(&v, out, sizeof(out));
    CHECK(keel_grpc_health_feed(g, out, n) == KEEL_GRPC_HEALTH_SERVING);
    CHECK(strcmp(keel_grpc_health_reason(g), "grpc SERVING") == 0);
    /* input after the verdict changes nothing */
    CHECK(keel_grpc_health_feed(g, (const uint8_t *)"junk", 4) == KEEL_GRPC_HEALTH_SERVING);
    CHECK(keel_grpc_health_eof(g) == KEEL_GRPC_HEALTH_SERVING);
    keel_grpc_health_free(g);
    nghttp2_session_del(v.s);

    /* the whole server: no service field; no timeout: no grpc-timeout */
    CHECK(keel_grpc_health_new(&g, "h", "", 0) == 0);
    srv_init(&v);
    pump_client_to_server(g, &v);
    CHECK(srv_hdr(&v, "grpc-timeout") == NULL);
    CHECK(v.body_len == 5 && memcmp(v.body, "\0\0\0\0\0", 5) == 0);
    keel_grpc_health_free(g);
    nghttp2_session_del(v.s);
}

static void test_bad_arguments(void)
{
    struct keel_grpc_health *g = NULL;
    CHECK(keel_grpc_health_new(&g, "", "", 100) == KEEL_EINVAL);
    CHECK(keel_grpc_health_new(&g, "a b", "", 100) == KEEL_EINVAL);
    CHECK(keel_grpc_health_new(&g, "a\r\nx: y", "", 100) == KEEL_EINVAL);
    char big[KEEL_GRPC_HEALTH_SERVICE_MAX + 2];
    memset(big, 'y', sizeof(big) - 1);
    big[sizeof(big) - 1] = 0;
    CHECK(keel_grpc_health_new(&g, "h", big, 100) == KEEL_EINVAL);
    CHECK(g == NULL);
}

#define NOT_H2 "not an HTTP/2 server (no SETTINGS frame first)"

/* Garbage, HTTP/1.x and closed connections. */
static void test_garbage_and_eof(void)
{
    char reason[128];
    static const char http1[] = "HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n";
    size_t len = sizeof(http1) - 1;
    for (size_t a = 0; a <= len; a++) {
        enum keel_grpc_health_state st =
            run_check((const uint8_t *)http1, len, a, a, reason, sizeof(reason));
        if (!CHECKF(st == KEEL_GRPC_HEALTH_FAILED &&
                        strcmp(reason, "not an HTTP/2 server (it answered HTTP/1.x)") == 0,
                    "split %zu: %s", a, reason))
            break;
    }
    /* Not SETTINGS first */
    static const uint8_t ping[] = {0, 0, 8, 6, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8};
    enum keel_grpc_health_state st = run_check(ping, sizeof(ping), 0, 0, reason, sizeof(reason));
    CHECKF(st == KEEL_GRPC_HEALTH_FAILED && strcmp(reason, NOT_H2) == 0, "%s", reason);
    /* A frame far larger than allowed */
    static const uint8_t huge[] = {0xff, 0xff, 0xff, 4, 0, 0, 0, 0, 0, 0};
    st = run_check(huge, sizeof(huge), 0, 0, reason, sizeof(reason));
    CHECKF(st == KEEL_GRPC_HEALTH_FAILED && strcmp(reason, NOT_H2) == 0, "%s", reason);
    /* An "HTTP" that is no status line: left to nghttp2 */
    static const uint8_t htt[] = "HTTX/1.1 200\r\n\r\n";
    st = run_check(htt, sizeof(htt) - 1, 0, 0, reason, sizeof(reason));
    CHECKF(st == KEEL_GRPC_HEALTH_FAILED && strcmp(reason, NOT_H2) == 0, "%s", reason);

    /* A valid SETTINGS, then a frame larger than allowed */
    static const uint8_t later[] = {0, 0, 0, 4, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 1};
    for (size_t a = 0; a <= sizeof(later); a++) {
        st = run_check(later, sizeof(later), a, a, reason, sizeof(reason));
        if (!CHECKF(st == KEEL_GRPC_HEALTH_FAILED &&
                        strncmp(reason, "HTTP/2 connection error", 23) == 0,
                    "split %zu: %s", a, reason))
            break;
    }

    /* EOF: without anything, after the headers, after a prefix of "HTTP/" */
    struct keel_grpc_health *g;
    const uint8_t *p;
    CHECK(keel_grpc_health_new(&g, "h", "", 100) == 0);
    keel_grpc_health_sent(g, keel_grpc_health_output(g, &p));
    CHECK(keel_grpc_health_eof(g) == KEEL_GRPC_HEALTH_FAILED);
    CHECK(strcmp(keel_grpc_health_reason(g), "connection closed without an answer") == 0);
    keel_grpc_health_free(g);

    uint8_t in[4096];
    static const struct srv_spec sp = {
        "serving", H200, MSG("\0\0\0\0\x02\x08\x01"), T0, RESP_NORMAL, 0, NULL};
    size_t n = server_answer(&sp, in, sizeof(in));
    /* cut before the trailers' END_STREAM: all but the last frame (trailers, 9 + a few) */
    CHECK(keel_grpc_health_new(&g, "h", "", 100) == 0);
    keel_grpc_health_sent(g, keel_grpc_health_output(g, &p));
    CHECK(keel_grpc_health_feed(g, in, n - 3) == KEEL_GRPC_HEALTH_PENDING);
    CHECK(keel_grpc_health_eof(g) == KEEL_GRPC_HEALTH_FAILED);
    CHECKF(strcmp(keel_grpc_health_reason(g), "connection closed before the grpc-status") == 0,
           "%s", keel_grpc_health_reason(g));
    keel_grpc_health_free(g);

    CHECK(keel_grpc_health_new(&g, "h", "", 100) == 0);
    keel_grpc_health_sent(g, keel_grpc_health_output(g, &p));
    CHECK(keel_grpc_health_feed(g, (const uint8_t *)"HTT", 3) == KEEL_GRPC_HEALTH_PENDING);
    CHECK(keel_grpc_health_eof(g) == KEEL_GRPC_HEALTH_FAILED);
    CHECK(strcmp(keel_grpc_health_reason(g), "connection closed before a grpc response") == 0);
    keel_grpc_health_free(g);

    /* A server that talks and talks (PINGs) never gets past the input bound. */
    CHECK(keel_grpc_health_new(&g, "h", "", 100) == 0);
    keel_grpc_health_sent(g, keel_grpc_health_output(g, &p));
    static const uint8_t settings[] = {0, 0, 0, 4, 0, 0, 0, 0, 0};
    CHECK(keel_grpc_health_feed(g, settings, sizeof(settings)) == KEEL_GRPC_HEALTH_PENDING);
    uint8_t pings[17 * 100];
    for (size_t i = 0; i < 100; i++)
        memcpy(pings + 17 * i, ping, 17);
    for (int i = 0; i < 100 && keel_grpc_health_state(g) == KEEL_GRPC_HEALTH_PENDING; i++) {
        keel_grpc_health_feed(g, pings, sizeof(pings));
        keel_grpc_health_sent(g, keel_grpc_health_output(g, &p));
    }
    CHECK(keel_grpc_health_state(g) == KEEL_GRPC_HEALTH_FAILED);
    CHECKF(strstr(keel_grpc_health_reason(g), "without a verdict") ||
               strncmp(keel_grpc_health_reason(g), "HTTP/2 ", 7) == 0,
           "%s", keel_grpc_health_reason(g));
    keel_grpc_health_free(g);
}

static void test_state_str(void)
{
    CHECK(strcmp(keel_grpc_health_state_str(KEEL_GRPC_HEALTH_PENDING), "pending") == 0);
    CHECK(strcmp(keel_grpc_health_state_str(KEEL_GRPC_HEALTH_SERVING), "serving") == 0);
    CHECK(strcmp(keel_grpc_health_state_str(KEEL_GRPC_HEALTH_FAILED), "failed") == 0);
}

int main(void)
{
    test_request_msg();
    test_parse_response();
    test_request_on_the_wire();
    test_bad_arguments();
    test_responses();
    test_garbage_and_eof();
    test_state_str();
    return TEST_SUMMARY("test_grpc_health");
}
