/* SPDX-License-Identifier: MIT */
/* Consul discovery: one blocking query per consul cluster, over libcurl multi on the control
 * loop. Fail static: errors keep the last good endpoints; only an answer may change them. */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include "keel/err.h"
#include "keel/log.h"
#include "consul_parse.h"
#include "curl_dl.h" /* libcurl is loaded when consul discovery starts */
#include "discovery.h"

#define BODY_MAX (32u << 20) /* a health answer larger than this is refused */
#define BACKOFF_MIN_MS 500
#define BACKOFF_MAX_MS 30000
#define BUCKET_BURST 2.0

struct consul;

struct cwatch {
    struct consul *cs;
    struct keel_dcluster *c; /* NULL: the catalog watch */
    uint64_t catalog_index;  /* catalog watch: X-Consul-Index of its last answer */
    CURL *easy;
    struct curl_slist *headers;
    char *body;
    size_t body_len, body_cap;
    uint64_t got_index;
    int have_index;
    char errbuf[CURL_ERROR_SIZE];
    ev_timer next;       /* when to send the next query */
    double tokens;       /* token bucket: queries that may go out at once */
    double refilled;     /* ev_now() of the last refill */
    uint32_t backoff_ms; /* 0 after a success */
    int busy;            /* a query is in flight */
    int stopped;         /* dynamic cluster left the catalog: no queries */
};

struct csock {
    ev_io io;
    curl_socket_t fd;
    struct consul *cs;
};

struct consul {
    struct keel_discovery *d;
    CURLM *multi;
    ev_timer timer;
    struct cwatch *w;
    size_t n_w, cap_w;
    char tokhdr[1100];
    uint64_t rng;
};

