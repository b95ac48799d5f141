/* SPDX-License-Identifier: MIT */
/* Sans-I/O HTTP/2 server session on nghttp2: streams in and out as HTTP/1.1 bytes. */
#include "keel/h2srv.h"

#include <nghttp2/nghttp2.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "keel/err.h"
#include "keel/http1.h"

#define OUT_CAP (64 * 1024)           /* response body bytes buffered per stream */
#define RESP_HEAD_CAP (64 * 1024 + 1) /* one HTTP/1.1 response head from the engine */
#define TRAILER_CAP (64 * 1024)
#define MAX_CONTINUATION 32
#define CONN_WINDOW (16 * 1024 * 1024)
#define CTRL_BURST 500.0 /* control frames: burst, then per second */
#define CTRL_RATE 100.0
#define RESET_RATE_MIN 50.0 /* resets per second; burst twice max_concurrent_streams */
#define ID_WINDOW 1024      /* client stream ids remembered below the highest one (power of 2) */
#define SBUF_KEEP 1024      /* a buffer up to this size keeps its storage when emptied */
#define FREE_STREAMS 64     /* closed stream objects kept per session (at most its peak) */

/* ---- nghttp2 allocator ------------------------------------------------------------------- */

/* nghttp2 allocates per frame and per stream (items, header copies, stream objects): with
 * dozens of streams in flight those bursts overflow malloc's small per-thread caches. Blocks
 * up to MEM_MAX_CLASS bytes come from per-thread lists by power-of-two class instead, each
 * list bounded; a block remembers its class in a 16-byte header. */
#define MEM_HDR 16
#define MEM_MIN_SHIFT 6 /* 64 bytes */
#define MEM_CLASSES 7   /* 64 .. 4096 */
#define MEM_MAX_CLASS ((size_t)1 << (MEM_MIN_SHIFT + MEM_CLASSES - 1))
#define MEM_BIG ((size_t)MEM_CLASSES)

struct mem_free {
    struct mem_free *next;
};

static _Thread_local struct mem_free *mem_list[MEM_CLASSES];
static _Thread_local unsigned mem_count[MEM_CLASSES];
static _Thread_local int mem_registered;
static pthread_key_t mem_key;
static pthread_once_t mem_once = PTHREAD_ONCE_INIT;

static unsigned mem_keep(size_t cls) /* 128 blocks up to 1 KiB, 32 above: ~450 KiB a thread */
{
    return cls <= 4 ? 128 : 32;
}

static void mem_drop(void *unused)
{
    (void)unused;
    mem_registered = 0;
    for (size_t c = 0; c < MEM_CLASSES; c++) {
        while (mem_list[c]) {
            struct mem_free *f = mem_list[c];
            mem_list[c] = f->next;
            free((char *)f - MEM_HDR);
        }
        mem_count[c] = 0;
    }
}

static void mem_key_init(void)
{
    /* The destructor empties a worker's lists when the thread ends. */
    (void)pthread_key_create(&mem_key, mem_drop);
}

static size_t mem_class(size_t n)
{
    if (n > MEM_MAX_CLASS)
        return MEM_BIG;
    size_t c = 0;
    while (((size_t)1 << (MEM_MIN_SHIFT + c)) < n)
        c++;
    return c;
}

static size_t mem_usable(const void *p)
{
    size_t c = *(const size_t *)(const void *)((const char *)p - MEM_HDR);
    return c == MEM_BIG ? ((const size_t *)(const void *)((const char *)p - MEM_HDR))[1]
                        : (size_t)1 << (MEM_MIN_SHIFT + c);
}

static void *mem_malloc(size_t n, void *ud)
{
    (void)ud;
    size_t c = mem_class(n);
    if (c != MEM_BIG && mem_list[c]) {
        struct mem_free *f = mem_list[c];
        mem_list[c] = f->next;
        mem_count[c]--;
        return f;
    }
    size_t sz = c == MEM_BIG ? n : (size_t)1 << (MEM_MIN_SHIFT + c);
    if (sz > SIZE_MAX - MEM_HDR)
        return NULL;
    size_t *hd = malloc(MEM_HDR + sz);
    if (!hd)
        return NULL;
    hd[0] = c;
    hd[1] = sz;
    return (char *)hd + MEM_HDR;
}

static void mem_free(void *p, void *ud)
{
    (void)ud;
    if (!p)
        return;
    size_t c = *(size_t *)(void *)((char *)p - MEM_HDR);
    if (c == MEM_BIG || mem_count[c] >= mem_keep(c)) {
        free((char *)p - MEM_HDR);
        return;
    }
    if (!mem_registered) {
        mem_registered = 1;
        (void)pthread_once(&mem_once, mem_key_init);
        (void)pthread_setspecific(mem_key, &mem_registered);
    }
    struct mem_free *f = p;
    f->next = mem_list[c];
    mem_list[c] = f;
    mem_count[c]++;
}

static void *mem_calloc(size_t n, size_t size, void *ud)
{
    if (size && n > SIZE_MAX / size)
        return NULL;
    void *p = mem_malloc(n * size, ud);
    if (p)
        memset(p, 0, n * size);
    return p;
}

static void *mem_realloc(void *p, size_t n, void *ud)
{
    if (!p)
        return mem_malloc(n, ud);
    size_t have = mem_usable(p);
    if (n <= have)
        return p;
    void *np = mem_malloc(n, ud);
    if (!np)
        return NULL;
    memcpy(np, p, have < n ? have : n);
    mem_free(p, ud);
    return np;
}

static nghttp2_mem mem_ops = {
    .malloc = mem_malloc, .free = mem_free, .calloc = mem_calloc, .realloc = mem_realloc};

nghttp2_mem *keel_h2srv_mem(void)
{
    return &mem_ops;
}

/* A growable byte buffer with a consumed prefix. */
struct sbuf {
    char *p;
    size_t off, len, cap;
};

static int sbuf_add(struct sbuf *b, const void *d, size_t n)
{
    if (n == 0)
        return 0;
    if (b->off && b->off + b->len + n > b->cap) {
        memmove(b->p, b->p + b->off, b->len);
        b->off = 0;
    }
    if (b->off + b->len + n > b->cap) {
        size_t nc = b->cap ? b->cap : 256;
        while (nc < b->off + b->len + n)
            nc *= 2;
        char *np = realloc(b->p, nc);
        if (!np)
            return KEEL_ENOMEM;
        b->p = np;
        b->cap = nc;
    }
    memcpy(b->p + b->off + b->len, d, n);
    b->len += n;
    return 0;
}

static int sbuf_str(struct sbuf *b, const char *s)
{
    return sbuf_add(b, s, strlen(s));
}

static void sbuf_take(struct sbuf *b, size_t n)
{
    b->off += n;
    b->len -= n;
    if (b->len == 0)
        b->off = 0;
}

static void sbuf_free(struct sbuf *b)
{
    free(b->p);
    memset(b, 0, sizeof(*b));
}

