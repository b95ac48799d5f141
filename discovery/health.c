/* SPDX-License-Identifier: MIT */
/* Active health checks on the control thread (HTTP, TCP connect, gRPC), feeding the snapshot:
 * one non-blocking check in flight per endpoint, rise/fall hysteresis, state keyed by the
 * endpoint id so it follows the discovery set as endpoints come and go. */
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include "keel/err.h"
#include "keel/log.h"
#include "keel/snap.h"
#include "discovery.h"
#include "grpc_health.h"
#include "health_parse.h"

/* Request out, then the response head in: a check never holds more than this. */
#define HC_BUF 4096
/* Re-reads every cluster's set this often (annotate also does, before each snapshot). */
#define HC_SCAN_S 1.0
/* A new endpoint's first check starts within this long. */
#define HC_FIRST_S 0.05

/* HC_H2: a gRPC check, reading and writing HTTP/2 at once until grpc_health decides. */
enum hc_step { HC_IDLE = 0, HC_CONNECTING, HC_SENDING, HC_READING, HC_H2 };

struct hcluster;

/* Check state of one endpoint identity. */
struct hep {
    struct hcluster *hc;
    char id[KEEL_DISC_ID_MAX];
    char name[64];              /* the traffic address, for logs */
    struct sockaddr_storage sa; /* what is checked (the check port when configured) */
    socklen_t salen;
    int up;    /* the verdict: 0 keeps it out of rotation */
    int fresh; /* appeared after its cluster's first set, never up yet: one pass is enough */
    int seen;  /* sync mark */
    uint32_t ok_run, fail_run;
    char why[96];                      /* failure that the reason below describes */
    char reason[KEEL_DISC_REASON_MAX]; /* while down: goes into extra_reason */
    enum hc_step step;
    int fd;
    ev_io io;
    ev_timer timer; /* idle: next check; in flight: the check's timeout */
    double started;
    size_t len, off; /* sending: request length / bytes sent; reading: bytes held */
    char buf[HC_BUF];
    struct keel_grpc_health *gh; /* HC_H2: the call in memory */
};

struct hstate;

struct hcluster {
    struct hstate *hs;
    struct keel_dcluster *c;
    const struct keel_cfg_health *cfg;
    struct hep **eps;
    size_t n, cap;
    int primed; /* the first set was seen: endpoints found later are new */
};

struct hstate {
    struct keel_discovery *d;
    struct hcluster *cl;
    size_t n;
    ev_timer scan;
    uint64_t rng;
};

static double rnd(struct hstate *hs)
{
    /* xorshift64*: spreading checks needs no quality, only no shared state. */
    hs->rng ^= hs->rng >> 12;
    hs->rng ^= hs->rng << 25;
    hs->rng ^= hs->rng >> 27;
    return (double)((hs->rng * 2685821657736338717ULL) >> 11) / 9007199254740992.0;
}

static const char *fmt_ms(char buf[24], uint32_t ms)
{
    if (ms % 1000 == 0)
        snprintf(buf, 24, "%us", ms / 1000);
    else
        snprintf(buf, 24, "%ums", ms);
    return buf;
}

static void arm(struct hep *ep, double delay)
{
    struct ev_loop *loop = ep->hc->hs->d->loop;
    ev_timer_stop(loop, &ep->timer);
    ev_timer_set(&ep->timer, delay > 0 ? delay : 0., 0.);
    ev_timer_start(loop, &ep->timer);
}

static void close_check(struct hep *ep)
{
    struct ev_loop *loop = ep->hc->hs->d->loop;
    ev_io_stop(loop, &ep->io);
    ev_timer_stop(loop, &ep->timer);
    if (ep->fd >= 0)
        close(ep->fd);
    ep->fd = -1;
    keel_grpc_health_free(ep->gh);
    ep->gh = NULL;
    ep->step = HC_IDLE;
    ep->len = ep->off = 0;
}