static uint64_t rnd(struct consul *cs)
{
    uint64_t x = cs->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    cs->rng = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static void schedule(struct cwatch *w, double delay);

/* ---- libcurl multi <-> libev glue ---------------------------------------------------------- */

static void check_done(struct consul *cs);

static void on_sock(struct ev_loop *loop, ev_io *io, int revents)
{
    struct csock *s = io->data;
    struct consul *cs = s->cs;
    int running = 0;
    int flags =
        ((revents & EV_READ) ? CURL_CSELECT_IN : 0) | ((revents & EV_WRITE) ? CURL_CSELECT_OUT : 0);
    curl_multi_socket_action(cs->multi, s->fd, flags, &running);
    check_done(cs);
}

static int sock_cb(CURL *e, curl_socket_t fd, int what, void *userp, void *socketp)
{
    struct consul *cs = userp;
    struct csock *s = socketp;
    struct ev_loop *loop = cs->d->loop;
    if (what == CURL_POLL_REMOVE) {
        if (s) {
            ev_io_stop(loop, &s->io);
            free(s);
            curl_multi_assign(cs->multi, fd, NULL);
        }
        return 0;
    }
    int ev = ((what & CURL_POLL_IN) ? EV_READ : 0) | ((what & CURL_POLL_OUT) ? EV_WRITE : 0);
    if (!s) {
        s = calloc(1, sizeof(*s));
        if (!s)
            return -1;
        s->fd = fd;
        s->cs = cs;
        ev_init(&s->io, on_sock);
        s->io.data = s;
        curl_multi_assign(cs->multi, fd, s);
    } else {
        ev_io_stop(loop, &s->io);
    }
    ev_io_set(&s->io, fd, ev);
    ev_io_start(loop, &s->io);
    return 0;
}

static void on_curl_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct consul *cs = t->data;
    int running = 0;
    curl_multi_socket_action(cs->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(cs);
}

static int timer_cb(CURLM *m, long timeout_ms, void *userp)
{
    struct consul *cs = userp;
    ev_timer_stop(cs->d->loop, &cs->timer);
    if (timeout_ms >= 0) {
        /* Milliseconds as a fraction: integer division here fires sub-second timers at once. */
        ev_timer_set(&cs->timer, (double)timeout_ms / 1000.0, 0.);
        ev_timer_start(cs->d->loop, &cs->timer);
    }
    return 0;
}

/* ---- one watch ---------------------------------------------------------------------------- */

static size_t on_body(char *p, size_t size, size_t n, void *userp)
{
    struct cwatch *w = userp;
    size_t len = size * n;
    if (w->body_len + len + 1 > BODY_MAX)
        return 0; /* aborts the transfer: CURLE_WRITE_ERROR */
    if (w->body_len + len + 1 > w->body_cap) {
        size_t cap = w->body_cap ? w->body_cap : 16384;
        while (cap < w->body_len + len + 1)
            cap *= 2;
        char *nb = realloc(w->body, cap);
        if (!nb)
            return 0;
        w->body = nb;
        w->body_cap = cap;
    }
    memcpy(w->body + w->body_len, p, len);
    w->body_len += len;
    w->body[w->body_len] = 0;
    return len;
}

static size_t on_header(char *p, size_t size, size_t n, void *userp)
{
    struct cwatch *w = userp;
    size_t len = size * n;
    static const char name[] = "x-consul-index:";
    if (len > sizeof(name) - 1 && strncasecmp(p, name, sizeof(name) - 1) == 0) {
        const char *v = p + sizeof(name) - 1;
        size_t vl = len - (sizeof(name) - 1);
        while (vl && (*v == ' ' || *v == '\t')) {
            v++;
            vl--;
        }
        while (vl && (v[vl - 1] == '\r' || v[vl - 1] == '\n' || v[vl - 1] == ' '))
            vl--;
        uint64_t idx;
        if (keel_consul_parse_index(v, vl, &idx) == 0) {
            w->got_index = idx;
            w->have_index = 1;
        }
    }
    return len;
}

static void append_param(CURL *e, char *url, size_t cap, const char *key, const char *val)
{
    if (!val)
        return;
    char *esc = curl_easy_escape(e, val, 0);
    if (!esc)
        return;
    size_t l = strlen(url);
    snprintf(url + l, cap - l, "%s%s=%s", strchr(url, '?') ? "&" : "?", key, esc);
    curl_free(esc);
}

static void start_query(struct cwatch *w)
{
    struct consul *cs = w->cs;
    const struct keel_cfg_consul *cc = &cs->d->cfg->consul;
    char url[4096];
    CURL *e = w->easy;
    curl_easy_reset(e);
    uint64_t index;
    if (w->c) {
        const struct keel_cfg_cluster *cl = w->c->cfg;
        char *svc = curl_easy_escape(e, cl->service, 0);
        snprintf(url, sizeof(url), "%s/v1/health/service/%s", cc->address, svc ? svc : "");
        curl_free(svc);
        append_param(e, url, sizeof(url), "dc", cl->datacenter ? cl->datacenter : cc->datacenter);
        append_param(e, url, sizeof(url), "tag", cl->tag);
        append_param(e, url, sizeof(url), "ns", cl->ns);
        append_param(e, url, sizeof(url), "partition", cl->partition);
        index = w->c->index;
    } else {
        snprintf(url, sizeof(url), "%s/v1/catalog/services", cc->address);
        append_param(e, url, sizeof(url), "dc", cc->datacenter);
        index = w->catalog_index;
    }
    uint32_t wait_s = cc->wait_ms / 1000 ? cc->wait_ms / 1000 : 1;
    if (index > 0) {
        char num[32];
        snprintf(num, sizeof(num), "%llu", (unsigned long long)index);
        append_param(e, url, sizeof(url), "index", num);
        snprintf(num, sizeof(num), "%us", wait_s);
        append_param(e, url, sizeof(url), "wait", num);
    }
    w->body_len = 0;
    w->have_index = 0;
    w->errbuf[0] = 0;
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_PRIVATE, w);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, w);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, w);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, w->errbuf);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
    /* Consul adds up to wait/16 of jitter to a blocking query: wait longer than that. */
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)(wait_s * 1000 + wait_s * 1000 / 16 + 5000));
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, w->headers);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "keel");
    if (cc->ca_file)
        curl_easy_setopt(e, CURLOPT_CAINFO, cc->ca_file);
    w->busy = 1;
    CURLMcode mc = curl_multi_add_handle(cs->multi, e);
    if (mc != CURLM_OK) {
        w->busy = 0;
        KEEL_WARN_RL("consul: cannot start a request: %s", curl_multi_strerror(mc));
        schedule(w, 1.0);
    }
}

static void watch_error(struct cwatch *w, const char *fmt, const char *a, const char *b)
{
    if (w->c)
        keel_discovery_error(w->cs->d, w->c, fmt, a, b);
    else
        KEEL_WARN_RL("consul catalog: keeping the last list of services: %s %s", a, b);
}

