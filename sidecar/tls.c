/* SPDX-License-Identifier: MIT */
/* TLS with OpenSSL: listener contexts (SNI, ALPN, client certs, reload), upstream TLS, I/O. */
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <strings.h>
#include <sys/socket.h>
#include "tls_dl.h" /* OpenSSL, called through the table loaded on first use */
#include "keel/config.h"
#include "keel/err.h"
#include "keel/log.h"
#include "conn.h"
#include "tls.h"

/* TLS 1.2 suites when `ciphers` is not set: forward secrecy and AEAD only. */
#define DEFAULT_CIPHERS                                                                            \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                                   \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                                   \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

/* One SSL_write never takes more than a record: a retry then always repeats exactly one
 * record, and OpenSSL's multi-record write path (which would need larger retries) stays off. */
#define TLS_REC 16384

/* A listener certificate: the SNI names it answers for (DNS SANs, else the CN). */
struct srv_cert {
    X509 *leaf;
    STACK_OF(X509) * chain;
    EVP_PKEY *key;
    char **names;
    size_t n_names;
};

/* What one server SSL_CTX generation needs in its callbacks; freed with the SSL_CTX. */
struct srv_table {
    const struct keel_cfg_listener *l;
    struct srv_cert *certs; /* [0] is the default */
    size_t n_certs;
};

static struct {
    const struct keel_cfg *cfg;
    pthread_rwlock_t lock; /* srv[] pointers: read by workers at accept, swapped by reload */
    SSL_CTX **srv;         /* per listener; NULL: no TLS */
    SSL_CTX **cli;         /* per cluster; NULL: no TLS (immutable after init) */
    size_t n_tls_listeners;
    int ex_idx; /* SSL_CTX ex_data slot of the srv_table */
} g = {.lock = PTHREAD_RWLOCK_INITIALIZER, .ex_idx = -1};

/* ---- errors ------------------------------------------------------------------------------ */

/* OpenSSL's reason for the last failure (the queue is cleared). */
static const char *ssl_reason(char *buf, size_t len)
{
    unsigned long e, last = 0;
    while ((e = ERR_get_error()) != 0)
        last = e;
    if (!last) {
        snprintf(buf, len, "unknown error");
        return buf;
    }
    const char *r = ERR_reason_error_string(last);
    if (r)
        snprintf(buf, len, "%s", r);
    else
        ERR_error_string_n(last, buf, len);
    return buf;
}

/* ---- certificates ------------------------------------------------------------------------ */

static void cert_clear(struct srv_cert *c)
{
    X509_free(c->leaf);
    sk_X509_pop_free(c->chain, X509_free);
    EVP_PKEY_free(c->key);
    for (size_t i = 0; i < c->n_names; i++)
        free(c->names[i]);
    free(c->names);
    memset(c, 0, sizeof(*c));
}

static int add_name(struct srv_cert *c, const char *p, size_t len)
{
    if (len == 0 || memchr(p, 0, len))
        return 0;
    char **nn = realloc(c->names, (c->n_names + 1) * sizeof(*nn));
    if (!nn)
        return KEEL_ENOMEM;
    c->names = nn;
    if (!(nn[c->n_names] = strndup(p, len)))
        return KEEL_ENOMEM;
    c->n_names++;
    return 0;
}

/* The DNS names of the certificate (subjectAltName), or its CN when it has none. */
static int collect_names(struct srv_cert *c)
{
    GENERAL_NAMES *sans = X509_get_ext_d2i(c->leaf, NID_subject_alt_name, NULL, NULL);
    int rc = 0;
    for (int i = 0; sans && i < sk_GENERAL_NAME_num(sans) && rc == 0; i++) {
        const GENERAL_NAME *gn = sk_GENERAL_NAME_value(sans, i);
        if (gn->type != GEN_DNS)
            continue;
        rc = add_name(c, (const char *)ASN1_STRING_get0_data(gn->d.dNSName),
                      (size_t)ASN1_STRING_length(gn->d.dNSName));
    }
    GENERAL_NAMES_free(sans);
    if (rc || c->n_names)
        return rc;
    const X509_NAME *subj = X509_get_subject_name(c->leaf);
    int idx = X509_NAME_get_index_by_NID(subj, NID_commonName, -1);
    if (idx >= 0) {
        const ASN1_STRING *cn = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, idx));
        rc = add_name(c, (const char *)ASN1_STRING_get0_data(cn), (size_t)ASN1_STRING_length(cn));
    }
    return rc;
}