static void set_down_reason(struct hep *ep)
{
    snprintf(ep->reason, sizeof(ep->reason), "active health check failing: %.80s (%u in a row)",
             ep->why, ep->fail_run);
}

/* One check ended: hysteresis, logging, the next check. */
static void finish(struct hep *ep, int ok, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void finish(struct hep *ep, int ok, const char *fmt, ...)
{
    struct hcluster *hc = ep->hc;
    struct keel_discovery *d = hc->hs->d;
    const struct keel_cfg_health *cfg = hc->cfg;
    char desc[sizeof(ep->why)] = "";
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(desc, sizeof(desc), fmt, ap);
        va_end(ap);
    }
    close_check(ep);
    if (ok) {
        ep->ok_run++;
        ep->fail_run = 0;
        if (!ep->up && (ep->ok_run >= cfg->rise || ep->fresh)) {
            ep->up = 1;
            if (ep->fresh)
                snprintf(desc, sizeof(desc), "its first health check passed");
            else
                snprintf(desc, sizeof(desc), "%u checks passed in a row", ep->ok_run);
            KEEL_INFO("cluster %s: endpoint %s (%s) is UP: %s", hc->c->cfg->name, ep->name, ep->id,
                      desc);
            ep->fresh = 0;
            ep->reason[0] = 0;
            ep->why[0] = 0;
            keel_discovery_touch(d);
        }
    } else {
        ep->fail_run++;
        ep->ok_run = 0;
        if (ep->up && ep->fail_run >= cfg->fall) {
            ep->up = 0;
            snprintf(ep->why, sizeof(ep->why), "%s", desc);
            set_down_reason(ep);
            KEEL_WARN("cluster %s: endpoint %s (%s) is DOWN: %s, %u check%s in a row",
                      hc->c->cfg->name, ep->name, ep->id, desc, ep->fail_run,
                      ep->fail_run == 1 ? "" : "s");
            keel_discovery_touch(d);
        } else if (!ep->up && strcmp(ep->why, desc) != 0) {
            /* Still down, for another reason now: say so once, not on every check. */
            snprintf(ep->why, sizeof(ep->why), "%s", desc);
            set_down_reason(ep);
            KEEL_INFO("cluster %s: endpoint %s (%s) still out of rotation: %s", hc->c->cfg->name,
                      ep->name, ep->id, desc);
            keel_discovery_touch(d);
        }
    }
    /* Start to start, so a slow answer does not stretch the interval; jittered. */
    double iv = cfg->interval_ms / 1000.0;
    double j = iv * cfg->jitter_pct / 100.0;
    double next = iv + j * (2.0 * rnd(hc->hs) - 1.0);
    arm(ep, ep->started + next - ev_now(d->loop));
}

static void fail_errno(struct hep *ep, const char *what, int e)
{
    if (e == ECONNREFUSED)
        finish(ep, 0, "%s refused", what);
    else if (e == ECONNRESET)
        finish(ep, 0, "%s: connection reset", what);
    else
        finish(ep, 0, "%s failed: %s", what, strerror(e));
}

/* The response head decided (n > 0 from the parser). */
static void verdict(struct hep *ep, const struct keel_health_resp *r)
{
    const struct keel_cfg_health *cfg = ep->hc->cfg;
    if (!keel_health_parse_status_ok(cfg->expect, cfg->n_expect, r->status)) {
        finish(ep, 0, "HTTP %d", r->status);
        return;
    }
    if (cfg->expect_header.name && !r->header_found) {
        finish(ep, 0, "identity mismatch: no %.40s header", cfg->expect_header.name);
        return;
    }
    if (cfg->expect_header.name && !r->header_matched) {
        finish(ep, 0, "identity mismatch: %.30s is \"%.30s\"", cfg->expect_header.name,
               r->header_value);
        return;
    }
    finish(ep, 1, NULL);
}

