/* SPDX-License-Identifier: MIT */
/* gRPC health check in memory: an nghttp2 client session makes the Health/Check call's bytes
 * and judges the answer fed back to it; no sockets, so it is unit-tested and fuzzed. */
#include <nghttp2/nghttp2.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "keel/err.h"
#include "grpc_health.h"

/* Output waiting for the socket: the request is well below this; later only small frames. */
#define GH_OUT_CAP 4096
#define GH_REASON 96
#define GH_PATH "/grpc.health.v1.Health/Check"

struct keel_grpc_health {
    nghttp2_session *sess;
    enum keel_grpc_health_state state;
    char reason[GH_REASON];
    char authority[KEEL_GRPC_HEALTH_AUTHORITY_MAX + 1];
    char timeout[16];
    /* the DATA of the call: one gRPC message */
    uint8_t req[5 + 3 + KEEL_GRPC_HEALTH_SERVICE_MAX];
    size_t req_len, req_off;
    uint8_t out[GH_OUT_CAP];
    size_t out_len, out_off;
    /* the first bytes, held until they show whether an HTTP/1.x server answered */
    uint8_t head[5];
    size_t head_len;
    int sniffed;
    size_t in_total;
    uint8_t fh[9];     /* the frame header being read */
    size_t fh_len;     /* bytes of it so far */
    size_t frame_left; /* payload bytes of the current frame still to come */
    int32_t stream_id;
    /* what the response said */
    int status; /* final :status, 0: none yet */
    int have_grpc_status;
    int grpc_status; /* -1: not a number */
    char grpc_message[41];
    char content_type[41];
    int have_content_type;
    uint8_t msg[KEEL_GRPC_HEALTH_MSG_MAX];
    size_t msg_len;
    int got_settings; /* the server's preface arrived */
    int goaway;
    uint32_t goaway_code;
    char sess_err[56]; /* first error nghttp2 reported about the connection */
};

const char *keel_grpc_health_state_str(enum keel_grpc_health_state s)
{
    switch (s) {
    case KEEL_GRPC_HEALTH_PENDING:
        return "pending";
    case KEEL_GRPC_HEALTH_SERVING:
        return "serving";
    case KEEL_GRPC_HEALTH_FAILED:
        return "failed";
    }
    return "?";
}

static void decide(struct keel_grpc_health *g, enum keel_grpc_health_state st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void decide(struct keel_grpc_health *g, enum keel_grpc_health_state st, const char *fmt, ...)
{
    if (g->state != KEEL_GRPC_HEALTH_PENDING)
        return; /* the first verdict stands */
    g->state = st;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g->reason, sizeof(g->reason), fmt, ap);
    va_end(ap);
}

/* Copies a header value for a message: at most cap-1 bytes, printable ASCII only. */
static void copy_printable(char *dst, size_t cap, const uint8_t *src, size_t len)
{
    size_t n = len < cap - 1 ? len : cap - 1;
    for (size_t i = 0; i < n; i++)
        dst[i] = (src[i] >= 0x20 && src[i] < 0x7f) ? (char)src[i] : '?';
    dst[n] = 0;
}

static int put_varint(uint8_t *p, size_t cap, uint64_t v, size_t *len)
{
    size_t n = 0;
    do {
        if (n == cap)
            return KEEL_EINVAL;
        uint8_t b = v & 0x7f;
        v >>= 7;
        p[n++] = v ? (uint8_t)(b | 0x80) : b;
    } while (v);
    *len = n;
    return 0;
}

