/* SPDX-License-Identifier: MIT */
/* Sans-I/O HTTP/1.x head parser and chunked decoder: strict RFC 9112, keel's smuggling defence. */
#include <string.h>
#include "keel/err.h"
#include "keel/http1.h"

/*
 * How the head parsers stay consistent when bytes arrive in pieces: every decision (accept a
 * byte, reject it, or report a limit) is taken while looking at one byte index i and depends
 * only on bytes 0..i. Scanning never looks at an index at or beyond the current limit position
 * (the first byte that would be over max_request_line or max_head); when the scan reaches it and
 * that byte exists, the limit error is reported. Hence a prefix of a message either yields
 * KEEL_EAGAIN or exactly the result of the whole message, and a limit is reported as soon as
 * the first byte over it arrives. Callers re-parse from the start when more bytes came in.
 *
 * Choices the header leaves open, fixed here:
 * - req/resp->num_headers (and content_length, flags, host_index) are written only on success,
 *   so a caller may retry after KEEL_EAGAIN without resetting the capacity.
 * - Transfer-Encoding with an empty list element ("chunked,", ", chunked") is rejected (400):
 *   two parsers could disagree on which coding is last. A TE field in any HTTP/1.0 message is
 *   rejected too (RFC 9112 6.1: faulty framing).
 * - Responses: "gzip, chunked" is CHUNKED (keel forwards the coding untouched), a final coding
 *   other than chunked is UNTIL_CLOSE, chunked anywhere but last is 400. parse_response never
 *   returns KEEL_ENOTIMPL or KEEL_EVERSION; an unknown version is KEEL_EBADMSG (502).
 * - keel_http1_response_body(): Content-Length: 0 gives NONE, never LENGTH.
 * - Host (requests only) must be a uri-host [":" port]: unreserved, pct-encoded, sub-delims,
 *   ":", "[", "]". An empty Host is allowed (RFC 9112 3.2).
 * - Chunked: only SP/HTAB then ";" may follow the size digits (BWS before an extension);
 *   exactly CRLF must follow the payload; with decode=0 *data_len still counts payload bytes.
 */

#define C_TCHAR 0x01  /* token character (RFC 9110 5.6.2) */
#define C_VALUE 0x02  /* field-value byte: HTAB, SP, VCHAR, obs-text */
#define C_TARGET 0x04 /* request-target byte: visible ASCII */
#define C_HOST 0x08   /* uri-host [":" port] byte: unreserved, pct, sub-delims, ":", "[", "]" */
#define C_SCHEME 0x10 /* URI scheme byte after the first */

static const uint8_t cls[256] = {
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x02, 0x0f, 0x06, 0x07, 0x0f, 0x0f, 0x0f, 0x0f, 0x0e, 0x0e, 0x0f, 0x1f, 0x0e, 0x1f, 0x1f, 0x06,
    0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x0e, 0x0e, 0x06, 0x0e, 0x06, 0x06,
    0x06, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f,
    0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x0e, 0x06, 0x0e, 0x07, 0x0f,
    0x07, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f,
    0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x06, 0x07, 0x06, 0x0f, 0x00,
    0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02,
    0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02,
    0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02,
    0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02,
    0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02,
    0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02,
    0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02,
    0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02,
};

static const uint8_t hexval[256] = {
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
};

static const uint8_t lower[256] = {
    0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f,
    0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f,
    0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28, 0x29, 0x2a, 0x2b, 0x2c, 0x2d, 0x2e, 0x2f,
    0x30, 0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3a, 0x3b, 0x3c, 0x3d, 0x3e, 0x3f,
    0x40, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x6b, 0x6c, 0x6d, 0x6e, 0x6f,
    0x70, 0x71, 0x72, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7a, 0x5b, 0x5c, 0x5d, 0x5e, 0x5f,
    0x60, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x6b, 0x6c, 0x6d, 0x6e, 0x6f,
    0x70, 0x71, 0x72, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7a, 0x7b, 0x7c, 0x7d, 0x7e, 0x7f,
    0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8a, 0x8b, 0x8c, 0x8d, 0x8e, 0x8f,
    0x90, 0x91, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9a, 0x9b, 0x9c, 0x9d, 0x9e, 0x9f,
    0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xab, 0xac, 0xad, 0xae, 0xaf,
    0xb0, 0xb1, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7, 0xb8, 0xb9, 0xba, 0xbb, 0xbc, 0xbd, 0xbe, 0xbf,
    0xc0, 0xc1, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xca, 0xcb, 0xcc, 0xcd, 0xce, 0xcf,
    0xd0, 0xd1, 0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xd9, 0xda, 0xdb, 0xdc, 0xdd, 0xde, 0xdf,
    0xe0, 0xe1, 0xe2, 0xe3, 0xe4, 0xe5, 0xe6, 0xe7, 0xe8, 0xe9, 0xea, 0xeb, 0xec, 0xed, 0xee, 0xef,
    0xf0, 0xf1, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8, 0xf9, 0xfa, 0xfb, 0xfc, 0xfd, 0xfe, 0xff,
};

