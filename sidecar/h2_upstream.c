/* SPDX-License-Identifier: MIT */
/* HTTP/2 upstream sessions: one multiplexed connection per endpoint per worker, streams as
 * virtual sockets that carry HTTP/1.1 bytes to and from the exchange engine (http_proxy.c). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <nghttp2/nghttp2.h>
#include "keel/err.h"
#include "keel/h2conv.h"
#include "keel/h2srv.h"
#include "keel/log.h"
#include "conn.h"
#include "tls.h"

/*
 * Objects and who frees them:
 * - struct h2up (w->h2up): the worker's sessions, hashed by the endpoint's load record.
 * - struct sess: one TCP connection + nghttp2 session. Freed only from a top-level context (its
 *   own watchers, the close op of a stream, keel_h2up_close_all), never inside an nghttp2
 *   callback or a read/flush op: those mark it dead and feed its write watcher.
 * - struct stream: one request. The owner (an upconn's virtual socket) lets go in the close
 *   op; nghttp2 lets go in on_stream_close. The object is freed when both have (a "zombie"
 *   stays in the session's list until then), or with the session.
 * The owner never runs inside this file's code: everything it must learn is fed to its
 * watchers (keel_sock_feed) and happens in a later callback of the loop.
 */

#define REQ_BUF (64 * 1024)        /* decoded request body bytes buffered per stream */
#define STREAM_WINDOW (256 * 1024) /* our per-stream receive window */
#define OUT_MAX (256 * 1024)       /* frames queued for the socket before nghttp2 is asked again */
#define IN_MAX (64 * 1024)         /* bytes read from the socket per round */
#define RESP_HEAD_MAX (60 * 1024)  /* response head as HTTP/1.1 text (engine takes 64 KiB) */
#define MAX_FIELDS 256
#define BUCKETS 64
#define DEFAULT_MAX_STREAMS 100

enum sess_state { SS_CONNECTING, SS_OPEN, SS_GOAWAY };

struct sess;

struct stream {
    struct sess *sess; /* NULL once the session is gone */
    struct stream *prev, *next;
    struct keel_upconn *u; /* owner; NULL: a zombie nghttp2 may still call back with */
    int32_t id;            /* 0 before the request was submitted */
    int err;               /* KEEL_E* once the stream failed */
    unsigned counted : 1;  /* counted in sess->n_streams */
    unsigned ng_open : 1;  /* submitted and not yet closed by nghttp2 */
    unsigned submitted : 1;
    unsigned headers_sent : 1;
    unsigned req_end : 1; /* the whole request body is buffered */
    unsigned deferred : 1;
    unsigned is_head : 1;
    unsigned head_done : 1; /* the final response head is complete */
    unsigned in_trailers : 1;
    unsigned trailers_done : 1;
    unsigned resp_end : 1; /* END_STREAM received */
    unsigned end_given : 1;
    unsigned chunked : 1;
    unsigned bad : 1; /* the server sent something HTTP/1.1 cannot carry */
    enum keel_http1_body req_mode;
    uint64_t req_left;
    struct keel_h2conv_unchunk dc;
    struct keel_buf body; /* request payload waiting for nghttp2 */
    struct keel_h2conv_head head, trail;
    size_t head_off;       /* head bytes already given to the owner */
    struct keel_buf rdata; /* response payload not yet given to the owner (unconsumed window) */
};

struct h2up {
    struct sess *b[BUCKETS];
    uint32_t n_sess;
    int draining;
};

struct sess {
    struct keel_deferred send; /* first: streams' frames go out once per loop iteration */
    struct h2up *hu;
    struct keel_worker *w;
    struct sess *next; /* bucket chain */
    struct keel_ep_load *load;
    const struct keel_cfg_cluster *ccfg;
    struct keel_cluster_stats *cstats;
    nghttp2_session *ng;
    struct keel_sock sock;
    ev_timer timer;
    enum sess_state state;
    struct stream *streams, *tail; /* owners' streams and zombies, oldest first */
    uint32_t n_streams;            /* streams with an owner that nghttp2 has not closed */
    uint32_t n_active; /* submitted streams nghttp2 has not closed (the server counts them) */
    uint32_t n_unsent; /* linked streams not yet submitted: admit() has nothing to do at 0 */
    struct sockaddr_storage sa;
    socklen_t salen;
    char name[64];
    ev_tstamp created, idle_since, last_read, ping_sent;
    unsigned dead : 1;
    unsigned draining : 1;
    unsigned got_settings : 1; /* the server's SETTINGS arrived: its stream limit is known */
    unsigned alpn_ok : 1;      /* TLS: the handshake selected h2 */
    int dead_err;
};

static const struct keel_vsock_ops vs_ops;

/* ---- small helpers ------------------------------------------------------------------------ */

static struct ev_loop *sloop(const struct sess *s)
{
    return s->w->loop;
}

static void feed_owner(struct stream *st, int ev)
{
    if (st->u && st->sess)
        keel_sock_feed(sloop(st->sess), &st->u->s, ev);
    else if (st->u)
        keel_sock_feed(st->u->w->loop, &st->u->s, ev);
}

