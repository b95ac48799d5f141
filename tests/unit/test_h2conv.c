/* SPDX-License-Identifier: MIT */
/* Unit tests for proto/h2conv.c: HTTP/1.1 <-> HTTP/2 header lists, response heads, chunked. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "keel/err.h"
#include "keel/h2conv.h"
#include "testutil.h"

/* Finds a field in an nv list; returns its value as a NUL-terminated copy in out, or NULL. */
static const char *nv_get(const nghttp2_nv *nv, size_t n, const char *name, char *out,
                          size_t outlen)
{
    for (size_t i = 0; i < n; i++) {
        if (nv[i].namelen == strlen(name) && memcmp(nv[i].name, name, nv[i].namelen) == 0) {
            size_t l = nv[i].valuelen < outlen - 1 ? nv[i].valuelen : outlen - 1;
            memcpy(out, nv[i].value, l);
            out[l] = 0;
            return out;
        }
    }
    return NULL;
}

static int nv_count(const nghttp2_nv *nv, size_t n, const char *name)
{
    int c = 0;
    for (size_t i = 0; i < n; i++)
        c += nv[i].namelen == strlen(name) && memcmp(nv[i].name, name, nv[i].namelen) == 0;
    return c;
}

static int convert(const char *head, unsigned flags, nghttp2_nv *nv, size_t *n, char *scratch,
                   size_t slen)
{
    static struct keel_http1_header hdrs[64];
    struct keel_http1_request req;
    memset(&req, 0, sizeof(req));
    req.headers = hdrs;
    req.num_headers = 64;
    ssize_t hl = keel_http1_parse_request(head, strlen(head), &req, NULL, NULL);
    if (hl < 0)
        return (int)hl;
    return keel_h2conv_request(&req, flags, nv, n, scratch, slen);
}