/* Empties b; small storage stays for the next use (a stream object is reused). */
static void sbuf_clear(struct sbuf *b)
{
    if (b->cap > SBUF_KEEP) {
        sbuf_free(b);
        return;
    }
    b->off = b->len = 0;
}

enum resp_state { R_HEAD, R_BODY, R_DONE };
enum chunk_state { CK_SIZE, CK_EXT, CK_SIZE_LF, CK_DATA, CK_DATA_CR, CK_DATA_LF, CK_TRAILER };

struct keel_h2srv_stream {
    struct keel_h2srv *h;
    struct keel_h2srv_stream *prev, *next;
    int32_t id;
    void *ud;
    /* request */
    struct sbuf req;     /* HTTP/1.1 bytes for the owner */
    uint64_t unconsumed; /* DATA payload received and not yet pulled (window closed) */
    struct sbuf hdrs;    /* regular fields while the head arrives */
    struct sbuf cookie;  /* cookie crumbs, joined with "; " */
    struct sbuf method, path, authority, host;
    size_t hdr_bytes, hdr_count;
    uint32_t deadline_ms;
    unsigned has_cl : 1;
    unsigned req_head_done : 1;
    unsigned req_chunked : 1;
    unsigned req_ended : 1;
    unsigned in_trailers : 1;
    unsigned grpc : 1;
    unsigned is_head : 1;
    unsigned detached : 1;
    unsigned closed : 1;
    /* response */
    enum resp_state rs;
    struct sbuf rhead;
    enum keel_http1_body mode;
    uint64_t remaining;
    enum chunk_state cs;
    uint64_t csize;
    int cdigits;
    struct sbuf trl; /* chunked trailer section, raw */
    struct sbuf out; /* DATA payload waiting for the client's window */
    unsigned submitted : 1;
    unsigned body_done : 1;
    unsigned deferred : 1;
    unsigned has_trailers : 1;
    unsigned swallow : 1; /* answered by keel (gRPC error): drop the engine's bytes */
};

struct keel_h2srv {
    nghttp2_session *s;
    struct keel_h2srv_cfg cfg;
    struct keel_h2srv_cbs cbs;
    void *ud;
    struct keel_h2srv_stream *streams;
    size_t n_streams;
    size_t n_out;                    /* streams with DATA payload waiting in st->out */
    struct keel_h2srv_stream *spare; /* closed stream objects for reuse (next links) */
    unsigned n_spare;
    const uint8_t *pend; /* mem_send data not yet copied out */
    size_t pend_len;
    enum keel_h2srv_abuse abuse;
    int failed;
    uint64_t now_ms;
    double reset_tokens, ctrl_tokens;
    uint64_t reset_ts, ctrl_ts;
    unsigned cont_count;
    int32_t max_id;                    /* highest client stream id a HEADERS frame used */
    uint64_t used_ids[ID_WINDOW / 64]; /* bit (id+1)/2 % ID_WINDOW: that odd id was used */
    uint8_t raw_goaway[17];            /* written by keel itself after a fatal nghttp2 error */
    size_t raw_goaway_len;
};

const char *keel_h2srv_abuse_str(enum keel_h2srv_abuse a)
{
    switch (a) {
    case KEEL_H2_ABUSE_NONE:
        return "none";
    case KEEL_H2_ABUSE_HEADERS:
        return "header list over the limit";
    case KEEL_H2_ABUSE_CONTINUATION:
        return "CONTINUATION flood";
    case KEEL_H2_ABUSE_RESET:
        return "stream reset flood (rapid reset)";
    case KEEL_H2_ABUSE_CONTROL:
        return "control frame flood";
    case KEEL_H2_ABUSE_FLOOD:
        return "peer not reading its ACKs (flood)";
    case KEEL_H2_ABUSE_PROTOCOL:
        return "protocol error";
    }
    return "?";
}

/* Token bucket: 1 while tokens remain, 0 when the caller exceeded the rate. */
static int bucket_take(struct keel_h2srv *h, double *tokens, uint64_t *ts, double burst,
                       double rate)
{
    if (h->now_ms > *ts) {
        *tokens += (double)(h->now_ms - *ts) * rate / 1000.0;
        if (*tokens > burst)
            *tokens = burst;
        *ts = h->now_ms;
    }
    if (*tokens < 1.0)
        return 0;
    *tokens -= 1.0;
    return 1;
}

static double reset_burst(const struct keel_h2srv *h)
{
    double b = 2.0 * h->cfg.max_concurrent_streams;
    return b < 100.0 ? 100.0 : b;
}

static int fail(struct keel_h2srv *h, enum keel_h2srv_abuse why)
{
    if (h->abuse == KEEL_H2_ABUSE_NONE)
        h->abuse = why;
    nghttp2_session_terminate_session(
        h->s, why == KEEL_H2_ABUSE_PROTOCOL ? NGHTTP2_PROTOCOL_ERROR : NGHTTP2_ENHANCE_YOUR_CALM);
    return NGHTTP2_ERR_CALLBACK_FAILURE;
}

static int take_reset(struct keel_h2srv *h)
{
    double burst = reset_burst(h);
    double rate = h->cfg.max_concurrent_streams / 2.0;
    if (rate < RESET_RATE_MIN)
        rate = RESET_RATE_MIN;
    if (!bucket_take(h, &h->reset_tokens, &h->reset_ts, burst, rate))
        return fail(h, KEEL_H2_ABUSE_RESET);
    return 0;
}

/* ---- streams ----------------------------------------------------------------------------- */

/* The buffers of a stream, in one place for clearing and freeing. */
#define STREAM_BUFS(st)                                                                            \
    {                                                                                              \
        &(st)->req, &(st)->hdrs, &(st)->cookie, &(st)->method, &(st)->path, &(st)->authority,      \
            &(st)->host, &(st)->rhead, &(st)->trl, &(st)->out                                      \
    }

static struct keel_h2srv_stream *stream_new(struct keel_h2srv *h, int32_t id)
{
    struct keel_h2srv_stream *st = h->spare;
    if (st) {
        h->spare = st->next;
        h->n_spare--;
        /* Everything zero as from calloc, but the buffers keep their (empty) storage. */
        struct sbuf keep[10];
        struct sbuf *bufs[] = STREAM_BUFS(st);
        for (size_t i = 0; i < 10; i++)
            keep[i] = *bufs[i];
        memset(st, 0, sizeof(*st));
        for (size_t i = 0; i < 10; i++)
            *bufs[i] = keep[i];
    } else {
        st = calloc(1, sizeof(*st));
        if (!st)
            return NULL;
    }
    st->h = h;
    st->id = id;
    st->next = h->streams;
    if (h->streams)
        h->streams->prev = st;
    h->streams = st;
    h->n_streams++;
    return st;
}

