/* SPDX-License-Identifier: MIT */
/* Discovery engine: tracks every cluster's endpoint set, publishes debounced snapshots only
 * when something changed, keeps the last good sets in a state file. */
#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "keel/err.h"
#include "keel/log.h"
#include "discovery.h"

const char *keel_discovery_kind_str(enum keel_discovery_kind k)
{
    switch (k) {
    case KEEL_DISC_STATIC:
        return "static";
    case KEEL_DISC_CONSUL:
        return "consul";
    case KEEL_DISC_DNS:
        return "dns";
    }
    return "?";
}

struct keel_dcluster *keel_discovery_find(struct keel_discovery *d, const char *name)
{
    for (size_t i = 0; i < d->n_cl; i++)
        if (strcmp(d->cl[i].cfg->name, name) == 0)
            return &d->cl[i];
    return NULL;
}

static int static_set(const struct keel_cfg_cluster *cc, struct keel_disc_set *set)
{
    for (size_t i = 0; i < cc->n_endpoints; i++) {
        const struct keel_cfg_endpoint *ce = &cc->endpoints[i];
        struct keel_disc_ep ep;
        memset(&ep, 0, sizeof(ep));
        snprintf(ep.id, sizeof(ep.id), "%s", ce->addr.text ? ce->addr.text : "");
        snprintf(ep.name, sizeof(ep.name), "%.63s", ep.id);
        memcpy(&ep.sa, &ce->addr.sa, sizeof(ep.sa));
        ep.salen = ce->addr.salen;
        ep.weight = ce->weight;
        ep.draining = ce->weight == 0;
        snprintf(ep.reason, sizeof(ep.reason), "%s", ce->weight ? "static" : "static, weight 0");
        if (keel_disc_set_add(set, &ep) != 0)
            return KEEL_ENOMEM;
    }
    return 0;
}

static void apply_overrides(struct keel_discovery *d, struct keel_dcluster *c)
{
    for (size_t o = 0; o < d->n_overrides; o++) {
        const struct keel_override *ov = &d->overrides[o];
        if (strcmp(ov->cluster, c->cfg->name) != 0)
            continue;
        for (size_t k = 0; k < c->set.n; k++) {
            struct keel_disc_ep *e = &c->set.eps[k];
            if (strcmp(e->id, ov->id) != 0)
                continue;
            if (ov->weight >= 0) {
                e->has_weight_override = 1;
                e->weight_override = (uint32_t)ov->weight;
            }
            if (ov->drain) {
                e->extra_health |= KEEL_EP_H_ADMIN;
                snprintf(e->extra_reason, sizeof(e->extra_reason), "drained by an operator");
            }
        }
    }
}

/* Rebuilds the snapshot and hands it to the workers if it routes differently. */
static void publish(struct keel_discovery *d, int force)
{
    struct keel_disc_cluster_in *in = calloc(d->n_cl ? d->n_cl : 1, sizeof(*in));
    struct keel_disc_route_in *routes = calloc(d->n_cl ? d->n_cl : 1, sizeof(*routes));
    if (!in || !routes) {
        free(in);
        free(routes);
        KEEL_ERROR("discovery: out of memory building a snapshot; will retry");
        d->dirty = 1;
        return;
    }
    size_t n_in = 0, n_routes = 0;
    for (size_t i = 0; i < d->n_cl; i++) {
        struct keel_dcluster *c = &d->cl[i];
        if (i >= d->n_file && !c->listed)
            continue; /* left the catalog */
        if (i >= d->n_file && c->dyn_match && d->cfg->consul.catalog_listener_idx >= 0) {
            routes[n_routes].listener = (uint32_t)d->cfg->consul.catalog_listener_idx;
            routes[n_routes].match = c->dyn_match;
            routes[n_routes].cluster = (uint32_t)n_in;
            n_routes++;
        }
        for (size_t k = 0; k < c->set.n; k++) {
            c->set.eps[k].extra_health = 0;
            c->set.eps[k].extra_reason[0] = 0;
            c->set.eps[k].has_weight_override = 0;
        }
        keel_health_annotate(d, c);
        apply_overrides(d, c);
        in[n_in].ramp_new = c->ramp_ok;
        in[n_in].now_ms = keel_clock_now_ms;
        in[n_in].cfg = c->cfg;
        in[n_in].set = &c->set;
        in[n_in].stats = c->stats;
        n_in++;
    }
    size_t zombies = 0;
    keel_clock_update();
    for (size_t i = 0; i < n_in; i++)
        in[i].now_ms = keel_clock_now_ms;
    struct keel_snap *s =
        keel_snap_build(d->cfg, in, n_in, routes, n_routes, d->snap, d->gen + 1, &zombies);
    free(in);
    free(routes);
    if (!s) {
        KEEL_ERROR("discovery: out of memory building a snapshot; will retry");
        d->dirty = 1;
        return;
    }
    d->zombies = zombies;
    d->dirty = 0;
    for (size_t i = 0; i < d->n_cl; i++)
        if (d->cl[i].have_answer)
            d->cl[i].ramp_ok = 1;
    d->ramping = 0;
    for (uint32_t c = 0; c < s->n_clusters && !d->ramping; c++) {
        const struct keel_cluster *cl = &s->clusters[c];
        for (uint32_t i = 0; i < cl->n_eps && !d->ramping; i++) {
            uint64_t added = cl->eps[i].load->added_ms;
            d->ramping = added && keel_clock_now_ms < added + cl->cfg->slow_start_ms;
        }
    }
    if (!force && d->snap && keel_snap_same(s, d->snap)) {
        keel_snap_unref(s);
        return;
    }
    d->gen++;
    struct keel_snap *old = d->snap;
    d->snap = s;
    d->state_dirty = 1;
    KEEL_INFO("discovery: published snapshot %llu", (unsigned long long)s->gen);
    if (d->publish)
        d->publish(s, d->publish_arg);
    keel_snap_unref(old);
}

