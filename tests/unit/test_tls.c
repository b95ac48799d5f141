/* SPDX-License-Identifier: MIT */
/* Unit tests for tls.c: handshake, SNI, ALPN, bytes left inside TLS, blocked writes, close
 * and reload, over socketpairs with OpenSSL peers (certificates made in memory). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include "keel/config.h"
#include "keel/err.h"
#include "conn.h"
#include "testutil.h"
#include "tls.h"

static char dir[] = "/tmp/keel_test_tls_XXXXXX";
static char a_cert[256], a_key[256], b_cert[256], b_key[256];

/* A self-signed P-256 certificate with the given CN and subjectAltName, written as PEM. */
static int make_cert(const char *stem, const char *cn, const char *san, char *cert, char *key)
{
    static long serial = 1;
    snprintf(cert, 256, "%s/%s.pem", dir, stem);
    snprintf(key, 256, "%s/%s.key", dir, stem);
    EVP_PKEY *pk = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    if (!pk || !x)
        return -1;
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, pk);
    X509_NAME *nm = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, nm);
    X509V3_CTX v3;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, san);
    if (!ext)
        return -1;
    X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    X509_sign(x, pk, EVP_sha256());
    FILE *f = fopen(cert, "w");
    FILE *g = fopen(key, "w");
    int ok = f && g && PEM_write_X509(f, x) && PEM_write_PrivateKey(g, pk, NULL, NULL, 0, 0, NULL);
    if (f)
        fclose(f);
    if (g)
        fclose(g);
    X509_free(x);
    EVP_PKEY_free(pk);
    return ok ? 0 : -1;
}