static void stream_free(struct keel_h2srv_stream *st)
{
    struct keel_h2srv *h = st->h;
    if (st->prev)
        st->prev->next = st->next;
    else
        h->streams = st->next;
    if (st->next)
        st->next->prev = st->prev;
    h->n_streams--;
    if (st->out.len)
        h->n_out--;
    struct sbuf *bufs[] = STREAM_BUFS(st);
    _Static_assert(sizeof(bufs) / sizeof(bufs[0]) == 10, "stream_new copies 10 buffers");
    int keep = h->n_spare < FREE_STREAMS;
    for (size_t i = 0; i < sizeof(bufs) / sizeof(bufs[0]); i++) {
        if (keep)
            sbuf_clear(bufs[i]);
        else
            sbuf_free(bufs[i]);
    }
    if (!keep) {
        free(st);
        return;
    }
    st->next = h->spare;
    h->spare = st;
    h->n_spare++;
}

/* Response payload in and out of st->out, counting the streams that hold some. */
static int out_add(struct keel_h2srv_stream *st, const char *p, size_t n)
{
    size_t before = st->out.len;
    if (sbuf_add(&st->out, p, n))
        return KEEL_ENOMEM;
    if (before == 0 && st->out.len)
        st->h->n_out++;
    return 0;
}

static void out_take(struct keel_h2srv_stream *st, size_t n)
{
    sbuf_take(&st->out, n);
    if (n && st->out.len == 0)
        st->h->n_out--;
}

static struct keel_h2srv_stream *stream_get(struct keel_h2srv *h, int32_t id)
{
    return nghttp2_session_get_stream_user_data(h->s, id);
}

static void notify_readable(struct keel_h2srv_stream *st)
{
    if (st->ud && !st->detached && st->h->cbs.on_readable)
        st->h->cbs.on_readable(st->h->ud, st->ud);
}

/* grpc-timeout: 1 to 8 digits and a unit (H M S m u n), RFC of gRPC over HTTP/2. */
static uint32_t parse_grpc_timeout(const uint8_t *v, size_t len)
{
    if (len < 2 || len > 9)
        return 0;
    uint64_t n = 0;
    for (size_t i = 0; i + 1 < len; i++) {
        if (v[i] < '0' || v[i] > '9')
            return 0;
        n = n * 10 + (uint64_t)(v[i] - '0');
    }
    uint64_t ms;
    switch (v[len - 1]) {
    case 'H':
        ms = n * 3600000;
        break;
    case 'M':
        ms = n * 60000;
        break;
    case 'S':
        ms = n * 1000;
        break;
    case 'm':
        ms = n;
        break;
    case 'u':
        ms = (n + 999) / 1000;
        break;
    case 'n':
        ms = (n + 999999) / 1000000;
        break;
    default:
        return 0;
    }
    if (ms == 0)
        ms = 1;
    return ms > 86400000 ? 86400000 : (uint32_t)ms;
}

static int name_is(const uint8_t *name, size_t len, const char *lower)
{
    return strlen(lower) == len && memcmp(name, lower, len) == 0;
}

/* Builds the HTTP/1.1 request head once the HEADERS block is complete. */
static int build_request(struct keel_h2srv_stream *st, int end_stream)
{
    struct sbuf *r = &st->req;
    int rc = 0;
    if (st->method.len == 0)
        return KEEL_EBADMSG;
    rc |= sbuf_add(r, st->method.p + st->method.off, st->method.len);
    rc |= sbuf_str(r, " ");
    if (st->path.len)
        rc |= sbuf_add(r, st->path.p + st->path.off, st->path.len);
    else if (st->authority.len) /* CONNECT */
        rc |= sbuf_add(r, st->authority.p + st->authority.off, st->authority.len);
    else
        return KEEL_EBADMSG;
    rc |= sbuf_str(r, " HTTP/1.1\r\nhost: ");
    /* RFC 9113 8.3.1: :authority wins over a Host field. */
    const struct sbuf *auth = st->authority.len ? &st->authority : &st->host;
    rc |= sbuf_add(r, auth->p + auth->off, auth->len);
    rc |= sbuf_str(r, "\r\n");
    if (st->hdrs.len)
        rc |= sbuf_add(r, st->hdrs.p + st->hdrs.off, st->hdrs.len);
    if (st->cookie.len) {
        rc |= sbuf_str(r, "cookie: ");
        rc |= sbuf_add(r, st->cookie.p + st->cookie.off, st->cookie.len);
        rc |= sbuf_str(r, "\r\n");
    }
    if (end_stream) {
        st->req_ended = 1;
        /* A body-less POST still says so, as HTTP/1.1 servers expect a length for it. */
        int wants_len =
            (st->method.len == 4 && !memcmp(st->method.p + st->method.off, "POST", 4)) ||
            (st->method.len == 3 && !memcmp(st->method.p + st->method.off, "PUT", 3)) ||
            (st->method.len == 5 && !memcmp(st->method.p + st->method.off, "PATCH", 5));
        if (wants_len && !st->has_cl)
            rc |= sbuf_str(r, "content-length: 0\r\n");
    } else if (!st->has_cl) {
        st->req_chunked = 1;
        rc |= sbuf_str(r, "transfer-encoding: chunked\r\n");
    }
    rc |= sbuf_str(r, "\r\n");
    st->req_head_done = 1;
    sbuf_clear(&st->hdrs);
    sbuf_clear(&st->cookie);
    return rc ? KEEL_ENOMEM : 0;
}

/* ---- nghttp2 callbacks ------------------------------------------------------------------- */

/* RFC 9113 5.1.1: the first use of a client stream id closes every lower idle one, so HEADERS
 * on a lower id that was never used is a connection error (nghttp2 ignores it). Ids that were
 * used (closed, reset, refused) are left to nghttp2, which must ignore late frames after a
 * reset; so are ids older than the window. Notes the id of each HEADERS frame. 1: skipped. */
static int stream_id_skipped(struct keel_h2srv *h, int32_t id)
{
    if (id <= 0 || !(id & 1))
        return 0; /* nghttp2 rejects stream 0 and even ids itself */
    uint32_t n = ((uint32_t)id + 1) / 2, top = ((uint32_t)h->max_id + 1) / 2;
    if (n > top) {
        if (n - top >= ID_WINDOW)
            memset(h->used_ids, 0, sizeof(h->used_ids));
        else
            for (uint32_t i = top + 1; i < n; i++)
                h->used_ids[(i % ID_WINDOW) / 64] &= ~(1ULL << (i % 64));
        h->used_ids[(n % ID_WINDOW) / 64] |= 1ULL << (n % 64);
        h->max_id = id;
        return 0;
    }
    if (n == top || top - n >= ID_WINDOW)
        return 0;
    return !(h->used_ids[(n % ID_WINDOW) / 64] & (1ULL << (n % 64)));
}