static uint32_t sess_limit(const struct sess *s)
{
    uint32_t lim = s->ccfg->h2_max_streams ? s->ccfg->h2_max_streams : DEFAULT_MAX_STREAMS;
    if (!s->got_settings)
        return lim; /* optimistic: a burst shares the new connection, admit() sorts it out */
    uint32_t peer =
        nghttp2_session_get_remote_settings(s->ng, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
    return peer < lim ? peer : lim;
}

static void uncount(struct stream *st)
{
    struct sess *s = st->sess;
    if (!st->counted || !s)
        return;
    st->counted = 0;
    if (--s->n_streams == 0)
        s->idle_since = ev_now(sloop(s));
}

static void stream_unlink(struct stream *st)
{
    struct sess *s = st->sess;
    if (!s)
        return;
    uncount(st);
    if (!st->submitted)
        s->n_unsent--;
    if (st->prev)
        st->prev->next = st->next;
    else
        s->streams = st->next;
    if (st->next)
        st->next->prev = st->prev;
    else
        s->tail = st->prev;
    st->prev = st->next = NULL;
    st->sess = NULL;
}

static void stream_link(struct sess *s, struct stream *st)
{
    st->sess = s;
    st->next = NULL;
    st->prev = s->tail;
    if (s->tail)
        s->tail->next = st;
    else
        s->streams = st;
    s->tail = st;
    if (!st->submitted)
        s->n_unsent++;
    if (st->u) {
        st->counted = 1;
        s->n_streams++;
    }
}

/* nghttp2 is done with the stream: the server's slot is free. */
static void ng_done(struct stream *st)
{
    if (!st->ng_open)
        return;
    st->ng_open = 0;
    if (st->sess)
        st->sess->n_active--;
}

static void stream_free(struct stream *st)
{
    stream_unlink(st);
    keel_h2conv_unchunk_free(&st->dc);
    keel_h2conv_head_free(&st->head);
    keel_h2conv_head_free(&st->trail);
    keel_buf_free(&st->body);
    keel_buf_free(&st->rdata);
    free(st);
}

/* Marks the session for teardown by its write watcher (safe inside callbacks and ops). */
static void sess_kill(struct sess *s, int err)
{
    if (s->dead)
        return;
    s->dead = 1;
    s->dead_err = err;
    ev_feed_event(sloop(s), &s->sock.wio, EV_WRITE);
}

/* Moves nghttp2's frames into the socket's output and writes what the socket takes. */
static void sess_send(struct sess *s)
{
    if (s->dead || s->state == SS_CONNECTING)
        return;
    for (;;) {
        while (s->sock.out.len < OUT_MAX) {
            const uint8_t *p;
            ssize_t n = nghttp2_session_mem_send(s->ng, &p);
            if (n < 0) {
                KEEL_WARN_RL("h2 upstream %s: %s", s->name, nghttp2_strerror((int)n));
                sess_kill(s, KEEL_ECLOSED);
                return;
            }
            if (n == 0)
                break;
            if (keel_buf_append(&s->sock.out, p, (size_t)n) != 0) {
                sess_kill(s, KEEL_ENOMEM);
                return;
            }
        }
        if (s->sock.out.len == 0)
            break;
        ssize_t rc = keel_sock_flush(&s->sock, NULL, 0);
        if (rc < 0) {
            KEEL_INFO_RL("h2 upstream %s: write failed: %s", s->name, keel_strerror((int)rc));
            sess_kill(s, KEEL_ECLOSED);
            return;
        }
        if (s->sock.out.len > 0 || !nghttp2_session_want_write(s->ng))
            break;
    }
    /* Through keel_sock_want: a TLS socket may need the other event meanwhile. */
    keel_sock_want(sloop(s), &s->sock, 1, s->sock.out.len > 0);
}

/* Frames queued by streams during this loop iteration go out together, in one write, before
 * the next poll (the worker runs the deferred send). */
static void sess_kick(struct sess *s)
{
    if (s->dead || s->state == SS_CONNECTING)
        return;
    keel_defer(s->w, &s->send);
}

/* The error a stream gets when its session goes away. */
static int lost_err(const struct stream *st, int err)
{
    if (st->err)
        return st->err;
    if (!st->headers_sent)
        return err == KEEL_ECLOSED ? KEEL_EREFUSED : err; /* never reached the server */
    return KEEL_ECLOSED;
}

static void hu_unlink(struct sess *s)
{
    struct h2up *hu = s->hu;
    struct sess **pp = &hu->b[s->load->id % BUCKETS];
    while (*pp && *pp != s)
        pp = &(*pp)->next;
    if (*pp)
        *pp = s->next;
    hu->n_sess--;
}

/* Tears the session down: every owner learns its stream's fate, zombies are freed. */
static void sess_free(struct sess *s, int err)
{
    struct ev_loop *loop = sloop(s);
    keel_defer_cancel(&s->send);
    int connecting = s->state == SS_CONNECTING;
    while (s->streams) {
        struct stream *st = s->streams;
        if (!st->u) {
            stream_free(st);
            continue;
        }
        if (!st->resp_end)
            st->err = connecting ? (st->err ? st->err : err) : lost_err(st, err);
        st->ng_open = 0;
        stream_unlink(st);
        feed_owner(st, EV_READ | EV_WRITE);
    }
    ev_timer_stop(loop, &s->timer);
    ev_clear_pending(loop, &s->timer);
    ev_clear_pending(loop, &s->sock.rio);
    ev_clear_pending(loop, &s->sock.wio);
    keel_sock_close(loop, &s->sock);
    if (s->ng)
        nghttp2_session_del(s->ng);
    if (s->cstats)
        atomic_fetch_sub_explicit(&s->cstats->open_conns, 1, memory_order_relaxed);
    hu_unlink(s);
    keel_ep_load_unref(s->load);
    free(s);
}

/* Best effort: tell the server we are going, then tear down. */
static void sess_close(struct sess *s, uint32_t code, int err)
{
    if (!s->dead && s->state != SS_CONNECTING) {
        nghttp2_session_terminate_session(s->ng, code);
        sess_send(s);
    }
    sess_free(s, err);
}

static void sess_arm(struct sess *s)
{
    struct ev_loop *loop = sloop(s);
    ev_tstamp now = ev_now(loop), at = 0;
    const struct keel_cfg_cluster *cc = s->ccfg;
    if (s->state == SS_CONNECTING)
        at = s->created + cc->connect_timeout_ms / 1000.0;
    else {
        if (s->n_streams == 0 && cc->idle_timeout_ms)
            at = s->idle_since + cc->idle_timeout_ms / 1000.0;
        if (cc->h2_keepalive_ms) {
            ev_tstamp k = s->ping_sent ? s->ping_sent + cc->h2_keepalive_timeout_ms / 1000.0
                                       : s->last_read + cc->h2_keepalive_ms / 1000.0;
            if (at == 0 || k < at)
                at = k;
        }
    }
    ev_timer_stop(loop, &s->timer);
    if (at == 0)
        return;
    ev_tstamp d = at - now;
    ev_timer_set(&s->timer, d > 0.001 ? d : 0.001, 0.);
    ev_timer_start(loop, &s->timer);
}

/* End of every top-level handler: tear down, close a finished session, or re-arm. @return 1
 * when the session is gone. */
static int sess_after(struct sess *s)
{
    if (s->dead) {
        sess_free(s, s->dead_err);
        return 1;
    }
    if (s->state != SS_CONNECTING && !nghttp2_session_want_read(s->ng) &&
        !nghttp2_session_want_write(s->ng)) {
        sess_free(s, KEEL_ECLOSED);
        return 1;
    }
    if ((s->state == SS_GOAWAY || s->draining) && s->n_streams == 0 && s->sock.out.len == 0) {
        sess_close(s, NGHTTP2_NO_ERROR, KEEL_ECLOSED);
        return 1;
    }
    sess_arm(s);
    return 0;
}

/* ---- admission: which stream may start, which moves to another connection ---------------- */

static struct sess *sess_new(struct keel_worker *w, struct h2up *hu, struct keel_ep_load *load,
                             const struct sockaddr_storage *sa, socklen_t salen, const char *name,
                             const struct keel_cfg_cluster *cc, struct keel_cluster_stats *cstats,
                             int *err);

static int can_submit(const struct stream *st)
{
    const struct sess *s = st->sess;
    return s && !s->dead && s->state == SS_OPEN && s->got_settings && s->n_active < sess_limit(s);
}

/* A session of the endpoint that takes new streams, other than `except`. */
/* An open session with room to the endpoint at this address, made for this configuration: an
 * instance re-registered at another port, or a cluster whose protocol changed (keel.protocol),
 * gets new sessions; the old ones end when idle. */
static struct sess *find_sess(struct h2up *hu, const struct keel_ep_load *load,
                              const struct sockaddr_storage *sa, socklen_t salen,
                              const struct keel_cfg_cluster *ccfg, const struct sess *except)
{
    for (struct sess *s = hu->b[load->id % BUCKETS]; s; s = s->next)
        if (s != except && s->load == load && !s->dead && !s->draining && s->state != SS_GOAWAY &&
            s->n_streams < sess_limit(s) && s->ccfg == ccfg && s->salen == salen &&
            memcmp(&s->sa, sa, salen) == 0)
            return s;
    return NULL;
}

/*
 * Streams wait here until the server's SETTINGS say how many it takes (HEADERS beyond its
 * limit would be refused). Then the oldest waiting ones are started as slots are free; the
 * ones beyond the limit move to another connection to the same endpoint (a new one if every
 * open one is full). After a GOAWAY every stream not yet sent moves. A stream that cannot move
 * (circuit breaker) waits for a slot, or is refused after a GOAWAY.
 */
static void admit(struct sess *s)
{
    if (s->dead || s->state == SS_CONNECTING || (!s->got_settings && s->state == SS_OPEN) ||
        s->n_unsent == 0)
        return; /* (called on every stream close: no scan when every stream was sent) */
    uint32_t lim = sess_limit(s);
    uint32_t room = s->state == SS_OPEN && lim > s->n_active ? lim - s->n_active : 0;
    uint32_t keep = room;
    struct stream *next;
    for (struct stream *st = s->streams; st; st = next) {
        next = st->next;
        if (!st->u || st->submitted || st->err)
            continue;
        if (keep > 0) {
            keep--;
            feed_owner(st, EV_WRITE);
            continue;
        }
        int err = 0;
        struct sess *t = find_sess(s->hu, s->load, &s->sa, s->salen, s->ccfg, s);
        if (!t && !s->hu->draining)
            t = sess_new(s->w, s->hu, s->load, &s->sa, s->salen, s->name, s->ccfg, s->cstats, &err);
        if (!t) {
            if (s->state == SS_GOAWAY) {
                st->err = KEEL_EREFUSED;
                feed_owner(st, EV_READ | EV_WRITE);
            }
            continue;
        }
        stream_unlink(st);
        stream_link(t, st);
        if (can_submit(st))
            feed_owner(st, EV_WRITE);
    }
}

/* ---- nghttp2 callbacks --------------------------------------------------------------------- */

static struct stream *ng_stream(nghttp2_session *ng, int32_t id)
{
    return nghttp2_session_get_stream_user_data(ng, id);
}

static int on_begin_headers(nghttp2_session *ng, const nghttp2_frame *frame, void *ud)
{
    struct stream *st = ng_stream(ng, frame->hd.stream_id);
    if (!st || !st->u || frame->hd.type != NGHTTP2_HEADERS)
        return 0;
    if (st->head_done) {
        st->in_trailers = 1;
        keel_h2conv_head_init(&st->trail, KEEL_H2CONV_TRAILERS, KEEL_H2CONV_MAX_TRAILERS);
    }
    return 0;
}

static int on_header(nghttp2_session *ng, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags, void *ud)
{
    struct sess *s = ud;
    struct stream *st = ng_stream(ng, frame->hd.stream_id);
    if (!st || !st->u || frame->hd.type != NGHTTP2_HEADERS)
        return 0;
    int rc = keel_h2conv_head_add(st->in_trailers ? &st->trail : &st->head, name, namelen, value,
                                  valuelen);
    if (rc) {
        KEEL_WARN_RL("h2 upstream %s: stream %d: unusable response field (%s)", s->name,
                     frame->hd.stream_id, keel_strerror(rc));
        st->bad = 1;
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    return 0;
}

static void on_goaway(struct sess *s, const nghttp2_goaway *ga)
{
    if (s->state != SS_GOAWAY || ga->error_code != NGHTTP2_NO_ERROR)
        KEEL_INFO_RL("h2 upstream %s: GOAWAY last_stream_id=%d error=%s", s->name,
                     ga->last_stream_id, nghttp2_http2_strerror(ga->error_code));
    s->state = SS_GOAWAY;
    for (struct stream *st = s->streams; st; st = st->next) {
        if (!st->u || st->head_done || st->err)
            continue;
        if (st->submitted && st->id > ga->last_stream_id) {
            /* Not processed (RFC 9113 6.8): safe to send elsewhere. */
            st->err = KEEL_EREFUSED;
            feed_owner(st, EV_READ | EV_WRITE);
        }
    }
    admit(s); /* streams not yet sent move to another connection */
}

static int on_frame_recv(nghttp2_session *ng, const nghttp2_frame *frame, void *ud)
{
    struct sess *s = ud;
    switch (frame->hd.type) {
    case NGHTTP2_GOAWAY:
        on_goaway(s, &frame->goaway);
        return 0;
    case NGHTTP2_PING:
        if (frame->hd.flags & NGHTTP2_FLAG_ACK)
            s->ping_sent = 0;
        return 0;
    case NGHTTP2_SETTINGS:
        if (!(frame->hd.flags & NGHTTP2_FLAG_ACK)) {
            s->got_settings = 1;
            admit(s);
        }
        return 0;
    case NGHTTP2_HEADERS:
    case NGHTTP2_DATA:
        break;
    default:
        return 0;
    }
    struct stream *st = ng_stream(ng, frame->hd.stream_id);
    if (!st || !st->u)
        return 0;
    int end = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
    if (frame->hd.type == NGHTTP2_HEADERS) {
        if (st->in_trailers) {
            if (keel_h2conv_head_finish(&st->trail, 0) == 0)
                st->trailers_done = 1;
        } else if (!st->head_done) {
            if (st->head.status < 200) {
                keel_h2conv_head_reset(&st->head); /* 1xx: the engine sees only the final */
                return 0;
            }
            unsigned fl = (end ? KEEL_H2CONV_F_END_STREAM : 0) |
                          (st->is_head ? KEEL_H2CONV_F_HEAD : 0) |
                          (s->ccfg->protocol == KEEL_UP_GRPC ? KEEL_H2CONV_F_CHUNKED : 0);
            int rc = keel_h2conv_head_finish(&st->head, fl);
            if (rc) {
                st->bad = 1;
                return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
            }
            st->head_done = 1;
            st->chunked = st->head.body == KEEL_H1_BODY_CHUNKED;
        }
    }
    if (end)
        st->resp_end = 1;
    feed_owner(st, EV_READ);
    return 0;
}

static int on_data_chunk(nghttp2_session *ng, uint8_t flags, int32_t id, const uint8_t *data,
                         size_t len, void *ud)
{
    struct stream *st = ng_stream(ng, id);
    if (!st || !st->u || !st->head_done || st->head.body == KEEL_H1_BODY_NONE) {
        nghttp2_session_consume(ng, id, len); /* nobody will read it */
        return 0;
    }
    if (st->rdata.len + len > 2 * STREAM_WINDOW) /* nghttp2 enforces the window; belt and braces */
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    if (keel_buf_append(&st->rdata, data, len) != 0)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    feed_owner(st, EV_READ);
    return 0;
}

static int on_stream_close(nghttp2_session *ng, int32_t id, uint32_t code, void *ud)
{
    struct sess *s = ud;
    struct stream *st = ng_stream(ng, id);
    if (!st)
        return 0;
    ng_done(st);
    admit(s); /* a slot is free */
    if (!st->u) {
        stream_free(st);
        return 0;
    }
    uncount(st);
    if (!st->resp_end && !st->err) {
        if (code == NGHTTP2_REFUSED_STREAM && !st->head_done)
            st->err = KEEL_EREFUSED;
        else
            st->err = st->bad ? KEEL_EBADMSG : KEEL_ECLOSED;
        if (code != NGHTTP2_REFUSED_STREAM && code != NGHTTP2_NO_ERROR)
            KEEL_INFO_RL("h2 upstream %s: stream %d reset: %s", s->name, id,
                         nghttp2_http2_strerror(code));
    }
    feed_owner(st, EV_READ | EV_WRITE);
    return 0;
}

static int on_frame_send(nghttp2_session *ng, const nghttp2_frame *frame, void *ud)
{
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    struct stream *st = ng_stream(ng, frame->hd.stream_id);
    if (st)
        st->headers_sent = 1;
    return 0;
}

static int on_frame_not_send(nghttp2_session *ng, const nghttp2_frame *frame, int lib_error,
                             void *ud)
{
    struct sess *s = ud;
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    /* A stream nghttp2 never opened gets no on_stream_close: find it ourselves (rare). */
    struct stream *st = s->streams;
    while (st && st->id != frame->hd.stream_id)
        st = st->next;
    if (!st)
        return 0;
    int opened = nghttp2_session_find_stream(ng, frame->hd.stream_id) != NULL;
    if (!opened)
        ng_done(st);
    if (!st->u) {
        if (!opened)
            stream_free(st);
        return 0;
    }
    if (!st->err) {
        st->err = KEEL_EREFUSED; /* never sent: safe anywhere */
        uncount(st);
        feed_owner(st, EV_READ | EV_WRITE);
    }
    return 0;
}

static int on_invalid_frame(nghttp2_session *ng, const nghttp2_frame *frame, int lib_error,
                            void *ud)
{
    struct sess *s = ud;
    KEEL_WARN_RL("h2 upstream %s: invalid frame type %u on stream %d: %s", s->name, frame->hd.type,
                 frame->hd.stream_id, nghttp2_strerror(lib_error));
    return 0;
}

/* Request payload for DATA frames. */
static ssize_t on_data_read(nghttp2_session *ng, int32_t id, uint8_t *buf, size_t length,
                            uint32_t *flags, nghttp2_data_source *src, void *ud)
{
    struct stream *st = ng_stream(ng, id);
    if (!st || !st->u)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    size_t n = st->body.len < length ? st->body.len : length;
    if (n) {
        memcpy(buf, st->body.data + st->body.off, n);
        keel_buf_consume(&st->body, n);
        if (!st->req_end)
            feed_owner(st, EV_WRITE); /* room for more of the owner's body */
    }
    if (st->body.len == 0 && st->req_end) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        if (st->dc.trailers_len) {
            nghttp2_nv nv[64];
            size_t nn = 64;
            char *scratch = malloc(st->dc.trailers_len);
            if (scratch &&
                keel_h2conv_trailers(st->dc.trailers, st->dc.trailers_len, nv, &nn, scratch,
                                     st->dc.trailers_len) == 0 &&
                nn > 0 && nghttp2_submit_trailer(ng, id, nv, nn) == 0)
                *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
            free(scratch);
        }
        return (ssize_t)n;
    }
    if (n == 0) {
        st->deferred = 1;
        return NGHTTP2_ERR_DEFERRED;
    }
    return (ssize_t)n;
}

/* ---- the virtual socket of one stream ------------------------------------------------------ */

static int stream_readable(const struct stream *st)
{
    if (st->err || (st->resp_end && !st->end_given))
        return 1;
    return st->head_done && (st->head_off < st->head.len || st->rdata.len > 0);
}

static int stream_writable(const struct stream *st)
{
    if (st->err || !st->sess)
        return 1;
    if (st->u->state == KEEL_UP_CONNECTING)
        return st->sess->state != SS_CONNECTING;
    if (!st->submitted)
        return can_submit(st);
    return (!st->req_end && st->body.len < REQ_BUF) || !st->ng_open;
}

static void vs_want(struct ev_loop *loop, struct keel_sock *s)
{
    struct stream *st = s->vctx;
    int ev = 0;
    if (s->want_r && stream_readable(st))
        ev |= EV_READ;
    if (s->want_w && stream_writable(st))
        ev |= EV_WRITE;
    if (ev)
        keel_sock_feed(loop, s, ev);
}

static ssize_t vs_read(struct keel_sock *s, size_t max)
{
    struct stream *st = s->vctx;
    struct sess *ss = st->sess;
    size_t room = max > s->in.len ? max - s->in.len : 0, moved = 0, data = 0;
    int rc = 0;
    if (st->head_done && st->head_off < st->head.len && room) {
        size_t n = st->head.len - st->head_off;
        if (n > room)
            n = room;
        rc |= keel_buf_append(&s->in, st->head.buf + st->head_off, n);
        st->head_off += n;
        room -= n;
        moved += n;
    }
    if (st->head_done && st->head_off == st->head.len) {
        if (st->chunked) {
            /* The chunk framing may pass `max` by a few bytes: with less room than a chunk
             * header the owner would be offered bytes it can never take (a feed loop). */
            while (st->rdata.len && room > 0) {
                size_t n = st->rdata.len, fit = room > 24 ? room - 24 : room;
                if (n + 24 > room && n > fit)
                    n = fit;
                char hdr[24];
                size_t hl = 0;
                for (int sh = (int)(sizeof(n) * 8) - 4; sh >= 0; sh -= 4) /* "%zx\r\n" */
                    if ((n >> sh) || hl || sh == 0)
                        hdr[hl++] = "0123456789abcdef"[(n >> sh) & 15];
                hdr[hl++] = '\r';
                hdr[hl++] = '\n';
                rc |= keel_buf_append(&s->in, hdr, hl);
                rc |= keel_buf_append(&s->in, st->rdata.data + st->rdata.off, n);
                rc |= keel_buf_append(&s->in, "\r\n", 2);
                keel_buf_consume(&st->rdata, n);
                room = room > n + hl + 2 ? room - (n + hl + 2) : 0;
                moved += n + hl + 2;
                data += n;
            }
        } else if (st->rdata.len && room) {
            size_t n = st->rdata.len < room ? st->rdata.len : room;
            rc |= keel_buf_append(&s->in, st->rdata.data + st->rdata.off, n);
            keel_buf_consume(&st->rdata, n);
            moved += n;
            data += n;
        }
        if (st->resp_end && st->rdata.len == 0 && !st->end_given && !st->err) {
            if (!st->chunked) {
                st->end_given = 1;
            } else {
                const char *tr = st->trailers_done ? st->trail.buf : "\r\n";
                size_t tl = st->trailers_done ? st->trail.len : 2;
                /* Always (trailers are bounded): waiting for room could wait forever. */
                rc |= keel_buf_append(&s->in, "0\r\n", 3);
                rc |= keel_buf_append(&s->in, tr, tl);
                moved += tl + 3;
                st->end_given = 1;
            }
        }
    }
    if (rc)
        return KEEL_ENOMEM;
    if (data && ss && !ss->dead) {
        /* The window reopens only as far as the owner took: a slow client stalls this stream
         * at STREAM_WINDOW, not keel's memory. */
        nghttp2_session_consume(ss->ng, st->id, data);
        sess_kick(ss);
    }
    if (moved)
        return (ssize_t)moved;
    if (st->err)
        return st->err;
    if (st->end_given) {
        s->rd_eof = 1;
        return 0;
    }
    return KEEL_EAGAIN;
}

/* Parses the request head the engine queued in s->out and submits HEADERS. */
static int submit_head(struct stream *st, struct keel_sock *s)
{
    struct sess *ss = st->sess;
    struct keel_http1_header hdrs[MAX_FIELDS];
    struct keel_http1_request req;
    memset(&req, 0, sizeof(req));
    req.headers = hdrs;
    req.num_headers = MAX_FIELDS;
    struct keel_http1_limits lim = {65536, 65536, MAX_FIELDS};
    ssize_t hl = keel_http1_parse_request(s->out.data + s->out.off, s->out.len, &req, &lim, NULL);
    if (hl < 0) /* the engine queues whole heads: EAGAIN is as wrong as garbage */
        return KEEL_EBADMSG;
    nghttp2_nv nv[MAX_FIELDS + 8];
    size_t nn = MAX_FIELDS + 8;
    /* Field values are copied next to each other: the usual small head fits on the stack. */
    char small[4096];
    char *scratch = (size_t)hl + 64 <= sizeof(small) ? small : malloc((size_t)hl + 64);
    if (!scratch)
        return KEEL_ENOMEM;
    unsigned fl = (ss->ccfg->protocol == KEEL_UP_GRPC ? KEEL_H2CONV_TE_TRAILERS : 0) |
                  (ss->ccfg->tls.enabled ? KEEL_H2CONV_HTTPS : 0);
    int rc = keel_h2conv_request(&req, fl, nv, &nn, scratch, (size_t)hl + 64);
    if (rc) {
        if (scratch != small)
            free(scratch);
        return rc;
    }
    st->req_mode = keel_http1_request_body(&req);
    st->req_left = req.content_length > 0 ? (uint64_t)req.content_length : 0;
    st->is_head = req.method_len == 4 && memcmp(req.method, "HEAD", 4) == 0;
    int has_body = st->req_mode == KEEL_H1_BODY_CHUNKED ||
                   (st->req_mode == KEEL_H1_BODY_LENGTH && st->req_left > 0);
    nghttp2_data_provider prd;
    prd.source.ptr = NULL;
    prd.read_callback = on_data_read;
    int32_t id = nghttp2_submit_request(ss->ng, NULL, nv, nn, has_body ? &prd : NULL, st);
    if (scratch != small)
        free(scratch);
    if (id < 0) {
        if (id == NGHTTP2_ERR_STREAM_ID_NOT_AVAILABLE) {
            ss->state = SS_GOAWAY; /* out of stream ids: a new connection takes over */
            return KEEL_EREFUSED;
        }
        return id == NGHTTP2_ERR_NOMEM ? KEEL_ENOMEM : KEEL_ECLOSED;
    }
    st->id = id;
    st->submitted = 1;
    ss->n_unsent--;
    st->ng_open = 1;
    ss->n_active++;
    st->req_end = !has_body;
    keel_buf_consume(&s->out, (size_t)hl);
    return 0;
}

/* Takes request payload out of the engine's HTTP/1.1 body bytes. @return bytes of extra used
 * or a KEEL_E* error. */
static ssize_t take_body(struct stream *st, const char *extra, size_t len)
{
    if (st->req_end || len == 0)
        return 0;
    size_t room = REQ_BUF > st->body.len ? REQ_BUF - st->body.len : 0;
    if (st->req_mode == KEEL_H1_BODY_LENGTH) {
        size_t n = len < room ? len : room;
        if (n > st->req_left)
            n = (size_t)st->req_left;
        if (keel_buf_append(&st->body, extra, n) != 0)
            return KEEL_ENOMEM;
        st->req_left -= n;
        st->req_end = st->req_left == 0;
        return (ssize_t)n;
    }
    size_t off = 0;
    while (off < len) {
        size_t cons = 0, doff = 0, dlen = 0;
        int rc =
            keel_h2conv_unchunk_feed(&st->dc, extra + off, len - off, room, &cons, &doff, &dlen);
        if (rc < 0)
            return rc;
        if (rc == KEEL_H2CONV_DATA) {
            if (keel_buf_append(&st->body, extra + off + doff, dlen) != 0)
                return KEEL_ENOMEM;
            room -= dlen;
            off += cons;
            continue;
        }
        off += cons;
        if (rc == KEEL_H2CONV_DONE)
            st->req_end = 1;
        break;
    }
    return (ssize_t)off;
}

static ssize_t vs_flush(struct keel_sock *s, const char *extra, size_t extra_len)
{
    struct stream *st = s->vctx;
    struct sess *ss = st->sess;
    if (st->err)
        return st->err;
    if (!st->submitted) {
        if (!ss || ss->dead)
            return KEEL_EREFUSED;
        if (!can_submit(st))
            return 0; /* admit() feeds EV_WRITE when a slot is free */
        int rc = submit_head(st, s);
        if (rc) {
            st->err = rc;
            return rc;
        }
        if (!st->submitted)
            return 0;
    }
    if (!st->ng_open || !ss) {
        /* The server is done with the stream (answered early): the rest is not wanted. */
        s->out.len = 0;
        return (ssize_t)extra_len;
    }
    ssize_t took = take_body(st, extra, extra_len);
    if (took < 0) {
        st->err = took == KEEL_ENOMEM ? KEEL_ENOMEM : KEEL_EBADMSG;
        nghttp2_submit_rst_stream(ss->ng, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_CANCEL);
        sess_send(ss);
        return st->err;
    }
    if (st->deferred && (st->body.len > 0 || st->req_end)) {
        st->deferred = 0;
        nghttp2_session_resume_data(ss->ng, st->id);
    }
    sess_kick(ss);
    return took;
}

static void vs_shutdown(struct keel_sock *s)
{
    (void)s; /* the request's own framing says where it ends */
}

static int vs_connect_result(struct keel_sock *s)
{
    struct stream *st = s->vctx;
    if (st->err)
        return st->err;
    if (!st->sess)
        return KEEL_ECLOSED;
    return st->sess->state == SS_CONNECTING ? KEEL_ETIMEDOUT : 0;
}

static void vs_close(struct keel_sock *s)
{
    struct stream *st = s->vctx;
    struct sess *ss = st->sess;
    st->u = NULL;
    if (!ss) {
        stream_free(st);
        return;
    }
    uncount(st);
    if (st->rdata.len && !ss->dead)
        nghttp2_session_consume(ss->ng, st->id, st->rdata.len); /* give the window back */
    keel_buf_free(&st->rdata);
    keel_buf_free(&st->body);
    if (st->ng_open && !ss->dead) {
        nghttp2_submit_rst_stream(ss->ng, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_CANCEL);
        sess_send(ss); /* a zombie until nghttp2 closes it */
    } else {
        stream_free(st);
    }
    sess_after(ss);
}

static const struct keel_vsock_ops vs_ops = {
    .read = vs_read,
    .flush = vs_flush,
    .want = vs_want,
    .shutdown = vs_shutdown,
    .close = vs_close,
    .connect_result = vs_connect_result,
};

/* ---- session I/O ------------------------------------------------------------------------- */

static void on_sess_read(struct ev_loop *loop, ev_io *io, int revents)
{
    struct sess *s = io->data;
    int round = 0;
    for (; round < 16 && !s->dead; round++) {
        ssize_t n = keel_sock_read(&s->sock, IN_MAX);
        if (n == KEEL_EAGAIN)
            break;
        if (n <= 0) {
            if (s->n_streams)
                KEEL_INFO_RL("h2 upstream %s: connection %s with %u streams open", s->name,
                             n == 0 ? "closed by the server" : keel_strerror((int)n), s->n_streams);
            sess_kill(s, KEEL_ECLOSED);
            break;
        }
        s->last_read = ev_now(loop);
        if (s->sock.ssl && !s->alpn_ok) {
            if (!keel_tls_alpn_h2(&s->sock)) {
                KEEL_WARN_RL("h2 upstream %s: TLS server did not select ALPN h2", s->name);
                sess_kill(s, KEEL_EIO);
                break;
            }
            s->alpn_ok = 1;
        }
        ssize_t rv = nghttp2_session_mem_recv(
            s->ng, (const uint8_t *)s->sock.in.data + s->sock.in.off, s->sock.in.len);
        keel_buf_consume(&s->sock.in, s->sock.in.len);
        if (rv < 0) {
            KEEL_WARN_RL("h2 upstream %s: protocol error: %s", s->name, nghttp2_strerror((int)rv));
            sess_send(s); /* nghttp2 may have queued a GOAWAY */
            sess_kill(s, KEEL_ECLOSED);
            break;
        }
    }
    if (round == 16 && !s->dead)
        ev_feed_event(loop, &s->sock.rio, EV_READ); /* more may wait (TLS buffers) */
    sess_send(s);
    sess_after(s);
}

static void connected(struct sess *s)
{
    int err = keel_sock_connect_result(&s->sock);
    if (err) {
        KEEL_INFO_RL("h2 upstream %s: connect failed: %s", s->name, keel_strerror(err));
        sess_free(s, err);
        return;
    }
    s->state = SS_OPEN;
    s->last_read = s->idle_since = ev_now(sloop(s));
    keel_sock_want(sloop(s), &s->sock, 1, 0);
    for (struct stream *st = s->streams; st; st = st->next)
        feed_owner(st, EV_WRITE);
    sess_send(s);
    sess_after(s);
}

static void on_sess_deferred(struct keel_deferred *d)
{
    struct sess *s = (struct sess *)d;
    if (s->dead) {
        sess_free(s, s->dead_err);
        return;
    }
    sess_send(s);
    sess_after(s);
}

static void on_sess_write(struct ev_loop *loop, ev_io *io, int revents)
{
    struct sess *s = io->data;
    if (s->dead) {
        sess_free(s, s->dead_err);
        return;
    }
    if (s->state == SS_CONNECTING) {
        connected(s);
        return;
    }
    sess_send(s);
    sess_after(s);
}

static void on_sess_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct sess *s = t->data;
    ev_tstamp now = ev_now(loop);
    const struct keel_cfg_cluster *cc = s->ccfg;
    if (s->state == SS_CONNECTING) {
        if (now >= s->created + cc->connect_timeout_ms / 1000.0 - 0.001) {
            KEEL_INFO_RL("h2 upstream %s: connect timed out", s->name);
            sess_free(s, KEEL_ETIMEDOUT);
            return;
        }
    } else {
        if (s->n_streams == 0 && cc->idle_timeout_ms &&
            now >= s->idle_since + cc->idle_timeout_ms / 1000.0 - 0.001) {
            KEEL_DEBUG("h2 upstream %s: idle, closing", s->name);
            sess_close(s, NGHTTP2_NO_ERROR, KEEL_ECLOSED);
            return;
        }
        if (cc->h2_keepalive_ms && s->ping_sent &&
            now >= s->ping_sent + cc->h2_keepalive_timeout_ms / 1000.0 - 0.001) {
            KEEL_WARN_RL("h2 upstream %s: no PING ack within %u ms, closing", s->name,
                         cc->h2_keepalive_timeout_ms);
            sess_close(s, NGHTTP2_NO_ERROR, KEEL_ECLOSED);
            return;
        }
        if (cc->h2_keepalive_ms && !s->ping_sent &&
            now >= s->last_read + cc->h2_keepalive_ms / 1000.0 - 0.001) {
            if (nghttp2_submit_ping(s->ng, NGHTTP2_FLAG_NONE, NULL) == 0)
                s->ping_sent = now;
            sess_send(s);
        }
    }
    sess_after(s);
}

