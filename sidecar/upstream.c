/* SPDX-License-Identifier: MIT */
/* Upstream connections: non-blocking connect and a per-worker, per-endpoint idle pool. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include "keel/err.h"
#include "keel/log.h"
#include "conn.h"
#include "tls.h"

/* Pool slots are keyed by the load record's id (never reused), open addressing. */
static struct keel_pool *pool_find(struct keel_worker *w, struct keel_ep_load *load, int create)
{
    if (w->pools_cap == 0) {
        if (!create)
            return NULL;
        w->pools = calloc(16, sizeof(*w->pools));
        if (!w->pools)
            return NULL;
        w->pools_cap = 16;
    }
    uint32_t mask = w->pools_cap - 1;
    uint32_t i = (load->id * 2654435761u) & mask;
    uint32_t used = 0;
    for (uint32_t n = 0; n < w->pools_cap; n++, i = (i + 1) & mask) {
        struct keel_pool *p = &w->pools[i];
        if (p->key == load)
            return p;
        if (p->key == NULL) {
            if (!create)
                return NULL;
            if (used * 4 < w->pools_cap * 3) {
                p->key = load;
                return p;
            }
            break;
        }
        used++;
    }
    /* Full enough: rebuild twice as large, dropping slots without idle connections. */
    uint32_t ncap = w->pools_cap * 2;
    struct keel_pool *np = calloc(ncap, sizeof(*np));
    if (!np)
        return NULL;
    for (uint32_t k = 0; k < w->pools_cap; k++) {
        struct keel_pool *p = &w->pools[k];
        if (!p->key || !p->n_idle)
            continue;
        uint32_t j = (p->key->id * 2654435761u) & (ncap - 1);
        while (np[j].key)
            j = (j + 1) & (ncap - 1);
        np[j] = *p;
    }
    free(w->pools);
    w->pools = np;
    w->pools_cap = ncap;
    return pool_find(w, load, create);
}

static void pool_unlink(struct keel_upconn *u)
{
    struct keel_pool *p = pool_find(u->w, u->load, 0);
    if (!p)
        return;
    struct keel_upconn **pp = &p->idle;
    while (*pp && *pp != u)
        pp = &(*pp)->next_idle;
    if (*pp) {
        *pp = u->next_idle;
        p->n_idle--;
    }
    u->next_idle = NULL;
}

void keel_up_close(struct keel_upconn *u)
{
    if (u->state == KEEL_UP_CLOSED)
        return;
    if (u->state == KEEL_UP_IDLE)
        pool_unlink(u);
    u->state = KEEL_UP_CLOSED;
    if (u->cstats)
        atomic_fetch_sub_explicit(&u->cstats->open_conns, 1, memory_order_relaxed);
    u->cstats = NULL;
    ev_timer_stop(u->w->loop, &u->timer);
    keel_sock_close(u->w->loop, &u->s);
    u->owner = NULL;
    u->next_close = u->w->up_closing;
    u->w->up_closing = u;
}

void keel_up_reap(struct keel_worker *w)
{
    while (w->up_closing) {
        struct keel_upconn *u = w->up_closing;
        w->up_closing = u->next_close;
        keel_ep_load_unref(u->load);
        free(u);
    }
}

static void on_idle_read(struct ev_loop *loop, ev_io *io, int revents)
{
    struct keel_upconn *u = io->data;
    if (u->s.ssl) {
        /* TLS records arrive on idle connections (session tickets): only a close, an error
         * or application data ends it. */
        if (keel_tls_idle_alive(&u->s))
            return;
        KEEL_DEBUG("upstream %s: idle TLS connection closed by peer", u->name);
        keel_up_close(u);
        return;
    }
    char b[1];
    ssize_t n = recv(u->s.fd, b, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    /* EOF, reset or unsolicited bytes: an idle connection cannot carry a request any more. */
    KEEL_DEBUG("upstream %s: idle connection closed by peer", u->name);
    keel_up_close(u);
}

static void on_idle_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    keel_up_close(t->data);
}

void keel_up_release(struct keel_upconn *u)
{
    struct keel_worker *w = u->w;
    u->owner = NULL;
    if (u->s.vops) {
        keel_up_close(u); /* an HTTP/2 stream is not reused; its connection is */
        return;
    }
    ev_io_stop(w->loop, &u->s.wio);
    ev_io_stop(w->loop, &u->s.rio);
    ev_timer_stop(w->loop, &u->timer);
    struct keel_pool *p = NULL;
    if (!w->draining && u->s.in.len == 0 && u->s.out.len == 0 && !u->s.rd_eof && !u->s.ssl_dead &&
        !u->s.ssl_more && !u->s.ssl_wpend && u->ccfg->max_idle_per_endpoint > 0)
        p = pool_find(w, u->load, 1);
    if (!p || p->n_idle >= u->ccfg->max_idle_per_endpoint) {
        keel_up_close(u);
        return;
    }
    /* An idle connection keeps no buffers: they go back to the allocator. */
    keel_buf_free(&u->s.in);
    keel_buf_free(&u->s.out);
    u->state = KEEL_UP_IDLE;
    u->next_idle = p->idle;
    p->idle = u;
    p->n_idle++;
    ev_set_cb(&u->s.rio, on_idle_read);
    /* TLS may have left a watcher waiting for the other event (conn.c keel_sock_want). */
    if ((u->s.rio.events & (EV_READ | EV_WRITE)) != EV_READ)
        ev_io_modify(&u->s.rio, EV_READ);
    if ((u->s.wio.events & (EV_READ | EV_WRITE)) != EV_WRITE)
        ev_io_modify(&u->s.wio, EV_WRITE);
    u->s.ssl_rd_wants_w = u->s.ssl_wr_wants_r = 0;
    ev_io_start(w->loop, &u->s.rio);
    ev_set_cb(&u->timer, on_idle_timer);
    ev_timer_set(&u->timer, u->ccfg->idle_timeout_ms / 1000.0, 0.);
    ev_timer_start(w->loop, &u->timer);
}

