/* SPDX-License-Identifier: MIT */
/* Endpoint sets as discovery sources report them, before they become a snapshot. [control] */
#ifndef KEEL_DISC_H
#define KEEL_DISC_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define KEEL_DISC_ID_MAX 256
#define KEEL_DISC_REASON_MAX 128

/* One endpoint of one cluster as a discovery source sees it. */
struct keel_disc_ep {
    /* Identity: Consul "node/service-id" (an address reused by a new instance is a new
     * endpoint); DNS "target:port/ip" (a target may have several addresses); static "address". */
    char id[KEEL_DISC_ID_MAX];
    char name[64]; /* "ip:port" or "[ip6]:port", shown in logs and the admin API */
    struct sockaddr_storage sa;
    socklen_t salen;
    uint32_t weight; /* 0 = gets no new requests */
    int draining;    /* discovery says: no new requests (critical, maintenance, absent) */
    char reason[KEEL_DISC_REASON_MAX]; /* why it has this state, one line: "passing",
                                          "warning: check 'mem' (serving at weight 1)",
                                          "critical: check 'serfHealth'", "node maintenance" */
    uint64_t modify_index; /* Consul Service.ModifyIndex (newest registration wins), else 0 */
    /* Set by the engine (not the source) just before a snapshot is built: health bits of
     * other sources (KEEL_EP_H_ACTIVE, ...) and, when one is set, why. Not compared by
     * keel_disc_set_equal(). */
    uint32_t extra_health;
    char extra_reason[KEEL_DISC_REASON_MAX];
    int has_weight_override; /* an operator's weight (admin API) replaces weight */
    uint32_t weight_override;
};

/* A set of endpoints (owned array). */
struct keel_disc_set {
    struct keel_disc_ep *eps;
    size_t n;
    size_t cap; /* allocated entries; 0 is fine (unknown): keel_disc_set_add grows */
};

/** Frees the array and zeroes the set. [any] */
void keel_disc_set_free(struct keel_disc_set *s);

/** Appends a copy of ep. @return 0 or KEEL_ENOMEM. [any] */
int keel_disc_set_add(struct keel_disc_set *s, const struct keel_disc_ep *ep);

/** Whether two sets hold the same endpoints in the same order with the same address, weight,
 *  state and reason. [any] */
int keel_disc_set_equal(const struct keel_disc_set *a, const struct keel_disc_set *b);

struct keel_cfg;
struct keel_cfg_cluster;
struct keel_cluster_stats;
struct keel_snap;

/* A route added at run time (Consul catalog tags), for one listener. */
struct keel_disc_route_in {
    uint32_t listener;                  /* index into cfg->listeners */
    const struct keel_cfg_match *match; /* outlives every snapshot */
    uint32_t cluster;                   /* index into the cls array */
};

/* One cluster as the snapshot builder takes it. */
struct keel_disc_cluster_in {
    const struct keel_cfg_cluster *cfg; /* name, policy, timeouts; outlives every snapshot */
    const struct keel_disc_set *set;    /* what discovery reports now */
    struct keel_cluster_stats *stats;   /* process-lifetime counters, may be NULL */
    int ramp_new;    /* endpoints new to this cluster slow-start (not its first answer) */
    uint64_t now_ms; /* control thread's keel_clock_now_ms at build time */
};

/**
 * Builds a snapshot from the current discovery view. cls[i].cfg must be &cfg->clusters[i] for
 * every cluster of the file (routes refer to them by index); dynamic clusters follow.
 * Endpoint identity (cluster name + id) keeps the shared load record of prev, so in-flight
 * counts survive. Run-time routes go into their listener after the file's routes that test
 * something and before its catch-all ones (a route without conditions), the most specific
 * first (a host before none, then the longer path prefix).
 * An endpoint of prev that is gone but still has requests in flight stays,
 * draining, until they finish ("removed from discovery"); *zombies counts them.
 * @return the snapshot (one reference) or NULL on ENOMEM. [control]
 */
struct keel_snap *keel_snap_build(const struct keel_cfg *cfg,
                                  const struct keel_disc_cluster_in *cls, size_t n_cls,
                                  const struct keel_disc_route_in *routes, size_t n_routes,
                                  const struct keel_snap *prev, uint64_t gen, size_t *zombies);

/** Whether two snapshots route identically (same clusters, endpoints, weights, states,
 *  reasons); the generation is not compared. [control] */
int keel_snap_same(const struct keel_snap *a, const struct keel_snap *b);

#endif