/* ---- sessions ------------------------------------------------------------------------------ */

static struct h2up *hu_get(struct keel_worker *w)
{
    if (!w->h2up)
        w->h2up = calloc(1, sizeof(struct h2up));
    return w->h2up;
}

static nghttp2_session *ng_new(struct sess *s)
{
    nghttp2_session_callbacks *cbs;
    nghttp2_option *opt;
    nghttp2_session *ng = NULL;
    if (nghttp2_session_callbacks_new(&cbs) != 0)
        return NULL;
    if (nghttp2_option_new(&opt) != 0) {
        nghttp2_session_callbacks_del(cbs);
        return NULL;
    }
    nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
    nghttp2_session_callbacks_set_on_frame_send_callback(cbs, on_frame_send);
    nghttp2_session_callbacks_set_on_frame_not_send_callback(cbs, on_frame_not_send);
    nghttp2_session_callbacks_set_on_invalid_frame_recv_callback(cbs, on_invalid_frame);
    nghttp2_option_set_no_auto_window_update(opt, 1);
    int rc = nghttp2_session_client_new3(&ng, cbs, s, opt, keel_h2srv_mem());
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cbs);
    if (rc != 0)
        return NULL;
    uint32_t maxs = s->ccfg->h2_max_streams ? s->ccfg->h2_max_streams : DEFAULT_MAX_STREAMS;
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, STREAM_WINDOW},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, 65536},
    };
    /* Every stream may hold a full window unconsumed without starving the others. */
    uint64_t conn_win = (uint64_t)STREAM_WINDOW * maxs;
    if (conn_win > (1u << 30))
        conn_win = 1u << 30;
    if (nghttp2_submit_settings(ng, NGHTTP2_FLAG_NONE, iv, sizeof(iv) / sizeof(iv[0])) != 0 ||
        nghttp2_session_set_local_window_size(ng, NGHTTP2_FLAG_NONE, 0, (int32_t)conn_win) != 0) {
        nghttp2_session_del(ng);
        return NULL;
    }
    return ng;
}

