/* SPDX-License-Identifier: MIT */
/* Growable byte buffers for connection input and output. */
#include <fcntl.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "keel/err.h"
#include "worker.h"

/* Per-thread cache of KEEL_BUF_CHUNK-sized blocks: connections hand their buffers back when
 * they go idle (an idle keep-alive connection holds no buffer), and the next exchange takes
 * one without a trip through malloc (which trimmed and madvise()d on every request). It holds
 * as many blocks as a burst gave back, up to CHUNK_CACHE_MAX, and keel_buf_cache_trim() frees
 * those a whole period left unused, down to CHUNK_CACHE_KEEP: like HAProxy's pools, a busy
 * worker stops paying malloc and free for every buffer (256 HTTP/2 streams in flight use about
 * 700 blocks), and a quiet one gives the memory back. */
#define CHUNK_CACHE_MAX 1024 /* 16 MiB per thread at most, for at most one trim period */
#define CHUNK_CACHE_KEEP 64  /* 1 MiB per thread */

static _Thread_local struct chunk {
    struct chunk *next;
} * chunk_cache;
static _Thread_local unsigned chunk_cached;
static _Thread_local unsigned chunk_low; /* fewest blocks cached since the last trim */

static char *chunk_get(void)
{
    struct chunk *c = chunk_cache;
    if (c) {
        chunk_cache = c->next;
        if (--chunk_cached < chunk_low)
            chunk_low = chunk_cached;
        return (char *)c;
    }
    return malloc(KEEL_BUF_CHUNK);
}

static void chunk_put(char *p)
{
    if (chunk_cached >= CHUNK_CACHE_MAX) {
        free(p);
        return;
    }
    struct chunk *c = (struct chunk *)(void *)p;
    c->next = chunk_cache;
    chunk_cache = c;
    chunk_cached++;
}

/* Per-thread cache of empty pipes: a tunnel takes two and gives them back when it ends, so a
 * TCP connection costs no pipe2()/close() pairs once the cache is warm. */
#define PIPE_CACHE_MAX 16

static _Thread_local struct keel_pipe *pipe_cache[PIPE_CACHE_MAX];
static _Thread_local unsigned pipe_cached;

static void pipe_destroy(struct keel_pipe *p)
{
    close(p->rd);
    close(p->wr);
    free(p);
}

int keel_buf_pipe(struct keel_buf *b)
{
    if (b->pipe)
        return 0;
    if (pipe_cached) {
        b->pipe = pipe_cache[--pipe_cached];
        return 0;
    }
    struct keel_pipe *p = calloc(1, sizeof(*p));
    if (!p)
        return KEEL_ENOMEM;
    int fds[2];
    if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) {
        free(p);
        return KEEL_EIO;
    }
    p->rd = fds[0];
    p->wr = fds[1];
    /* A bigger pipe than the default 64 KiB halves the splice() calls and the CPU per byte
     * (iperf3 through a pinned keel: 0.43 -> 0.21 s/GB). The kernel may refuse (an
     * unprivileged user over fs.pipe-user-pages-soft): the pipe keeps the size it has. */
    (void)fcntl(p->wr, F_SETPIPE_SZ, KEEL_PIPE_SIZE);
    int sz = fcntl(p->wr, F_GETPIPE_SZ);
    p->cap = sz > 0 ? (size_t)sz : 65536;
    b->pipe = p;
    return 0;
}

static void pipe_put(struct keel_pipe *p)
{
    if (p->len || pipe_cached >= PIPE_CACHE_MAX) {
        pipe_destroy(p); /* bytes left in it belong to a dead tunnel */
        return;
    }
    p->full = 0;
    pipe_cache[pipe_cached++] = p;
}

void keel_buf_drop_pipe(struct keel_buf *b)
{
    if (b->pipe)
        pipe_put(b->pipe);
    b->pipe = NULL;
}