#define CL_MAX ((int64_t)1 << 62)

/* Chunked decoder states; 0 must be the initial one so a zeroed struct is ready. */
enum {
    CK_SIZE = 0, /* chunk-size hex digits */
    CK_SIZE_BWS, /* whitespace after the size: only ";" may follow */
    CK_EXT,      /* chunk-ext bytes up to the line end (skipped) */
    CK_SIZE_LF,  /* CR seen at the end of a size line */
    CK_DATA,     /* payload */
    CK_DATA_CR,  /* CR after the payload */
    CK_DATA_LF,  /* LF after the payload */
    CK_TR_START, /* start of a trailer line (or the final empty line) */
    CK_TR_NAME,  /* trailer field name */
    CK_TR_VALUE, /* trailer field value */
    CK_TR_LF,    /* CR seen at the end of a trailer line */
    CK_END_LF,   /* CR seen on the final empty line */
    CK_DONE,
    CK_ERROR,
};

#define CK_MAX_DIGITS 15     /* 15 hex digits stay below 2^60 */
#define CK_MAX_LINE 4096     /* size line incl. extensions */
#define CK_MAX_TRAILER 65536 /* all trailer bytes incl. the final empty line */

/* Per-head facts collected while reading the fields. */
struct fields {
    struct keel_http1_header *hdrs;
    size_t max;   /* fields allowed */
    size_t count; /* fields stored */
    int64_t cl;
    unsigned flags;
    int is_request;
    int host_index;
    int te_chunked;      /* "chunked" elements seen over all Transfer-Encoding fields */
    int te_last_chunked; /* the last coding seen was "chunked" */
    int te_other;        /* some other coding was seen */
};

static ssize_t fail(size_t *err_off, size_t off, int err)
{
    if (err_off)
        *err_off = off;
    return err;
}

/* Bytes ran out at the scan end: either the byte at the limit position exists (limit error) or
 * more bytes are needed. */
static ssize_t starve(size_t len, size_t lim_pos, int lim_err, size_t *err_off)
{
    if (len > lim_pos)
        return fail(err_off, lim_pos, lim_err);
    return KEEL_EAGAIN;
}

static size_t add_sat(size_t a, size_t b)
{
    return a + b < a ? (size_t)-1 : a + b;
}

static size_t min_sz(size_t a, size_t b)
{
    return a < b ? a : b;
}

/* Eight bytes at a time (SWAR): true when no byte of x is a CTL (< 0x20) or DEL. Exact for the
 * whole word; HTAB also fails it, and the byte loop then decides. */
static int word_is_value(uint64_t x)
{
    uint64_t lt = (x - 0x2020202020202020ull) & ~x & 0x8080808080808080ull;
    uint64_t d = x ^ 0x7f7f7f7f7f7f7f7full;
    uint64_t del = (d - 0x0101010101010101ull) & ~d & 0x8080808080808080ull;
    return (lt | del) == 0;
}

/* True when every byte of x is visible ASCII (0x21..0x7e). */
static int word_is_target(uint64_t x)
{
    uint64_t lt = (x - 0x2121212121212121ull) & ~x & 0x8080808080808080ull;
    uint64_t d = x ^ 0x7f7f7f7f7f7f7f7full;
    uint64_t del = (d - 0x0101010101010101ull) & ~d & 0x8080808080808080ull;
    return ((x & 0x8080808080808080ull) | lt | del) == 0;
}