static int on_begin_frame(nghttp2_session *s, const nghttp2_frame_hd *hd, void *ud)
{
    struct keel_h2srv *h = ud;
    (void)s;
    switch (hd->type) {
    case NGHTTP2_HEADERS:
        h->cont_count = 0;
        if (stream_id_skipped(h, hd->stream_id))
            return fail(h, KEEL_H2_ABUSE_PROTOCOL);
        break;
    case NGHTTP2_CONTINUATION:
        if (++h->cont_count > MAX_CONTINUATION)
            return fail(h, KEEL_H2_ABUSE_CONTINUATION);
        break;
    case NGHTTP2_PING:
    case NGHTTP2_SETTINGS:
    case NGHTTP2_PRIORITY:
        if (!(hd->flags & NGHTTP2_FLAG_ACK) &&
            !bucket_take(h, &h->ctrl_tokens, &h->ctrl_ts, CTRL_BURST, CTRL_RATE))
            return fail(h, KEEL_H2_ABUSE_CONTROL);
        break;
    case NGHTTP2_DATA:
        if (hd->length == 0 && !(hd->flags & NGHTTP2_FLAG_END_STREAM) &&
            !bucket_take(h, &h->ctrl_tokens, &h->ctrl_ts, CTRL_BURST, CTRL_RATE))
            return fail(h, KEEL_H2_ABUSE_CONTROL);
        break;
    case NGHTTP2_RST_STREAM:
        return take_reset(h);
    default:
        break;
    }
    return 0;
}

static int on_begin_headers(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    struct keel_h2srv *h = ud;
    if (f->hd.type != NGHTTP2_HEADERS)
        return 0;
    if (f->headers.cat == NGHTTP2_HCAT_REQUEST) {
        struct keel_h2srv_stream *st = stream_new(h, f->hd.stream_id);
        if (!st)
            return NGHTTP2_ERR_CALLBACK_FAILURE;
        nghttp2_session_set_stream_user_data(s, f->hd.stream_id, st);
        return 0;
    }
    struct keel_h2srv_stream *st = stream_get(h, f->hd.stream_id);
    if (st && st->req_head_done) {
        st->in_trailers = 1;
        st->hdr_bytes = st->hdr_count = 0;
    }
    return 0;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags, void *ud)
{
    struct keel_h2srv *h = ud;
    (void)s;
    (void)flags;
    if (f->hd.type != NGHTTP2_HEADERS)
        return 0;
    struct keel_h2srv_stream *st = stream_get(h, f->hd.stream_id);
    if (!st)
        return 0;
    st->hdr_bytes += namelen + valuelen + 32;
    if (st->hdr_bytes > h->cfg.max_header_list || ++st->hdr_count > h->cfg.max_headers)
        return fail(h, KEEL_H2_ABUSE_HEADERS);
    int rc = 0;
    if (st->in_trailers) {
        if (namelen && name[0] == ':')
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        if (!st->req_chunked)
            return 0; /* content-length framing cannot carry trailers: dropped */
        rc |= sbuf_add(&st->trl, name, namelen);
        rc |= sbuf_str(&st->trl, ": ");
        rc |= sbuf_add(&st->trl, value, valuelen);
        rc |= sbuf_str(&st->trl, "\r\n");
        return rc ? NGHTTP2_ERR_CALLBACK_FAILURE : 0;
    }
    if (namelen && name[0] == ':') {
        struct sbuf *dst = NULL;
        if (name_is(name, namelen, ":method"))
            dst = &st->method;
        else if (name_is(name, namelen, ":path"))
            dst = &st->path;
        else if (name_is(name, namelen, ":authority"))
            dst = &st->authority;
        if (dst && sbuf_add(dst, value, valuelen))
            return NGHTTP2_ERR_CALLBACK_FAILURE;
        if (dst == &st->method)
            st->is_head = valuelen == 4 && !memcmp(value, "HEAD", 4);
        return 0; /* :scheme: the engine adds X-Forwarded-Proto from the connection */
    }
    if (name_is(name, namelen, "cookie")) {
        if (st->cookie.len)
            rc |= sbuf_str(&st->cookie, "; ");
        rc |= sbuf_add(&st->cookie, value, valuelen);
        return rc ? NGHTTP2_ERR_CALLBACK_FAILURE : 0;
    }
    if (name_is(name, namelen, "host")) {
        if (st->host.len == 0 && sbuf_add(&st->host, value, valuelen))
            return NGHTTP2_ERR_CALLBACK_FAILURE;
        return 0;
    }
    if (name_is(name, namelen, "content-length"))
        st->has_cl = 1;
    else if (name_is(name, namelen, "content-type"))
        st->grpc = valuelen >= 16 && !memcmp(value, "application/grpc", 16);
    else if (name_is(name, namelen, "grpc-timeout"))
        st->deadline_ms = parse_grpc_timeout(value, valuelen);
    rc |= sbuf_add(&st->hdrs, name, namelen);
    rc |= sbuf_str(&st->hdrs, ": ");
    rc |= sbuf_add(&st->hdrs, value, valuelen);
    rc |= sbuf_str(&st->hdrs, "\r\n");
    return rc ? NGHTTP2_ERR_CALLBACK_FAILURE : 0;
}

static int end_request(struct keel_h2srv_stream *st)
{
    if (st->req_ended)
        return 0;
    st->req_ended = 1;
    int rc = 0;
    if (st->req_chunked) {
        rc |= sbuf_str(&st->req, "0\r\n");
        if (st->trl.len)
            rc |= sbuf_add(&st->req, st->trl.p + st->trl.off, st->trl.len);
        rc |= sbuf_str(&st->req, "\r\n");
        sbuf_clear(&st->trl);
    }
    notify_readable(st);
    return rc;
}

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    struct keel_h2srv *h = ud;
    int end = (f->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
    struct keel_h2srv_stream *st = f->hd.stream_id ? stream_get(h, f->hd.stream_id) : NULL;
    if (!st)
        return 0;
    switch (f->hd.type) {
    case NGHTTP2_HEADERS:
        if (f->headers.cat == NGHTTP2_HCAT_REQUEST) {
            int rc = build_request(st, end);
            if (rc == KEEL_ENOMEM)
                return NGHTTP2_ERR_CALLBACK_FAILURE;
            if (rc) {
                nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_PROTOCOL_ERROR);
                return 0;
            }
            st->ud = h->cbs.on_request ? h->cbs.on_request(h->ud, st) : NULL;
            if (!st->ud) {
                st->detached = 1;
                nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_REFUSED_STREAM);
                return 0;
            }
            notify_readable(st);
        } else if (end && end_request(st)) {
            return NGHTTP2_ERR_CALLBACK_FAILURE;
        }
        break;
    case NGHTTP2_DATA:
        if (end && end_request(st))
            return NGHTTP2_ERR_CALLBACK_FAILURE;
        break;
    default:
        break;
    }
    return 0;
}

