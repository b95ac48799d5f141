/* SPDX-License-Identifier: MIT */
/* Worker threads, their connections and the process runtime shared with the control thread. */
#ifndef KEEL_WORKER_H
#define KEEL_WORKER_H

#include <ev.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>
#include "keel/config.h"
#include "keel/snap.h"
#include "keel/http1.h"

/* A pipe that a TCP tunnel splice()s bytes through (kernel buffer, never copied to user space). */
struct keel_pipe {
    int rd, wr;        /* read and write ends, O_NONBLOCK */
    size_t len;        /* bytes in the pipe */
    size_t cap;        /* the pipe's capacity (F_GETPIPE_SZ) */
    unsigned full : 1; /* the last splice into it found no room: wait until some is drained */
};

/* Growable byte buffer: data[off .. off+len) holds unread bytes. */
struct keel_buf {
    char *data;
    size_t cap;
    size_t off;
    size_t len;
    struct keel_pipe *pipe; /* tunnel input spliced through a pipe (keel_buf_pipe), or NULL */
};

#define KEEL_BUF_CHUNK 16384
#define KEEL_OUT_HIGH_WATER (256 * 1024)
#define KEEL_PIPE_SIZE (256 * 1024) /* requested capacity of a splice pipe */

/** Ensures room for n more bytes at the tail (compacts, then grows up to max). @return 0 or
 *  KEEL_ENOMEM / KEEL_EINVAL (over max). [any] */
