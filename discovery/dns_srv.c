/* SPDX-License-Identifier: MIT */
/* DNS SRV discovery: c-ares on the control loop sends the queries, dns_srv_parse.c reads the
 * answers. Refresh at the record TTL (clamped); SERVFAIL and timeouts keep the last good set;
 * NXDOMAIN or an empty answer empties a cluster only after `dns.empty_hold`. c-ares retries
 * over TCP by itself when an answer is truncated. */
#include <ares.h>
#include <arpa/nameser.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "keel/err.h"
#include "keel/log.h"
#include "discovery.h"
#include "dns_srv_parse.h"

#define RETRY_MIN_S 1.0
#define RETRY_MAX_S 30.0

struct dns;

struct dwatch {
    struct dns *ds;
    struct keel_dcluster *c;
    ev_timer next;
    struct keel_srv_answer ans; /* being completed with A/AAAA lookups */
    unsigned pending;           /* address queries in flight */
    unsigned gen;               /* drops answers of an abandoned round */
    double retry_s;             /* backoff after failures */
    int busy;
};

struct dsock {
    ev_io io;
    int fd;
    struct dsock *next;
};

struct dns {
    struct keel_discovery *d;
    ares_channel ch;
    ev_timer timeout;
    struct dsock *socks;
    struct dwatch *w;
    size_t n_w;
};

/* ---- c-ares <-> libev glue ------------------------------------------------------------------- */

static void arm_timeout(struct dns *ds)
{
    struct timeval tv, *tvp = ares_timeout(ds->ch, NULL, &tv);
    ev_timer_stop(ds->d->loop, &ds->timeout);
    if (tvp) {
        ev_timer_set(&ds->timeout, (double)tvp->tv_sec + (double)tvp->tv_usec / 1e6, 0.);
        ev_timer_start(ds->d->loop, &ds->timeout);
    }
}

static void on_io(struct ev_loop *loop, ev_io *io, int revents)
{
    struct dns *ds = io->data;
    struct dsock *s = (struct dsock *)io;
    ares_process_fd(ds->ch, (revents & EV_READ) ? s->fd : ARES_SOCKET_BAD,
                    (revents & EV_WRITE) ? s->fd : ARES_SOCKET_BAD);
    arm_timeout(ds);
}

static void on_timeout(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct dns *ds = t->data;
    ares_process_fd(ds->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    arm_timeout(ds);
}

static void sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
    struct dns *ds = data;
    struct dsock **pp = &ds->socks, *s;
    while ((s = *pp) && s->fd != fd)
        pp = &s->next;
    if (!readable && !writable) {
        if (s) {
            ev_io_stop(ds->d->loop, &s->io);
            *pp = s->next;
            free(s);
        }
        return;
    }
    if (!s) {
        s = calloc(1, sizeof(*s));
        if (!s)
            return;
        s->fd = fd;
        s->next = ds->socks;
        ds->socks = s;
        ev_init(&s->io, on_io);
        s->io.data = ds;
    } else {
        ev_io_stop(ds->d->loop, &s->io);
    }
    ev_io_set(&s->io, fd, (readable ? EV_READ : 0) | (writable ? EV_WRITE : 0));
    ev_io_start(ds->d->loop, &s->io);
}

/* ---- one watch ------------------------------------------------------------------------------- */

static void schedule(struct dwatch *w, double delay)
{
    ev_timer_stop(w->ds->d->loop, &w->next);
    ev_timer_set(&w->next, delay > 0 ? delay : 0., 0.);
    ev_timer_start(w->ds->d->loop, &w->next);
}

static void failed(struct dwatch *w, const char *fmt, const char *what)
{
    keel_discovery_error(w->ds->d, w->c, fmt, w->c->cfg->dns_name, what);
    w->retry_s = w->retry_s ? w->retry_s * 2 : RETRY_MIN_S;
    if (w->retry_s > RETRY_MAX_S)
        w->retry_s = RETRY_MAX_S;
    w->busy = 0;
    schedule(w, w->retry_s);
}

static double refresh_s(const struct dwatch *w, uint32_t ttl)
{
    const struct keel_cfg_dns *dc = &w->ds->d->cfg->dns;
    return keel_dns_refresh_ms(ttl, dc->min_ttl_ms, dc->max_ttl_ms) / 1000.0;
}