static int on_data_chunk(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data,
                         size_t len, void *ud)
{
    struct keel_h2srv *h = ud;
    (void)flags;
    struct keel_h2srv_stream *st = stream_get(h, id);
    if (!st || st->detached || !st->req_head_done) {
        nghttp2_session_consume(s, id, len); /* nobody reads it: keep the windows open */
        return 0;
    }
    int rc = 0;
    if (st->req_chunked) {
        char sz[24];
        size_t n = 0;
        for (int sh = (int)(sizeof(len) * 8) - 4; sh >= 0; sh -= 4) /* "%zx\r\n" */
            if ((len >> sh) || n || sh == 0)
                sz[n++] = "0123456789abcdef"[(len >> sh) & 15];
        sz[n++] = '\r';
        sz[n++] = '\n';
        rc |= sbuf_add(&st->req, sz, n);
    }
    rc |= sbuf_add(&st->req, data, len);
    if (st->req_chunked)
        rc |= sbuf_str(&st->req, "\r\n");
    if (rc)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    st->unconsumed += len;
    notify_readable(st);
    return 0;
}

static int on_stream_close(nghttp2_session *s, int32_t id, uint32_t error_code, void *ud)
{
    struct keel_h2srv *h = ud;
    struct keel_h2srv_stream *st = stream_get(h, id);
    if (!st)
        return 0;
    nghttp2_session_set_stream_user_data(s, id, NULL);
    st->closed = 1;
    if (st->ud && !st->detached && h->cbs.on_close)
        h->cbs.on_close(h->ud, st->ud, error_code);
    stream_free(st);
    return 0;
}

/* Resets keel sends because of the client's mistakes count like the client's own (MadeYouReset). */
static int on_frame_send(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    struct keel_h2srv *h = ud;
    (void)s;
    if (f->hd.type == NGHTTP2_RST_STREAM) {
        uint32_t e = f->rst_stream.error_code;
        if (e == NGHTTP2_PROTOCOL_ERROR || e == NGHTTP2_FLOW_CONTROL_ERROR ||
            e == NGHTTP2_STREAM_CLOSED || e == NGHTTP2_FRAME_SIZE_ERROR ||
            e == NGHTTP2_REFUSED_STREAM)
            return take_reset(h) ? NGHTTP2_ERR_CALLBACK_FAILURE : 0;
    }
    return 0;
}

static int on_invalid_frame(nghttp2_session *s, const nghttp2_frame *f, int lib_error, void *ud)
{
    struct keel_h2srv *h = ud;
    (void)s;
    (void)f;
    (void)lib_error;
    return take_reset(h) ? NGHTTP2_ERR_CALLBACK_FAILURE : 0;
}

static ssize_t read_body(nghttp2_session *s, int32_t id, uint8_t *buf, size_t length,
                         uint32_t *data_flags, nghttp2_data_source *src, void *ud)
{
    struct keel_h2srv *h = ud;
    struct keel_h2srv_stream *st = src->ptr;
    size_t n = st->out.len < length ? st->out.len : length;
    if (n) {
        memcpy(buf, st->out.p + st->out.off, n);
        out_take(st, n);
        if (st->ud && !st->detached && h->cbs.on_writable)
            h->cbs.on_writable(h->ud, st->ud);
    }
    if (st->out.len == 0 && st->body_done) {
        *data_flags |= NGHTTP2_DATA_FLAG_EOF;
        if (st->has_trailers) {
            /* The trailer section (validated by the engine) as a HEADERS frame. */
            nghttp2_nv nv[64];
            size_t k = 0;
            char *p = st->trl.p + st->trl.off, *end = p + st->trl.len;
            while (p < end && k < 64) {
                char *eol = memchr(p, '\n', (size_t)(end - p));
                if (!eol)
                    break;
                char *line_end = eol > p && eol[-1] == '\r' ? eol - 1 : eol;
                char *colon = memchr(p, ':', (size_t)(line_end - p));
                if (colon && colon > p) {
                    for (char *q = p; q < colon; q++)
                        if (*q >= 'A' && *q <= 'Z')
                            *q = (char)(*q - 'A' + 'a');
                    char *v = colon + 1;
                    while (v < line_end && (*v == ' ' || *v == '\t'))
                        v++;
                    char *ve = line_end;
                    while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
                        ve--;
                    nv[k++] = (nghttp2_nv){(uint8_t *)p, (uint8_t *)v, (size_t)(colon - p),
                                           (size_t)(ve - v), NGHTTP2_NV_FLAG_NONE};
                }
                p = eol + 1;
            }
            if (k && nghttp2_submit_trailer(s, id, nv, k) == 0)
                *data_flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
        }
        return (ssize_t)n;
    }
    if (n == 0) {
        st->deferred = 1;
        return NGHTTP2_ERR_DEFERRED;
    }
    return (ssize_t)n;
}

/* ---- session ----------------------------------------------------------------------------- */

struct keel_h2srv *keel_h2srv_new(const struct keel_h2srv_cfg *cfg,
                                  const struct keel_h2srv_cbs *cbs, void *ud)
{
    struct keel_h2srv *h = calloc(1, sizeof(*h));
    if (!h)
        return NULL;
    h->cfg = *cfg;
    if (!h->cfg.max_concurrent_streams)
        h->cfg.max_concurrent_streams = 100;
    if (!h->cfg.initial_window_size)
        h->cfg.initial_window_size = 256 * 1024;
    if (!h->cfg.max_header_list)
        h->cfg.max_header_list = 65536;
    if (!h->cfg.max_headers)
        h->cfg.max_headers = 100;
    h->cbs = *cbs;
    h->ud = ud;
    h->reset_tokens = reset_burst(h);
    h->ctrl_tokens = CTRL_BURST;
    nghttp2_session_callbacks *cb;
    nghttp2_option *opt;
    if (nghttp2_session_callbacks_new(&cb) != 0) {
        free(h);
        return NULL;
    }
    if (nghttp2_option_new(&opt) != 0) {
        nghttp2_session_callbacks_del(cb);
        free(h);
        return NULL;
    }
    nghttp2_session_callbacks_set_on_begin_frame_callback(cb, on_begin_frame);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
    nghttp2_session_callbacks_set_on_frame_send_callback(cb, on_frame_send);
    nghttp2_session_callbacks_set_on_invalid_frame_recv_callback(cb, on_invalid_frame);
    nghttp2_option_set_no_auto_window_update(opt, 1);
    nghttp2_option_set_max_outbound_ack(opt, 1000);
    nghttp2_option_set_max_settings(opt, 32);
    nghttp2_option_set_max_deflate_dynamic_table_size(opt, 4096);
    int rc = nghttp2_session_server_new3(&h->s, cb, h, opt, keel_h2srv_mem());
    nghttp2_session_callbacks_del(cb);
    nghttp2_option_del(opt);
    if (rc != 0) {
        free(h);
        return NULL;
    }
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, h->cfg.max_concurrent_streams},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, h->cfg.initial_window_size},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, (uint32_t)h->cfg.max_header_list},
        {NGHTTP2_SETTINGS_HEADER_TABLE_SIZE, 4096},
    };
    if (nghttp2_submit_settings(h->s, NGHTTP2_FLAG_NONE, iv, sizeof(iv) / sizeof(iv[0])) != 0 ||
        nghttp2_session_set_local_window_size(h->s, NGHTTP2_FLAG_NONE, 0, CONN_WINDOW) != 0) {
        nghttp2_session_del(h->s);
        free(h);
        return NULL;
    }
    return h;
}

