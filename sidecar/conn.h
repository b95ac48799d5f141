/* SPDX-License-Identifier: MIT */
/* Downstream and upstream connection objects of a worker. [worker] */
#ifndef KEEL_CONN_H
#define KEEL_CONN_H

#include "worker.h"

/* A non-blocking socket with its watchers and buffers. */
struct keel_sock {
    int fd;
    ev_io rio;
    ev_io wio;
    struct keel_buf in;   /* bytes read and not yet consumed */
    struct keel_buf out;  /* bytes owned by this side, queued for writing */
    unsigned rd_eof : 1;  /* peer sent FIN */
    unsigned wr_shut : 1; /* we sent FIN */
};

enum keel_conn_state {
    KEEL_CS_IDLE,    /* keep-alive: waiting for the first byte of a request */
    KEEL_CS_HEAD,    /* reading a request head */
    KEEL_CS_PROXY,   /* a request is being forwarded / answered */
    KEEL_CS_TUNNEL,  /* raw relay (tcp listener, or after 101 Switching Protocols) */
    KEEL_CS_CLOSING, /* flushing a final response, then close */
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
    uint32_t served;         /* exchanges completed on this connection */
};

#endif

/* Socket helpers (conn.c). [worker] */

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
/** Stops watchers, closes the fd, frees the buffers. */
void keel_sock_close(struct ev_loop *loop, struct keel_sock *s);
/** Sets O_NONBLOCK and (for TCP) TCP_NODELAY. @return 0 or KEEL_EIO. */
int keel_sock_setup(int fd);

/* Upstream connections and the per-worker pool (upstream.c). [worker] */

/**
 * Gets a connection to the endpoint: an idle pooled one that is still open, or a new
 * non-blocking connect (pooled=0: always a new one). The load record is referenced by the
 * connection.
 * @return the connection (state CONNECTING or ACTIVE; `reused` set for a pooled one) or NULL
 *         with *err set (KEEL_ENOMEM, KEEL_EIO, KEEL_ECONNREFUSED, KEEL_ELIMIT when the
 *         cluster's circuit_breaker.max_connections is reached).
 */
struct keel_upconn *keel_up_get(struct keel_worker *w, const struct keel_endpoint *ep,
                                const struct keel_cluster *cl, int pooled, int *err);
/** Returns a connection to its pool, or closes it when the pool is full or draining. */
void keel_up_release(struct keel_upconn *u);
/** Closes a connection (queued for freeing in the prepare watcher). */
void keel_up_close(struct keel_upconn *u);
/** Frees closed upstream connections. */
void keel_up_reap(struct keel_worker *w);

/* Shared between the HTTP proxy (after 101) and the TCP proxy (tcp_proxy.c). [worker] */

/** Switches a connection with an ACTIVE upstream to a raw two-way relay. */
void keel_tunnel_start(struct keel_conn *c);
/** Closes a downstream connection and everything attached to it. */
void keel_conn_close(struct keel_conn *c, const char *why);
/** Allocates a downstream connection and links it into the worker. NULL on ENOMEM. */
struct keel_conn *keel_conn_new(struct keel_worker *w, int fd, uint32_t listener,
                                const struct sockaddr_storage *peer);
/** Ends the accounting of the current exchange (stats, access log, in-flight count). */
void keel_txn_finish(struct keel_conn *c);
