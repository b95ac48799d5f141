/* SPDX-License-Identifier: MIT */
/* Raw TCP relay: tcp listeners, and HTTP connections after 101 Switching Protocols. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include "keel/balancer.h"
#include "keel/err.h"
#include "keel/log.h"
#include "keel/outlier.h"
#include "conn.h"

#define TUNNEL_BUF (64 * 1024)
#define MAX_TRIES 3

static void tunnel_pump(struct keel_conn *c);

static double tunnel_idle(const struct keel_conn *c)
{
    return c->lcfg->idle_timeout_ms / 1000.0;
}

static void on_tun_io(struct ev_loop *loop, ev_io *io, int revents)
{
    struct keel_conn *c = io->data;
    if (!c)
        return;
    struct keel_upconn *u = c->up;
    if (io == &c->s.rio) {
        ssize_t n = keel_sock_read(&c->s, TUNNEL_BUF);
        if (n < 0 && n != KEEL_EAGAIN) {
            keel_conn_close(c, "client reset");
            return;
        }
        if (n > 0)
            c->t.bytes_in += (uint64_t)n;
    } else if (u && io == &u->s.rio) {
        ssize_t n = keel_sock_read(&u->s, TUNNEL_BUF);
        if (n < 0 && n != KEEL_EAGAIN) {
            keel_conn_close(c, "upstream reset");
            return;
        }
        if (n > 0)
            c->t.bytes_out += (uint64_t)n;
    }
    /* Any progress keeps the tunnel alive. */
    c->timer.repeat = tunnel_idle(c);
    ev_timer_again(loop, &c->timer);
    tunnel_pump(c);
}

static void tunnel_pump(struct keel_conn *c)
{
    struct ev_loop *loop = c->w->loop;
    struct keel_upconn *u = c->up;
    if (!u) {
        keel_conn_close(c, "no upstream");
        return;
    }
    if (c->s.in.len || u->s.out.len) {
        ssize_t n = keel_sock_flush(&u->s, c->s.in.data + c->s.in.off, c->s.in.len);
        if (n < 0) {
            keel_conn_close(c, "upstream write failed");
            return;
        }
        keel_buf_consume(&c->s.in, (size_t)n);
    }
    if (u->s.in.len || c->s.out.len) {
        ssize_t n = keel_sock_flush(&c->s, u->s.in.data + u->s.in.off, u->s.in.len);
        if (n < 0) {
            keel_conn_close(c, "client write failed");
            return;
        }
        keel_buf_consume(&u->s.in, (size_t)n);
    }
    /* Half-close: pass a FIN on once everything before it was delivered. */
    if (c->s.rd_eof && !c->s.in.len && !u->s.out.len && !u->s.wr_shut) {
        shutdown(u->s.fd, SHUT_WR);
        u->s.wr_shut = 1;
    }
    if (u->s.rd_eof && !u->s.in.len && !c->s.out.len && !c->s.wr_shut) {
        shutdown(c->s.fd, SHUT_WR);
        c->s.wr_shut = 1;
    }
    if (c->s.wr_shut && u->s.wr_shut) {
        keel_conn_close(c, "both sides closed");
        return;
    }
    int cr = !c->s.rd_eof && c->s.in.len < TUNNEL_BUF;
    int ur = !u->s.rd_eof && u->s.in.len < TUNNEL_BUF;
    int uw = c->s.in.len || u->s.out.len;
    int cw = u->s.in.len || c->s.out.len;
    if (cr)
        ev_io_start(loop, &c->s.rio);
    else
        ev_io_stop(loop, &c->s.rio);
    if (ur)
        ev_io_start(loop, &u->s.rio);
    else
        ev_io_stop(loop, &u->s.rio);
    if (uw)
        ev_io_start(loop, &u->s.wio);
    else
        ev_io_stop(loop, &u->s.wio);
    if (cw)
        ev_io_start(loop, &c->s.wio);
    else
        ev_io_stop(loop, &c->s.wio);
}

void keel_tunnel_start(struct keel_conn *c)
{
    struct keel_upconn *u = c->up;
    struct ev_loop *loop = c->w->loop;
    c->state = KEEL_CS_TUNNEL;
    ev_timer_stop(loop, &u->timer);
    ev_set_cb(&c->s.rio, on_tun_io);
    ev_set_cb(&c->s.wio, on_tun_io);
    ev_set_cb(&u->s.rio, on_tun_io);
    ev_set_cb(&u->s.wio, on_tun_io);
    u->s.rio.data = u->s.wio.data = c;
    c->timer.repeat = tunnel_idle(c);
    ev_timer_again(loop, &c->timer);
    tunnel_pump(c);
}

static void tcp_connect(struct keel_conn *c);

static void on_tcp_connect_timer(struct ev_loop *loop, ev_timer *tm, int revents);

