/* SPDX-License-Identifier: MIT */
/* libFuzzer target: HTTP/1.x request heads, with invariants and prefix consistency checked. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "keel/err.h"
#include "keel/http1.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int inside(const char *p, size_t n, const char *buf, size_t len)
{
    return p >= buf && p + n <= buf + len;
}

static ssize_t parse(const char *buf, size_t len, struct keel_http1_request *rq,
                     struct keel_http1_header *hdrs, size_t cap,
                     const struct keel_http1_limits *lim, size_t *off)
{
    memset(rq, 0, sizeof(*rq));
    rq->headers = hdrs;
    rq->num_headers = cap;
    return keel_http1_parse_request(buf, len, rq, lim, off);
}

static void check(const uint8_t *data, size_t size, const struct keel_http1_limits *lim, size_t cap)
{
    struct keel_http1_header hdrs[64];
    struct keel_http1_request rq;
    const char *buf = (const char *)data;
    size_t off = (size_t)-1;
    ssize_t r = parse(buf, size, &rq, hdrs, cap, lim, &off);
    if (r > 0) {
        if ((size_t)r > size || rq.num_headers > cap || rq.content_length < -1 ||
            !inside(rq.method, rq.method_len, buf, (size_t)r) || rq.method_len == 0 ||
            !inside(rq.target, rq.target_len, buf, (size_t)r) || rq.target_len == 0 ||
            (rq.minor_version != 0 && rq.minor_version != 1) ||
            rq.host_index >= (int)rq.num_headers ||
            ((rq.flags & KEEL_H1_F_CHUNKED) && (rq.flags & KEEL_H1_F_HAS_CL)))
            abort();
        for (size_t i = 0; i < rq.num_headers; i++)
            if (!inside(hdrs[i].name, hdrs[i].name_len, buf, (size_t)r) ||
                !inside(hdrs[i].value, hdrs[i].value_len, buf, (size_t)r) || hdrs[i].name_len == 0)
                abort();
        enum keel_http1_body b = keel_http1_request_body(&rq);
        if (b == KEEL_H1_BODY_UNTIL_CLOSE)
            abort();
    } else if (r == 0) {
        abort();
    } else if (r != KEEL_EAGAIN) {
        if (off >= size)
            abort();
        if (r != KEEL_EBADMSG && r != KEEL_EURITOOLONG && r != KEEL_EHDRTOOLARGE &&
            r != KEEL_ETOOMANYHDRS && r != KEEL_ENOTIMPL && r != KEEL_EVERSION)
            abort();
    }
    /* A prefix yields EAGAIN or exactly the whole input's result (never a success early). */
    size_t cuts[2] = {size / 2, size ? size - 1 : 0};
    for (int k = 0; k < 2; k++) {
        size_t n = cuts[k];
        char *pre = malloc(n ? n : 1);
        if (!pre)
            return;
        memcpy(pre, data, n);
        ssize_t rp = parse(pre, n, &rq, hdrs, cap, lim, NULL);
        free(pre);
        if (r > 0 ? (n < (size_t)r ? rp != KEEL_EAGAIN : rp != r) : (rp != KEEL_EAGAIN && rp != r))
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const struct keel_http1_limits tiny = {24, 96, 4};
    static const struct keel_http1_limits head_first = {200, 40, 0};
    check(data, size, NULL, 64);
    check(data, size, &tiny, 64);
    check(data, size, &head_first, 64);
    check(data, size, NULL, 2);
    return 0;
}