static void on_readable(struct hep *ep)
{
    const struct keel_cfg_health *cfg = ep->hc->cfg;
    for (;;) {
        ssize_t n = recv(ep->fd, ep->buf + ep->len, HC_BUF - ep->len, 0);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            if (errno == EINTR)
                continue;
            fail_errno(ep, "reading the response", errno);
            return;
        }
        ep->len += (size_t)n;
        struct keel_health_resp r;
        ssize_t rc = keel_health_parse_response(ep->buf, ep->len, cfg->expect_header.name,
                                                cfg->expect_header.value, &r);
        if (rc > 0) {
            verdict(ep, &r);
            return;
        }
        if (rc == KEEL_EBADMSG) {
            finish(ep, 0, "not an HTTP/1.x response");
            return;
        }
        if (n == 0) {
            finish(ep, 0, "connection closed before a complete response head");
            return;
        }
        if (ep->len == HC_BUF) {
            finish(ep, 0, "response head larger than %d bytes", HC_BUF);
            return;
        }
    }
}

static void on_writable(struct hep *ep)
{
    struct ev_loop *loop = ep->hc->hs->d->loop;
    while (ep->off < ep->len) {
        ssize_t n = send(ep->fd, ep->buf + ep->off, ep->len - ep->off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            if (errno == EINTR)
                continue;
            fail_errno(ep, "sending the request", errno);
            return;
        }
        ep->off += (size_t)n;
    }
    ep->step = HC_READING;
    ep->len = ep->off = 0;
    ev_io_stop(loop, &ep->io);
    ev_io_set(&ep->io, ep->fd, EV_READ);
    ev_io_start(loop, &ep->io);
}

/* gRPC: the session in memory says what to send and judges what comes back; the socket
 * only carries bytes. Reads first, so a verdict is never lost to a failing write. */
static void grpc_io(struct hep *ep, int revents)
{
    struct ev_loop *loop = ep->hc->hs->d->loop;
    struct keel_grpc_health *gh = ep->gh;
    if (revents & EV_READ) {
        for (;;) {
            ssize_t n = recv(ep->fd, ep->buf, HC_BUF, 0);
            if (n < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK)
                    break;
                if (errno == EINTR)
                    continue;
                fail_errno(ep, "reading the response", errno);
                return;
            }
            if (n == 0)
                keel_grpc_health_eof(gh);
            else
                keel_grpc_health_feed(gh, (const uint8_t *)ep->buf, (size_t)n);
            if (keel_grpc_health_state(gh) != KEEL_GRPC_HEALTH_PENDING)
                break;
        }
    }
    int blocked = 0;
    const uint8_t *p;
    size_t len;
    while (keel_grpc_health_state(gh) == KEEL_GRPC_HEALTH_PENDING &&
           (len = keel_grpc_health_output(gh, &p)) > 0) {
        ssize_t n = send(ep->fd, p, len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                blocked = 1;
                break;
            }
            if (errno == EINTR)
                continue;
            fail_errno(ep, "sending the request", errno);
            return;
        }
        keel_grpc_health_sent(gh, (size_t)n);
    }
    switch (keel_grpc_health_state(gh)) {
    case KEEL_GRPC_HEALTH_SERVING:
        finish(ep, 1, NULL);
        return;
    case KEEL_GRPC_HEALTH_FAILED:
        finish(ep, 0, "%s", keel_grpc_health_reason(gh));
        return;
    case KEEL_GRPC_HEALTH_PENDING:
        break;
    }
    int want = EV_READ | (blocked ? EV_WRITE : 0);
    if ((ep->io.events & (EV_READ | EV_WRITE)) != want || !ev_is_active(&ep->io)) {
        ev_io_stop(loop, &ep->io);
        ev_io_set(&ep->io, ep->fd, want);
        ev_io_start(loop, &ep->io);
    }
}

/* What names the endpoint in the check request: the configured host, else "ip:port". */
static void check_host(const struct hep *ep, char *host, size_t cap)
{
    const struct keel_cfg_health *cfg = ep->hc->cfg;
    if (cfg->host)
        snprintf(host, cap, "%s", cfg->host);
    else if (keel_health_parse_addr_str(&ep->sa, host, cap) != 0)
        snprintf(host, cap, "%s", ep->name);
}

