/* SPDX-License-Identifier: MIT */
/* HTTP/1.1 reverse proxy: a downstream connection forwards its requests one at a time. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>
#include "keel/balancer.h"
#include "keel/err.h"
#include "keel/log.h"
#include "keel/outlier.h"
#include "keel/retry.h"
#include "keel/router.h"
#include "conn.h"
#include "tls.h"

#define MAX_HEADERS 256
#define BODY_BUF (64 * 1024) /* unforwarded body bytes buffered per direction */
#define RESP_HEAD_MAX (64 * 1024)
/* A Content-Length response body with at least this much left, between two plain sockets,
 * is relayed with splice() through a pipe: the kernel moves its pages, keel never copies them
 * (100 MB downloads: see the commit). Below it, a pipe's set-up costs more than the copy. */
#define SPLICE_MIN (64 * 1024)
#define CLOSE_LINGER 5.0
#define MAX_TRIES 3

static void client_process(struct keel_conn *c);
static void up_process(struct keel_conn *c);
static void update_io(struct keel_conn *c);
static void dispatch(struct keel_conn *c);

/* ---- small helpers ---------------------------------------------------------------------- */

static int status_class(int status)
{
    return (status >= 100 && status < 600) ? status / 100 : 0;
}

static const char *status_text(int status)
{
    return keel_http1_reason(status);
}

static int err_to_status(int err)
{
    switch (err) {
    case KEEL_EURITOOLONG:
        return 414;
    case KEEL_EHDRTOOLARGE:
    case KEEL_ETOOMANYHDRS:
        return 431;
    case KEEL_ENOTIMPL:
        return 501;
    case KEEL_EVERSION:
        return 505;
    default:
        return 400;
    }
}

static int name_is(const struct keel_http1_header *h, const char *lower)
{
    return keel_http1_name_eq(h, lower);
}

/* Hop-by-hop fields (RFC 9110 7.6.1) that a proxy never forwards. Transfer-Encoding is kept:
 * keel forwards chunked bodies as they are, and Content-Length/Host can never be dropped by a
 * Connection token (that would re-frame the message for the next hop). */
static int is_hop_by_hop(const struct keel_http1_header *h)
{
    switch (h->name_len) {
    case 2:
        return name_is(h, "te");
    case 7:
        return name_is(h, "upgrade");
    case 10:
        return name_is(h, "connection") || name_is(h, "keep-alive");
    case 14:
        return name_is(h, "http2-settings");
    case 16:
        return name_is(h, "proxy-connection");
    }
    return 0;
}

/* Tokens of all Connection headers name further hop-by-hop fields. */
struct conn_tokens {
    const char *tok[16];
    size_t len[16];
    int n;
};

static void collect_conn_tokens(const struct keel_http1_header *hs, size_t n,
                                struct conn_tokens *ct)
{
    ct->n = 0;
    for (size_t i = 0; i < n; i++) {
        if (hs[i].name_len != 10 || !name_is(&hs[i], "connection"))
            continue;
        const char *p = hs[i].value, *end = p + hs[i].value_len;
        while (p < end && ct->n < 16) {
            while (p < end && (*p == ',' || *p == ' ' || *p == '\t'))
                p++;
            const char *s = p;
            while (p < end && *p != ',' && *p != ' ' && *p != '\t')
                p++;
            if (p > s) {
                ct->tok[ct->n] = s;
                ct->len[ct->n] = (size_t)(p - s);
                ct->n++;
            }
        }
    }
}

static int named_in_connection(const struct keel_http1_header *h, const struct conn_tokens *ct)
{
    if (name_is(h, "content-length") || name_is(h, "transfer-encoding") || name_is(h, "host"))
        return 0;
    for (int i = 0; i < ct->n; i++) {
        if (ct->len[i] != h->name_len)
            continue;
        size_t k = 0;
        for (; k < h->name_len; k++) {
            char a = h->name[k], b = ct->tok[i][k];
            if (a >= 'A' && a <= 'Z')
                a = (char)(a + 32);
            if (b >= 'A' && b <= 'Z')
                b = (char)(b + 32);
            if (a != b)
                break;
        }
        if (k == h->name_len)
            return 1;
    }
    return 0;
}

static int append_header(struct keel_buf *b, const struct keel_http1_header *h)
{
    int rc = keel_buf_reserve(b, h->name_len + h->value_len + 4, 0);
    if (rc)
        return rc;
    char *p = b->data + b->off + b->len;
    memcpy(p, h->name, h->name_len);
    p += h->name_len;
    *p++ = ':';
    *p++ = ' ';
    memcpy(p, h->value, h->value_len);
    p += h->value_len;
    *p++ = '\r';
    *p++ = '\n';
    b->len += h->name_len + h->value_len + 4;
    return 0;
}

static void gen_request_id(struct keel_worker *w, char *out)
{
    static const char hex[] = "0123456789abcdef";
    uint64_t a = keel_rand(&w->rng), b = keel_rand(&w->rng);
    for (int i = 0; i < 16; i++) {
        out[i] = hex[(a >> (i * 4)) & 15];
        out[16 + i] = hex[(b >> (i * 4)) & 15];
    }
    out[32] = 0;
}

/* ---- timers ------------------------------------------------------------------------------ */

/* Each try waits at most the per-try timeout (when set) for its response head, and never
 * past the request's own deadline (gRPC's grpc-timeout). */
static double response_timeout_s(const struct keel_conn *c, const struct keel_cfg_cluster *cc)
{
    uint32_t ms = cc->retry_per_try_ms && cc->retry_per_try_ms < cc->response_timeout_ms
                      ? cc->retry_per_try_ms
                      : cc->response_timeout_ms;
    double s = ms / 1000.0;
    if (c->deadline_ms) {
        double left = c->deadline_ms / 1000.0 - (ev_now(c->w->loop) - c->t.start);
        if (left < 0.001)
            left = 0.001;
        if (left < s)
            s = left;
    }
    return s;
}

static void client_timer(struct keel_conn *c, double secs)
{
    ev_timer_stop(c->w->loop, &c->timer);
    if (secs > 0) {
        ev_timer_set(&c->timer, secs, 0.);
        ev_timer_start(c->w->loop, &c->timer);
    }
}

static void up_timer(struct keel_upconn *u, double secs)
{
    u->timer.repeat = secs;
    ev_timer_again(u->w->loop, &u->timer);
}

/* ---- transaction accounting --------------------------------------------------------------- */

/* Feeds passive outlier detection with what the current endpoint did. */
static void report(struct keel_conn *c, enum keel_outlier_outcome o)
{
    struct keel_txn *t = &c->t;
    if (!t->ws || t->cluster < 0 || t->ep < 0)
        return;
    const struct keel_cluster *cl = &t->ws->snap->clusters[t->cluster];
    if ((uint32_t)t->ep < cl->n_eps)
        keel_outlier_report(cl, &cl->eps[t->ep], o);
}

static struct keel_cluster_stats *txn_cstats(const struct keel_txn *t)
{
    if (!t->ws || t->cluster < 0 || (uint32_t)t->cluster >= t->ws->snap->n_clusters)
        return NULL;
    return t->ws->snap->clusters[t->cluster].stats;
}

/* The exchange stops waiting for an upstream connection (connected, failed or gone). */
static void txn_unpend(struct keel_txn *t)
{
    struct keel_cluster_stats *st = txn_cstats(t);
    if (t->cb_pending && st)
        atomic_fetch_sub_explicit(&st->pending, 1, memory_order_relaxed);
    t->cb_pending = 0;
}

static void txn_release_load(struct keel_txn *t)
{
    if (t->load) {
        if (t->active)
            atomic_fetch_sub_explicit(&t->load->active, 1, memory_order_relaxed);
        keel_ep_load_unref(t->load);
    }
    t->load = NULL;
    t->active = 0;
}

