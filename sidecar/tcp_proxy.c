/* SPDX-License-Identifier: MIT */
/* Raw TCP relay: tcp listeners, and HTTP connections after 101 Switching Protocols. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include "keel/balancer.h"
#include "keel/err.h"
#include "keel/log.h"
#include "keel/outlier.h"
#include "conn.h"
#include "tls.h"

#define TUNNEL_BUF (64 * 1024)
#define MAX_TRIES 3

/*
 * A tunnel relays two directions: client -> upstream (source c->s, bytes counted in
 * bytes_in) and upstream -> client (source u->s, bytes_out). Bytes of a direction wait in the
 * source's input buffer (src->in). Between two plain sockets they go through a pipe instead,
 * with splice() (src->in.pipe): the kernel moves the pages from one socket to the other and
 * keel never copies them. Bytes that were buffered before the tunnel started (after a 101
 * response: the rest of the client's request, the start of the upstream's stream; and the
 * 101 head still queued in the client's out) are written first, so the order is kept.
 */

static void tunnel_pump(struct keel_conn *c);

static double tunnel_idle(const struct keel_conn *c)
{
    return c->lcfg->idle_timeout_ms / 1000.0;
}

int keel_conn_can_splice(const struct keel_conn *c)
{
    const struct keel_upconn *u = c->up;
    if (c->s.fd < 0 || c->s.vops || c->s.ssl || c->is_tls || c->is_stream ||
        (c->lcfg && c->lcfg->tls.enabled))
        return 0;
    return u && u->s.fd >= 0 && !u->s.vops && !u->s.ssl && !(u->ccfg && u->ccfg->tls.enabled);
}

/* splice() could not be used on this pair: relay with read/write from now on. */
static void tunnel_unsplice(struct keel_sock *src)
{
    if (src->in.pipe && !src->in.pipe->len)
        keel_buf_drop_pipe(&src->in);
}

/* Reads from src into its pipe; without splice() on this socket, into its buffer from now on.
 * Same returns as keel_sock_read. */
static ssize_t pipe_fill(struct keel_sock *src)
{
    ssize_t n = keel_sock_splice_in(src, (size_t)-1);
    if (n != KEEL_ENOTIMPL)
        return n;
    tunnel_unsplice(src);
    return keel_sock_read(src, TUNNEL_BUF);
}

static ssize_t tunnel_read(struct keel_sock *s)
{
    return s->in.pipe ? pipe_fill(s) : keel_sock_read(s, TUNNEL_BUF);
}

static void on_tun_io(struct ev_loop *loop, ev_io *io, int revents)
{
    struct keel_conn *c = io->data;
    if (!c)
        return;
    struct keel_upconn *u = c->up;
    if (io == &c->s.rio) {
        ssize_t n = tunnel_read(&c->s);
        if (n < 0 && n != KEEL_EAGAIN) {
            keel_conn_close(c, "client reset");
            return;
        }
        if (n > 0)
            c->t.bytes_in += (uint64_t)n;
    } else if (u && io == &u->s.rio) {
        ssize_t n = tunnel_read(&u->s);
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

/* Bytes of the direction src -> dst not yet written to dst. */
static int dir_pending(const struct keel_sock *src, const struct keel_sock *dst)
{
    return src->in.len || dst->out.len || (src->in.pipe && src->in.pipe->len);
}

/* Moves what can be moved from src to dst. @return 0 or an error (dst write failed). */
static int dir_flush(struct keel_sock *src, struct keel_sock *dst)
{
    if (src->in.len || dst->out.len) {
        ssize_t n = keel_sock_flush(dst, src->in.data + src->in.off, src->in.len);
        if (n < 0)
            return (int)n;
        keel_buf_consume(&src->in, (size_t)n);
    }
    if (src->in.pipe && src->in.pipe->len && !src->in.len && !dst->out.len) {
        ssize_t n = keel_sock_splice_out(src->in.pipe, dst);
        return n < 0 ? (int)n : 0;
    }
    return 0;
}

/* src still wants reading: not at EOF, and room in its buffer or pipe. */
static int dir_can_read(const struct keel_sock *src)
{
    if (src->rd_eof)
        return 0;
    if (src->in.pipe)
        return !src->in.pipe->full && src->in.pipe->len < src->in.pipe->cap;
    return src->in.len < TUNNEL_BUF;
}

static void tunnel_pump(struct keel_conn *c)
{
    struct ev_loop *loop = c->w->loop;
    struct keel_upconn *u = c->up;
    if (!u) {
        keel_conn_close(c, "no upstream");
        return;
    }
    if (dir_flush(&c->s, &u->s) < 0) {
        keel_conn_close(c, "upstream write failed");
        return;
    }
    if (dir_flush(&u->s, &c->s) < 0) {
        keel_conn_close(c, "client write failed");
        return;
    }
    /* Half-close: pass a FIN on once everything before it was delivered. */
    if (c->s.rd_eof && !dir_pending(&c->s, &u->s) && !u->s.wr_shut)
        keel_sock_shutdown(&u->s);
    if (u->s.rd_eof && !dir_pending(&u->s, &c->s) && !c->s.wr_shut)
        keel_sock_shutdown(&c->s);
    if (c->s.wr_shut && u->s.wr_shut) {
        keel_conn_close(c, "both sides closed");
        return;
    }
    keel_sock_want(loop, &c->s, dir_can_read(&c->s), dir_pending(&u->s, &c->s));
    keel_sock_want(loop, &u->s, dir_can_read(&u->s), dir_pending(&c->s, &u->s));
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
    if (keel_conn_can_splice(c)) {
        /* Without a pipe (out of descriptors) a direction simply stays buffered. */
        if (keel_buf_pipe(&c->s.in) == 0 && keel_buf_pipe(&u->s.in) != 0)
            tunnel_unsplice(&c->s);
    }
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
    if (c->lcfg->tls.enabled) {
        /* TLS terminated here: the handshake runs inside the tunnel's first reads, and the
         * relay copies (no splice through a TLS socket). */
        if (keel_tls_server_attach(w, &c->s, listener) != 0) {
            keel_conn_close(c, "TLS setup failed");
            return;
        }
        c->is_tls = 1;
    }
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