/* A pooled connection may have been closed by the peer since it was parked. */
static int still_open(struct keel_sock *s)
{
    if (s->ssl)
        return keel_tls_idle_alive(s);
    char b[1];
    ssize_t n = recv(s->fd, b, 1, MSG_PEEK | MSG_DONTWAIT);
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

struct keel_upconn *keel_up_get(struct keel_worker *w, const struct keel_endpoint *ep,
                                const struct keel_cluster *cl, int pooled, int *err)
{
    const struct keel_cfg_cluster *ccfg = cl->cfg;
    if (ccfg->protocol != KEEL_UP_HTTP1)
        return keel_h2up_get(w, ep, cl, err); /* a stream on a shared HTTP/2 connection */
    struct keel_pool *p = pooled ? pool_find(w, ep->load, 0) : NULL;
    while (p && p->idle) {
        struct keel_upconn *u = p->idle;
        p->idle = u->next_idle;
        p->n_idle--;
        u->next_idle = NULL;
        ev_io_stop(w->loop, &u->s.rio);
        ev_timer_stop(w->loop, &u->timer);
        /* Its idle watcher has closed a connection the peer closed before this loop
         * iteration. A peek (one more syscall per request) only narrows the race to a close
         * since then, so it is kept for requests that cannot simply be sent again on a new
         * connection (pooled == 2; see up_failed in http_proxy.c). */
        /* An instance re-registered at another address keeps its identity (and load record):
         * its connections to the old address are not reused. */
        if ((pooled > 1 && !still_open(&u->s)) || strcmp(u->name, ep->name) != 0) {
            u->state = KEEL_UP_ACTIVE; /* not in the pool any more */
            keel_up_close(u);
            continue;
        }
        u->state = KEEL_UP_ACTIVE;
        u->reused = 1;
        u->ccfg = ccfg;
        return u;
    }

    if (ccfg->max_connections && cl->stats &&
        atomic_load_explicit(&cl->stats->open_conns, memory_order_relaxed) >=
            (int64_t)ccfg->max_connections) {
        *err = KEEL_ELIMIT;
        return NULL;
    }
    struct keel_upconn *u = calloc(1, sizeof(*u));
    if (!u) {
        *err = KEEL_ENOMEM;
        return NULL;
    }
    int fd = socket(ep->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        free(u);
        *err = keel_err_from_errno(errno);
        return NULL;
    }
    keel_sock_setup(fd);
    u->w = w;
    u->s.fd = fd;
    u->ccfg = ccfg;
    u->load = ep->load;
    keel_ep_load_ref(u->load);
    u->cstats = cl->stats;
    if (u->cstats)
        atomic_fetch_add_explicit(&u->cstats->open_conns, 1, memory_order_relaxed);
    snprintf(u->name, sizeof(u->name), "%s", ep->name);
    ev_io_init(&u->s.rio, NULL, fd, EV_READ);
    ev_io_init(&u->s.wio, NULL, fd, EV_WRITE);
    u->s.rio.data = u->s.wio.data = u;
    ev_init(&u->timer, NULL);
    u->timer.data = u;
    atomic_fetch_add_explicit(&ep->load->connections, 1, memory_order_relaxed);
    if (ccfg->tls.enabled) {
        /* The handshake runs inside the first writes and reads of the request. */
        int trc = keel_tls_client_attach(w, &u->s, ccfg, 0);
        if (trc) {
            *err = trc;
            u->state = KEEL_UP_ACTIVE;
            keel_up_close(u);
            return NULL;
        }
    }
    int rc = connect(fd, (const struct sockaddr *)&ep->sa, ep->salen);
    if (rc == 0) {
        u->state = KEEL_UP_ACTIVE;
    } else if (errno == EINPROGRESS) {
        u->state = KEEL_UP_CONNECTING;
    } else {
        *err = keel_err_from_errno(errno);
        u->state = KEEL_UP_ACTIVE;
        keel_up_close(u);
        return NULL;
    }
    return u;
}

void keel_pool_close_all(struct keel_worker *w)
{
    for (uint32_t i = 0; i < w->pools_cap; i++) {
        while (w->pools[i].idle)
            keel_up_close(w->pools[i].idle);
    }
}
