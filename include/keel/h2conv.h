/* SPDX-License-Identifier: MIT */
/* Sans-I/O conversions between HTTP/1.1 message text and HTTP/2 header lists (nghttp2_nv). [any] */
#ifndef KEEL_H2CONV_H
#define KEEL_H2CONV_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <nghttp2/nghttp2.h>
#include "keel/http1.h"

/*
 * Every function here is pure: bytes and structs in, bytes and structs out, no I/O, no
 * globals. nghttp2_nv arrays produced here point into the caller's input buffer (values) and
 * into the caller's scratch buffer (lower-cased names); they carry no NO_COPY flags, so
 * nghttp2_submit_* copies them and the buffers may go once the submit call returned.
 */

/* Options of keel_h2conv_request(). */
enum {
    KEEL_H2CONV_HTTPS = 1u << 0,       /* :scheme https (else http) */
    KEEL_H2CONV_TE_TRAILERS = 1u << 1, /* always send "te: trailers" (gRPC) */
};

/**
 * Converts a parsed HTTP/1.1 request head into an HTTP/2 header list: :method, :scheme,
 * :authority (from an absolute-form target, else from Host; omitted without either), :path
 * (origin-form; "*" for OPTIONS *; "/" for an absolute-form target without a path), then the
 * fields with lower-cased names. Dropped: Host, Connection, Keep-Alive, Proxy-Connection,
 * Transfer-Encoding, Upgrade, HTTP2-Settings, every field named by a Connection token, and TE
 * unless it lists "trailers" (sent as "te: trailers").
 *
 * @param req      a request from keel_http1_parse_request(); its buffer must stay valid until
 *                 the nv array has been submitted (values are not copied).
 * @param flags    KEEL_H2CONV_*.
 * @param nv       out: array of capacity *n_nv; *n_nv is set to the count on success.
 * @param scratch  out: lower-cased names are written here (needs at most the sum of the
 *                 field name lengths plus 16 bytes).
 * @return 0, KEEL_ENOTIMPL for CONNECT (no tunnels over HTTP/2 upstreams), KEEL_EBADMSG for
 *         a target that is neither origin-form, absolute-form nor "*", KEEL_EINVAL when nv or
 *         scratch is too small. [any]
 */
int keel_h2conv_request(const struct keel_http1_request *req, unsigned flags, nghttp2_nv *nv,
                        size_t *n_nv, char *scratch, size_t scratch_len);

/**
 * Converts a parsed HTTP/1.1 response head into an HTTP/2 header list: :status, then the
 * fields lower-cased, minus the connection-specific ones dropped for requests (Content-Length
 * is kept). For an HTTP/2 server answering with a response from an HTTP/1.1 upstream.
 * @param status_buf 4 bytes the :status value is written to (referenced by nv).
 * Same buffers, capacity rules and returns as keel_h2conv_request, except: no KEEL_ENOTIMPL,
 * and KEEL_EBADMSG for a status outside 100..999. [any]
 */
int keel_h2conv_response(const struct keel_http1_response *resp, nghttp2_nv *nv, size_t *n_nv,
                         char *scratch, size_t scratch_len, char status_buf[4]);

/* Which header block a keel_h2conv_head collects. */
enum keel_h2conv_kind {
    KEEL_H2CONV_RESPONSE, /* response head: ":status" first, then fields */
    KEEL_H2CONV_TRAILERS, /* trailer section: fields only */
};

/* finish() options. */
enum {
    KEEL_H2CONV_F_END_STREAM = 1u << 0, /* the block carried END_STREAM: no body follows */
    KEEL_H2CONV_F_HEAD = 1u << 1,       /* the request was HEAD: no body, framing fields kept */
    KEEL_H2CONV_F_CHUNKED = 1u << 2,    /* use chunked even with a Content-Length (trailers) */
};

/*
 * Collects one HTTP/2 header block, field by field as nghttp2's on_header callback delivers
 * them, as HTTP/1.1 text: "HTTP/1.1 <status> <reason>\r\n" + "name: value\r\n"... for a
 * response, only the field lines for trailers. The text lives in a buffer the struct owns
 * (malloc), bounded by max.
 */
struct keel_h2conv_head {
    char *buf;
    size_t len, cap, max;
    enum keel_h2conv_kind kind;
    int status;             /* :status, 0 until seen */
    int64_t content_length; /* -1 when absent */
    int body;               /* after finish: enum keel_http1_body of the HTTP/1.1 message */
};

/** Prepares an empty collector (no allocation yet). max: bound of the text in bytes. [any] */
void keel_h2conv_head_init(struct keel_h2conv_head *h, enum keel_h2conv_kind kind, size_t max);