static void on_debounce(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct keel_discovery *d = t->data;
    publish(d, 0);
}

static void mark_dirty(struct keel_discovery *d)
{
    d->dirty = 1;
    if (!ev_is_active(&d->debounce)) {
        ev_timer_set(&d->debounce, d->cfg->debounce_ms / 1000.0, 0.);
        ev_timer_start(d->loop, &d->debounce);
    }
}

static void on_tick(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct keel_discovery *d = t->data;
    /* Zombies leave once their last request ended: only a rebuild notices. */
    if ((d->zombies || d->ramping) && !ev_is_active(&d->debounce))
        publish(d, 0);
    if (d->state_dirty && d->cfg->state_file) {
        if (keel_discovery_save_state(d, d->cfg->state_file) == 0)
            d->state_dirty = 0;
    }
}

static void log_set_change(const struct keel_dcluster *c, const struct keel_disc_set *old,
                           const struct keel_disc_set *nw)
{
    for (size_t i = 0; i < nw->n; i++) {
        const struct keel_disc_ep *e = &nw->eps[i];
        const struct keel_disc_ep *o = NULL;
        for (size_t j = 0; j < old->n && !o; j++)
            if (strcmp(old->eps[j].id, e->id) == 0)
                o = &old->eps[j];
        if (!o)
            KEEL_INFO("cluster %s: endpoint %s (%s) added: weight %u, %s", c->cfg->name, e->name,
                      e->id, e->weight, e->reason);
        else if (o->weight != e->weight || o->draining != e->draining ||
                 strcmp(o->reason, e->reason))
            KEEL_INFO("cluster %s: endpoint %s (%s) now weight %u, %s", c->cfg->name, e->name,
                      e->id, e->weight, e->reason);
    }
    for (size_t j = 0; j < old->n; j++) {
        int found = 0;
        for (size_t i = 0; i < nw->n && !found; i++)
            found = strcmp(old->eps[j].id, nw->eps[i].id) == 0;
        if (!found)
            KEEL_INFO("cluster %s: endpoint %s (%s) removed", c->cfg->name, old->eps[j].name,
                      old->eps[j].id);
    }
}

void keel_discovery_update(struct keel_discovery *d, struct keel_dcluster *c,
                           struct keel_disc_set *set)
{
    c->last_ok = ev_now(d->loop);
    c->answers++;
    c->last_error[0] = 0;
    c->from_state_file = 0;
    if (c->have_answer && keel_disc_set_equal(&c->set, set)) {
        keel_disc_set_free(set);
        return;
    }
    log_set_change(c, &c->set, set);
    keel_disc_set_free(&c->set);
    c->set = *set;
    memset(set, 0, sizeof(*set));
    c->have_answer = 1;
    d->state_dirty = 1;
    mark_dirty(d);
}