ssize_t keel_grpc_health_request_msg(uint8_t *buf, size_t cap, const char *service)
{
    size_t slen = strlen(service);
    if (slen > KEEL_GRPC_HEALTH_SERVICE_MAX || cap < 5)
        return KEEL_EINVAL;
    size_t body = 0;
    if (slen > 0) {
        /* field 1, wire type 2 (length-delimited); proto3 leaves an empty string out */
        size_t vl;
        if (cap < 6 || put_varint(buf + 6, cap - 6, slen, &vl) != 0)
            return KEEL_EINVAL;
        buf[5] = 0x0a;
        body = 1 + vl + slen;
        if (5 + body > cap)
            return KEEL_EINVAL;
        memcpy(buf + 6 + vl, service, slen);
    }
    buf[0] = 0; /* not compressed */
    buf[1] = (uint8_t)(body >> 24);
    buf[2] = (uint8_t)(body >> 16);
    buf[3] = (uint8_t)(body >> 8);
    buf[4] = (uint8_t)body;
    return (ssize_t)(5 + body);
}

static int get_varint(const uint8_t *p, size_t len, size_t *off, uint64_t *v)
{
    uint64_t r = 0;
    for (unsigned shift = 0; shift < 64; shift += 7) {
        if (*off >= len)
            return KEEL_EBADMSG;
        uint8_t b = p[(*off)++];
        r |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *v = r;
            return 0;
        }
    }
    return KEEL_EBADMSG; /* more than 10 bytes */
}

int keel_grpc_health_parse_response(const uint8_t *buf, size_t len, uint64_t *status)
{
    size_t off = 0;
    uint64_t st = 0;
    while (off < len) {
        uint64_t tag, v;
        if (get_varint(buf, len, &off, &tag) != 0)
            return KEEL_EBADMSG;
        uint64_t field = tag >> 3;
        if (field == 0)
            return KEEL_EBADMSG;
        switch (tag & 7) {
        case 0: /* varint */
            if (get_varint(buf, len, &off, &v) != 0)
                return KEEL_EBADMSG;
            if (field == 1)
                st = v;
            break;
        case 1: /* fixed64 */
            if (len - off < 8)
                return KEEL_EBADMSG;
            off += 8;
            break;
        case 2: /* length-delimited */
            if (get_varint(buf, len, &off, &v) != 0 || v > len - off)
                return KEEL_EBADMSG;
            off += (size_t)v;
            break;
        case 5: /* fixed32 */
            if (len - off < 4)
                return KEEL_EBADMSG;
            off += 4;
            break;
        default: /* groups (deprecated) and invalid wire types */
            return KEEL_EBADMSG;
        }
        if (field == 1 && (tag & 7) != 0)
            return KEEL_EBADMSG; /* the status must be an enum (varint) */
    }
    *status = st;
    return 0;
}

static const char *serving_name(uint64_t st)
{
    switch (st) {
    case 0:
        return "UNKNOWN";
    case 1:
        return "SERVING";
    case 2:
        return "NOT_SERVING";
    case 3:
        return "SERVICE_UNKNOWN";
    }
    return NULL;
}