/* Loads a certificate chain (leaf first) and its key; `who` names the owner for messages. */
static int load_cert(const char *who, const struct keel_cfg_cert *cc, struct srv_cert *out)
{
    char why[256];
    memset(out, 0, sizeof(*out));
    ERR_clear_error();
    BIO *b = BIO_new_file(cc->cert, "r");
    if (!b) {
        KEEL_ERROR("%s: cannot open certificate file %s: %s", who, cc->cert,
                   ssl_reason(why, sizeof(why)));
        return KEEL_ECONFIG;
    }
    out->leaf = PEM_read_bio_X509_AUX(b, NULL, NULL, NULL);
    if (!out->leaf) {
        BIO_free(b);
        KEEL_ERROR("%s: certificate file %s: no PEM certificate (%s)", who, cc->cert,
                   ssl_reason(why, sizeof(why)));
        return KEEL_ECONFIG;
    }
    out->chain = sk_X509_new_null();
    X509 *x;
    while (out->chain && (x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
        if (!sk_X509_push(out->chain, x)) {
            X509_free(x);
            break;
        }
    }
    BIO_free(b);
    unsigned long e = ERR_peek_last_error();
    if (!out->chain ||
        (e && !(ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE))) {
        KEEL_ERROR("%s: certificate file %s: bad certificate in the chain (%s)", who, cc->cert,
                   ssl_reason(why, sizeof(why)));
        goto fail;
    }
    ERR_clear_error(); /* the end of the file is a "no start line" */
    b = BIO_new_file(cc->key, "r");
    if (!b) {
        KEEL_ERROR("%s: cannot open key file %s: %s", who, cc->key, ssl_reason(why, sizeof(why)));
        goto fail;
    }
    out->key = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
    BIO_free(b);
    if (!out->key) {
        KEEL_ERROR("%s: key file %s: no PEM private key (%s)", who, cc->key,
                   ssl_reason(why, sizeof(why)));
        goto fail;
    }
    if (!X509_check_private_key(out->leaf, out->key)) {
        ERR_clear_error();
        KEEL_ERROR("%s: key file %s does not match certificate %s", who, cc->key, cc->cert);
        goto fail;
    }
    if (X509_cmp_current_time(X509_get0_notAfter(out->leaf)) < 0)
        KEEL_WARN("%s: certificate %s has expired", who, cc->cert);
    if (collect_names(out) != 0) {
        KEEL_ERROR("%s: out of memory", who);
        goto fail;
    }
    return 0;
fail:
    cert_clear(out);
    return KEEL_ECONFIG;
}

/* ---- server contexts --------------------------------------------------------------------- */

static void table_free(struct srv_table *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->n_certs; i++)
        cert_clear(&t->certs[i]);
    free(t->certs);
    free(t);
}

static void on_ctx_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
    (void)parent;
    (void)ad;
    (void)idx;
    (void)argl;
    (void)argp;
    table_free(ptr);
}

/* "*.example.com" matches exactly one label in front of ".example.com". */
static int name_match(const char *pattern, const char *host, int wildcard)
{
    if (!wildcard)
        return strcasecmp(pattern, host) == 0;
    if (pattern[0] != '*' || pattern[1] != '.')
        return 0;
    const char *dot = strchr(host, '.');
    return dot && dot != host && strcasecmp(dot, pattern + 1) == 0;
}