void keel_discovery_error(struct keel_discovery *d, struct keel_dcluster *c, const char *fmt, ...)
{
    char msg[sizeof(c->last_error)];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    c->errors++;
    /* Say it once per distinct failure, not on every retry. */
    if (strcmp(msg, c->last_error) != 0)
        KEEL_WARN("cluster %s: discovery failed, keeping the last good %zu endpoints: %s",
                  c->cfg->name, c->set.n, msg);
    snprintf(c->last_error, sizeof(c->last_error), "%s", msg);
}

int keel_discovery_init(struct keel_discovery *d, struct ev_loop *loop, const struct keel_cfg *cfg,
                        struct keel_cluster_stats *stats, keel_discovery_publish_cb cb, void *arg)
{
    memset(d, 0, sizeof(*d));
    d->loop = loop;
    d->cfg = cfg;
    d->publish = cb;
    d->publish_arg = arg;
    /* Fixed capacity: sources keep pointers to their clusters, so the array never moves. */
    d->cap_cl = cfg->n_clusters + (cfg->consul.catalog ? KEEL_DISCOVERY_MAX_DYNAMIC : 0);
    d->cl = calloc(d->cap_cl ? d->cap_cl : 1, sizeof(*d->cl));
    if (!d->cl)
        return KEEL_ENOMEM;
    d->n_cl = d->n_file = cfg->n_clusters;
    for (size_t i = 0; i < cfg->n_clusters; i++) {
        struct keel_dcluster *c = &d->cl[i];
        c->cfg = &cfg->clusters[i];
        c->stats = stats ? &stats[i] : NULL;
        if (c->cfg->discovery == KEEL_DISC_STATIC) {
            if (static_set(c->cfg, &c->set) != 0)
                return KEEL_ENOMEM;
            c->have_answer = 1;
        }
    }
    if (cfg->state_file && keel_discovery_load_state(d, cfg->state_file) != 0)
        KEEL_WARN("state file %s: ignored (see above)", cfg->state_file);
    ev_init(&d->debounce, on_debounce);
    d->debounce.data = d;
    ev_timer_init(&d->tick, on_tick, 1.0, 1.0);
    d->tick.data = d;
    publish(d, 1);
    return d->snap ? 0 : KEEL_ENOMEM;
}

int keel_discovery_start(struct keel_discovery *d)
{
    ev_timer_start(d->loop, &d->tick);
    int rc = keel_consul_start(d);
    if (rc == 0)
        rc = keel_dns_srv_start(d);
    if (rc == 0)
        rc = keel_health_start(d);
    return rc;
}

void keel_discovery_stop(struct keel_discovery *d)
{
    keel_health_stop(d);
    keel_consul_stop(d);
    keel_dns_srv_stop(d);
    ev_timer_stop(d->loop, &d->debounce);
    ev_timer_stop(d->loop, &d->tick);
    if (d->cfg->state_file && d->state_dirty)
        keel_discovery_save_state(d, d->cfg->state_file);
    for (size_t i = 0; i < d->n_cl; i++) {
        struct keel_dcluster *c = &d->cl[i];
        keel_disc_set_free(&c->set);
        if (c->dyn_cfg) {
            free(c->dyn_cfg->name);
            free(c->dyn_cfg->service);
            free(c->dyn_cfg->datacenter);
            free(c->dyn_cfg);
            free(c->stats);
        }
        if (c->dyn_match) {
            free(c->dyn_match->host);
            free(c->dyn_match->path_prefix);
            free(c->dyn_match);
        }
    }
    for (size_t i = 0; i < d->n_retired; i++) {
        free(d->retired_matches[i]->host);
        free(d->retired_matches[i]->path_prefix);
        free(d->retired_matches[i]);
    }
    free(d->retired_matches);
    for (size_t i = 0; i < d->n_retired_cfgs; i++)
        free(d->retired_cfgs[i]);
    free(d->retired_cfgs);
    d->retired_cfgs = NULL;
    d->n_retired_cfgs = 0;
    free(d->overrides);
    free(d->cl);
    d->cl = NULL;
    d->n_cl = 0;
    keel_snap_unref(d->snap);
    d->snap = NULL;
}

/* ---- clusters from the Consul catalog ------------------------------------------------------ */

void keel_discovery_touch(struct keel_discovery *d)
{
    mark_dirty(d);
}

