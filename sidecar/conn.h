/* SPDX-License-Identifier: MIT */
/* Downstream and upstream connection objects of a worker. [worker] */
#ifndef KEEL_CONN_H
#define KEEL_CONN_H

#include "worker.h"

struct keel_sock;

/*
 * A virtual socket: one HTTP/2 stream that the HTTP/1.1 exchange code (http_proxy.c) reads and
 * writes as if it were a connection carrying HTTP/1.1 bytes (h2_server.c on the client side,
 * h2_upstream.c on the upstream side translate). The watchers of a virtual socket are never
 * started: the owner's wishes are kept in want_r/want_w, and the implementation feeds EV_READ
 * / EV_WRITE to them (keel_sock_feed) when it has bytes for the owner or room for its output.
 */
struct keel_vsock_ops {
    /** Moves bytes for the owner into s->in (at most max buffered in total). Same returns as
     *  keel_sock_read: >0, 0 at the end of the stream (sets rd_eof), KEEL_EAGAIN, or an error. */
    ssize_t (*read)(struct keel_sock *s, size_t max);
    /** Takes s->out (consuming what it took) and then up to extra_len bytes of extra. Same
     *  returns as keel_sock_flush. */
    ssize_t (*flush)(struct keel_sock *s, const char *extra, size_t extra_len);
    /** want_r / want_w changed (or were set again): feed events that can be met now. */
    void (*want)(struct ev_loop *loop, struct keel_sock *s);
    /** The owner sends no more bytes (SHUT_WR). */
    void (*shutdown)(struct keel_sock *s);
    /** The owner is done with the stream; s->vctx must not be used afterwards. */
    void (*close)(struct keel_sock *s);
    /** Upstream side: 0 once the stream can carry the request, or a KEEL_E* connect error. */
    int (*connect_result)(struct keel_sock *s);
};

/* A non-blocking socket (or a virtual one) with its watchers and buffers. */
struct keel_sock {
    int fd; /* -1 for a virtual socket */
    ev_io rio;
    ev_io wio;
    struct keel_buf in;                /* bytes read and not yet consumed */
    struct keel_buf out;               /* bytes owned by this side, queued for writing */
    unsigned rd_eof : 1;               /* peer sent FIN */
    unsigned wr_shut : 1;              /* we sent FIN */
    unsigned want_r : 1;               /* the owner wants EV_READ (keel_sock_want) */
    unsigned want_w : 1;               /* the owner wants EV_WRITE */
    const struct keel_vsock_ops *vops; /* virtual socket, or NULL */
    void *vctx;                        /* the implementation's stream */
    /* TLS (tls.c): read/flush go through the SSL object when set. */
    struct ssl_st *ssl;          /* SSL *, owned; NULL: plain */
    size_t ssl_wpend;            /* length of a TLS write that must be repeated (0: none) */
    size_t ssl_full_at;          /* in.len when a read stopped at the caller's max */
    unsigned ssl_rd_wants_w : 1; /* the last TLS read waits for EV_WRITE (rio watches it) */
    unsigned ssl_wr_wants_r : 1; /* the last TLS write waits for EV_READ (wio watches it) */
    unsigned ssl_more : 1;       /* an EOF or error waits behind bytes already delivered */
    unsigned ssl_dead : 1;       /* fatal TLS error: no more I/O, no close_notify */
    unsigned ssl_client : 1;     /* connect side (upstream) */
};

enum keel_conn_state {
    KEEL_CS_IDLE,    /* keep-alive: waiting for the first byte of a request */
    KEEL_CS_HEAD,    /* reading a request head */
    KEEL_CS_PROXY,   /* a request is being forwarded / answered */
    KEEL_CS_TUNNEL,  /* raw relay (tcp listener, or after 101 Switching Protocols) */
    KEEL_CS_CLOSING, /* flushing a final response, then close */
    KEEL_CS_H2,      /* carries an HTTP/2 session (h2_server.c); its streams are conns too */
    KEEL_CS_CLOSED,
};