int keel_buf_reserve(struct keel_buf *b, size_t n, size_t max);
/** Appends bytes, growing as needed. @return 0 or KEEL_ENOMEM. [any] */
int keel_buf_append(struct keel_buf *b, const void *p, size_t n);
/** Appends printf-formatted text. @return 0 or KEEL_ENOMEM. [any] */
int keel_buf_printf(struct keel_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/** Appends a string literal. Per-request heads are built with these, not printf (which cost
 *  3% of a keep-alive request). @return 0 or KEEL_ENOMEM. [any] */
#define KEEL_BUF_LIT(b, lit) keel_buf_append((b), "" lit, sizeof(lit) - 1)
/** Appends a NUL-terminated string. @return 0 or KEEL_ENOMEM. [any] */
int keel_buf_str(struct keel_buf *b, const char *s);
/** Appends an HTTP status code as decimal digits. @return 0 or KEEL_ENOMEM. [any] */
int keel_buf_status(struct keel_buf *b, int status);
/** Drops n bytes from the front. [any] */
void keel_buf_consume(struct keel_buf *b, size_t n);
/** Frees the storage and the pipe, if any (16 KiB blocks and empty pipes go to the calling
 *  thread's caches; a pipe still holding bytes is closed). [any] */
void keel_buf_free(struct keel_buf *b);
/** Frees the calling thread's caches of buffer blocks and pipes (at thread exit). [any] */
void keel_buf_cache_clear(void);
/** Frees the cached blocks that stayed unused since the previous call, beyond a small reserve
 *  (called every second by each worker). [any] */
void keel_buf_cache_trim(void);
/** @return how many blocks the calling thread's cache holds. [any] */
unsigned keel_buf_cache_blocks(void);
/** Attaches an empty pipe to b (from the thread's cache, or a new O_NONBLOCK pipe) for a
 *  splice() relay; keel_buf_free closes it or returns it to the cache. No-op if b has one.
 *  @return 0, or KEEL_EIO (no pipe: out of file descriptors) / KEEL_ENOMEM. [any] */
int keel_buf_pipe(struct keel_buf *b);
/** Detaches b's pipe, if any: an empty one goes back to the thread's cache, one still holding
 *  bytes is closed. b's bytes stay. [any] */
void keel_buf_drop_pipe(struct keel_buf *b);

/* Per-listener counters shared by all workers. */
struct keel_listener_stats {
    _Atomic uint64_t requests[KEEL_STAT_CLASSES];
    _Atomic int64_t active_conns;
    _Atomic uint64_t accepted;
    _Atomic uint64_t rejected; /* over max_connections */
    _Atomic uint64_t parse_errors;
    _Atomic uint64_t h2_conns; /* connections that became HTTP/2 */
    _Atomic uint64_t h2_abuse; /* HTTP/2 connections closed by a defence */
};

struct keel_worker;
struct keel_conn;

/* Something that writes once per loop iteration, after every event of the iteration ran: an
 * HTTP/2 connection whose streams queued frames (one writev for all of them). Embedded in its
 * owner; keel_defer_cancel() before the owner is freed. */
struct keel_deferred {
    struct keel_deferred *next, **pprev; /* pprev NULL: not queued */
    void (*run)(struct keel_deferred *d);
};

/* Process-wide state, built by main before workers start. */
struct keel_runtime {
    struct keel_cfg *cfg;
    struct keel_snap *snap;      /* newest snapshot (borrowed from the discovery engine) */
    struct keel_discovery *disc; /* the discovery engine (control thread) */
    struct keel_cluster_stats *cstats;
    struct keel_listener_stats *lstats;
    struct keel_worker *workers;
    uint32_t n_workers;
    _Atomic int draining;
    _Atomic uint32_t workers_done;
    struct ev_loop *control_loop;
    ev_async control_wake; /* a worker finished draining */
};

/* One listening socket owned by one worker. */
struct keel_lsock {
    ev_io io;
    ev_timer pause; /* accept paused after EMFILE/ENFILE: resume later */
    int paused;     /* out of descriptors since the last successful accept */
    int fd;
    uint32_t listener; /* index into cfg->listeners */
    struct keel_worker *w;
};

struct keel_upconn;

/* Per-worker pool of idle upstream connections to one endpoint identity. */
struct keel_pool {
    struct keel_ep_load *key; /* NULL: empty slot */
    struct keel_upconn *idle; /* singly-linked via upconn->next_idle */
    uint32_t n_idle;
};

/* A snapshot as one worker uses it: the per-cluster balancer state lives beside it, and
 * exchanges pin it (a plain counter: only this worker touches it) so a new snapshot never
 * changes the cluster an in-flight request refers to by index. */
struct keel_wsnap {
    struct keel_snap *snap;
    void **lb_state; /* per cluster */
    uint8_t *panic;  /* per cluster: too little healthy weight (refreshed every 250 ms) */
    uint32_t users;  /* exchanges started on it and not finished */
    struct keel_wsnap *next_retired;
};

struct keel_worker {
    uint32_t id;
    pthread_t thread;
    struct keel_runtime *rt;
    struct ev_loop *loop;
    ev_async wake;
    ev_prepare prep;
    ev_check check;
    ev_timer panic_tick; /* 4 Hz: panic mode, and every 4th the buffer cache trim */
    unsigned panic_ticks;
    _Atomic(struct keel_snap *) mailbox;
    struct keel_wsnap *cur;       /* newest adopted snapshot: new exchanges use it */
    _Atomic uint64_t adopted_gen; /* its generation, for the admin API */
    struct keel_wsnap *retired;   /* older ones still pinned by exchanges */
    struct keel_lsock *lsocks;
    uint32_t n_lsocks;
    int draining;
    struct keel_conn *conns; /* all live downstream connections (doubly linked) */
    uint32_t n_conns;
    struct keel_conn *closing; /* freed in the prepare watcher */
    struct keel_upconn *up_closing;
    struct keel_pool *pools; /* open-addressed by load id */
    uint32_t pools_cap;
    void *h2up;                     /* h2_upstream.c: this worker's HTTP/2 upstream sessions */
    struct keel_deferred *deferred; /* run in the prepare watcher, before the next poll */
    ev_idle defer_idle;             /* active while something is deferred: the poll must not
                                       block (events fed after the prepare queue more) */
    void *tls;                      /* tls.c: this worker's TLS state, if any */
    uint64_t next_conn_id;
    uint64_t rng;
    ev_tstamp now_cached;
};

/** Binds every listener for one worker (SO_REUSEPORT). Logs and returns KEEL_EIO on error.
 *  [control, before start] */
int keel_worker_bind(struct keel_worker *w);
/** Starts the worker thread. @return 0 or KEEL_EIO. [control] */
int keel_worker_start(struct keel_worker *w);
/** Offers a new snapshot (takes a reference for the worker). [control] */
void keel_worker_offer(struct keel_worker *w, struct keel_snap *s);
/** Asks the worker to drain: stop accepting, finish in-flight, exit. [control] */
void keel_worker_drain(struct keel_worker *w);

/* Internals shared between worker.c, http_proxy.c, tcp_proxy.c, upstream.c. [worker] */

/** Accepted socket on an http listener. */
void keel_http_accept(struct keel_worker *w, int fd, uint32_t listener,
                      const struct sockaddr_storage *peer);
/** Accepted socket on a tcp listener. */
void keel_tcp_accept(struct keel_worker *w, int fd, uint32_t listener,
                     const struct sockaddr_storage *peer);
/** Drain request reached a connection list walk: close what is idle. */
void keel_http_drain_all(struct keel_worker *w);
/** Pins the current snapshot for a new exchange. */
struct keel_wsnap *keel_wsnap_pin(struct keel_worker *w);
/** Unpins; frees a retired snapshot when its last exchange ends. NULL is fine. */
void keel_wsnap_unpin(struct keel_worker *w, struct keel_wsnap *ws);
/** Queues d to run once before the next poll (no-op when queued already). [worker] */
void keel_defer(struct keel_worker *w, struct keel_deferred *d);
/** Unqueues d (no-op when not queued). [worker] */
void keel_defer_cancel(struct keel_deferred *d);
/** Frees the connections queued for closing. */
void keel_conn_reap(struct keel_worker *w);
/** Closes every idle pooled upstream connection. */
void keel_pool_close_all(struct keel_worker *w);

/** Formats a sockaddr as "ip:port" or "[ip]:port". [any] */
void keel_addr_str(const struct sockaddr_storage *sa, char *out, size_t outlen);
/** Formats only the IP. [any] */
void keel_addr_ip(const struct sockaddr_storage *sa, char *out, size_t outlen);

/** Monotonic seconds. [any] */
double keel_now(void);

/** xorshift64* step. [any] */
uint64_t keel_rand(uint64_t *state);

#endif