static const struct srv_cert *pick_cert(const struct srv_table *t, const char *host)
{
    for (int wild = 0; wild < 2; wild++)
        for (size_t i = 0; i < t->n_certs; i++)
            for (size_t j = 0; j < t->certs[i].n_names; j++)
                if (name_match(t->certs[i].names[j], host, wild))
                    return &t->certs[i];
    return NULL;
}

/* Certificate selection by SNI: runs before the server certificate is sent. */
static int on_cert(SSL *ssl, void *arg)
{
    (void)arg;
    const char *host = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    if (!host || !*host)
        return 1;
    const struct srv_table *t = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), g.ex_idx);
    if (!t)
        return 1;
    const struct srv_cert *c = pick_cert(t, host);
    if (!c || c == &t->certs[0])
        return 1; /* the default is already in place */
    /* Only the chosen certificate: another key type of the default must not win. */
    SSL_certs_clear(ssl);
    return SSL_use_cert_and_key(ssl, c->leaf, c->key, c->chain, 1) == 1 ? 1 : 0;
}

/* ALPN: "h2" when the listener speaks HTTP/2 and the client offers it, else "http/1.1"; a
 * client offering neither goes on without ALPN (and gets HTTP/1.1). */
static int on_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                   const unsigned char *in, unsigned int inlen, void *arg)
{
    (void)ssl;
    const struct keel_cfg_listener *l = arg;
    const unsigned char *h1 = NULL;
    for (unsigned int i = 0; i < inlen;) {
        unsigned int n = in[i];
        if (n == 0 || i + 1 + n > inlen)
            break;
        const unsigned char *p = in + i + 1;
        if (l->h2.enabled && n == 2 && memcmp(p, "h2", 2) == 0) {
            *out = p;
            *outlen = 2;
            return SSL_TLSEXT_ERR_OK;
        }
        if (n == 8 && memcmp(p, "http/1.1", 8) == 0)
            h1 = p;
        i += 1 + n;
    }
    if (!h1)
        return SSL_TLSEXT_ERR_NOACK;
    *out = h1;
    *outlen = 8;
    return SSL_TLSEXT_ERR_OK;
}

static void set_common(SSL_CTX *ctx)
{
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                                 SSL_OP_IGNORE_UNEXPECTED_EOF);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
}

