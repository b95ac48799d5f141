/* SPDX-License-Identifier: MIT */
/* libFuzzer target: client bytes into keel's HTTP/2 server session, with its callbacks live. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "keel/err.h"
#include "keel/h2srv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_STREAMS 64

struct slot {
    struct keel_h2srv_stream *st;
    int answered;
};

struct fz {
    struct slot s[MAX_STREAMS];
    uint8_t mode; /* how streams are answered */
};

static void *on_request(void *ud, struct keel_h2srv_stream *st)
{
    struct fz *f = ud;
    for (int i = 0; i < MAX_STREAMS; i++) {
        if (!f->s[i].st) {
            f->s[i].st = st;
            f->s[i].answered = 0;
            return &f->s[i];
        }
    }
    return NULL; /* refused */
}

static void on_readable(void *ud, void *sud)
{
    (void)ud;
    (void)sud;
}

static void on_close(void *ud, void *sud, uint32_t error_code)
{
    (void)ud;
    (void)error_code;
    struct slot *s = sud;
    s->st = NULL;
}

static const char *const answers[] = {
    "HTTP/1.1 200 OK\r\ncontent-length: 5\r\nX-A: b\r\n\r\nhello",
    "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
    "Connection: keep-alive\r\n\r\n3\r\nabc\r\n0\r\ngrpc-status: 0\r\nX-T: 1\r\n\r\n",
    "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\nX-Keel-Reason: no eligible "
    "endpoint\r\n\r\nnope",
    "HTTP/1.1 200 OK\r\n\r\nuntil close body",
    "HTTP/1.1 204 No Content\r\n\r\n",
    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\n",
};

/* Pulls each stream's request bytes and answers it, in pieces of `step` bytes. */
static void serve(struct fz *f, size_t step)
{
    char buf[4096];
    for (int i = 0; i < MAX_STREAMS; i++) {
        struct slot *s = &f->s[i];
        if (!s->st)
            continue;
        while (keel_h2srv_stream_pull(s->st, buf, sizeof(buf)) > 0) {
        }
        if (s->answered >= 0) {
            const char *a =
                answers[(f->mode + (unsigned)i) % (sizeof(answers) / sizeof(answers[0]))];
            size_t len = strlen(a);
            while ((size_t)s->answered < len && keel_h2srv_stream_room(s->st) > 0) {
                size_t k = len - (size_t)s->answered;
                if (k > step)
                    k = step;
                ssize_t n = keel_h2srv_stream_write(s->st, a + s->answered, k);
                if (n <= 0) {
                    s->answered = -1;
                    break;
                }
                s->answered += (int)n;
            }
            if (s->answered >= (int)len || s->answered < 0) {
                if ((f->mode & 0x80) || s->answered < 0) {
                    keel_h2srv_stream_detach(s->st);
                    s->st = NULL;
                } else {
                    s->answered = (int)len;
                }
            }
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    if (size < 2)
        return 0;
    struct fz f;
    memset(&f, 0, sizeof(f));
    f.mode = data[0];
    size_t step = (size_t)(data[1] % 32) + 1;
    data += 2;
    size -= 2;
    struct keel_h2srv_cbs cbs = {on_request, on_readable, on_readable, on_close};
    struct keel_h2srv_cfg cfg = {
        .max_concurrent_streams = 8, .max_header_list = 4096, .max_headers = 32};
    struct keel_h2srv *h = keel_h2srv_new(&cfg, &cbs, &f);
    if (!h)
        return 0;
    uint8_t out[8192];
    uint64_t now = 1000;
    keel_h2srv_set_now(h, now);
    int ok = keel_h2srv_recv(h, (const uint8_t *)preface, 24) == 24;
    /* Feed in pieces so frames are split across calls; answer streams between pieces. */
    size_t chunk = (size_t)(f.mode % 7) * 37 + 1;
    for (size_t off = 0; ok && off < size; off += chunk) {
        size_t k = size - off < chunk ? size - off : chunk;
        keel_h2srv_set_now(h, now += (f.mode & 1) ? 1 : 100);
        ssize_t r = keel_h2srv_recv(h, data + off, k);
        if (r < 0)
            ok = 0;
        else if ((size_t)r != k)
            abort(); /* the session takes all it is given */
        serve(&f, step);
        while (keel_h2srv_send(h, out, sizeof(out)) > 0) {
        }
        (void)keel_h2srv_blocked(h);
    }
    if (f.mode & 0x40)
        keel_h2srv_goaway(h, 0);
    while (keel_h2srv_send(h, out, sizeof(out)) > 0) {
    }
    for (int i = 0; i < MAX_STREAMS; i++)
        if (f.s[i].st)
            keel_h2srv_stream_detach(f.s[i].st);
    while (keel_h2srv_send(h, out, sizeof(out)) > 0) {
    }
    keel_h2srv_free(h);
    return 0;
}
