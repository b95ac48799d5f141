/* SPDX-License-Identifier: MIT */
/* Routing snapshots (clusters, endpoints, routes) and the shared per-endpoint load records. */
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "keel/balancer.h"
#include "keel/err.h"
#include "keel/snap.h"
#include "disc.h"

const double keel_lat_bounds_ms[KEEL_LAT_BUCKETS] = {1,   2.5, 5,   10,   25,   50,
                                                     100, 250, 500, 1000, 2500, 5000};

/* Ids start at 1 so that 0 can mean "none" in logs and the admin API. */
static _Atomic uint32_t next_load_id = 1;

struct keel_ep_load *keel_ep_load_new(void)
{
    struct keel_ep_load *l = calloc(1, sizeof(*l));

    if (l == NULL)
        return NULL;
    atomic_init(&l->refs, 1);
    l->id = atomic_fetch_add_explicit(&next_load_id, 1, memory_order_relaxed);
    return l;
}

void keel_ep_load_ref(struct keel_ep_load *l)
{
    atomic_fetch_add_explicit(&l->refs, 1, memory_order_relaxed);
}

void keel_ep_load_unref(struct keel_ep_load *l)
{
    if (l == NULL)
        return;
    /* acq_rel: every other holder's last writes happen before the free. */
    if (atomic_fetch_sub_explicit(&l->refs, 1, memory_order_acq_rel) == 1)
        free(l);
}

/* Frees whatever part of a snapshot was built; every array was zeroed at allocation, so
 * missing pieces are NULL. */
static void snap_free(struct keel_snap *s)
{
    if (s->clusters != NULL) {
        for (uint32_t c = 0; c < s->n_clusters; c++) {
            struct keel_cluster *cl = &s->clusters[c];
            if (cl->eps == NULL)
                continue;
            for (uint32_t i = 0; i < cl->n_eps; i++)
                keel_ep_load_unref(cl->eps[i].load);
            free(cl->eps);
        }
        free(s->clusters);
    }
    if (s->listeners != NULL) {
        for (uint32_t i = 0; i < s->n_listeners; i++)
            free(s->listeners[i].routes);
        free(s->listeners);
    }
    free(s);
}

static int build_cluster(struct keel_cluster *cl, const struct keel_cfg_cluster *cc, uint32_t index,
                         struct keel_cluster_stats *stats)
{
    cl->name = cc->name;
    cl->index = index;
    cl->cfg = cc;
    /* An out-of-range policy is a loader bug; the default keeps routing rather than crash. */
    cl->lb = (unsigned)cc->lb < KEEL_LB__COUNT ? keel_lb_registry[cc->lb]
                                               : keel_lb_registry[KEEL_LB_WEIGHTED_LEAST_CONN];
    cl->stats = stats;
    if (cc->n_endpoints == 0)
        return 0;
    cl->eps = calloc(cc->n_endpoints, sizeof(cl->eps[0]));
    if (cl->eps == NULL)
        return KEEL_ENOMEM;
    cl->n_eps = (uint32_t)cc->n_endpoints;
    for (uint32_t i = 0; i < cl->n_eps; i++) {
        const struct keel_cfg_endpoint *ce = &cc->endpoints[i];
        struct keel_endpoint *ep = &cl->eps[i];

        snprintf(ep->name, sizeof(ep->name), "%s", ce->addr.text ? ce->addr.text : "");
        snprintf(ep->id, sizeof(ep->id), "%s", ep->name);
        snprintf(ep->reason, sizeof(ep->reason), "static");
        if (ce->addr.salen <= sizeof(ep->sa)) {
            memcpy(&ep->sa, &ce->addr.sa, ce->addr.salen);
            ep->salen = ce->addr.salen;
        }
        ep->weight = ce->weight;
        ep->health = 0;
        ep->load = keel_ep_load_new();
        if (ep->load == NULL)
            return KEEL_ENOMEM;
    }
    return 0;
}

