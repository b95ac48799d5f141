/* SPDX-License-Identifier: MIT */
/* libFuzzer target: HTTP/1.x response heads, with invariants and prefix consistency checked. */
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

static ssize_t parse(const char *buf, size_t len, struct keel_http1_response *rs,
                     struct keel_http1_header *hdrs, size_t cap,
                     const struct keel_http1_limits *lim, size_t *off)
{
    memset(rs, 0, sizeof(*rs));
    rs->headers = hdrs;
    rs->num_headers = cap;
    return keel_http1_parse_response(buf, len, rs, lim, off);
}

static void check(const uint8_t *data, size_t size, const struct keel_http1_limits *lim, size_t cap)
{
    struct keel_http1_header hdrs[64];
    struct keel_http1_response rs;
    const char *buf = (const char *)data;
    size_t off = (size_t)-1;
    ssize_t r = parse(buf, size, &rs, hdrs, cap, lim, &off);
    if (r > 0) {
        if ((size_t)r > size || rs.num_headers > cap || rs.content_length < -1 || rs.status < 100 ||
            rs.status > 999 || !inside(rs.reason, rs.reason_len, buf, (size_t)r) ||
            (rs.minor_version != 0 && rs.minor_version != 1) ||
            ((rs.flags & KEEL_H1_F_CHUNKED) && (rs.flags & KEEL_H1_F_HAS_CL)))
            abort();
        for (size_t i = 0; i < rs.num_headers; i++)
            if (!inside(hdrs[i].name, hdrs[i].name_len, buf, (size_t)r) ||
                !inside(hdrs[i].value, hdrs[i].value_len, buf, (size_t)r) || hdrs[i].name_len == 0)
                abort();
        if (keel_http1_response_body(&rs, 1) != KEEL_H1_BODY_NONE)
            abort();
        enum keel_http1_body b = keel_http1_response_body(&rs, 0);
        if (b == KEEL_H1_BODY_LENGTH && rs.content_length <= 0)
            abort();
        if (b == KEEL_H1_BODY_CHUNKED && !(rs.flags & KEEL_H1_F_CHUNKED))
            abort();
    } else if (r == 0) {
        abort();
    } else if (r != KEEL_EAGAIN) {
        if (off >= size)
            abort();
        if (r != KEEL_EBADMSG && r != KEEL_EHDRTOOLARGE && r != KEEL_ETOOMANYHDRS)
            abort();
    }
    size_t cuts[2] = {size / 2, size ? size - 1 : 0};
    for (int k = 0; k < 2; k++) {
        size_t n = cuts[k];
        char *pre = malloc(n ? n : 1);
        if (!pre)
            return;
        memcpy(pre, data, n);
        ssize_t rp = parse(pre, n, &rs, hdrs, cap, lim, NULL);
        free(pre);
        if (r > 0 ? (n < (size_t)r ? rp != KEEL_EAGAIN : rp != r) : (rp != KEEL_EAGAIN && rp != r))
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const struct keel_http1_limits tiny = {24, 96, 4};
    check(data, size, NULL, 64);
    check(data, size, &tiny, 64);
    check(data, size, NULL, 2);
    return 0;
}