static struct sess *sess_new(struct keel_worker *w, struct h2up *hu, struct keel_ep_load *load,
                             const struct sockaddr_storage *sa, socklen_t salen, const char *name,
                             const struct keel_cfg_cluster *cc, struct keel_cluster_stats *cstats,
                             int *err)
{
    if (cc->max_connections && cstats &&
        atomic_load_explicit(&cstats->open_conns, memory_order_relaxed) >=
            (int64_t)cc->max_connections) {
        *err = KEEL_ELIMIT;
        return NULL;
    }
    struct sess *s = calloc(1, sizeof(*s));
    if (!s) {
        *err = KEEL_ENOMEM;
        return NULL;
    }
    s->w = w;
    s->send.run = on_sess_deferred;
    s->hu = hu;
    s->ccfg = cc;
    s->sock.fd = -1;
    snprintf(s->name, sizeof(s->name), "%s", name);
    memcpy(&s->sa, sa, sizeof(s->sa));
    s->salen = salen;
    s->ng = ng_new(s);
    if (!s->ng) {
        free(s);
        *err = KEEL_ENOMEM;
        return NULL;
    }
    int fd = socket(sa->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        nghttp2_session_del(s->ng);
        free(s);
        *err = keel_err_from_errno(errno);
        return NULL;
    }
    keel_sock_setup(fd);
    s->sock.fd = fd;
    ev_io_init(&s->sock.rio, on_sess_read, fd, EV_READ);
    ev_io_init(&s->sock.wio, on_sess_write, fd, EV_WRITE);
    s->sock.rio.data = s->sock.wio.data = s;
    ev_init(&s->timer, on_sess_timer);
    s->timer.data = s;
    s->load = load;
    keel_ep_load_ref(s->load);
    s->cstats = cstats;
    if (s->cstats)
        atomic_fetch_add_explicit(&s->cstats->open_conns, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&load->connections, 1, memory_order_relaxed);
    s->draining = hu->draining || w->draining;
    s->created = s->idle_since = s->last_read = ev_now(w->loop);
    s->state = SS_CONNECTING;
    uint32_t b = s->load->id % BUCKETS;
    s->next = hu->b[b];
    hu->b[b] = s;
    hu->n_sess++;
    int rc = connect(fd, (const struct sockaddr *)sa, salen);
    if (rc != 0 && errno != EINPROGRESS) {
        *err = keel_err_from_errno(errno);
        KEEL_INFO_RL("h2 upstream %s: connect failed: %s", s->name, keel_strerror(*err));
        sess_free(s, *err);
        return NULL;
    }
    if (cc->tls.enabled) {
        int trc = keel_tls_client_attach(w, &s->sock, cc, 1);
        if (trc) {
            *err = trc;
            sess_free(s, trc);
            return NULL;
        }
    }
    keel_sock_want(w->loop, &s->sock, 0, 1); /* connected (or failed) when writable */
    sess_arm(s);
    return s;
}