/** Name of a connection state for logs. [any] */
const char *keel_conn_state_str(enum keel_conn_state s);

enum keel_up_state { KEEL_UP_CONNECTING, KEEL_UP_ACTIVE, KEEL_UP_IDLE, KEEL_UP_CLOSED };

/** Name of an upstream connection state. [any] */
const char *keel_up_state_str(enum keel_up_state s);

struct keel_conn;

struct keel_upconn {
    struct keel_worker *w;
    struct keel_sock s;
    ev_timer timer;
    enum keel_up_state state;
    struct keel_ep_load *load; /* referenced: pool key and identity */
    const struct keel_cfg_cluster *ccfg;
    struct keel_cluster_stats *cstats; /* counts this connection in open_conns, or NULL */
    char name[64];
    struct keel_conn *owner;
    struct keel_upconn *next_idle;
    struct keel_upconn *next_close;
    uint32_t requests;
    unsigned reused : 1;
};

enum keel_resp_state { KEEL_RS_NONE, KEEL_RS_HEAD, KEEL_RS_BODY, KEEL_RS_DONE };

/* One request/response exchange on a downstream HTTP connection. */
struct keel_txn {
    double start;
    char req_id[40];
    char method[16];
    char path[192];
    struct keel_wsnap *ws;     /* pinned snapshot: cluster and ep index refer into it */
    int cluster;               /* -1 before routing */
    int ep;                    /* endpoint index in the cluster, -1 before picking */
    struct keel_ep_load *load; /* referenced while the request counts as active */
    uint32_t tried[4];
    uint32_t n_tried;
    struct keel_buf head; /* rewritten request head, kept for a re-dispatch */
    /* request body */
    enum keel_http1_body req_mode;
    uint64_t req_remaining;
    struct keel_http1_chunked req_chunk;
    size_t req_fwd; /* validated body bytes at the front of c->s.in, not yet written */
    uint64_t req_body_sent;
    uint64_t req_body_total;
    unsigned req_done : 1;
    /* response */
    enum keel_resp_state resp_state;
    enum keel_http1_body resp_mode;
    uint64_t resp_remaining;
    struct keel_http1_chunked resp_chunk;
    size_t resp_fwd; /* validated body bytes at the front of up->s.in */
    int status;
    uint64_t resp_bytes_to_client;
    uint64_t bytes_in, bytes_out;
    unsigned is_head : 1;
    unsigned is_upgrade : 1;
    unsigned dechunk : 1;     /* HTTP/1.0 client: decode chunked, close-delimit */
    unsigned resp_splice : 1; /* the rest of the body goes through up->s.in.pipe (splice) */
    unsigned up_reusable : 1; /* upstream may be pooled after this exchange */
    unsigned retried_reuse : 1;
    unsigned active : 1;      /* this txn holds an in-flight count */
    unsigned cb_request : 1;  /* counted in the cluster's active_requests */
    unsigned cb_pending : 1;  /* counted in the cluster's pending (connecting) */
    unsigned idempotent : 1;  /* safe to send again (method, or Idempotency-Key) */
    unsigned retrying : 1;    /* counted in the cluster's retries_active */
    uint8_t retries;          /* attempts after a failure that proved nothing */
    unsigned backing_off : 1; /* waiting (client timer) before the next try */
    unsigned has_sticky : 1;  /* the request named an endpoint in the sticky cookie */
    unsigned set_sticky : 1;  /* the response must (re)set the sticky cookie */
    uint64_t sticky_want;     /* that endpoint's opaque id */
    uint64_t sticky_got;      /* the opaque id of the endpoint that serves */
};

