/* SPDX-License-Identifier: MIT */
/* Unit tests for proto/http1.c: request/response heads, framing rules, chunked decoding. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "keel/err.h"
#include "keel/http1.h"
#include "testutil.h"

int main(void);

#define NOCL (-1)
#define MAXH 8
#define S(lit) lit, sizeof(lit) - 1

enum {
    F_CHUNKED = KEEL_H1_F_CHUNKED,
    F_CLOSE = KEEL_H1_F_CONN_CLOSE,
    F_KA = KEEL_H1_F_CONN_KEEPALIVE,
    F_CUPG = KEEL_H1_F_CONN_UPGRADE,
    F_UPG = KEEL_H1_F_UPGRADE,
    F_EXP = KEEL_H1_F_EXPECT_CONTINUE,
    F_HOST = KEEL_H1_F_HAS_HOST,
    F_TE = KEEL_H1_F_HAS_TE,
    F_CL = KEEL_H1_F_HAS_CL,
};

struct hv {
    const char *name, *value;
};

static const struct keel_http1_limits lim_tiny_line = {32, 0, 0};
static const struct keel_http1_limits lim_tiny_head = {0, 64, 0};
static const struct keel_http1_limits lim_3hdrs = {0, 0, 3};
static const struct keel_http1_limits lim_head_lt_line = {100, 20, 0};
static const struct keel_http1_limits lim_head_exact = {100, 27, 0};

/* Copies bytes into an exact-size allocation so ASan catches any read past the end. */
static char *dup_exact(const char *s, size_t n)
{
    char *p = malloc(n ? n : 1);
    if (!p)
        abort();
    memcpy(p, s, n);
    return p;
}

static int str_eq(const char *p, size_t n, const char *want)
{
    return want && strlen(want) == n && memcmp(p, want, n) == 0;
}

static int in_buf(const char *p, size_t n, const char *buf, size_t len)
{
    return p >= buf && p + n <= buf + len;
}

/* ---------------------------------------------------------------- requests */

struct req_ok {
    const char *head; /* the request head: consumed must be exactly its length */
    const char *tail; /* bytes after the head in the same buffer (body, next request) */
    const char *method, *target;
    int minor;
    int64_t cl;
    int host_index;
    unsigned flags;
    enum keel_http1_body body;
    const struct keel_http1_limits *lim;
    size_t cap; /* header array capacity, 0 = MAXH */
    struct hv h[MAXH + 1];
};

static const struct req_ok req_ok_cases[] = {
    {"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n",
     "",
     "GET",
     "/",
     1,
     NOCL,
     0,
     F_HOST,
     KEEL_H1_BODY_NONE,
     NULL,
     0,
     {{"Host", "example.com"}}},
    {"GET /a?b=c&d HTTP/1.1\nHost: h\n\n",
     "",
     "GET",
     "/a?b=c&d",
     1,
     NOCL,
     0,
     F_HOST,
     KEEL_H1_BODY_NONE,
     NULL,
     0,
     {{"Host", "h"}}},
    {"\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n",
     "",
     "GET",
     "/",
     1,
     NOCL,
     0,
     F_HOST,
     KEEL_H1_BODY_NONE,
     NULL,
     0,
     {{"Host", "h"}}},
    {"\nGET /x HTTP/1.0\r\n\r\n",
     "",
     "GET",
     "/x",
     0,
     NOCL,
     -1,
     0,
     KEEL_H1_BODY_NONE,
     NULL,
     0,
     {{NULL, NULL}}},
    {"POST /upload HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n",
     "hello",
     "POST",
     "/upload",
     1,
     5,
     0,
     F_HOST | F_CL,
     KEEL_H1_BODY_LENGTH,
     NULL,
     0,
     {{"Host", "h"}, {"Content-Length", "5"}}},
    {"POST / HTTP/1.1\r\nContent-Length: 5, 5\r\nHost: h\r\n\r\n",
     "hello",
     "POST",
     "/",
     1,
     5,
     1,
     F_HOST | F_CL,
     KEEL_H1_BODY_LENGTH,
     NULL,
     0,
     {{"Content-Length", "5, 5"}, {"Host", "h"}}},
    {"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 7\r\ncontent-length:   7 \r\n\r\n",
     "1234567",
     "POST",
     "/",
     1,
     7,
     0,
     F_HOST | F_CL,
     KEEL_H1_BODY_LENGTH,
     NULL,
     0,
     {{"Host", "h"}, {"Content-Length", "7"}, {"content-length", "7"}}},
    {"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n",
     "",
     "POST",
     "/",
     1,
     0,
     0,
     F_HOST | F_CL,
     KEEL_H1_BODY_NONE,
     NULL,
     0,
     {{"Host", "h"}, {"Content-Length", "0"}}},
    {"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0004611686018427387904\r\n\r\n",
     "",
     "POST",
     "/",
     1,
     (int64_t)1 << 62,
     0,
     F_HOST | F_CL,
     KEEL_H1_BODY_LENGTH,
     NULL,
     0,
     {{"Host", "h"}, {"Content-Length", "0004611686018427387904"}}},
    {"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",
     "0\r\n\r\n",
     "POST",
     "/c",
     1,
     NOCL,
     0,
     F_HOST | F_TE | F_CHUNKED,
     KEEL_H1_BODY_CHUNKED,
     NULL,
     0,
     {{"Host", "h"}, {"Transfer-Encoding", "chunked"}}},
    {"PUT /c HTTP/1.1\r\ntransfer-encoding: \t CHUNKED \t\r\nHOST: h\r\n\r\n",
     "",
     "PUT",
     "/c",
     1,
     NOCL,
     1,
     F_HOST | F_TE | F_CHUNKED,
     KEEL_H1_BODY_CHUNKED,
     NULL,
     0,
     {{"transfer-encoding", "CHUNKED"}, {"HOST", "h"}}},
    {"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, keep-alive\r\nUpgrade: websocket\r\n\r\n",
     "",
     "GET",
     "/ws",
     1,
     NOCL,
     0,
     F_HOST | F_CUPG | F_KA | F_UPG,
     KEEL_H1_BODY_NONE,
     NULL,
     0,
     {{"Host", "h"}, {"Connection", "Upgrade, keep-alive"}, {"Upgrade", "websocket"}}},
    {"GET / HTTP/1.1\r\nConnection: foo\r\nHost: h\r\nconnection: ,CLOSE ,\r\n\r\n",
     "",
     "GET",
     "/",
     1,
     NOCL,
     1,
     F_HOST | F_CLOSE,
     KEEL_H1_BODY_NONE,
     NULL,
     0,
     {{"Connection", "foo"}, {"Host", "h"}, {"connection", ",CLOSE ,"}}},
    {"GET / HTTP/1.1\r\nHost: h\r\nConnection: closed, xkeep-alive\r\n\r\n",
     "",
     "GET",
     "/",
     1,
     NOCL,
     0,
     F_HOST,
     KEEL_H1_BODY_NONE,
     NULL,
     0,
     {{"Host", "h"}, {"Connection", "closed, xkeep-alive"}}},
    {"PUT /f HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\nContent-Length: 3\r\n\r\n",
     "abc",
     "PUT",
     "/f",
     1,
     3,
     0,
     F_HOST | F_EXP | F_CL,
     KEEL_H1_BODY_LENGTH,
     NULL,
     0,
     {{"Host", "h"}, {"Expect", "100-Continue"}, {"Content-Length", "3"}}},
    {"GET http://example.com/x?y HTTP/1.1\r\nHost: example.com\r\n\r\n",
     "",
     "GET",
     "http://example.com/x?y",
     1,
     NOCL,
     0,
     F_HOST,
     KEEL_H1_BODY_NONE,
     NULL,
     0,
     {{"Host", "example.com"}}},
    {"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
     "",
     "CONNECT",
     "example.com:443",
     1,
     NOCL,
     0,
     F_HOST,
     KEEL_H1_BODY_NONE,
     NULL,
     0,
     {{"Host", "example.com:443"}}},
    {"CONNECT [::1]:8443 HTTP/1.1\r\nHost: [::1]:8443\r\n\r\n",
     "",
     "CONNECT",
     "[::1]:8443",
     1,
     NOCL,
     0,
     F_HOST,
     KEEL_H1_BODY_NONE,
     NULL,
     0,
     {{"Host", "[::1]:8443"}}},
    {"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",
     "",
     "OPTIONS",
     "*",
     1,
     NOCL,
     0,
     F_HOST,
     KEEL_H1_BODY_NONE,
     NULL,
     0,
     {{"Host", "h"}}},
    {"OPTIONS /o HTTP/1.1\r\nHost: h\r\n\r\n",
     "",
     "OPTIONS",
     "/o",
     1,
     NOCL,
     0,
     F_HOST,
     KEEL_H1_BODY_NONE,
     NULL,
     0,
     {{"Host", "h"}}},
    {"GET / HTTP/1.1\r\nX-Empty:\r\nHost: h\r\nX-Blank: \t \r\n\r\n",
     "",
     "GET",
     "/",
     1,
     NOCL,
     1,
     F_HOST,
     KEEL_H1_BODY_NONE,
     NULL,
     0,
     {{"X-Empty", ""}, {"Host", "h"}, {"X-Blank", ""}}},
    {"GET / HTTP/1.1\r\nHost: h\r\nX-Bin: caf\xc3\xa9 \xff\x80\r\nX-A: a \t b\t\r\n\r\n",
     "",
     "GET",
     "/",
     1,
     NOCL,
     0,
     F_HOST,
     KEEL_H1_BODY_NONE,
     NULL,
     0,
     {{"Host", "h"}, {"X-Bin", "caf\xc3\xa9 \xff\x80"}, {"X-A", "a \t b"}}},
    {"M-SEARCH /x HTTP/1.1\r\nHost: h\r\n\r\n",
     "",
     "M-SEARCH",
     "/x",
     1,
     NOCL,
     0,
     F_HOST,
     KEEL_H1_BODY_NONE,
     NULL,
     0,
     {{"Host", "h"}}},
    {"PROPFIND /dav HTTP/1.1\r\nHost: h\r\n\r\n",
     "",
     "PROPFIND",
     "/dav",
     1,
     NOCL,
     0,
     F_HOST,
     KEEL_H1_BODY_NONE,
     NULL,
     0,
     {{"Host", "h"}}},
    {"GET / HTTP/1.1\r\nHost:\r\n\r\n",
     "",
     "GET",
     "/",
     1,
     NOCL,
     0,
     F_HOST,
     KEEL_H1_BODY_NONE,
     NULL,
     0,
     {{"Host", ""}}},
    {"GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n",
     "",
     "GET",
     "/",
     1,
     NOCL,
     0,
     F_HOST,
     KEEL_H1_BODY_NONE,
     NULL,
     0,
     {{"Host", "[::1]:8080"}}},
    {"GET /a HTTP/1.1\r\nHost: x\r\n\r\n",
     "GET /b HTTP/1.1\r\nHost: x\r\n\r\n",
     "GET",
     "/a",
     1,
     NOCL,
     0,
     F_HOST,
     KEEL_H1_BODY_NONE,
     NULL,
     0,
     {{"Host", "x"}}},
    {"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n",
     "helloGET /b HTTP/1.1\r\nHost: x\r\n\r\n",
     "POST",
     "/a",
     1,
     5,
     0,
     F_HOST | F_CL,
     KEEL_H1_BODY_LENGTH,
     NULL,
     0,
     {{"Host", "x"}, {"Content-Length", "5"}}},
    {"GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\n\r\n",
     "",
     "GET",
     "/",
     1,
     NOCL,
     0,
     F_HOST,
     KEEL_H1_BODY_NONE,
     &lim_3hdrs,
     0,
     {{"Host", "h"}, {"A", "1"}, {"B", "2"}}},
    {"GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\n\r\n",
     "",
     "GET",
     "/",
     1,
     NOCL,
     0,
     F_HOST,
     KEEL_H1_BODY_NONE,
     NULL,
     2,
     {{"Host", "h"}, {"A", "1"}}},
    {"GET / HTTP/1.1\r\nHost: h\r\n!#$%&'*+-.^_`|~09azAZ: v\r\n\r\n",
     "",
     "GET",
     "/",
     1,
     NOCL,
     0,
     F_HOST,
     KEEL_H1_BODY_NONE,
     NULL,
     0,
     {{"Host", "h"}, {"!#$%&'*+-.^_`|~09azAZ", "v"}}},
    {"GET /%20!$&'()*+,;=:@?/~#[]{}|\\^`\"<> HTTP/1.1\r\nHost: h\r\n\r\n",
     "",
     "GET",
     "/%20!$&'()*+,;=:@?/~#[]{}|\\^`\"<>",
     1,
     NOCL,
     0,
     F_HOST,
     KEEL_H1_BODY_NONE,
     NULL,
     0,
     {{"Host", "h"}}},
    {"POST / HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\n",
     "hi",
     "POST",
     "/",
     0,
     2,
     -1,
     F_KA | F_CL,
     KEEL_H1_BODY_LENGTH,
     NULL,
     0,
     {{"Connection", "keep-alive"}, {"Content-Length", "2"}}},
    {"GET / HTTP/1.1\r\nHost: h\r\nX-Json: {\"a\": [1, 2]}\r\nUser-Agent: curl/8.0\r\n\r\n",
     "",
     "GET",
     "/",
     1,
     NOCL,
     0,
     F_HOST,
     KEEL_H1_BODY_NONE,
     NULL,
     0,
     {{"Host", "h"}, {"X-Json", "{\"a\": [1, 2]}"}, {"User-Agent", "curl/8.0"}}},
    {"GET / HTTP/1.1\r\nHost: a.b-c_d~e%41!$&'()*+,;=:8080\r\n\r\n",
     "",
     "GET",
     "/",
     1,
     NOCL,
     0,
     F_HOST,
     KEEL_H1_BODY_NONE,
     NULL,
     0,
     {{"Host", "a.b-c_d~e%41!$&'()*+,;=:8080"}}},
    {"GET / HTTP/1.1\r\nHost: h\r\n\r\n",
     "",
     "GET",
     "/",
     1,
     NOCL,
     0,
     F_HOST,
     KEEL_H1_BODY_NONE,
     &lim_head_exact,
     0,
     {{"Host", "h"}}},
};