static SSL_CTX *build_server(size_t idx, const struct keel_cfg_listener *l)
{
    const struct keel_cfg_tls_server *ts = &l->tls;
    char who[160], why[256];
    snprintf(who, sizeof(who), "%s%slistener %s", ts->where, ts->where[0] ? " (" : "",
             l->name ? l->name : "?");
    if (ts->where[0])
        snprintf(who + strlen(who), sizeof(who) - strlen(who), ")");
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    struct srv_table *t = calloc(1, sizeof(*t)), *owned = t;
    if (!ctx || !t || !(t->certs = calloc(ts->n_certs ? ts->n_certs : 1, sizeof(*t->certs)))) {
        KEEL_ERROR("%s: cannot create a TLS context: %s", who, ssl_reason(why, sizeof(why)));
        goto fail;
    }
    t->l = l;
    if (!SSL_CTX_set_ex_data(ctx, g.ex_idx, t)) {
        KEEL_ERROR("%s: out of memory", who);
        goto fail;
    }
    t = NULL; /* freed with ctx from now on */
    set_common(ctx);
    SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_min_proto_version(ctx, ts->min_version ? ts->min_version : TLS1_2_VERSION);
    SSL_CTX_set_dh_auto(ctx, 1);
    const char *ciphers = ts->ciphers ? ts->ciphers : DEFAULT_CIPHERS;
    if (!SSL_CTX_set_cipher_list(ctx, ciphers)) {
        KEEL_ERROR("%s: ciphers \"%s\": %s", who, ciphers, ssl_reason(why, sizeof(why)));
        goto fail;
    }
    if (ts->ciphersuites && !SSL_CTX_set_ciphersuites(ctx, ts->ciphersuites)) {
        KEEL_ERROR("%s: ciphersuites \"%s\": %s", who, ts->ciphersuites,
                   ssl_reason(why, sizeof(why)));
        goto fail;
    }
    for (size_t i = 0; i < ts->n_certs; i++) {
        if (load_cert(who, &ts->certs[i], &owned->certs[i]) != 0)
            goto fail;
        owned->n_certs = i + 1;
    }
    if (owned->n_certs == 0) {
        KEEL_ERROR("%s: tls needs a certificate", who);
        goto fail;
    }
    const struct srv_cert *def = &owned->certs[0];
    if (SSL_CTX_use_cert_and_key(ctx, def->leaf, def->key, def->chain, 1) != 1) {
        KEEL_ERROR("%s: certificate %s: %s", who, ts->certs[0].cert, ssl_reason(why, sizeof(why)));
        goto fail;
    }
    SSL_CTX_set_cert_cb(ctx, on_cert, NULL);
    if (l->proto == KEEL_LISTEN_HTTP) /* a tcp listener relays whatever the client speaks */
        SSL_CTX_set_alpn_select_cb(ctx, on_alpn, (void *)l);
    /* Resumption: tickets (OpenSSL's default, keys per context) and a session cache. */
    unsigned char sid[SSL_MAX_SID_CTX_LENGTH];
    int sl = snprintf((char *)sid, sizeof(sid), "keel/%zu", idx);
    SSL_CTX_set_session_id_context(ctx, sid, (unsigned int)sl);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
    if (ts->client_ca) {
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(ts->client_ca);
        if (!names || !SSL_CTX_load_verify_locations(ctx, ts->client_ca, NULL)) {
            sk_X509_NAME_pop_free(names, X509_NAME_free);
            KEEL_ERROR("%s: client_ca %s: no usable CA certificate (%s)", who, ts->client_ca,
                       ssl_reason(why, sizeof(why)));
            goto fail;
        }
        SSL_CTX_set_client_CA_list(ctx, names);
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    }
    ERR_clear_error();
    return ctx;
fail:
    table_free(t);
    SSL_CTX_free(ctx);
    ERR_clear_error();
    return NULL;
}

/* ---- client contexts --------------------------------------------------------------------- */

static SSL_CTX *build_client(const struct keel_cfg_cluster *cc)
{
    const struct keel_cfg_tls_client *tc = &cc->tls;
    char who[160], why[256];
    snprintf(who, sizeof(who), "%s%scluster %s", tc->where, tc->where[0] ? " (" : "",
             cc->name ? cc->name : "?");
    if (tc->where[0])
        snprintf(who + strlen(who), sizeof(who) - strlen(who), ")");
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        KEEL_ERROR("%s: cannot create a TLS context: %s", who, ssl_reason(why, sizeof(why)));
        return NULL;
    }
    set_common(ctx);
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    if (tc->verify) {
        if (tc->ca_file ? !SSL_CTX_load_verify_locations(ctx, tc->ca_file, NULL)
                        : !SSL_CTX_set_default_verify_paths(ctx)) {
            KEEL_ERROR("%s: tls.ca_file %s: no usable CA certificate (%s)", who,
                       tc->ca_file ? tc->ca_file : "(system store)", ssl_reason(why, sizeof(why)));
            goto fail;
        }
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    } else {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
        KEEL_WARN("%s: tls.verify is false: upstream certificates are not checked", who);
    }
    if (tc->client.cert) {
        struct srv_cert c;
        if (load_cert(who, &tc->client, &c) != 0)
            goto fail;
        int ok = SSL_CTX_use_cert_and_key(ctx, c.leaf, c.key, c.chain, 1);
        cert_clear(&c);
        if (ok != 1) {
            KEEL_ERROR("%s: client certificate %s: %s", who, tc->client.cert,
                       ssl_reason(why, sizeof(why)));
            goto fail;
        }
    }
    ERR_clear_error();
    return ctx;
fail:
    SSL_CTX_free(ctx);
    ERR_clear_error();
    return NULL;
}