static void on_next(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct cwatch *w = t->data;
    if (w->stopped || w->busy)
        return;
    /* Token bucket: a burst of two, then one query per min_interval while answers come back at
     * once (an index that keeps changing must not turn into a query storm). */
    double now = ev_now(loop);
    double per = w->cs->d->cfg->consul.min_interval_ms / 1000.0;
    if (per <= 0) {
        w->tokens = BUCKET_BURST;
    } else {
        w->tokens += (now - w->refilled) / per;
        if (w->tokens > BUCKET_BURST)
            w->tokens = BUCKET_BURST;
    }
    w->refilled = now;
    if (w->tokens < 1.0) {
        schedule(w, (1.0 - w->tokens) * per);
        return;
    }
    w->tokens -= 1.0;
    start_query(w);
}

static void schedule(struct cwatch *w, double delay)
{
    struct ev_loop *loop = w->cs->d->loop;
    ev_timer_stop(loop, &w->next);
    ev_timer_set(&w->next, delay > 0 ? delay : 0., 0.);
    ev_timer_start(loop, &w->next);
}

static double backoff(struct cwatch *w)
{
    /* Exponential with full jitter between half and all of the step. */
    w->backoff_ms = w->backoff_ms ? w->backoff_ms * 2 : BACKOFF_MIN_MS;
    if (w->backoff_ms > BACKOFF_MAX_MS)
        w->backoff_ms = BACKOFF_MAX_MS;
    double half = w->backoff_ms / 2000.0;
    return half + half * (double)(rnd(w->cs) % 1000) / 1000.0;
}

static struct cwatch *new_watch(struct consul *cs, struct keel_dcluster *c);

/* Health answer of a cluster made from catalog tags: the newest instance's keel.* tags set
 * its route and policy; instances that disagree are reported, never a reason to drop it. */
static void apply_tags(struct cwatch *w, struct keel_consul_svcinfo *info)
{
    struct keel_dcluster *c = w->c;
    struct keel_consul_tagcfg tc;
    if (keel_consul_parse_tags((const char *const *)info->tags, info->n_tags,
                               (const char *const *)info->meta_keys,
                               (const char *const *)info->meta_values, info->n_meta, &tc) != 0) {
        keel_consul_tagcfg_free(&tc);
        return;
    }
    char errs[sizeof(c->tag_errors)] = "";
    for (size_t i = 0; i < tc.n_errors; i++) {
        size_t l = strlen(errs);
        snprintf(errs + l, sizeof(errs) - l, "%s%s", i ? "; " : "", tc.errors[i]);
    }
    int proto = tc.protocol == KEEL_CONSUL_PROTO_H2     ? KEEL_UP_H2
                : tc.protocol == KEEL_CONSUL_PROTO_GRPC ? KEEL_UP_GRPC
                                                        : KEEL_UP_HTTP1;
    if (tc.protocol == KEEL_CONSUL_PROTO_TCP) {
        /* A catalog cluster is reached through consul.catalog_listener, an http listener. */
        size_t l = strlen(errs);
        snprintf(errs + l, sizeof(errs) - l,
                 "%skeel.protocol=%s: not supported for catalog clusters (they are routed from "
                 "an http listener); serving as http",
                 l ? "; " : "", keel_consul_proto_str(tc.protocol));
    }
    if (strcmp(errs, c->tag_errors) != 0 && errs[0])
        KEEL_WARN("cluster %s: invalid keel tags on %s: %s", c->cfg->name, info->newest_id, errs);
    snprintf(c->tag_errors, sizeof(c->tag_errors), "%s", errs);
    if (info->conflicts != c->conflicts && info->conflicts)
        KEEL_WARN("cluster %s: %zu instance(s) disagree with the newest registration %s about "
                  "keel tags (e.g. %s); the newest wins",
                  c->cfg->name, info->conflicts, info->newest_id, info->conflict_id);
    c->conflicts = info->conflicts;
    snprintf(c->conflict_id, sizeof(c->conflict_id), "%s", info->conflict_id);
    keel_discovery_set_dynamic(w->cs->d, c, tc.route_host, tc.route_path, tc.lb, tc.warning_drain,
                               proto);
    keel_consul_tagcfg_free(&tc);
}

static int has_keel_tag(const struct keel_consul_service *s)
{
    for (size_t i = 0; i < s->n_tags; i++)
        if (strcmp(s->tags[i], "keel") == 0)
            return 1;
    return 0;
}

static void stop_watch(struct cwatch *w)
{
    w->stopped = 1;
    ev_timer_stop(w->cs->d->loop, &w->next);
    if (w->busy) {
        curl_multi_remove_handle(w->cs->multi, w->easy);
        w->busy = 0;
    }
}