static size_t skip_value(const char *b, size_t p, size_t e)
{
    uint64_t x;
    while (e - p >= 8) {
        memcpy(&x, b + p, 8);
        if (!word_is_value(x))
            break;
        p += 8;
    }
    while (p < e && (cls[(uint8_t)b[p]] & C_VALUE))
        p++;
    return p;
}

static size_t skip_target(const char *b, size_t p, size_t e)
{
    uint64_t x;
    while (e - p >= 8) {
        memcpy(&x, b + p, 8);
        if (!word_is_target(x))
            break;
        p += 8;
    }
    while (p < e && (cls[(uint8_t)b[p]] & C_TARGET))
        p++;
    return p;
}

/* Case-insensitive compare of n bytes against a lowercase literal. */
static int ieq(const char *s, const char *low, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (lower[(uint8_t)s[i]] != (uint8_t)low[i])
            return 0;
    return 1;
}

static int is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/*
 * Splits the next element off a comma-separated list [*pp, end), OWS trimmed. *pp becomes NULL
 * after the last element. Returns 0 when the list is exhausted.
 */
static int list_next(const char **pp, const char *end, const char **es, size_t *elen)
{
    const char *p = *pp;
    if (!p)
        return 0;
    while (p < end && is_ows(*p))
        p++;
    const char *s = p;
    const char *comma = p < end ? memchr(p, ',', (size_t)(end - p)) : NULL;
    const char *e = comma ? comma : end;
    *pp = comma ? comma + 1 : NULL;
    while (e > s && is_ows(e[-1]))
        e--;
    *es = s;
    *elen = (size_t)(e - s);
    return 1;
}

/* Content-Length: 1*DIGIT, or a list of identical such values; <= 2^62. */
static int parse_cl(const char *v, size_t n, int64_t *out)
{
    const char *p = v, *end = v + n, *s;
    size_t el;
    int64_t val = -1;
    while (list_next(&p, end, &s, &el)) {
        if (el == 0)
            return KEEL_EBADMSG;
        int64_t x = 0;
        for (size_t i = 0; i < el; i++) {
            unsigned d = (unsigned)(uint8_t)s[i] - '0';
            if (d > 9 || x > (CL_MAX - (int64_t)d) / 10)
                return KEEL_EBADMSG;
            x = x * 10 + (int64_t)d;
        }
        if (val >= 0 && x != val)
            return KEEL_EBADMSG;
        val = x;
    }
    *out = val;
    return 0;
}

/* Transfer-Encoding: records the codings; several fields form one list (RFC 9110 5.3). */
static int parse_te(struct fields *f, const char *v, size_t n)
{
    const char *p = v, *end = v + n, *s;
    size_t el;
    while (list_next(&p, end, &s, &el)) {
        /* An empty element would let two parsers disagree on the final coding. */
        if (el == 0)
            return KEEL_EBADMSG;
        if (el == 7 && ieq(s, "chunked", 7)) {
            f->te_chunked++;
            f->te_last_chunked = 1;
        } else {
            f->te_other = 1;
            f->te_last_chunked = 0;
        }
    }
    return 0;
}

static unsigned conn_flags(const char *v, size_t n)
{
    const char *p = v, *end = v + n, *s;
    size_t el;
    unsigned fl = 0;
    while (list_next(&p, end, &s, &el)) {
        if (el == 5 && ieq(s, "close", 5))
            fl |= KEEL_H1_F_CONN_CLOSE;
        else if (el == 10 && ieq(s, "keep-alive", 10))
            fl |= KEEL_H1_F_CONN_KEEPALIVE;
        else if (el == 7 && ieq(s, "upgrade", 7))
            fl |= KEEL_H1_F_CONN_UPGRADE;
    }
    return fl;
}

