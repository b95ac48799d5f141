/* SPDX-License-Identifier: MIT */
/* Worker threads: one libev loop each, own SO_REUSEPORT listeners, snapshot adoption, drain. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>
#include "keel/balancer.h"
#include "keel/err.h"
#include "keel/log.h"
#include "conn.h"

#define ACCEPT_BATCH 64

static void close_listeners(struct keel_worker *w)
{
    for (uint32_t i = 0; i < w->n_lsocks; i++) {
        if (w->lsocks[i].fd < 0)
            continue;
        ev_io_stop(w->loop, &w->lsocks[i].io);
        ev_timer_stop(w->loop, &w->lsocks[i].pause);
        close(w->lsocks[i].fd);
        w->lsocks[i].fd = -1;
    }
}

static void accept_some(struct keel_worker *w, struct keel_lsock *ls, int limit)
{
    struct keel_runtime *rt = w->rt;
    const struct keel_cfg_listener *l = &rt->cfg->listeners[ls->listener];
    struct keel_listener_stats *st = &rt->lstats[ls->listener];
    for (int i = 0; i < limit; i++) {
        struct sockaddr_storage peer;
        socklen_t pl = sizeof(peer);
        int fd = accept4(ls->fd, (struct sockaddr *)&peer, &pl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                /* The socket stays readable: without a pause this would spin. The pending
                 * connections wait in the kernel queue until descriptors are free again. */
                if (!ls->paused)
                    KEEL_WARN("listener %s: accept failed: %s; pausing accepts until "
                              "descriptors are free (retrying every 100 ms)",
                              l->name, strerror(errno));
                ls->paused = 1;
                ev_io_stop(w->loop, &ls->io);
                /* set again: a fired timer keeps no useful "after" of its own */
                ev_timer_set(&ls->pause, 0.1, 0.);
                ev_timer_start(w->loop, &ls->pause);
            } else if (errno != EAGAIN && errno != EWOULDBLOCK) {
                KEEL_WARN("listener %s: accept failed: %s", l->name, strerror(errno));
            }
            return;
        }
        if (l->max_connections && atomic_load_explicit(&st->active_conns, memory_order_relaxed) >=
                                      (int64_t)l->max_connections) {
            atomic_fetch_add_explicit(&st->rejected, 1, memory_order_relaxed);
            close(fd);
            continue;
        }
        if (ls->paused) {
            ls->paused = 0;
            KEEL_INFO("listener %s: accepting again", l->name);
        }
        atomic_fetch_add_explicit(&st->accepted, 1, memory_order_relaxed);
        if (l->proto == KEEL_LISTEN_TCP)
            keel_tcp_accept(w, fd, ls->listener, &peer);
        else
            keel_http_accept(w, fd, ls->listener, &peer);
    }
}

static void on_accept_resume(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct keel_lsock *ls = t->data;
    if (ls->fd >= 0 && !ls->w->draining)
        ev_io_start(loop, &ls->io);
}

static void on_accept(struct ev_loop *loop, ev_io *io, int revents)
{
    struct keel_lsock *ls = io->data;
    accept_some(ls->w, ls, ACCEPT_BATCH);
}

int keel_worker_bind(struct keel_worker *w)
{
    const struct keel_cfg *cfg = w->rt->cfg;
    w->lsocks = calloc(cfg->n_listeners ? cfg->n_listeners : 1, sizeof(*w->lsocks));
    if (!w->lsocks)
        return KEEL_ENOMEM;
    for (size_t i = 0; i < cfg->n_listeners; i++) {
        const struct keel_cfg_listener *l = &cfg->listeners[i];
        struct keel_lsock *ls = &w->lsocks[i];
        ls->fd = -1;
        ls->w = w;
        ls->listener = (uint32_t)i;
        w->n_lsocks++;
        int fd = socket(l->addr.sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        int one = 1;
        if (fd < 0)
            goto fail;
        ls->fd = fd;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0)
            goto fail;
        if (l->addr.sa.ss_family == AF_INET6)
            setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
        /* Accepted sockets inherit TCP_NODELAY from the listening one (and get O_NONBLOCK
         * from accept4): no fcntl/setsockopt calls per connection. */
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if (bind(fd, (const struct sockaddr *)&l->addr.sa, l->addr.salen) != 0)
            goto fail;
        if (listen(fd, 4096) != 0)
            goto fail;
        ev_io_init(&ls->io, on_accept, fd, EV_READ);
        ls->io.data = ls;
        ev_timer_init(&ls->pause, on_accept_resume, 0.1, 0.);
        ls->pause.data = ls;
        continue;
    fail:
        KEEL_ERROR("listener %s: cannot listen on %s: %s", l->name, l->addr.text, strerror(errno));
        return KEEL_EIO;
    }
    return 0;
}

/* Panic mode (Envoy's threshold, per cluster, default 50%): below that share of the present
 * weight eligible, balance over every endpoint discovery still offers rather than overload
 * the few healthy ones. */