/* Returns NULL when rq matches c, else the name of the first differing field. */
static const char *req_diff(const struct req_ok *c, const struct keel_http1_request *rq,
                            const char *buf, size_t len)
{
    if (!str_eq(rq->method, rq->method_len, c->method) ||
        !in_buf(rq->method, rq->method_len, buf, len))
        return "method";
    if (!str_eq(rq->target, rq->target_len, c->target) ||
        !in_buf(rq->target, rq->target_len, buf, len))
        return "target";
    if (rq->minor_version != c->minor)
        return "minor_version";
    if (rq->content_length != c->cl)
        return "content_length";
    if (rq->host_index != c->host_index)
        return "host_index";
    if (rq->flags != c->flags)
        return "flags";
    if (keel_http1_request_body(rq) != c->body)
        return "body";
    size_t n = 0;
    while (n < MAXH && c->h[n].name)
        n++;
    if (rq->num_headers != n)
        return "num_headers";
    for (size_t i = 0; i < n; i++) {
        const struct keel_http1_header *h = &rq->headers[i];
        if (!str_eq(h->name, h->name_len, c->h[i].name) || !in_buf(h->name, h->name_len, buf, len))
            return "header name";
        if (!str_eq(h->value, h->value_len, c->h[i].value) ||
            !in_buf(h->value, h->value_len, buf, len))
            return "header value";
    }
    return NULL;
}

static ssize_t parse_req(const char *buf, size_t len, struct keel_http1_request *rq,
                         struct keel_http1_header *hdrs, size_t cap,
                         const struct keel_http1_limits *lim, size_t *err_off)
{
    memset(rq, 0x5a, sizeof(*rq));
    rq->headers = hdrs;
    rq->num_headers = cap;
    return keel_http1_parse_request(buf, len, rq, lim, err_off);
}

static void test_req_ok(void)
{
    struct keel_http1_header hdrs[MAXH];
    struct keel_http1_request rq;
    for (size_t ci = 0; ci < sizeof(req_ok_cases) / sizeof(req_ok_cases[0]); ci++) {
        const struct req_ok *c = &req_ok_cases[ci];
        size_t hl = strlen(c->head), tl = strlen(c->tail), len = hl + tl;
        size_t cap = c->cap ? c->cap : MAXH;
        char *all = malloc(len + 1);
        memcpy(all, c->head, hl);
        memcpy(all + hl, c->tail, tl);
        char *buf = dup_exact(all, len);
        ssize_t r = parse_req(buf, len, &rq, hdrs, cap, c->lim, NULL);
        CHECKF(r == (ssize_t)hl, "request case %zu: r=%zd want %zu", ci, r, hl);
        const char *d = r > 0 ? req_diff(c, &rq, buf, len) : "result";
        CHECKF(d == NULL, "request case %zu: %s differs", ci, d);
        free(buf);
        /* Every prefix: EAGAIN until the head is complete, then the same result. */
        int bad = 0;
        for (size_t i = 0; i < len && !bad; i++) {
            char *pre = dup_exact(all, i);
            r = parse_req(pre, i, &rq, hdrs, cap, c->lim, NULL);
            if (i < hl)
                bad = !CHECKF(r == KEEL_EAGAIN, "request case %zu prefix %zu: r=%zd", ci, i, r);
            else
                bad = !CHECKF(r == (ssize_t)hl && req_diff(c, &rq, pre, i) == NULL,
                              "request case %zu prefix %zu: r=%zd", ci, i, r);
            free(pre);
        }
        free(all);
    }
}

struct req_bad {
    const char *raw;
    size_t len;
    int err;
    const struct keel_http1_limits *lim;
    size_t cap;
};