struct keel_conn {
    struct keel_conn *prev, *next;
    struct keel_conn *next_close;
    struct keel_worker *w;
    uint64_t id;
    enum keel_conn_state state;
    uint32_t listener;
    const struct keel_cfg_listener *lcfg;
    struct sockaddr_storage peer;
    char peer_ip[48];
    uint64_t peer_hash; /* of peer_ip, for ip_hash */
    struct keel_sock s;
    ev_timer timer;
    struct keel_upconn *up;
    struct keel_txn t;
    int minor;              /* client's HTTP minor version of the current request */
    unsigned keepalive : 1; /* client connection may carry another request */
    unsigned is_tcp : 1;
    unsigned drain : 1;      /* close after the current exchange */
    unsigned in_process : 1; /* parse_requests() is on the stack */
    unsigned is_stream : 1;  /* an HTTP/2 stream (virtual socket), not a connection */
    unsigned is_tls : 1;     /* arrived over TLS (X-Forwarded-Proto: https) */
    unsigned grpc : 1;       /* a gRPC request: keel's own errors become grpc-status */
    uint32_t deadline_ms;    /* grpc-timeout of the request; 0: none */
    struct keel_h2conn *h2;  /* HTTP/2: the session (on the carrier and on each stream) */
    uint32_t served;         /* exchanges completed on this connection */
};

#endif

/* Socket helpers (conn.c). [worker] */

/** Makes room in s->in for a read (in.len < max): at most max - in.len, at most 64 KiB.
 *  @return 0 with *room set, or KEEL_ENOMEM. */
int keel_sock_read_room(struct keel_sock *s, size_t max, size_t *room);
/** Reads into s->in, at most `max` buffered bytes in total. @return bytes read (>0), 0 at EOF
 *  (sets rd_eof), KEEL_EAGAIN, KEEL_ENOMEM or KEEL_ECLOSED/KEEL_EIO. */
ssize_t keel_sock_read(struct keel_sock *s, size_t max);
/**
 * Writes s->out and then up to extra_len bytes of extra (a peer's buffered body bytes) in one
 * writev. Bytes of out that were written are consumed. @return bytes of extra written (>= 0),
 * or KEEL_ECLOSED / KEEL_EIO. Anything unwritten stays: out keeps its rest, extra is the
 * caller's to keep.
 */
ssize_t keel_sock_flush(struct keel_sock *s, const char *extra, size_t extra_len);
/** Moves up to max bytes from s's socket into its pipe (s->in.pipe, attached by the caller)
 *  with splice(), without copying them. @return bytes moved, 0 at EOF (rd_eof set),
 *  KEEL_EAGAIN (nothing to read, or the pipe is full: p->full then waits for a drain),
 *  KEEL_ENOTIMPL when splice() cannot be used on this socket and the pipe is empty (the caller
 *  relays with keel_sock_read instead), KEEL_ECLOSED / KEEL_EIO. [owner] */
ssize_t keel_sock_splice_in(struct keel_sock *s, size_t max);
/** Writes bytes from pipe p to dst's socket with splice(). @return bytes written (0 when dst
 *  is full or p is empty), or KEEL_ECLOSED / KEEL_EIO. [owner] */
ssize_t keel_sock_splice_out(struct keel_pipe *p, struct keel_sock *dst);
/** Stops watchers, closes the fd (or closes the virtual stream), frees the buffers. */
void keel_sock_close(struct ev_loop *loop, struct keel_sock *s);
/** Sets which events the owner wants: starts/stops a real socket's watchers, or lets a
 *  virtual socket feed what it can meet now. */
void keel_sock_want(struct ev_loop *loop, struct keel_sock *s, int rd, int wr);
/** Virtual socket implementations: invokes the owner's watcher for `ev` (EV_READ or
 *  EV_WRITE) soon, in this loop iteration, if the owner wants it. */
void keel_sock_feed(struct ev_loop *loop, struct keel_sock *s, int ev);
/** Sends FIN (SHUT_WR), or ends a virtual stream's output. */
void keel_sock_shutdown(struct keel_sock *s);
/** After a non-blocking connect became writable: 0, or the KEEL_E* connect error. */
int keel_sock_connect_result(struct keel_sock *s);
/** Sets O_NONBLOCK and (for TCP) TCP_NODELAY. @return 0 or KEEL_EIO. */
int keel_sock_setup(int fd);