/* Semantics of one stored field; returns 0 or a negative KEEL_E*. */
static int on_field(struct fields *f, const struct keel_http1_header *h)
{
    const char *n = h->name;
    switch (h->name_len) {
    case 4:
        if (f->is_request && ieq(n, "host", 4)) {
            if (f->flags & KEEL_H1_F_HAS_HOST)
                return KEEL_EBADMSG;
            for (size_t i = 0; i < h->value_len; i++)
                if (!(cls[(uint8_t)h->value[i]] & C_HOST))
                    return KEEL_EBADMSG;
            f->flags |= KEEL_H1_F_HAS_HOST;
            f->host_index = (int)f->count;
        }
        break;
    case 6:
        if (ieq(n, "expect", 6) && h->value_len == 12 && ieq(h->value, "100-continue", 12))
            f->flags |= KEEL_H1_F_EXPECT_CONTINUE;
        break;
    case 7:
        if (ieq(n, "upgrade", 7))
            f->flags |= KEEL_H1_F_UPGRADE;
        break;
    case 10:
        if (ieq(n, "connection", 10))
            f->flags |= conn_flags(h->value, h->value_len);
        break;
    case 14:
        if (ieq(n, "content-length", 14)) {
            int64_t v;
            if (parse_cl(h->value, h->value_len, &v) != 0)
                return KEEL_EBADMSG;
            if ((f->flags & KEEL_H1_F_HAS_CL) && v != f->cl)
                return KEEL_EBADMSG;
            f->cl = v;
            f->flags |= KEEL_H1_F_HAS_CL;
        }
        break;
    case 17:
        if (ieq(n, "transfer-encoding", 17)) {
            f->flags |= KEEL_H1_F_HAS_TE;
            return parse_te(f, h->value, h->value_len);
        }
        break;
    default:
        break;
    }
    return 0;
}

/*
 * Parses header fields from pos up to and including the empty line. Bytes at or after max_head
 * are over the limit. Returns the offset after the empty line or a negative KEEL_E*.
 */
static ssize_t parse_fields(const char *b, size_t len, size_t pos, size_t max_head,
                            struct fields *f, size_t *err_off)
{
    size_t e = min_sz(len, max_head), p = pos;
    for (;;) {
        if (p >= e)
            return starve(len, max_head, KEEL_EHDRTOOLARGE, err_off);
        char c = b[p];
        if (c == '\r') {
            if (p + 1 >= e)
                return starve(len, max_head, KEEL_EHDRTOOLARGE, err_off);
            if (b[p + 1] != '\n')
                return fail(err_off, p + 1, KEEL_EBADMSG);
            return (ssize_t)(p + 2);
        }
        if (c == '\n')
            return (ssize_t)(p + 1);
        if (f->count >= f->max)
            return fail(err_off, p, KEEL_ETOOMANYHDRS);
        /* A line starting with SP/HTAB (obs-fold), an empty name, or whitespace before the
         * colon all stop the token scan at a byte that is not ':' or with nothing scanned. */
        size_t ns = p;
        while (p < e && (cls[(uint8_t)b[p]] & C_TCHAR))
            p++;
        if (p >= e)
            return starve(len, max_head, KEEL_EHDRTOOLARGE, err_off);
        if (b[p] != ':' || p == ns)
            return fail(err_off, p, KEEL_EBADMSG);
        size_t nl = p - ns;
        p++;
        while (p < e && is_ows(b[p]))
            p++;
        size_t vs = p;
        p = skip_value(b, p, e);
        if (p >= e)
            return starve(len, max_head, KEEL_EHDRTOOLARGE, err_off);
        size_t ve = p;
        if (b[p] == '\r') {
            if (p + 1 >= e)
                return starve(len, max_head, KEEL_EHDRTOOLARGE, err_off);
            if (b[p + 1] != '\n')
                return fail(err_off, p + 1, KEEL_EBADMSG);
            p += 2;
        } else if (b[p] == '\n') {
            p++;
        } else {
            return fail(err_off, p, KEEL_EBADMSG); /* NUL, CTL, DEL */
        }
        while (ve > vs && is_ows(b[ve - 1]))
            ve--;
        struct keel_http1_header *h = &f->hdrs[f->count];
        h->name = b + ns;
        h->name_len = nl;
        h->value = b + vs;
        h->value_len = ve - vs;
        int rc = on_field(f, h);
        if (rc != 0)
            return fail(err_off, vs, rc);
        f->count++;
    }
}

/*
 * Parses "HTTP/" DIGIT "." DIGIT at *pp. Returns 0 (major/minor set, *pp after it), 1 if the
 * scan end e was reached, or -1 with *pp at the offending byte.
 */