static void nonblock(int fd)
{
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

/* A socketpair: fds[0] for keel's side, fds[1] for the OpenSSL peer. */
static int pair(int fds[2], int small)
{
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, fds) != 0)
        return -1;
    if (small) {
        int sz = 4096;
        setsockopt(fds[0], SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
        setsockopt(fds[1], SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
        setsockopt(fds[1], SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
        setsockopt(fds[0], SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
    }
    nonblock(fds[0]);
    nonblock(fds[1]);
    return 0;
}

static void sock_init(struct keel_sock *s, int fd)
{
    memset(s, 0, sizeof(*s));
    s->fd = fd;
    ev_io_init(&s->rio, NULL, fd, EV_READ);
    ev_io_init(&s->wio, NULL, fd, EV_WRITE);
}

static SSL *peer_client(int fd, const char *sni, const char *alpn_wire, size_t alpn_len)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    SSL *ssl = SSL_new(ctx);
    SSL_CTX_free(ctx); /* the SSL keeps it */
    SSL_set_fd(ssl, fd);
    if (sni)
        SSL_set_tlsext_host_name(ssl, sni);
    if (alpn_wire)
        SSL_set_alpn_protos(ssl, (const unsigned char *)alpn_wire, (unsigned int)alpn_len);
    SSL_set_connect_state(ssl);
    return ssl;
}

/* Drives both sides until the handshake is done (keel's side through keel_sock_read). */
static int handshake_server(struct keel_sock *s, SSL *peer)
{
    for (int i = 0; i < 1000; i++) {
        int pr = SSL_do_handshake(peer);
        ssize_t n = keel_sock_read(s, 65536);
        if (n < 0 && n != KEEL_EAGAIN)
            return (int)n;
        if (pr == 1 && SSL_is_init_finished(s->ssl))
            return 0;
        if (pr <= 0) {
            int e = SSL_get_error(peer, pr);
            if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
                return -100;
        }
    }
    return -101;
}

static void peer_cn(SSL *peer, char *out, size_t len)
{
    X509 *x = SSL_get1_peer_certificate(peer);
    out[0] = 0;
    if (x) {
        X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, out, (int)len);
        X509_free(x);
    }
}

static struct keel_cfg cfg;
static struct keel_cfg_listener lst[2];
static struct keel_cfg_cert certs[2];
static struct keel_cfg_cluster cls[2];

static void setup_cfg(void)
{
    certs[0].cert = a_cert;
    certs[0].key = a_key;
    certs[1].cert = b_cert;
    certs[1].key = b_key;
    lst[0].name = "web";
    lst[0].tls.enabled = 1;
    lst[0].tls.certs = certs;
    lst[0].tls.n_certs = 2;
    lst[0].tls.min_version = TLS1_2_VERSION;
    lst[0].h2.enabled = 1;
    lst[1].name = "plain";
    cls[0].name = "up";
    cls[0].tls.enabled = 1;
    cls[0].tls.verify = 1;
    cls[0].tls.ca_file = a_cert; /* self-signed: its own trust anchor */
    cls[0].tls.sni = "a.test";
    cls[1].name = "wrongname";
    cls[1].tls.enabled = 1;
    cls[1].tls.verify = 1;
    cls[1].tls.ca_file = a_cert;
    cls[1].tls.sni = "other.test";
    cfg.listeners = lst;
    cfg.n_listeners = 2;
    cfg.clusters = cls;
    cfg.n_clusters = 2;
}

static void test_sni_alpn(void)
{
    static const struct {
        const char *sni;
        const char *alpn;
        size_t alpn_len;
        const char *cn;
        int h2;
    } cases[] = {
        {"a.test", "\x02h2\x08http/1.1", 12, "a.test", 1},
        {"b.test", "\x08http/1.1", 9, "b.test", 0},
        {"X.Wild.Test", "\x08http/1.1\x02h2", 12, "b.test", 1},
        {"y.x.wild.test", NULL, 0, "a.test", 0},
        {"unknown.test", "\x06spdy/3", 7, "a.test", 0},
        {NULL, "\x02h2", 3, "a.test", 1},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int fds[2];
        struct keel_sock s;
        if (!CHECK(pair(fds, 0) == 0))
            return;
        sock_init(&s, fds[0]);
        CHECK(keel_tls_server_attach(NULL, &s, 0) == 0);
        SSL *peer = peer_client(fds[1], cases[i].sni, cases[i].alpn, cases[i].alpn_len);
        int rc = handshake_server(&s, peer);
        CHECKF(rc == 0, "case %zu: handshake %d", i, rc);
        char cn[64];
        peer_cn(peer, cn, sizeof(cn));
        CHECKF(strcmp(cn, cases[i].cn) == 0, "case %zu: got %s want %s", i, cn, cases[i].cn);
        CHECKF(keel_tls_alpn_h2(&s) == cases[i].h2, "case %zu", i);
        const unsigned char *p;
        unsigned int plen;
        SSL_get0_alpn_selected(peer, &p, &plen);
        if (cases[i].alpn && memmem(cases[i].alpn, cases[i].alpn_len, "http/1.1", 8) &&
            !cases[i].h2)
            CHECKF(plen == 8 && memcmp(p, "http/1.1", 8) == 0, "case %zu", i);
        if (!cases[i].alpn || cases[i].alpn_len == 7)
            CHECKF(plen == 0, "case %zu: no ALPN expected", i);
        keel_sock_close(EV_DEFAULT, &s);
        SSL_free(peer);
        close(fds[1]);
    }
    /* A listener without TLS has nothing to attach. */
    struct keel_sock s;
    sock_init(&s, -1);
    CHECK(keel_tls_server_attach(NULL, &s, 1) == KEEL_EINVAL);
}

static void on_feed(struct ev_loop *loop, ev_io *w, int revents)
{
    (*(int *)w->data)++;
}

/* Bytes decrypted beyond the caller's max stay inside TLS: they are delivered later, the
 * owner's read watcher is fed for them (the socket itself is not readable any more), and a
 * full buffer does not feed in a loop. */
static void test_pending_bytes(void)
{
    struct ev_loop *loop = EV_DEFAULT;
    int fds[2], fed = 0;
    struct keel_sock s;
    if (!CHECK(pair(fds, 0) == 0))
        return;
    sock_init(&s, fds[0]);
    ev_set_cb(&s.rio, on_feed);
    ev_set_cb(&s.wio, on_feed);
    s.rio.data = s.wio.data = &fed;
    CHECK(keel_tls_server_attach(NULL, &s, 0) == 0);
    SSL *peer = peer_client(fds[1], "a.test", NULL, 0);
    CHECK(handshake_server(&s, peer) == 0);
    static char msg[40000], got[40000];
    for (size_t i = 0; i < sizeof(msg); i++)
        msg[i] = (char)(i * 7 + i / 251);
    size_t w = 0;
    CHECK(SSL_write_ex(peer, msg, sizeof(msg), &w) == 1 && w == sizeof(msg));
    size_t have = 0;
    ssize_t n = keel_sock_read(&s, 10000);
    CHECKF(n == 10000, "%zd", n);
    CHECK(keel_tls_readable(&s) == 1); /* the rest of a record waits inside TLS */
    n = keel_sock_read(&s, 10000);
    CHECK(n == KEEL_EAGAIN);
    CHECK(keel_tls_readable(&s) == 0); /* full: no feed until the owner consumed */
    keel_sock_want(loop, &s, 1, 0);
    CHECK(!ev_is_pending(&s.rio));
    memcpy(got, s.in.data + s.in.off, 5000);
    keel_buf_consume(&s.in, 5000);
    have = 5000;
    keel_sock_want(loop, &s, 1, 0);
    CHECK(ev_is_pending(&s.rio));
    ev_run(loop, EVRUN_NOWAIT);
    CHECK(fed >= 1);
    /* Everything arrives byte-exact with small steps, though the socket may be drained. */
    for (int i = 0; i < 1000 && have + s.in.len < sizeof(msg); i++) {
        n = keel_sock_read(&s, 10000);
        if (n == KEEL_EAGAIN || s.in.len >= 10000) {
            size_t take = s.in.len;
            memcpy(got + have, s.in.data + s.in.off, take);
            keel_buf_consume(&s.in, take);
            have += take;
        }
    }
    memcpy(got + have, s.in.data + s.in.off, s.in.len);
    have += s.in.len;
    keel_buf_consume(&s.in, s.in.len);
    CHECKF(have == sizeof(msg), "%zu", have);
    CHECK(memcmp(got, msg, sizeof(msg)) == 0);
    /* Bytes then close_notify in one go: the bytes first, the close with the next read (fed:
     * the socket has nothing more). */
    CHECK(SSL_write_ex(peer, "tail", 4, &w) == 1);
    SSL_shutdown(peer);
    n = keel_sock_read(&s, 65536);
    CHECK(n == 4 && memcmp(s.in.data + s.in.off, "tail", 4) == 0);
    CHECK(!s.rd_eof);
    CHECK(keel_tls_readable(&s) == 1);
    n = keel_sock_read(&s, 65536);
    CHECK(n == 0 && s.rd_eof);
    CHECK(keel_tls_readable(&s) == 0);
    keel_sock_want(loop, &s, 0, 0);
    keel_sock_close(loop, &s);
    SSL_free(peer);
    close(fds[1]);
}

/* A write that the socket cannot take stays inside TLS and is repeated from the same front
 * bytes; out is written before extra; the peer gets every byte once. */
static void test_blocked_writes(void)
{
    int fds[2];
    struct keel_sock s;
    if (!CHECK(pair(fds, 1) == 0))
        return;
    sock_init(&s, fds[0]);
    CHECK(keel_tls_server_attach(NULL, &s, 0) == 0);
    SSL *peer = peer_client(fds[1], "a.test", NULL, 0);
    CHECK(handshake_server(&s, peer) == 0);
    size_t total = 1 << 20;
    char *extra = malloc(total), *got = malloc(total + 64);
    for (size_t i = 0; i < total; i++)
        extra[i] = (char)(i % 253);
    keel_buf_append(&s.out, "HEAD:", 5);
    size_t done = 0, have = 0;
    int blocked = 0;
    for (int i = 0; i < 100000 && (done < total || s.out.len); i++) {
        ssize_t n = keel_sock_flush(&s, extra + done, total - done);
        if (!CHECKF(n >= 0, "flush %zd", n))
            break;
        done += (size_t)n;
        if (s.ssl_wpend) {
            blocked++;
            CHECK(!s.ssl_wr_wants_r);
        }
        size_t r = 0;
        while (SSL_read_ex(peer, got + have, total + 64 - have, &r) == 1)
            have += r;
    }
    size_t r = 0;
    for (int i = 0; i < 100 && SSL_read_ex(peer, got + have, total + 64 - have, &r) == 1; i++)
        have += r;
    CHECK(blocked > 0);
    CHECKF(have == total + 5, "%zu", have);
    CHECK(memcmp(got, "HEAD:", 5) == 0 && memcmp(got + 5, extra, total) == 0);
    CHECK(s.ssl_wpend == 0);
    free(extra);
    free(got);
    keel_sock_close(EV_DEFAULT, &s);
    SSL_free(peer);
    close(fds[1]);
}

static SSL *peer_server(int fd)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    SSL_CTX_use_certificate_file(ctx, a_cert, SSL_FILETYPE_PEM);
    SSL_CTX_use_PrivateKey_file(ctx, a_key, SSL_FILETYPE_PEM);
    SSL *ssl = SSL_new(ctx);
    SSL_CTX_free(ctx);
    SSL_set_fd(ssl, fd);
    SSL_set_accept_state(ssl);
    return ssl;
}