static void catalog_answer(struct cwatch *w, struct keel_consul_services *svcs)
{
    struct consul *cs = w->cs;
    struct keel_discovery *d = cs->d;
    for (size_t i = 0; i < svcs->n; i++) {
        if (!has_keel_tag(&svcs->v[i]))
            continue;
        struct keel_dcluster *c = keel_discovery_add_dynamic(d, svcs->v[i].name);
        if (!c)
            continue;
        struct cwatch *cw = c->src;
        if (!cw) {
            new_watch(cs, c);
        } else if (cw->stopped) {
            cw->stopped = 0;
            schedule(cw, 0);
        }
    }
    /* Tagged clusters the catalog no longer lists (or lists without the tag) leave. */
    for (size_t i = d->n_file; i < d->n_cl; i++) {
        struct keel_dcluster *c = &d->cl[i];
        if (!c->listed)
            continue;
        int found = 0;
        for (size_t k = 0; k < svcs->n && !found; k++)
            found = strcmp(svcs->v[k].name, c->cfg->service) == 0 && has_keel_tag(&svcs->v[k]);
        if (found)
            continue;
        keel_discovery_unlist(d, c);
        if (c->src)
            stop_watch(c->src);
    }
}

static void finish(struct cwatch *w, CURLcode res)
{
    struct keel_discovery *d = w->cs->d;
    struct keel_dcluster *c = w->c;
    long status = 0;
    curl_easy_getinfo(w->easy, CURLINFO_RESPONSE_CODE, &status);
    w->busy = 0;
    if (w->stopped)
        return;
    if (res != CURLE_OK) {
        watch_error(w, "consul %s: %s", curl_easy_strerror(res), w->errbuf[0] ? w->errbuf : "");
        schedule(w, backoff(w));
        return;
    }
    if (status != 200) {
        /* Keep the body short in logs: Consul's error texts are one line. */
        char snippet[160], what[64];
        snprintf(snippet, sizeof(snippet), "%.*s", (int)(w->body_len < 150 ? w->body_len : 150),
                 w->body ? w->body : "");
        for (char *p = snippet; *p; p++)
            if (*p == '\n' || *p == '\r')
                *p = ' ';
        snprintf(what, sizeof(what), "%ld%s", status,
                 status == 403 ? " (ACL token missing or not allowed)" : "");
        watch_error(w, "consul answered HTTP %s: %s", what, snippet);
        schedule(w, backoff(w));
        return;
    }
    char err[256] = "";
    if (!c) {
        struct keel_consul_services svcs = {0};
        if (keel_consul_parse_services(w->body ? w->body : "", w->body_len, &svcs, err,
                                       sizeof(err)) != 0) {
            watch_error(w, "consul catalog answer unusable: %s%s", err, "");
            schedule(w, backoff(w));
            return;
        }
        w->catalog_index =
            keel_consul_next_index(w->catalog_index, w->have_index ? w->got_index : 0);
        w->backoff_ms = 0;
        catalog_answer(w, &svcs);
        keel_consul_services_free(&svcs);
        schedule(w, 0);
        return;
    }
    struct keel_consul_opts opts = {c->cfg->warning_drain};
    struct keel_disc_set set = {0};
    struct keel_consul_svcinfo info;
    memset(&info, 0, sizeof(info));
    size_t skipped = 0;
    int rc = keel_consul_parse_health(w->body ? w->body : "", w->body_len, &opts, &set, &skipped,
                                      c->dyn_cfg ? &info : NULL, err, sizeof(err));
    if (rc != 0) {
        watch_error(w, "consul answer unusable: %s%s", err, "");
        schedule(w, backoff(w));
        return;
    }
    if (skipped)
        KEEL_WARN_RL("cluster %s: skipped %zu Consul entries: %s", c->cfg->name, skipped, err);
    if (c->dyn_cfg) {
        apply_tags(w, &info);
        keel_consul_svcinfo_free(&info);
    }
    uint64_t prev = c->index;
    c->index = keel_consul_next_index(prev, w->have_index ? w->got_index : 0);
    if (w->have_index && w->got_index < prev)
        KEEL_INFO("cluster %s: X-Consul-Index went backwards (%llu -> %llu): starting over",
                  c->cfg->name, (unsigned long long)prev, (unsigned long long)w->got_index);
    w->backoff_ms = 0;
    keel_discovery_update(d, c, &set);
    schedule(w, 0);
}