static int parse_version(const char *b, size_t *pp, size_t e, int *major, int *minor)
{
    static const char pat[] = "HTTP/d.d";
    size_t p = *pp;
    for (size_t i = 0; i < 8; i++, p++) {
        if (p >= e) {
            *pp = p;
            return 1;
        }
        char c = b[p];
        if (pat[i] == 'd') {
            if (c < '0' || c > '9') {
                *pp = p;
                return -1;
            }
            if (i == 5)
                *major = c - '0';
            else
                *minor = c - '0';
        } else if (c != pat[i]) {
            *pp = p;
            return -1;
        }
    }
    *pp = p;
    return 0;
}

/* CONNECT's authority-form: uri-host ":" port. */
static int authority_ok(const char *t, size_t tl)
{
    size_t colon = tl;
    for (size_t i = 0; i < tl; i++) {
        if (!(cls[(uint8_t)t[i]] & C_HOST))
            return 0;
        if (t[i] == ':')
            colon = i;
    }
    if (colon == 0 || colon >= tl - 1)
        return 0;
    for (size_t i = colon + 1; i < tl; i++)
        if (t[i] < '0' || t[i] > '9')
            return 0;
    return 1;
}

/* RFC 9112 3.2: which request-target form the method allows. */
static int target_ok(const char *m, size_t ml, const char *t, size_t tl)
{
    if (ml == 7 && memcmp(m, "CONNECT", 7) == 0)
        return authority_ok(t, tl);
    if (t[0] == '/')
        return 1;
    if (tl == 1 && t[0] == '*')
        return ml == 7 && memcmp(m, "OPTIONS", 7) == 0;
    /* absolute-form: scheme ":" ... */
    if (lower[(uint8_t)t[0]] < 'a' || lower[(uint8_t)t[0]] > 'z')
        return 0;
    size_t i = 1;
    while (i < tl && (cls[(uint8_t)t[i]] & C_SCHEME))
        i++;
    return i < tl && t[i] == ':';
}

static void get_limits(const struct keel_http1_limits *lim, size_t cap, size_t *max_line,
                       size_t *max_head, size_t *max_hdrs)
{
    *max_line = lim && lim->max_request_line ? lim->max_request_line : KEEL_H1_DEFAULT_MAX_LINE;
    *max_head = lim && lim->max_head ? lim->max_head : KEEL_H1_DEFAULT_MAX_HEAD;
    *max_hdrs = lim && lim->max_headers ? lim->max_headers : KEEL_H1_DEFAULT_MAX_HEADERS;
    if (*max_hdrs > cap)
        *max_hdrs = cap;
}

static void fields_init(struct fields *f, struct keel_http1_header *hdrs, size_t max,
                        int is_request)
{
    memset(f, 0, sizeof(*f));
    f->hdrs = hdrs;
    f->max = max;
    f->cl = -1;
    f->is_request = is_request;
    f->host_index = -1;
}