static void test_request(void)
{
    nghttp2_nv nv[64];
    char scratch[1024], v[256];
    size_t n = 64;
    const char *h = "POST /a/b?c=d HTTP/1.1\r\nHost: Svc.Example:8080\r\nX-Mixed-Case: Val\r\n"
                    "Connection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: 5\r\n"
                    "Proxy-Connection: x\r\nUpgrade: foo\r\nTE: gzip, trailers\r\n"
                    "Content-Length: 3\r\n\r\n";
    CHECK(convert(h, 0, nv, &n, scratch, sizeof(scratch)) == 0);
    CHECK(n >= 4 && nv[0].namelen == 7 && memcmp(nv[0].name, ":method", 7) == 0);
    CHECK(nv_get(nv, n, ":method", v, sizeof(v)) && strcmp(v, "POST") == 0);
    CHECK(nv_get(nv, n, ":scheme", v, sizeof(v)) && strcmp(v, "http") == 0);
    CHECK(nv_get(nv, n, ":authority", v, sizeof(v)) && strcmp(v, "Svc.Example:8080") == 0);
    CHECK(nv_get(nv, n, ":path", v, sizeof(v)) && strcmp(v, "/a/b?c=d") == 0);
    CHECK(nv_get(nv, n, "x-mixed-case", v, sizeof(v)) && strcmp(v, "Val") == 0);
    CHECK(nv_get(nv, n, "content-length", v, sizeof(v)) && strcmp(v, "3") == 0);
    CHECK(nv_get(nv, n, "te", v, sizeof(v)) && strcmp(v, "trailers") == 0);
    CHECK(nv_count(nv, n, "host") == 0 && nv_count(nv, n, "connection") == 0);
    CHECK(nv_count(nv, n, "x-hop") == 0 && nv_count(nv, n, "keep-alive") == 0);
    CHECK(nv_count(nv, n, "proxy-connection") == 0 && nv_count(nv, n, "upgrade") == 0);
    /* every name is lower case */
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < nv[i].namelen; k++)
            CHECK(!(nv[i].name[k] >= 'A' && nv[i].name[k] <= 'Z'));

    /* TE without trailers is dropped; the gRPC flag adds exactly one te: trailers. */
    n = 64;
    CHECK(convert("GET / HTTP/1.1\r\nHost: h\r\nTE: gzip\r\n\r\n", 0, nv, &n, scratch,
                  sizeof(scratch)) == 0);
    CHECK(nv_count(nv, n, "te") == 0);
    n = 64;
    CHECK(convert("GET / HTTP/1.1\r\nHost: h\r\nTE: trailers\r\n\r\n",
                  KEEL_H2CONV_TE_TRAILERS | KEEL_H2CONV_HTTPS, nv, &n, scratch,
                  sizeof(scratch)) == 0);
    CHECK(nv_count(nv, n, "te") == 1);
    CHECK(nv_get(nv, n, ":scheme", v, sizeof(v)) && strcmp(v, "https") == 0);

    /* absolute-form, with and without a path */
    n = 64;
    CHECK(convert("GET http://origin.example/x?y HTTP/1.1\r\nHost: other\r\n\r\n", 0, nv, &n,
                  scratch, sizeof(scratch)) == 0);
    CHECK(nv_get(nv, n, ":authority", v, sizeof(v)) && strcmp(v, "origin.example") == 0);
    CHECK(nv_get(nv, n, ":path", v, sizeof(v)) && strcmp(v, "/x?y") == 0);
    n = 64;
    CHECK(convert("GET http://origin.example?q=1 HTTP/1.1\r\nHost: origin.example\r\n\r\n", 0, nv,
                  &n, scratch, sizeof(scratch)) == 0);
    CHECK(nv_get(nv, n, ":path", v, sizeof(v)) && strcmp(v, "/?q=1") == 0);
    /* OPTIONS * */
    n = 64;
    CHECK(convert("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", 0, nv, &n, scratch, sizeof(scratch)) ==
          0);
    CHECK(nv_get(nv, n, ":path", v, sizeof(v)) && strcmp(v, "*") == 0);
    /* HTTP/1.0 without Host: no :authority */
    n = 64;
    CHECK(convert("GET /x HTTP/1.0\r\n\r\n", 0, nv, &n, scratch, sizeof(scratch)) == 0);
    CHECK(nv_count(nv, n, ":authority") == 0);
    /* CONNECT is not carried */
    n = 64;
    CHECK(convert("CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n", 0, nv, &n, scratch,
                  sizeof(scratch)) == KEEL_ENOTIMPL);
    /* capacity: too few nv slots, too little scratch */
    n = 3;
    CHECK(convert("GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\n\r\n", 0, nv, &n, scratch,
                  sizeof(scratch)) == KEEL_EINVAL);
    n = 64;
    CHECK(convert("GET / HTTP/1.1\r\nHost: h\r\nA-Long-Name: 1\r\n\r\n", 0, nv, &n, scratch, 4) ==
          KEEL_EINVAL);
}

static void test_response_to_nv(void)
{
    struct keel_http1_header hdrs[16];
    struct keel_http1_response resp;
    memset(&resp, 0, sizeof(resp));
    resp.headers = hdrs;
    resp.num_headers = 16;
    const char *h = "HTTP/1.1 404 Nope\r\nContent-Type: text/plain\r\nConnection: close\r\n"
                    "Transfer-Encoding: chunked\r\n\r\n";
    CHECK(keel_http1_parse_response(h, strlen(h), &resp, NULL, NULL) > 0);
    nghttp2_nv nv[16];
    size_t n = 16;
    char scratch[256], st[4], v[64];
    CHECK(keel_h2conv_response(&resp, nv, &n, scratch, sizeof(scratch), st) == 0);
    CHECK(nv_get(nv, n, ":status", v, sizeof(v)) && strcmp(v, "404") == 0);
    CHECK(nv_get(nv, n, "content-type", v, sizeof(v)) && strcmp(v, "text/plain") == 0);
    CHECK(nv_count(nv, n, "connection") == 0 && nv_count(nv, n, "transfer-encoding") == 0);
}

static void add(struct keel_h2conv_head *h, const char *name, const char *value, int want)
{
    int rc = keel_h2conv_head_add(h, (const uint8_t *)name, strlen(name), (const uint8_t *)value,
                                  strlen(value));
    CHECKF(rc == want, "%s: %s -> %d, want %d", name, value, rc, want);
}

static int text_is(const struct keel_h2conv_head *h, const char *want)
{
    return h->len == strlen(want) && memcmp(h->buf, want, h->len) == 0;
}