static void check_done(struct consul *cs)
{
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(cs->multi, &left)) != NULL) {
        if (m->msg != CURLMSG_DONE)
            continue;
        struct cwatch *w = NULL;
        CURL *e = m->easy_handle;
        CURLcode res = m->data.result;
        curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&w);
        curl_multi_remove_handle(cs->multi, e);
        if (w)
            finish(w, res);
    }
}

static struct cwatch *new_watch(struct consul *cs, struct keel_dcluster *c)
{
    if (cs->n_w >= cs->cap_w)
        return NULL;
    struct cwatch *w = &cs->w[cs->n_w];
    w->easy = curl_easy_init();
    if (!w->easy)
        return NULL;
    cs->n_w++;
    w->cs = cs;
    w->c = c;
    if (c)
        c->src = w;
    if (cs->tokhdr[0])
        w->headers = curl_slist_append(NULL, cs->tokhdr);
    w->tokens = BUCKET_BURST;
    w->refilled = ev_now(cs->d->loop);
    ev_init(&w->next, on_next);
    w->next.data = w;
    const struct keel_cfg_consul *cc = &cs->d->cfg->consul;
    if (c)
        KEEL_INFO("cluster %s: watching Consul service %s at %s%s", c->cfg->name, c->cfg->service,
                  cc->address, cs->tokhdr[0] ? " (with ACL token)" : "");
    else
        KEEL_INFO("consul catalog: watching services tagged keel at %s", cc->address);
    schedule(w, 0);
    return w;
}

int keel_consul_start(struct keel_discovery *d)
{
    size_t n = 0;
    for (size_t i = 0; i < d->n_cl; i++)
        n += d->cl[i].cfg->discovery == KEEL_DISC_CONSUL;
    if (d->cfg->consul.catalog)
        n += 1 + KEEL_DISCOVERY_MAX_DYNAMIC;
    if (n == 0)
        return 0;
    static int curl_ready;
    if (!curl_ready) {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
            return KEEL_EIO;
        curl_ready = 1;
    }
    struct consul *cs = calloc(1, sizeof(*cs));
    if (!cs)
        return KEEL_ENOMEM;
    d->consul = cs;
    cs->d = d;
    if (getrandom(&cs->rng, sizeof(cs->rng), 0) != sizeof(cs->rng) || cs->rng == 0)
        cs->rng = 0x9e3779b97f4a7c15ULL;
    cs->multi = curl_multi_init();
    cs->w = calloc(n, sizeof(*cs->w));
    cs->cap_w = n;
    if (!cs->multi || !cs->w)
        return KEEL_ENOMEM;
    ev_init(&cs->timer, on_curl_timer);
    cs->timer.data = cs;
    curl_multi_setopt(cs->multi, CURLMOPT_SOCKETFUNCTION, sock_cb);
    curl_multi_setopt(cs->multi, CURLMOPT_SOCKETDATA, cs);
    curl_multi_setopt(cs->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(cs->multi, CURLMOPT_TIMERDATA, cs);
    const struct keel_cfg_consul *cc = &d->cfg->consul;
    if (cc->token && cc->token[0])
        snprintf(cs->tokhdr, sizeof(cs->tokhdr), "X-Consul-Token: %s", cc->token);
    for (size_t i = 0; i < d->n_cl; i++)
        if (d->cl[i].cfg->discovery == KEEL_DISC_CONSUL && !new_watch(cs, &d->cl[i]))
            return KEEL_ENOMEM;
    if (cc->catalog && !new_watch(cs, NULL))
        return KEEL_ENOMEM;
    return 0;
}

void keel_consul_stop(struct keel_discovery *d)
{
    struct consul *cs = d->consul;
    if (!cs)
        return;
    for (size_t i = 0; i < cs->n_w; i++) {
        struct cwatch *w = &cs->w[i];
        ev_timer_stop(d->loop, &w->next);
        if (w->easy) {
            if (w->busy)
                curl_multi_remove_handle(cs->multi, w->easy);
            curl_easy_cleanup(w->easy);
        }
        curl_slist_free_all(w->headers);
        free(w->body);
        if (w->c)
            w->c->src = NULL;
    }
    ev_timer_stop(d->loop, &cs->timer);
    if (cs->multi)
        curl_multi_cleanup(cs->multi);
    free(cs->w);
    free(cs);
    d->consul = NULL;
}