/* ---- life cycle -------------------------------------------------------------------------- */

static void free_ctx_array(SSL_CTX **a, size_t n)
{
    for (size_t i = 0; a && i < n; i++)
        if (a[i])
            SSL_CTX_free(a[i]);
    free(a);
}

/* New server contexts for every TLS listener, or NULL (logged). */
static SSL_CTX **build_all_servers(const struct keel_cfg *cfg, int *err)
{
    SSL_CTX **srv = calloc(cfg->n_listeners ? cfg->n_listeners : 1, sizeof(*srv));
    if (!srv) {
        *err = KEEL_ENOMEM;
        return NULL;
    }
    *err = 0;
    for (size_t i = 0; i < cfg->n_listeners; i++) {
        if (!cfg->listeners[i].tls.enabled)
            continue;
        if (!(srv[i] = build_server(i, &cfg->listeners[i])))
            *err = KEEL_ECONFIG; /* go on: every broken listener gets its message */
    }
    if (*err) {
        free_ctx_array(srv, cfg->n_listeners);
        return NULL;
    }
    return srv;
}

int keel_tls_init(const struct keel_cfg *cfg)
{
    int err = 0;
    /* Only a config with TLS loads OpenSSL (tls_dl.h): linking it made 1.6 MB more resident
     * in every keel, initialising it 1.7 MB more. */
    int any = 0, any_client = 0;
    for (size_t i = 0; i < cfg->n_listeners; i++)
        any |= cfg->listeners[i].tls.enabled;
    for (size_t i = 0; i < cfg->n_clusters; i++)
        any_client |= cfg->clusters[i].tls.enabled;
    if ((any || any_client) && keel_ssl_load() != 0) {
        KEEL_ERROR("TLS is configured but OpenSSL cannot be loaded (Debian package libssl3)");
        return KEEL_ECONFIG;
    }
    if (any && g.ex_idx < 0)
        g.ex_idx = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, on_ctx_free);
    if (any && g.ex_idx < 0)
        return KEEL_ENOMEM;
    SSL_CTX **srv = build_all_servers(cfg, &err);
    SSL_CTX **cli = calloc(cfg->n_clusters ? cfg->n_clusters : 1, sizeof(*cli));
    if (!cli && !err)
        err = KEEL_ENOMEM;
    for (size_t i = 0; cli && i < cfg->n_clusters; i++) {
        if (cfg->clusters[i].tls.enabled && !(cli[i] = build_client(&cfg->clusters[i])))
            err = KEEL_ECONFIG;
    }
    if (err) {
        free_ctx_array(srv, cfg->n_listeners);
        free_ctx_array(cli, cfg->n_clusters);
        return err;
    }
    g.cfg = cfg;
    g.srv = srv;
    g.cli = cli;
    g.n_tls_listeners = 0;
    for (size_t i = 0; i < cfg->n_listeners; i++)
        if (srv[i])
            g.n_tls_listeners++;
    return 0;
}

int keel_tls_reload(void)
{
    if (!g.cfg || g.n_tls_listeners == 0)
        return 0;
    int err = 0;
    SSL_CTX **srv = build_all_servers(g.cfg, &err);
    if (!srv) {
        KEEL_ERROR("TLS reload failed: keeping the current certificates");
        return err;
    }
    pthread_rwlock_wrlock(&g.lock);
    SSL_CTX **old = g.srv;
    g.srv = srv;
    pthread_rwlock_unlock(&g.lock);
    /* Connections still using an old context hold their own reference to it. */
    free_ctx_array(old, g.cfg->n_listeners);
    KEEL_INFO("TLS reload: new certificates for %zu listener(s) in use", g.n_tls_listeners);
    return 0;
}

void keel_tls_shutdown(void)
{
    if (!g.cfg)
        return;
    free_ctx_array(g.srv, g.cfg->n_listeners);
    free_ctx_array(g.cli, g.cfg->n_clusters);
    g.srv = g.cli = NULL;
    g.cfg = NULL;
    g.n_tls_listeners = 0;
}