static void test_head(void)
{
    struct keel_h2conv_head h;
    /* content-length kept, connection-specific fields dropped */
    keel_h2conv_head_init(&h, KEEL_H2CONV_RESPONSE, 4096);
    add(&h, ":status", "200", 0);
    add(&h, "content-type", "text/plain", 0);
    add(&h, "content-length", "5", 0);
    add(&h, "connection", "close", 0);
    add(&h, "x-multi", "a", 0);
    add(&h, "x-multi", "b", 0);
    CHECK(keel_h2conv_head_finish(&h, 0) == 0);
    CHECK(h.body == KEEL_H1_BODY_LENGTH);
    CHECKF(text_is(&h, "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nx-multi: a\r\n"
                       "x-multi: b\r\nContent-Length: 5\r\n\r\n"),
           "%.*s", (int)h.len, h.buf);
    /* reuse after a 1xx */
    keel_h2conv_head_reset(&h);
    add(&h, ":status", "103", 0);
    CHECK(h.status == 103);
    keel_h2conv_head_reset(&h);
    add(&h, ":status", "404", 0);
    CHECK(keel_h2conv_head_finish(&h, 0) == 0);
    CHECK(h.body == KEEL_H1_BODY_CHUNKED);
    CHECKF(text_is(&h, "HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n"), "%.*s",
           (int)h.len, h.buf);
    keel_h2conv_head_free(&h);

    /* F_CHUNKED wins over content-length; END_STREAM gives Content-Length: 0 */
    keel_h2conv_head_init(&h, KEEL_H2CONV_RESPONSE, 4096);
    add(&h, ":status", "200", 0);
    add(&h, "content-length", "10", 0);
    CHECK(keel_h2conv_head_finish(&h, KEEL_H2CONV_F_CHUNKED) == 0 &&
          h.body == KEEL_H1_BODY_CHUNKED);
    keel_h2conv_head_free(&h);
    keel_h2conv_head_init(&h, KEEL_H2CONV_RESPONSE, 4096);
    add(&h, ":status", "200", 0);
    add(&h, "grpc-status", "0", 0);
    CHECK(keel_h2conv_head_finish(&h, KEEL_H2CONV_F_END_STREAM) == 0);
    CHECK(h.body == KEEL_H1_BODY_NONE);
    CHECK(text_is(&h, "HTTP/1.1 200 OK\r\ngrpc-status: 0\r\nContent-Length: 0\r\n\r\n"));
    keel_h2conv_head_free(&h);
    /* HEAD and 304 keep the length, 204 drops it; unknown status has a reason */
    keel_h2conv_head_init(&h, KEEL_H2CONV_RESPONSE, 4096);
    add(&h, ":status", "299", 0);
    add(&h, "content-length", "1234", 0);
    CHECK(keel_h2conv_head_finish(&h, KEEL_H2CONV_F_HEAD) == 0 && h.body == KEEL_H1_BODY_NONE);
    CHECK(text_is(&h, "HTTP/1.1 299 Unknown\r\nContent-Length: 1234\r\n\r\n"));
    keel_h2conv_head_free(&h);
    keel_h2conv_head_init(&h, KEEL_H2CONV_RESPONSE, 4096);
    add(&h, ":status", "204", 0);
    add(&h, "content-length", "0", 0);
    CHECK(keel_h2conv_head_finish(&h, 0) == 0);
    CHECK(text_is(&h, "HTTP/1.1 204 No Content\r\n\r\n"));
    keel_h2conv_head_free(&h);

    /* bad input */
    keel_h2conv_head_init(&h, KEEL_H2CONV_RESPONSE, 4096);
    add(&h, "x-before-status", "1", KEEL_EBADMSG);
    add(&h, ":status", "20", KEEL_EBADMSG);
    add(&h, ":status", "abc", KEEL_EBADMSG);
    add(&h, ":status", "099", KEEL_EBADMSG);
    add(&h, ":path", "/", KEEL_EBADMSG);
    add(&h, ":status", "200", 0);
    add(&h, ":status", "200", KEEL_EBADMSG); /* twice */
    add(&h, "Upper", "1", KEEL_EBADMSG);
    add(&h, "bad name", "1", KEEL_EBADMSG);
    add(&h, "x", "a\r\nInjected: 1", KEEL_EBADMSG);
    CHECK(keel_h2conv_head_add(&h, (const uint8_t *)"x", 1, (const uint8_t *)"a\0b", 3) ==
          KEEL_EBADMSG);
    add(&h, "content-length", "12x", KEEL_EBADMSG);
    add(&h, "content-length", "7", 0);
    add(&h, "content-length", "8", KEEL_EBADMSG); /* disagrees */
    add(&h, "content-length", "7", 0);            /* agrees */
    keel_h2conv_head_free(&h);
    keel_h2conv_head_init(&h, KEEL_H2CONV_RESPONSE, 4096);
    CHECK(keel_h2conv_head_finish(&h, 0) == KEEL_EBADMSG); /* no :status */
    keel_h2conv_head_free(&h);
    /* the bound */
    keel_h2conv_head_init(&h, KEEL_H2CONV_RESPONSE, 64);
    add(&h, ":status", "200", 0);
    add(&h, "x-long", "0123456789012345678901234567890123456789", KEEL_EHDRTOOLARGE);
    keel_h2conv_head_free(&h);

    /* trailers */
    keel_h2conv_head_init(&h, KEEL_H2CONV_TRAILERS, 4096);
    add(&h, ":status", "200", KEEL_EBADMSG);
    add(&h, "grpc-status", "0", 0);
    add(&h, "grpc-message", "ok", 0);
    add(&h, "content-length", "3", 0); /* remembered, not written */
    CHECK(keel_h2conv_head_finish(&h, 0) == 0);
    CHECK(text_is(&h, "grpc-status: 0\r\ngrpc-message: ok\r\n\r\n"));
    keel_h2conv_head_free(&h);
    CHECK(strcmp(keel_http1_reason(503), "Service Unavailable") == 0);
}

