/* SPDX-License-Identifier: MIT */
/* Sans-I/O HTTP/1.x message head parser and chunked body decoder (RFC 9110/9112). [any] */
#ifndef KEEL_HTTP1_H
#define KEEL_HTTP1_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Limits applied while parsing a head. Zero means "use the default". */
struct keel_http1_limits {
    size_t max_request_line; /* request line (or status line) bytes incl. CRLF; default 8192 */
    size_t max_head;         /* whole head incl. request line and final CRLF; default 65536 */
    size_t max_headers;      /* number of header fields; default 100 (and <= caller's array) */
};

#define KEEL_H1_DEFAULT_MAX_LINE 8192
#define KEEL_H1_DEFAULT_MAX_HEAD 65536
#define KEEL_H1_DEFAULT_MAX_HEADERS 100

/* Pointers into the caller's buffer; valid while that buffer is. Names are as received. */
struct keel_http1_header {
    const char *name;
    size_t name_len;
    const char *value; /* leading/trailing OWS stripped */
    size_t value_len;
};

/* Framing and connection facts derived while parsing (flags). */
enum {
    KEEL_H1_F_CHUNKED = 1u << 0,         /* Transfer-Encoding ends in "chunked" */
    KEEL_H1_F_CONN_CLOSE = 1u << 1,      /* Connection: close present */
    KEEL_H1_F_CONN_KEEPALIVE = 1u << 2,  /* Connection: keep-alive present */
    KEEL_H1_F_CONN_UPGRADE = 1u << 3,    /* Connection: upgrade token present */
    KEEL_H1_F_UPGRADE = 1u << 4,         /* Upgrade header present */
    KEEL_H1_F_EXPECT_CONTINUE = 1u << 5, /* Expect: 100-continue (case-insensitive) */
    KEEL_H1_F_HAS_HOST = 1u << 6,        /* exactly one Host header present */
    KEEL_H1_F_HAS_TE = 1u << 7,          /* a Transfer-Encoding header is present */
    KEEL_H1_F_HAS_CL = 1u << 8,          /* a Content-Length header is present */
};

struct keel_http1_request {
    const char *method;
    size_t method_len;
    const char *target; /* request-target as received */
    size_t target_len;
    int minor_version;                 /* HTTP/1.<minor>: 0 or 1 */
    struct keel_http1_header *headers; /* caller-provided array */
    size_t num_headers;                /* in: capacity of headers[]; out: count */
    int64_t content_length;            /* -1 when absent */
    int host_index;                    /* index of the Host header in headers[], or -1 */
    unsigned flags;                    /* KEEL_H1_F_* */
};

struct keel_http1_response {
    int minor_version;
    int status; /* 100..999 */
    const char *reason;
    size_t reason_len;
    struct keel_http1_header *headers; /* caller-provided array */
    size_t num_headers;                /* in: capacity; out: count */
    int64_t content_length;            /* -1 when absent */
    unsigned flags;                    /* KEEL_H1_F_* */
};

/**
 * Parses one request head from buf[0..len).
 *
 * Strict per RFC 9112: rejects bare CR, bare LF line endings are accepted only as the
 * terminator of a line that also follows the grammar (CRLF or LF), obs-fold, whitespace
 * between a field name and the colon, invalid token characters in method or field names,
 * control characters in the request-target or field values, Content-Length together with
 * Transfer-Encoding, several differing Content-Length values, a non-numeric Content-Length,
 * Transfer-Encoding not ending in "chunked" (or any coding keel cannot forward: 501), a
 * missing or duplicated Host in HTTP/1.1, HTTP versions other than 1.0/1.1 (505).
 *
 * @param req      out; req->headers/num_headers must be set by the caller (capacity).
 * @param lim      limits, or NULL for defaults.
 * @param err_off  out, optional: offset of the offending byte on error.
 * @return bytes consumed (the head incl. the blank line), KEEL_EAGAIN if more bytes are
 *         needed, KEEL_EBADMSG (400), KEEL_EURITOOLONG (414), KEEL_EHDRTOOLARGE or
 *         KEEL_ETOOMANYHDRS (431), KEEL_ENOTIMPL (501), KEEL_EVERSION (505).
 *         Limit errors are reported as soon as the limit is passed, also when incomplete.
 *         [any]
 */