/* The response is complete (the stream closed cleanly): judge it. */
static void judge(struct keel_grpc_health *g)
{
    if (g->status == 0) {
        decide(g, KEEL_GRPC_HEALTH_FAILED, "grpc stream closed without a response");
        return;
    }
    if (g->status != 200) {
        decide(g, KEEL_GRPC_HEALTH_FAILED, "HTTP %d", g->status);
        return;
    }
    if (g->have_content_type && strncmp(g->content_type, "application/grpc", 16) != 0) {
        decide(g, KEEL_GRPC_HEALTH_FAILED, "not a gRPC response (content-type \"%s\")",
               g->content_type);
        return;
    }
    if (!g->have_grpc_status) {
        decide(g, KEEL_GRPC_HEALTH_FAILED, "grpc response without grpc-status");
        return;
    }
    if (g->grpc_status < 0) {
        decide(g, KEEL_GRPC_HEALTH_FAILED, "invalid grpc-status");
        return;
    }
    if (g->grpc_status != 0) {
        if (g->grpc_message[0])
            decide(g, KEEL_GRPC_HEALTH_FAILED, "grpc-status %d: %s", g->grpc_status,
                   g->grpc_message);
        else
            decide(g, KEEL_GRPC_HEALTH_FAILED, "grpc-status %d", g->grpc_status);
        return;
    }
    if (g->msg_len == 0) {
        decide(g, KEEL_GRPC_HEALTH_FAILED, "grpc response without a message");
        return;
    }
    if (g->msg_len < 5) {
        decide(g, KEEL_GRPC_HEALTH_FAILED, "grpc response message truncated");
        return;
    }
    if (g->msg[0] == 1) {
        decide(g, KEEL_GRPC_HEALTH_FAILED, "compressed grpc response (not asked for)");
        return;
    }
    uint32_t mlen = (uint32_t)g->msg[1] << 24 | (uint32_t)g->msg[2] << 16 |
                    (uint32_t)g->msg[3] << 8 | g->msg[4];
    if (g->msg[0] != 0 || mlen > g->msg_len - 5) {
        decide(g, KEEL_GRPC_HEALTH_FAILED, "grpc response message truncated or malformed");
        return;
    }
    if (mlen < g->msg_len - 5) {
        decide(g, KEEL_GRPC_HEALTH_FAILED, "grpc response with more than one message");
        return;
    }
    uint64_t st;
    if (keel_grpc_health_parse_response(g->msg + 5, mlen, &st) != 0) {
        decide(g, KEEL_GRPC_HEALTH_FAILED, "malformed HealthCheckResponse");
        return;
    }
    const char *name = serving_name(st);
    if (st == 1)
        decide(g, KEEL_GRPC_HEALTH_SERVING, "grpc SERVING");
    else if (name)
        decide(g, KEEL_GRPC_HEALTH_FAILED, "grpc %s", name);
    else
        decide(g, KEEL_GRPC_HEALTH_FAILED, "grpc serving status %llu", (unsigned long long)st);
}

static ssize_t on_send(nghttp2_session *s, const uint8_t *data, size_t len, int flags, void *ud)
{
    struct keel_grpc_health *g = ud;
    size_t room = GH_OUT_CAP - g->out_len;
    if (room == 0)
        return NGHTTP2_ERR_WOULDBLOCK;
    size_t n = len < room ? len : room; /* nghttp2 sends the rest later */
    memcpy(g->out + g->out_len, data, n);
    g->out_len += n;
    return (ssize_t)n;
}