ssize_t keel_http1_parse_request(const char *buf, size_t len, struct keel_http1_request *req,
                                 const struct keel_http1_limits *lim, size_t *err_off)
{
    size_t max_line, max_head, max_hdrs;
    get_limits(lim, req->num_headers, &max_line, &max_head, &max_hdrs);
    const char *b = buf;
    size_t p = 0, e = min_sz(len, max_head);

    /* RFC 9112 2.2: ignore empty lines before the request-line (they count as head bytes). */
    for (;;) {
        if (p >= e)
            return starve(len, max_head, KEEL_EHDRTOOLARGE, err_off);
        if (b[p] == '\n') {
            p++;
        } else if (b[p] == '\r') {
            if (p + 1 >= e)
                return starve(len, max_head, KEEL_EHDRTOOLARGE, err_off);
            if (b[p + 1] != '\n')
                return fail(err_off, p + 1, KEEL_EBADMSG);
            p += 2;
        } else {
            break;
        }
    }

    /* The request line ends before lp; the nearer of the two limits decides the error. */
    size_t line_lim = add_sat(p, max_line);
    size_t lp = min_sz(line_lim, max_head);
    int lerr = line_lim <= max_head ? KEEL_EURITOOLONG : KEEL_EHDRTOOLARGE;
    e = min_sz(len, lp);

    size_t ms = p;
    while (p < e && (cls[(uint8_t)b[p]] & C_TCHAR))
        p++;
    if (p >= e)
        return starve(len, lp, lerr, err_off);
    if (p == ms || b[p] != ' ')
        return fail(err_off, p, KEEL_EBADMSG);
    req->method = b + ms;
    req->method_len = p - ms;
    p++;

    size_t ts = p;
    p = skip_target(b, p, e);
    if (p >= e)
        return starve(len, lp, lerr, err_off);
    if (p == ts || b[p] != ' ')
        return fail(err_off, p, KEEL_EBADMSG);
    if (!target_ok(req->method, req->method_len, b + ts, p - ts))
        return fail(err_off, ts, KEEL_EBADMSG);
    req->target = b + ts;
    req->target_len = p - ts;
    p++;

    size_t vs = p;
    int major = 0, minor = 0;
    int rc = parse_version(b, &p, e, &major, &minor);
    if (rc > 0)
        return starve(len, lp, lerr, err_off);
    if (rc < 0)
        return fail(err_off, p, KEEL_EBADMSG);
    if (p >= e)
        return starve(len, lp, lerr, err_off);
    if (b[p] == '\r') {
        if (p + 1 >= e)
            return starve(len, lp, lerr, err_off);
        if (b[p + 1] != '\n')
            return fail(err_off, p + 1, KEEL_EBADMSG);
        p += 2;
    } else if (b[p] == '\n') {
        p++;
    } else {
        return fail(err_off, p, KEEL_EBADMSG);
    }
    /* Syntactically a version, but not one we speak: 505. */
    if (major != 1 || minor > 1)
        return fail(err_off, vs, KEEL_EVERSION);
    req->minor_version = minor;

    struct fields f;
    fields_init(&f, req->headers, max_hdrs, 1);
    ssize_t end = parse_fields(b, len, p, max_head, &f, err_off);
    if (end < 0)
        return end;

    if (minor == 1 && !(f.flags & KEEL_H1_F_HAS_HOST))
        return fail(err_off, (size_t)end - 1, KEEL_EBADMSG);
    if (f.flags & KEEL_H1_F_HAS_TE) {
        /* RFC 9112 6.1/6.3: TE in 1.0, TE with CL, chunked twice or not last: bad framing. */
        if (minor == 0 || (f.flags & KEEL_H1_F_HAS_CL) || f.te_chunked > 1 || !f.te_last_chunked)
            return fail(err_off, (size_t)end - 1, KEEL_EBADMSG);
        if (f.te_other)
            return fail(err_off, (size_t)end - 1, KEEL_ENOTIMPL);
        f.flags |= KEEL_H1_F_CHUNKED;
    }
    req->headers = f.hdrs;
    req->num_headers = f.count;
    req->content_length = f.cl;
    req->host_index = f.host_index;
    req->flags = f.flags;
    return end;
}