static int build_listener(struct keel_snap_listener *sl, const struct keel_cfg_listener *lc,
                          uint32_t n_clusters)
{
    sl->cfg = lc;
    sl->tcp_cluster = -1;
    if (lc->proto == KEEL_LISTEN_TCP) {
        if (lc->cluster_idx < 0 || (uint32_t)lc->cluster_idx >= n_clusters)
            return KEEL_EINVAL;
        sl->tcp_cluster = lc->cluster_idx;
    }
    if (lc->n_routes == 0)
        return 0;
    sl->routes = calloc(lc->n_routes, sizeof(sl->routes[0]));
    if (sl->routes == NULL)
        return KEEL_ENOMEM;
    sl->n_routes = (uint32_t)lc->n_routes;
    for (uint32_t r = 0; r < sl->n_routes; r++) {
        const struct keel_cfg_route *rc = &lc->routes[r];
        /* Workers index clusters with this without a check: refuse an unresolved route. */
        if (rc->cluster_idx < 0 || (uint32_t)rc->cluster_idx >= n_clusters)
            return KEEL_EINVAL;
        sl->routes[r].match = &rc->match;
        sl->routes[r].cluster = (uint32_t)rc->cluster_idx;
    }
    return 0;
}

/**
 * Builds the first snapshot from a static configuration (see snap.h). Besides ENOMEM, also
 * returns NULL when a route or tcp listener names a cluster index out of range (the loader
 * resolves them, so that is a bug upstream of here, not something workers should trip on).
 */
struct keel_snap *keel_snap_from_config(const struct keel_cfg *cfg, uint64_t gen,
                                        struct keel_cluster_stats *stats)
{
    struct keel_snap *s = calloc(1, sizeof(*s));

    if (s == NULL)
        return NULL;
    atomic_init(&s->refs, 1);
    s->gen = gen;
    if (cfg->n_clusters > 0) {
        s->clusters = calloc(cfg->n_clusters, sizeof(s->clusters[0]));
        if (s->clusters == NULL)
            goto fail;
        s->n_clusters = (uint32_t)cfg->n_clusters;
        for (uint32_t c = 0; c < s->n_clusters; c++)
            if (build_cluster(&s->clusters[c], &cfg->clusters[c], c, stats ? &stats[c] : NULL) != 0)
                goto fail;
    }
    if (cfg->n_listeners > 0) {
        s->listeners = calloc(cfg->n_listeners, sizeof(s->listeners[0]));
        if (s->listeners == NULL)
            goto fail;
        s->n_listeners = (uint32_t)cfg->n_listeners;
        for (uint32_t i = 0; i < s->n_listeners; i++)
            if (build_listener(&s->listeners[i], &cfg->listeners[i], s->n_clusters) != 0)
                goto fail;
    }
    return s;
fail:
    snap_free(s);
    return NULL;
}

void keel_snap_ref(struct keel_snap *s)
{
    atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
}

void keel_snap_unref(struct keel_snap *s)
{
    if (s == NULL)
        return;
    if (atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) == 1)
        snap_free(s);
}

int keel_snap_find_cluster(const struct keel_snap *s, const char *name)
{
    for (uint32_t c = 0; c < s->n_clusters; c++)
        if (s->clusters[c].name != NULL && strcmp(s->clusters[c].name, name) == 0)
            return (int)c;
    return -1;
}

/* ---- snapshots from discovery ------------------------------------------------------------ */

static const struct keel_cluster *find_prev_cluster(const struct keel_snap *prev, const char *name)
{
    if (!prev)
        return NULL;
    int i = keel_snap_find_cluster(prev, name);
    return i < 0 ? NULL : &prev->clusters[i];
}

/* Linear: clusters are small. A hash would only pay off with thousands of endpoints. */
static const struct keel_endpoint *find_prev_ep(const struct keel_cluster *pc, const char *id)
{
    if (!pc)
        return NULL;
    for (uint32_t i = 0; i < pc->n_eps; i++)
        if (strcmp(pc->eps[i].id, id) == 0)
            return &pc->eps[i];
    return NULL;
}

static int in_set(const struct keel_disc_set *set, const char *id)
{
    for (size_t i = 0; i < set->n; i++)
        if (strcmp(set->eps[i].id, id) == 0)
            return 1;
    return 0;
}

/* Slow start: weight x max(min, (elapsed / window) ^ (1 / aggression)) while ramping. The
 * control thread rebuilds every second while any endpoint ramps, so the weight climbs in
 * steps; a lower weight also lowers the endpoint's share of in-flight requests under
 * weighted least-connections. */
static void slow_start(struct keel_endpoint *ep, const struct keel_cfg_cluster *cc, uint64_t now_ms)
{
    uint64_t added = ep->load->added_ms;
    if (!added || !cc->slow_start_ms || now_ms >= added + cc->slow_start_ms || ep->weight == 0)
        return;
    double f = pow((double)(now_ms - added) / cc->slow_start_ms, 1.0 / cc->slow_start_aggression);
    double floor = cc->slow_start_min_percent / 100.0;
    if (f < floor)
        f = floor;
    uint32_t full = ep->weight;
    uint32_t w = (uint32_t)(full * f + 0.5);
    ep->weight = w ? w : 1;
    if (ep->health == 0)
        snprintf(ep->reason, sizeof(ep->reason), "slow start: weight %u of %u, %.0fs left",
                 ep->weight, full, (added + cc->slow_start_ms - now_ms) / 1000.0);
}