static ssize_t on_read_body(nghttp2_session *s, int32_t sid, uint8_t *buf, size_t len,
                            uint32_t *flags, nghttp2_data_source *src, void *ud)
{
    struct keel_grpc_health *g = ud;
    size_t n = g->req_len - g->req_off;
    if (n > len)
        n = len;
    memcpy(buf, g->req + g->req_off, n);
    g->req_off += n;
    if (g->req_off == g->req_len)
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

static int parse_small_int(const uint8_t *v, size_t len)
{
    if (len == 0 || len > 4)
        return -1;
    int r = 0;
    for (size_t i = 0; i < len; i++) {
        if (v[i] < '0' || v[i] > '9')
            return -1;
        r = r * 10 + (v[i] - '0');
    }
    return r;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags, void *ud)
{
    struct keel_grpc_health *g = ud;
    if (frame->hd.type != NGHTTP2_HEADERS || frame->hd.stream_id != g->stream_id)
        return 0;
    if (namelen == 7 && memcmp(name, ":status", 7) == 0) {
        int st = parse_small_int(value, valuelen);
        if (st >= 200) /* 1xx: an interim response, the final one follows */
            g->status = st;
    } else if (namelen == 11 && memcmp(name, "grpc-status", 11) == 0) {
        g->have_grpc_status = 1;
        g->grpc_status = parse_small_int(value, valuelen);
    } else if (namelen == 12 && memcmp(name, "grpc-message", 12) == 0) {
        copy_printable(g->grpc_message, sizeof(g->grpc_message), value, valuelen);
    } else if (namelen == 12 && memcmp(name, "content-type", 12) == 0) {
        g->have_content_type = 1;
        copy_printable(g->content_type, sizeof(g->content_type), value, valuelen);
    }
    return 0;
}

static int on_data(nghttp2_session *s, uint8_t flags, int32_t sid, const uint8_t *data, size_t len,
                   void *ud)
{
    struct keel_grpc_health *g = ud;
    if (sid != g->stream_id)
        return 0;
    if (len > sizeof(g->msg) - g->msg_len) {
        decide(g, KEEL_GRPC_HEALTH_FAILED, "grpc response larger than %d bytes",
               KEEL_GRPC_HEALTH_MSG_MAX);
        return 0;
    }
    memcpy(g->msg + g->msg_len, data, len);
    g->msg_len += len;
    return 0;
}

static int on_frame(nghttp2_session *s, const nghttp2_frame *frame, void *ud)
{
    struct keel_grpc_health *g = ud;
    if (frame->hd.type == NGHTTP2_SETTINGS)
        g->got_settings = 1;
    /* The response is complete when the server ends the stream, whatever happens later
     * (the stream itself closes only once our side is done too). */
    if ((frame->hd.type == NGHTTP2_HEADERS || frame->hd.type == NGHTTP2_DATA) &&
        frame->hd.stream_id == g->stream_id && (frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
        judge(g);
    if (frame->hd.type == NGHTTP2_GOAWAY) {
        g->goaway = 1;
        g->goaway_code = frame->goaway.error_code;
    }
    return 0;
}

static int on_close(nghttp2_session *s, int32_t sid, uint32_t code, void *ud)
{
    struct keel_grpc_health *g = ud;
    if (sid != g->stream_id)
        return 0;
    if (code == NGHTTP2_NO_ERROR)
        judge(g);
    else if (g->goaway)
        decide(g, KEEL_GRPC_HEALTH_FAILED, "GOAWAY from the server: %s",
               nghttp2_http2_strerror(g->goaway_code));
    else
        decide(g, KEEL_GRPC_HEALTH_FAILED, "grpc stream reset: %s", nghttp2_http2_strerror(code));
    return 0;
}

/* nghttp2 refused a frame of the call (a malformed response): that decides at once, not when
 * its RST_STREAM happens to be sent. */
static int on_invalid(nghttp2_session *s, const nghttp2_frame *frame, int lib_error, void *ud)
{
    struct keel_grpc_health *g = ud;
    if (frame->hd.stream_id == g->stream_id)
        decide(g, KEEL_GRPC_HEALTH_FAILED, "invalid grpc response: %s",
               nghttp2_strerror(lib_error));
    return 0;
}

static int on_error(nghttp2_session *s, int code, const char *msg, size_t len, void *ud)
{
    struct keel_grpc_health *g = ud;
    if (!g->sess_err[0])
        copy_printable(g->sess_err, sizeof(g->sess_err), (const uint8_t *)msg, len);
    return 0;
}

/* The session gave up on the connection: say why as well as it is known. */
static void conn_error(struct keel_grpc_health *g)
{
    if (g->goaway)
        decide(g, KEEL_GRPC_HEALTH_FAILED, "GOAWAY from the server: %s",
               nghttp2_http2_strerror(g->goaway_code));
    else if (!g->got_settings)
        decide(g, KEEL_GRPC_HEALTH_FAILED, "not an HTTP/2 server (no SETTINGS frame first)");
    else if (g->sess_err[0])
        decide(g, KEEL_GRPC_HEALTH_FAILED, "HTTP/2 connection error: %s", g->sess_err);
    else
        decide(g, KEEL_GRPC_HEALTH_FAILED, "HTTP/2 connection error");
}

/* Without a verdict, a session that will read no more can never reach one. */
static void check_alive(struct keel_grpc_health *g)
{
    if (g->state != KEEL_GRPC_HEALTH_PENDING || nghttp2_session_want_read(g->sess))
        return;
    conn_error(g);
}

int keel_grpc_health_new(struct keel_grpc_health **out, const char *authority, const char *service,
                         uint32_t timeout_ms)
{
    size_t alen = strlen(authority);
    if (alen == 0 || alen > KEEL_GRPC_HEALTH_AUTHORITY_MAX)
        return KEEL_EINVAL;
    for (size_t i = 0; i < alen; i++)
        if ((unsigned char)authority[i] <= 0x20 || authority[i] == 0x7f)
            return KEEL_EINVAL;
    struct keel_grpc_health *g = calloc(1, sizeof(*g));
    if (!g)
        return KEEL_ENOMEM;
    int rc = KEEL_ENOMEM;
    nghttp2_session_callbacks *cbs = NULL;
    ssize_t mlen = keel_grpc_health_request_msg(g->req, sizeof(g->req), service);
    if (mlen < 0) {
        rc = KEEL_EINVAL;
        goto fail;
    }
    g->req_len = (size_t)mlen;
    memcpy(g->authority, authority, alen + 1);
    /* grpc-timeout takes at most 8 digits */
    snprintf(g->timeout, sizeof(g->timeout), "%um", timeout_ms > 99999999 ? 99999999 : timeout_ms);
    if (nghttp2_session_callbacks_new(&cbs) != 0)
        goto fail;
    nghttp2_session_callbacks_set_send_callback(cbs, on_send);
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_close);
    nghttp2_session_callbacks_set_error_callback2(cbs, on_error);
    nghttp2_session_callbacks_set_on_invalid_frame_recv_callback(cbs, on_invalid);
    int r = nghttp2_session_client_new(&g->sess, cbs, g);
    nghttp2_session_callbacks_del(cbs);
    if (r != 0)
        goto fail;
    nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_ENABLE_PUSH, 0}};
    if (nghttp2_submit_settings(g->sess, NGHTTP2_FLAG_NONE, iv, 1) != 0)
        goto fail;
#define NV(n, v) {(uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, strlen(v), NGHTTP2_NV_FLAG_NONE}
    nghttp2_nv hdrs[] = {
        NV(":method", "POST"),
        NV(":scheme", "http"),
        NV(":path", GH_PATH),
        NV(":authority", g->authority),
        NV("content-type", "application/grpc"),
        NV("te", "trailers"),
        NV("user-agent", "keel-health-check"),
        NV("grpc-timeout", g->timeout),
    };
#undef NV
    size_t nh = sizeof(hdrs) / sizeof(hdrs[0]) - (timeout_ms ? 0 : 1);
    nghttp2_data_provider dp = {.source = {.ptr = g}, .read_callback = on_read_body};
    int32_t sid = nghttp2_submit_request(g->sess, NULL, hdrs, nh, &dp, g);
    if (sid < 0)
        goto fail;
    g->stream_id = sid;
    *out = g;
    return 0;
fail:
    keel_grpc_health_free(g);
    return rc;
}

