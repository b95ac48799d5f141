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
    /* Clusters made from Consul catalog tags (consul.catalog). Their configuration and route
     * are owned here and never freed while keel runs: snapshots that workers may still hold
     * point into them (a replaced route goes to d->retired_matches). */
    struct keel_cfg_cluster *dyn_cfg;
    struct keel_cfg_match *dyn_match; /* route from keel.route; NULL: no route */
    int listed;                       /* dynamic: the catalog lists it with the "keel" tag */
    size_t conflicts;                 /* instances whose keel.* tags disagree with the newest */
    char conflict_id[KEEL_DISC_ID_MAX];
    char tag_errors[256]; /* invalid keel.* tags, "" when none */
    int ramp_ok;          /* its first answer is published: later newcomers slow-start */
};

/* At most this many clusters can come from the Consul catalog. */
#define KEEL_DISCOVERY_MAX_DYNAMIC 256

typedef void (*keel_discovery_publish_cb)(struct keel_snap *s, void *arg);

struct keel_discovery {
    struct ev_loop *loop;
    const struct keel_cfg *cfg;
    struct keel_dcluster *cl; /* file clusters first (same order), then dynamic ones */
    size_t n_cl, cap_cl;
    size_t n_file;                           /* clusters from keel.yaml */
    struct keel_cfg_match **retired_matches; /* replaced dynamic routes, freed at exit */
    size_t n_retired;
    struct keel_cfg_cluster **retired_cfgs; /* replaced dynamic configurations (their strings
                                               belong to the current one), freed at exit */
    size_t n_retired_cfgs;
    struct keel_snap *snap; /* newest published (one reference held here) */
    uint64_t gen;
    size_t zombies; /* endpoints kept only for their in-flight requests */
    int ramping;    /* some endpoint is in slow start: rebuild every tick */
    ev_timer debounce;
    ev_timer tick; /* 1 s: zombie clean-up, state file */
    int dirty, state_dirty;
    keel_discovery_publish_cb publish;
    void *publish_arg;
    void *consul; /* consul.c state */
    void *dns;    /* dns_srv.c state */
    void *health; /* health.c state */
    struct keel_override *overrides;
    size_t n_overrides;
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

/** Adds (or re-lists) a cluster for a Consul service found through the catalog.
 *  @return the cluster, or NULL (capacity reached, out of memory, name taken by keel.yaml:
 *  logged). [control] */
struct keel_dcluster *keel_discovery_add_dynamic(struct keel_discovery *d, const char *service);

/** A dynamic cluster left the catalog: it leaves the snapshot (routes too). [control] */
void keel_discovery_unlist(struct keel_discovery *d, struct keel_dcluster *c);

/** Replaces a dynamic cluster's route, policy and upstream protocol from its keel.* tags;
 *  publishes (debounced) when they changed. host/path NULL: any. lb: enum keel_lb_policy.
 *  protocol: enum keel_upstream_proto; a change gives the cluster a new configuration object
 *  (workers may be reading the old one, which is kept until exit). [control] */
void keel_discovery_set_dynamic(struct keel_discovery *d, struct keel_dcluster *c, const char *host,
                                const char *path, int lb, int warning_drain, int protocol);

/* An operator's override of one endpoint (admin API), kept by (cluster, endpoint id) across
 * discovery answers until cleared. */
struct keel_override {
    char cluster[128];
    char id[KEEL_DISC_ID_MAX];
    int drain;  /* 1: no new requests (KEEL_EP_H_ADMIN) */
    int weight; /* >= 0: weight to use; -1: discovery's */
};

/**
 * Sets or clears an operator override for the endpoint of cluster whose id or address is
 * `endpoint`. drain: 1 drain, 0 undrain, -1 unchanged; weight: >= 0 set, -1 unchanged, -2
 * back to discovery's. Publishes (debounced).
 * @return 0, KEEL_ENOENT (no such cluster or endpoint), KEEL_ENOMEM. [control]
 */
int keel_discovery_override(struct keel_discovery *d, const char *cluster, const char *endpoint,
                            int drain, int weight);

/** Marks the published snapshot stale (debounced republish). [control] */
void keel_discovery_touch(struct keel_discovery *d);

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

/* Active health checks (health.c). */

/** Starts checking every endpoint of every cluster that has a health_check. [control] */
int keel_health_start(struct keel_discovery *d);
/** Stops every check and frees the check state. [control] */
void keel_health_stop(struct keel_discovery *d);
/** Writes the check verdicts of c's endpoints into c->set (extra_health |= KEEL_EP_H_ACTIVE
 *  and extra_reason for a failing one); called just before each snapshot build. [control] */
void keel_health_annotate(struct keel_discovery *d, struct keel_dcluster *c);

/* Sources (consul.c, dns_srv.c). Each returns 0 when it has nothing to watch. */
int keel_consul_start(struct keel_discovery *d);
void keel_consul_stop(struct keel_discovery *d);
int keel_dns_srv_start(struct keel_discovery *d);
void keel_dns_srv_stop(struct keel_discovery *d);

#endif
