/* SPDX-License-Identifier: MIT */
/* Admin HTTP endpoint: readiness, the state of every endpoint, Prometheus metrics. */
#include <errno.h>
#include <stdarg.h>
#include <jansson.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include "keel/balancer.h"
#include "keel/err.h"
#include "keel/log.h"
#include "keel/outlier.h"
#include "admin.h"
#include "conn.h"
#include "discovery.h"

#define ADMIN_MAX_REQ 16384

struct admin_conn {
    ev_io io;
    ev_timer timer;
    int fd;
    struct keel_buf in, out;
    struct admin_conn *next;
};

static struct {
    struct keel_runtime *rt;
    int fd;
    ev_io io;
    struct admin_conn *conns;
} admin = {.fd = -1};

static const char *const class_names[KEEL_STAT_CLASSES] = {"none", "1xx", "2xx",
                                                           "3xx",  "4xx", "5xx"};

/* Prometheus label values escape backslash, double quote and newline. */
static void label(struct keel_buf *b, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\' || *v == '"')
            keel_buf_printf(b, "\\%c", *v);
        else if (*v == '\n')
            keel_buf_append(b, "\\n", 2);
        else
            keel_buf_append(b, v, 1);
    }
}

static void help(struct keel_buf *b, const char *name, const char *type, const char *text)
{
    keel_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, text, name, type);
}