/* NXDOMAIN or no records: authoritative, but a blip must not empty a pool at once. */
static void empty_answer(struct dwatch *w, const char *why)
{
    struct keel_discovery *d = w->ds->d;
    struct keel_dcluster *c = w->c;
    double now = ev_now(d->loop);
    w->busy = 0;
    w->retry_s = 0;
    if (c->empty_since == 0)
        c->empty_since = now;
    double held = now - c->empty_since;
    double hold = d->cfg->dns.empty_hold_ms / 1000.0;
    if (held >= hold || c->set.n == 0) {
        struct keel_disc_set empty = {0};
        keel_discovery_update(d, c, &empty);
    } else {
        keel_discovery_error(d, c, "%s: %s; keeping the last good endpoints for %.0fs more",
                             c->cfg->dns_name, why, hold - held);
    }
    schedule(w, refresh_s(w, 0));
}

static void complete(struct dwatch *w)
{
    struct keel_disc_set set = {0};
    if (keel_dns_srv_build(&w->ans, NULL, NULL, &set) != 0) {
        keel_dns_srv_answer_free(&w->ans);
        failed(w, "%s: %s", "out of memory");
        return;
    }
    uint32_t ttl = w->ans.min_ttl;
    keel_dns_srv_answer_free(&w->ans);
    w->busy = 0;
    w->retry_s = 0;
    if (set.n == 0) {
        keel_disc_set_free(&set);
        empty_answer(w, "no usable SRV target");
        return;
    }
    w->c->empty_since = 0;
    keel_discovery_update(w->ds->d, w->c, &set);
    schedule(w, refresh_s(w, ttl));
}

struct addr_q {
    struct dwatch *w;
    unsigned gen;
    char name[256];
};

static void on_addr(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
    struct addr_q *q = arg;
    struct dwatch *w = q->w;
    if (status == ARES_EDESTRUCTION || q->gen != w->gen) {
        free(q);
        return;
    }
    if (status == ARES_SUCCESS && abuf) {
        char err[160];
        int rc = keel_dns_addr_parse(abuf, (size_t)alen, q->name, &w->ans, NULL, err, sizeof(err));
        if (rc < 0 && rc != KEEL_EAGAIN)
            KEEL_WARN_RL("cluster %s: address answer for %s unusable: %s", w->c->cfg->name, q->name,
                         err);
    }
    free(q);
    if (--w->pending == 0)
        complete(w);
}

static int has_addr(const struct keel_srv_answer *a, const char *name)
{
    for (size_t i = 0; i < a->n_addrs; i++)
        if (strcasecmp(a->addrs[i].name, name) == 0)
            return 1;
    return 0;
}

static void on_srv(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
    struct dwatch *w = arg;
    if (status == ARES_EDESTRUCTION)
        return;
    switch (status) {
    case ARES_SUCCESS:
        break;
    case ARES_ENOTFOUND:
        empty_answer(w, "NXDOMAIN");
        return;
    case ARES_ENODATA:
        empty_answer(w, "no SRV records");
        return;
    default:
        failed(w, "%s: %s", ares_strerror(status));
        return;
    }
    char err[200];
    keel_dns_srv_answer_free(&w->ans);
    if (keel_dns_srv_parse(abuf, (size_t)alen, w->c->cfg->dns_name, &w->ans, err, sizeof(err))) {
        failed(w, "%s: answer unusable: %s", err);
        return;
    }
    if (w->ans.rcode != 0) {
        failed(w, "%s: %s", w->ans.rcode == 2 ? "SERVFAIL" : "DNS error");
        return;
    }
    /* Targets the additional section did not cover get their own A and AAAA queries. */
    w->gen++;
    w->pending = 1; /* held until every query is out, so none completes the round early */
    for (size_t i = 0; i < w->ans.n_srv; i++) {
        const char *t = w->ans.srv[i].target;
        if (!t[0] || strcmp(t, ".") == 0 || has_addr(&w->ans, t))
            continue;
        int dup = 0;
        for (size_t j = 0; j < i && !dup; j++)
            dup = strcasecmp(w->ans.srv[j].target, t) == 0;
        if (dup)
            continue;
        for (int type = 0; type < 2; type++) {
            struct addr_q *q = calloc(1, sizeof(*q));
            if (!q)
                continue;
            q->w = w;
            q->gen = w->gen;
            snprintf(q->name, sizeof(q->name), "%s", t);
            w->pending++;
            ares_query(w->ds->ch, t, ns_c_in, type ? ns_t_aaaa : ns_t_a, on_addr, q);
        }
    }
    if (--w->pending == 0)
        complete(w);
}