struct keel_dcluster *keel_discovery_add_dynamic(struct keel_discovery *d, const char *service)
{
    struct keel_dcluster *c = keel_discovery_find(d, service);
    if (c && !c->dyn_cfg) {
        KEEL_WARN_RL("consul catalog: service %s is tagged keel but keel.yaml defines a cluster "
                     "of that name; the file wins",
                     service);
        return NULL;
    }
    if (c) {
        if (!c->listed) {
            c->listed = 1;
            KEEL_INFO("consul catalog: service %s is back; cluster restored", service);
            mark_dirty(d);
        }
        return c;
    }
    if (d->n_cl >= d->cap_cl) {
        KEEL_WARN_RL("consul catalog: more than %d tagged services; %s ignored",
                     KEEL_DISCOVERY_MAX_DYNAMIC, service);
        return NULL;
    }
    struct keel_cfg_cluster *cc = calloc(1, sizeof(*cc));
    struct keel_cluster_stats *st = calloc(1, sizeof(*st));
    if (!cc || !st || !(cc->name = strdup(service)) || !(cc->service = strdup(service)) ||
        (d->cfg->consul.datacenter && !(cc->datacenter = strdup(d->cfg->consul.datacenter)))) {
        if (cc) {
            free(cc->name);
            free(cc->service);
        }
        free(cc);
        free(st);
        KEEL_ERROR("consul catalog: out of memory adding %s", service);
        return NULL;
    }
    keel_config_cluster_defaults(cc);
    cc->discovery = KEEL_DISC_CONSUL;
    cc->dynamic = 1;
    c = &d->cl[d->n_cl++];
    memset(c, 0, sizeof(*c));
    c->cfg = c->dyn_cfg = cc;
    c->stats = st;
    c->listed = 1;
    KEEL_INFO("consul catalog: service %s tagged keel: new cluster", service);
    /* No endpoints until its health answer: published then, together with its route. */
    return c;
}

void keel_discovery_unlist(struct keel_discovery *d, struct keel_dcluster *c)
{
    if (!c->listed)
        return;
    c->listed = 0;
    KEEL_INFO("consul catalog: service %s no longer tagged keel (or gone): cluster removed",
              c->cfg->name);
    mark_dirty(d);
}

