/* SPDX-License-Identifier: MIT */
/* Unit tests for the connection byte buffers (buf.c): append, printf, consume, splice pipes. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>
#include "keel/err.h"
#include "testutil.h"
#include "worker.h"

static int buf_is(const struct keel_buf *b, const char *s)
{
    return b->len == strlen(s) && memcmp(b->data + b->off, s, b->len) == 0;
}

static void test_printf(void)
{
    struct keel_buf b = {0};
    /* Into an empty buffer (no storage yet). */
    CHECK(keel_buf_printf(&b, "GET %s HTTP/1.1\r\n", "/x") == 0);
    CHECK(buf_is(&b, "GET /x HTTP/1.1\r\n"));
    CHECK(b.cap == KEEL_BUF_CHUNK);
    /* Appends after what is there. */
    CHECK(keel_buf_printf(&b, "Host: %.*s\r\n", 3, "abcdef") == 0);
    CHECK(buf_is(&b, "GET /x HTTP/1.1\r\nHost: abc\r\n"));
    /* Text that exactly fills, then overflows the room: the buffer grows, nothing is lost. */
    size_t room = b.cap - b.off - b.len;
    char big[3 * KEEL_BUF_CHUNK];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = 0;
    size_t before = b.len;
    CHECK(keel_buf_printf(&b, "%.*s", (int)(room - 1), big) == 0);
    CHECK(b.len == before + room - 1);
    CHECK(keel_buf_printf(&b, "%s|", big) == 0);
    CHECK(b.len == before + room - 1 + sizeof(big));
    CHECK(b.cap >= b.len);
    CHECK(memcmp(b.data + b.off, "GET /x HTTP/1.1\r\nHost: abc\r\n", 28) == 0);
    CHECK(b.data[b.off + b.len - 1] == '|');
    CHECK(b.data[b.off + b.len - 2] == 'a');
    keel_buf_free(&b);
    CHECK(b.data == NULL && b.len == 0 && b.cap == 0);

    /* After consume, an offset: printf still appends at the tail. */
    CHECK(keel_buf_append(&b, "0123456789", 10) == 0);
    keel_buf_consume(&b, 4);
    CHECK(keel_buf_printf(&b, "%d", 42) == 0);
    CHECK(buf_is(&b, "45678942"));
    /* A text longer than the room left behind an offset compacts or grows, keeping order. */
    keel_buf_consume(&b, 2);
    memset(big, 'z', KEEL_BUF_CHUNK);
    big[KEEL_BUF_CHUNK] = 0;
    CHECK(keel_buf_printf(&b, "%s", big) == 0);
    CHECK(b.len == 6 + KEEL_BUF_CHUNK);
    CHECK(memcmp(b.data + b.off, "678942zz", 8) == 0);
    keel_buf_free(&b);
    /* Empty output. */
    CHECK(keel_buf_printf(&b, "%s", "") == 0);
    CHECK(b.len == 0);
    keel_buf_free(&b);
}

static void test_pipe(void)
{
    struct keel_buf b = {0};
    CHECK(keel_buf_pipe(&b) == 0);
    CHECK(b.pipe != NULL);
    if (!b.pipe)
        return;
    struct keel_pipe *p = b.pipe;
    CHECK(p->len == 0 && !p->full);
    CHECK(p->cap >= 4096);
    CHECK(fcntl(p->rd, F_GETFL) & O_NONBLOCK);
    CHECK(fcntl(p->wr, F_GETFL) & O_NONBLOCK);
    /* The pipe works: bytes written come out. */
    CHECK(write(p->wr, "abc", 3) == 3);
    char got[4] = {0};
    CHECK(read(p->rd, got, sizeof(got)) == 3);
    CHECK(memcmp(got, "abc", 3) == 0);
    CHECK(read(p->rd, got, 1) < 0 && errno == EAGAIN);
    /* Attaching again keeps the same pipe. */
    CHECK(keel_buf_pipe(&b) == 0 && b.pipe == p);
    int rd = p->rd;
    /* An empty pipe goes back to the cache and is handed out again. */
    keel_buf_free(&b);
    CHECK(b.pipe == NULL);
    struct keel_buf b2 = {0};
    CHECK(keel_buf_pipe(&b2) == 0 && b2.pipe && b2.pipe->rd == rd);
    /* A pipe still holding bytes is closed, not cached. */
    CHECK(write(b2.pipe->wr, "x", 1) == 1);
    b2.pipe->len = 1;
    keel_buf_free(&b2);
    CHECK(fcntl(rd, F_GETFD) < 0 && errno == EBADF);
    struct keel_buf b3 = {0};
    CHECK(keel_buf_pipe(&b3) == 0 && b3.pipe);
    keel_buf_free(&b3);
    keel_buf_cache_clear();
}

/* Freed blocks stay cached through a burst; a period in which nobody took them frees them,
 * down to the 64-block reserve. Blocks taken during a period are kept for the next one. */
static void test_block_cache(void)
{
    enum { N = 300 };
    static struct keel_buf bufs[N];
    keel_buf_cache_clear();
    for (int i = 0; i < N; i++)
        CHECK(keel_buf_append(&bufs[i], "x", 1) == 0);
    CHECK(keel_buf_cache_blocks() == 0);
    for (int i = 0; i < N; i++)
        keel_buf_free(&bufs[i]);
    CHECK(keel_buf_cache_blocks() == N); /* over the old 64-block limit: no free() per block */
    keel_buf_cache_trim();               /* the first period starts here */
    CHECK(keel_buf_cache_blocks() == N);
    /* 100 blocks in use during this period, then given back: the 200 never taken are idle. */
    for (int i = 0; i < 100; i++)
        CHECK(keel_buf_append(&bufs[i], "x", 1) == 0);
    CHECK(keel_buf_cache_blocks() == N - 100);
    for (int i = 0; i < 100; i++)
        keel_buf_free(&bufs[i]);
    keel_buf_cache_trim();
    CHECK(keel_buf_cache_blocks() == N - (200 - 64)); /* 164: the 100 used ones stay */
    keel_buf_cache_trim();                            /* a quiet period: down to the reserve */
    CHECK(keel_buf_cache_blocks() == 64);
    keel_buf_cache_trim();
    CHECK(keel_buf_cache_blocks() == 64);
    /* Still usable afterwards. */
    CHECK(keel_buf_append(&bufs[0], "abc", 3) == 0);
    CHECK(buf_is(&bufs[0], "abc"));
    keel_buf_free(&bufs[0]);
    keel_buf_cache_clear();
    CHECK(keel_buf_cache_blocks() == 0);
}

int main(void)
{
    test_printf();
    test_pipe();
    test_block_cache();
    return TEST_SUMMARY("test_buf");
}