ssize_t keel_http1_parse_response(const char *buf, size_t len, struct keel_http1_response *resp,
                                  const struct keel_http1_limits *lim, size_t *err_off)
{
    size_t max_line, max_head, max_hdrs;
    get_limits(lim, resp->num_headers, &max_line, &max_head, &max_hdrs);
    const char *b = buf;
    size_t lp = min_sz(max_line, max_head), p = 0, e = min_sz(len, lp);

    int major = 0, minor = 0;
    int rc = parse_version(b, &p, e, &major, &minor);
    if (rc > 0)
        return starve(len, lp, KEEL_EHDRTOOLARGE, err_off);
    if (rc < 0)
        return fail(err_off, p, KEEL_EBADMSG);
    if (major != 1 || minor > 1)
        return fail(err_off, p - 1, KEEL_EBADMSG);
    int status = 0;
    for (int i = 0; i < 4; i++, p++) {
        if (p >= e)
            return starve(len, lp, KEEL_EHDRTOOLARGE, err_off);
        if (i == 0) {
            if (b[p] != ' ')
                return fail(err_off, p, KEEL_EBADMSG);
        } else {
            if (b[p] < '0' || b[p] > '9')
                return fail(err_off, p, KEEL_EBADMSG);
            status = status * 10 + (b[p] - '0');
        }
    }
    if (status < 100)
        return fail(err_off, p - 1, KEEL_EBADMSG);
    if (p >= e)
        return starve(len, lp, KEEL_EHDRTOOLARGE, err_off);
    size_t rs = p, re = p;
    /* The SP before an empty reason-phrase is often missing: tolerate it. */
    if (b[p] == ' ') {
        p++;
        rs = p;
        p = skip_value(b, p, e);
        if (p >= e)
            return starve(len, lp, KEEL_EHDRTOOLARGE, err_off);
        re = p;
    }
    if (b[p] == '\r') {
        if (p + 1 >= e)
            return starve(len, lp, KEEL_EHDRTOOLARGE, err_off);
        if (b[p + 1] != '\n')
            return fail(err_off, p + 1, KEEL_EBADMSG);
        p += 2;
    } else if (b[p] == '\n') {
        p++;
    } else {
        return fail(err_off, p, KEEL_EBADMSG);
    }
    resp->minor_version = minor;
    resp->status = status;
    resp->reason = b + rs;
    resp->reason_len = re - rs;

    struct fields f;
    fields_init(&f, resp->headers, max_hdrs, 0);
    ssize_t end = parse_fields(b, len, p, max_head, &f, err_off);
    if (end < 0)
        return end;
    if (f.flags & KEEL_H1_F_HAS_TE) {
        /* A final coding other than chunked means "until close"; anything else odd is bad
         * framing (RFC 9112 6.1, 6.3). */
        if (minor == 0 || (f.flags & KEEL_H1_F_HAS_CL) || f.te_chunked > 1 ||
            (f.te_chunked && !f.te_last_chunked))
            return fail(err_off, (size_t)end - 1, KEEL_EBADMSG);
        if (f.te_last_chunked)
            f.flags |= KEEL_H1_F_CHUNKED;
    }
    resp->headers = f.hdrs;
    resp->num_headers = f.count;
    resp->content_length = f.cl;
    resp->flags = f.flags;
    return end;
}

enum keel_http1_body keel_http1_request_body(const struct keel_http1_request *req)
{
    if (req->flags & KEEL_H1_F_CHUNKED)
        return KEEL_H1_BODY_CHUNKED;
    if (req->content_length > 0)
        return KEEL_H1_BODY_LENGTH;
    return KEEL_H1_BODY_NONE;
}

enum keel_http1_body keel_http1_response_body(const struct keel_http1_response *resp, int is_head)
{
    if (is_head || resp->status < 200 || resp->status == 204 || resp->status == 304)
        return KEEL_H1_BODY_NONE;
    if (resp->flags & KEEL_H1_F_CHUNKED)
        return KEEL_H1_BODY_CHUNKED;
    if (resp->flags & KEEL_H1_F_HAS_TE)
        return KEEL_H1_BODY_UNTIL_CLOSE;
    /* Content-Length: 0 is reported as NONE, never as a LENGTH of zero bytes. */
    if (resp->content_length > 0)
        return KEEL_H1_BODY_LENGTH;
    if (resp->content_length == 0)
        return KEEL_H1_BODY_NONE;
    return KEEL_H1_BODY_UNTIL_CLOSE;
}

void keel_http1_chunked_init(struct keel_http1_chunked *c)
{
    memset(c, 0, sizeof(*c));
}

/* A size line ended: payload follows, or the trailer section for the last-chunk. */
static int size_line_end(struct keel_http1_chunked *c)
{
    c->line_len = 0;
    c->size_digits = 0;
    if (c->remaining == 0) {
        c->trailer_bytes = 0;
        return CK_TR_START;
    }
    return CK_DATA;
}

