/* SPDX-License-Identifier: MIT */
/* Immutable, refcounted routing snapshot: clusters, endpoints, routes. Built by the control
 * thread, read by workers without locks. Also the shared per-endpoint load counters. */
#ifndef KEEL_SNAP_H
#define KEEL_SNAP_H

#include <stdatomic.h>
#include <stdint.h>
#include <sys/socket.h>
#include "keel/config.h"

/* Health bits: each source owns its bit and only that source clears it. 0 = healthy. */
enum {
    KEEL_EP_H_DISCOVERY = 1u << 0, /* discovery says draining / absent / critical */
    KEEL_EP_H_ACTIVE = 1u << 1,    /* active health check failed */
    KEEL_EP_H_PASSIVE = 1u << 2,   /* passive outlier ejection */
    KEEL_EP_H_ADMIN = 1u << 3,     /* drained by an operator */
};

/* Response classes counted per endpoint: [0] no response (keel answered or aborted). */
#define KEEL_STAT_CLASSES 6

/*
 * State shared by all workers for one endpoint identity, surviving snapshots. Allocated by the
 * control thread; refcounted by snapshots and in-flight requests. All counters are relaxed.
 */
struct keel_ep_load {
    _Atomic uint32_t refs;
    _Atomic uint32_t active; /* in-flight requests (HTTP) or connections (TCP), all workers */
    uint32_t id;             /* unique per process, never reused */
    _Atomic uint64_t requests[KEEL_STAT_CLASSES];
    _Atomic uint64_t connect_failures;
    _Atomic uint64_t connections; /* upstream connections opened */
    /* Passive outlier detection (outlier.c): consecutive failures counted across all workers,
     * so N failures in a row means N, not N per worker. */
    _Atomic uint32_t consec_5xx;       /* responses 500-599 from the endpoint */
    _Atomic uint32_t consec_gateway;   /* connect refused/failed, reset, bad response */
    _Atomic uint32_t consec_timeout;   /* connect or response timeouts */
    _Atomic uint64_t ejected_until_ms; /* keel_clock_ms() deadline; 0 = not ejected */
    _Atomic uint64_t ejected_at_ms;    /* when the current ejection began */
    _Atomic uint32_t times_ejected;
    _Atomic uint32_t probation;   /* ejection expired: the next outcome decides */
    _Atomic uint64_t ejections;   /* total, for metrics */
    _Atomic uint32_t eject_cause; /* enum keel_outlier_cause of the last ejection */
    /* Latency: time to the response head of the last request, microseconds, and a peak-EWMA
     * of it (rises at once on a slow answer, decays with ~1 s time constant), for latency-aware
     * policies. Written by the worker that got the answer; relaxed. */
    _Atomic uint32_t last_latency_us;
    _Atomic uint32_t ewma_latency_us;
    _Atomic uint64_t ewma_stamp_ms; /* keel_clock_now_ms of the last update */
    uint64_t added_ms; /* slow start: when the endpoint appeared (control clock); 0 = no ramp.
                          Written once by the control thread before any snapshot shows it. */
};

#define KEEL_EP_ID_MAX 256
#define KEEL_EP_REASON_MAX 128

struct keel_endpoint {
    char name[64];                   /* "address:port" as shown in logs and the admin API */
    char id[KEEL_EP_ID_MAX];         /* identity within the cluster (see DESIGN.md 2) */
    char reason[KEEL_EP_REASON_MAX]; /* why discovery reports this state */
    uint64_t since_ms;               /* control clock: when health bits and reason last changed */
    struct sockaddr_storage sa;
    socklen_t salen;
    uint32_t weight; /* effective weight; 0 = gets no new requests */
    uint32_t health; /* KEEL_EP_H_* bits; 0 = healthy */
    struct keel_ep_load *load;
};

/* Latency histogram bucket upper bounds in milliseconds (plus +Inf). */
#define KEEL_LAT_BUCKETS 12
extern const double keel_lat_bounds_ms[KEEL_LAT_BUCKETS];

