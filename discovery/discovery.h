/* SPDX-License-Identifier: MIT */
/* The discovery engine on the control thread: per-cluster endpoint sets from static config,
 * Consul and DNS; debounced snapshot publishing; the state file. [control] */
#ifndef KEEL_DISCOVERY_H
#define KEEL_DISCOVERY_H

#include <ev.h>
#include <stdint.h>
#include "keel/config.h"
#include "keel/snap.h"
#include "disc.h"

/* One cluster as discovery tracks it. */
struct keel_dcluster {
    const struct keel_cfg_cluster *cfg;
    struct keel_cluster_stats *stats;
    struct keel_disc_set set; /* last good answer (fail static: errors never shrink it) */
    int have_answer;          /* set came from an answer (or the state file) */
    int from_state_file;      /* set came from the state file and no answer arrived yet */
    double last_ok;           /* ev_now() of the last successful answer; 0: never */
    double empty_since;       /* dns: first empty/NXDOMAIN answer of a run; 0: none */
    uint64_t index;           /* consul: X-Consul-Index of the last answer */
    uint64_t answers, errors; /* counters for the admin API and metrics */
    char last_error[256];     /* "" when the last request succeeded */
    void *src;                /* the source's private watch state */
};

typedef void (*keel_discovery_publish_cb)(struct keel_snap *s, void *arg);

struct keel_discovery {
    struct ev_loop *loop;
    const struct keel_cfg *cfg;
    struct keel_dcluster *cl;
    size_t n_cl;
    struct keel_snap *snap; /* newest published (one reference held here) */
    uint64_t gen;
    size_t zombies; /* endpoints kept only for their in-flight requests */
    ev_timer debounce;
    ev_timer tick; /* 1 s: zombie clean-up, state file */
    int dirty, state_dirty;
    keel_discovery_publish_cb publish;
    void *publish_arg;
    void *consul; /* consul.c state */
    void *dns;    /* dns_srv.c state */
};

/**
 * Sets up clusters from the configuration, loads the state file (if configured) and builds
 * the first snapshot (d->snap). Does not start any watch.
 * @param stats  one struct per configured cluster, owned by the caller, process lifetime.
 * @return 0, KEEL_ENOMEM. [control, before workers start]
 */
int keel_discovery_init(struct keel_discovery *d, struct ev_loop *loop, const struct keel_cfg *cfg,
                        struct keel_cluster_stats *stats, keel_discovery_publish_cb cb, void *arg);

/** Starts the Consul and DNS watches. @return 0 or a KEEL_E* from a source. [control] */
int keel_discovery_start(struct keel_discovery *d);

/** Stops every watch, writes the state file, frees everything but the published snapshot's
 *  references held by others. [control] */
void keel_discovery_stop(struct keel_discovery *d);

/**
 * A source got an authoritative answer for c: takes the set (the caller's set is zeroed).
 * Publishes (debounced) only if it differs from the current one. [control]
 */
void keel_discovery_update(struct keel_discovery *d, struct keel_dcluster *c,
                           struct keel_disc_set *set);

/** A source failed for c: the last good set stays; the error is recorded. [control] */
void keel_discovery_error(struct keel_discovery *d, struct keel_dcluster *c, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/** Finds the tracked cluster by name, or NULL. [control] */
struct keel_dcluster *keel_discovery_find(struct keel_discovery *d, const char *name);

/** Name of a discovery kind ("static", "consul", "dns"). [any] */
const char *keel_discovery_kind_str(enum keel_discovery_kind k);

/* State file (discovery.c). */

/** Writes every non-static cluster's last good set to path atomically (temp + rename).
 *  @return 0 or KEEL_EIO. [control] */
int keel_discovery_save_state(const struct keel_discovery *d, const char *path);
/** Loads sets saved by keel_discovery_save_state into clusters that have no answer yet.
 *  A missing file is not an error. @return 0, KEEL_EBADMSG (unreadable content: logged and
 *  ignored by the caller). [control] */
int keel_discovery_load_state(struct keel_discovery *d, const char *path);

/* Sources (consul.c, dns_srv.c). Each returns 0 when it has nothing to watch. */
int keel_consul_start(struct keel_discovery *d);
void keel_consul_stop(struct keel_discovery *d);
int keel_dns_srv_start(struct keel_discovery *d);
void keel_dns_srv_stop(struct keel_discovery *d);

#endif