void keel_h2srv_free(struct keel_h2srv *h)
{
    if (!h)
        return;
    while (h->streams)
        stream_free(h->streams);
    while (h->spare) {
        struct keel_h2srv_stream *st = h->spare;
        h->spare = st->next;
        struct sbuf *bufs[] = STREAM_BUFS(st);
        for (size_t i = 0; i < sizeof(bufs) / sizeof(bufs[0]); i++)
            sbuf_free(bufs[i]);
        free(st);
    }
    nghttp2_session_del(h->s);
    free(h);
}

ssize_t keel_h2srv_recv(struct keel_h2srv *h, const uint8_t *p, size_t len)
{
    if (h->failed)
        return KEEL_EBADMSG;
    ssize_t n = nghttp2_session_mem_recv(h->s, p, len);
    if (n < 0) {
        h->failed = 1;
        if (h->abuse == KEEL_H2_ABUSE_NONE)
            h->abuse = n == NGHTTP2_ERR_FLOODED                  ? KEEL_H2_ABUSE_FLOOD
                       : n == NGHTTP2_ERR_TOO_MANY_CONTINUATIONS ? KEEL_H2_ABUSE_CONTINUATION
                                                                 : KEEL_H2_ABUSE_PROTOCOL;
        /* After a fatal error nghttp2 may queue no GOAWAY, or refuse to send the one it
         * queued: keel writes its own first, so the client always learns why (a second one
         * from nghttp2 may follow; RFC 9113 allows several). */
        uint32_t code =
            h->abuse == KEEL_H2_ABUSE_PROTOCOL ? NGHTTP2_PROTOCOL_ERROR : NGHTTP2_ENHANCE_YOUR_CALM;
        int32_t last = nghttp2_session_get_last_proc_stream_id(h->s);
        uint8_t *g = h->raw_goaway;
        memset(g, 0, sizeof(h->raw_goaway));
        g[2] = 8;
        g[3] = NGHTTP2_GOAWAY;
        for (int i = 0; i < 4; i++) {
            g[9 + i] = (uint8_t)((uint32_t)last >> (24 - 8 * i));
            g[13 + i] = (uint8_t)(code >> (24 - 8 * i));
        }
        h->raw_goaway_len = sizeof(h->raw_goaway);
        return KEEL_EBADMSG;
    }
    return n;
}

ssize_t keel_h2srv_send(struct keel_h2srv *h, uint8_t *dst, size_t cap)
{
    size_t done = 0;
    int nghttp2_done = 0; /* nothing more from nghttp2 now (or it failed) */
    while (done < cap && !nghttp2_done) {
        if (h->pend_len == 0) {
            const uint8_t *d;
            ssize_t n = nghttp2_session_mem_send(h->s, &d);
            if (n <= 0) {
                if (n < 0)
                    h->failed = 1;
                nghttp2_done = 1;
                break;
            }
            h->pend = d;
            h->pend_len = (size_t)n;
        }
        size_t k = h->pend_len < cap - done ? h->pend_len : cap - done;
        memcpy(dst + done, h->pend, k);
        h->pend += k;
        h->pend_len -= k;
        done += k;
    }
    /* keel's own GOAWAY after a fatal error goes after what nghttp2 still had (its SETTINGS
     * must come first on a new connection). */
    if (nghttp2_done && h->raw_goaway_len && cap - done >= h->raw_goaway_len) {
        memcpy(dst + done, h->raw_goaway, h->raw_goaway_len);
        done += h->raw_goaway_len;
        h->raw_goaway_len = 0;
    }
    if (done == 0 && h->failed && !h->raw_goaway_len)
        return KEEL_EBADMSG;
    return (ssize_t)done;
}

int keel_h2srv_want_write(const struct keel_h2srv *h)
{
    return h->raw_goaway_len > 0 || h->pend_len > 0 || nghttp2_session_want_write(h->s);
}

int keel_h2srv_alive(const struct keel_h2srv *h)
{
    return h->raw_goaway_len > 0 || h->pend_len > 0 || nghttp2_session_want_read(h->s) ||
           nghttp2_session_want_write(h->s);
}

void *keel_h2srv_any_owner(const struct keel_h2srv *h)
{
    for (const struct keel_h2srv_stream *st = h->streams; st; st = st->next)
        if (st->ud && !st->detached)
            return st->ud;
    return NULL;
}

size_t keel_h2srv_streams(const struct keel_h2srv *h)
{
    return h->n_streams;
}

int keel_h2srv_blocked(const struct keel_h2srv *h)
{
    if (h->n_out == 0)
        return 0; /* no stream has payload waiting: nothing can be held by a window */
    if (nghttp2_session_get_remote_window_size(h->s) <= 0)
        return 1;
    for (const struct keel_h2srv_stream *st = h->streams; st; st = st->next) {
        if (st->out.len && nghttp2_session_get_stream_remote_window_size(h->s, st->id) <= 0)
            return 1;
    }
    return 0;
}

void keel_h2srv_goaway(struct keel_h2srv *h, uint32_t error_code)
{
    if (error_code == 0) {
        nghttp2_submit_shutdown_notice(h->s);
        nghttp2_submit_goaway(h->s, NGHTTP2_FLAG_NONE,
                              nghttp2_session_get_last_proc_stream_id(h->s), 0, NULL, 0);
    } else {
        nghttp2_session_terminate_session(h->s, error_code);
    }
}

enum keel_h2srv_abuse keel_h2srv_abuse(const struct keel_h2srv *h)
{
    return h->abuse;
}

void keel_h2srv_set_now(struct keel_h2srv *h, uint64_t now_ms)
{
    if (h->reset_ts == 0)
        h->reset_ts = h->ctrl_ts = now_ms;
    h->now_ms = now_ms;
}

/* ---- per stream -------------------------------------------------------------------------- */

int32_t keel_h2srv_stream_id(const struct keel_h2srv_stream *st)
{
    return st->id;
}

int keel_h2srv_stream_grpc(const struct keel_h2srv_stream *st)
{
    return st->grpc;
}

uint32_t keel_h2srv_stream_deadline_ms(const struct keel_h2srv_stream *st)
{
    return st->deadline_ms;
}

size_t keel_h2srv_stream_readable(const struct keel_h2srv_stream *st)
{
    return st->req.len;
}

int keel_h2srv_stream_req_ended(const struct keel_h2srv_stream *st)
{
    return st->req_ended;
}