/* Upstream side: the handshake runs inside the first flush (a write waiting to read), the
 * name is verified, a pooled idle connection survives TLS records and notices a close. */
static void test_client_side(void)
{
    int fds[2];
    struct keel_sock s;
    if (!CHECK(pair(fds, 0) == 0))
        return;
    sock_init(&s, fds[0]);
    CHECK(keel_tls_client_attach(NULL, &s, &cls[0], 0) == 0);
    SSL *peer = peer_server(fds[1]);
    keel_buf_append(&s.out, "GET / HTTP/1.1\r\n\r\n", 18);
    ssize_t n = keel_sock_flush(&s, NULL, 0);
    CHECK(n == 0 && s.out.len == 18 && s.ssl_wpend == 18 && s.ssl_wr_wants_r);
    char buf[64];
    size_t have = 0;
    for (int i = 0; i < 100 && have < 18; i++) {
        size_t r = 0;
        if (SSL_read_ex(peer, buf + have, sizeof(buf) - have, &r) == 1)
            have += r;
        CHECK(keel_sock_flush(&s, NULL, 0) >= 0);
    }
    CHECK(have == 18 && memcmp(buf, "GET / HTTP/1.1\r\n\r\n", 18) == 0);
    CHECK(s.out.len == 0 && s.ssl_wpend == 0);
    size_t w;
    CHECK(SSL_write_ex(peer, "HTTP/1.1 200 OK\r\n", 17, &w) == 1);
    n = keel_sock_read(&s, 65536);
    CHECK(n == 17);
    keel_buf_consume(&s.in, s.in.len);
    CHECK(keel_tls_idle_alive(&s) == 1);
    /* A TLS 1.3 session ticket on the idle connection is not a response. */
    CHECK(SSL_new_session_ticket(peer) == 1 && SSL_do_handshake(peer) == 1);
    CHECK(keel_tls_idle_alive(&s) == 1);
    CHECK(SSL_write_ex(peer, "x", 1, &w) == 1);
    CHECK(keel_tls_idle_alive(&s) == 0); /* unsolicited bytes */
    keel_sock_close(EV_DEFAULT, &s);
    SSL_free(peer);
    close(fds[1]);

    /* An idle connection the server closed with close_notify is noticed. */
    CHECK(pair(fds, 0) == 0);
    sock_init(&s, fds[0]);
    CHECK(keel_tls_client_attach(NULL, &s, &cls[0], 0) == 0);
    peer = peer_server(fds[1]);
    keel_buf_append(&s.out, "GET", 3);
    for (int i = 0; i < 100 && s.out.len; i++) {
        SSL_do_handshake(peer);
        CHECK(keel_sock_flush(&s, NULL, 0) >= 0);
    }
    CHECK(s.out.len == 0 && SSL_read_ex(peer, buf, sizeof(buf), &w) == 1 && w == 3);
    CHECK(keel_tls_idle_alive(&s) == 1);
    SSL_shutdown(peer);
    CHECK(keel_tls_idle_alive(&s) == 0);
    keel_sock_close(EV_DEFAULT, &s);
    SSL_free(peer);
    close(fds[1]);

    /* Wrong name: the handshake fails inside flush. */
    CHECK(pair(fds, 0) == 0);
    sock_init(&s, fds[0]);
    CHECK(keel_tls_client_attach(NULL, &s, &cls[1], 0) == 0);
    peer = peer_server(fds[1]);
    keel_buf_append(&s.out, "GET", 3);
    n = 0;
    for (int i = 0; i < 100 && n >= 0; i++) {
        SSL_do_handshake(peer);
        n = keel_sock_flush(&s, NULL, 0);
    }
    CHECK(n == KEEL_EIO);
    CHECK(SSL_get_verify_result(s.ssl) == X509_V_ERR_HOSTNAME_MISMATCH);
    keel_sock_close(EV_DEFAULT, &s);
    SSL_free(peer);
    close(fds[1]);
    /* A cluster without TLS. */
    struct keel_cfg_cluster plain = {0};
    CHECK(keel_tls_client_attach(NULL, &s, &plain, 0) == KEEL_EINVAL);
}