static int str_eq(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

/* A copy of c's configuration speaking another upstream protocol; the old one is retired, not
 * freed: snapshots, upstream connections and HTTP/2 sessions in workers still point at it. */
static int switch_protocol(struct keel_discovery *d, struct keel_dcluster *c, int protocol)
{
    struct keel_cfg_cluster *n = malloc(sizeof(*n));
    struct keel_cfg_cluster **r =
        realloc(d->retired_cfgs, (d->n_retired_cfgs + 1) * sizeof(*d->retired_cfgs));
    if (r)
        d->retired_cfgs = r;
    if (!n || !r) {
        free(n);
        KEEL_ERROR("cluster %s: out of memory changing its protocol", c->cfg->name);
        return 0;
    }
    *n = *c->dyn_cfg;
    keel_config_cluster_protocol(n, (enum keel_upstream_proto)protocol);
    d->retired_cfgs[d->n_retired_cfgs++] = c->dyn_cfg;
    c->cfg = c->dyn_cfg = n;
    KEEL_INFO("cluster %s: upstream protocol %s (from keel.protocol)", n->name,
              keel_config_upstream_proto_name(n->protocol));
    return 1;
}

void keel_discovery_set_dynamic(struct keel_discovery *d, struct keel_dcluster *c, const char *host,
                                const char *path, int lb, int warning_drain, int protocol)
{
    if (!c->dyn_cfg)
        return;
    int changed = 0;
    if ((int)c->dyn_cfg->protocol != protocol && protocol >= KEEL_UP_HTTP1 &&
        protocol <= KEEL_UP_GRPC)
        changed |= switch_protocol(d, c, protocol);
    if ((int)c->dyn_cfg->lb != lb && lb >= 0 && lb < KEEL_LB__COUNT) {
        /* Read by the control thread only; snapshots copy the policy when built. */
        c->dyn_cfg->lb = (enum keel_lb_policy)lb;
        changed = 1;
    }
    c->dyn_cfg->warning_drain = warning_drain;
    const char *prefix = path ? path : "/";
    if (!c->dyn_match || !str_eq(c->dyn_match->host, host) ||
        !str_eq(c->dyn_match->path_prefix, prefix)) {
        /* Workers may be reading the old route: never change it in place. */
        struct keel_cfg_match *m = calloc(1, sizeof(*m));
        if (!m || !(m->path_prefix = strdup(prefix)) || (host && !(m->host = strdup(host)))) {
            if (m)
                free(m->path_prefix);
            free(m);
            KEEL_ERROR("cluster %s: out of memory updating its route", c->cfg->name);
            return;
        }
        if (c->dyn_match) {
            struct keel_cfg_match **r =
                realloc(d->retired_matches, (d->n_retired + 1) * sizeof(*r));
            if (!r) {
                free(m->host);
                free(m->path_prefix);
                free(m);
                return;
            }
            d->retired_matches = r;
            r[d->n_retired++] = c->dyn_match;
        }
        c->dyn_match = m;
        KEEL_INFO("cluster %s: route %s%s (from keel.route)", c->cfg->name, host ? host : "*",
                  prefix);
        changed = 1;
    }
    if (changed)
        mark_dirty(d);
}

int keel_discovery_override(struct keel_discovery *d, const char *cluster, const char *endpoint,
                            int drain, int weight)
{
    struct keel_dcluster *c = keel_discovery_find(d, cluster);
    if (!c || (c->dyn_cfg && !c->listed))
        return KEEL_ENOENT;
    const struct keel_disc_ep *e = NULL;
    for (size_t k = 0; k < c->set.n && !e; k++)
        if (strcmp(c->set.eps[k].id, endpoint) == 0 || strcmp(c->set.eps[k].name, endpoint) == 0)
            e = &c->set.eps[k];
    if (!e)
        return KEEL_ENOENT;
    struct keel_override *ov = NULL;
    for (size_t o = 0; o < d->n_overrides && !ov; o++)
        if (!strcmp(d->overrides[o].cluster, cluster) && !strcmp(d->overrides[o].id, e->id))
            ov = &d->overrides[o];
    if (!ov) {
        struct keel_override *n = realloc(d->overrides, (d->n_overrides + 1) * sizeof(*n));
        if (!n)
            return KEEL_ENOMEM;
        d->overrides = n;
        ov = &d->overrides[d->n_overrides++];
        memset(ov, 0, sizeof(*ov));
        snprintf(ov->cluster, sizeof(ov->cluster), "%s", cluster);
        snprintf(ov->id, sizeof(ov->id), "%s", e->id);
        ov->weight = -1;
    }
    if (drain >= 0)
        ov->drain = drain;
    if (weight >= 0 || weight == -2)
        ov->weight = weight == -2 ? -1 : weight;
    KEEL_INFO("cluster %s: endpoint %s (%s): operator override: %s, weight %s%d", cluster, e->name,
              e->id, ov->drain ? "drained" : "not drained",
              ov->weight >= 0 ? "" : "from discovery, ",
              ov->weight >= 0 ? ov->weight : (int)e->weight);
    /* An override that no longer changes anything is forgotten. */
    if (!ov->drain && ov->weight < 0)
        *ov = d->overrides[--d->n_overrides];
    mark_dirty(d);
    return 0;
}

/* ---- state file ------------------------------------------------------------------------- */

int keel_discovery_save_state(const struct keel_discovery *d, const char *path)
{
    json_t *root = json_object();
    json_t *cls = json_object();
    json_object_set_new(root, "version", json_integer(1));
    for (size_t i = 0; i < d->n_cl; i++) {
        const struct keel_dcluster *c = &d->cl[i];
        if (c->cfg->discovery == KEEL_DISC_STATIC || !c->have_answer)
            continue;
        json_t *jc = json_object();
        json_t *eps = json_array();
        json_object_set_new(jc, "discovery",
                            json_string(keel_discovery_kind_str(c->cfg->discovery)));
        json_object_set_new(jc, "index", json_integer((json_int_t)c->index));
        for (size_t k = 0; k < c->set.n; k++) {
            const struct keel_disc_ep *e = &c->set.eps[k];
            json_t *je = json_object();
            json_object_set_new(je, "id", json_string(e->id));
            json_object_set_new(je, "address", json_string(e->name));
            json_object_set_new(je, "weight", json_integer(e->weight));
            json_object_set_new(je, "draining", json_boolean(e->draining));
            json_object_set_new(je, "reason", json_string(e->reason));
            json_array_append_new(eps, je);
        }
        json_object_set_new(jc, "endpoints", eps);
        json_object_set_new(cls, c->cfg->name, jc);
    }
    json_object_set_new(root, "clusters", cls);
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid());
    int rc = json_dump_file(root, tmp, JSON_INDENT(1) | JSON_SORT_KEYS);
    json_decref(root);
    if (rc != 0 || rename(tmp, path) != 0) {
        KEEL_WARN("state file %s: cannot write: %s", path, strerror(errno));
        unlink(tmp);
        return KEEL_EIO;
    }
    return 0;
}