void keel_buf_cache_trim(void)
{
    unsigned idle = chunk_low < chunk_cached ? chunk_low : chunk_cached;
    unsigned n = idle > CHUNK_CACHE_KEEP ? idle - CHUNK_CACHE_KEEP : 0;
    for (unsigned i = 0; i < n; i++) {
        struct chunk *c = chunk_cache;
        chunk_cache = c->next;
        chunk_cached--;
        free(c);
    }
    chunk_low = chunk_cached;
    /* free() keeps 16 KiB blocks in the heap; give their pages back to the system. */
    if (n >= CHUNK_CACHE_KEEP)
        malloc_trim(0);
}

unsigned keel_buf_cache_blocks(void)
{
    return chunk_cached;
}

void keel_buf_cache_clear(void)
{
    while (chunk_cache) {
        struct chunk *c = chunk_cache;
        chunk_cache = c->next;
        free(c);
    }
    chunk_cached = 0;
    while (pipe_cached)
        pipe_destroy(pipe_cache[--pipe_cached]);
}

int keel_buf_reserve(struct keel_buf *b, size_t n, size_t max)
{
    if (b->cap - b->off - b->len >= n)
        return 0;
    if (b->off > 0 && b->cap - b->len >= n) {
        /* Compacting is cheaper than growing: the unread rest is usually small. */
        memmove(b->data, b->data + b->off, b->len);
        b->off = 0;
        return 0;
    }
    size_t need = b->len + n;
    if (max && need > max)
        return KEEL_EINVAL;
    size_t cap = b->cap ? b->cap : KEEL_BUF_CHUNK;
    while (cap < need)
        cap *= 2;
    if (max && cap > max)
        cap = max;
    char *nd = cap == KEEL_BUF_CHUNK ? chunk_get() : malloc(cap);
    if (!nd)
        return KEEL_ENOMEM;
    if (b->len)
        memcpy(nd, b->data + b->off, b->len);
    if (b->cap == KEEL_BUF_CHUNK)
        chunk_put(b->data);
    else
        free(b->data);
    b->data = nd;
    b->cap = cap;
    b->off = 0;
    return 0;
}

int keel_buf_append(struct keel_buf *b, const void *p, size_t n)
{
    int rc = keel_buf_reserve(b, n, 0);
    if (rc)
        return rc;
    memcpy(b->data + b->off + b->len, p, n);
    b->len += n;
    return 0;
}

int keel_buf_str(struct keel_buf *b, const char *s)
{
    return keel_buf_append(b, s, strlen(s));
}

int keel_buf_status(struct keel_buf *b, int status)
{
    if (status < 100 || status > 999)
        return keel_buf_printf(b, "%d", status);
    char d[3] = {(char)('0' + status / 100), (char)('0' + status / 10 % 10),
                 (char)('0' + status % 10)};
    return keel_buf_append(b, d, 3);
}

int keel_buf_printf(struct keel_buf *b, const char *fmt, ...)
{
    /* One pass when the text fits in the room at the tail (the usual case: a header line
     * into a 16 KiB block); a second, after growing, only when it does not. */
    size_t room = b->data ? b->cap - b->off - b->len : 0;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(room ? b->data + b->off + b->len : NULL, room, fmt, ap);
    va_end(ap);
    if (n < 0)
        return KEEL_EINVAL;
    if ((size_t)n < room) {
        b->len += (size_t)n;
        return 0;
    }
    int rc = keel_buf_reserve(b, (size_t)n + 1, 0);
    if (rc)
        return rc;
    va_start(ap, fmt);
    vsnprintf(b->data + b->off + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

void keel_buf_consume(struct keel_buf *b, size_t n)
{
    if (n >= b->len) {
        b->off = 0;
        b->len = 0;
        return;
    }
    b->off += n;
    b->len -= n;
}

void keel_buf_free(struct keel_buf *b)
{
    if (!b->data && !b->pipe)
        return; /* nothing held (update_io() gives back buffers that are often already so) */
    keel_buf_drop_pipe(b);
    if (b->cap == KEEL_BUF_CHUNK)
        chunk_put(b->data);
    else
        free(b->data);
    memset(b, 0, sizeof(*b));
}