static void tcp_connect_failed(struct keel_conn *c, int err)
{
    struct keel_upconn *u = c->up;
    struct keel_cluster *cl = &c->t.ws->snap->clusters[c->t.cluster];
    atomic_fetch_add_explicit(&u->load->connect_failures, 1, memory_order_relaxed);
    KEEL_WARN_RL("conn=%llu: tcp connect to %s (cluster %s) failed: %s", (unsigned long long)c->id,
                 u->name, cl->name, keel_strerror(err));
    if (c->t.ep >= 0 && (uint32_t)c->t.ep < cl->n_eps)
        keel_outlier_report(cl, &cl->eps[c->t.ep],
                            err == KEEL_ETIMEDOUT ? KEEL_OUTCOME_TIMEOUT : KEEL_OUTCOME_GATEWAY);
    c->up = NULL;
    u->owner = NULL;
    keel_up_close(u);
    tcp_connect(c);
}

static void on_tcp_connected(struct ev_loop *loop, ev_io *io, int revents)
{
    struct keel_upconn *u = io->data;
    struct keel_conn *c = u->owner;
    if (!c)
        return;
    int soerr = 0;
    socklen_t sl = sizeof(soerr);
    if (getsockopt(u->s.fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0)
        soerr = errno;
    if (soerr) {
        tcp_connect_failed(c, keel_err_from_errno(soerr));
        return;
    }
    u->state = KEEL_UP_ACTIVE;
    const struct keel_cluster *cl = &c->t.ws->snap->clusters[c->t.cluster];
    if (c->t.ep >= 0 && (uint32_t)c->t.ep < cl->n_eps)
        keel_outlier_report(cl, &cl->eps[c->t.ep], KEEL_OUTCOME_OK);
    keel_tunnel_start(c);
}

static void on_tcp_connect_timer(struct ev_loop *loop, ev_timer *tm, int revents)
{
    struct keel_upconn *u = tm->data;
    if (u->owner)
        tcp_connect_failed(u->owner, KEEL_ETIMEDOUT);
}

static void tcp_connect(struct keel_conn *c)
{
    struct keel_worker *w = c->w;
    struct keel_txn *t = &c->t;
    struct keel_cluster *cl = &t->ws->snap->clusters[t->cluster];
    for (;;) {
        if (t->n_tried >= MAX_TRIES || t->n_tried >= cl->n_eps) {
            keel_conn_close(c, "no endpoint could be reached");
            return;
        }
        struct keel_lb_req lr = {c->peer_hash, t->tried, t->n_tried,
                                 t->ws->panic ? t->ws->panic[t->cluster] : 0};
        int idx = cl->lb->pick(cl, t->ws->lb_state ? t->ws->lb_state[t->cluster] : NULL, &lr);
        if (idx < 0) {
            if (!t->n_tried && cl->stats)
                atomic_fetch_add_explicit(&cl->stats->no_endpoint, 1, memory_order_relaxed);
            keel_conn_close(c, "no eligible endpoint");
            return;
        }
        struct keel_endpoint *ep = &cl->eps[idx];
        t->tried[t->n_tried++] = (uint32_t)idx;
        t->ep = idx;
        if (t->load) {
            if (t->active)
                atomic_fetch_sub_explicit(&t->load->active, 1, memory_order_relaxed);
            keel_ep_load_unref(t->load);
        }
        t->load = ep->load;
        keel_ep_load_ref(t->load);
        atomic_fetch_add_explicit(&t->load->active, 1, memory_order_relaxed);
        t->active = 1;
        int err = 0;
        struct keel_upconn *u = keel_up_get(w, ep, cl, 0, &err);
        if (!u && err == KEEL_ELIMIT) {
            if (cl->stats)
                atomic_fetch_add_explicit(&cl->stats->cb_rejected[0], 1, memory_order_relaxed);
            keel_conn_close(c, "circuit breaker: max_connections reached");
            return;
        }
        if (!u) {
            atomic_fetch_add_explicit(&ep->load->connect_failures, 1, memory_order_relaxed);
            KEEL_WARN_RL("conn=%llu: tcp connect to %s failed: %s", (unsigned long long)c->id,
                         ep->name, keel_strerror(err));
            keel_outlier_report(cl, ep, KEEL_OUTCOME_GATEWAY);
            continue;
        }
        c->up = u;
        u->owner = c;
        if (u->state == KEEL_UP_ACTIVE) {
            keel_tunnel_start(c);
            return;
        }
        ev_set_cb(&u->s.wio, on_tcp_connected);
        ev_io_start(w->loop, &u->s.wio);
        ev_set_cb(&u->timer, on_tcp_connect_timer);
        u->timer.repeat = cl->cfg->connect_timeout_ms / 1000.0;
        ev_timer_again(w->loop, &u->timer);
        return;
    }
}

void keel_tcp_accept(struct keel_worker *w, int fd, uint32_t listener,
                     const struct sockaddr_storage *peer)
{
    struct keel_conn *c = keel_conn_new(w, fd, listener, peer);
    if (!c) {
        close(fd);
        return;
    }
    c->is_tcp = 1;
    c->state = KEEL_CS_TUNNEL;
    c->t.start = ev_now(w->loop);
    c->t.ws = keel_wsnap_pin(w);
    c->t.cluster = c->t.ws->snap->listeners[listener].tcp_cluster;
    snprintf(c->t.method, sizeof(c->t.method), "TCP");
    if (c->t.cluster < 0) {
        keel_conn_close(c, "listener has no cluster");
        return;
    }
    tcp_connect(c);
}