static void update_panic(struct keel_worker *w, struct keel_wsnap *ws)
{
    if (!ws->panic)
        return;
    for (uint32_t c = 0; c < ws->snap->n_clusters; c++) {
        const struct keel_cluster *cl = &ws->snap->clusters[c];
        uint64_t present = 0, eligible = 0;
        for (uint32_t i = 0; i < cl->n_eps; i++) {
            if (!keel_ep_present(&cl->eps[i]))
                continue;
            present += cl->eps[i].weight;
            if (keel_ep_eligible(&cl->eps[i]))
                eligible += cl->eps[i].weight;
        }
        uint32_t threshold = cl->cfg ? cl->cfg->panic_threshold : 0;
        uint8_t p = present > 0 && eligible * 100 < present * threshold;
        if (p != ws->panic[c])
            KEEL_WARN_RL("cluster %s: %s panic mode (%llu of %llu weight eligible)", cl->name,
                         p ? "entering" : "leaving", (unsigned long long)eligible,
                         (unsigned long long)present);
        ws->panic[c] = p;
    }
}

static void on_panic_tick(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct keel_worker *w = t->data;
    if (w->cur)
        update_panic(w, w->cur);
    if (++w->panic_ticks % 4 == 0)
        keel_buf_cache_trim();
}

static void wsnap_free(struct keel_wsnap *ws)
{
    free(ws->panic);
    if (ws->lb_state)
        for (uint32_t i = 0; i < ws->snap->n_clusters; i++)
            if (ws->lb_state[i])
                ws->snap->clusters[i].lb->state_free(ws->lb_state[i]);
    free(ws->lb_state);
    keel_snap_unref(ws->snap);
    free(ws);
}

struct keel_wsnap *keel_wsnap_pin(struct keel_worker *w)
{
    w->cur->users++;
    return w->cur;
}

void keel_wsnap_unpin(struct keel_worker *w, struct keel_wsnap *ws)
{
    if (!ws)
        return;
    KEEL_ASSERT(ws->users > 0);
    if (--ws->users > 0 || ws == w->cur)
        return;
    struct keel_wsnap **pp = &w->retired;
    while (*pp && *pp != ws)
        pp = &(*pp)->next_retired;
    if (*pp)
        *pp = ws->next_retired;
    wsnap_free(ws);
}

/* Every worker starts its rotation at a different place: with fresh per-worker state, the
 * first request on each worker would otherwise go to the same endpoint (connections are spread
 * over workers by the kernel, so a few sequential requests would all hit endpoint 0). */
static void spread_start(struct keel_worker *w, const struct keel_cluster *cl, void *st)
{
    uint64_t total = 0;
    for (uint32_t i = 0; i < cl->n_eps; i++)
        if (keel_ep_eligible(&cl->eps[i]))
            total += cl->eps[i].weight;
    if (total > 4096)
        total = 4096;
    uint64_t k = total * w->id / (w->rt->n_workers ? w->rt->n_workers : 1);
    struct keel_lb_req none = {0, NULL, 0, 0};
    for (uint64_t i = 0; i < k; i++)
        cl->lb->pick(cl, st, &none);
}

static void adopt_snapshot(struct keel_worker *w, struct keel_snap *s)
{
    struct keel_wsnap *ws = calloc(1, sizeof(*ws));
    if (!ws) {
        /* Keep serving from the snapshot we have; the next offer tries again. */
        KEEL_ERROR("worker %u: out of memory adopting snapshot %llu", w->id,
                   (unsigned long long)s->gen);
        keel_snap_unref(s);
        return;
    }
    ws->snap = s;
    ws->panic = calloc(s->n_clusters ? s->n_clusters : 1, 1);
    update_panic(w, ws);
    ws->lb_state = calloc(s->n_clusters ? s->n_clusters : 1, sizeof(void *));
    if (ws->lb_state)
        for (uint32_t i = 0; i < s->n_clusters; i++) {
            ws->lb_state[i] = s->clusters[i].lb->state_new(&s->clusters[i]);
            if (ws->lb_state[i])
                spread_start(w, &s->clusters[i], ws->lb_state[i]);
        }
    struct keel_wsnap *old = w->cur;
    w->cur = ws;
    atomic_store(&w->adopted_gen, s->gen);
    if (old) {
        if (old->users == 0) {
            wsnap_free(old);
        } else {
            old->next_retired = w->retired;
            w->retired = old;
        }
    }
    KEEL_DEBUG("worker %u: adopted snapshot %llu", w->id, (unsigned long long)s->gen);
}

static void start_drain(struct keel_worker *w)
{
    if (w->draining)
        return;
    w->draining = 1;
    /* Serve what the kernel already queued for us rather than resetting it. */
    for (uint32_t i = 0; i < w->n_lsocks; i++)
        if (w->lsocks[i].fd >= 0)
            accept_some(w, &w->lsocks[i], 4096);
    close_listeners(w);
    keel_http_drain_all(w);
    keel_pool_close_all(w);
    keel_h2up_close_all(w);
}