/* Upstream connections and the per-worker pool (upstream.c). [worker] */

/**
 * Gets a connection to the endpoint: an idle pooled one, or a new non-blocking connect
 * (pooled=0: always a new one; 1: a pooled one as it is, for a request the caller sends
 * again on a new connection if the pooled one turns out closed; 2: a pooled one checked
 * with a recv(MSG_PEEK) first). The load record is referenced by the
 * connection.
 * @return the connection (state CONNECTING or ACTIVE; `reused` set for a pooled one) or NULL
 *         with *err set (KEEL_ENOMEM, KEEL_EIO, KEEL_ECONNREFUSED, KEEL_ELIMIT when the
 *         cluster's circuit_breaker.max_connections is reached).
 */
struct keel_upconn *keel_up_get(struct keel_worker *w, const struct keel_endpoint *ep,
                                const struct keel_cluster *cl, int pooled, int *err);
/**
 * HTTP/2 clusters (protocol h2 or grpc; h2_upstream.c): a new stream on this worker's shared
 * connection to the endpoint (opened on first use, more when max concurrent streams is
 * reached), as an upstream connection with a virtual socket that takes the HTTP/1.1 request
 * bytes of the exchange and gives back an HTTP/1.1 response (chunked, trailers kept). State
 * CONNECTING until the stream can be opened. NULL with *err set as keel_up_get.
 */
struct keel_upconn *keel_h2up_get(struct keel_worker *w, const struct keel_endpoint *ep,
                                  const struct keel_cluster *cl, int *err);
/** Closes every HTTP/2 upstream session of the worker (drain, exit): GOAWAY, then close once
 *  their streams end. */
void keel_h2up_close_all(struct keel_worker *w);
/** Returns a connection to its pool, or closes it when the pool is full or draining. */
void keel_up_release(struct keel_upconn *u);
/** Closes a connection (queued for freeing in the prepare watcher). */
void keel_up_close(struct keel_upconn *u);
/** Frees closed upstream connections. */
void keel_up_reap(struct keel_worker *w);

/* Shared between the HTTP proxy (after 101) and the TCP proxy (tcp_proxy.c). [worker] */

/** Switches a connection with an ACTIVE upstream to a raw two-way relay. */
void keel_tunnel_start(struct keel_conn *c);
/** @return whether the client and upstream sockets of c are both plain kernel sockets (no TLS,
 *  not an HTTP/2 stream), so that bytes can go from one to the other with splice(). */
int keel_conn_can_splice(const struct keel_conn *c);
/** Closes a downstream connection and everything attached to it. */
void keel_conn_close(struct keel_conn *c, const char *why);
/** Allocates a downstream connection and links it into the worker. NULL on ENOMEM. */
struct keel_conn *keel_conn_new(struct keel_worker *w, int fd, uint32_t listener,
                                const struct sockaddr_storage *peer);
/* Downstream HTTP/2 (h2_server.c). [worker] */

/** Whether c->s.in starts with the HTTP/2 connection preface: 1 yes, -1 maybe (too few
 *  bytes yet), 0 no. After ALPN selected h2, bytes that are not a preface also give 1: the
 *  h2 session then ends the connection with GOAWAY(PROTOCOL_ERROR). */
int keel_h2_preface(const struct keel_conn *c);
/** Turns a connection whose input starts with the preface into an HTTP/2 carrier. @return 0
 *  (c may be closed already) or KEEL_ENOMEM (c untouched). */
int keel_h2_start(struct keel_conn *c);
/** Closes the streams of a carrier and frees its session (from keel_conn_close). */
void keel_h2_release(struct keel_conn *c);
/** Graceful GOAWAY; the carrier closes once its streams are done. */
void keel_h2_drain(struct keel_conn *c);
/** Starts the exchange of a new stream connection (virtual socket set up by the caller). */
void keel_http_stream_start(struct keel_conn *sc);
/** Ends the accounting of the current exchange (stats, access log, in-flight count). */
void keel_txn_finish(struct keel_conn *c);