void keel_txn_finish(struct keel_conn *c)
{
    struct keel_txn *t = &c->t;
    struct keel_worker *w = c->w;
    if (t->start == 0)
        return;
    double dur = ev_now(w->loop) - t->start;
    if (dur < 0)
        dur = 0;
    int cls = status_class(t->status);
    atomic_fetch_add_explicit(&w->rt->lstats[c->listener].requests[cls], 1, memory_order_relaxed);
    const char *cname = "-", *ename = "-";
    if (t->cluster >= 0 && t->ws && (uint32_t)t->cluster < t->ws->snap->n_clusters) {
        struct keel_cluster *cl = &t->ws->snap->clusters[t->cluster];
        cname = cl->name;
        if (cl->stats) {
            double ms = dur * 1000.0;
            int b = 0;
            while (b < KEEL_LAT_BUCKETS && ms > keel_lat_bounds_ms[b])
                b++;
            atomic_fetch_add_explicit(&cl->stats->lat_bucket[b], 1, memory_order_relaxed);
            atomic_fetch_add_explicit(&cl->stats->lat_sum_us, (uint64_t)(dur * 1e6),
                                      memory_order_relaxed);
            atomic_fetch_add_explicit(&cl->stats->lat_count, 1, memory_order_relaxed);
        }
        if (t->ep >= 0 && (uint32_t)t->ep < cl->n_eps)
            ename = cl->eps[t->ep].name;
    }
    if (t->load)
        atomic_fetch_add_explicit(&t->load->requests[cls], 1, memory_order_relaxed);
    if (w->rt->cfg->access_log && keel_log_level >= KEEL_LOG_INFO)
        keel_log(KEEL_LOG_INFO,
                 "access conn=%llu req_id=%s client=%s \"%s %s\" status=%d cluster=%s "
                 "endpoint=%s bytes_in=%llu bytes_out=%llu dur_ms=%.3f proto=%s%s",
                 (unsigned long long)c->id, t->req_id[0] ? t->req_id : "-", c->peer_ip,
                 t->method[0] ? t->method : "-", t->path[0] ? t->path : "-", t->status, cname,
                 ename, (unsigned long long)t->bytes_in, (unsigned long long)t->bytes_out,
                 dur * 1000.0,
                 c->is_stream ? (c->grpc ? "grpc" : "h2")
                 : c->is_tcp  ? "tcp"
                              : "http/1.1",
                 c->is_tls ? "+tls" : "");
    txn_release_load(t);
    txn_unpend(t);
    struct keel_cluster_stats *cst = txn_cstats(t);
    if (t->cb_request && cst)
        atomic_fetch_sub_explicit(&cst->active_requests, 1, memory_order_relaxed);
    t->cb_request = 0;
    if (t->retrying && cst)
        atomic_fetch_sub_explicit(&cst->retries_active, 1, memory_order_relaxed);
    t->retrying = 0;
    keel_wsnap_unpin(w, t->ws);
    t->ws = NULL;
    t->start = 0;
}

static void txn_reset(struct keel_conn *c)
{
    struct keel_buf head = c->t.head;
    head.off = head.len = 0;
    memset(&c->t, 0, sizeof(c->t));
    c->t.head = head;
    c->t.cluster = -1;
    c->t.ep = -1;
}

/* ---- connection lifecycle ----------------------------------------------------------------- */

static void detach_up(struct keel_conn *c, int reusable)
{
    struct keel_upconn *u = c->up;
    if (!u)
        return;
    c->up = NULL;
    u->owner = NULL;
    if (reusable && u->state == KEEL_UP_ACTIVE)
        keel_up_release(u);
    else
        keel_up_close(u);
}

void keel_conn_close(struct keel_conn *c, const char *why)
{
    struct keel_worker *w = c->w;
    if (c->state == KEEL_CS_CLOSED)
        return;
    if (c->t.start)
        keel_txn_finish(c); /* status 0 (no response) is counted as class "none" */
    KEEL_DEBUG("conn=%llu closed in state %s: %s", (unsigned long long)c->id,
               keel_conn_state_str(c->state), why);
    if (c->h2 && !c->is_stream)
        keel_h2_release(c); /* its streams first: they detach from the session */
    detach_up(c, 0);
    c->state = KEEL_CS_CLOSED;
    ev_timer_stop(w->loop, &c->timer);
    keel_sock_close(w->loop, &c->s);
    keel_buf_free(&c->t.head);
    if (c->prev)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    w->n_conns--;
    if (!c->is_stream)
        atomic_fetch_sub_explicit(&w->rt->lstats[c->listener].active_conns, 1,
                                  memory_order_relaxed);
    c->next_close = w->closing;
    w->closing = c;
}

void keel_conn_reap(struct keel_worker *w)
{
    while (w->closing) {
        struct keel_conn *c = w->closing;
        w->closing = c->next_close;
        free(c);
    }
    keel_up_reap(w);
}

/* Queue the rest of the output, then close; a lingering timer bounds the wait. */
static void close_after_flush(struct keel_conn *c)
{
    if (c->state == KEEL_CS_CLOSED)
        return;
    if (c->t.start)
        keel_txn_finish(c);
    detach_up(c, 0);
    c->state = KEEL_CS_CLOSING;
    if (c->s.out.len == 0) {
        keel_conn_close(c, "done");
        return;
    }
    client_timer(c, CLOSE_LINGER);
    update_io(c);
}

static int req_framing_complete(const struct keel_txn *t)
{
    if (t->req_mode == KEEL_H1_BODY_LENGTH)
        return t->req_remaining == 0;
    if (t->req_mode == KEEL_H1_BODY_CHUNKED)
        return t->req_remaining == 1;
    return 1;
}

/* The exchange is over and the connection stays: wait for (or parse) the next request. The
 * parse loop in client_process() picks up pipelined requests; calling it from inside that
 * loop would recurse once per buffered request. */
static void next_request(struct keel_conn *c)
{
    txn_reset(c);
    /* An idle keep-alive connection keeps no buffer: they go back to the worker's cache. */
    keel_buf_free(&c->t.head);
    if (c->s.in.len == 0)
        keel_buf_free(&c->s.in);
    if (c->s.out.len == 0)
        keel_buf_free(&c->s.out);
    c->state = KEEL_CS_IDLE;
    c->served++;
    client_timer(c, c->lcfg->keepalive_timeout_ms / 1000.0);
    if (!c->in_process)
        client_process(c);
}

/* Answers the current request with a keel-generated response. */
static void send_error(struct keel_conn *c, int status, const char *reason, int close)
{
    struct keel_txn *t = &c->t;
    if (t->resp_bytes_to_client > 0 || c->state == KEEL_CS_CLOSING) {
        /* The client already has part of a response: the only honest signal left is a close. */
        keel_conn_close(c, reason);
        return;
    }
    if (t->start == 0) {
        t->start = ev_now(c->w->loop);
    }
    t->status = status;
    if (!req_framing_complete(t))
        close = 1; /* the rest of the request body would be read as the next request */
    else if (t->req_fwd) {
        keel_buf_consume(&c->s.in, t->req_fwd); /* a body nobody will read */
        t->req_fwd = 0;
    }
    char body[256];
    int blen = snprintf(body, sizeof(body), "%d %s: %s\n", status, status_text(status), reason);
    if (blen < 0 || blen >= (int)sizeof(body))
        blen = (int)strlen(body);
    keel_buf_printf(&c->s.out,
                    "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
                    "X-Keel-Reason: %s\r\n%s\r\n%s",
                    status, status_text(status), blen, reason,
                    (close || !c->keepalive) ? "Connection: close\r\n" : "",
                    t->is_head ? "" : body);
    t->bytes_out += c->s.out.len;
    if (status >= 500)
        KEEL_WARN_RL("conn=%llu req_id=%s: %d %s", (unsigned long long)c->id,
                     t->req_id[0] ? t->req_id : "-", status, reason);
    if (close || !c->keepalive || c->w->draining) {
        close_after_flush(c);
        return;
    }
    keel_txn_finish(c);
    detach_up(c, 0);
    next_request(c);
}

static void finish_exchange(struct keel_conn *c)
{
    struct keel_txn *t = &c->t;
    int reusable = t->up_reusable && t->req_done && c->up && c->up->s.in.len == 0;
    if (c->up)
        c->up->requests++;
    keel_txn_finish(c);
    detach_up(c, reusable);
    if (!c->keepalive || c->drain || c->w->draining) {
        close_after_flush(c);
        return;
    }
    next_request(c);
}

/* ---- io watcher control ------------------------------------------------------------------ */

static size_t head_limit(const struct keel_conn *c)
{
    return (size_t)c->lcfg->max_header_size + 1024;
}

static void update_io(struct keel_conn *c)
{
    struct ev_loop *loop = c->w->loop;
    struct keel_txn *t = &c->t;
    struct keel_upconn *u = c->up;
    const struct keel_pipe *rp = t->resp_splice && u ? u->s.in.pipe : NULL;
    int cr = 0, cw = c->s.out.len > 0 || t->resp_fwd > 0 || (rp && rp->len > 0);
    switch (c->state) {
    case KEEL_CS_IDLE:
    case KEEL_CS_HEAD:
        cr = c->s.in.len < head_limit(c) && c->s.out.len < KEEL_OUT_HIGH_WATER;
        break;
    case KEEL_CS_PROXY:
        /* Buffers emptied during the exchange go back to the worker's cache now rather than
         * when it ends: an exchange waiting for its response then holds only the rewritten
         * head (kept for a retry until the response starts). With 1000 busy keep-alive
         * clients that is about a third of the blocks. */
        if (t->req_done && c->s.in.len == 0)
            keel_buf_free(&c->s.in);
        if (c->s.out.len == 0)
            keel_buf_free(&c->s.out);
        if (t->resp_state == KEEL_RS_BODY || t->resp_state == KEEL_RS_DONE)
            keel_buf_free(&t->head);
        if (u && u->s.out.len == 0)
            keel_buf_free(&u->s.out);
        /* After the request, keep reading (bounded): a pipelined request waits in the buffer
         * and the watcher stays registered across exchanges. */
        cr = req_framing_complete(t) ? c->s.in.len < head_limit(c) : c->s.in.len < BODY_BUF;
        break;
    default:
        break;
    }
    if (c->s.rd_eof)
        cr = 0;
    keel_sock_want(loop, &c->s, cr, cw);
    if (u && u->state != KEEL_UP_CLOSED) {
        int uw = u->state == KEEL_UP_CONNECTING ||
                 (u->state == KEEL_UP_ACTIVE && (u->s.out.len > 0 || t->req_fwd > 0));
        int ur = u->state == KEEL_UP_ACTIVE && !u->s.rd_eof &&
                 (t->resp_state == KEEL_RS_HEAD || t->resp_state == KEEL_RS_BODY) &&
                 u->s.in.len < (t->resp_state == KEEL_RS_HEAD ? RESP_HEAD_MAX + 1 : BODY_BUF) &&
                 c->s.out.len < KEEL_OUT_HIGH_WATER;
        if (rp) /* the same bound on_up_read() reads under */
            ur = u->state == KEEL_UP_ACTIVE && !u->s.rd_eof && t->resp_remaining > 0 && !rp->full &&
                 rp->len < rp->cap;
        keel_sock_want(loop, &u->s, ur, uw);
    }
}