static int build_dyn_cluster(struct keel_cluster *cl, const struct keel_disc_cluster_in *in,
                             uint32_t index, const struct keel_snap *prev, size_t *zombies)
{
    const struct keel_cfg_cluster *cc = in->cfg;
    const struct keel_cluster *pc = find_prev_cluster(prev, cc->name);
    cl->name = cc->name;
    cl->index = index;
    cl->cfg = cc;
    cl->lb = (unsigned)cc->lb < KEEL_LB__COUNT ? keel_lb_registry[cc->lb]
                                               : keel_lb_registry[KEEL_LB_WEIGHTED_LEAST_CONN];
    cl->stats = in->stats;
    size_t cap = in->set->n + (pc ? pc->n_eps : 0);
    if (cap == 0)
        return 0;
    cl->eps = calloc(cap, sizeof(cl->eps[0]));
    if (!cl->eps)
        return KEEL_ENOMEM;
    for (size_t i = 0; i < in->set->n; i++) {
        const struct keel_disc_ep *de = &in->set->eps[i];
        struct keel_endpoint *ep = &cl->eps[cl->n_eps];
        snprintf(ep->id, sizeof(ep->id), "%s", de->id);
        snprintf(ep->name, sizeof(ep->name), "%s", de->name);
        snprintf(ep->reason, sizeof(ep->reason), "%s",
                 de->extra_health && de->extra_reason[0] ? de->extra_reason : de->reason);
        memcpy(&ep->sa, &de->sa, de->salen <= sizeof(ep->sa) ? de->salen : sizeof(ep->sa));
        ep->salen = de->salen;
        ep->weight = de->has_weight_override ? de->weight_override : de->weight;
        ep->health = (de->draining ? KEEL_EP_H_DISCOVERY : 0) | de->extra_health;
        const struct keel_endpoint *old = find_prev_ep(pc, de->id);
        if (old) {
            ep->load = old->load;
            keel_ep_load_ref(ep->load);
        } else {
            ep->load = keel_ep_load_new();
            if (!ep->load)
                return KEEL_ENOMEM;
            if (in->ramp_new && cc->slow_start_ms)
                ep->load->added_ms = in->now_ms ? in->now_ms : 1;
        }
        slow_start(ep, cc, in->now_ms);
        /* "Since when" survives snapshots while the state and its reason stay the same. */
        ep->since_ms = old && old->health == ep->health && !strcmp(old->reason, ep->reason)
                           ? old->since_ms
                           : in->now_ms;
        cl->n_eps++;
    }
    /* Gone from discovery but still serving requests: keep it visible, draining, until the
     * last one ends (the control thread rebuilds while zombies exist). */
    for (uint32_t i = 0; pc && i < pc->n_eps; i++) {
        const struct keel_endpoint *old = &pc->eps[i];
        if (in_set(in->set, old->id))
            continue;
        uint32_t active = atomic_load_explicit(&old->load->active, memory_order_relaxed);
        if (active == 0)
            continue;
        struct keel_endpoint *ep = &cl->eps[cl->n_eps++];
        *ep = *old;
        ep->health |= KEEL_EP_H_DISCOVERY;
        snprintf(ep->reason, sizeof(ep->reason), "removed from discovery, %u in flight", active);
        keel_ep_load_ref(ep->load);
        (*zombies)++;
    }
    return 0;
}

static int has_conditions(const struct keel_cfg_match *m)
{
    return m->host || m->path || m->path_prefix || m->n_headers || m->n_cookies;
}

/* Most specific first: a host before none, then the longer path (prefix). */
static int specificity(const struct keel_cfg_match *m)
{
    size_t p = m->path ? strlen(m->path) : m->path_prefix ? strlen(m->path_prefix) : 0;
    return (m->host ? 1 << 20 : 0) + (int)(p < (1 << 19) ? p : (1 << 19));
}