/* Decodes a whole chunked body fed in pieces of `step` bytes with max_data limit; collects
 * payload into out. @return last result (DONE on success) and sets *used to input consumed. */
static int unchunk_all(const char *in, size_t len, size_t step, size_t max_data, char *out,
                       size_t *out_len, size_t *used, struct keel_h2conv_unchunk *u)
{
    size_t off = 0, o = 0;
    int rc = KEEL_H2CONV_NEED;
    keel_h2conv_unchunk_init(u);
    size_t avail = step < len ? step : len; /* bytes "arrived" so far */
    for (int guard = 0; guard < 1000000; guard++) {
        size_t cons = 0, doff = 0, dlen = 0;
        rc = keel_h2conv_unchunk_feed(u, in + off, avail - off, max_data, &cons, &doff, &dlen);
        if (rc < 0)
            break;
        if (rc == KEEL_H2CONV_DATA) {
            memcpy(out + o, in + off + doff, dlen);
            o += dlen;
        }
        off += cons;
        if (rc == KEEL_H2CONV_DONE)
            break;
        if (rc == KEEL_H2CONV_NEED) {
            if (avail == len)
                break;
            avail = avail + step < len ? avail + step : len;
        }
    }
    *out_len = o;
    *used = off;
    return rc;
}

static void test_unchunk(void)
{
    const char body[] = "5\r\nhello\r\n1;ext=1\r\n \r\nA\r\n0123456789\r\n"
                        "0\r\nX-Sum: abc\r\nX-Other:  v v \r\n\r\nNEXT";
    size_t len = strlen(body);
    char out[64];
    size_t ol, used;
    struct keel_h2conv_unchunk u;
    /* every split size and every data limit gives the same result */
    for (size_t step = 1; step <= len; step++) {
        for (size_t maxd = 1; maxd <= 12; maxd += 5) {
            int rc = unchunk_all(body, len, step, maxd, out, &ol, &used, &u);
            CHECKF(rc == KEEL_H2CONV_DONE, "step %zu max %zu rc %d", step, maxd, rc);
            CHECKF(ol == 16 && memcmp(out, "hello 0123456789", 16) == 0, "step %zu: %.*s", step,
                   (int)ol, out);
            CHECKF(used == len - 4, "step %zu used %zu", step, used);
            CHECK(u.trailers_len > 0);
            CHECK(u.total == 16);
            nghttp2_nv nv[8];
            size_t n = 8;
            char scratch[64], v[32];
            CHECK(keel_h2conv_trailers(u.trailers, u.trailers_len, nv, &n, scratch,
                                       sizeof(scratch)) == 0);
            CHECK(n == 2);
            CHECK(nv_get(nv, n, "x-sum", v, sizeof(v)) && strcmp(v, "abc") == 0);
            CHECK(nv_get(nv, n, "x-other", v, sizeof(v)) && strcmp(v, "v v") == 0);
            keel_h2conv_unchunk_free(&u);
        }
    }
    /* max_data 0: payload waits, framing is consumed */
    keel_h2conv_unchunk_init(&u);
    size_t cons, doff, dlen;
    CHECK(keel_h2conv_unchunk_feed(&u, "3\r\nabc", 6, 0, &cons, &doff, &dlen) == KEEL_H2CONV_NEED);
    CHECK(cons == 3);
    CHECK(keel_h2conv_unchunk_feed(&u, "abc\r\n0\r\n\r\n", 10, 100, &cons, &doff, &dlen) ==
          KEEL_H2CONV_DATA);
    CHECK(doff == 0 && dlen == 3 && cons == 3);
    CHECK(keel_h2conv_unchunk_feed(&u, "\r\n0\r\n\r\n", 7, 100, &cons, &doff, &dlen) ==
          KEEL_H2CONV_DONE);
    CHECK(cons == 7 && u.trailers_len == 0);
    keel_h2conv_unchunk_free(&u);

    /* bad input, and errors stick */
    static const char *const bad[] = {
        "x\r\n",      /* not hex */
        "\r\n",       /* empty size */
        "3\r\nabcX",  /* no CRLF after payload */
        "3\r\nabc\n", /* bare LF after payload */
        "3\rx",       /* CR not followed by LF */
        "0\r\nbad name: 1\r\n\r\n",
        "0\r\n: novalue\r\n\r\n",
        "0\r\nX: a\rb\r\n\r\n",
        "1000000000000000\r\n", /* too many digits */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        keel_h2conv_unchunk_init(&u);
        int rc = 0;
        size_t off = 0, l = strlen(bad[i]);
        while (off < l) {
            rc = keel_h2conv_unchunk_feed(&u, bad[i] + off, l - off, 100, &cons, &doff, &dlen);
            off += cons;
            if (rc != KEEL_H2CONV_DATA)
                break;
        }
        CHECKF(rc == KEEL_EBADMSG, "bad[%zu] -> %d", i, rc);
        CHECK(keel_h2conv_unchunk_feed(&u, "0\r\n\r\n", 5, 100, &cons, &doff, &dlen) ==
              KEEL_EBADMSG);
        keel_h2conv_unchunk_free(&u);
    }
    /* trailers over the bound */
    keel_h2conv_unchunk_init(&u);
    size_t big = KEEL_H2CONV_MAX_TRAILERS + 100;
    char *t = malloc(big + 16);
    memcpy(t, "0\r\nX: ", 6);
    memset(t + 6, 'a', big);
    int rc = keel_h2conv_unchunk_feed(&u, t, big + 6, 100, &cons, &doff, &dlen);
    CHECK(rc == KEEL_EHDRTOOLARGE);
    free(t);
    keel_h2conv_unchunk_free(&u);

    /* trailer text: forbidden fields dropped, bad lines rejected, capacity */
    nghttp2_nv nv[4];
    size_t n = 4;
    char scratch[64];
    const char *tt = "Content-Length: 3\r\nConnection: x\r\nHost: h\r\nGood: 1\n";
    CHECK(keel_h2conv_trailers(tt, strlen(tt), nv, &n, scratch, sizeof(scratch)) == 0);
    CHECK(n == 1 && nv[0].namelen == 4 && memcmp(nv[0].name, "good", 4) == 0);
    n = 4;
    CHECK(keel_h2conv_trailers("novalue\r\n", 9, nv, &n, scratch, sizeof(scratch)) == KEEL_EBADMSG);
    n = 1;
    CHECK(keel_h2conv_trailers("A: 1\r\nB: 2\r\n", 12, nv, &n, scratch, sizeof(scratch)) ==
          KEEL_EINVAL);
}

int main(void)
{
    test_request();
    test_response_to_nv();
    test_head();
    test_unchunk();
    return TEST_SUMMARY("test_h2conv");
}
