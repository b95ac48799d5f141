/* SPDX-License-Identifier: MIT */
/* TLS: listener termination (SNI, ALPN, client certificates, reload) and upstream TLS. */
#ifndef KEEL_TLS_H
#define KEEL_TLS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct keel_cfg;
struct keel_cfg_cluster;
struct keel_sock;
struct keel_worker;

/**
 * Builds one server SSL_CTX per listener with `tls:` (certificates, SNI selection, ALPN,
 * client certificate verification, session resumption) and one client SSL_CTX per cluster
 * with `tls:`. Every problem is logged with the listener or cluster name and the file (bad
 * PEM, a key that does not match its certificate, a bad cipher list). cfg must outlive every
 * other keel_tls_* call. Calling it again without keel_tls_shutdown() is not allowed.
 * @return 0, KEEL_ECONFIG (something could not be loaded; nothing is kept) or KEEL_ENOMEM.
 * [control, before the workers start]
 */
int keel_tls_init(const struct keel_cfg *cfg);

/**
 * Re-reads every TLS listener's certificates, keys and client CA into new SSL_CTXs and swaps
 * them in at once: new connections use the new ones, connections already accepted keep theirs
 * (SSL_CTX is reference-counted). When any listener fails, the error is logged and all the old
 * contexts stay. @return 0 (also when no listener has TLS), KEEL_ECONFIG or KEEL_ENOMEM.
 * [control]
 */
int keel_tls_reload(void);

/** Frees every context (after the workers stopped). [control] */
void keel_tls_shutdown(void);

/** Number of listeners with TLS (0 before keel_tls_init). [any] */
size_t keel_tls_listener_count(void);

/**
 * Server side: gives s (a freshly accepted real socket, s->fd set) a new SSL object of the
 * listener's current context in accept state; the handshake runs inside keel_sock_read /
 * keel_sock_flush. s owns the SSL from then on (keel_sock_close frees it).
 * @return 0, KEEL_EINVAL (the listener has no TLS) or KEEL_ENOMEM. [worker]
 */
int keel_tls_server_attach(struct keel_worker *w, struct keel_sock *s, uint32_t listener);

/**
 * Client side: gives s (a real socket, connected or connecting) a new SSL object of the
 * cluster's client context in connect state: SNI and name verification per the cluster's
 * `tls.sni`, the cluster's CA (or the system store), its client certificate if any. With
 * alpn_h2 the ALPN offer is "h2" alone (for HTTP/2 upstream sessions, which should check
 * keel_tls_alpn_h2() once the handshake is done), else "http/1.1". The handshake runs inside
 * the first keel_sock_flush / keel_sock_read; a failure there is logged with the reason
 * (certificate verify result included) and returned as KEEL_EIO. s owns the SSL.
 * @return 0, KEEL_EINVAL (the cluster has no TLS) or KEEL_ENOMEM. [worker]
 */
int keel_tls_client_attach(struct keel_worker *w, struct keel_sock *s,
                           const struct keel_cfg_cluster *cc, int alpn_h2);

/** 1 when the handshake of s is done and ALPN selected "h2", else 0 (also without TLS).
 *  [worker] */
int keel_tls_alpn_h2(const struct keel_sock *s);

/** 1 while s has TLS and its handshake is not done (nothing of the caller's reached the peer's
 *  application yet), else 0. [worker] */
int keel_tls_handshaking(const struct keel_sock *s);

/**
 * Idle pooled upstream connection with TLS: processes what arrived (session tickets and other
 * TLS handshake records are fine) without consuming application data. @return 1 when the
 * connection can still carry a request, 0 when it was closed (close_notify, EOF, error) or
 * sent unsolicited data. [worker]
 */
int keel_tls_idle_alive(struct keel_sock *s);

/* The TLS branch of the socket helpers in conn.c (only for s->ssl != NULL). [worker] */

/** keel_sock_read over TLS: same contract (bytes, 0 at close_notify or EOF, KEEL_EAGAIN,
 *  KEEL_ENOMEM, KEEL_ECLOSED, KEEL_EIO after a logged handshake or protocol failure). */
ssize_t keel_tls_read(struct keel_sock *s, size_t max);
/** keel_sock_flush over TLS: same contract; a write blocked inside TLS keeps its bytes in
 *  s->out / extra and is completed by the next call with the same front bytes. */
ssize_t keel_tls_flush(struct keel_sock *s, const char *extra, size_t extra_len);
/** Decrypted bytes (or a close) that keel_tls_read can deliver without the socket becoming
 *  readable: 1 when the owner's read watcher must be fed. */
int keel_tls_readable(const struct keel_sock *s);
/** keel_sock_shutdown over TLS: close_notify (best effort, non-blocking). */
void keel_tls_shutdown_write(struct keel_sock *s);
/** Sends close_notify if nothing failed (best effort) and frees the SSL object. */
void keel_tls_free(struct keel_sock *s);

#endif