void keel_grpc_health_free(struct keel_grpc_health *g)
{
    if (!g)
        return;
    if (g->sess)
        nghttp2_session_del(g->sess);
    free(g);
}

/* Lets the session write what it has queued into out (as far as it fits). */
static void produce(struct keel_grpc_health *g)
{
    if (g->out_off > 0) {
        memmove(g->out, g->out + g->out_off, g->out_len - g->out_off);
        g->out_len -= g->out_off;
        g->out_off = 0;
    }
    if (g->state != KEEL_GRPC_HEALTH_PENDING || g->out_len == GH_OUT_CAP)
        return;
    int rv = nghttp2_session_send(g->sess);
    if (rv != 0)
        decide(g, KEEL_GRPC_HEALTH_FAILED, "HTTP/2 error: %s", nghttp2_strerror(rv));
    else
        check_alive(g);
}

size_t keel_grpc_health_output(struct keel_grpc_health *g, const uint8_t **data)
{
    produce(g);
    *data = g->out + g->out_off;
    return g->out_len - g->out_off;
}

void keel_grpc_health_sent(struct keel_grpc_health *g, size_t n)
{
    size_t left = g->out_len - g->out_off;
    g->out_off += n < left ? n : left;
}

/* Hands bytes to the session. */
static void session_recv(struct keel_grpc_health *g, const uint8_t *in, size_t len)
{
    ssize_t rv = nghttp2_session_mem_recv(g->sess, in, len);
    if (rv < 0) {
        if (rv == NGHTTP2_ERR_NOMEM)
            decide(g, KEEL_GRPC_HEALTH_FAILED, "HTTP/2 error: %s", nghttp2_strerror((int)rv));
        else
            conn_error(g);
    }
}