size_t keel_tls_listener_count(void)
{
    return g.n_tls_listeners;
}

/* ---- attaching --------------------------------------------------------------------------- */

static void sock_reset_tls(struct keel_sock *s, SSL *ssl, int client)
{
    s->ssl = ssl;
    s->ssl_wpend = 0;
    s->ssl_full_at = 0;
    s->ssl_rd_wants_w = 0;
    s->ssl_wr_wants_r = 0;
    s->ssl_more = 0;
    s->ssl_dead = 0;
    s->ssl_client = client != 0;
}

int keel_tls_server_attach(struct keel_worker *w, struct keel_sock *s, uint32_t listener)
{
    (void)w;
    SSL *ssl = NULL;
    int have = 0;
    pthread_rwlock_rdlock(&g.lock);
    if (g.srv && g.cfg && listener < g.cfg->n_listeners && g.srv[listener]) {
        have = 1;
        ssl = SSL_new(g.srv[listener]); /* references the context */
    }
    pthread_rwlock_unlock(&g.lock);
    if (!have)
        return KEEL_EINVAL;
    if (!ssl || !SSL_set_fd(ssl, s->fd)) {
        SSL_free(ssl);
        ERR_clear_error();
        return KEEL_ENOMEM;
    }
    SSL_set_accept_state(ssl);
    sock_reset_tls(s, ssl, 0);
    return 0;
}

int keel_tls_client_attach(struct keel_worker *w, struct keel_sock *s,
                           const struct keel_cfg_cluster *cc, int alpn_h2)
{
    (void)w;
    if (!g.cfg || !g.cli || cc < g.cfg->clusters || cc >= g.cfg->clusters + g.cfg->n_clusters)
        return KEEL_EINVAL;
    SSL_CTX *ctx = g.cli[cc - g.cfg->clusters];
    if (!ctx)
        return KEEL_EINVAL;
    SSL *ssl = SSL_new(ctx);
    if (!ssl || !SSL_set_fd(ssl, s->fd))
        goto nomem;
    const char *sni = cc->tls.sni;
    if (sni) {
        unsigned char ipbuf[16];
        int is_ip = inet_pton(AF_INET, sni, ipbuf) == 1 || inet_pton(AF_INET6, sni, ipbuf) == 1;
        /* SNI carries host names only (RFC 6066); an address is still verified. */
        if (!is_ip && !SSL_set_tlsext_host_name(ssl, sni))
            goto nomem;
        if (cc->tls.verify) {
            X509_VERIFY_PARAM *vp = SSL_get0_param(ssl);
            if (is_ip ? !X509_VERIFY_PARAM_set1_ip_asc(vp, sni) : !SSL_set1_host(ssl, sni))
                goto nomem;
            SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        }
    }
    static const unsigned char h2[] = "\x02h2", h1[] = "\x08http/1.1";
    if (alpn_h2 ? SSL_set_alpn_protos(ssl, h2, sizeof(h2) - 1)
                : SSL_set_alpn_protos(ssl, h1, sizeof(h1) - 1))
        goto nomem; /* 0 is success here */
    SSL_set_connect_state(ssl);
    sock_reset_tls(s, ssl, 1);
    return 0;
nomem:
    SSL_free(ssl);
    ERR_clear_error();
    return KEEL_ENOMEM;
}

int keel_tls_alpn_h2(const struct keel_sock *s)
{
    if (!s->ssl)
        return 0;
    const unsigned char *p = NULL;
    unsigned int len = 0;
    SSL_get0_alpn_selected(s->ssl, &p, &len);
    return len == 2 && memcmp(p, "h2", 2) == 0;
}

int keel_tls_handshaking(const struct keel_sock *s)
{
    return s->ssl && !SSL_is_init_finished(s->ssl);
}