ssize_t keel_http1_parse_request(const char *buf, size_t len, struct keel_http1_request *req,
                                 const struct keel_http1_limits *lim, size_t *err_off);

/**
 * Parses one response head (status line + fields). Same strictness as requests, minus
 * Host. 1xx responses are returned like any other; the caller loops for the final one.
 * @return bytes consumed, KEEL_EAGAIN, KEEL_EBADMSG, KEEL_EHDRTOOLARGE, KEEL_ETOOMANYHDRS,
 *         KEEL_ENOTIMPL. [any]
 */
ssize_t keel_http1_parse_response(const char *buf, size_t len, struct keel_http1_response *resp,
                                  const struct keel_http1_limits *lim, size_t *err_off);

enum keel_http1_body {
    KEEL_H1_BODY_NONE,       /* no body bytes follow */
    KEEL_H1_BODY_LENGTH,     /* exactly content_length bytes follow */
    KEEL_H1_BODY_CHUNKED,    /* chunked coding follows */
    KEEL_H1_BODY_UNTIL_CLOSE /* response body delimited by connection close */
};

/** Body framing of a parsed request (RFC 9112 6.3). [any] */
enum keel_http1_body keel_http1_request_body(const struct keel_http1_request *req);

/**
 * Body framing of a parsed response, given the request method was HEAD (is_head) or CONNECT.
 * 1xx, 204, 304 and responses to HEAD have none. [any]
 */
enum keel_http1_body keel_http1_response_body(const struct keel_http1_response *resp, int is_head);

/** Streaming chunked-coding decoder state. Zero-initialise (or call _init) before use. */
struct keel_http1_chunked {
    int state;
    uint64_t remaining;   /* payload bytes left in the current chunk */
    size_t line_len;      /* bytes of the current size/trailer line seen so far */
    size_t trailer_bytes; /* total trailer bytes seen */
    int size_digits;      /* hex digits seen in the current size */
    uint64_t total;       /* payload bytes decoded so far */
};

/** Resets a chunked decoder. [any] */
void keel_http1_chunked_init(struct keel_http1_chunked *c);

/**
 * Feeds len bytes of a chunked body. Accepts chunk extensions (skipped, bounded) and
 * trailer fields (bounded to 64 KiB, validated like header fields).
 *
 * With decode=0 the buffer is only validated; with decode=1 the payload bytes are moved to the
 * front of buf in place and *data_len is set to their count.
 *
 * @param consumed out: bytes of buf that belong to the chunked body (on success <= len).
 * @param done     out: 1 once the last-chunk and trailers (and final CRLF) were consumed;
 *                 bytes after *consumed belong to the next message.
 * @return 0, or KEEL_EBADMSG for bad chunk sizes (non-hex, overflow over 2^62, empty),
 *         bare CR/LF in framing, or bad trailers. [any]
 */
int keel_http1_chunked_feed(struct keel_http1_chunked *c, char *buf, size_t len, int decode,
                            size_t *consumed, size_t *data_len, int *done);

/** Case-insensitive comparison of a header name with a NUL-terminated lowercase name. [any] */
int keel_http1_name_eq(const struct keel_http1_header *h, const char *lower_name);

/**
 * Whether a comma-separated header value contains token (case-insensitive, OWS trimmed).
 * [any]
 */
int keel_http1_value_has_token(const char *value, size_t len, const char *lower_token);

/** Reason phrase of a status code ("Unknown" for one keel has no text for). [any] */
const char *keel_http1_reason(int status);

#endif