/* Hands bytes to the session one frame at a time, and lets it answer after each frame header
 * and each frame: what
 * nghttp2 does on its own (reset the stream, end the connection) shows only once its frame is
 * out, so this keeps the verdict independent of how the bytes were split into reads. */
static void recv_bytes(struct keel_grpc_health *g, const uint8_t *in, size_t len)
{
    while (len > 0 && g->state == KEEL_GRPC_HEALTH_PENDING) {
        size_t take;
        int boundary = 0; /* the end of a frame header or of a frame */
        if (g->frame_left == 0) {
            take = sizeof(g->fh) - g->fh_len < len ? sizeof(g->fh) - g->fh_len : len;
            memcpy(g->fh + g->fh_len, in, take);
            g->fh_len += take;
            if (g->fh_len == sizeof(g->fh)) {
                g->fh_len = 0;
                g->frame_left = (size_t)g->fh[0] << 16 | (size_t)g->fh[1] << 8 | g->fh[2];
                boundary = 1; /* a bad header (e.g. too long) ends the connection at once */
            }
        } else {
            take = g->frame_left < len ? g->frame_left : len;
            g->frame_left -= take;
            boundary = g->frame_left == 0;
        }
        session_recv(g, in, take);
        in += take;
        len -= take;
        if (boundary)
            produce(g); /* also notices a connection the session gave up */
    }
}

enum keel_grpc_health_state keel_grpc_health_feed(struct keel_grpc_health *g, const uint8_t *in,
                                                  size_t len)
{
    if (g->state != KEEL_GRPC_HEALTH_PENDING)
        return g->state;
    if (len > KEEL_GRPC_HEALTH_INPUT_MAX - g->in_total) {
        decide(g, KEEL_GRPC_HEALTH_FAILED, "more than %d bytes from the server without a verdict",
               KEEL_GRPC_HEALTH_INPUT_MAX);
        return g->state;
    }
    g->in_total += len;
    if (!g->sniffed) {
        /* A plain HTTP/1.x server answers the preface with a status line: say that rather
         * than the frame-size error nghttp2 would see in it. */
        while (len > 0 && g->head_len < sizeof(g->head)) {
            g->head[g->head_len++] = *in++;
            len--;
        }
        if (memcmp(g->head, "HTTP/", g->head_len) == 0) {
            if (g->head_len < sizeof(g->head))
                return g->state; /* could still be one */
            decide(g, KEEL_GRPC_HEALTH_FAILED, "not an HTTP/2 server (it answered HTTP/1.x)");
            return g->state;
        }
        g->sniffed = 1;
        recv_bytes(g, g->head, g->head_len);
    }
    recv_bytes(g, in, len);
    return g->state;
}

enum keel_grpc_health_state keel_grpc_health_eof(struct keel_grpc_health *g)
{
    if (g->status)
        decide(g, KEEL_GRPC_HEALTH_FAILED, "connection closed before the grpc-status");
    else if (g->in_total == 0)
        decide(g, KEEL_GRPC_HEALTH_FAILED, "connection closed without an answer");
    else
        decide(g, KEEL_GRPC_HEALTH_FAILED, "connection closed before a grpc response");
    return g->state;
}

enum keel_grpc_health_state keel_grpc_health_state(const struct keel_grpc_health *g)
{
    return g->state;
}

const char *keel_grpc_health_reason(const struct keel_grpc_health *g)
{
    return g->reason;
}