static void test_reload(void)
{
    CHECK(keel_tls_reload() == 0);
    /* A key that does not match: the reload fails, the current contexts stay. */
    char saved[256];
    snprintf(saved, sizeof(saved), "%s", certs[1].key);
    certs[1].key = a_key;
    CHECK(keel_tls_reload() == KEEL_ECONFIG);
    certs[1].key = b_key;
    int fds[2];
    struct keel_sock s;
    CHECK(pair(fds, 0) == 0);
    sock_init(&s, fds[0]);
    CHECK(keel_tls_server_attach(NULL, &s, 0) == 0);
    SSL *peer = peer_client(fds[1], "b.test", NULL, 0);
    CHECK(handshake_server(&s, peer) == 0);
    char cn[64];
    peer_cn(peer, cn, sizeof(cn));
    CHECK(strcmp(cn, "b.test") == 0);
    keel_sock_close(EV_DEFAULT, &s);
    SSL_free(peer);
    close(fds[1]);
    (void)saved;
}

int main(void)
{
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    if (make_cert("a", "a.test", "DNS:a.test", a_cert, a_key) ||
        make_cert("b", "b.test", "DNS:b.test,DNS:*.wild.test", b_cert, b_key)) {
        fprintf(stderr, "cannot make certificates\n");
        return 1;
    }
    setup_cfg();
    int rc = keel_tls_init(&cfg);
    if (CHECKF(rc == 0, "keel_tls_init %d", rc)) {
        CHECK(keel_tls_listener_count() == 1);
        test_sni_alpn();
        test_pending_bytes();
        test_blocked_writes();
        test_client_side();
        test_reload();
        keel_tls_shutdown();
    }
    /* Start-up errors: a key of another certificate. */
    certs[0].key = b_key;
    CHECK(keel_tls_init(&cfg) == KEEL_ECONFIG);
    CHECK(keel_tls_listener_count() == 0);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", dir);
    ev_loop_destroy(EV_DEFAULT);
    return TEST_SUMMARY("test_tls");
}