/* "1.2.3.4:80" or "[::1]:80" into a sockaddr. */
static int parse_ipport(const char *s, struct sockaddr_storage *sa, socklen_t *salen)
{
    char host[64];
    const char *colon = strrchr(s, ':');
    if (!colon || colon == s)
        return -1;
    size_t hl = (size_t)(colon - s);
    const char *h = s;
    if (s[0] == '[' && colon[-1] == ']') {
        h = s + 1;
        hl -= 2;
    }
    if (hl >= sizeof(host))
        return -1;
    memcpy(host, h, hl);
    host[hl] = 0;
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || port < 1 || port > 65535)
        return -1;
    memset(sa, 0, sizeof(*sa));
    struct sockaddr_in *s4 = (struct sockaddr_in *)sa;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)sa;
    if (inet_pton(AF_INET, host, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)port);
        *salen = sizeof(*s4);
        return 0;
    }
    if (inet_pton(AF_INET6, host, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)port);
        *salen = sizeof(*s6);
        return 0;
    }
    return -1;
}

int keel_discovery_load_state(struct keel_discovery *d, const char *path)
{
    json_error_t jerr;
    if (access(path, F_OK) != 0)
        return 0;
    json_t *root = json_load_file(path, 0, &jerr);
    if (!root) {
        KEEL_WARN("state file %s:%d:%d: %s", path, jerr.line, jerr.column, jerr.text);
        return KEEL_EBADMSG;
    }
    json_t *cls = json_object_get(root, "clusters");
    if (json_integer_value(json_object_get(root, "version")) != 1 || !json_is_object(cls)) {
        KEEL_WARN("state file %s: not a keel state file (version 1)", path);
        json_decref(root);
        return KEEL_EBADMSG;
    }
    for (size_t i = 0; i < d->n_cl; i++) {
        struct keel_dcluster *c = &d->cl[i];
        json_t *jc = json_object_get(cls, c->cfg->name);
        if (c->cfg->discovery == KEEL_DISC_STATIC || c->have_answer || !json_is_object(jc))
            continue;
        const char *kind = json_string_value(json_object_get(jc, "discovery"));
        if (!kind || strcmp(kind, keel_discovery_kind_str(c->cfg->discovery)) != 0)
            continue; /* the cluster changed its source since: the saved set means nothing */
        json_t *eps = json_object_get(jc, "endpoints");
        size_t k;
        json_t *je;
        struct keel_disc_set set = {0};
        json_array_foreach(eps, k, je)
        {
            struct keel_disc_ep e;
            memset(&e, 0, sizeof(e));
            const char *id = json_string_value(json_object_get(je, "id"));
            const char *addr = json_string_value(json_object_get(je, "address"));
            const char *reason = json_string_value(json_object_get(je, "reason"));
            json_t *w = json_object_get(je, "weight");
            if (!id || !addr || !json_is_integer(w) || json_integer_value(w) < 0 ||
                json_integer_value(w) > 10000 || parse_ipport(addr, &e.sa, &e.salen) != 0)
                continue;
            snprintf(e.id, sizeof(e.id), "%s", id);
            snprintf(e.name, sizeof(e.name), "%s", addr);
            e.weight = (uint32_t)json_integer_value(w);
            e.draining = json_is_true(json_object_get(je, "draining")) || e.weight == 0;
            snprintf(e.reason, sizeof(e.reason), "%s (from state file)", reason ? reason : "");
            if (keel_disc_set_add(&set, &e) != 0)
                break;
        }
        keel_disc_set_free(&c->set);
        c->set = set;
        c->have_answer = 1;
        c->from_state_file = 1;
        c->index = 0; /* a restarted keel asks Consul afresh */
        KEEL_INFO("cluster %s: %zu endpoints from state file %s until discovery answers",
                  c->cfg->name, set.n, path);
    }
    json_decref(root);
    return 0;
}