struct keel_upconn *keel_h2up_get(struct keel_worker *w, const struct keel_endpoint *ep,
                                  const struct keel_cluster *cl, int *err)
{
    struct h2up *hu = hu_get(w);
    if (!hu) {
        *err = KEEL_ENOMEM;
        return NULL;
    }
    struct sess *s = find_sess(hu, ep->load, &ep->sa, ep->salen, cl->cfg, NULL);
    if (!s) {
        s = sess_new(w, hu, ep->load, &ep->sa, ep->salen, ep->name, cl->cfg, cl->stats, err);
        if (!s)
            return NULL;
    }
    struct keel_upconn *u = calloc(1, sizeof(*u));
    struct stream *st = calloc(1, sizeof(*st));
    if (!u || !st) {
        free(u);
        free(st);
        *err = KEEL_ENOMEM;
        return NULL;
    }
    u->w = w;
    u->s.fd = -1;
    u->s.vops = &vs_ops;
    u->s.vctx = st;
    u->ccfg = cl->cfg;
    u->load = ep->load;
    keel_ep_load_ref(u->load);
    snprintf(u->name, sizeof(u->name), "%s", ep->name);
    ev_io_init(&u->s.rio, NULL, -1, EV_READ);
    ev_io_init(&u->s.wio, NULL, -1, EV_WRITE);
    u->s.rio.data = u->s.wio.data = u;
    ev_init(&u->timer, NULL);
    u->timer.data = u;
    u->state = s->state == SS_CONNECTING ? KEEL_UP_CONNECTING : KEEL_UP_ACTIVE;
    st->u = u;
    stream_link(s, st);
    keel_h2conv_head_init(&st->head, KEEL_H2CONV_RESPONSE, RESP_HEAD_MAX);
    keel_h2conv_unchunk_init(&st->dc);
    return u;
}

void keel_h2up_close_all(struct keel_worker *w)
{
    struct h2up *hu = w->h2up;
    if (!hu)
        return;
    hu->draining = 1;
    for (uint32_t b = 0; b < BUCKETS; b++) {
        struct sess *s = hu->b[b];
        while (s) {
            struct sess *next = s->next;
            s->draining = 1;
            if (s->n_streams == 0 || s->dead) {
                sess_close(s, NGHTTP2_NO_ERROR, KEEL_ECLOSED);
            } else if (s->state != SS_CONNECTING) {
                /* Streams in flight finish; sess_after() closes once they did. */
                nghttp2_submit_goaway(s->ng, NGHTTP2_FLAG_NONE,
                                      nghttp2_session_get_last_proc_stream_id(s->ng),
                                      NGHTTP2_NO_ERROR, NULL, 0);
                sess_send(s);
            }
            s = next;
        }
    }
    if (hu->n_sess == 0) {
        free(hu);
        w->h2up = NULL;
    }
}