static void on_grpc_connected(struct hep *ep)
{
    const struct keel_cfg_health *cfg = ep->hc->cfg;
    char host[KEEL_GRPC_HEALTH_AUTHORITY_MAX + 1];
    check_host(ep, host, sizeof(host));
    int rc = keel_grpc_health_new(&ep->gh, host, cfg->grpc_service ? cfg->grpc_service : "",
                                  cfg->timeout_ms);
    if (rc != 0) {
        finish(ep, 0, "cannot start the grpc check: %s", keel_strerror(rc));
        return;
    }
    ep->step = HC_H2;
    grpc_io(ep, 0);
}

static void on_connected(struct hep *ep)
{
    const struct keel_cfg_health *cfg = ep->hc->cfg;
    if (cfg->type == KEEL_HEALTH_TCP) {
        finish(ep, 1, NULL);
        return;
    }
    if (cfg->type == KEEL_HEALTH_GRPC) {
        on_grpc_connected(ep);
        return;
    }
    char host[80];
    check_host(ep, host, sizeof(host));
    ssize_t n = keel_health_parse_format_request(ep->buf, sizeof(ep->buf), cfg->method, cfg->path,
                                                 cfg->host ? cfg->host : host);
    if (n < 0) {
        finish(ep, 0, "check request does not fit in %d bytes", HC_BUF);
        return;
    }
    ep->len = (size_t)n;
    ep->off = 0;
    ep->step = HC_SENDING;
    on_writable(ep);
}

static void on_io(struct ev_loop *loop, ev_io *w, int revents)
{
    struct hep *ep = w->data;
    switch (ep->step) {
    case HC_CONNECTING: {
        int e = 0;
        socklen_t el = sizeof(e);
        if (getsockopt(ep->fd, SOL_SOCKET, SO_ERROR, &e, &el) != 0)
            e = errno;
        if (e) {
            fail_errno(ep, "connect", e);
            return;
        }
        on_connected(ep);
        return;
    }
    case HC_SENDING:
        on_writable(ep);
        return;
    case HC_READING:
        on_readable(ep);
        return;
    case HC_H2:
        grpc_io(ep, revents);
        return;
    case HC_IDLE:
        ev_io_stop(loop, w);
        return;
    }
}

static void start_check(struct hep *ep)
{
    struct ev_loop *loop = ep->hc->hs->d->loop;
    const struct keel_cfg_health *cfg = ep->hc->cfg;
    ep->started = ev_now(loop);
    ep->fd = socket(ep->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (ep->fd < 0) {
        finish(ep, 0, "cannot create a socket: %s", strerror(errno));
        return;
    }
    ep->step = HC_CONNECTING;
    arm(ep, cfg->timeout_ms / 1000.0);
    /* Even a connect that completes at once (loopback) goes through on_io: the request is
     * then written from a watcher that is already waiting for EV_WRITE. */
    if (connect(ep->fd, (const struct sockaddr *)&ep->sa, ep->salen) != 0 && errno != EINPROGRESS) {
        fail_errno(ep, "connect", errno);
        return;
    }
    ev_io_set(&ep->io, ep->fd, EV_WRITE);
    ev_io_start(loop, &ep->io);
}

static void on_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct hep *ep = t->data;
    char b[24];
    if (ep->step == HC_IDLE) {
        start_check(ep);
        return;
    }
    finish(ep, 0, "timeout after %s%s", fmt_ms(b, ep->hc->cfg->timeout_ms),
           ep->step == HC_CONNECTING ? " (connect)" : "");
}

