/* SPDX-License-Identifier: MIT */
/* Downstream HTTP/2: a client connection carries an h2 session; each stream is an exchange. */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include "keel/err.h"
#include "keel/h2srv.h"
#include "keel/log.h"
#include "conn.h"
#include "tls.h"

#define H2_READ_MAX (64 * 1024)
#define H2_OUT_MAX (64 * 1024) /* frames queued in the socket buffer before writing */

struct keel_h2conn {
    struct keel_deferred flush; /* first: frames of every stream go out once per iteration */
    struct keel_conn *c;        /* the carrier: the real client connection */
    struct keel_h2srv *srv;
    unsigned going_away : 1;
    unsigned lingering : 1; /* ended: flushing the GOAWAY, then reading and dropping until EOF */
    size_t linger_bytes;    /* dropped while lingering */
};

#define H2_LINGER 2.0 /* seconds a closing connection keeps draining what the client sends */
#define H2_LINGER_MAX (64 * 1024) /* bytes dropped; then keel stops reading until the timer */

static const char PREFACE[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

int keel_h2_preface(const struct keel_conn *c)
{
    size_t k = c->s.in.len < 24 ? c->s.in.len : 24;
    if (k == 0)
        return 0;
    if (memcmp(c->s.in.data + c->s.in.off, PREFACE, k) != 0) {
        /* After ALPN h2 the client has no HTTP/1.1 to fall back on: the session takes the
         * bytes and answers the bad preface with GOAWAY(PROTOCOL_ERROR) (RFC 9113 3.4). */
        return keel_tls_alpn_h2(&c->s) ? 1 : 0;
    }
    return k == 24 ? 1 : -1;
}

static struct keel_conn *sock_conn(struct keel_sock *s)
{
    return (struct keel_conn *)((char *)s - offsetof(struct keel_conn, s));
}

static uint64_t now_ms(struct keel_worker *w)
{
    return (uint64_t)(ev_now(w->loop) * 1000.0);
}

/* Frames are written once per loop iteration, after every stream had its turn: one writev
 * for all of them (the worker runs it before the next poll). */
static void schedule_flush(struct keel_h2conn *h)
{
    keel_defer(h->c->w, &h->flush);
}

/* ---- streams as virtual sockets ---------------------------------------------------------- */

static ssize_t vs_read(struct keel_sock *s, size_t max)
{
    struct keel_h2srv_stream *st = s->vctx;
    if (!st)
        return KEEL_ECLOSED;
    size_t avail = keel_h2srv_stream_readable(st);
    if (avail == 0) {
        if (keel_h2srv_stream_req_ended(st)) {
            s->rd_eof = 1;
            return 0;
        }
        return KEEL_EAGAIN;
    }
    size_t n = max - s->in.len;
    if (n > avail)
        n = avail;
    int rc = keel_buf_reserve(&s->in, n, 0);
    if (rc)
        return rc;
    n = keel_h2srv_stream_pull(st, s->in.data + s->in.off + s->in.len, n);
    s->in.len += n;
    schedule_flush(sock_conn(s)->h2); /* window updates */
    return (ssize_t)n;
}

static ssize_t vs_flush(struct keel_sock *s, const char *extra, size_t extra_len)
{
    struct keel_h2srv_stream *st = s->vctx;
    if (!st)
        return KEEL_ECLOSED;
    struct keel_h2conn *h = sock_conn(s)->h2;
    if (keel_h2srv_stream_resp_ended(st)) {
        /* Anything after the response (never expected) is dropped, not waited on. */
        keel_buf_consume(&s->out, s->out.len);
        return (ssize_t)extra_len;
    }
    if (s->out.len) {
        ssize_t n = keel_h2srv_stream_write(st, s->out.data + s->out.off, s->out.len);
        if (n < 0)
            return KEEL_ECLOSED;
        keel_buf_consume(&s->out, (size_t)n);
        schedule_flush(h);
        if (keel_h2srv_stream_resp_ended(st)) {
            keel_buf_consume(&s->out, s->out.len);
            return (ssize_t)extra_len;
        }
        if (s->out.len)
            return 0;
    }
    if (!extra_len)
        return 0;
    ssize_t n = keel_h2srv_stream_write(st, extra, extra_len);
    if (n < 0)
        return KEEL_ECLOSED;
    schedule_flush(h);
    if (keel_h2srv_stream_resp_ended(st))
        return (ssize_t)extra_len;
    return n;
}

static void vs_want(struct ev_loop *loop, struct keel_sock *s)
{
    struct keel_h2srv_stream *st = s->vctx;
    if (!st) {
        keel_sock_feed(loop, s, EV_READ | EV_WRITE); /* the owner learns it is gone */
        return;
    }
    if (s->want_r && (keel_h2srv_stream_readable(st) || keel_h2srv_stream_req_ended(st)))
        keel_sock_feed(loop, s, EV_READ);
    if (s->want_w && keel_h2srv_stream_room(st))
        keel_sock_feed(loop, s, EV_WRITE);
}

static void vs_shutdown(struct keel_sock *s)
{
    (void)s; /* the response's own framing says where it ends */
}

static void vs_close(struct keel_sock *s)
{
    struct keel_h2srv_stream *st = s->vctx;
    if (!st)
        return;
    keel_h2srv_stream_detach(st);
    schedule_flush(sock_conn(s)->h2);
}

static int vs_connect_result(struct keel_sock *s)
{
    (void)s;
    return 0;
}

static const struct keel_vsock_ops stream_ops = {
    .read = vs_read,
    .flush = vs_flush,
    .want = vs_want,
    .shutdown = vs_shutdown,
    .close = vs_close,
    .connect_result = vs_connect_result,
};

/* ---- session callbacks ------------------------------------------------------------------- */

static void *cb_request(void *ud, struct keel_h2srv_stream *st)
{
    struct keel_h2conn *h = ud;
    struct keel_conn *c = h->c;
    if (h->going_away)
        return NULL;
    struct keel_conn *sc = keel_conn_new(c->w, -1, c->listener, &c->peer);
    if (!sc)
        return NULL;
    memcpy(sc->peer_ip, c->peer_ip, sizeof(sc->peer_ip));
    sc->peer_hash = c->peer_hash;
    sc->s.vops = &stream_ops;
    sc->s.vctx = st;
    sc->h2 = h;
    sc->is_tls = c->is_tls;
    sc->grpc = keel_h2srv_stream_grpc(st) != 0;
    sc->deadline_ms = keel_h2srv_stream_deadline_ms(st);
    keel_http_stream_start(sc);
    return sc;
}

static void cb_readable(void *ud, void *stream_ud)
{
    struct keel_h2conn *h = ud;
    struct keel_conn *sc = stream_ud;
    keel_sock_feed(h->c->w->loop, &sc->s, EV_READ);
}

static void cb_writable(void *ud, void *stream_ud)
{
    struct keel_h2conn *h = ud;
    struct keel_conn *sc = stream_ud;
    keel_sock_feed(h->c->w->loop, &sc->s, EV_WRITE);
}

static void cb_close(void *ud, void *stream_ud, uint32_t error_code)
{
    (void)ud;
    struct keel_conn *sc = stream_ud;
    sc->s.vctx = NULL; /* the stream is gone: nothing to detach */
    if (sc->state != KEEL_CS_CLOSED)
        keel_conn_close(sc, error_code ? "client reset the stream" : "stream closed");
}

static const struct keel_h2srv_cbs srv_cbs = {
    .on_request = cb_request,
    .on_readable = cb_readable,
    .on_writable = cb_writable,
    .on_close = cb_close,
};

/* ---- the carrier connection -------------------------------------------------------------- */

/* Closes the stream conns of a carrier: each close detaches its stream from the session. */
static void close_streams(struct keel_h2conn *h, const char *why)
{
    struct keel_conn *sc;
    while ((sc = keel_h2srv_any_owner(h->srv)) != NULL && sc->state != KEEL_CS_CLOSED)
        keel_conn_close(sc, why);
}

/* Closes every stream of the carrier (they go on the close list) and frees the session. */
void keel_h2_release(struct keel_conn *c)
{
    struct keel_h2conn *h = c->h2;
    if (!h)
        return;
    close_streams(h, "client connection closed");
    /* Only now: closing a stream detaches it from the session. */
    keel_defer_cancel(&h->flush);
    keel_h2srv_free(h->srv);
    free(h);
    c->h2 = NULL;
}

static void h2_update(struct keel_conn *c);

static void h2_end(struct keel_conn *c, const char *why)
{
    struct keel_h2conn *h = c->h2;
    enum keel_h2srv_abuse a = keel_h2srv_abuse(h->srv);
    if (a != KEEL_H2_ABUSE_NONE && a != KEEL_H2_ABUSE_PROTOCOL)
        atomic_fetch_add_explicit(&c->w->rt->lstats[c->listener].h2_abuse, 1, memory_order_relaxed);
    if (a != KEEL_H2_ABUSE_NONE && a != KEEL_H2_ABUSE_PROTOCOL)
        KEEL_WARN_RL("conn=%llu client=%s: HTTP/2 connection closed: %s", (unsigned long long)c->id,
                     c->peer_ip, keel_h2srv_abuse_str(a));
    else if (a == KEEL_H2_ABUSE_PROTOCOL)
        KEEL_INFO_RL("conn=%llu client=%s: HTTP/2 protocol error", (unsigned long long)c->id,
                     c->peer_ip);
    if (h->lingering || c->s.rd_eof) {
        keel_conn_close(c, why);
        return;
    }
    /* Lingering close (as nginx does): closing a socket with unread input sends a reset,
     * and a reset can destroy the GOAWAY before the client reads it. Write what is queued,
     * send FIN, drop whatever still arrives, close at EOF or after H2_LINGER. */
    h->lingering = 1;
    close_streams(h, why);
    keel_defer_cancel(&h->flush);
    if (c->s.out.len == 0)
        keel_sock_shutdown(&c->s);
    keel_sock_want(c->w->loop, &c->s, 1, c->s.out.len > 0);
    ev_timer_stop(c->w->loop, &c->timer);
    ev_timer_set(&c->timer, H2_LINGER, 0.);
    ev_timer_start(c->w->loop, &c->timer);
}

/* A lingering connection: bytes from the client are read and dropped. */
static void linger_read(struct keel_conn *c)
{
    struct keel_h2conn *h = c->h2;
    for (int i = 0; i < 16; i++) {
        ssize_t n = keel_sock_read(&c->s, H2_READ_MAX);
        keel_buf_consume(&c->s.in, c->s.in.len);
        if (n == KEEL_EAGAIN)
            return;
        if (n <= 0) {
            keel_conn_close(c, "HTTP/2 connection ended");
            return;
        }
        if ((h->linger_bytes += (size_t)n) > H2_LINGER_MAX) {
            /* A flood: stop reading (its sends stall on a full window) and let the timer
             * close; the client keeps the whole linger time to read the GOAWAY. */
            keel_sock_want(c->w->loop, &c->s, 0, c->s.out.len > 0);
            return;
        }
    }
}

static void linger_write(struct keel_conn *c)
{
    if (keel_sock_flush(&c->s, NULL, 0) < 0) {
        keel_conn_close(c, "HTTP/2 connection ended");
        return;
    }
    if (c->s.out.len == 0 && !c->s.wr_shut)
        keel_sock_shutdown(&c->s);
    keel_sock_want(c->w->loop, &c->s, c->h2->linger_bytes <= H2_LINGER_MAX, c->s.out.len > 0);
}

/* Moves frames into the socket buffer and writes them. @return 0, or -1 once c is closed. */
static int h2_flush(struct keel_conn *c)
{
    struct keel_h2conn *h = c->h2;
    while (c->s.out.len < H2_OUT_MAX) {
        if (keel_buf_reserve(&c->s.out, 16 * 1024, 0) != 0) {
            keel_conn_close(c, "out of memory");
            return -1;
        }
        size_t room = c->s.out.cap - c->s.out.off - c->s.out.len;
        ssize_t n =
            keel_h2srv_send(h->srv, (uint8_t *)c->s.out.data + c->s.out.off + c->s.out.len, room);
        if (n < 0) {
            h2_end(c, "HTTP/2 session failed");
            return -1;
        }
        if (n == 0)
            break;
        c->s.out.len += (size_t)n;
    }
    if (c->s.out.len) {
        ssize_t w = keel_sock_flush(&c->s, NULL, 0);
        if (w < 0) {
            keel_conn_close(c, "client write failed");
            return -1;
        }
    }
    if (!keel_h2srv_alive(h->srv) && c->s.out.len == 0) {
        h2_end(c, keel_h2srv_abuse(h->srv) != KEEL_H2_ABUSE_NONE ? "HTTP/2 connection ended"
                                                                 : "HTTP/2 session done");
        return -1;
    }
    if (h->going_away && keel_h2srv_streams(h->srv) == 0 && c->s.out.len == 0 &&
        !keel_h2srv_want_write(h->srv)) {
        keel_conn_close(c, "HTTP/2 drained");
        return -1;
    }
    return 0;
}

static void h2_update(struct keel_conn *c)
{
    struct keel_h2conn *h = c->h2;
    int rd = !c->s.rd_eof && c->s.out.len < KEEL_OUT_HIGH_WATER;
    int wr = c->s.out.len > 0 || keel_h2srv_want_write(h->srv);
    keel_sock_want(c->w->loop, &c->s, rd, wr);
    /* Idle (no stream): the keep-alive timeout. A stream whose bytes wait for a window the
     * client never opens: the idle timeout, then the connection ends (zero-window hold). */
    double t = 0;
    if (keel_h2srv_streams(h->srv) == 0)
        t = c->lcfg->keepalive_timeout_ms / 1000.0;
    else if (keel_h2srv_blocked(h->srv))
        t = c->lcfg->idle_timeout_ms / 1000.0;
    if (t > 0) {
        if (!ev_is_active(&c->timer)) {
            ev_timer_set(&c->timer, t, 0.);
            ev_timer_start(c->w->loop, &c->timer);
        }
    } else {
        ev_timer_stop(c->w->loop, &c->timer);
    }
}

static int h2_feed(struct keel_conn *c)
{
    struct keel_h2conn *h = c->h2;
    keel_h2srv_set_now(h->srv, now_ms(c->w));
    if (c->s.in.len == 0)
        return 0;
    ssize_t n = keel_h2srv_recv(h->srv, (const uint8_t *)c->s.in.data + c->s.in.off, c->s.in.len);
    if (n < 0) {
        /* A GOAWAY may be queued: write it, then close. */
        keel_buf_consume(&c->s.in, c->s.in.len);
        if (h2_flush(c) == 0)
            h2_end(c, "HTTP/2 connection error");
        return -1;
    }
    keel_buf_consume(&c->s.in, (size_t)n);
    if (c->s.in.len == 0)
        keel_buf_free(&c->s.in);
    return 0;
}

static void on_h2_read(struct ev_loop *loop, ev_io *io, int revents)
{
    struct keel_conn *c = io->data;
    (void)loop;
    (void)revents;
    if (c->h2->lingering) {
        linger_read(c);
        return;
    }
    for (int i = 0; i < 4; i++) {
        ssize_t n = keel_sock_read(&c->s, H2_READ_MAX);
        if (n == KEEL_EAGAIN)
            break;
        if (n < 0 || n == 0) {
            keel_conn_close(c, n == 0 ? "client closed" : "client read error");
            return;
        }
        if (h2_feed(c) < 0)
            return;
        if ((size_t)n < H2_READ_MAX / 2)
            break;
    }
    if (h2_flush(c) < 0)
        return;
    h2_update(c);
}

static void on_h2_write(struct ev_loop *loop, ev_io *io, int revents)
{
    struct keel_conn *c = io->data;
    (void)loop;
    (void)revents;
    if (!c->h2)
        return;
    if (c->h2->lingering) {
        linger_write(c);
        return;
    }
    if (h2_flush(c) < 0)
        return;
    h2_update(c);
}

static void on_h2_deferred(struct keel_deferred *d)
{
    struct keel_h2conn *h = (struct keel_h2conn *)d;
    struct keel_conn *c = h->c;
    if (h->lingering) {
        linger_write(c);
        return;
    }
    if (h2_flush(c) < 0)
        return;
    h2_update(c);
}

static void on_h2_timer(struct ev_loop *loop, ev_timer *tm, int revents)
{
    struct keel_conn *c = tm->data;
    struct keel_h2conn *h = c->h2;
    (void)loop;
    (void)revents;
    if (h->lingering) {
        keel_conn_close(c, "HTTP/2 connection ended (linger over)");
        return;
    }
    if (keel_h2srv_streams(h->srv) == 0) {
        keel_conn_close(c, "keep-alive timeout");
        return;
    }
    if (keel_h2srv_blocked(h->srv)) {
        KEEL_WARN_RL("conn=%llu client=%s: HTTP/2 flow-control window held at zero, closing",
                     (unsigned long long)c->id, c->peer_ip);
        atomic_fetch_add_explicit(&c->w->rt->lstats[c->listener].h2_abuse, 1, memory_order_relaxed);
        keel_h2srv_goaway(h->srv, 0xb /* ENHANCE_YOUR_CALM */);
        if (h2_flush(c) == 0)
            keel_conn_close(c, "zero-window hold");
        return;
    }
    h2_update(c);
}

int keel_h2_start(struct keel_conn *c)
{
    struct keel_h2conn *h = calloc(1, sizeof(*h));
    if (!h)
        return KEEL_ENOMEM;
    const struct keel_cfg_listener *l = c->lcfg;
    struct keel_h2srv_cfg cfg = {
        .max_concurrent_streams = l->h2.max_concurrent_streams,
        .initial_window_size = l->h2.initial_window_size,
        .max_header_list = l->max_header_size,
        .max_headers = l->max_headers,
        .tls = c->is_tls,
    };
    h->c = c;
    h->flush.run = on_h2_deferred;
    h->srv = keel_h2srv_new(&cfg, &srv_cbs, h);
    if (!h->srv) {
        free(h);
        return KEEL_ENOMEM;
    }
    c->h2 = h;
    c->state = KEEL_CS_H2;
    atomic_fetch_add_explicit(&c->w->rt->lstats[c->listener].h2_conns, 1, memory_order_relaxed);
    ev_timer_stop(c->w->loop, &c->timer);
    ev_set_cb(&c->timer, on_h2_timer);
    /* The watchers keep their fd; only the callbacks change. */
    ev_io_stop(c->w->loop, &c->s.rio);
    ev_io_stop(c->w->loop, &c->s.wio);
    ev_set_cb(&c->s.rio, on_h2_read);
    ev_set_cb(&c->s.wio, on_h2_write);
    c->s.want_r = c->s.want_w = 0;
    if (h2_feed(c) < 0)
        return 0;
    if (h2_flush(c) < 0)
        return 0;
    h2_update(c);
    return 0;
}

void keel_h2_drain(struct keel_conn *c)
{
    struct keel_h2conn *h = c->h2;
    if (!h || h->going_away || h->lingering)
        return;
    h->going_away = 1;
    keel_h2srv_goaway(h->srv, 0);
    schedule_flush(h);
}