int keel_http1_chunked_feed(struct keel_http1_chunked *c, char *buf, size_t len, int decode,
                            size_t *consumed, size_t *data_len, int *done)
{
    size_t p = 0, out = 0;
    int st = c->state;
    if (st == CK_ERROR)
        goto bad;
    while (p < len && st != CK_DONE) {
        if (st == CK_DATA) {
            size_t n = len - p;
            if (n > c->remaining)
                n = (size_t)c->remaining;
            if (decode && out != p)
                memmove(buf + out, buf + p, n);
            out += n;
            p += n;
            c->remaining -= n;
            c->total += n;
            if (c->remaining == 0)
                st = CK_DATA_CR;
            continue;
        }
        uint8_t ch = (uint8_t)buf[p];
        if (st < CK_DATA) {
            if (++c->line_len > CK_MAX_LINE)
                goto bad;
        } else if (st >= CK_TR_START) {
            if (++c->trailer_bytes > CK_MAX_TRAILER)
                goto bad;
        }
        switch (st) {
        case CK_SIZE:
            if (hexval[ch] != 0xff) {
                if (c->size_digits >= CK_MAX_DIGITS)
                    goto bad;
                c->remaining = c->remaining << 4 | hexval[ch];
                c->size_digits++;
            } else if (c->size_digits == 0) {
                goto bad;
            } else if (ch == ';') {
                st = CK_EXT;
            } else if (ch == ' ' || ch == '\t') {
                st = CK_SIZE_BWS;
            } else if (ch == '\r') {
                st = CK_SIZE_LF;
            } else if (ch == '\n') {
                st = size_line_end(c);
            } else {
                goto bad;
            }
            break;
        case CK_SIZE_BWS:
            if (ch == ';')
                st = CK_EXT;
            else if (ch != ' ' && ch != '\t')
                goto bad;
            break;
        case CK_EXT:
            if (ch == '\r')
                st = CK_SIZE_LF;
            else if (ch == '\n')
                st = size_line_end(c);
            else if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
                goto bad;
            break;
        case CK_SIZE_LF:
            if (ch != '\n')
                goto bad;
            st = size_line_end(c);
            break;
        case CK_DATA_CR:
            /* Exactly CRLF after the payload: a bare LF or other bytes here are how
             * request smuggling via chunk lengths usually starts. */
            if (ch != '\r')
                goto bad;
            st = CK_DATA_LF;
            break;
        case CK_DATA_LF:
            if (ch != '\n')
                goto bad;
            st = CK_SIZE;
            break;
        case CK_TR_START:
            if (ch == '\r')
                st = CK_END_LF;
            else if (ch == '\n')
                st = CK_DONE;
            else if (cls[ch] & C_TCHAR)
                st = CK_TR_NAME;
            else
                goto bad; /* obs-fold, empty name, CTL */
            break;
        case CK_TR_NAME:
            if (ch == ':')
                st = CK_TR_VALUE;
            else if (!(cls[ch] & C_TCHAR))
                goto bad;
            break;
        case CK_TR_VALUE:
            if (ch == '\r')
                st = CK_TR_LF;
            else if (ch == '\n')
                st = CK_TR_START;
            else if (!(cls[ch] & C_VALUE))
                goto bad;
            break;
        case CK_TR_LF:
        case CK_END_LF:
            if (ch != '\n')
                goto bad;
            st = st == CK_TR_LF ? CK_TR_START : CK_DONE;
            break;
        default:
            goto bad;
        }
        p++;
    }
    c->state = st;
    if (consumed)
        *consumed = p;
    if (data_len)
        *data_len = out;
    if (done)
        *done = st == CK_DONE;
    return 0;

bad:
    c->state = CK_ERROR;
    if (consumed)
        *consumed = p;
    if (data_len)
        *data_len = out;
    if (done)
        *done = 0;
    return KEEL_EBADMSG;
}

int keel_http1_name_eq(const struct keel_http1_header *h, const char *lower_name)
{
    size_t n = strlen(lower_name);
    return h->name_len == n && ieq(h->name, lower_name, n);
}

int keel_http1_value_has_token(const char *value, size_t len, const char *lower_token)
{
    size_t tl = strlen(lower_token);
    if (tl == 0 || len == 0)
        return 0;
    const char *p = value, *end = value + len, *s;
    size_t el;
    while (list_next(&p, end, &s, &el))
        if (el == tl && ieq(s, lower_token, tl))
            return 1;
    return 0;
}

const char *keel_http1_reason(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 101:
        return "Switching Protocols";
    case 103:
        return "Early Hints";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 206:
        return "Partial Content";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 303:
        return "See Other";
    case 304:
        return "Not Modified";
    case 307:
        return "Temporary Redirect";
    case 308:
        return "Permanent Redirect";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 410:
        return "Gone";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 431:
        return "Request Header Fields Too Large";
    case 429:
        return "Too Many Requests";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    }
    return "Unknown";
}