/**
 * Adds one field. Pseudo-headers: only ":status" (3 digits, first, once) in a response;
 * connection-specific fields (connection, keep-alive, proxy-connection, transfer-encoding,
 * upgrade) are dropped; content-length is remembered (written by finish) and must be a
 * decimal number that agrees with an earlier one.
 * @return 0, KEEL_EBADMSG (misplaced or unknown pseudo-header, bad status, a name or value
 *         with bytes HTTP/1.1 cannot carry: upper case, CR, LF, NUL, ':' in a name...),
 *         KEEL_EHDRTOOLARGE (over max), KEEL_ENOMEM. [any]
 */
int keel_h2conv_head_add(struct keel_h2conv_head *h, const uint8_t *name, size_t name_len,
                         const uint8_t *value, size_t value_len);

/**
 * Completes a response head: adds the framing field and the blank line. A message that can
 * have no body (1xx, 204, 304, F_HEAD) keeps Content-Length as received and gets nothing
 * else; with F_END_STREAM and no Content-Length it gets "Content-Length: 0"; else
 * "Content-Length: N" when the server sent one and F_CHUNKED is not set, or
 * "Transfer-Encoding: chunked". Sets h->body to the resulting KEEL_H1_BODY_* framing.
 * Trailers: only the blank line that ends the chunked trailer section is added.
 * @return 0, KEEL_EBADMSG (a response without :status), KEEL_EHDRTOOLARGE, KEEL_ENOMEM. [any]
 */
int keel_h2conv_head_finish(struct keel_h2conv_head *h, unsigned flags);

/** Empties the collector for reuse (after a 1xx response), keeping its buffer. [any] */
void keel_h2conv_head_reset(struct keel_h2conv_head *h);

/** Frees the collector's buffer. [any] */
void keel_h2conv_head_free(struct keel_h2conv_head *h);

/*
 * Streaming decoder of a chunked HTTP/1.1 body into its payload spans (in place: pointers into
 * the input, nothing copied) and its trailer section (collected, bounded, as text).
 */
struct keel_h2conv_unchunk {
    int state;
    uint64_t remaining; /* payload bytes left in the current chunk */
    size_t line_len;    /* bytes of the current size line */
    int digits;
    char *trailers; /* trailer field lines as received (CRLF or LF), malloc */
    size_t trailers_len, trailers_cap;
    uint64_t total; /* payload bytes so far */
};

/* keel_h2conv_unchunk_feed() results. */
enum {
    KEEL_H2CONV_NEED = 0, /* all input consumed (or payload waits for max_data room) */
    KEEL_H2CONV_DATA = 1, /* a payload span: data_off and data_len within buf */
    KEEL_H2CONV_DONE = 2, /* last chunk and trailer section consumed */
};

#define KEEL_H2CONV_MAX_TRAILERS 16384

/** Zero-initialises a decoder. [any] */
void keel_h2conv_unchunk_init(struct keel_h2conv_unchunk *u);

/**
 * Feeds chunked body bytes. Framing bytes are consumed freely; payload is handed out as soon
 * as it is seen, at most max_data bytes per call (0: payload waits, *consumed stops before
 * it). Call again with the rest (buf + *consumed) until NEED or DONE.
 * @param consumed out: bytes of buf used (up to and including a returned payload span).
 * @return KEEL_H2CONV_NEED, KEEL_H2CONV_DATA (with *data_off, *data_len > 0 set),
 *         KEEL_H2CONV_DONE (bytes after *consumed are not part of the body), KEEL_EBADMSG
 *         (bad size line, missing CRLF after payload, bad trailer field), KEEL_EHDRTOOLARGE
 *         (trailers over KEEL_H2CONV_MAX_TRAILERS), KEEL_ENOMEM. After an error every call
 *         returns KEEL_EBADMSG. [any]
 */
int keel_h2conv_unchunk_feed(struct keel_h2conv_unchunk *u, const char *buf, size_t len,
                             size_t max_data, size_t *consumed, size_t *data_off, size_t *data_len);

/** Frees the trailer text. [any] */
void keel_h2conv_unchunk_free(struct keel_h2conv_unchunk *u);

/**
 * Converts trailer field lines ("Name: value" ending in CRLF or LF, as collected by the
 * decoder) into an HTTP/2 trailer list with lower-cased names; drops the fields HTTP/2
 * forbids or that mean nothing in trailers (connection-specific ones, content-length, host,
 * te, trailer).
 * @return 0, KEEL_EBADMSG (a line without ':' or with an empty name), KEEL_EINVAL (nv or
 *         scratch too small: scratch needs at most len bytes). [any]
 */
int keel_h2conv_trailers(const char *text, size_t len, nghttp2_nv *nv, size_t *n_nv, char *scratch,
                         size_t scratch_len);

#endif