size_t keel_h2srv_stream_pull(struct keel_h2srv_stream *st, char *dst, size_t cap)
{
    size_t n = st->req.len < cap ? st->req.len : cap;
    if (n == 0)
        return 0;
    memcpy(dst, st->req.p + st->req.off, n);
    sbuf_take(&st->req, n);
    /* Reopen the window for the payload bytes among them: never more than what is left. */
    size_t give = (size_t)(st->unconsumed < n ? st->unconsumed : n);
    if (st->req.len == 0)
        give = (size_t)st->unconsumed;
    if (give) {
        st->unconsumed -= give;
        nghttp2_session_consume(st->h->s, st->id, give);
    }
    if (st->req.len == 0)
        sbuf_clear(&st->req);
    return n;
}

size_t keel_h2srv_stream_room(const struct keel_h2srv_stream *st)
{
    if (st->rs == R_DONE || st->swallow)
        return OUT_CAP;
    return st->out.len >= OUT_CAP ? 0 : OUT_CAP - st->out.len;
}

int keel_h2srv_stream_resp_ended(const struct keel_h2srv_stream *st)
{
    return st->rs == R_DONE;
}

static int is_conn_specific(const struct keel_http1_header *hd)
{
    static const char *const names[] = {"connection",        "keep-alive", "proxy-connection",
                                        "transfer-encoding", "upgrade",    "te",
                                        "http2-settings"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (keel_http1_name_eq(hd, names[i]))
            return 1;
    return 0;
}

static void resume(struct keel_h2srv_stream *st)
{
    if (st->submitted && st->deferred) {
        st->deferred = 0;
        nghttp2_session_resume_data(st->h->s, st->id);
    }
}

static void body_end(struct keel_h2srv_stream *st)
{
    st->body_done = 1;
    st->rs = R_DONE;
    resume(st);
}

/* Maps a keel-generated HTTP error to a gRPC status (the engine marks its own answers). */
static int grpc_status_for(int status, const char *reason, size_t rlen)
{
    if (rlen >= 15 && !memcmp(reason, "circuit breaker", 15))
        return 8; /* RESOURCE_EXHAUSTED */
    switch (status) {
    case 504:
    case 408:
        return 4; /* DEADLINE_EXCEEDED */
    case 502:
    case 503:
        return 14; /* UNAVAILABLE */
    case 404:
        return 12; /* UNIMPLEMENTED */
    case 413:
    case 431:
        return 8;
    default:
        return 13; /* INTERNAL */
    }
}

/* The head is complete in st->rhead: submit the response HEADERS. */
static ssize_t submit_head(struct keel_h2srv_stream *st, size_t *used)
{
    struct keel_http1_header hs[128];
    struct keel_http1_response resp = {.headers = hs, .num_headers = 128};
    struct keel_http1_limits lim = {.max_head = RESP_HEAD_CAP, .max_headers = 128};
    ssize_t n =
        keel_http1_parse_response(st->rhead.p + st->rhead.off, st->rhead.len, &resp, &lim, NULL);
    if (n == KEEL_EAGAIN)
        return st->rhead.len >= RESP_HEAD_CAP ? KEEL_EBADMSG : KEEL_EAGAIN;
    if (n < 0)
        return KEEL_EBADMSG;
    *used = (size_t)n;
    if (resp.status < 200)
        return 0; /* interim (100 Continue): dropped */
    if (st->grpc) {
        for (size_t i = 0; i < resp.num_headers; i++) {
            if (keel_http1_name_eq(&hs[i], "x-keel-reason")) {
                char msg[256];
                size_t l = hs[i].value_len < sizeof(msg) - 1 ? hs[i].value_len : sizeof(msg) - 1;
                memcpy(msg, hs[i].value, l);
                msg[l] = 0;
                int code = grpc_status_for(resp.status, msg, l);
                return keel_h2srv_stream_grpc_error(st, code, msg) ? KEEL_EBADMSG : 1;
            }
        }
    }
    nghttp2_nv nv[129];
    int sc = resp.status % 1000;
    char status[4] = {(char)('0' + sc / 100), (char)('0' + sc / 10 % 10), (char)('0' + sc % 10), 0};
    nv[0] = (nghttp2_nv){(uint8_t *)":status", (uint8_t *)status, 7, 3, NGHTTP2_NV_FLAG_NONE};
    size_t k = 1;
    for (size_t i = 0; i < resp.num_headers; i++) {
        struct keel_http1_header *hd = &hs[i];
        if (is_conn_specific(hd))
            continue;
        for (size_t j = 0; j < hd->name_len; j++) { /* h2 names are lower case */
            char ch = hd->name[j];
            if (ch >= 'A' && ch <= 'Z')
                ((char *)hd->name)[j] = (char)(ch - 'A' + 'a');
        }
        nv[k++] = (nghttp2_nv){(uint8_t *)hd->name, (uint8_t *)hd->value, hd->name_len,
                               hd->value_len, NGHTTP2_NV_FLAG_NONE};
    }
    st->mode = keel_http1_response_body(&resp, st->is_head);
    st->remaining = resp.content_length > 0 ? (uint64_t)resp.content_length : 0;
    if (st->mode == KEEL_H1_BODY_LENGTH && st->remaining == 0)
        st->mode = KEEL_H1_BODY_NONE;
    nghttp2_data_provider prd = {.source.ptr = st, .read_callback = read_body};
    int rc = nghttp2_submit_response(st->h->s, st->id, nv, k,
                                     st->mode == KEEL_H1_BODY_NONE ? NULL : &prd);
    if (rc != 0)
        return KEEL_EBADMSG;
    st->submitted = 1;
    st->rs = st->mode == KEEL_H1_BODY_NONE ? R_DONE : R_BODY;
    if (st->mode == KEEL_H1_BODY_NONE)
        st->body_done = 1;
    return 1;
}

/* Chunked response body: payload to st->out, trailers to st->trl. @return bytes used. */
static ssize_t feed_chunked(struct keel_h2srv_stream *st, const char *p, size_t len)
{
    size_t i = 0;
    while (i < len && st->rs == R_BODY) {
        char ch = p[i];
        switch (st->cs) {
        case CK_SIZE: {
            int d = ch >= '0' && ch <= '9'   ? ch - '0'
                    : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
                    : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10
                                             : -1;
            if (d >= 0) {
                if (++st->cdigits > 15)
                    return KEEL_EBADMSG;
                st->csize = st->csize * 16 + (uint64_t)d;
            } else if (ch == ';' || ch == ' ' || ch == '\t') {
                st->cs = CK_EXT;
            } else if (ch == '\r') {
                st->cs = CK_SIZE_LF;
            } else {
                return KEEL_EBADMSG;
            }
            i++;
            break;
        }
        case CK_EXT:
            if (ch == '\r')
                st->cs = CK_SIZE_LF;
            i++;
            break;
        case CK_SIZE_LF:
            if (ch != '\n' || st->cdigits == 0)
                return KEEL_EBADMSG;
            i++;
            st->cdigits = 0;
            st->cs = st->csize ? CK_DATA : CK_TRAILER;
            break;
        case CK_DATA: {
            size_t room = keel_h2srv_stream_room(st);
            if (room == 0)
                return (ssize_t)i;
            size_t k = len - i;
            if (k > st->csize)
                k = (size_t)st->csize;
            if (k > room)
                k = room;
            if (out_add(st, p + i, k))
                return KEEL_ENOMEM;
            st->csize -= k;
            i += k;
            if (st->csize == 0)
                st->cs = CK_DATA_CR;
            break;
        }
        case CK_DATA_CR:
            if (ch != '\r')
                return KEEL_EBADMSG;
            st->cs = CK_DATA_LF;
            i++;
            break;
        case CK_DATA_LF:
            if (ch != '\n')
                return KEEL_EBADMSG;
            st->cs = CK_SIZE;
            i++;
            break;
        case CK_TRAILER:
            if (st->trl.len >= TRAILER_CAP || sbuf_add(&st->trl, &ch, 1))
                return KEEL_EBADMSG;
            i++;
            /* The section ends with an empty line: "\r\n" alone, or after a field line. */
            if (st->trl.len == 2 && !memcmp(st->trl.p + st->trl.off, "\r\n", 2)) {
                sbuf_clear(&st->trl);
                body_end(st);
            } else if (st->trl.len >= 4 &&
                       !memcmp(st->trl.p + st->trl.off + st->trl.len - 4, "\r\n\r\n", 4)) {
                st->has_trailers = 1;
                body_end(st);
            }
            break;
        }
    }
    return (ssize_t)i;
}

ssize_t keel_h2srv_stream_write(struct keel_h2srv_stream *st, const char *p, size_t len)
{
    if (st->swallow || st->closed)
        return (ssize_t)len;
    size_t taken = 0;
    while (taken < len && st->rs != R_DONE) {
        if (st->rs == R_HEAD) {
            size_t before = st->rhead.len;
            size_t k = len - taken;
            if (k > RESP_HEAD_CAP - before)
                k = RESP_HEAD_CAP - before;
            if (sbuf_add(&st->rhead, p + taken, k))
                return KEEL_ENOMEM;
            size_t used = 0;
            ssize_t r = submit_head(st, &used);
            if (r == KEEL_EAGAIN) {
                taken += k;
                continue;
            }
            if (r < 0)
                goto bad;
            /* Only the head's bytes count as taken; the rest is offered again. */
            taken += used - before;
            sbuf_clear(&st->rhead);
            if (st->swallow)
                return (ssize_t)len;
            continue;
        }
        if (st->mode == KEEL_H1_BODY_CHUNKED) {
            ssize_t r = feed_chunked(st, p + taken, len - taken);
            if (r < 0)
                goto bad;
            if (r == 0)
                break;
            taken += (size_t)r;
        } else {
            size_t room = keel_h2srv_stream_room(st);
            size_t k = len - taken;
            if (st->mode == KEEL_H1_BODY_LENGTH && k > st->remaining)
                k = (size_t)st->remaining;
            if (k > room)
                k = room;
            if (k == 0)
                break;
            if (out_add(st, p + taken, k))
                return KEEL_ENOMEM;
            taken += k;
            if (st->mode == KEEL_H1_BODY_LENGTH) {
                st->remaining -= k;
                if (st->remaining == 0)
                    body_end(st);
            }
        }
        resume(st);
    }
    resume(st);
    return (ssize_t)taken;
bad:
    nghttp2_submit_rst_stream(st->h->s, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
    st->rs = R_DONE;
    st->swallow = 1;
    return KEEL_EBADMSG;
}

int keel_h2srv_stream_grpc_error(struct keel_h2srv_stream *st, int grpc_status, const char *msg)
{
    if (st->submitted || st->closed)
        return KEEL_EINVAL;
    char code[12];
    snprintf(code, sizeof(code), "%d", grpc_status);
    /* grpc-message is percent-encoded (gRPC over HTTP/2): keep printable ASCII but '%'. */
    char enc[3 * 256 + 1];
    size_t k = 0;
    for (const unsigned char *q = (const unsigned char *)msg; *q && k + 4 < sizeof(enc); q++) {
        if (*q >= 0x20 && *q < 0x7f && *q != '%')
            enc[k++] = (char)*q;
        else {
            static const char hex[] = "0123456789ABCDEF";
            enc[k++] = '%';
            enc[k++] = hex[*q >> 4];
            enc[k++] = hex[*q & 15];
        }
    }
    enc[k] = 0;
    nghttp2_nv nv[] = {
        {(uint8_t *)":status", (uint8_t *)"200", 7, 3, NGHTTP2_NV_FLAG_NONE},
        {(uint8_t *)"content-type", (uint8_t *)"application/grpc", 12, 16, NGHTTP2_NV_FLAG_NONE},
        {(uint8_t *)"grpc-status", (uint8_t *)code, 11, strlen(code), NGHTTP2_NV_FLAG_NONE},
        {(uint8_t *)"grpc-message", (uint8_t *)enc, 12, k, NGHTTP2_NV_FLAG_NONE},
    };
    if (nghttp2_submit_response(st->h->s, st->id, nv, 4, NULL) != 0)
        return KEEL_EINVAL;
    st->submitted = 1;
    st->swallow = 1;
    st->body_done = 1;
    st->rs = R_DONE;
    return 0;
}

void keel_h2srv_stream_detach(struct keel_h2srv_stream *st)
{
    struct keel_h2srv *h = st->h;
    st->ud = NULL;
    st->detached = 1;
    if (st->unconsumed) {
        nghttp2_session_consume(h->s, st->id, (size_t)st->unconsumed);
        st->unconsumed = 0;
    }
    sbuf_clear(&st->req);
    if (st->closed)
        return;
    if (st->rs == R_BODY && st->mode == KEEL_H1_BODY_UNTIL_CLOSE) {
        body_end(st); /* close-delimited: the end of the bytes is the end of the body */
    } else if (st->grpc && st->rs == R_HEAD && !st->submitted) {
        keel_h2srv_stream_grpc_error(st, 14, "upstream connection lost");
    } else if (st->grpc && st->rs == R_BODY && st->submitted) {
        /* The upstream went away mid-call: end it as gRPC does, UNAVAILABLE in trailers,
         * rather than with a reset the client can only call INTERNAL. */
        static const char tr[] =
            "grpc-status: 14\r\ngrpc-message: upstream connection lost\r\n\r\n";
        sbuf_clear(&st->trl);
        if (sbuf_add(&st->trl, tr, sizeof(tr) - 1) == 0) {
            st->has_trailers = 1;
            body_end(st);
        } else {
            nghttp2_submit_rst_stream(h->s, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
            st->rs = R_DONE;
        }
    } else if (st->rs != R_DONE) {
        nghttp2_submit_rst_stream(h->s, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
        st->rs = R_DONE;
    }
}
