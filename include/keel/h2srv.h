/* SPDX-License-Identifier: MIT */
/* Sans-I/O HTTP/2 server session: h2 frames in and out, each stream as HTTP/1.1 bytes. [any] */
#ifndef KEEL_H2SRV_H
#define KEEL_H2SRV_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <nghttp2/nghttp2.h>

/*
 * One HTTP/2 server connection on nghttp2. Every request stream is turned into the bytes of an
 * HTTP/1.1 request (head, then the body chunked unless content-length was given, trailers as a
 * chunked trailer section), which the owner pulls; the owner answers with the bytes of an
 * HTTP/1.1 response, which become HEADERS, DATA and trailing HEADERS. Connection-specific
 * fields are dropped both ways, cookies are joined (RFC 9113 8.2.3).
 *
 * Flow control follows the owner: the window of a stream (and of the connection) is opened
 * again only for bytes the owner pulled, so a slow upstream cannot make keel buffer more than
 * one window per stream. Response bytes are taken up to a per-stream bound.
 *
 * Protections (a violation ends the connection with GOAWAY, counted in `abuse`): header list
 * larger than max_header_list or with more than max_headers fields (HPACK bombs), more than 8
 * CONTINUATION frames in one header block (nghttp2's own limit, CVE-2024-28182; keel counts
 * too, at 32, for a libnghttp2 without it), stream resets by the client or caused by its
 * protocol errors faster than a token bucket allows (rapid reset CVE-2023-44487, MadeYouReset),
 * control frames (PING, SETTINGS, PRIORITY, empty DATA, WINDOW_UPDATE) faster than a token
 * bucket allows, and nghttp2's own flood detection (unread ACKs).
 */

struct keel_h2srv;
struct keel_h2srv_stream;

struct keel_h2srv_cfg {
    uint32_t max_concurrent_streams; /* advertised and enforced, default 100 */
    uint32_t initial_window_size;    /* per stream, default 256 KiB */
    size_t max_header_list;          /* decoded bytes (name + value + 32 each), default 64 KiB */
    size_t max_headers;              /* fields per block, default 100 */
    int tls;                         /* ":scheme" expected https; informational */
};

/* Why a connection was ended by keel (keel_h2srv_abuse). */
enum keel_h2srv_abuse {
    KEEL_H2_ABUSE_NONE = 0,
    KEEL_H2_ABUSE_HEADERS,      /* header list too large / too many fields */
    KEEL_H2_ABUSE_CONTINUATION, /* CONTINUATION flood */
    KEEL_H2_ABUSE_RESET,        /* rapid reset / MadeYouReset */
    KEEL_H2_ABUSE_CONTROL,      /* PING / SETTINGS / PRIORITY / empty frame flood */
    KEEL_H2_ABUSE_FLOOD,        /* nghttp2: too many queued ACKs (peer not reading) */
    KEEL_H2_ABUSE_PROTOCOL,     /* connection error (bad frame, bad preface, ...) */
};

/** Name of an abuse reason for logs. [any] */
const char *keel_h2srv_abuse_str(enum keel_h2srv_abuse a);

struct keel_h2srv_cbs {
    /** A request head is complete; its HTTP/1.1 bytes can be pulled. Return the owner's
     *  pointer for the stream, or NULL to refuse it (REFUSED_STREAM). */
    void *(*on_request)(void *ud, struct keel_h2srv_stream *st);
    /** The stream has new request bytes (or its request ended) for the owner. */
    void (*on_readable)(void *ud, void *stream_ud);
    /** The stream can take response bytes again. */
    void (*on_writable)(void *ud, void *stream_ud);
    /** The stream is gone (client reset, or connection ending); stop using it. error_code is
     *  the HTTP/2 error code (0: closed normally). */
    void (*on_close)(void *ud, void *stream_ud, uint32_t error_code);
};

/** Creates a server session and queues its SETTINGS. NULL on ENOMEM. [any] */
struct keel_h2srv *keel_h2srv_new(const struct keel_h2srv_cfg *cfg,
                                  const struct keel_h2srv_cbs *cbs, void *ud);
/** Frees the session. The owner must have dropped every stream first (streams still open
 *  get no more callbacks). [any] */
void keel_h2srv_free(struct keel_h2srv *h);

/**
 * Feeds received bytes (starting with the client connection preface).
 * @return bytes consumed (all of len), or KEEL_EBADMSG: the connection must end; a GOAWAY may
 *         be queued, write it (keel_h2srv_send) before closing. [any]
 */