/* Per-cluster counters shared by all workers, alive for the whole process. */
struct keel_cluster_stats {
    _Atomic uint64_t lat_bucket[KEEL_LAT_BUCKETS + 1];
    _Atomic uint64_t lat_sum_us;
    _Atomic uint64_t lat_count;
    _Atomic uint64_t no_endpoint; /* 503s for lack of an eligible endpoint */
    _Atomic uint64_t panic;       /* picks made in panic mode */
    /* circuit breaker state, all workers */
    _Atomic int64_t open_conns;      /* upstream connections open */
    _Atomic int64_t pending;         /* requests waiting for a connection */
    _Atomic int64_t active_requests; /* requests in flight */
    _Atomic int64_t retries_active;  /* retries in flight */
    _Atomic uint64_t retries;        /* retries made */
    _Atomic uint64_t retries_denied; /* retries the budget refused */
    _Atomic uint64_t cb_rejected[3]; /* 503s: [0] max_connections [1] max_pending
                                        [2] max_requests */
};

struct keel_lb_ops;

struct keel_cluster {
    const char *name;
    uint32_t index;
    const struct keel_cfg_cluster *cfg; /* timeouts, limits; lives as long as the process */
    const struct keel_lb_ops *lb;
    struct keel_endpoint *eps;
    uint32_t n_eps;
    struct keel_cluster_stats *stats;
};

struct keel_snap_route {
    const struct keel_cfg_match *match;
    uint32_t cluster; /* index into snap->clusters */
};

struct keel_snap_listener {
    const struct keel_cfg_listener *cfg;
    struct keel_snap_route *routes;
    uint32_t n_routes;
    int tcp_cluster; /* tcp listeners: cluster index, else -1 */
};

struct keel_snap {
    _Atomic uint32_t refs;
    uint64_t gen; /* strictly increasing */
    struct keel_cluster *clusters;
    uint32_t n_clusters;
    struct keel_snap_listener *listeners; /* same order as cfg->listeners */
    uint32_t n_listeners;
};

/* Coarse monotonic milliseconds of the calling thread's loop, refreshed once per loop
 * iteration by keel_clock_update(): ejection deadlines compare against it without a syscall. */
extern _Thread_local uint64_t keel_clock_now_ms;

/** Refreshes keel_clock_now_ms (CLOCK_MONOTONIC_COARSE). [any] */
void keel_clock_update(void);

/** Whether discovery (and the operator) still offer the endpoint, whatever active checks and
 *  passive ejection say: what panic mode balances over. [any] */
static inline int keel_ep_present(const struct keel_endpoint *ep)
{
    return !(ep->health & (KEEL_EP_H_DISCOVERY | KEEL_EP_H_ADMIN)) && ep->weight > 0;
}

/** Whether an endpoint may receive new requests: healthy, weight > 0 and not ejected by
 *  passive outlier detection. [any] */
static inline int keel_ep_eligible(const struct keel_endpoint *ep)
{
    if (ep->health != 0 || ep->weight == 0)
        return 0;
    uint64_t until =
        ep->load ? atomic_load_explicit(&ep->load->ejected_until_ms, memory_order_relaxed) : 0;
    return until == 0 || until <= keel_clock_now_ms;
}

/** Allocates a load record with one reference. @return NULL on ENOMEM. [control] */
struct keel_ep_load *keel_ep_load_new(void);
/** Takes a reference. [any] */
void keel_ep_load_ref(struct keel_ep_load *l);
/** Drops a reference and frees at zero. [any] */
void keel_ep_load_unref(struct keel_ep_load *l);

/**
 * Builds the first snapshot from a static configuration: one endpoint per configured
 * address, fresh load records. The snapshot points into cfg, which must outlive it.
 * @return NULL on ENOMEM. [control]
 */
struct keel_snap *keel_snap_from_config(const struct keel_cfg *cfg, uint64_t gen,
                                        struct keel_cluster_stats *stats);

/** Takes a reference on a snapshot. [any] */
void keel_snap_ref(struct keel_snap *s);
/** Drops a reference; frees the snapshot (and its load references) at zero. [any] */
void keel_snap_unref(struct keel_snap *s);

/** Finds a cluster by name. @return index or -1. [any] */
int keel_snap_find_cluster(const struct keel_snap *s, const char *name);

#endif