/* The address to check: the endpoint's, with the check port when one is configured. */
static void check_addr(const struct hcluster *hc, const struct keel_disc_ep *de,
                       struct sockaddr_storage *sa, socklen_t *salen)
{
    memset(sa, 0, sizeof(*sa));
    memcpy(sa, &de->sa, de->salen <= sizeof(*sa) ? de->salen : sizeof(*sa));
    *salen = de->salen;
    if (!hc->cfg->port)
        return;
    if (sa->ss_family == AF_INET)
        ((struct sockaddr_in *)sa)->sin_port = htons(hc->cfg->port);
    else if (sa->ss_family == AF_INET6)
        ((struct sockaddr_in6 *)sa)->sin6_port = htons(hc->cfg->port);
}

static void free_ep(struct hep *ep)
{
    close_check(ep);
    free(ep);
}

static struct hep *find_ep(const struct hcluster *hc, const char *id, size_t hint)
{
    /* Sets rarely reorder: the same position is the likely match. */
    if (hint < hc->n && strcmp(hc->eps[hint]->id, id) == 0)
        return hc->eps[hint];
    for (size_t i = 0; i < hc->n; i++)
        if (strcmp(hc->eps[i]->id, id) == 0)
            return hc->eps[i];
    return NULL;
}

static struct hep *add_ep(struct hcluster *hc, const struct keel_disc_ep *de)
{
    if (hc->n == hc->cap) {
        size_t cap = hc->cap ? hc->cap * 2 : 8;
        struct hep **a = realloc(hc->eps, cap * sizeof(*a));
        if (!a)
            return NULL;
        hc->eps = a;
        hc->cap = cap;
    }
    struct hep *ep = calloc(1, sizeof(*ep));
    if (!ep)
        return NULL;
    ep->hc = hc;
    ep->fd = -1;
    snprintf(ep->id, sizeof(ep->id), "%s", de->id);
    snprintf(ep->name, sizeof(ep->name), "%s", de->name);
    check_addr(hc, de, &ep->sa, &ep->salen);
    ev_init(&ep->io, on_io);
    ep->io.data = ep;
    ev_init(&ep->timer, on_timer);
    ep->timer.data = ep;
    double iv = hc->cfg->interval_ms / 1000.0;
    if (hc->primed) {
        /* Not ready until proven: no traffic before its first check passes. */
        ep->fresh = 1;
        snprintf(ep->reason, sizeof(ep->reason),
                 "active health check pending: new endpoint, no check passed yet");
        KEEL_INFO("cluster %s: endpoint %s (%s) is new: no traffic until a health check passes",
                  hc->c->cfg->name, ep->name, ep->id);
        arm(ep, HC_FIRST_S * rnd(hc->hs));
    } else {
        /* Known at start: serves at once; first checks spread over one interval. */
        ep->up = 1;
        arm(ep, iv * rnd(hc->hs));
    }
    hc->eps[hc->n++] = ep;
    return ep;
}

/* Follows the cluster's current set: new ids start being checked, ids that left are
 * forgotten (their check, if any, is abandoned). */
static void sync_cluster(struct hcluster *hc)
{
    const struct keel_disc_set *set = &hc->c->set;
    for (size_t i = 0; i < hc->n; i++)
        hc->eps[i]->seen = 0;
    for (size_t i = 0; i < set->n; i++) {
        const struct keel_disc_ep *de = &set->eps[i];
        struct hep *ep = find_ep(hc, de->id, i);
        if (!ep) {
            ep = add_ep(hc, de);
            if (!ep) {
                KEEL_ERROR("cluster %s: out of memory tracking health of %s", hc->c->cfg->name,
                           de->name);
                continue;
            }
        } else {
            struct sockaddr_storage sa;
            socklen_t salen;
            check_addr(hc, de, &sa, &salen);
            if (salen != ep->salen || memcmp(&sa, &ep->sa, salen) != 0) {
                ep->sa = sa; /* the next check goes to the new address */
                ep->salen = salen;
                snprintf(ep->name, sizeof(ep->name), "%s", de->name);
            }
        }
        ep->seen = 1;
    }
    size_t k = 0;
    for (size_t i = 0; i < hc->n; i++) {
        if (hc->eps[i]->seen)
            hc->eps[k++] = hc->eps[i];
        else
            free_ep(hc->eps[i]);
    }
    hc->n = k;
    if (hc->c->have_answer)
        hc->primed = 1;
}