static const struct req_bad req_bad_cases[] = {
    /* framing: Content-Length and Transfer-Encoding */
    {S("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"),
     KEEL_EBADMSG, NULL, 0},
    {S("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n"),
     KEEL_EBADMSG, NULL, 0},
    {S("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, chunked\r\n\r\n"), KEEL_EBADMSG,
     NULL, 0},
    {S("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: "
       "chunked\r\n\r\n"),
     KEEL_EBADMSG, NULL, 0},
    {S("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"), KEEL_EBADMSG,
     NULL, 0},
    {S("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: xchunked\r\n\r\n"), KEEL_EBADMSG, NULL, 0},
    {S("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked;q=1\r\n\r\n"), KEEL_EBADMSG, NULL,
     0},
    {S("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n"), KEEL_EBADMSG, NULL, 0},
    {S("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"), KEEL_ENOTIMPL,
     NULL, 0},
    {S("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: "
       "chunked\r\n\r\n"),
     KEEL_ENOTIMPL, NULL, 0},
    {S("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"), KEEL_EBADMSG, NULL, 0},
    {S("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked,\r\n\r\n"), KEEL_EBADMSG, NULL, 0},
    {S("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: , chunked\r\n\r\n"), KEEL_EBADMSG, NULL,
     0},
    {S("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\r\n\r\n"), KEEL_EBADMSG, NULL, 0},
    {S("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 6\r\n\r\n"), KEEL_EBADMSG, NULL, 0},
    {S("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"),
     KEEL_EBADMSG, NULL, 0},
    {S("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +5\r\n\r\n"), KEEL_EBADMSG, NULL, 0},
    {S("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -5\r\n\r\n"), KEEL_EBADMSG, NULL, 0},
    {S("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5 5\r\n\r\n"), KEEL_EBADMSG, NULL, 0},
    {S("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0x5\r\n\r\n"), KEEL_EBADMSG, NULL, 0},
    {S("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5a\r\n\r\n"), KEEL_EBADMSG, NULL, 0},
    {S("POST / HTTP/1.1\r\nHost: h\r\nContent-Length:\r\n\r\n"), KEEL_EBADMSG, NULL, 0},
    {S("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5,\r\n\r\n"), KEEL_EBADMSG, NULL, 0},
    {S("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4611686018427387905\r\n\r\n"), KEEL_EBADMSG,
     NULL, 0},
    {S("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999999\r\n\r\n"),
     KEEL_EBADMSG, NULL, 0},
    /* field syntax */
    {S("GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n"), KEEL_EBADMSG, NULL, 0},
    {S("GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n\tb\r\n\r\n"), KEEL_EBADMSG, NULL, 0},
    {S("GET / HTTP/1.1\r\n Host: h\r\n\r\n"), KEEL_EBADMSG, NULL, 0},
    {S("GET / HTTP/1.1\r\nHost : h\r\n\r\n"), KEEL_EBADMSG, NULL, 0},
    {S("GET / HTTP/1.1\r\nHost\t: h\r\n\r\n"), KEEL_EBADMSG, NULL, 0},
    {S("GET / HTTP/1.1\r\nHost: h\r\nX(y): v\r\n\r\n"), KEEL_EBADMSG, NULL, 0},
    {S("GET / HTTP/1.1\r\nHost: h\r\nX\"y: v\r\n\r\n"), KEEL_EBADMSG, NULL, 0},
    {S("GET / HTTP/1.1\r\nHost: h\r\nNa me: v\r\n\r\n"), KEEL_EBADMSG, NULL, 0},
    {S("GET / HTTP/1.1\r\nHost: h\r\nX\xc3\xa9: v\r\n\r\n"), KEEL_EBADMSG, NULL, 0},
    {S("GET / HTTP/1.1\r\nHost: h\r\n: v\r\n\r\n"), KEEL_EBADMSG, NULL, 0},
    {S("GET / HTTP/1.1\r\nHost: h\r\nNoColon\r\n\r\n"), KEEL_EBADMSG, NULL, 0},
    {S("GET / HTTP/1.1\r\nHost: h\r\nX: a\0b\r\n\r\n"), KEEL_EBADMSG, NULL, 0},
    {S("GET / HTTP/1.1\r\nHost: h\r\nX\0: v\r\n\r\n"), KEEL_EBADMSG, NULL, 0},
    {S("GET / HTTP/1.1\r\nHost: h\r\nX: a\x01\r\n\r\n"), KEEL_EBADMSG, NULL, 0},
    {S("GET / HTTP/1.1\r\nHost: h\r\nX: a\x7f\r\n\r\n"), KEEL_EBADMSG, NULL, 0},
    {S("GET / HTTP/1.1\r\nHost: h\r\nX: a\x0b b\r\n\r\n"), KEEL_EBADMSG, NULL, 0},
    /* bare CR */
    {S("GET / HTTP/1.1\r\nHost: h\r\nX: a\rb\r\n\r\n"), KEEL_EBADMSG, NULL, 0},
    {S("GET / HTTP/1.1\r\nHost: h\r\nX: ab\r\r\n\r\n"), KEEL_EBADMSG, NULL, 0},
    {S("GET / HTTP/1.1\r\nHo\rst: h\r\n\r\n"), KEEL_EBADMSG, NULL, 0},
    {S("GET / HTTP/1.1\r\nHost: h\r\n\rX\r\n"), KEEL_EBADMSG, NULL, 0},
    {S("GET / HTTP/1.1\rHost: h\r\n\r\n"), KEEL_EBADMSG, NULL, 0},
    {S("GET /\r HTTP/1.1\r\nHost: h\r\n\r\n"), KEEL_EBADMSG, NULL, 0},
    {S("\rGET / HTTP/1.1\r\nHost: h\r\n\r\n"), KEEL_EBADMSG, NULL, 0},
    {S("\r\n\r\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n"), KEEL_EBADMSG, NULL, 0},
    /* Host */
    {S("GET / HTTP/1.1\r\n\r\n"), KEEL_EBADMSG, NULL, 0},
    {S("GET / HTTP/1.1\r\nX: y\r\n\r\n"), KEEL_EBADMSG, NULL, 0},
    {S("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n"), KEEL_EBADMSG, NULL, 0},
    {S("GET / HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n"), KEEL_EBADMSG, NULL, 0},
    {S("GET / HTTP/1.1\r\nHost: a b\r\n\r\n"), KEEL_EBADMSG, NULL, 0},
    {S("GET / HTTP/1.1\r\nHost: a/b\r\n\r\n"), KEEL_EBADMSG, NULL, 0},
    {S("GET / HTTP/1.1\r\nHost: user@h\r\n\r\n"), KEEL_EBADMSG, NULL, 0},
    {S("GET / HTTP/1.1\r\nHost: h\xc3\xa9\r\n\r\n"), KEEL_EBADMSG, NULL, 0},
    /* request line and target */
    {S("GET /a b HTTP/1.1\r\nHost: h\r\n\r\n"), KEEL_EBADMSG, NULL, 0},
    {S("GET /a\x01 HTTP/1.1\r\nHost: h\r\n\r\n"), KEEL_EBADMSG, NULL, 0},
    {S("GET /a\x7f HTTP/1.1\r\nHost: h\r\n\r\n"), KEEL_EBADMSG, NULL, 0},
    {S("GET /a\x80 HTTP/1.1\r\nHost: h\r\n\r\n"), KEEL_EBADMSG, NULL, 0},
    {S("GET /a\xff HTTP/1.1\r\nHost: h\r\n\r\n"), KEEL_EBADMSG, NULL, 0},
    {S("GET /a\0 HTTP/1.1\r\nHost: h\r\n\r\n"), KEEL_EBADMSG, NULL, 0},
    {S("GET /a\t HTTP/1.1\r\nHost: h\r\n\r\n"), KEEL_EBADMSG, NULL, 0},
    {S("GET  / HTTP/1.1\r\nHost: h\r\n\r\n"), KEEL_EBADMSG, NULL, 0},
    {S("GET /  HTTP/1.1\r\nHost: h\r\n\r\n"), KEEL_EBADMSG, NULL, 0},
    {S("GET\t/ HTTP/1.1\r\nHost: h\r\n\r\n"), KEEL_EBADMSG, NULL, 0},
    {S(" GET / HTTP/1.1\r\nHost: h\r\n\r\n"), KEEL_EBADMSG, NULL, 0},
    {S("GE(T / HTTP/1.1\r\nHost: h\r\n\r\n"), KEEL_EBADMSG, NULL, 0},
    {S("GET /\r\nHost: h\r\n\r\n"), KEEL_EBADMSG, NULL, 0},
    {S("GET * HTTP/1.1\r\nHost: h\r\n\r\n"), KEEL_EBADMSG, NULL, 0},
    {S("CONNECT / HTTP/1.1\r\nHost: h\r\n\r\n"), KEEL_EBADMSG, NULL, 0},
    {S("CONNECT h HTTP/1.1\r\nHost: h\r\n\r\n"), KEEL_EBADMSG, NULL, 0},
    {S("CONNECT :443 HTTP/1.1\r\nHost: h\r\n\r\n"), KEEL_EBADMSG, NULL, 0},
    {S("CONNECT h:44x HTTP/1.1\r\nHost: h\r\n\r\n"), KEEL_EBADMSG, NULL, 0},
    {S("CONNECT http://h:443/ HTTP/1.1\r\nHost: h\r\n\r\n"), KEEL_EBADMSG, NULL, 0},
    {S("GET example.com HTTP/1.1\r\nHost: h\r\n\r\n"), KEEL_EBADMSG, NULL, 0},
    {S("GET ?x HTTP/1.1\r\nHost: h\r\n\r\n"), KEEL_EBADMSG, NULL, 0},
    {S("GET 1http://h/ HTTP/1.1\r\nHost: h\r\n\r\n"), KEEL_EBADMSG, NULL, 0},
    /* versions: 505 for HTTP/d.d we do not speak, 400 for anything else */
    {S("GET / HTTP/2.0\r\nHost: h\r\n\r\n"), KEEL_EVERSION, NULL, 0},
    {S("GET / HTTP/1.2\r\nHost: h\r\n\r\n"), KEEL_EVERSION, NULL, 0},
    {S("GET / HTTP/0.9\r\nHost: h\r\n\r\n"), KEEL_EVERSION, NULL, 0},
    {S("GET / HTTP/3.1\nHost: h\r\n\r\n"), KEEL_EVERSION, NULL, 0},
    {S("GET / HTTP/1.10\r\nHost: h\r\n\r\n"), KEEL_EBADMSG, NULL, 0},
    {S("GET / HTTP/1\r\nHost: h\r\n\r\n"), KEEL_EBADMSG, NULL, 0},
    {S("GET / HTTP/11\r\nHost: h\r\n\r\n"), KEEL_EBADMSG, NULL, 0},
    {S("GET / http/1.1\r\nHost: h\r\n\r\n"), KEEL_EBADMSG, NULL, 0},
    {S("GET / HTTP/1.1 \r\nHost: h\r\n\r\n"), KEEL_EBADMSG, NULL, 0},
    {S("GET / HTTPS/1.1\r\nHost: h\r\n\r\n"), KEEL_EBADMSG, NULL, 0},
    {S("GET / HTTP/a.b\r\nHost: h\r\n\r\n"), KEEL_EBADMSG, NULL, 0},
    /* limits */
    {S("GET /aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa HTTP/1.1\r\nHost: h\r\n\r\n"),
     KEEL_EURITOOLONG, &lim_tiny_line, 0},
    {S("GET /aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"), KEEL_EURITOOLONG, &lim_tiny_line, 0},
    {S("\r\n\r\nGET /aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"), KEEL_EURITOOLONG, &lim_tiny_line, 0},
    {S("GET / HTTP/1.1\r\nHost: h\r\nX-Long: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n"),
     KEEL_EHDRTOOLARGE, &lim_tiny_head, 0},
    {S("GET / HTTP/1.1\r\nHost: h\r\nX-Long: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
     KEEL_EHDRTOOLARGE, &lim_tiny_head, 0},
    {S("GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n"), KEEL_ETOOMANYHDRS, &lim_3hdrs,
     0},
    {S("GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\n\r\n"), KEEL_ETOOMANYHDRS, NULL, 2},
    {S("GET /aaaaaaaaaaaaaaaaaaaaaaaa HTTP/1.1\r\nHost: h\r\n\r\n"), KEEL_EHDRTOOLARGE,
     &lim_head_lt_line, 0},
    /* the first limit passed decides, even when a later byte is also malformed */
    {S("GET /aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\x01 HTTP/1.1\r\n"), KEEL_EURITOOLONG,
     &lim_tiny_line, 0},
    {S("GET /a\x01"
       "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa HTTP/1.1\r\n"),
     KEEL_EBADMSG, &lim_tiny_line, 0},
};

static void test_req_bad(void)
{
    struct keel_http1_header hdrs[MAXH];
    struct keel_http1_request rq;
    for (size_t ci = 0; ci < sizeof(req_bad_cases) / sizeof(req_bad_cases[0]); ci++) {
        const struct req_bad *c = &req_bad_cases[ci];
        size_t cap = c->cap ? c->cap : MAXH;
        char *buf = dup_exact(c->raw, c->len);
        size_t off = (size_t)-1;
        ssize_t r = parse_req(buf, c->len, &rq, hdrs, cap, c->lim, &off);
        CHECKF(r == c->err, "bad request case %zu: r=%zd want %d", ci, r, c->err);
        CHECKF(off < c->len, "bad request case %zu: err_off=%zu", ci, off);
        free(buf);
        int bad = 0;
        for (size_t i = 0; i < c->len && !bad; i++) {
            char *pre = dup_exact(c->raw, i);
            r = parse_req(pre, i, &rq, hdrs, cap, c->lim, NULL);
            bad = !CHECKF(r == KEEL_EAGAIN || r == c->err,
                          "bad request case %zu prefix %zu: r=%zd want EAGAIN or %d", ci, i, r,
                          c->err);
            free(pre);
        }
    }
}

/* Exact limit boundaries, built at run time: at the limit passes, one byte over fails. */
static void test_req_limits(void)
{
    struct keel_http1_header hdrs[MAXH];
    struct keel_http1_request rq;
    char buf[20000];
    /* request line of exactly max bytes incl. CRLF (default limit 8192) */
    size_t line = KEEL_H1_DEFAULT_MAX_LINE;
    for (int over = 0; over <= 1; over++) {
        size_t tl = line + (size_t)over - strlen("GET  HTTP/1.1\r\n");
        size_t n = 0;
        memcpy(buf, "GET /", 5);
        n = 5;
        memset(buf + n, 'a', tl - 1);
        n += tl - 1;
        n += (size_t)sprintf(buf + n, " HTTP/1.1\r\nHost: h\r\n\r\n");
        size_t off = 0;
        ssize_t r = parse_req(buf, n, &rq, hdrs, MAXH, NULL, &off);
        if (!over)
            CHECKF(r == (ssize_t)n && rq.target_len == tl, "line at limit: r=%zd", r);
        else
            CHECKF(r == KEEL_EURITOOLONG && off == line, "line over limit: r=%zd off=%zu", r, off);
        /* incomplete: the whole line but no LF yet */
        r = parse_req(buf, line + (size_t)over, &rq, hdrs, MAXH, NULL, NULL);
        CHECKF(r == (over ? KEEL_EURITOOLONG : KEEL_EAGAIN), "line prefix: r=%zd", r);
    }
    /* leading empty lines do not count toward the request line */
    {
        struct keel_http1_limits lim = {20, 0, 0};
        const char *ok = "\r\n\r\n\r\nGET /1234 HTTP/1.1\r\nHost: h\r\n\r\n"; /* line: 20 */
        CHECK(parse_req(ok, strlen(ok), &rq, hdrs, MAXH, &lim, NULL) == (ssize_t)strlen(ok));
        const char *no = "\r\n\r\n\r\nGET /12345 HTTP/1.1\r\nHost: h\r\n\r\n";
        CHECK(parse_req(no, strlen(no), &rq, hdrs, MAXH, &lim, NULL) == KEEL_EURITOOLONG);
    }
    /* whole head of exactly max_head bytes */
    {
        const char *h = "GET / HTTP/1.1\r\nHost: h\r\n\r\n";
        size_t n = strlen(h);
        struct keel_http1_limits lim = {0, n, 0};
        CHECK(parse_req(h, n, &rq, hdrs, MAXH, &lim, NULL) == (ssize_t)n);
        lim.max_head = n - 1;
        size_t off = 0;
        CHECK(parse_req(h, n, &rq, hdrs, MAXH, &lim, &off) == KEEL_EHDRTOOLARGE);
        CHECK(off == n - 1);
        CHECK(parse_req(h, n - 1, &rq, hdrs, MAXH, &lim, NULL) == KEEL_EAGAIN);
    }
    /* default max_head: 65536 */
    {
        size_t n = (size_t)sprintf(buf, "GET / HTTP/1.1\r\nHost: h\r\n");
        static char big[70000];
        memcpy(big, buf, n);
        while (n < 66000) {
            memcpy(big + n, "X-Pad: ", 7);
            memset(big + n + 7, 'p', 4000);
            memcpy(big + n + 4007, "\r\n", 2);
            n += 4009;
        }
        struct keel_http1_header many[100];
        CHECK(parse_req(big, n, &rq, many, 100, NULL, NULL) == KEEL_EHDRTOOLARGE);
    }
    /* default max_headers: 100, even with a bigger array */
    {
        static char big[4000];
        static struct keel_http1_header many[200];
        size_t n = (size_t)sprintf(big, "GET / HTTP/1.1\r\nHost: h\r\n");
        for (int i = 0; i < 99; i++)
            n += (size_t)sprintf(big + n, "X%d: v\r\n", i);
        memcpy(big + n, "\r\n", 2);
        CHECK(parse_req(big, n + 2, &rq, many, 200, NULL, NULL) == (ssize_t)n + 2);
        CHECK(rq.num_headers == 100);
        n += (size_t)sprintf(big + n, "Y: v\r\n\r\n");
        CHECK(parse_req(big, n, &rq, many, 200, NULL, NULL) == KEEL_ETOOMANYHDRS);
    }
}

static void test_req_pipelined(void)
{
    struct keel_http1_header hdrs[MAXH];
    struct keel_http1_request rq;
    const char *two = "GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: y\r\n\r\n";
    size_t len = strlen(two);
    ssize_t r1 = parse_req(two, len, &rq, hdrs, MAXH, NULL, NULL);
    CHECK(r1 == 28);
    CHECK(str_eq(rq.target, rq.target_len, "/a"));
    ssize_t r2 = parse_req(two + r1, len - (size_t)r1, &rq, hdrs, MAXH, NULL, NULL);
    CHECK(r2 == (ssize_t)len - r1);
    CHECK(str_eq(rq.target, rq.target_len, "/b"));
    CHECK(rq.host_index == 0 && str_eq(rq.headers[0].value, rq.headers[0].value_len, "y"));
    /* a smuggled second request after a body-less GET is only the next message */
    const char *sm = "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\nGET /admin "
                     "HTTP/1.1\r\nHost: x\r\n\r\n";
    r1 = parse_req(sm, strlen(sm), &rq, hdrs, MAXH, NULL, NULL);
    CHECK(r1 == (ssize_t)(strstr(sm, "\r\n\r\n") - sm) + 4);
    CHECK(keel_http1_request_body(&rq) == KEEL_H1_BODY_NONE);
}

/* Long values and targets go through an 8-bytes-at-a-time scan: put one bad byte at every
 * position of values/targets of many lengths and check it is still found. */
static void test_scan_positions(void)
{
    static const char bad_value[] = {0x00, 0x01, 0x08, 0x0b, 0x1f, 0x7f, '\r'};
    static const char bad_target[] = {0x00, 0x09,       0x20 /* SP ends it early */,
                                      0x7f, (char)0x80, (char)0xff};
    struct keel_http1_header hdrs[MAXH];
    struct keel_http1_request rq;
    char buf[256];
    int ok = 1;
    for (size_t vl = 1; vl <= 40 && ok; vl++) {
        char v[64];
        for (size_t i = 0; i < vl; i++)
            v[i] = (char)(i % 3 == 0 ? '\t' : i % 3 == 1 ? 'a' + (int)i % 26 : 0x80 + (int)i);
        v[0] = 'x';
        v[vl - 1] = 'y';
        int n =
            snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nHost: h\r\nX: %.*s\r\n\r\n", (int)vl, v);
        ssize_t r = parse_req(buf, (size_t)n, &rq, hdrs, MAXH, NULL, NULL);
        ok = CHECKF(r == n && rq.num_headers == 2 && rq.headers[1].value_len == vl &&
                        memcmp(rq.headers[1].value, v, vl) == 0,
                    "good value length %zu: r=%zd", vl, r);
        for (size_t pos = 0; pos < vl && ok; pos++) {
            for (size_t k = 0; k < sizeof(bad_value) && ok; k++) {
                char w[64];
                memcpy(w, v, vl);
                w[pos] = bad_value[k];
                n = snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nHost: h\r\nX: a");
                memcpy(buf + n, w, vl);
                n += (int)vl;
                n += snprintf(buf + n, sizeof(buf) - (size_t)n, "b\r\n\r\n");
                size_t off = 0;
                r = parse_req(buf, (size_t)n, &rq, hdrs, MAXH, NULL, &off);
                ok = CHECKF(r == KEEL_EBADMSG, "bad value byte 0x%02x at %zu of %zu: r=%zd",
                            (unsigned)(uint8_t)bad_value[k], pos, vl, r);
            }
        }
    }
    for (size_t tl = 1; tl <= 40 && ok; tl++) {
        char t[64];
        t[0] = '/';
        for (size_t i = 1; i < tl; i++)
            t[i] = (char)(0x21 + (i * 7) % 94);
        int n = snprintf(buf, sizeof(buf), "GET %.*s HTTP/1.1\r\nHost: h\r\n\r\n", (int)tl, t);
        ssize_t r = parse_req(buf, (size_t)n, &rq, hdrs, MAXH, NULL, NULL);
        ok = CHECKF(r == n && rq.target_len == tl && memcmp(rq.target, t, tl) == 0,
                    "good target length %zu: r=%zd", tl, r);
        for (size_t pos = 1; pos < tl && ok; pos++) {
            for (size_t k = 0; k < sizeof(bad_target) && ok; k++) {
                char w[64];
                memcpy(w, t, tl);
                w[pos] = bad_target[k];
                n = snprintf(buf, sizeof(buf), "GET ");
                memcpy(buf + n, w, tl);
                n += (int)tl;
                n += snprintf(buf + n, sizeof(buf) - (size_t)n, "z HTTP/1.1\r\nHost: h\r\n\r\n");
                r = parse_req(buf, (size_t)n, &rq, hdrs, MAXH, NULL, NULL);
                ok = CHECKF(r == KEEL_EBADMSG, "bad target byte 0x%02x at %zu of %zu: r=%zd",
                            (unsigned)(uint8_t)bad_target[k], pos, tl, r);
            }
        }
    }
}

/* ---------------------------------------------------------------- responses */

struct resp_ok {
    const char *head;
    const char *tail;
    int minor, status;
    const char *reason;
    int64_t cl;
    unsigned flags;
    enum keel_http1_body body;      /* not a HEAD response */
    enum keel_http1_body head_body; /* response to HEAD */
    struct hv h[MAXH + 1];
};

static const struct resp_ok resp_ok_cases[] = {
    {"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
     "hello",
     1,
     200,
     "OK",
     5,
     F_CL,
     KEEL_H1_BODY_LENGTH,
     KEEL_H1_BODY_NONE,
     {{"Content-Length", "5"}}},
    {"HTTP/1.1 204 No Content\r\n\r\n",
     "",
     1,
     204,
     "No Content",
     NOCL,
     0,
     KEEL_H1_BODY_NONE,
     KEEL_H1_BODY_NONE,
     {{NULL, NULL}}},
    {"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n",
     "",
     1,
     304,
     "Not Modified",
     10,
     F_CL,
     KEEL_H1_BODY_NONE,
     KEEL_H1_BODY_NONE,
     {{"Content-Length", "10"}}},
    {"HTTP/1.1 100 Continue\r\n\r\n",
     "HTTP/1.1 200 OK\r\n\r\n",
     1,
     100,
     "Continue",
     NOCL,
     0,
     KEEL_H1_BODY_NONE,
     KEEL_H1_BODY_NONE,
     {{NULL, NULL}}},
    {"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
     "",
     1,
     101,
     "Switching Protocols",
     NOCL,
     F_CUPG | F_UPG,
     KEEL_H1_BODY_NONE,
     KEEL_H1_BODY_NONE,
     {{"Connection", "upgrade"}, {"Upgrade", "websocket"}}},
    {"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n",
     "",
     1,
     200,
     "",
     0,
     F_CL,
     KEEL_H1_BODY_NONE,
     KEEL_H1_BODY_NONE,
     {{"Content-Length", "0"}}},
    {"HTTP/1.1 200 \r\n\r\n",
     "",
     1,
     200,
     "",
     NOCL,
     0,
     KEEL_H1_BODY_UNTIL_CLOSE,
     KEEL_H1_BODY_NONE,
     {{NULL, NULL}}},
    {"HTTP/1.0 200 OK\r\nConnection: close\r\n\r\n",
     "body",
     0,
     200,
     "OK",
     NOCL,
     F_CLOSE,
     KEEL_H1_BODY_UNTIL_CLOSE,
     KEEL_H1_BODY_NONE,
     {{"Connection", "close"}}},
    {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
     "0\r\n\r\n",
     1,
     200,
     "OK",
     NOCL,
     F_TE | F_CHUNKED,
     KEEL_H1_BODY_CHUNKED,
     KEEL_H1_BODY_NONE,
     {{"Transfer-Encoding", "chunked"}}},
    {"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
     "",
     1,
     200,
     "OK",
     NOCL,
     F_TE | F_CHUNKED,
     KEEL_H1_BODY_CHUNKED,
     KEEL_H1_BODY_NONE,
     {{"Transfer-Encoding", "gzip, chunked"}}},
    {"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
     "",
     1,
     200,
     "OK",
     NOCL,
     F_TE,
     KEEL_H1_BODY_UNTIL_CLOSE,
     KEEL_H1_BODY_NONE,
     {{"Transfer-Encoding", "gzip"}}},
    {"HTTP/1.1 404 Not \t Found \xe2\x9c\x97\r\nContent-Length: 2, 2\r\n\r\n",
     "no",
     1,
     404,
     "Not \t Found \xe2\x9c\x97",
     2,
     F_CL,
     KEEL_H1_BODY_LENGTH,
     KEEL_H1_BODY_NONE,
     {{"Content-Length", "2, 2"}}},
    {"HTTP/1.1 999 Whatever\nX: y\n\n",
     "",
     1,
     999,
     "Whatever",
     NOCL,
     0,
     KEEL_H1_BODY_UNTIL_CLOSE,
     KEEL_H1_BODY_NONE,
     {{"X", "y"}}},
    {"HTTP/1.1 502 Bad Gateway\r\nHost: a b / @\r\nHost: again\r\nConnection: keep-alive\r\n\r\n",
     "",
     1,
     502,
     "Bad Gateway",
     NOCL,
     F_KA,
     KEEL_H1_BODY_UNTIL_CLOSE,
     KEEL_H1_BODY_NONE,
     {{"Host", "a b / @"}, {"Host", "again"}, {"Connection", "keep-alive"}}},
    {"HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nContent-Length: 3\r\n\r\n",
     "abcHTTP/1.1 200 OK\r\n\r\n",
     1,
     200,
     "OK",
     3,
     F_CL,
     KEEL_H1_BODY_LENGTH,
     KEEL_H1_BODY_NONE,
     {{"Set-Cookie", "a=1"}, {"Set-Cookie", "b=2"}, {"Content-Length", "3"}}},
    {"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n",
     "",
     1,
     103,
     "Early Hints",
     NOCL,
     0,
     KEEL_H1_BODY_NONE,
     KEEL_H1_BODY_NONE,
     {{"Link", "</s.css>; rel=preload"}}},
};

static const char *resp_diff(const struct resp_ok *c, const struct keel_http1_response *rs,
                             const char *buf, size_t len)
{
    if (rs->minor_version != c->minor)
        return "minor_version";
    if (rs->status != c->status)
        return "status";
    if (!str_eq(rs->reason, rs->reason_len, c->reason) ||
        !in_buf(rs->reason, rs->reason_len, buf, len))
        return "reason";
    if (rs->content_length != c->cl)
        return "content_length";
    if (rs->flags != c->flags)
        return "flags";
    if (keel_http1_response_body(rs, 0) != c->body)
        return "body";
    if (keel_http1_response_body(rs, 1) != c->head_body)
        return "body (HEAD)";
    size_t n = 0;
    while (n < MAXH && c->h[n].name)
        n++;
    if (rs->num_headers != n)
        return "num_headers";
    for (size_t i = 0; i < n; i++) {
        const struct keel_http1_header *h = &rs->headers[i];
        if (!str_eq(h->name, h->name_len, c->h[i].name) || !in_buf(h->name, h->name_len, buf, len))
            return "header name";
        if (!str_eq(h->value, h->value_len, c->h[i].value) ||
            !in_buf(h->value, h->value_len, buf, len))
            return "header value";
    }
    return NULL;
}

static ssize_t parse_resp(const char *buf, size_t len, struct keel_http1_response *rs,
                          struct keel_http1_header *hdrs, size_t cap,
                          const struct keel_http1_limits *lim, size_t *err_off)
{
    memset(rs, 0x5a, sizeof(*rs));
    rs->headers = hdrs;
    rs->num_headers = cap;
    return keel_http1_parse_response(buf, len, rs, lim, err_off);
}

static void test_resp_ok(void)
{
    struct keel_http1_header hdrs[MAXH];
    struct keel_http1_response rs;
    for (size_t ci = 0; ci < sizeof(resp_ok_cases) / sizeof(resp_ok_cases[0]); ci++) {
        const struct resp_ok *c = &resp_ok_cases[ci];
        size_t hl = strlen(c->head), tl = strlen(c->tail), len = hl + tl;
        char *all = malloc(len + 1);
        memcpy(all, c->head, hl);
        memcpy(all + hl, c->tail, tl);
        char *buf = dup_exact(all, len);
        ssize_t r = parse_resp(buf, len, &rs, hdrs, MAXH, NULL, NULL);
        CHECKF(r == (ssize_t)hl, "response case %zu: r=%zd want %zu", ci, r, hl);
        const char *d = r > 0 ? resp_diff(c, &rs, buf, len) : "result";
        CHECKF(d == NULL, "response case %zu: %s differs", ci, d);
        free(buf);
        int bad = 0;
        for (size_t i = 0; i < len && !bad; i++) {
            char *pre = dup_exact(all, i);
            r = parse_resp(pre, i, &rs, hdrs, MAXH, NULL, NULL);
            if (i < hl)
                bad = !CHECKF(r == KEEL_EAGAIN, "response case %zu prefix %zu: r=%zd", ci, i, r);
            else
                bad = !CHECKF(r == (ssize_t)hl && resp_diff(c, &rs, pre, i) == NULL,
                              "response case %zu prefix %zu: r=%zd", ci, i, r);
            free(pre);
        }
        free(all);
    }
}

static const struct req_bad resp_bad_cases[] = {
    {S("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"), KEEL_EBADMSG,
     NULL, 0},
    {S("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"), KEEL_EBADMSG,
     NULL, 0},
    {S("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n"), KEEL_EBADMSG, NULL, 0},
    {S("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"), KEEL_EBADMSG, NULL, 0},
    {S("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"), KEEL_EBADMSG, NULL, 0},
    {S("HTTP/1.1 200 OK\r\nTransfer-Encoding: ,\r\n\r\n"), KEEL_EBADMSG, NULL, 0},
    {S("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"), KEEL_EBADMSG, NULL, 0},
    {S("HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\n"), KEEL_EBADMSG, NULL, 0},
    {S("HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n"), KEEL_EBADMSG, NULL, 0},
    {S("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n"), KEEL_EBADMSG, NULL, 0},
    {S("HTTP/1.1 200 OK\r\nContent-Length: 1 000\r\n\r\n"), KEEL_EBADMSG, NULL, 0},
    {S("HTTP/1.1 200 OK\r\nContent-Length: 4611686018427387905\r\n\r\n"), KEEL_EBADMSG, NULL, 0},
    {S("HTTP/1.1 200 OK\r\nX: a\r\n folded\r\n\r\n"), KEEL_EBADMSG, NULL, 0},
    {S("HTTP/1.1 200 OK\r\nX : a\r\n\r\n"), KEEL_EBADMSG, NULL, 0},
    {S("HTTP/1.1 200 OK\r\nX: a\0\r\n\r\n"), KEEL_EBADMSG, NULL, 0},
    {S("HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n"), KEEL_EBADMSG, NULL, 0},
    {S("HTTP/1.1 200 O\rK\r\n\r\n"), KEEL_EBADMSG, NULL, 0},
    {S("HTTP/1.1 200 O\x01K\r\n\r\n"), KEEL_EBADMSG, NULL, 0},
    {S("HTTP/1.1 099 Low\r\n\r\n"), KEEL_EBADMSG, NULL, 0},
    {S("HTTP/1.1 000 Zero\r\n\r\n"), KEEL_EBADMSG, NULL, 0},
    {S("HTTP/1.1 20 Short\r\n\r\n"), KEEL_EBADMSG, NULL, 0},
    {S("HTTP/1.1 2000 Long\r\n\r\n"), KEEL_EBADMSG, NULL, 0},
    {S("HTTP/1.1 20x OK\r\n\r\n"), KEEL_EBADMSG, NULL, 0},
    {S("HTTP/1.1  200 OK\r\n\r\n"), KEEL_EBADMSG, NULL, 0},
    {S("HTTP/1.1\t200 OK\r\n\r\n"), KEEL_EBADMSG, NULL, 0},
    {S("HTTP/2.0 200 OK\r\n\r\n"), KEEL_EBADMSG, NULL, 0},
    {S("HTTP/1.2 200 OK\r\n\r\n"), KEEL_EBADMSG, NULL, 0},
    {S("http/1.1 200 OK\r\n\r\n"), KEEL_EBADMSG, NULL, 0},
    {S("HTTP/1.1 200 OK\r\r\n\r\n"), KEEL_EBADMSG, NULL, 0},
    {S("\r\nHTTP/1.1 200 OK\r\n\r\n"), KEEL_EBADMSG, NULL, 0},
    {S("HTTP/1.1 200 OK\r\nX-Long: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n"),
     KEEL_EHDRTOOLARGE, &lim_tiny_head, 0},
    {S("HTTP/1.1 200 A very long reason phrase over the line limit\r\n\r\n"), KEEL_EHDRTOOLARGE,
     &lim_tiny_line, 0},
    {S("HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n"), KEEL_ETOOMANYHDRS, &lim_3hdrs,
     0},
};

static void test_resp_bad(void)
{
    struct keel_http1_header hdrs[MAXH];
    struct keel_http1_response rs;
    for (size_t ci = 0; ci < sizeof(resp_bad_cases) / sizeof(resp_bad_cases[0]); ci++) {
        const struct req_bad *c = &resp_bad_cases[ci];
        char *buf = dup_exact(c->raw, c->len);
        size_t off = (size_t)-1;
        ssize_t r = parse_resp(buf, c->len, &rs, hdrs, MAXH, c->lim, &off);
        CHECKF(r == c->err, "bad response case %zu: r=%zd want %d", ci, r, c->err);
        CHECKF(off < c->len, "bad response case %zu: err_off=%zu", ci, off);
        free(buf);
        int bad = 0;
        for (size_t i = 0; i < c->len && !bad; i++) {
            char *pre = dup_exact(c->raw, i);
            r = parse_resp(pre, i, &rs, hdrs, MAXH, c->lim, NULL);
            bad = !CHECKF(r == KEEL_EAGAIN || r == c->err,
                          "bad response case %zu prefix %zu: r=%zd", ci, i, r);
            free(pre);
        }
    }
}

/* ---------------------------------------------------------------- chunked */

struct ck_case {
    const char *raw;
    size_t len;
    int ret;             /* 0 or KEEL_EBADMSG */
    const char *payload; /* decoded payload (ret 0) */
    size_t plen;
    size_t consumed; /* bytes of the body (ret 0); error offset (ret < 0) */
};

#define CK_OK(raw, pl, consumed)                                                                   \
    {                                                                                              \
        S(raw), 0, S(pl), consumed                                                                 \
    }
#define CK_BAD(raw, off)                                                                           \
    {                                                                                              \
        S(raw), KEEL_EBADMSG, "", 0, off                                                           \
    }

static const struct ck_case ck_cases[] = {
    CK_OK("5\r\nhello\r\n0\r\n\r\n", "hello", 15),
    CK_OK("3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n", "abcdefg", 22),
    CK_OK("A\r\n0123456789\r\na\r\nabcdefghij\r\n0\r\n\r\n", "0123456789abcdefghij", 35),
    CK_OK("5;name=value\r\nhello\r\n0;last\r\n\r\n", "hello", 31),
    CK_OK("5 ;x\r\nhello\r\n0\t; y = \"q\\\"x\" \r\n\r\n", "hello", 32),
    CK_OK("5;a\tb\x80\xff\r\nhello\r\n0\r\n\r\n", "hello", 21),
    CK_OK("0\r\nX-Trailer: yes\r\nY: z\r\n\r\n", "", 27),
    CK_OK("2\r\nhi\r\n0\r\nX:\r\nChecksum: \tab \xc3\xa9\r\n\r\n", "hi", 34),
    CK_OK("5\nhello\r\n0\n\n", "hello", 12),
    CK_OK("5\r\nhello\r\n0\r\nT: v\n\r\n", "hello", 20),
    CK_OK("0\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", "", 5),
    CK_OK("1\r\nx\r\n0\r\n\r\n0\r\n\r\n", "x", 11),
    CK_OK("005\r\nhello\r\n0000\r\n\r\n", "hello", 20),
    CK_OK("000000000000005\r\nhello\r\n0\r\n\r\n", "hello", 29),
    CK_OK("0\r\n\r\n", "", 5),
    CK_OK("0\n\n", "", 3),
    CK_OK("b\r\n0\r\n\r\n0\r\n\r\nX\r\n0\r\n\r\n", "0\r\n\r\n0\r\n\r\nX", 21),
    CK_OK("4\r\n\0\r\n\xff\r\n3\r\n\n\n\n\r\n0\r\n\r\n", "\0\r\n\xff\n\n\n", 22),
    CK_OK("1a\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\n\r\n", "abcdefghijklmnopqrstuvwxyz", 37),
    /* errors: consumed is the offset of the offending byte */
    CK_BAD("g\r\nhello\r\n0\r\n\r\n", 0),
    CK_BAD("\r\nhello\r\n0\r\n\r\n", 0),
    CK_BAD("\nx", 0),
    CK_BAD(";ext\r\n", 0),
    CK_BAD("-1\r\n", 0),
    CK_BAD("+1\r\nx\r\n", 0),
    CK_BAD("0x10\r\n", 1),
    CK_BAD(" 5\r\nhello\r\n", 0),
    CK_BAD("1000000000000000\r\n", 15),
    CK_BAD("ffffffffffffffffff\r\n", 15),
    CK_BAD("5 \r\nhello\r\n0\r\n\r\n", 2),
    CK_BAD("5\t\nhello\r\n0\r\n\r\n", 2),
    CK_BAD("5 5\r\nhello\r\n", 2),
    CK_BAD("5\rX", 2),
    CK_BAD("5\r\r\n", 2),
    CK_BAD("5;a\rb\r\n", 4),
    CK_BAD("5;a\x01\r\nhello\r\n", 3),
    CK_BAD("5;a\x7f\r\nhello\r\n", 3),
    CK_BAD("5;\0\r\nhello\r\n", 2),
    CK_BAD("5\r\nhelloX\r\n0\r\n\r\n", 8),
    CK_BAD("5\r\nhello0\r\n\r\n", 8),
    CK_BAD("5\r\nhello\n0\r\n\r\n", 8),
    CK_BAD("5\r\nhello\rX0\r\n\r\n", 9),
    CK_BAD("5\r\nhello\r\r\n0\r\n\r\n", 9),
    CK_BAD("3\r\nhello\r\n0\r\n\r\n", 6),
    CK_BAD("0\r\nX: a\r\n b\r\n\r\n", 9),
    CK_BAD("0\r\nX: a\r\n\tb\r\n\r\n", 9),
    CK_BAD("0\r\nXY\r\n\r\n", 5),
    CK_BAD("0\r\nX : a\r\n\r\n", 4),
    CK_BAD("0\r\n: a\r\n\r\n", 3),
    CK_BAD("0\r\nX: a\0\r\n\r\n", 7),
    CK_BAD("0\r\nX: a\rb\r\n\r\n", 8),
    CK_BAD("0\r\nX\x80: a\r\n\r\n", 4),
    CK_BAD("0\r\n\r\r\n", 4),
    CK_BAD("0\r\n\rX", 4),
    CK_BAD("0\r\r\n\r\n", 2),
};

/* Feeds raw in pieces ending at the offsets cuts[0..ncuts) (then the rest); collects the
 * decoded payload into out. Returns the feed result; *consumed is the total. */
static int ck_feed_pieces(const char *raw, size_t len, const size_t *cuts, size_t ncuts, int decode,
                          char *out, size_t *out_len, size_t *consumed, int *done)
{
    struct keel_http1_chunked ck;
    keel_http1_chunked_init(&ck);
    *out_len = 0;
    *consumed = 0;
    *done = 0;
    size_t start = 0;
    for (size_t k = 0; k <= ncuts; k++) {
        size_t end = k < ncuts ? cuts[k] : len;
        size_t n = end - start;
        char *piece = dup_exact(raw + start, n);
        size_t c = 0, dl = 0;
        int d = 0;
        int rc = keel_http1_chunked_feed(&ck, piece, n, decode, &c, &dl, &d);
        if (decode) {
            memcpy(out + *out_len, piece, dl);
        }
        *out_len += dl;
        *consumed += c;
        free(piece);
        if (rc != 0)
            return rc;
        if (c != n && !d)
            return 99; /* must consume everything it is given until done */
        if (d) {
            *done = 1;
            return 0;
        }
        start = end;
    }
    return 0;
}

static void ck_check(size_t ci, const struct ck_case *c, const char *mode, int rc, const char *out,
                     size_t out_len, size_t consumed, int done, int decode)
{
    if (c->ret == 0) {
        CHECKF(rc == 0 && done == 1 && consumed == c->consumed && out_len == c->plen &&
                   (!decode || memcmp(out, c->payload, c->plen) == 0),
               "chunked case %zu (%s): rc=%d done=%d consumed=%zu out_len=%zu", ci, mode, rc, done,
               consumed, out_len);
    } else {
        CHECKF(rc == c->ret && consumed == c->consumed,
               "chunked case %zu (%s): rc=%d consumed=%zu want %d at %zu", ci, mode, rc, consumed,
               c->ret, c->consumed);
    }
}

static void test_chunked(void)
{
    char out[256];
    size_t cuts[256];
    for (size_t ci = 0; ci < sizeof(ck_cases) / sizeof(ck_cases[0]); ci++) {
        const struct ck_case *c = &ck_cases[ci];
        size_t out_len, consumed;
        int done;
        int rc = ck_feed_pieces(c->raw, c->len, NULL, 0, 1, out, &out_len, &consumed, &done);
        ck_check(ci, c, "whole", rc, out, out_len, consumed, done, 1);
        rc = ck_feed_pieces(c->raw, c->len, NULL, 0, 0, out, &out_len, &consumed, &done);
        ck_check(ci, c, "whole, no decode", rc, out, out_len, consumed, done, 0);
        for (size_t i = 0; i <= c->len; i++) {
            cuts[0] = i;
            rc = ck_feed_pieces(c->raw, c->len, cuts, 1, 1, out, &out_len, &consumed, &done);
            char mode[32];
            snprintf(mode, sizeof(mode), "split at %zu", i);
            ck_check(ci, c, mode, rc, out, out_len, consumed, done, 1);
            rc = ck_feed_pieces(c->raw, c->len, cuts, 1, 0, out, &out_len, &consumed, &done);
            ck_check(ci, c, mode, rc, out, out_len, consumed, done, 0);
        }
        for (size_t i = 0; i < c->len; i++)
            cuts[i] = i + 1;
        rc = ck_feed_pieces(c->raw, c->len, cuts, c->len ? c->len - 1 : 0, 1, out, &out_len,
                            &consumed, &done);
        ck_check(ci, c, "byte at a time", rc, out, out_len, consumed, done, 1);
    }
}

static void test_chunked_more(void)
{
    struct keel_http1_chunked ck;
    size_t consumed, dl;
    int done;
    /* chunk-ext line bound: 4096 bytes per size line */
    static char big[70100];
    for (int over = 0; over <= 1; over++) {
        size_t n = 0;
        big[n++] = '1';
        big[n++] = ';';
        size_t ext = 4096 - 4 + (size_t)over; /* "1;" + ext + CRLF */
        memset(big + n, 'e', ext);
        n += ext;
        memcpy(big + n, "\r\nx\r\n0\r\n\r\n", 10);
        n += 10;
        keel_http1_chunked_init(&ck);
        int rc = keel_http1_chunked_feed(&ck, big, n, 1, &consumed, &dl, &done);
        if (over)
            CHECKF(rc == KEEL_EBADMSG, "ext over limit: rc=%d", rc);
        else
            CHECKF(rc == 0 && done && consumed == n && dl == 1 && big[0] == 'x',
                   "ext at limit: rc=%d", rc);
    }
    /* trailer section bound: 64 KiB including the final empty line */
    for (int over = 0; over <= 1; over++) {
        size_t n = 0;
        memcpy(big, "0\r\n", 3);
        n = 3;
        size_t tr = 0;
        while (tr + 1000 <= 65536 - 2) {
            memcpy(big + n, "X: ", 3);
            memset(big + n + 3, 'v', 995);
            memcpy(big + n + 998, "\r\n", 2);
            n += 1000;
            tr += 1000;
        }
        size_t fill = 65536 - 2 - tr + (size_t)over; /* one more field up to the limit */
        memcpy(big + n, "Y:", 2);
        memset(big + n + 2, 'w', fill - 4);
        memcpy(big + n + fill - 2, "\r\n", 2);
        n += fill;
        memcpy(big + n, "\r\n", 2);
        n += 2;
        keel_http1_chunked_init(&ck);
        int rc = keel_http1_chunked_feed(&ck, big, n, 0, &consumed, &dl, &done);
        if (over)
            CHECKF(rc == KEEL_EBADMSG, "trailers over limit: rc=%d", rc);
        else
            CHECKF(rc == 0 && done && consumed == n, "trailers at limit: rc=%d n=%zu", rc, n);
    }
    /* state persists: after done nothing more is consumed; after an error it stays an error */
    {
        char b[] = "0\r\n\r\nXYZ";
        keel_http1_chunked_init(&ck);
        CHECK(keel_http1_chunked_feed(&ck, b, 8, 1, &consumed, &dl, &done) == 0);
        CHECK(done == 1 && consumed == 5 && dl == 0);
        CHECK(keel_http1_chunked_feed(&ck, b + 5, 3, 1, &consumed, &dl, &done) == 0);
        CHECK(done == 1 && consumed == 0);
        char e[] = "zz";
        keel_http1_chunked_init(&ck);
        CHECK(keel_http1_chunked_feed(&ck, e, 2, 0, &consumed, &dl, &done) == KEEL_EBADMSG);
        char ok[] = "0\r\n\r\n";
        CHECK(keel_http1_chunked_feed(&ck, ok, 5, 0, &consumed, &dl, &done) == KEEL_EBADMSG);
    }
    /* a zero-initialised struct works like _init; total counts payload bytes */
    {
        struct keel_http1_chunked z;
        memset(&z, 0, sizeof(z));
        char b[] = "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        CHECK(keel_http1_chunked_feed(&z, b, strlen(b), 1, &consumed, &dl, &done) == 0);
        CHECK(done && dl == 5 && memcmp(b, "abcde", 5) == 0 && z.total == 5);
    }
    /* large size: 15 hex digits accepted, data streamed across feeds */
    {
        char b[] = "fffffffffffffff\r\nabcd";
        keel_http1_chunked_init(&ck);
        CHECK(keel_http1_chunked_feed(&ck, b, strlen(b), 1, &consumed, &dl, &done) == 0);
        CHECK(!done && consumed == strlen(b) && dl == 4 &&
              ck.remaining == 0xfffffffffffffffull - 4);
    }
}

/* ---------------------------------------------------------------- helpers */

static void test_helpers(void)
{
    struct keel_http1_header h = {"Content-LENGTH", 14, "5", 1};
    CHECK(keel_http1_name_eq(&h, "content-length"));
    CHECK(!keel_http1_name_eq(&h, "content-lengt"));
    CHECK(!keel_http1_name_eq(&h, "content-lengthx"));
    CHECK(!keel_http1_name_eq(&h, "content_length"));
    const char *v = " Keep-Alive ,\tUPGRADE,, close ";
    CHECK(keel_http1_value_has_token(v, strlen(v), "keep-alive"));
    CHECK(keel_http1_value_has_token(v, strlen(v), "upgrade"));
    CHECK(keel_http1_value_has_token(v, strlen(v), "close"));
    CHECK(!keel_http1_value_has_token(v, strlen(v), "clos"));
    CHECK(!keel_http1_value_has_token(v, strlen(v), "alive"));
    CHECK(!keel_http1_value_has_token(v, strlen(v), ""));
    CHECK(!keel_http1_value_has_token("", 0, "close"));
    CHECK(!keel_http1_value_has_token(NULL, 0, "close"));
    CHECK(keel_http1_value_has_token("close", 5, "close"));
    CHECK(!keel_http1_value_has_token("closed", 6, "close"));
    CHECK(!keel_http1_value_has_token("close", 4, "close"));

    /* body framing of requests */
    struct keel_http1_request rq;
    memset(&rq, 0, sizeof(rq));
    rq.content_length = -1;
    CHECK(keel_http1_request_body(&rq) == KEEL_H1_BODY_NONE);
    rq.content_length = 0;
    CHECK(keel_http1_request_body(&rq) == KEEL_H1_BODY_NONE);
    rq.content_length = 10;
    CHECK(keel_http1_request_body(&rq) == KEEL_H1_BODY_LENGTH);
    rq.content_length = -1;
    rq.flags = KEEL_H1_F_CHUNKED | KEEL_H1_F_HAS_TE;
    CHECK(keel_http1_request_body(&rq) == KEEL_H1_BODY_CHUNKED);

    /* responses: 1xx/204/304/HEAD never have a body, whatever the headers say */
    struct keel_http1_response rs;
    memset(&rs, 0, sizeof(rs));
    rs.content_length = 10;
    rs.flags = KEEL_H1_F_HAS_CL;
    int none[] = {100, 101, 199, 204, 304};
    for (size_t i = 0; i < sizeof(none) / sizeof(none[0]); i++) {
        rs.status = none[i];
        CHECKF(keel_http1_response_body(&rs, 0) == KEEL_H1_BODY_NONE, "status %d", none[i]);
    }
    rs.status = 200;
    CHECK(keel_http1_response_body(&rs, 0) == KEEL_H1_BODY_LENGTH);
    CHECK(keel_http1_response_body(&rs, 1) == KEEL_H1_BODY_NONE);
    rs.status = 205;
    CHECK(keel_http1_response_body(&rs, 0) == KEEL_H1_BODY_LENGTH);

    /* err_off points at the offending byte */
    struct keel_http1_header hdrs[MAXH];
    size_t off = 0;
    const char *b = "GET / HTTP/1.1\r\nHost: h\r\nX: a\x01z\r\n\r\n";
    CHECK(parse_req(b, strlen(b), &rq, hdrs, MAXH, NULL, &off) == KEEL_EBADMSG);
    CHECK(off == 29);
    b = "GET /\x7f HTTP/1.1\r\n";
    CHECK(parse_req(b, strlen(b), &rq, hdrs, MAXH, NULL, &off) == KEEL_EBADMSG);
    CHECK(off == 5);
    /* NULL limits and zero fields in limits mean defaults */
    struct keel_http1_limits zero = {0, 0, 0};
    b = "GET / HTTP/1.1\r\nHost: h\r\n\r\n";
    CHECK(parse_req(b, strlen(b), &rq, hdrs, MAXH, &zero, NULL) == (ssize_t)strlen(b));
    /* capacity 0: any field is one too many */
    CHECK(parse_req(b, strlen(b), &rq, hdrs, 0, NULL, NULL) == KEEL_ETOOMANYHDRS);
    /* empty input */
    CHECK(parse_req(b, 0, &rq, hdrs, MAXH, NULL, NULL) == KEEL_EAGAIN);
    CHECK(parse_resp(b, 0, &rs, hdrs, MAXH, NULL, NULL) == KEEL_EAGAIN);
}

int main(void)
{
    test_req_ok();
    test_req_bad();
    test_req_limits();
    test_req_pipelined();
    test_scan_positions();
    test_resp_ok();
    test_resp_bad();
    test_chunked();
    test_chunked_more();
    test_helpers();
    printf("cases: %zu valid requests, %zu invalid requests, %zu valid responses, %zu invalid "
           "responses, %zu chunked\n",
           sizeof(req_ok_cases) / sizeof(req_ok_cases[0]),
           sizeof(req_bad_cases) / sizeof(req_bad_cases[0]),
           sizeof(resp_ok_cases) / sizeof(resp_ok_cases[0]),
           sizeof(resp_bad_cases) / sizeof(resp_bad_cases[0]),
           sizeof(ck_cases) / sizeof(ck_cases[0]));
    return TEST_SUMMARY("test_http1");
}