ssize_t keel_h2srv_recv(struct keel_h2srv *h, const uint8_t *p, size_t len);

/** Copies up to cap bytes of frames to send into dst. @return bytes copied (0: nothing to
 *  send now), or KEEL_EBADMSG when the session failed. [any] */
ssize_t keel_h2srv_send(struct keel_h2srv *h, uint8_t *dst, size_t cap);

/** Whether the session has frames to send. [any] */
int keel_h2srv_want_write(const struct keel_h2srv *h);
/** Whether the session can still read or write anything; 0: the connection can close. */
int keel_h2srv_alive(const struct keel_h2srv *h);
/** The owner's pointer of some stream still attached to an owner, or NULL when none is:
 *  lets the owner end all of its streams (each detach removes one). [any] */
void *keel_h2srv_any_owner(const struct keel_h2srv *h);
/** Open streams. [any] */
size_t keel_h2srv_streams(const struct keel_h2srv *h);
/** Whether some stream has response bytes waiting for the client's flow-control window. */
int keel_h2srv_blocked(const struct keel_h2srv *h);
/** Queues a GOAWAY: graceful (no error, the last stream seen stays served) or not
 *  (error_code, e.g. 0xb ENHANCE_YOUR_CALM). [any] */
void keel_h2srv_goaway(struct keel_h2srv *h, uint32_t error_code);
/** Why keel ended the connection, or KEEL_H2_ABUSE_NONE. [any] */
enum keel_h2srv_abuse keel_h2srv_abuse(const struct keel_h2srv *h);
/** Sets the clock (milliseconds, monotonic) used by the rate limits. [any] */
void keel_h2srv_set_now(struct keel_h2srv *h, uint64_t now_ms);

/* Per stream. */

/** HTTP/2 stream id. [any] */
int32_t keel_h2srv_stream_id(const struct keel_h2srv_stream *st);
/** Whether the request is gRPC (content-type application/grpc...). [any] */
int keel_h2srv_stream_grpc(const struct keel_h2srv_stream *st);
/** The request's grpc-timeout in milliseconds (0: none; capped at one day). [any] */
uint32_t keel_h2srv_stream_deadline_ms(const struct keel_h2srv_stream *st);
/** Request bytes ready to pull. [any] */
size_t keel_h2srv_stream_readable(const struct keel_h2srv_stream *st);
/** Whether the whole request has been produced (pulling returns the rest, then nothing). */
int keel_h2srv_stream_req_ended(const struct keel_h2srv_stream *st);
/** Moves up to cap request bytes into dst and opens the flow-control window for them.
 *  @return bytes moved. [any] */
size_t keel_h2srv_stream_pull(struct keel_h2srv_stream *st, char *dst, size_t cap);
/** Response bytes the stream can take now. [any] */
size_t keel_h2srv_stream_room(const struct keel_h2srv_stream *st);
/**
 * Feeds HTTP/1.1 response bytes (head, then the body as framed by the head).
 * @return bytes taken (<= room; bytes after the end of the response are not taken), or
 *         KEEL_EBADMSG (the stream is reset). [any]
 */
ssize_t keel_h2srv_stream_write(struct keel_h2srv_stream *st, const char *p, size_t len);
/** Whether the whole response has been taken. [any] */
int keel_h2srv_stream_resp_ended(const struct keel_h2srv_stream *st);
/** Answers a gRPC request keel itself failed: trailers-only response with grpc-status and
 *  grpc-message (status 200). Only before any response byte. @return 0 or KEEL_EINVAL. */
int keel_h2srv_stream_grpc_error(struct keel_h2srv_stream *st, int grpc_status, const char *msg);
/** The owner is done with the stream: an unfinished response is reset (INTERNAL_ERROR), an
 *  unfinished request is reset with NO_ERROR once the response is complete. No more
 *  callbacks for it. [any] */
void keel_h2srv_stream_detach(struct keel_h2srv_stream *st);

/**
 * The allocator keel's nghttp2 sessions use (pass it to nghttp2_session_*_new3): blocks up to
 * 4 KiB come from bounded per-thread free lists (at most ~450 KiB cached per thread, freed
 * when the thread ends), larger ones straight from malloc. Any thread may free a block; the
 * object is shared: never modify it. [any]
 */
nghttp2_mem *keel_h2srv_mem(void);

#endif