static void on_wake(struct ev_loop *loop, ev_async *a, int revents)
{
    struct keel_worker *w = a->data;
    struct keel_snap *s = atomic_exchange(&w->mailbox, NULL);
    if (s)
        adopt_snapshot(w, s);
    int d = atomic_load(&w->rt->draining);
    if (d >= 1)
        start_drain(w);
    if (d >= 2) {
        while (w->conns)
            keel_conn_close(w->conns, "drain timeout");
        ev_break(loop, EVBREAK_ALL);
    }
}

static void on_check(struct ev_loop *loop, ev_check *c, int revents)
{
    /* After every poll: the clock ejection deadlines compare against. */
    keel_clock_update();
}

void keel_defer(struct keel_worker *w, struct keel_deferred *d)
{
    if (d->pprev)
        return;
    if (!ev_is_active(&w->defer_idle))
        ev_idle_start(w->loop, &w->defer_idle);
    d->next = w->deferred;
    if (d->next)
        d->next->pprev = &d->next;
    d->pprev = &w->deferred;
    w->deferred = d;
}

void keel_defer_cancel(struct keel_deferred *d)
{
    if (!d->pprev)
        return;
    *d->pprev = d->next;
    if (d->next)
        d->next->pprev = d->pprev;
    d->next = NULL;
    d->pprev = NULL;
}

static void run_deferred(struct keel_worker *w)
{
    /* A run may queue more (an event it fed): bounded, the rest waits one iteration. */
    for (int i = 0; i < 100000 && w->deferred; i++) {
        struct keel_deferred *d = w->deferred;
        keel_defer_cancel(d);
        d->run(d);
    }
    if (!w->deferred)
        ev_idle_stop(w->loop, &w->defer_idle);
}

static void on_defer_idle(struct ev_loop *loop, ev_idle *i, int revents)
{
    run_deferred(i->data);
}

static void on_prepare(struct ev_loop *loop, ev_prepare *p, int revents)
{
    struct keel_worker *w = p->data;
    /* Deferred writes first: they may close connections, which the reap then frees. */
    run_deferred(w);
    keel_conn_reap(w);
    if (w->draining && w->n_conns == 0)
        ev_break(loop, EVBREAK_ALL);
}

static void *worker_main(void *arg)
{
    struct keel_worker *w = arg;
    keel_clock_update();
    for (uint32_t i = 0; i < w->n_lsocks; i++)
        if (w->lsocks[i].fd >= 0)
            ev_io_start(w->loop, &w->lsocks[i].io);
    on_wake(w->loop, &w->wake, 0);
    ev_run(w->loop, 0);
    while (w->conns)
        keel_conn_close(w->conns, "shutdown");
    keel_pool_close_all(w);
    keel_h2up_close_all(w);
    keel_conn_reap(w);
    close_listeners(w);
    KEEL_ASSERT(w->retired == NULL); /* every exchange ended and unpinned its snapshot */
    keel_buf_cache_clear();
    if (w->cur)
        wsnap_free(w->cur);
    w->cur = NULL;
    atomic_fetch_add(&w->rt->workers_done, 1);
    ev_async_send(w->rt->control_loop, &w->rt->control_wake);
    return NULL;
}

int keel_worker_start(struct keel_worker *w)
{
    uint64_t seed = 0;
    if (getrandom(&seed, sizeof(seed), 0) != sizeof(seed))
        seed = (uint64_t)keel_now() * 1000003u;
    w->rng = seed | 1;
    ev_async_init(&w->wake, on_wake);
    w->wake.data = w;
    ev_async_start(w->loop, &w->wake);
    ev_prepare_init(&w->prep, on_prepare);
    ev_idle_init(&w->defer_idle, on_defer_idle);
    w->defer_idle.data = w;
    w->prep.data = w;
    ev_prepare_start(w->loop, &w->prep);
    ev_check_init(&w->check, on_check);
    ev_check_start(w->loop, &w->check);
    ev_timer_init(&w->panic_tick, on_panic_tick, 0.25, 0.25);
    w->panic_tick.data = w;
    ev_timer_start(w->loop, &w->panic_tick);
    if (pthread_create(&w->thread, NULL, worker_main, w) != 0)
        return KEEL_EIO;
    return 0;
}

void keel_worker_offer(struct keel_worker *w, struct keel_snap *s)
{
    keel_snap_ref(s);
    struct keel_snap *old = atomic_exchange(&w->mailbox, s);
    if (old)
        keel_snap_unref(old);
    if (w->wake.data) /* started: before that, worker_main reads the mailbox itself */
        ev_async_send(w->loop, &w->wake);
}

void keel_worker_drain(struct keel_worker *w)
{
    ev_async_send(w->loop, &w->wake);
}
