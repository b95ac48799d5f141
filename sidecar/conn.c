/* SPDX-License-Identifier: MIT */
/* Socket I/O helpers shared by the HTTP and TCP proxies, and small utilities. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include "keel/err.h"
#include "conn.h"
#include "tls.h"

const char *keel_conn_state_str(enum keel_conn_state s)
{
    switch (s) {
    case KEEL_CS_IDLE:
        return "idle";
    case KEEL_CS_HEAD:
        return "head";
    case KEEL_CS_PROXY:
        return "proxy";
    case KEEL_CS_TUNNEL:
        return "tunnel";
    case KEEL_CS_CLOSING:
        return "closing";
    case KEEL_CS_H2:
        return "h2";
    case KEEL_CS_CLOSED:
        return "closed";
    }
    return "?";
}

const char *keel_up_state_str(enum keel_up_state s)
{
    switch (s) {
    case KEEL_UP_CONNECTING:
        return "connecting";
    case KEEL_UP_ACTIVE:
        return "active";
    case KEEL_UP_IDLE:
        return "idle";
    case KEEL_UP_CLOSED:
        return "closed";
    }
    return "?";
}

int keel_sock_read_room(struct keel_sock *s, size_t max, size_t *room)
{
    size_t want = max - s->in.len;
    if (want > KEEL_BUF_CHUNK * 4)
        want = KEEL_BUF_CHUNK * 4; /* large reads, bounded */
    int rc = keel_buf_reserve(&s->in, want, 0);
    if (rc)
        return rc;
    *room = s->in.cap - s->in.off - s->in.len;
    if (*room > max - s->in.len)
        *room = max - s->in.len;
    return 0;
}

/* A read of n bytes from s's socket into a buffer or pipe that holds *fill: counts them, or
 * notes the EOF. @return whether n was a result (>= 0) rather than an error in errno. */
static int took(struct keel_sock *s, ssize_t n, size_t *fill)
{
    if (n > 0)
        *fill += (size_t)n;
    else if (n == 0)
        s->rd_eof = 1;
    return n >= 0;
}

ssize_t keel_sock_read(struct keel_sock *s, size_t max)
{
    if (s->in.len >= max) {
        /* Decrypted bytes left inside TLS are fed to the owner again only once it has
         * consumed some of its input: no loop of reads that cannot make progress. */
        s->ssl_full_at = s->in.len;
        return KEEL_EAGAIN;
    }
    if (s->vops)
        return s->vops->read(s, max);
    if (s->ssl)
        return keel_tls_read(s, max);
    size_t room;
    int rc = keel_sock_read_room(s, max, &room);
    if (rc)
        return rc;
    for (;;) {
        /* recv, not read: the socket call skips the VFS layer (about 1% less CPU per keep-alive
         * request than read/writev; HAProxy uses recv/send too). */
        ssize_t n = recv(s->fd, s->in.data + s->in.off + s->in.len, room, 0);
        if (took(s, n, &s->in.len))
            return n;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return KEEL_EAGAIN;
        return errno == ECONNRESET ? KEEL_ECLOSED : KEEL_EIO;
    }
}

ssize_t keel_sock_flush(struct keel_sock *s, const char *extra, size_t extra_len)
{
    if (s->vops)
        return s->vops->flush(s, extra, extra_len);
    if (s->ssl)
        return keel_tls_flush(s, extra, extra_len);
    struct iovec iov[2];
    int n = 0;
    if (s->out.len) {
        iov[n].iov_base = s->out.data + s->out.off;
        iov[n].iov_len = s->out.len;
        n++;
    }
    if (extra_len) {
        iov[n].iov_base = (void *)extra;
        iov[n].iov_len = extra_len;
        n++;
    }
    if (n == 0)
        return 0;
    ssize_t w;
    do {
        if (n == 1) {
            w = send(s->fd, iov[0].iov_base, iov[0].iov_len, MSG_NOSIGNAL);
        } else {
            struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)n};
            w = sendmsg(s->fd, &mh, MSG_NOSIGNAL);
        }
    } while (w < 0 && errno == EINTR);
    if (w < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return 0;
        return (errno == EPIPE || errno == ECONNRESET) ? KEEL_ECLOSED : KEEL_EIO;
    }
    size_t done = (size_t)w;
    if (s->out.len) {
        size_t o = done < s->out.len ? done : s->out.len;
        keel_buf_consume(&s->out, o);
        done -= o;
    }
    return (ssize_t)done;
}

ssize_t keel_sock_splice_in(struct keel_sock *s, size_t max)
{
    struct keel_pipe *p = s->in.pipe;
    if (p->len >= p->cap || max == 0)
        return KEEL_EAGAIN;
    size_t want = p->cap - p->len < max ? p->cap - p->len : max;
    for (;;) {
        ssize_t n = splice(s->fd, NULL, p->wr, NULL, want, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (took(s, n, &p->len))
            return n;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            /* A pipe counts pages, not bytes: it can be full below cap. Reading waits for the
             * other side to drain some (it has bytes to drain, so it will). */
            if (p->len)
                p->full = 1;
            return KEEL_EAGAIN;
        }
        if ((errno == EINVAL || errno == ENOSYS) && !p->len)
            return KEEL_ENOTIMPL;
        return errno == ECONNRESET ? KEEL_ECLOSED : KEEL_EIO;
    }
}