/* One sample with one label: metric{key="value"} <formatted number>. */
static void sample(struct keel_buf *b, const char *metric, const char *key, const char *val,
                   const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void sample(struct keel_buf *b, const char *metric, const char *key, const char *val,
                   const char *fmt, ...)
{
    char num[64];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(num, sizeof(num), fmt, ap);
    va_end(ap);
    keel_buf_printf(b, "%s{%s=\"", metric, key);
    label(b, val);
    keel_buf_printf(b, "\"} %s\n", num);
}

static uint64_t ld(const _Atomic uint64_t *p)
{
    return atomic_load_explicit(p, memory_order_relaxed);
}

int keel_admin_metrics(struct keel_runtime *rt, struct keel_buf *b)
{
    const struct keel_cfg *cfg = rt->cfg;
    const struct keel_snap *s = rt->snap;

    help(b, "keel_listener_requests_total", "counter",
         "Requests answered on a listener, by status class (none: no response).");
    for (size_t i = 0; i < cfg->n_listeners; i++)
        for (int k = 0; k < KEEL_STAT_CLASSES; k++) {
            keel_buf_printf(b, "keel_listener_requests_total{listener=\"");
            label(b, cfg->listeners[i].name);
            keel_buf_printf(b, "\",class=\"%s\"} %llu\n", class_names[k],
                            (unsigned long long)ld(&rt->lstats[i].requests[k]));
        }
    help(b, "keel_listener_active_connections", "gauge", "Open client connections.");
    for (size_t i = 0; i < cfg->n_listeners; i++) {
        sample(b, "keel_listener_active_connections", "listener", cfg->listeners[i].name, "%lld",
               (long long)atomic_load_explicit(&rt->lstats[i].active_conns, memory_order_relaxed));
    }
    static const struct {
        const char *name, *help;
        size_t off;
    } lcounters[] = {
        {"keel_listener_connections_total", "Client connections accepted.",
         offsetof(struct keel_listener_stats, accepted)},
        {"keel_listener_rejected_connections_total",
         "Client connections closed at once because max_connections was reached.",
         offsetof(struct keel_listener_stats, rejected)},
        {"keel_listener_parse_errors_total", "Requests rejected as malformed or over a limit.",
         offsetof(struct keel_listener_stats, parse_errors)},
        {"keel_listener_h2_connections_total", "Client connections that spoke HTTP/2.",
         offsetof(struct keel_listener_stats, h2_conns)},
        {"keel_listener_h2_abuse_total",
         "HTTP/2 connections closed for abuse (floods, rapid reset, oversized headers, "
         "zero-window hold).",
         offsetof(struct keel_listener_stats, h2_abuse)},
    };
    for (size_t k = 0; k < sizeof(lcounters) / sizeof(lcounters[0]); k++) {
        help(b, lcounters[k].name, "counter", lcounters[k].help);
        for (size_t i = 0; i < cfg->n_listeners; i++) {
            const _Atomic uint64_t *v =
                (const _Atomic uint64_t *)((const char *)&rt->lstats[i] + lcounters[k].off);
            sample(b, lcounters[k].name, "listener", cfg->listeners[i].name, "%llu",
                   (unsigned long long)ld(v));
        }
    }

    struct {
        const char *name, *type, *help;
    } ep_metrics[] = {
        {"keel_upstream_requests_total", "counter",
         "Requests sent to an endpoint, by the status class the client got."},
        {"keel_upstream_active_requests", "gauge",
         "In-flight requests (HTTP) or connections (TCP) on an endpoint, all workers."},
        {"keel_upstream_connect_failures_total", "counter", "Failed connection attempts."},
        {"keel_upstream_connections_total", "counter", "Upstream connections opened."},
        {"keel_upstream_weight", "gauge", "Effective weight of an endpoint."},
        {"keel_upstream_healthy", "gauge", "1 when the endpoint may receive new requests."},
        {"keel_upstream_ejections_total", "counter",
         "Passive ejections (consecutive 5xx, gateway failures or timeouts)."},
    };
    for (size_t m = 0; m < sizeof(ep_metrics) / sizeof(ep_metrics[0]); m++) {
        help(b, ep_metrics[m].name, ep_metrics[m].type, ep_metrics[m].help);
        for (uint32_t c = 0; c < s->n_clusters; c++) {
            const struct keel_cluster *cl = &s->clusters[c];
            for (uint32_t e = 0; e < cl->n_eps; e++) {
                const struct keel_endpoint *ep = &cl->eps[e];
                struct keel_ep_load *ld_ = ep->load;
                int kmax = m == 0 ? KEEL_STAT_CLASSES : 1;
                for (int k = 0; k < kmax; k++) {
                    keel_buf_printf(b, "%s{cluster=\"", ep_metrics[m].name);
                    label(b, cl->name);
                    keel_buf_printf(b, "\",endpoint=\"");
                    label(b, ep->name);
                    if (m == 0)
                        keel_buf_printf(b, "\",class=\"%s", class_names[k]);
                    unsigned long long v = 0;
                    switch (m) {
                    case 0:
                        v = ld(&ld_->requests[k]);
                        break;
                    case 1:
                        v = atomic_load_explicit(&ld_->active, memory_order_relaxed);
                        break;
                    case 2:
                        v = ld(&ld_->connect_failures);
                        break;
                    case 3:
                        v = ld(&ld_->connections);
                        break;
                    case 4:
                        v = ep->weight;
                        break;
                    case 5:
                        v = keel_ep_eligible(ep) ? 1 : 0;
                        break;
                    default:
                        v = ld(&ld_->ejections);
                    }
                    keel_buf_printf(b, "\"} %llu\n", v);
                }
            }
        }
    }
    /* Cluster counters; `always`: a sample (0) also for a cluster without statistics. */
    static const struct {
        const char *name, *help;
        size_t off;
        int always;
    } ccounters[] = {
        {"keel_cluster_no_endpoint_total",
         "Requests answered 503 because no endpoint was eligible.",
         offsetof(struct keel_cluster_stats, no_endpoint), 1},
        {"keel_cluster_retries_total",
         "Requests sent again to another endpoint after a failure that proved nothing.",
         offsetof(struct keel_cluster_stats, retries), 0},
        {"keel_cluster_retries_denied_total", "Retries the cluster's retry budget refused.",
         offsetof(struct keel_cluster_stats, retries_denied), 0},
        {"keel_cluster_panic_total",
         "Picks made in panic mode (too little healthy weight: all present endpoints used).",
         offsetof(struct keel_cluster_stats, panic), 1},
    };
    for (size_t k = 0; k < sizeof(ccounters) / sizeof(ccounters[0]); k++) {
        help(b, ccounters[k].name, "counter", ccounters[k].help);
        for (uint32_t c = 0; c < s->n_clusters; c++) {
            const struct keel_cluster_stats *st = s->clusters[c].stats;
            if (!st && !ccounters[k].always)
                continue;
            const _Atomic uint64_t *v =
                st ? (const _Atomic uint64_t *)((const char *)st + ccounters[k].off) : NULL;
            sample(b, ccounters[k].name, "cluster", s->clusters[c].name, "%llu",
                   v ? (unsigned long long)ld(v) : 0ULL);
        }
    }
    static const char *const limits[3] = {"max_connections", "max_pending_requests",
                                          "max_requests"};
    help(b, "keel_cluster_circuit_breaker_rejections_total", "counter",
         "Requests answered 503 at once because a circuit breaker limit was reached.");
    for (uint32_t c = 0; c < s->n_clusters; c++)
        for (int k = 0; k < 3 && s->clusters[c].stats; k++) {
            keel_buf_printf(b, "keel_cluster_circuit_breaker_rejections_total{cluster=\"");
            label(b, s->clusters[c].name);
            keel_buf_printf(b, "\",limit=\"%s\"} %llu\n", limits[k],
                            (unsigned long long)ld(&s->clusters[c].stats->cb_rejected[k]));
        }
    help(b, "keel_cluster_upstream_connections", "gauge",
         "Upstream connections open for the cluster, all workers.");
    for (uint32_t c = 0; c < s->n_clusters; c++) {
        if (!s->clusters[c].stats)
            continue;
        sample(b, "keel_cluster_upstream_connections", "cluster", s->clusters[c].name, "%lld",
               (long long)atomic_load_explicit(&s->clusters[c].stats->open_conns,
                                               memory_order_relaxed));
    }
    help(b, "keel_request_duration_seconds", "histogram",
         "Time from request head to the end of the response, per cluster.");
    for (uint32_t c = 0; c < s->n_clusters; c++) {
        struct keel_cluster_stats *st = s->clusters[c].stats;
        if (!st)
            continue;
        uint64_t cum = 0;
        for (int k = 0; k <= KEEL_LAT_BUCKETS; k++) {
            cum += ld(&st->lat_bucket[k]);
            keel_buf_printf(b, "keel_request_duration_seconds_bucket{cluster=\"");
            label(b, s->clusters[c].name);
            if (k < KEEL_LAT_BUCKETS)
                keel_buf_printf(b, "\",le=\"%g\"} %llu\n", keel_lat_bounds_ms[k] / 1000.0,
                                (unsigned long long)cum);
            else
                keel_buf_printf(b, "\",le=\"+Inf\"} %llu\n", (unsigned long long)cum);
        }
        sample(b, "keel_request_duration_seconds_sum", "cluster", s->clusters[c].name, "%.6f",
               (double)ld(&st->lat_sum_us) / 1e6);
        sample(b, "keel_request_duration_seconds_count", "cluster", s->clusters[c].name, "%llu",
               (unsigned long long)cum);
    }
    if (rt->disc) {
        struct keel_discovery *d = rt->disc;
        double now = ev_now(rt->control_loop);
        help(b, "keel_discovery_seconds_since_success", "gauge",
             "Seconds since the cluster's discovery source last answered (absent: never).");
        for (size_t i = 0; i < d->n_cl; i++) {
            if (d->cl[i].last_ok <= 0)
                continue;
            sample(b, "keel_discovery_seconds_since_success", "cluster", d->cl[i].cfg->name, "%.3f",
                   now - d->cl[i].last_ok);
        }
        help(b, "keel_discovery_errors_total", "counter",
             "Failed discovery requests (the last good endpoints were kept).");
        for (size_t i = 0; i < d->n_cl; i++) {
            sample(b, "keel_discovery_errors_total", "cluster", d->cl[i].cfg->name, "%llu",
                   (unsigned long long)d->cl[i].errors);
        }
        help(b, "keel_discovery_answers_total", "counter", "Successful discovery answers.");
        for (size_t i = 0; i < d->n_cl; i++) {
            sample(b, "keel_discovery_answers_total", "cluster", d->cl[i].cfg->name, "%llu",
                   (unsigned long long)d->cl[i].answers);
        }
        help(b, "keel_discovery_tag_conflicts", "gauge",
             "Instances of a catalog service whose keel.* tags disagree with the newest one.");
        for (size_t i = 0; i < d->n_cl; i++) {
            if (!d->cl[i].dyn_cfg || !d->cl[i].listed)
                continue;
            sample(b, "keel_discovery_tag_conflicts", "cluster", d->cl[i].cfg->name, "%zu",
                   d->cl[i].conflicts);
        }
        help(b, "keel_discovery_index", "gauge", "Last X-Consul-Index seen per Consul cluster.");
        for (size_t i = 0; i < d->n_cl; i++) {
            if (d->cl[i].cfg->discovery != KEEL_DISC_CONSUL)
                continue;
            sample(b, "keel_discovery_index", "cluster", d->cl[i].cfg->name, "%llu",
                   (unsigned long long)d->cl[i].index);
        }
    }
    help(b, "keel_snapshot_generation", "gauge", "Generation of the routing snapshot in use.");
    keel_buf_printf(b, "keel_snapshot_generation %llu\n", (unsigned long long)s->gen);
    help(b, "keel_draining", "gauge", "1 while keel is shutting down.");
    keel_buf_printf(b, "keel_draining %d\n", atomic_load(&rt->draining) ? 1 : 0);
    return 0;
}

/* Which source decides the endpoint's state now (DESIGN.md 3: each source owns its bit). */
static const char *ep_source(const struct keel_endpoint *ep)
{
    if (ep->health & KEEL_EP_H_ADMIN)
        return "operator";
    if (ep->health & KEEL_EP_H_DISCOVERY || ep->weight == 0)
        return "discovery";
    if (ep->health & KEEL_EP_H_ACTIVE)
        return "active_check";
    if (atomic_load_explicit(&ep->load->ejected_until_ms, memory_order_relaxed) > keel_clock_now_ms)
        return "passive_ejection";
    if (ep->load->added_ms && !strncmp(ep->reason, "slow start", 10))
        return "slow_start";
    return "discovery";
}

/* Since when: an ejection counts from its start, anything else from the snapshot that last
 * changed the endpoint's state or reason. */
static uint64_t ep_since_ms(const struct keel_endpoint *ep)
{
    uint64_t until = atomic_load_explicit(&ep->load->ejected_until_ms, memory_order_relaxed);
    if (until > keel_clock_now_ms && !(ep->health & (KEEL_EP_H_ADMIN | KEEL_EP_H_DISCOVERY)))
        return ep->load->ejected_at_ms;
    return ep->since_ms;
}

/* Why an endpoint gets or does not get new requests. */
static const char *ep_state(const struct keel_endpoint *ep, const char **reason)
{
    static char buf[192];
    uint64_t until = atomic_load_explicit(&ep->load->ejected_until_ms, memory_order_relaxed);
    if (until > keel_clock_now_ms && !(ep->health & (KEEL_EP_H_ADMIN | KEEL_EP_H_DISCOVERY))) {
        snprintf(buf, sizeof(buf), "ejected for %.1fs more: %s (ejection #%u)",
                 (until - keel_clock_now_ms) / 1000.0,
                 keel_outlier_cause_str(
                     atomic_load_explicit(&ep->load->eject_cause, memory_order_relaxed)),
                 atomic_load_explicit(&ep->load->times_ejected, memory_order_relaxed));
        *reason = buf;
        return "ejected";
    }
    if (ep->health & KEEL_EP_H_ADMIN) {
        *reason = "drained by an operator";
        return "draining";
    }
    if (ep->health & KEEL_EP_H_DISCOVERY) {
        *reason = ep->reason[0] ? ep->reason : "discovery reports it draining";
        return "draining";
    }
    if (ep->health & KEEL_EP_H_ACTIVE) {
        *reason = ep->reason[0] ? ep->reason : "active health check failing";
        return "unhealthy";
    }
    if (ep->health & KEEL_EP_H_PASSIVE) {
        *reason = "ejected after consecutive failures";
        return "ejected";
    }
    if (ep->weight == 0) {
        *reason = "weight is 0";
        return "draining";
    }
    *reason = ep->reason[0] ? ep->reason : "serving";
    return "healthy";
}

int keel_admin_clusters(struct keel_runtime *rt, struct keel_buf *b)
{
    const struct keel_snap *s = rt->snap;
    json_t *root = json_object();
    json_t *cls = json_array();
    json_object_set_new(root, "generation", json_integer((json_int_t)s->gen));
    /* The oldest generation a worker still routes new requests with: once it equals
     * "generation", every worker has adopted the latest snapshot. */
    uint64_t oldest = s->gen;
    for (uint32_t i = 0; i < rt->n_workers; i++) {
        uint64_t g = atomic_load(&rt->workers[i].adopted_gen);
        if (g < oldest)
            oldest = g;
    }
    json_object_set_new(root, "workers_generation", json_integer((json_int_t)oldest));
    json_object_set_new(root, "draining", json_boolean(atomic_load(&rt->draining)));
    for (uint32_t c = 0; c < s->n_clusters; c++) {
        const struct keel_cluster *cl = &s->clusters[c];
        json_t *jc = json_object();
        json_t *eps = json_array();
        json_object_set_new(jc, "name", json_string(cl->name));
        json_object_set_new(jc, "lb", json_string(cl->lb->name));
        json_object_set_new(jc, "protocol",
                            json_string(keel_config_upstream_proto_name(cl->cfg->protocol)));
        json_object_set_new(jc, "tls", json_boolean(cl->cfg->tls.enabled));
        const struct keel_dcluster *dc = rt->disc ? keel_discovery_find(rt->disc, cl->name) : NULL;
        if (dc) {
            json_t *jd = json_object();
            double now = ev_now(rt->control_loop);
            json_object_set_new(jd, "source",
                                json_string(keel_discovery_kind_str(dc->cfg->discovery)));
            if (dc->cfg->service)
                json_object_set_new(jd, "service", json_string(dc->cfg->service));
            if (dc->cfg->dns_name)
                json_object_set_new(jd, "name", json_string(dc->cfg->dns_name));
            json_object_set_new(jd, "index", json_integer((json_int_t)dc->index));
            json_object_set_new(jd, "seconds_since_success",
                                dc->last_ok > 0 ? json_real(now - dc->last_ok) : json_null());
            json_object_set_new(jd, "from_state_file", json_boolean(dc->from_state_file));
            json_object_set_new(jd, "answers", json_integer((json_int_t)dc->answers));
            json_object_set_new(jd, "errors", json_integer((json_int_t)dc->errors));
            json_object_set_new(jd, "last_error", json_string(dc->last_error));
            if (dc->dyn_cfg) {
                /* Made from Consul catalog tags: what the newest registration says. */
                json_object_set_new(jd, "from_catalog", json_true());
                if (dc->dyn_match)
                    json_object_set_new(
                        jd, "route",
                        json_pack("{s:s?,s:s}", "host", dc->dyn_match->host, "path_prefix",
                                  dc->dyn_match->path_prefix ? dc->dyn_match->path_prefix : "/"));
                json_object_set_new(jd, "tag_conflicts", json_integer((json_int_t)dc->conflicts));
                json_object_set_new(jd, "tag_conflict_example", json_string(dc->conflict_id));
                json_object_set_new(jd, "tag_errors", json_string(dc->tag_errors));
            }
            json_object_set_new(jc, "discovery", jd);
        }
        if (cl->stats)
            json_object_set_new(jc, "no_endpoint",
                                json_integer((json_int_t)ld(&cl->stats->no_endpoint)));
        for (uint32_t e = 0; e < cl->n_eps; e++) {
            const struct keel_endpoint *ep = &cl->eps[e];
            const char *reason = "";
            json_t *je = json_object();
            json_t *reqs = json_object();
            json_object_set_new(je, "address", json_string(ep->name));
            json_object_set_new(je, "id", json_string(ep->id));
            json_object_set_new(je, "weight", json_integer(ep->weight));
            json_object_set_new(
                je, "active",
                json_integer(atomic_load_explicit(&ep->load->active, memory_order_relaxed)));
            json_object_set_new(je, "state", json_string(ep_state(ep, &reason)));
            json_object_set_new(je, "reason", json_string(reason));
            json_object_set_new(je, "source", json_string(ep_source(ep)));
            uint64_t since = ep_since_ms(ep);
            json_object_set_new(je, "since_seconds",
                                since && since <= keel_clock_now_ms
                                    ? json_real((keel_clock_now_ms - since) / 1000.0)
                                    : json_null());
            for (int k = 0; k < KEEL_STAT_CLASSES; k++)
                json_object_set_new(reqs, class_names[k],
                                    json_integer((json_int_t)ld(&ep->load->requests[k])));
            json_object_set_new(je, "requests", reqs);
            json_object_set_new(je, "connect_failures",
                                json_integer((json_int_t)ld(&ep->load->connect_failures)));
            json_object_set_new(je, "connections",
                                json_integer((json_int_t)ld(&ep->load->connections)));
            json_object_set_new(
                je, "latency_ewma_ms",
                json_real(atomic_load_explicit(&ep->load->ewma_latency_us, memory_order_relaxed) /
                          1000.0));
            json_array_append_new(eps, je);
        }
        json_object_set_new(jc, "endpoints", eps);
        json_array_append_new(cls, jc);
    }
    json_object_set_new(root, "clusters", cls);
    char *txt = json_dumps(root, JSON_INDENT(2));
    json_decref(root);
    if (!txt)
        return KEEL_ENOMEM;
    int rc = keel_buf_append(b, txt, strlen(txt));
    rc |= keel_buf_append(b, "\n", 1);
    free(txt);
    return rc ? KEEL_ENOMEM : 0;
}

static void admin_close(struct admin_conn *a)
{
    struct ev_loop *loop = admin.rt->control_loop;
    ev_io_stop(loop, &a->io);
    ev_timer_stop(loop, &a->timer);
    close(a->fd);
    keel_buf_free(&a->in);
    keel_buf_free(&a->out);
    struct admin_conn **pp = &admin.conns;
    while (*pp && *pp != a)
        pp = &(*pp)->next;
    if (*pp)
        *pp = a->next;
    free(a);
}

static void respond(struct admin_conn *a, int status, const char *reason, const char *ctype,
                    struct keel_buf *body)
{
    keel_buf_printf(&a->out,
                    "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                    "Connection: close\r\n\r\n",
                    status, reason, ctype, body->len);
    keel_buf_append(&a->out, body->data + body->off, body->len);
}

static int hexval(char c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* Value of a query parameter, %-decoded into out; 0 if present, -1 if not. */
static int query_param(const char *q, size_t qlen, const char *key, char *out, size_t cap)
{
    size_t kl = strlen(key);
    const char *p = q, *end = q + qlen;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *e = amp ? amp : end;
        if ((size_t)(e - p) > kl && memcmp(p, key, kl) == 0 && p[kl] == '=') {
            size_t o = 0;
            for (const char *s = p + kl + 1; s < e && o + 1 < cap; s++) {
                int hi, lo;
                if (*s == '%' && e - s > 2 && (hi = hexval(s[1])) >= 0 &&
                    (lo = hexval(s[2])) >= 0) {
                    out[o++] = (char)(hi * 16 + lo);
                    s += 2;
                } else {
                    out[o++] = *s == '+' ? ' ' : *s;
                }
            }
            out[o] = 0;
            return 0;
        }
        p = e + 1;
    }
    return -1;
}

/* POST /v1/endpoints/{drain,undrain,weight,reset}?cluster=C&endpoint=ID-or-ADDRESS[&weight=N] */
static void endpoint_override(struct admin_conn *a, const char *verb, const char *q, size_t qlen,
                              struct keel_buf *body)
{
    struct keel_runtime *rt = admin.rt;
    char cluster[128], endpoint[KEEL_DISC_ID_MAX], wtxt[16];
    int drain = -1, weight = -1;
    if (query_param(q, qlen, "cluster", cluster, sizeof(cluster)) ||
        query_param(q, qlen, "endpoint", endpoint, sizeof(endpoint))) {
        keel_buf_printf(body, "need ?cluster=NAME&endpoint=ID-or-ADDRESS\n");
        respond(a, 400, "Bad Request", "text/plain", body);
        return;
    }
    if (!strcmp(verb, "drain")) {
        drain = 1;
    } else if (!strcmp(verb, "undrain")) {
        drain = 0;
    } else if (!strcmp(verb, "reset")) {
        drain = 0;
        weight = -2;
    } else if (!strcmp(verb, "weight")) {
        char *end = NULL;
        long v = query_param(q, qlen, "weight", wtxt, sizeof(wtxt)) ? -1 : strtol(wtxt, &end, 10);
        if (v < 0 || v > 10000 || !end || *end) {
            keel_buf_printf(body, "need &weight=0..10000\n");
            respond(a, 400, "Bad Request", "text/plain", body);
            return;
        }
        weight = (int)v;
    } else {
        keel_buf_printf(body, "unknown action; use drain, undrain, weight or reset\n");
        respond(a, 404, "Not Found", "text/plain", body);
        return;
    }
    int rc = rt->disc ? keel_discovery_override(rt->disc, cluster, endpoint, drain, weight)
                      : KEEL_ENOENT;
    if (rc == KEEL_ENOENT) {
        keel_buf_printf(body, "no endpoint \"%s\" in cluster \"%s\"\n", endpoint, cluster);
        respond(a, 404, "Not Found", "text/plain", body);
        return;
    }
    if (rc != 0) {
        keel_buf_printf(body, "%s\n", keel_strerror(rc));
        respond(a, 500, "Internal Server Error", "text/plain", body);
        return;
    }
    keel_buf_printf(body, "ok: %s %s in cluster %s (applies within %ums)\n", verb, endpoint,
                    cluster, rt->cfg->debounce_ms);
    respond(a, 200, "OK", "text/plain", body);
}

static void handle(struct admin_conn *a, const struct keel_http1_request *req)
{
    keel_clock_update(); /* ejection deadlines are read against it */
    struct keel_runtime *rt = admin.rt;
    struct keel_buf body = {0};
    size_t pl = req->target_len;
    const char *q = memchr(req->target, '?', pl);
    if (q)
        pl = (size_t)(q - req->target);
    int is_get = req->method_len == 3 && memcmp(req->method, "GET", 3) == 0;
    int is_post = req->method_len == 4 && memcmp(req->method, "POST", 4) == 0;
    static const char ep_prefix[] = "/v1/endpoints/";
#define PATH_IS(p) (pl == strlen(p) && memcmp(req->target, p, pl) == 0)
    if (pl > sizeof(ep_prefix) - 1 && memcmp(req->target, ep_prefix, sizeof(ep_prefix) - 1) == 0) {
        char verb[16];
        size_t vl = pl - (sizeof(ep_prefix) - 1);
        snprintf(verb, sizeof(verb), "%.*s", (int)(vl < 15 ? vl : 15),
                 req->target + sizeof(ep_prefix) - 1);
        if (!is_post) {
            keel_buf_printf(&body, "use POST\n");
            respond(a, 405, "Method Not Allowed", "text/plain", &body);
        } else {
            endpoint_override(a, verb, q ? q + 1 : "", q ? req->target_len - pl - 1 : 0, &body);
        }
    } else if (!is_get) {
        keel_buf_printf(&body, "method not allowed\n");
        respond(a, 405, "Method Not Allowed", "text/plain", &body);
    } else if (PATH_IS("/ready")) {
        int d = atomic_load(&rt->draining);
        keel_buf_printf(&body, d ? "draining\n" : "ready\n");
        respond(a, d ? 503 : 200, d ? "Service Unavailable" : "OK", "text/plain", &body);
    } else if (PATH_IS("/metrics")) {
        keel_admin_metrics(rt, &body);
        respond(a, 200, "OK", "text/plain; version=0.0.4", &body);
    } else if (PATH_IS("/v1/clusters")) {
        keel_admin_clusters(rt, &body);
        respond(a, 200, "OK", "application/json", &body);
    } else {
        keel_buf_printf(&body, "not found; try /ready, /metrics, /v1/clusters\n");
        respond(a, 404, "Not Found", "text/plain", &body);
    }
#undef PATH_IS
    keel_buf_free(&body);
}

static void on_admin_io(struct ev_loop *loop, ev_io *io, int revents)
{
    struct admin_conn *a = io->data;
    if (a->out.len == 0) {
        if (keel_buf_reserve(&a->in, 4096, ADMIN_MAX_REQ) != 0) {
            admin_close(a);
            return;
        }
        ssize_t n =
            read(a->fd, a->in.data + a->in.off + a->in.len, a->in.cap - a->in.off - a->in.len);
        if (n <= 0) {
            if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return;
            admin_close(a);
            return;
        }
        a->in.len += (size_t)n;
        struct keel_http1_header hdrs[64];
        struct keel_http1_request req = {0};
        req.headers = hdrs;
        req.num_headers = 64;
        ssize_t r = keel_http1_parse_request(a->in.data + a->in.off, a->in.len, &req, NULL, NULL);
        if (r == KEEL_EAGAIN)
            return;
        if (r < 0) {
            struct keel_buf body = {0};
            keel_buf_printf(&body, "bad request: %s\n", keel_strerror((int)r));
            respond(a, 400, "Bad Request", "text/plain", &body);
            keel_buf_free(&body);
        } else {
            handle(a, &req);
        }
        ev_io_stop(loop, &a->io);
        ev_io_set(&a->io, a->fd, EV_WRITE);
        ev_io_start(loop, &a->io);
    }
    ssize_t w = write(a->fd, a->out.data + a->out.off, a->out.len);
    if (w < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (w <= 0) {
        admin_close(a);
        return;
    }
    keel_buf_consume(&a->out, (size_t)w);
    if (a->out.len == 0)
        admin_close(a);
}

static void on_admin_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    admin_close(t->data);
}

static void on_admin_accept(struct ev_loop *loop, ev_io *io, int revents)
{
    for (int i = 0; i < 16; i++) {
        int fd = accept4(admin.fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        struct admin_conn *a = calloc(1, sizeof(*a));
        if (!a) {
            close(fd);
            continue;
        }
        a->fd = fd;
        ev_io_init(&a->io, on_admin_io, fd, EV_READ);
        a->io.data = a;
        ev_timer_init(&a->timer, on_admin_timer, 10.0, 0.);
        a->timer.data = a;
        ev_io_start(loop, &a->io);
        ev_timer_start(loop, &a->timer);
        a->next = admin.conns;
        admin.conns = a;
    }
}

int keel_admin_start(struct keel_runtime *rt)
{
    const struct keel_cfg *cfg = rt->cfg;
    admin.rt = rt;
    int fd = socket(cfg->admin.sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0)
        goto fail;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, (const struct sockaddr *)&cfg->admin.sa, cfg->admin.salen) != 0 ||
        listen(fd, 128) != 0)
        goto fail;
    admin.fd = fd;
    ev_io_init(&admin.io, on_admin_accept, fd, EV_READ);
    ev_io_start(rt->control_loop, &admin.io);
    return 0;
fail:
    KEEL_ERROR("admin: cannot listen on %s: %s", cfg->admin.text, strerror(errno));
    if (fd >= 0)
        close(fd);
    return KEEL_EIO;
}

void keel_admin_stop(void)
{
    if (admin.fd < 0)
        return;
    ev_io_stop(admin.rt->control_loop, &admin.io);
    close(admin.fd);
    admin.fd = -1;
    while (admin.conns)
        admin_close(admin.conns);
}