/* ---- building heads ---------------------------------------------------------------------- */

static int build_up_head(struct keel_conn *c, const struct keel_http1_request *req,
                         const struct keel_route_req *rr)
{
    struct keel_txn *t = &c->t;
    struct keel_buf *b = &t->head;
    struct conn_tokens ct;
    collect_conn_tokens(req->headers, req->num_headers, &ct);
    int absolute = rr->absolute;
    int rc;
    if (absolute) {
        /* Origin servers are only required to accept origin-form: "http://h/p?q" -> "/p?q",
         * "http://h?q" -> "/?q". */
        rc = keel_buf_append(b, req->method, req->method_len);
        rc |= KEEL_BUF_LIT(b, " ");
        if (!(rr->rest_len && rr->rest[0] == '/'))
            rc |= KEEL_BUF_LIT(b, "/");
        rc |= keel_buf_append(b, rr->rest ? rr->rest : "", rr->rest_len);
    } else {
        rc = keel_buf_append(b, req->method, req->method_len);
        rc |= KEEL_BUF_LIT(b, " ");
        rc |= keel_buf_append(b, req->target, req->target_len);
    }
    rc |= KEEL_BUF_LIT(b, " HTTP/1.1\r\n");
    const struct keel_http1_header *xff[8];
    int n_xff = 0, have_xfh = 0, have_rid = 0;
    for (size_t i = 0; i < req->num_headers && rc == 0; i++) {
        const struct keel_http1_header *h = &req->headers[i];
        if (is_hop_by_hop(h) || (ct.n && named_in_connection(h, &ct)))
            continue;
        if (h->name_len == 15 && name_is(h, "x-forwarded-for")) {
            if (n_xff < 8)
                xff[n_xff++] = h;
            continue;
        }
        if (h->name_len == 17 && name_is(h, "x-forwarded-proto"))
            continue;
        if (h->name_len == 4 && absolute && name_is(h, "host"))
            continue;
        if (h->name_len == 16 && name_is(h, "x-forwarded-host"))
            have_xfh = 1;
        if (h->name_len == 12 && name_is(h, "x-request-id") && h->value_len > 0) {
            have_rid = 1;
            size_t l = h->value_len < sizeof(t->req_id) - 1 ? h->value_len : sizeof(t->req_id) - 1;
            memcpy(t->req_id, h->value, l);
            t->req_id[l] = 0;
        }
        rc = append_header(b, h);
    }
    if (rc)
        return rc;
    if (absolute || !rr->host) {
        rc |= KEEL_BUF_LIT(b, "Host: ");
        rc |= keel_buf_append(b, rr->host ? rr->host : "", rr->host ? rr->host_len : 0);
        rc |= KEEL_BUF_LIT(b, "\r\n");
    }
    if (t->is_upgrade) {
        for (size_t i = 0; i < req->num_headers; i++)
            if (req->headers[i].name_len == 7 && name_is(&req->headers[i], "upgrade"))
                rc |= append_header(b, &req->headers[i]);
        rc |= KEEL_BUF_LIT(b, "Connection: upgrade\r\n");
    }
    rc |= KEEL_BUF_LIT(b, "X-Forwarded-For: ");
    for (int i = 0; i < n_xff; i++) {
        rc |= keel_buf_append(b, xff[i]->value, xff[i]->value_len);
        rc |= KEEL_BUF_LIT(b, ", ");
    }
    rc |= keel_buf_str(b, c->peer_ip);
    rc |= c->is_tls ? KEEL_BUF_LIT(b, "\r\nX-Forwarded-Proto: https\r\n")
                    : KEEL_BUF_LIT(b, "\r\nX-Forwarded-Proto: http\r\n");
    if (!have_xfh && rr->host) {
        rc |= KEEL_BUF_LIT(b, "X-Forwarded-Host: ");
        rc |= keel_buf_append(b, rr->host, rr->host_len);
        rc |= KEEL_BUF_LIT(b, "\r\n");
    }
    if (!have_rid) {
        gen_request_id(c->w, t->req_id);
        rc |= KEEL_BUF_LIT(b, "X-Request-Id: ");
        rc |= keel_buf_append(b, t->req_id, 32);
        rc |= KEEL_BUF_LIT(b, "\r\n");
    }
    rc |= keel_buf_append(b, "\r\n", 2);
    return rc ? KEEL_ENOMEM : 0;
}

static int build_client_head(struct keel_conn *c, const struct keel_http1_response *resp)
{
    struct keel_buf *b = &c->s.out;
    struct conn_tokens ct;
    collect_conn_tokens(resp->headers, resp->num_headers, &ct);
    int upgrade = resp->status == 101;
    size_t before = b->len;
    int rc = KEEL_BUF_LIT(b, "HTTP/1.1 ");
    rc |= keel_buf_status(b, resp->status);
    rc |= KEEL_BUF_LIT(b, " ");
    rc |= keel_buf_append(b, resp->reason, resp->reason_len);
    rc |= KEEL_BUF_LIT(b, "\r\n");
    for (size_t i = 0; i < resp->num_headers && rc == 0; i++) {
        const struct keel_http1_header *h = &resp->headers[i];
        if (upgrade && h->name_len == 7 && name_is(h, "upgrade")) {
            rc = append_header(b, h);
            continue;
        }
        if (is_hop_by_hop(h) || (ct.n && named_in_connection(h, &ct)))
            continue;
        if (c->t.dechunk && h->name_len == 17 && name_is(h, "transfer-encoding"))
            continue;
        rc = append_header(b, h);
    }
    if (c->t.set_sticky && c->t.ws && c->t.cluster >= 0) {
        /* Opaque: a hash of the endpoint's identity, not its address. */
        const char *name = c->t.ws->snap->clusters[c->t.cluster].cfg->sticky_cookie;
        rc |= keel_buf_printf(b, "Set-Cookie: %s=%016llx; Path=/; HttpOnly\r\n", name,
                              (unsigned long long)c->t.sticky_got);
    }
    if (upgrade)
        rc |= KEEL_BUF_LIT(b, "Connection: upgrade\r\n");
    else if (resp->status >= 200 && !c->keepalive)
        rc |= KEEL_BUF_LIT(b, "Connection: close\r\n");
    else if (resp->status >= 200 && c->minor == 0)
        rc |= KEEL_BUF_LIT(b, "Connection: keep-alive\r\n");
    rc |= keel_buf_append(b, "\r\n", 2);
    c->t.bytes_out += b->len - before;
    c->t.resp_bytes_to_client += b->len - before;
    return rc ? KEEL_ENOMEM : 0;
}

/* ---- request side ------------------------------------------------------------------------ */