static void on_scan(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct hstate *hs = t->data;
    for (size_t i = 0; i < hs->n; i++)
        sync_cluster(&hs->cl[i]);
}

static const char *type_str(enum keel_health_type t)
{
    switch (t) {
    case KEEL_HEALTH_HTTP:
        return "http";
    case KEEL_HEALTH_TCP:
        return "tcp";
    case KEEL_HEALTH_GRPC:
        return "grpc";
    }
    return "?";
}

int keel_health_start(struct keel_discovery *d)
{
    size_t n = 0;
    for (size_t i = 0; i < d->n_cl; i++)
        if (d->cl[i].cfg->health_check.enabled)
            n++;
    if (n == 0)
        return 0;
    struct hstate *hs = calloc(1, sizeof(*hs));
    if (!hs || !(hs->cl = calloc(n, sizeof(*hs->cl)))) {
        free(hs);
        return KEEL_ENOMEM;
    }
    hs->d = d;
    hs->rng = ((uint64_t)time(NULL) << 20) ^ (uint64_t)getpid() ^ (uint64_t)(uintptr_t)hs;
    if (!hs->rng)
        hs->rng = 1;
    for (size_t i = 0; i < d->n_cl; i++) {
        struct keel_dcluster *c = &d->cl[i];
        const struct keel_cfg_health *h = &c->cfg->health_check;
        if (!h->enabled)
            continue;
        struct hcluster *hc = &hs->cl[hs->n++];
        hc->hs = hs;
        hc->c = c;
        hc->cfg = h;
        char a[24], b[24];
        KEEL_INFO("cluster %s: active %s health checks every %s (timeout %s, rise %u, fall %u)%s",
                  c->cfg->name, type_str(h->type), fmt_ms(a, h->interval_ms),
                  fmt_ms(b, h->timeout_ms), h->rise, h->fall, h->port ? " on the check port" : "");
        if (h->type == KEEL_HEALTH_GRPC && c->cfg->tls.enabled)
            KEEL_WARN("cluster %s: grpc health checks use h2c (no TLS) although the cluster "
                      "has tls:",
                      c->cfg->name);
        sync_cluster(hc);
    }
    ev_timer_init(&hs->scan, on_scan, HC_SCAN_S, HC_SCAN_S);
    hs->scan.data = hs;
    ev_timer_start(d->loop, &hs->scan);
    d->health = hs;
    return 0;
}

void keel_health_stop(struct keel_discovery *d)
{
    struct hstate *hs = d->health;
    if (!hs)
        return;
    ev_timer_stop(d->loop, &hs->scan);
    for (size_t i = 0; i < hs->n; i++) {
        struct hcluster *hc = &hs->cl[i];
        for (size_t k = 0; k < hc->n; k++)
            free_ep(hc->eps[k]);
        free(hc->eps);
    }
    free(hs->cl);
    free(hs);
    d->health = NULL;
}

void keel_health_annotate(struct keel_discovery *d, struct keel_dcluster *c)
{
    struct hstate *hs = d->health;
    if (!hs)
        return;
    struct hcluster *hc = NULL;
    for (size_t i = 0; i < hs->n && !hc; i++)
        if (hs->cl[i].c == c)
            hc = &hs->cl[i];
    if (!hc)
        return;
    /* A new endpoint must be marked before the snapshot that first shows it. */
    sync_cluster(hc);
    for (size_t i = 0; i < c->set.n; i++) {
        struct keel_disc_ep *de = &c->set.eps[i];
        const struct hep *ep = find_ep(hc, de->id, i);
        if (!ep || ep->up)
            continue;
        de->extra_health |= KEEL_EP_H_ACTIVE;
        snprintf(de->extra_reason, sizeof(de->extra_reason), "%s", ep->reason);
    }
}