static void on_next(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct dwatch *w = t->data;
    if (w->busy)
        return;
    w->busy = 1;
    ares_query(w->ds->ch, w->c->cfg->dns_name, ns_c_in, ns_t_srv, on_srv, w);
    arm_timeout(w->ds);
}

int keel_dns_srv_start(struct keel_discovery *d)
{
    size_t n = 0;
    for (size_t i = 0; i < d->n_cl; i++)
        n += d->cl[i].cfg->discovery == KEEL_DISC_DNS;
    if (n == 0)
        return 0;
    const struct keel_cfg_dns *dc = &d->cfg->dns;
    struct dns *ds = calloc(1, sizeof(*ds));
    if (!ds)
        return KEEL_ENOMEM;
    d->dns = ds;
    ds->d = d;
    ds->w = calloc(n, sizeof(*ds->w));
    if (!ds->w)
        return KEEL_ENOMEM;
    if (ares_library_init(ARES_LIB_INIT_ALL) != ARES_SUCCESS)
        return KEEL_EIO;
    struct ares_options opts;
    memset(&opts, 0, sizeof(opts));
    opts.sock_state_cb = sock_state;
    opts.sock_state_cb_data = ds;
    opts.timeout = (int)dc->timeout_ms;
    opts.tries = 2;
    int mask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES;
    int rc = ares_init_options(&ds->ch, &opts, mask);
    if (rc != ARES_SUCCESS) {
        KEEL_ERROR("dns: cannot initialise c-ares: %s", ares_strerror(rc));
        return KEEL_EIO;
    }
    if (dc->n_servers) {
        char csv[2048] = "";
        for (size_t i = 0; i < dc->n_servers; i++) {
            size_t l = strlen(csv);
            snprintf(csv + l, sizeof(csv) - l, "%s%s", i ? "," : "", dc->servers[i].text);
        }
        rc = ares_set_servers_ports_csv(ds->ch, csv);
        if (rc != ARES_SUCCESS) {
            KEEL_ERROR("dns: bad server list \"%s\": %s", csv, ares_strerror(rc));
            return KEEL_EIO;
        }
    }
    ev_init(&ds->timeout, on_timeout);
    ds->timeout.data = ds;
    for (size_t i = 0; i < d->n_cl; i++) {
        struct keel_dcluster *c = &d->cl[i];
        if (c->cfg->discovery != KEEL_DISC_DNS)
            continue;
        struct dwatch *w = &ds->w[ds->n_w++];
        w->ds = ds;
        w->c = c;
        c->src = w;
        ev_init(&w->next, on_next);
        w->next.data = w;
        KEEL_INFO("cluster %s: resolving SRV %s", c->cfg->name, c->cfg->dns_name);
        schedule(w, 0);
    }
    return 0;
}

void keel_dns_srv_stop(struct keel_discovery *d)
{
    struct dns *ds = d->dns;
    if (!ds)
        return;
    for (size_t i = 0; i < ds->n_w; i++) {
        ev_timer_stop(d->loop, &ds->w[i].next);
        ds->w[i].gen++;
    }
    if (ds->ch)
        ares_destroy(ds->ch); /* callbacks run with ARES_EDESTRUCTION */
    for (size_t i = 0; i < ds->n_w; i++) {
        keel_dns_srv_answer_free(&ds->w[i].ans);
        ds->w[i].c->src = NULL;
    }
    while (ds->socks) {
        struct dsock *s = ds->socks;
        ds->socks = s->next;
        ev_io_stop(d->loop, &s->io);
        free(s);
    }
    ev_timer_stop(d->loop, &ds->timeout);
    free(ds->w);
    free(ds);
    d->dns = NULL;
    ares_library_cleanup();
}