/* RFC 9110 9.2.2: methods whose repetition has the same effect as one request. */
static int method_idempotent(const char *m, size_t len)
{
    static const char *const ok[] = {"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        if (len == strlen(ok[i]) && memcmp(m, ok[i], len) == 0)
            return 1;
    return 0;
}

static void start_request(struct keel_conn *c, struct keel_http1_request *req, size_t head_len)
{
    struct keel_worker *w = c->w;
    struct keel_txn *t = &c->t;
    const struct keel_cfg_listener *l = c->lcfg;
    t->start = ev_now(w->loop);
    t->bytes_in = head_len;
    size_t ml = req->method_len < sizeof(t->method) - 1 ? req->method_len : sizeof(t->method) - 1;
    memcpy(t->method, req->method, ml);
    t->method[ml] = 0;
    size_t pl = req->target_len < sizeof(t->path) - 1 ? req->target_len : sizeof(t->path) - 1;
    memcpy(t->path, req->target, pl);
    t->path[pl] = 0;
    t->is_head = req->method_len == 4 && memcmp(req->method, "HEAD", 4) == 0;
    t->idempotent = method_idempotent(req->method, req->method_len);
    for (size_t i = 0; i < req->num_headers && !t->idempotent; i++)
        t->idempotent = req->headers[i].name_len == 15 &&
                        keel_http1_name_eq(&req->headers[i], "idempotency-key");
    c->minor = req->minor_version;
    if (req->minor_version >= 1)
        c->keepalive = !(req->flags & KEEL_H1_F_CONN_CLOSE);
    else
        c->keepalive =
            (req->flags & KEEL_H1_F_CONN_KEEPALIVE) && !(req->flags & KEEL_H1_F_CONN_CLOSE);
    if (c->drain || w->draining || c->is_stream)
        c->keepalive = 0; /* an HTTP/2 stream carries one exchange: its end is the stream's */
    t->is_upgrade = (req->flags & KEEL_H1_F_UPGRADE) && (req->flags & KEEL_H1_F_CONN_UPGRADE) &&
                    req->minor_version >= 1;
    t->req_mode = keel_http1_request_body(req);
    t->req_remaining = req->content_length > 0 ? (uint64_t)req->content_length : 0;
    keel_http1_chunked_init(&t->req_chunk);
    c->state = KEEL_CS_PROXY;
    /* While a body is expected, a client that stops sending is bounded by the idle timeout. */
    client_timer(c, req_framing_complete(t) ? 0 : l->idle_timeout_ms / 1000.0);

    if (l->max_body_size && req->content_length > 0 &&
        (uint64_t)req->content_length > l->max_body_size) {
        keel_buf_consume(&c->s.in, head_len);
        send_error(c, 413, "request body larger than max_body_size", 1);
        return;
    }
    struct keel_route_req rr;
    keel_router_prepare(&rr, req);
    t->ws = keel_wsnap_pin(w);
    int cl = keel_router_match(&t->ws->snap->listeners[c->listener], &rr);
    if (cl < 0) {
        keel_buf_consume(&c->s.in, head_len);
        send_error(c, 404, "no route matches", 0);
        return;
    }
    t->cluster = cl;
    const char *sticky = t->ws->snap->clusters[cl].cfg->sticky_cookie;
    if (sticky) {
        const char *v;
        size_t vl;
        char hex[17];
        if (keel_router_cookie(req->headers, req->num_headers, sticky, &v, &vl) && vl == 16) {
            memcpy(hex, v, 16);
            hex[16] = 0;
            char *end = NULL;
            t->sticky_want = strtoull(hex, &end, 16);
            t->has_sticky = end && *end == 0;
        }
    }
    if (build_up_head(c, req, &rr) != 0) {
        keel_buf_consume(&c->s.in, head_len);
        keel_conn_close(c, "out of memory");
        return;
    }
    keel_buf_consume(&c->s.in, head_len);
    dispatch(c);
}

/* Extends t->req_fwd over newly arrived body bytes, validating chunked framing. */
static int advance_req_body(struct keel_conn *c)
{
    struct keel_txn *t = &c->t;
    size_t avail = c->s.in.len - t->req_fwd;
    if (avail == 0 || req_framing_complete(t))
        return 0;
    if (t->req_mode == KEEL_H1_BODY_LENGTH) {
        if (t->req_remaining == 0)
            return 0;
        size_t take = avail < t->req_remaining ? avail : (size_t)t->req_remaining;
        t->req_fwd += take;
        t->req_remaining -= take;
        t->req_body_total += take;
        return 0;
    }
    size_t consumed = 0, dlen = 0;
    int done = 0;
    int rc = keel_http1_chunked_feed(&t->req_chunk, c->s.in.data + c->s.in.off + t->req_fwd, avail,
                                     0, &consumed, &dlen, &done);
    if (rc < 0)
        return rc;
    t->req_fwd += consumed;
    t->req_body_total = t->req_chunk.total;
    if (c->lcfg->max_body_size && t->req_body_total > c->lcfg->max_body_size)
        return KEEL_EBODYTOOLARGE;
    if (done)
        t->req_remaining = 1; /* marks "framing complete" for chunked */
    return 0;
}

static void up_failed(struct keel_conn *c, int err, const char *what);

/* Writes the request head and validated body bytes to the upstream. */
static void flush_request(struct keel_conn *c)
{
    struct keel_txn *t = &c->t;
    struct keel_upconn *u = c->up;
    if (!u || u->state != KEEL_UP_ACTIVE)
        return;
    int rc = advance_req_body(c);
    if (rc < 0) {
        if (t->resp_state == KEEL_RS_HEAD && t->resp_bytes_to_client == 0)
            send_error(c, rc == KEEL_EBODYTOOLARGE ? 413 : 400,
                       rc == KEEL_EBODYTOOLARGE ? "request body larger than max_body_size"
                                                : "malformed chunked request body",
                       1);
        else
            keel_conn_close(c, "bad request body");
        return;
    }
    if (u->s.out.len == 0 && t->req_fwd == 0 && (t->req_done || !req_framing_complete(t)))
        return;
    ssize_t n = keel_sock_flush(&u->s, c->s.in.data + c->s.in.off, t->req_fwd);
    if (n < 0) {
        up_failed(c, (int)n, "write to upstream failed");
        return;
    }
    if (n > 0) {
        keel_buf_consume(&c->s.in, (size_t)n);
        t->req_fwd -= (size_t)n;
        t->req_body_sent += (uint64_t)n;
        t->bytes_in += (uint64_t)n;
    }
    if (!t->req_done && u->s.out.len == 0 && t->req_fwd == 0 && req_framing_complete(t)) {
        t->req_done = 1;
        if (t->resp_state == KEEL_RS_HEAD)
            up_timer(u, response_timeout_s(c, u->ccfg));
    }
    if (c->s.rd_eof && c->s.in.len == 0 && !req_framing_complete(t))
        keel_conn_close(c, "client closed mid-request");
}

/* Parses and starts requests while complete ones are buffered (pipelining). Returns once a
 * request went upstream (the exchange goes on from I/O events), when more bytes are needed,
 * or when the client should read its responses first. */
static void parse_requests(struct keel_conn *c)
{
    struct keel_worker *w = c->w;
    c->in_process = 1;
    while (c->state == KEEL_CS_IDLE || c->state == KEEL_CS_HEAD) {
        if (c->s.out.len >= KEEL_OUT_HIGH_WATER)
            break; /* on_client_write() resumes once the client has read */
        if (c->s.in.len == 0) {
            if (c->s.rd_eof) {
                keel_conn_close(c, "client closed");
                break;
            }
            if ((c->drain || w->draining) && c->served > 0) {
                close_after_flush(c);
                break;
            }
            c->state = KEEL_CS_IDLE;
            break;
        }
        if (c->served == 0 && !c->is_stream && c->lcfg->h2.enabled && c->state == KEEL_CS_IDLE) {
            int pf = keel_h2_preface(c);
            if (pf < 0) {
                if (c->s.rd_eof)
                    keel_conn_close(c, "client closed mid-preface");
                break;
            }
            if (pf > 0) {
                /* HTTP/2 prior knowledge (h2c, or h2 after ALPN): the session takes over. */
                c->in_process = 0;
                if (keel_h2_start(c) != 0)
                    keel_conn_close(c, "out of memory");
                return;
            }
        }
        if (c->state == KEEL_CS_IDLE) {
            c->state = KEEL_CS_HEAD;
            client_timer(c, c->lcfg->header_timeout_ms / 1000.0);
        }
        struct keel_http1_header hdrs[MAX_HEADERS];
        struct keel_http1_request req;
        memset(&req, 0, sizeof(req));
        req.headers = hdrs;
        req.num_headers = MAX_HEADERS;
        struct keel_http1_limits lim = {c->lcfg->max_request_line, c->lcfg->max_header_size,
                                        c->lcfg->max_headers < MAX_HEADERS ? c->lcfg->max_headers
                                                                           : MAX_HEADERS};
        size_t eoff = 0;
        ssize_t n =
            keel_http1_parse_request(c->s.in.data + c->s.in.off, c->s.in.len, &req, &lim, &eoff);
        if (n == KEEL_EAGAIN) {
            if (c->s.rd_eof)
                keel_conn_close(c, "client closed mid-request");
            break;
        }
        if (n < 0) {
            atomic_fetch_add_explicit(&w->rt->lstats[c->listener].parse_errors, 1,
                                      memory_order_relaxed);
            int st = err_to_status((int)n);
            KEEL_INFO_RL("conn=%llu client=%s: rejected request (%s at byte %zu): %d",
                         (unsigned long long)c->id, c->peer_ip, keel_strerror((int)n), eoff, st);
            c->keepalive = 0;
            client_timer(c, 0);
            send_error(c, st, keel_strerror((int)n), 1);
            break;
        }
        start_request(c, &req, (size_t)n);
    }
    c->in_process = 0;
    if (c->state != KEEL_CS_CLOSED)
        update_io(c);
}

static void client_process(struct keel_conn *c)
{
    switch (c->state) {
    case KEEL_CS_IDLE:
    case KEEL_CS_HEAD:
        parse_requests(c);
        return;
    case KEEL_CS_PROXY:
        flush_request(c);
        if (c->state == KEEL_CS_PROXY)
            update_io(c);
        return;
    default:
        update_io(c);
        return;
    }
}

/* ---- upstream side ----------------------------------------------------------------------- */

static void on_up_read(struct ev_loop *loop, ev_io *io, int revents);
static void on_up_write(struct ev_loop *loop, ev_io *io, int revents);
static void on_up_timer(struct ev_loop *loop, ev_timer *t, int revents);

static void attach_up(struct keel_conn *c, struct keel_upconn *u)
{
    c->up = u;
    u->owner = c;
    ev_set_cb(&u->s.rio, on_up_read);
    ev_set_cb(&u->s.wio, on_up_write);
    ev_set_cb(&u->timer, on_up_timer);
    u->s.rio.data = u->s.wio.data = u->timer.data = u;
}

static void up_connected(struct keel_conn *c)
{
    struct keel_txn *t = &c->t;
    struct keel_upconn *u = c->up;
    txn_unpend(t);
    u->state = KEEL_UP_ACTIVE;
    t->resp_state = KEEL_RS_HEAD;
    up_timer(u, u->ccfg->idle_timeout_ms / 1000.0);
    flush_request(c);
    if (c->state == KEEL_CS_PROXY)
        update_io(c);
}

/* Sticky sessions: the endpoint the request's cookie names, if it may still be picked. */
static int sticky_pick(const struct keel_cluster *cl, const struct keel_txn *t,
                       const struct keel_lb_req *lr)
{
    if (!cl->cfg->sticky_cookie || !t->has_sticky)
        return -1;
    for (uint32_t i = 0; i < cl->n_eps; i++)
        if (keel_balancer_ep_hash(&cl->eps[i]) == t->sticky_want && keel_balancer_usable(cl, lr, i))
            return (int)i;
    return -1;
}

/* A circuit breaker limit: 503 at once, counted; no endpoint is tried. */
static void breaker_reject(struct keel_conn *c, struct keel_cluster *cl, int which,
                           const char *limit)
{
    char why[96];
    if (cl->stats)
        atomic_fetch_add_explicit(&cl->stats->cb_rejected[which], 1, memory_order_relaxed);
    snprintf(why, sizeof(why), "circuit breaker: %s reached", limit);
    send_error(c, 503, why, 0);
}

static void dispatch(struct keel_conn *c)
{
    struct keel_worker *w = c->w;
    struct keel_txn *t = &c->t;
    struct keel_cluster *cl0 = &t->ws->snap->clusters[t->cluster];
    if (!t->cb_request && cl0->stats) {
        if (cl0->cfg->max_requests &&
            atomic_load_explicit(&cl0->stats->active_requests, memory_order_relaxed) >=
                (int64_t)cl0->cfg->max_requests) {
            breaker_reject(c, cl0, 2, "max_requests");
            return;
        }
        atomic_fetch_add_explicit(&cl0->stats->active_requests, 1, memory_order_relaxed);
        t->cb_request = 1;
    }
    for (;;) {
        struct keel_cluster *cl = &t->ws->snap->clusters[t->cluster];
        struct keel_lb_req lr = {c->peer_hash, t->tried, t->n_tried,
                                 t->ws->panic ? t->ws->panic[t->cluster] : 0};
        /* lb: hash keys on hash_on's header or cookie (from the head kept for re-dispatch),
         * else on the client IP. */
        if (cl->lb == &keel_lb_hash)
            keel_balancer_key_hash(cl->cfg, t->head.data + t->head.off, t->head.len, &lr.hash);
        int idx = sticky_pick(cl, t, &lr);
        if (idx < 0)
            idx = cl->lb->pick(cl, t->ws->lb_state ? t->ws->lb_state[t->cluster] : NULL, &lr);
        if (idx >= 0 && cl->cfg->sticky_cookie) {
            /* (Re)pin the client when it had no valid cookie or its endpoint is gone. */
            t->sticky_got = keel_balancer_ep_hash(&cl->eps[idx]);
            t->set_sticky = !t->has_sticky || t->sticky_got != t->sticky_want;
        }
        if (lr.panic && idx >= 0 && cl->stats)
            atomic_fetch_add_explicit(&cl->stats->panic, 1, memory_order_relaxed);
        if (idx < 0) {
            if (t->n_tried) {
                send_error(c, t->status == 504 ? 504 : 502,
                           t->status == 504 ? "upstream connect timed out"
                                            : "upstream connection failed",
                           0);
            } else {
                if (cl->stats)
                    atomic_fetch_add_explicit(&cl->stats->no_endpoint, 1, memory_order_relaxed);
                send_error(c, 503, "no eligible endpoint in cluster", 0);
            }
            return;
        }
        struct keel_endpoint *ep = &cl->eps[idx];
        t->ep = idx;
        txn_release_load(t);
        t->load = ep->load;
        keel_ep_load_ref(t->load);
        atomic_fetch_add_explicit(&t->load->active, 1, memory_order_relaxed);
        t->active = 1;
        if (t->n_tried < sizeof(t->tried) / sizeof(t->tried[0]))
            t->tried[t->n_tried++] = (uint32_t)idx;
        int err = 0;
        /* A request without a body is sent again on a new connection when a pooled one
         * turns out closed (up_failed): no need to check the pooled one first. */
        int pooled = t->req_mode == KEEL_H1_BODY_NONE && !t->retried_reuse ? 1 : 2;
        struct keel_upconn *u = keel_up_get(w, ep, cl, pooled, &err);
        if (!u && err == KEEL_ELIMIT) {
            breaker_reject(c, cl, 0, "max_connections");
            return;
        }
        if (!u) {
            atomic_fetch_add_explicit(&ep->load->connect_failures, 1, memory_order_relaxed);
            KEEL_WARN_RL("conn=%llu: connect to %s (cluster %s) failed: %s",
                         (unsigned long long)c->id, ep->name, cl->name, keel_strerror(err));
            report(c, KEEL_OUTCOME_GATEWAY);
            t->status = 502;
            if (t->n_tried >= MAX_TRIES || t->n_tried >= cl->n_eps) {
                send_error(c, 502, "upstream connection failed", 0);
                return;
            }
            continue;
        }
        attach_up(c, u);
        if (keel_buf_append(&u->s.out, t->head.data + t->head.off, t->head.len) != 0) {
            keel_conn_close(c, "out of memory");
            return;
        }
        if (u->state == KEEL_UP_CONNECTING) {
            if (cl->stats && !t->cb_pending) {
                if (cl->cfg->max_pending &&
                    atomic_load_explicit(&cl->stats->pending, memory_order_relaxed) >=
                        (int64_t)cl->cfg->max_pending) {
                    detach_up(c, 0);
                    breaker_reject(c, cl, 1, "max_pending_requests");
                    return;
                }
                atomic_fetch_add_explicit(&cl->stats->pending, 1, memory_order_relaxed);
                t->cb_pending = 1;
            }
            up_timer(u, cl->cfg->connect_timeout_ms / 1000.0);
            update_io(c);
            return;
        }
        up_connected(c);
        return;
    }
}

/* A connection attempt failed: try another endpoint when nothing can have been processed. */
static void connect_failed(struct keel_conn *c, int err)
{
    struct keel_txn *t = &c->t;
    struct keel_upconn *u = c->up;
    struct keel_cluster *cl = &t->ws->snap->clusters[t->cluster];
    atomic_fetch_add_explicit(&u->load->connect_failures, 1, memory_order_relaxed);
    KEEL_WARN_RL("conn=%llu: connect to %s (cluster %s) failed: %s", (unsigned long long)c->id,
                 u->name, cl->name, keel_strerror(err));
    report(c, err == KEEL_ETIMEDOUT ? KEEL_OUTCOME_TIMEOUT : KEEL_OUTCOME_GATEWAY);
    txn_unpend(t);
    detach_up(c, 0);
    t->status = err == KEEL_ETIMEDOUT ? 504 : 502;
    if (t->n_tried >= MAX_TRIES || t->n_tried >= cl->n_eps) {
        send_error(
            c, t->status,
            err == KEEL_ETIMEDOUT ? "upstream connect timed out" : "upstream connection failed", 0);
        return;
    }
    dispatch(c);
}

/* The upstream closed or failed after the request went out. */
/* A request that may have reached the application failed before any response byte reached
 * the client: send it to another endpoint when that is safe (idempotent, no body to replay),
 * allowed (retries left) and affordable (the cluster's retry budget). @return 1 if re-sent. */
/* Exponential backoff with full jitter between tries: 25 ms, 50 ms, ... capped at 250 ms. */
static double retry_delay(struct keel_conn *c)
{
    double cap = 0.025 * (double)(1u << (c->t.retries < 4 ? c->t.retries : 4));
    if (cap > 0.25)
        cap = 0.25;
    return cap * (double)(keel_rand(&c->w->rng) % 1000) / 1000.0;
}

static int try_again_after(struct keel_conn *c, const char *why, double delay);

static int try_again(struct keel_conn *c, const char *why)
{
    return try_again_after(c, why, -1);
}

/* delay < 0: the usual jittered backoff; else wait that long (Retry-After). */
static int try_again_after(struct keel_conn *c, const char *why, double delay)
{
    struct keel_txn *t = &c->t;
    struct keel_cluster *cl = &t->ws->snap->clusters[t->cluster];
    const struct keel_cfg_cluster *cc = cl->cfg;
    if (!cl->stats)
        return 0;
    struct keel_retry_in in = {
        .idempotent = t->idempotent,
        .has_body = t->req_mode != KEEL_H1_BODY_NONE,
        .response_started = t->resp_bytes_to_client > 0,
        .retries = t->retries,
        .retry_max = cc->retry_max,
        .tried = t->n_tried,
        .endpoints = cl->n_eps,
        .already_counted = t->retrying,
        .retries_active = atomic_load_explicit(&cl->stats->retries_active, memory_order_relaxed),
        .requests_active = atomic_load_explicit(&cl->stats->active_requests, memory_order_relaxed),
        .budget_percent = cc->retry_budget_percent,
    };
    enum keel_retry_verdict v = keel_retry_decide(&in);
    if (v == KEEL_RETRY_OVER_BUDGET)
        atomic_fetch_add_explicit(&cl->stats->retries_denied, 1, memory_order_relaxed);
    if (v != KEEL_RETRY_YES)
        return 0;
    if (!t->retrying) {
        atomic_fetch_add_explicit(&cl->stats->retries_active, 1, memory_order_relaxed);
        t->retrying = 1;
    }
    t->retries++;
    atomic_fetch_add_explicit(&cl->stats->retries, 1, memory_order_relaxed);
    KEEL_INFO_RL("conn=%llu req_id=%s: %s; retry %u on another endpoint", (unsigned long long)c->id,
                 t->req_id, why, t->retries);
    detach_up(c, 0);
    t->status = 0;
    t->resp_state = KEEL_RS_NONE;
    t->resp_fwd = 0;
    t->req_done = 0;
    /* The client timer is idle once the request is complete: it times the backoff. */
    t->backing_off = 1;
    double wait = delay >= 0 ? delay : retry_delay(c);
    client_timer(c, wait > 0.001 ? wait : 0.001); /* 0 would not start the timer */
    update_io(c);
    return 1;
}

static void up_failed(struct keel_conn *c, int err, const char *what)
{
    struct keel_txn *t = &c->t;
    struct keel_upconn *u = c->up;
    if (u && keel_tls_handshaking(&u->s) && t->resp_state == KEEL_RS_HEAD &&
        t->req_body_sent == 0) {
        /* The TLS handshake failed (logged with its reason): the request never left keel,
         * so this is a failed connect, retried on another endpoint for every method. */
        connect_failed(c, KEEL_EIO);
        return;
    }
    if (t->resp_state == KEEL_RS_HEAD && u && u->reused && !t->retried_reuse &&
        t->req_body_sent == 0 && t->req_mode == KEEL_H1_BODY_NONE) {
        /* A pooled connection closed by the server before our request reached it: the
         * request was never processed, so sending it on a fresh connection is safe. */
        KEEL_DEBUG("conn=%llu: pooled connection to %s closed, retrying on a new one",
                   (unsigned long long)c->id, u->name);
        t->retried_reuse = 1;
        detach_up(c, 0);
        t->n_tried = t->n_tried ? t->n_tried - 1 : 0; /* same endpoint is fine */
        dispatch(c);
        return;
    }
    if (err == KEEL_EREFUSED && t->resp_state == KEEL_RS_HEAD && t->req_body_sent == 0 &&
        t->resp_bytes_to_client == 0 && t->n_tried < MAX_TRIES) {
        /* HTTP/2 REFUSED_STREAM, or a GOAWAY below this stream: the server says it did not
         * process the request (RFC 9113 8.7), whatever the method. Not the endpoint's fault
         * either (overload, graceful shutdown): no outlier report. */
        KEEL_INFO_RL("conn=%llu req_id=%s: upstream %s did not process the request (stream "
                     "refused, GOAWAY, or its connection failed first); sending it again",
                     (unsigned long long)c->id, t->req_id, u ? u->name : "-");
        detach_up(c, 0);
        t->status = 0;
        t->resp_state = KEEL_RS_NONE;
        t->resp_fwd = 0;
        t->req_done = 0;
        struct keel_cluster *cl = &t->ws->snap->clusters[t->cluster];
        if (t->n_tried >= cl->n_eps && !t->retried_reuse) {
            /* Every endpoint tried (one alone, say, restarting): once more on a new
             * connection to the same one. */
            t->retried_reuse = 1;
            t->n_tried--;
        }
        dispatch(c);
        return;
    }
    if (t->resp_state == KEEL_RS_BODY && t->resp_mode == KEEL_H1_BODY_UNTIL_CLOSE) {
        t->resp_state = KEEL_RS_DONE;
        t->up_reusable = 0;
        c->keepalive = 0;
        up_process(c);
        return;
    }
    if (t->resp_bytes_to_client == 0 && t->resp_state != KEEL_RS_DONE) {
        KEEL_WARN_RL("conn=%llu: upstream %s: %s (%s)", (unsigned long long)c->id,
                     u ? u->name : "-", what, keel_strerror(err));
        report(c, KEEL_OUTCOME_GATEWAY);
        if (try_again(c, what))
            return;
        send_error(c, 502, what, 0);
        return;
    }
    if (t->resp_state == KEEL_RS_DONE) {
        /* Response complete; the request body could not be delivered. */
        t->up_reusable = 0;
        c->keepalive = 0;
        up_process(c);
        return;
    }
    KEEL_WARN_RL("conn=%llu: upstream %s: %s mid-response", (unsigned long long)c->id,
                 u ? u->name : "-", what);
    keel_conn_close(c, what);
}

static void on_up_timer(struct ev_loop *loop, ev_timer *tm, int revents)
{
    struct keel_upconn *u = tm->data;
    struct keel_conn *c = u->owner;
    if (!c)
        return;
    if (u->state == KEEL_UP_CONNECTING) {
        connect_failed(c, KEEL_ETIMEDOUT);
        return;
    }
    if (c->state == KEEL_CS_TUNNEL) {
        keel_conn_close(c, "tunnel idle timeout");
        return;
    }
    if (c->t.resp_bytes_to_client == 0) {
        KEEL_WARN_RL("conn=%llu: upstream %s: response timed out", (unsigned long long)c->id,
                     u->name);
        report(c, KEEL_OUTCOME_TIMEOUT);
        if (try_again(c, "upstream response timed out"))
            return;
        send_error(c, 504, "upstream response timed out", 0);
        return;
    }
    keel_conn_close(c, "upstream idle timeout mid-response");
}

static void on_up_write(struct ev_loop *loop, ev_io *io, int revents)
{
    struct keel_upconn *u = io->data;
    struct keel_conn *c = u->owner;
    if (!c) {
        ev_io_stop(loop, io);
        return;
    }
    if (u->state == KEEL_UP_CONNECTING) {
        int cerr = keel_sock_connect_result(&u->s);
        if (cerr) {
            connect_failed(c, cerr);
            return;
        }
        up_connected(c);
        return;
    }
    if (c->state == KEEL_CS_TUNNEL)
        return; /* tcp_proxy.c owns the callbacks in tunnel mode */
    up_timer(u, c->t.req_done && c->t.resp_state == KEEL_RS_HEAD
                    ? response_timeout_s(c, u->ccfg)
                    : u->ccfg->idle_timeout_ms / 1000.0);
    flush_request(c);
    if (c->state == KEEL_CS_PROXY)
        update_io(c);
}

/* Extends t->resp_fwd over newly arrived body bytes; may finish the response. */
static int advance_resp_body(struct keel_conn *c)
{
    struct keel_txn *t = &c->t;
    struct keel_upconn *u = c->up;
    size_t avail = u->s.in.len - t->resp_fwd;
    if (t->resp_state != KEEL_RS_BODY || t->resp_splice)
        return 0;
    switch (t->resp_mode) {
    case KEEL_H1_BODY_LENGTH: {
        size_t take = avail < t->resp_remaining ? avail : (size_t)t->resp_remaining;
        t->resp_fwd += take;
        t->resp_remaining -= take;
        if (t->resp_remaining == 0)
            t->resp_state = KEEL_RS_DONE;
        return 0;
    }
    case KEEL_H1_BODY_UNTIL_CLOSE:
        t->resp_fwd += avail;
        if (u->s.rd_eof)
            t->resp_state = KEEL_RS_DONE;
        return 0;
    case KEEL_H1_BODY_CHUNKED: {
        if (avail == 0)
            return 0;
        size_t consumed = 0, dlen = 0;
        int done = 0;
        char *p = u->s.in.data + u->s.in.off + t->resp_fwd;
        int rc =
            keel_http1_chunked_feed(&t->resp_chunk, p, avail, t->dechunk, &consumed, &dlen, &done);
        if (rc < 0)
            return rc;
        if (t->dechunk) {
            /* Payload now sits at p[0..dlen); move the unparsed rest right behind it. */
            memmove(p + dlen, p + consumed, avail - consumed);
            u->s.in.len -= consumed - dlen;
            t->resp_fwd += dlen;
        } else {
            t->resp_fwd += consumed;
        }
        if (done)
            t->resp_state = KEEL_RS_DONE;
        return 0;
    }
    default:
        t->resp_state = KEEL_RS_DONE;
        return 0;
    }
}

/* Switches the rest of a Content-Length body to splice() once everything buffered so far
 * went out: two plain sockets (no TLS, no HTTP/2 stream on either side), no re-framing. */
static void resp_splice_start(struct keel_conn *c)
{
    struct keel_txn *t = &c->t;
    struct keel_upconn *u = c->up;
    if (t->resp_splice || t->resp_state != KEEL_RS_BODY || t->resp_mode != KEEL_H1_BODY_LENGTH ||
        t->resp_remaining < SPLICE_MIN || t->resp_fwd || u->s.in.len || c->s.out.len ||
        t->dechunk || !keel_conn_can_splice(c))
        return;
    if (keel_buf_pipe(&u->s.in) != 0)
        return; /* out of descriptors: the body is copied as usual */
    t->resp_splice = 1;
}

/* Writes what the pipe holds to the client; the body is done when nothing is left to read
 * and the pipe is empty. */
static void flush_spliced(struct keel_conn *c)
{
    struct keel_txn *t = &c->t;
    struct keel_upconn *u = c->up;
    ssize_t n = keel_sock_splice_out(u->s.in.pipe, &c->s);
    if (n < 0) {
        keel_conn_close(c, "client write failed");
        return;
    }
    t->bytes_out += (uint64_t)n;
    t->resp_bytes_to_client += (uint64_t)n;
    if (t->resp_remaining == 0 && u->s.in.pipe->len == 0) {
        t->resp_splice = 0;
        keel_buf_drop_pipe(&u->s.in);
        t->resp_state = KEEL_RS_DONE;
    }
}

static void flush_response(struct keel_conn *c)
{
    struct keel_txn *t = &c->t;
    struct keel_upconn *u = c->up;
    if (t->resp_splice && u) {
        flush_spliced(c);
        return;
    }
    const char *extra = u ? u->s.in.data + u->s.in.off : NULL;
    ssize_t n = keel_sock_flush(&c->s, extra, u ? t->resp_fwd : 0);
    if (n < 0) {
        keel_conn_close(c, "client write failed");
        return;
    }
    if (n > 0) {
        keel_buf_consume(&u->s.in, (size_t)n);
        t->resp_fwd -= (size_t)n;
        t->bytes_out += (uint64_t)n;
        t->resp_bytes_to_client += (uint64_t)n;
    }
}

/* Retry-After as delay-seconds; an HTTP-date (or garbage) counts as "too long". */
static double retry_after_s(const struct keel_http1_header *h)
{
    double v = 0;
    if (h->value_len == 0 || h->value_len > 9)
        return 1e9;
    for (size_t i = 0; i < h->value_len; i++) {
        if (h->value[i] < '0' || h->value[i] > '9')
            return 1e9;
        v = v * 10 + (h->value[i] - '0');
    }
    return v;
}

static int retry_status(const struct keel_cfg_cluster *cc, int status)
{
    for (uint32_t i = 0; i < cc->n_retry_on; i++)
        if (cc->retry_on[i] == status)
            return 1;
    return 0;
}

static void up_process(struct keel_conn *c)
{
    struct keel_txn *t = &c->t;
    for (;;) {
        struct keel_upconn *u = c->up;
        if (!u)
            return;
        if (t->resp_state == KEEL_RS_HEAD) {
            struct keel_http1_header hdrs[MAX_HEADERS];
            struct keel_http1_response resp;
            memset(&resp, 0, sizeof(resp));
            resp.headers = hdrs;
            resp.num_headers = MAX_HEADERS;
            struct keel_http1_limits lim = {RESP_HEAD_MAX, RESP_HEAD_MAX, MAX_HEADERS};
            ssize_t n = keel_http1_parse_response(u->s.in.data + u->s.in.off, u->s.in.len, &resp,
                                                  &lim, NULL);
            if (n == KEEL_EAGAIN) {
                if (u->s.rd_eof) {
                    up_failed(c, KEEL_ECLOSED,
                              u->s.in.len ? "upstream closed mid-response-head"
                                          : "upstream closed before responding");
                    return;
                }
                break;
            }
            if (n < 0) {
                KEEL_WARN_RL("conn=%llu: upstream %s sent a bad response: %s",
                             (unsigned long long)c->id, u->name, keel_strerror((int)n));
                t->up_reusable = 0;
                report(c, KEEL_OUTCOME_GATEWAY);
                if (t->resp_bytes_to_client == 0)
                    send_error(c, 502, "bad response from upstream", 0);
                else
                    keel_conn_close(c, "bad response from upstream");
                return;
            }
            if (resp.status < 200 && !(resp.status == 101 && t->is_upgrade)) {
                /* Interim responses (100 Continue) go to HTTP/1.1 clients as they are. */
                if (c->minor >= 1) {
                    keel_buf_printf(&c->s.out, "HTTP/1.1 %d %.*s\r\n\r\n", resp.status,
                                    (int)resp.reason_len, resp.reason);
                }
                keel_buf_consume(&u->s.in, (size_t)n);
                continue;
            }
            t->status = resp.status;
            report(c, resp.status >= 500 ? KEEL_OUTCOME_5XX : KEEL_OUTCOME_OK);
            if (retry_status(u->ccfg, resp.status)) {
                /* Retry-After (seconds) is honoured up to 1 s; longer, the client gets the
                 * answer rather than keel holding the request. */
                double after = -1;
                for (size_t i = 0; i < resp.num_headers; i++)
                    if (keel_http1_name_eq(&resp.headers[i], "retry-after"))
                        after = retry_after_s(&resp.headers[i]);
                if (after <= 1.0 && try_again_after(c, "retryable status", after))
                    return;
            }
            if (t->load) {
                double lat = ev_now(c->w->loop) - t->start;
                keel_outlier_latency(t->load, lat > 0 ? (uint32_t)(lat * 1e6) : 0);
            }
            if (resp.status == 101) {
                t->dechunk = 0;
                if (build_client_head(c, &resp) != 0) {
                    keel_conn_close(c, "out of memory");
                    return;
                }
                keel_buf_consume(&u->s.in, (size_t)n);
                t->resp_state = KEEL_RS_DONE;
                keel_tunnel_start(c);
                return;
            }
            t->up_reusable = resp.minor_version >= 1 ? !(resp.flags & KEEL_H1_F_CONN_CLOSE)
                                                     : !!(resp.flags & KEEL_H1_F_CONN_KEEPALIVE);
            t->resp_mode = keel_http1_response_body(&resp, t->is_head);
            if (t->resp_mode == KEEL_H1_BODY_UNTIL_CLOSE) {
                t->up_reusable = 0;
                c->keepalive = 0;
            }
            if (t->resp_mode == KEEL_H1_BODY_CHUNKED && c->minor == 0) {
                t->dechunk = 1;
                c->keepalive = 0;
            }
            t->resp_remaining = resp.content_length > 0 ? (uint64_t)resp.content_length : 0;
            keel_http1_chunked_init(&t->resp_chunk);
            if (build_client_head(c, &resp) != 0) {
                keel_conn_close(c, "out of memory");
                return;
            }
            keel_buf_consume(&u->s.in, (size_t)n);
            t->resp_state = t->resp_mode == KEEL_H1_BODY_NONE ||
                                    (t->resp_mode == KEEL_H1_BODY_LENGTH && t->resp_remaining == 0)
                                ? KEEL_RS_DONE
                                : KEEL_RS_BODY;
            up_timer(u, u->ccfg->idle_timeout_ms / 1000.0);
        }
        if (advance_resp_body(c) < 0) {
            KEEL_WARN_RL("conn=%llu: upstream %s sent malformed chunked body",
                         (unsigned long long)c->id, u->name);
            keel_conn_close(c, "bad chunked response body");
            return;
        }
        flush_response(c);
        if (c->state != KEEL_CS_PROXY)
            return;
        resp_splice_start(c);
        if (t->resp_state == KEEL_RS_BODY && u->s.rd_eof && t->resp_fwd == 0 && u->s.in.len == 0 &&
            !(t->resp_splice && u->s.in.pipe->len)) {
            up_failed(c, KEEL_ECLOSED, "upstream closed mid-body");
            return;
        }
        if (t->resp_state == KEEL_RS_DONE && t->resp_fwd == 0) {
            if (!t->req_done) {
                /* Answered before the whole request arrived: this connection cannot carry
                 * another exchange on either side. */
                t->up_reusable = 0;
                c->keepalive = 0;
                t->req_done = 1;
            }
            finish_exchange(c);
            return;
        }
        break;
    }
    update_io(c);
}

static void on_up_read(struct ev_loop *loop, ev_io *io, int revents)
{
    struct keel_upconn *u = io->data;
    struct keel_conn *c = u->owner;
    if (!c) {
        ev_io_stop(loop, io);
        return;
    }
    ssize_t n;
    if (c->t.resp_splice) {
        /* Never past the body's end: the connection may carry the next response. */
        n = keel_sock_splice_in(&u->s, (size_t)c->t.resp_remaining);
        if (n > 0)
            c->t.resp_remaining -= (uint64_t)n;
        if (n == KEEL_ENOTIMPL) { /* no splice() on this socket: copy as usual */
            c->t.resp_splice = 0;
            keel_buf_drop_pipe(&u->s.in);
            n = keel_sock_read(&u->s, BODY_BUF);
        }
    } else {
        size_t max = c->t.resp_state == KEEL_RS_HEAD ? RESP_HEAD_MAX + 1 : BODY_BUF;
        n = keel_sock_read(&u->s, max);
    }
    if (n == KEEL_EAGAIN) {
        update_io(c);
        return;
    }
    if (n < 0) {
        if (c->t.resp_state == KEEL_RS_BODY && c->t.resp_mode == KEEL_H1_BODY_UNTIL_CLOSE) {
            u->s.rd_eof = 1;
        } else {
            up_failed(c, (int)n, "upstream connection reset");
            return;
        }
    }
    if (c->t.resp_state != KEEL_RS_HEAD || c->t.req_done == 0)
        up_timer(u, u->ccfg->idle_timeout_ms / 1000.0);
    up_process(c);
}

/* ---- client callbacks -------------------------------------------------------------------- */

static void on_client_read(struct ev_loop *loop, ev_io *io, int revents)
{
    struct keel_conn *c = io->data;
    /* The same bound update_io() reads under: a mismatch would wake this callback for bytes
     * it then refuses (a busy loop, and a feed loop for an HTTP/2 stream). */
    size_t max =
        c->state == KEEL_CS_PROXY && !req_framing_complete(&c->t) ? BODY_BUF : head_limit(c);
    ssize_t n = keel_sock_read(&c->s, max);
    if (n == KEEL_EAGAIN) {
        update_io(c);
        return;
    }
    if (n < 0) {
        keel_conn_close(c, "client read error");
        return;
    }
    if (c->state == KEEL_CS_PROXY && !req_framing_complete(&c->t)) {
        /* At EOF, body bytes still buffered (waiting for the upstream connect) may complete
         * the request: flush_request() decides once they are forwarded. */
        if (n == 0 && c->s.in.len == 0) {
            keel_conn_close(c, "client closed mid-request");
            return;
        }
        if (n > 0)
            client_timer(c, c->lcfg->idle_timeout_ms / 1000.0);
    }
    /* EOF after a complete request is a half-close as far as keel can tell (a full close
     * looks the same until we write): the exchange goes on and the response is delivered,
     * as HAProxy does by default; the connection closes after it. */
    client_process(c);
}

static void on_client_write(struct ev_loop *loop, ev_io *io, int revents)
{
    struct keel_conn *c = io->data;
    if (c->state == KEEL_CS_PROXY) {
        flush_response(c);
        if (c->state == KEEL_CS_PROXY)
            up_process(c);
        return;
    }
    ssize_t n = keel_sock_flush(&c->s, NULL, 0);
    if (n < 0) {
        keel_conn_close(c, "client write failed");
        return;
    }
    if ((c->state == KEEL_CS_IDLE || c->state == KEEL_CS_HEAD) && c->s.in.len > 0 &&
        c->s.out.len < KEEL_OUT_HIGH_WATER) {
        client_process(c); /* pipelined requests waited for the client to read */
        return;
    }
    if (c->state == KEEL_CS_CLOSING && c->s.out.len == 0) {
        /* Half-close first so a client still sending gets our response, not a reset. */
        keel_sock_shutdown(&c->s);
        keel_conn_close(c, "response sent");
        return;
    }
    update_io(c);
}

static void on_client_timer(struct ev_loop *loop, ev_timer *tm, int revents)
{
    struct keel_conn *c = tm->data;
    switch (c->state) {
    case KEEL_CS_HEAD:
        KEEL_INFO_RL("conn=%llu client=%s: request head not complete in time",
                     (unsigned long long)c->id, c->peer_ip);
        c->keepalive = 0;
        c->t.req_done = 1;
        send_error(c, 408, "request head not received in time", 1);
        return;
    case KEEL_CS_TUNNEL:
        keel_conn_close(c, "idle timeout");
        return;
    case KEEL_CS_PROXY:
        if (c->t.backing_off) {
            c->t.backing_off = 0;
            dispatch(c);
            return;
        }
        if (req_framing_complete(&c->t))
            return; /* the body arrived; the upstream timers watch the rest */
        if (!c->s.want_r) {
            /* keel stopped reading (upstream backpressure): not the client's stall. */
            client_timer(c, c->lcfg->idle_timeout_ms / 1000.0);
            return;
        }
        KEEL_INFO_RL("conn=%llu client=%s: request body stalled", (unsigned long long)c->id,
                     c->peer_ip);
        send_error(c, 408, "request body not received in time", 1);
        return;
    default:
        keel_conn_close(c, c->state == KEEL_CS_IDLE ? "keep-alive timeout" : "linger timeout");
        return;
    }
}

struct keel_conn *keel_conn_new(struct keel_worker *w, int fd, uint32_t listener,
                                const struct sockaddr_storage *peer)
{
    struct keel_conn *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->w = w;
    c->id = ++w->next_conn_id * 64 + w->id;
    c->listener = listener;
    c->lcfg = &w->rt->cfg->listeners[listener];
    c->peer = *peer;
    if (fd >= 0) { /* an HTTP/2 stream copies these from its connection */
        keel_addr_ip(peer, c->peer_ip, sizeof(c->peer_ip));
        c->peer_hash = keel_balancer_hash(c->peer_ip, strlen(c->peer_ip));
    }
    c->s.fd = fd;
    c->is_stream = fd < 0;
    ev_io_init(&c->s.rio, on_client_read, fd, EV_READ);
    ev_io_init(&c->s.wio, on_client_write, fd, EV_WRITE);
    c->s.rio.data = c->s.wio.data = c;
    ev_init(&c->timer, on_client_timer);
    c->timer.data = c;
    c->t.cluster = -1;
    c->t.ep = -1;
    c->next = w->conns;
    if (w->conns)
        w->conns->prev = c;
    w->conns = c;
    w->n_conns++;
    if (!c->is_stream)
        atomic_fetch_add_explicit(&w->rt->lstats[listener].active_conns, 1, memory_order_relaxed);
    return c;
}

void keel_http_accept(struct keel_worker *w, int fd, uint32_t listener,
                      const struct sockaddr_storage *peer)
{
    struct keel_conn *c = keel_conn_new(w, fd, listener, peer);
    if (!c) {
        close(fd);
        return;
    }
    c->keepalive = 1;
    c->state = KEEL_CS_IDLE;
    if (c->lcfg->tls.enabled) {
        /* The handshake runs inside the first reads, within the header timeout. */
        if (keel_tls_server_attach(w, &c->s, listener) != 0) {
            keel_conn_close(c, "TLS setup failed");
            return;
        }
        c->is_tls = 1;
    }
    /* The first request must arrive within the header timeout, not the keep-alive one. */
    client_timer(c, c->lcfg->header_timeout_ms / 1000.0);
    update_io(c);
}

void keel_http_stream_start(struct keel_conn *sc)
{
    sc->keepalive = 0; /* one exchange per stream */
    sc->state = KEEL_CS_IDLE;
    client_timer(sc, sc->lcfg->header_timeout_ms / 1000.0);
    update_io(sc);
}

void keel_http_drain_all(struct keel_worker *w)
{
    struct keel_conn *c = w->conns;
    while (c) {
        struct keel_conn *next = c->next;
        c->drain = 1;
        c->keepalive = 0; /* responses still to come say Connection: close */
        if (c->state == KEEL_CS_H2) {
            keel_h2_drain(c);
            c = next;
            continue;
        }
        /* A connection that never sent a request may have one in flight: give it a moment
         * (1 s at most) rather than resetting it, then close it as idle. */
        if (c->state == KEEL_CS_IDLE && c->s.in.len == 0 && !c->is_tcp) {
            if (c->served > 0) {
                close_after_flush(c);
            } else {
                double hdr = c->lcfg->header_timeout_ms / 1000.0;
                client_timer(c, hdr < 1.0 ? hdr : 1.0);
            }
        }
        c = next;
    }
}