int keel_tls_idle_alive(struct keel_sock *s)
{
    if (!s->ssl || s->ssl_dead)
        return 0;
    char b;
    size_t got = 0;
    ERR_clear_error();
    if (SSL_peek_ex(s->ssl, &b, 1, &got))
        return 0; /* a response nobody asked for */
    int e = SSL_get_error(s->ssl, 0);
    ERR_clear_error();
    if (e != SSL_ERROR_WANT_READ) {
        s->ssl_dead = e != SSL_ERROR_ZERO_RETURN;
        return 0;
    }
    return 1;
}

/* ---- I/O --------------------------------------------------------------------------------- */

/* A fatal TLS error: logged when it ended a handshake (rate-limited), then the queue is
 * cleared. @return the error for the caller. */
static int tls_fail(struct keel_sock *s, int sslerr, int sys_errno)
{
    char why[256], peer[64] = "?";
    int in_hs = !SSL_is_init_finished(s->ssl);
    /* OpenSSL recognises plain HTTP sent to a TLS port ("GET ", "POST "...). */
    int plain_http = in_hs && !s->ssl_client && sslerr == SSL_ERROR_SSL &&
                     ERR_GET_REASON(ERR_peek_error()) == SSL_R_HTTP_REQUEST;
    s->ssl_dead = 1;
    if (sslerr == SSL_ERROR_SYSCALL) {
        ERR_clear_error();
        snprintf(why, sizeof(why), "%s",
                 sys_errno ? strerror(sys_errno) : "connection closed by the peer");
    } else {
        ssl_reason(why, sizeof(why));
    }
    if (in_hs) {
        struct sockaddr_storage sa;
        socklen_t sl = sizeof(sa);
        if (s->fd >= 0 && getpeername(s->fd, (struct sockaddr *)&sa, &sl) == 0) {
            if (s->ssl_client)
                keel_addr_str(&sa, peer, sizeof(peer));
            else
                keel_addr_ip(&sa, peer, sizeof(peer));
        }
        if (s->ssl_client) {
            long vr = SSL_get_verify_result(s->ssl);
            if (vr != X509_V_OK)
                KEEL_WARN_RL("upstream %s: TLS handshake failed: %s (certificate: %s)", peer, why,
                             X509_verify_cert_error_string(vr));
            else
                KEEL_WARN_RL("upstream %s: TLS handshake failed: %s", peer, why);
        } else {
            KEEL_INFO_RL("client %s: TLS handshake failed: %s", peer, why);
        }
        if (plain_http && s->fd >= 0) {
            /* Say so in plain text, as nginx does, instead of a silent close (best effort:
             * one non-blocking write). */
            static const char resp[] =
                "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 50\r\n"
                "X-Keel-Reason: plain HTTP request on a TLS port\r\nConnection: close\r\n\r\n"
                "400 Bad Request: plain HTTP request on a TLS port\n";
            ssize_t w = write(s->fd, resp, sizeof(resp) - 1);
            /* The rest of the request is unread: drained now, or the close would send a reset
             * that can destroy this answer before the client reads it. */
            char junk[4096];
            for (int i = 0; w > 0 && i < 16 && read(s->fd, junk, sizeof(junk)) > 0; i++) {
            }
            if (w > 0)
                shutdown(s->fd, SHUT_WR);
        }
    } else {
        KEEL_DEBUG("TLS connection error: %s", why);
    }
    ERR_clear_error();
    return (sys_errno == ECONNRESET || sys_errno == EPIPE) ? KEEL_ECLOSED : KEEL_EIO;
}