static int listener_with_dyn(struct keel_snap_listener *sl, const struct keel_cfg_listener *lc,
                             uint32_t li, uint32_t n_clusters,
                             const struct keel_disc_route_in *routes, size_t n_routes)
{
    size_t extra = 0;
    for (size_t i = 0; i < n_routes; i++)
        extra += routes[i].listener == li;
    if (extra == 0)
        return build_listener(sl, lc, n_clusters);
    sl->cfg = lc;
    sl->tcp_cluster = -1;
    sl->routes = calloc(lc->n_routes + extra, sizeof(sl->routes[0]));
    if (!sl->routes)
        return KEEL_ENOMEM;
    /* File routes that test something come first: the file can always override. */
    for (size_t r = 0; r < lc->n_routes; r++) {
        const struct keel_cfg_route *rc = &lc->routes[r];
        if (rc->cluster_idx < 0 || (uint32_t)rc->cluster_idx >= n_clusters)
            return KEEL_EINVAL;
        if (has_conditions(&rc->match))
            sl->routes[sl->n_routes++] =
                (struct keel_snap_route){&rc->match, (uint32_t)rc->cluster_idx};
    }
    size_t first_dyn = sl->n_routes;
    for (size_t i = 0; i < n_routes; i++) {
        if (routes[i].listener != li || routes[i].cluster >= n_clusters)
            continue;
        /* Insertion sort: a handful of routes. */
        size_t k = sl->n_routes++;
        int sp = specificity(routes[i].match);
        while (k > first_dyn && specificity(sl->routes[k - 1].match) < sp) {
            sl->routes[k] = sl->routes[k - 1];
            k--;
        }
        sl->routes[k] = (struct keel_snap_route){routes[i].match, routes[i].cluster};
    }
    for (size_t r = 0; r < lc->n_routes; r++) {
        const struct keel_cfg_route *rc = &lc->routes[r];
        if (!has_conditions(&rc->match))
            sl->routes[sl->n_routes++] =
                (struct keel_snap_route){&rc->match, (uint32_t)rc->cluster_idx};
    }
    return 0;
}

struct keel_snap *keel_snap_build(const struct keel_cfg *cfg,
                                  const struct keel_disc_cluster_in *cls, size_t n_cls,
                                  const struct keel_disc_route_in *routes, size_t n_routes,
                                  const struct keel_snap *prev, uint64_t gen, size_t *zombies)
{
    size_t z = 0;
    struct keel_snap *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    atomic_init(&s->refs, 1);
    s->gen = gen;
    if (n_cls) {
        s->clusters = calloc(n_cls, sizeof(s->clusters[0]));
        if (!s->clusters)
            goto fail;
        s->n_clusters = (uint32_t)n_cls;
        for (uint32_t c = 0; c < s->n_clusters; c++)
            if (build_dyn_cluster(&s->clusters[c], &cls[c], c, prev, &z) != 0)
                goto fail;
    }
    if (cfg->n_listeners) {
        s->listeners = calloc(cfg->n_listeners, sizeof(s->listeners[0]));
        if (!s->listeners)
            goto fail;
        s->n_listeners = (uint32_t)cfg->n_listeners;
        for (uint32_t i = 0; i < s->n_listeners; i++)
            /* File clusters keep their indices (cls[i].cfg == &cfg->clusters[i]). */
            if (listener_with_dyn(&s->listeners[i], &cfg->listeners[i], i, s->n_clusters, routes,
                                  n_routes) != 0)
                goto fail;
    }
    if (zombies)
        *zombies = z;
    return s;
fail:
    snap_free(s);
    return NULL;
}

int keel_snap_same(const struct keel_snap *a, const struct keel_snap *b)
{
    if (a->n_clusters != b->n_clusters || a->n_listeners != b->n_listeners)
        return 0;
    for (uint32_t c = 0; c < a->n_clusters; c++) {
        const struct keel_cluster *x = &a->clusters[c], *y = &b->clusters[c];
        if (x->cfg != y->cfg || x->n_eps != y->n_eps || x->lb != y->lb)
            return 0;
        for (uint32_t i = 0; i < x->n_eps; i++) {
            const struct keel_endpoint *e = &x->eps[i], *f = &y->eps[i];
            if (e->load != f->load || e->weight != f->weight || e->health != f->health ||
                strcmp(e->name, f->name) || strcmp(e->reason, f->reason))
                return 0;
        }
    }
    for (uint32_t i = 0; i < a->n_listeners; i++) {
        const struct keel_snap_listener *x = &a->listeners[i], *y = &b->listeners[i];
        if (x->n_routes != y->n_routes)
            return 0;
        for (uint32_t r = 0; r < x->n_routes; r++)
            if (x->routes[r].match != y->routes[r].match ||
                x->routes[r].cluster != y->routes[r].cluster)
                return 0;
    }
    return 1;
}