ssize_t keel_sock_splice_out(struct keel_pipe *p, struct keel_sock *dst)
{
    while (p->len) {
        ssize_t n = splice(p->rd, NULL, dst->fd, NULL, p->len, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n > 0) {
            p->len -= (size_t)n;
            p->full = 0;
            return n; /* a short write means dst is full: wait for EV_WRITE */
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        return (n < 0 && (errno == EPIPE || errno == ECONNRESET)) ? KEEL_ECLOSED : KEEL_EIO;
    }
    return 0;
}

void keel_sock_close(struct ev_loop *loop, struct keel_sock *s)
{
    if (s->vops) {
        /* A fed event may still be pending for the owner: it must not run. */
        ev_clear_pending(loop, &s->rio);
        ev_clear_pending(loop, &s->wio);
        const struct keel_vsock_ops *ops = s->vops;
        s->vops = NULL;
        ops->close(s);
        s->vctx = NULL;
    }
    ev_io_stop(loop, &s->rio);
    ev_io_stop(loop, &s->wio);
    s->want_r = s->want_w = 0;
    if (s->ssl) {
        ev_clear_pending(loop, &s->rio); /* a fed EV_READ for bytes inside TLS */
        keel_tls_free(s);                /* close_notify, best effort */
    }
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
    keel_buf_free(&s->in);
    keel_buf_free(&s->out);
}

/* Starts (on) or stops an fd watcher, first switching the event it waits for if needed. */
static void watch(struct ev_loop *loop, ev_io *io, int ev, int on)
{
    if ((io->events & (EV_READ | EV_WRITE)) != ev) {
        ev_io_stop(loop, io);
        ev_io_modify(io, ev);
    }
    if (on)
        ev_io_start(loop, io);
    else
        ev_io_stop(loop, io);
}

void keel_sock_want(struct ev_loop *loop, struct keel_sock *s, int rd, int wr)
{
    if (s->vops) {
        s->want_r = rd != 0;
        s->want_w = wr != 0;
        if (rd || wr)
            s->vops->want(loop, s);
        return;
    }
    /* Other code (pool, tunnel) starts and stops these watchers directly: libev's own
     * active flag is the truth, and start/stop of a watcher already so is a no-op. */
    s->want_r = rd != 0;
    s->want_w = wr != 0;
    /* TLS: a read may wait for the socket to become writable and a write for it to become
     * readable; the owner's watcher then waits for that event (its callback still retries
     * the read or the write). */
    watch(loop, &s->rio, s->ssl && s->ssl_rd_wants_w ? EV_WRITE : EV_READ, rd);
    watch(loop, &s->wio, s->ssl && s->ssl_wr_wants_r ? EV_READ : EV_WRITE, wr);
    if (rd && s->ssl && keel_tls_readable(s))
        ev_feed_event(loop, &s->rio, EV_READ);
}

void keel_sock_feed(struct ev_loop *loop, struct keel_sock *s, int ev)
{
    if ((ev & EV_READ) && s->want_r)
        ev_feed_event(loop, &s->rio, EV_READ);
    if ((ev & EV_WRITE) && s->want_w)
        ev_feed_event(loop, &s->wio, EV_WRITE);
}

void keel_sock_shutdown(struct keel_sock *s)
{
    s->wr_shut = 1;
    if (s->vops) {
        s->vops->shutdown(s);
        return;
    }
    if (s->ssl)
        keel_tls_shutdown_write(s);
    if (s->fd >= 0)
        shutdown(s->fd, SHUT_WR);
}

int keel_sock_connect_result(struct keel_sock *s)
{
    if (s->vops)
        return s->vops->connect_result(s);
    int soerr = 0;
    socklen_t sl = sizeof(soerr);
    if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0)
        soerr = errno;
    return soerr ? keel_err_from_errno(soerr) : 0;
}

int keel_sock_setup(int fd)
{
    int fl = fcntl(fd, F_GETFL, 0);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return KEEL_EIO;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return 0;
}

void keel_addr_ip(const struct sockaddr_storage *sa, char *out, size_t outlen)
{
    if (sa->ss_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &s6->sin6_addr, out, (socklen_t)outlen);
    } else if (sa->ss_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &s4->sin_addr, out, (socklen_t)outlen);
    } else {
        snprintf(out, outlen, "unknown");
    }
}

void keel_addr_str(const struct sockaddr_storage *sa, char *out, size_t outlen)
{
    char ip[INET6_ADDRSTRLEN];
    keel_addr_ip(sa, ip, sizeof(ip));
    if (sa->ss_family == AF_INET6)
        snprintf(out, outlen, "[%s]:%u", ip, ntohs(((const struct sockaddr_in6 *)sa)->sin6_port));
    else
        snprintf(out, outlen, "%s:%u", ip, ntohs(((const struct sockaddr_in *)sa)->sin_port));
}

double keel_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

uint64_t keel_rand(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545F4914F6CDD1DULL;
}