ssize_t keel_tls_read(struct keel_sock *s, size_t max)
{
    int more = s->ssl_more;
    s->ssl_more = 0;
    s->ssl_full_at = 0;
    s->ssl_rd_wants_w = 0;
    if (s->ssl_dead)
        return more ? KEEL_EIO : KEEL_ECLOSED;
    size_t room;
    int rc = keel_sock_read_room(s, max, &room);
    if (rc)
        return rc;
    size_t total = 0;
    while (room > 0) {
        size_t got = 0;
        ERR_clear_error();
        errno = 0;
        if (SSL_read_ex(s->ssl, s->in.data + s->in.off + s->in.len, room, &got)) {
            s->in.len += got;
            total += got;
            room -= got;
            continue;
        }
        int sys = errno;
        int e = SSL_get_error(s->ssl, 0);
        if (e == SSL_ERROR_WANT_READ)
            break;
        if (e == SSL_ERROR_WANT_WRITE) {
            s->ssl_rd_wants_w = 1;
            break;
        }
        if (e == SSL_ERROR_ZERO_RETURN) {
            ERR_clear_error();
            if (total) {
                s->ssl_more = 1; /* report the close with the next call */
                break;
            }
            s->rd_eof = 1;
            return 0;
        }
        rc = tls_fail(s, e, sys);
        if (total) {
            s->ssl_more = 1;
            break;
        }
        return rc;
    }
    return total ? (ssize_t)total : KEEL_EAGAIN;
}

ssize_t keel_tls_flush(struct keel_sock *s, const char *extra, size_t extra_len)
{
    if (s->ssl_dead)
        return KEEL_ECLOSED;
    s->ssl_wr_wants_r = 0;
    size_t done = 0; /* bytes of extra written */
    char rec[TLS_REC];
    for (;;) {
        size_t ao = s->out.len, ae = extra_len - done;
        if (ao + ae == 0)
            break;
        size_t n = ao + ae < TLS_REC ? ao + ae : TLS_REC;
        if (s->ssl_wpend) {
            /* OpenSSL holds the encrypted record: the retry must be as long as the first
             * try; the caller kept those bytes at the front of out / extra. */
            if (s->ssl_wpend > ao + ae) {
                KEEL_DEBUG("TLS write retry with %zu of %zu bytes", ao + ae, s->ssl_wpend);
                s->ssl_dead = 1;
                return KEEL_EIO;
            }
            n = s->ssl_wpend;
        }
        const char *p;
        if (n <= ao) {
            p = s->out.data + s->out.off;
        } else if (ao == 0) {
            p = extra + done;
        } else {
            /* A head and the first body bytes go out in one record. */
            memcpy(rec, s->out.data + s->out.off, ao);
            memcpy(rec + ao, extra + done, n - ao);
            p = rec;
        }
        size_t wr = 0;
        ERR_clear_error();
        errno = 0;
        if (SSL_write_ex(s->ssl, p, n, &wr)) {
            s->ssl_wpend = 0;
            size_t o = wr < ao ? wr : ao;
            keel_buf_consume(&s->out, o);
            done += wr - o;
            continue;
        }
        int sys = errno;
        int e = SSL_get_error(s->ssl, 0);
        if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
            s->ssl_wpend = n;
            s->ssl_wr_wants_r = e == SSL_ERROR_WANT_READ;
            break;
        }
        return tls_fail(s, e, sys);
    }
    return (ssize_t)done;
}

int keel_tls_readable(const struct keel_sock *s)
{
    if (s->ssl_more)
        return 1;
    if (s->ssl_dead || SSL_pending(s->ssl) <= 0)
        return 0;
    return s->ssl_full_at == 0 || s->in.len < s->ssl_full_at;
}

void keel_tls_shutdown_write(struct keel_sock *s)
{
    if (s->ssl_dead || !SSL_is_init_finished(s->ssl))
        return;
    ERR_clear_error();
    SSL_shutdown(s->ssl); /* close_notify; the answer is not awaited */
    ERR_clear_error();
}

void keel_tls_free(struct keel_sock *s)
{
    if (!s->ssl)
        return;
    /* close_notify also keeps the session resumable (OpenSSL drops sessions of connections
     * freed without one). */
    if (!(SSL_get_shutdown(s->ssl) & SSL_SENT_SHUTDOWN))
        keel_tls_shutdown_write(s);
    SSL_free(s->ssl);
    ERR_clear_error();
    sock_reset_tls(s, NULL, 0);
}
