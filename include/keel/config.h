/* SPDX-License-Identifier: MIT */
/* keel.yaml: the configuration model and its loader. Loaded once by main. [control] */
#ifndef KEEL_CONFIG_H
#define KEEL_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Passive outlier detection of a cluster ("outlier:"); 0 disables a threshold. */
struct keel_cfg_outlier {
    uint32_t consecutive_5xx;      /* default 0 (off) */
    uint32_t consecutive_gateway;  /* "consecutive_gateway_failures", default 5 */
    uint32_t consecutive_timeout;  /* "consecutive_timeouts", default 3 */
    uint32_t base_ms;              /* "base_ejection_time", default 30s */
    uint32_t max_ms;               /* "max_ejection_time", default 300s */
    uint32_t max_ejection_percent; /* default 50 */
};

enum keel_lb_policy {
    KEEL_LB_WEIGHTED_LEAST_CONN = 0, /* "weighted_least_conn" (default) */
    KEEL_LB_LEAST_CONN,              /* "least_conn" */
    KEEL_LB_ROUND_ROBIN,             /* "round_robin" */
    KEEL_LB_WEIGHTED_ROUND_ROBIN,    /* "weighted_round_robin" (smooth, nginx style) */
    KEEL_LB_IP_HASH,                 /* "ip_hash" (consistent, weighted rendezvous) */
    KEEL_LB_RANDOM,                  /* "random" (weighted) */
    KEEL_LB_LEAST_RESPONSE_TIME,     /* "least_response_time" (peak-EWMA, two choices) */
    KEEL_LB_HASH,                    /* "hash" (consistent, bounded load; see hash_on) */
    KEEL_LB__COUNT
};

/* What `lb: hash` hashes ("hash_on:" of a cluster). */
enum keel_hash_source {
    KEEL_HASH_ON_IP = 0, /* "ip: true" (default): the client address */
    KEEL_HASH_ON_HEADER, /* "header: Name": that header's value */
    KEEL_HASH_ON_COOKIE, /* "cookie: name": that cookie's value */
};

struct keel_cfg_hash_on {
    enum keel_hash_source source;
    char *name; /* header or cookie name; NULL for ip. A request without it uses the client IP */
};

enum keel_listener_proto { KEEL_LISTEN_HTTP = 0, KEEL_LISTEN_TCP };

/* What a cluster's endpoints speak ("protocol:" of a cluster). */
enum keel_upstream_proto {
    KEEL_UP_HTTP1 = 0, /* "http1" (default): HTTP/1.1 keep-alive pool */
    KEEL_UP_H2,        /* "h2": HTTP/2 cleartext (prior knowledge), or over TLS with ALPN h2 */
    KEEL_UP_GRPC,      /* "grpc": h2, plus gRPC error answers and PING keep-alive */
};

/* One certificate and its private key (PEM files). */
struct keel_cfg_cert {
    char *cert; /* chain, leaf first */
    char *key;
};

/* "tls:" of a listener: terminate TLS. The first certificate is the default; the others are
 * chosen by the SNI name against the names in each certificate. */
struct keel_cfg_tls_server {
    int enabled;
    struct keel_cfg_cert *certs; /* "cert"/"key", or "certificates: [{cert, key}, ...]" */
    size_t n_certs;
    char *client_ca;    /* require a client certificate signed by this CA; NULL: none */
    int min_version;    /* "min_version": TLS1_2_VERSION (default "1.2") or TLS1_3_VERSION */
    char *ciphers;      /* TLS 1.2 cipher list; NULL: keel's modern default */
    char *ciphersuites; /* TLS 1.3 suites; NULL: OpenSSL's default */
    char where[96];     /* "file:line:column: listeners[i].tls", for errors found later */
};

/* "tls:" of a cluster: TLS to its endpoints. */
struct keel_cfg_tls_client {
    int enabled;
    char *ca_file; /* verify the server against this bundle; NULL: the system store */
    int verify;    /* default 1; "verify: false" accepts any certificate (logged) */
    char *sni;     /* server name sent and verified; NULL: no SNI, verify skipped for names */
    struct keel_cfg_cert client; /* optional client certificate (cert NULL: none) */
    char where[96];              /* "file:line:column: clusters[i].tls" */
};

/* "http2:" of a listener. */
struct keel_cfg_h2_server {
    int enabled;                     /* default 1: h2c prior knowledge, ALPN h2 with tls */
    uint32_t max_concurrent_streams; /* default 100 */
    uint32_t initial_window_size;    /* per stream, default 256 KiB (64 KiB..16 MiB) */
};

/* Where a cluster's endpoints come from ("discovery:" of a cluster). */
enum keel_discovery_kind {
    KEEL_DISC_STATIC = 0, /* "static" (default): the endpoints list */
    KEEL_DISC_CONSUL,     /* "consul": /v1/health/service/<service> blocking queries */
    KEEL_DISC_DNS,        /* "dns": SRV records of `name` */
};

/* A resolved socket address plus the text it came from. */
struct keel_cfg_addr {
    char *text; /* as written, e.g. "127.0.0.1:8080" or "[::1]:80" or "localhost:80" */
    struct sockaddr_storage sa;
    socklen_t salen;
};

struct keel_cfg_kv {
    char *name;
    char *value; /* NULL: the header/cookie only has to be present */
};

struct keel_cfg_match {
    char *host;        /* exact, case-insensitive, port ignored; "*.example.com" suffix; NULL any */
    char *path_prefix; /* NULL: any */
    char *path;        /* exact path (query ignored); NULL: any */
    struct keel_cfg_kv *headers;
    size_t n_headers;
    struct keel_cfg_kv *cookies;
    size_t n_cookies;
};

struct keel_cfg_route {
    struct keel_cfg_match match;
    char *cluster;   /* cluster name */
    int cluster_idx; /* index into keel_cfg.clusters, resolved by the loader */
    int line;        /* where it was defined, for messages */
};

struct keel_cfg_listener {
    char *name;
    struct keel_cfg_addr addr;
    enum keel_listener_proto proto;
    struct keel_cfg_route *routes; /* http */
    size_t n_routes;
    char *cluster;   /* tcp: the cluster all connections go to */
    int cluster_idx; /* tcp: resolved */
    /* http limits */
    uint32_t max_request_line;      /* bytes, default 8192 -> 414 */
    uint32_t max_header_size;       /* bytes, default 65536 -> 431 */
    uint32_t max_headers;           /* fields, default 100 -> 431 */
    uint64_t max_body_size;         /* bytes, default 1 GiB -> 413; 0 = unlimited */
    uint32_t header_timeout_ms;     /* default 10000 -> 408 */
    uint32_t keepalive_timeout_ms;  /* idle client keep-alive, default 60000 */
    uint32_t idle_timeout_ms;       /* tcp: no bytes either way, default 3600000; http: body stall,
                                       default 60000 */
    uint32_t max_connections;       /* per listener across workers, default 10000 */
    struct keel_cfg_h2_server h2;   /* "http2:" */
    struct keel_cfg_tls_server tls; /* "tls:" */
};

struct keel_cfg_endpoint {
    struct keel_cfg_addr addr;
    uint32_t weight; /* default 1, 0 = drain */
};

/* Active health check type ("health_check.type"). */
enum keel_health_type {
    KEEL_HEALTH_HTTP = 0, /* "http": request, status line (and expect_header) decide */
    KEEL_HEALTH_TCP,      /* "tcp": a completed connect passes */
    KEEL_HEALTH_GRPC,     /* "grpc": grpc.health.v1.Health/Check over h2 must say SERVING */
};

/* An expected status code range, both ends included ("200", "200-399"). */
struct keel_cfg_status_range {
    uint16_t lo, hi;
};

/* "health_check:" of a cluster. The loader fills every default when enabled. */
struct keel_cfg_health {
    int enabled; /* the key is present (then type is set) */
    enum keel_health_type type;
    char *path;   /* http: request target, default "/health" */
    char *method; /* http: default "GET" (an HTTP token) */
    char *host;   /* http: Host header; NULL: the checked address ("ip:port") */
    struct keel_cfg_status_range *expect; /* http: default one range 200-399 */
    size_t n_expect;
    uint32_t interval_ms; /* default 5s, 100ms..1h */
    uint32_t timeout_ms;  /* default 2s (half the interval when that is below 4s); < interval */
    uint32_t rise;        /* successes in a row that bring an endpoint back, default 2 */
    uint32_t fall;        /* failures in a row that take it out, default 3 */
    uint16_t port;        /* check this port instead of the traffic port; 0: traffic port */
    uint32_t jitter_pct;  /* each interval varies by up to this share, default 10 (0..50) */
    struct keel_cfg_kv expect_header; /* http: name NULL: no identity check; else the response
                                         must carry this header with exactly this value */
    char *grpc_service; /* grpc: HealthCheckRequest.service, default "" (the whole server) */
};

struct keel_cfg_cluster {
    char *name;
    enum keel_lb_policy lb;
    struct keel_cfg_endpoint *endpoints;
    size_t n_endpoints;
    uint32_t connect_timeout_ms;    /* default 5000 -> 504 when it fires */
    uint32_t response_timeout_ms;   /* request sent -> response head, default 60000 -> 504 */
    uint32_t idle_timeout_ms;       /* pooled upstream connection idle, default 60000 */
    uint32_t max_idle_per_endpoint; /* per worker, default 64 */
    /* discovery */
    enum keel_discovery_kind discovery;
    char *service;     /* consul: service name (required there) */
    char *tag;         /* consul: only instances carrying this tag (?tag=) */
    char *datacenter;  /* consul: ?dc=; the loader copies consul.datacenter when unset */
    char *ns;          /* consul: ?ns= (namespace), key "namespace" */
    char *partition;   /* consul: ?partition= */
    int warning_drain; /* consul: "warning: drain" (default "serve" at Weights.Warning) */
    char *dns_name;    /* dns: SRV name, key "dns_name", e.g. _api._tcp.service.consul */
    int dynamic;       /* made at run time from Consul catalog tags, not read from the file */
    struct keel_cfg_outlier outlier;
    uint32_t panic_threshold; /* percent of the present weight; below it, panic mode; default 50,
                                 0 = never */
    /* circuit breaker ("circuit_breaker:"), 0 = unlimited: upstream connections open, requests
     * waiting for a connection, requests in flight, each across all workers -> 503 at once */
    uint32_t max_connections;
    uint32_t max_pending;
    uint32_t max_requests;
    /* slow start ("slow_start:"): an endpoint that appears after the cluster's first answer
     * ramps from min_percent of its weight to all of it over window_ms, as
     * (elapsed / window) ^ (1 / aggression). window_ms 0 = off (default). */
    uint32_t slow_start_ms;
    double slow_start_aggression;    /* default 1.0 (linear), 0.1..10 */
    uint32_t slow_start_min_percent; /* default 10 */
    /* retries ("retries:"): idempotent requests without a body (GET, HEAD, OPTIONS, PUT,
     * DELETE, TRACE, or carrying Idempotency-Key) that failed after being sent (reset or
     * closed before any response byte, response timeout) or got a status in on_status go to
     * another endpoint, at most retry_max times, while retries in flight stay under
     * retry_budget_percent of the cluster's requests in flight (at least 3). */
    uint32_t retry_max;            /* default 2, 0 = off */
    uint32_t retry_budget_percent; /* default 20 */
    uint32_t retry_per_try_ms;     /* response timeout of each try, default 0 = timeouts.response */
    uint16_t retry_on[8];          /* statuses, default none */
    uint32_t n_retry_on;
    /* "sticky: {cookie: NAME}": keel sets NAME to an opaque id of the endpoint that served
     * and sends later requests carrying it there while it is eligible; NULL = off. */
    char *sticky_cookie;
    struct keel_cfg_health health_check; /* active checks; enabled 0: none */
    struct keel_cfg_hash_on hash_on;     /* lb: hash only */
    enum keel_upstream_proto protocol;   /* "protocol:", default http1 */
    uint32_t h2_max_streams;             /* "http2.max_concurrent_streams": per upstream connection,
                                            default 100 (also capped by the server's setting) */
    uint32_t h2_keepalive_ms;            /* "http2.keepalive_interval": PING an idle h2 connection;
                                            default 30s for grpc, 0 (off) for h2 */
    uint32_t h2_keepalive_timeout_ms;    /* "http2.keepalive_timeout": no PING ack -> close,
                                            default 10s */
    struct keel_cfg_tls_client tls;      /* "tls:" */
};

/* Top-level "consul:" section. Present or not, consul clusters use these (defaults). */
struct keel_cfg_consul {
    char *address;            /* "http://127.0.0.1:8500" (default); https:// uses ca_file.
                                 Stored with a lower-case scheme and no trailing '/' */
    char *token;              /* ACL token (X-Consul-Token); default: $CONSUL_HTTP_TOKEN at
                                 load; NULL: none ("token: \"\"" forces none) */
    char *ca_file;            /* CA bundle for https; default: the system store */
    char *datacenter;         /* default dc for consul clusters; NULL: the agent's */
    uint32_t wait_ms;         /* blocking query wait, default 60s, 1s..10m */
    uint32_t min_interval_ms; /* token bucket: burst 2, then one query per this when answers
                                 return at once; default 2s */
    int catalog;              /* "catalog: true": services tagged "keel" become clusters */
    char *catalog_listener;   /* listener that gets their routes; default: first http one */
    int catalog_listener_idx; /* resolved by the loader, -1 when catalog is off */
};

/* Top-level "dns:" section for dns clusters. */
struct keel_cfg_dns {
    struct keel_cfg_addr *servers; /* "servers: [127.0.0.1:53]" (port 53 when omitted; text as
                                      written, use sa); none: /etc/resolv.conf */
    size_t n_servers;
    uint32_t min_ttl_ms;    /* refresh floor (Consul answers TTL 0), default 1s */
    uint32_t max_ttl_ms;    /* refresh ceiling, default 300s */
    uint32_t empty_hold_ms; /* NXDOMAIN / empty answer empties a cluster only after this long,
                               default 30s */
    uint32_t timeout_ms;    /* per query, default 2s */
};

struct keel_cfg {
    char *file;
    uint32_t workers;           /* default 0 = number of cores */
    struct keel_cfg_addr admin; /* admin.address, default 127.0.0.1:9901; text NULL = off */
    int admin_enabled;
    uint32_t drain_timeout_ms; /* default 15000 */
    int log_level;             /* 0 error, 1 warn, 2 info (default), 3 debug */
    int access_log;            /* default 1 */
    struct keel_cfg_listener *listeners;
    size_t n_listeners;
    struct keel_cfg_cluster *clusters;
    size_t n_clusters;
    struct keel_cfg_consul consul;
    struct keel_cfg_dns dns;
    char *state_file;     /* last good discovery answers, loaded at start; NULL: none */
    uint32_t debounce_ms; /* "discovery_debounce", default 100ms */
};

/* Whether the loader may resolve host names in addresses with getaddrinfo() (default 1).
 * With 0 a host name is an error ("name resolution disabled"); "localhost" always maps to
 * 127.0.0.1 without a lookup. Tests and the fuzz target set 0 so they never send DNS queries. */
extern int keel_config_resolve_names;

/* Collected configuration errors, each "file:line:column: path: message". */
struct keel_cfg_errors {
    char **msgs;
    size_t n;
};

/**
 * Loads and validates a configuration file.
 * @param path  file to read.
 * @param out   out: the configuration, owned by the caller (keel_config_free) on success.
 * @param errs  out: every error found (owned by caller, keel_config_errors_free); filled
 *              also on failure to read the file ("path: cannot read: <strerror>").
 * @return 0, KEEL_ECONFIG (errs has at least one message) or KEEL_ENOMEM. [control]
 */
int keel_config_load_file(const char *path, struct keel_cfg **out, struct keel_cfg_errors *errs);

/** Same as keel_config_load_file() for a buffer; name is used in messages. [any] */
int keel_config_load_buf(const char *name, const char *buf, size_t len, struct keel_cfg **out,
                         struct keel_cfg_errors *errs);

/** Frees a configuration (NULL is fine). [any] */
void keel_config_free(struct keel_cfg *cfg);

/** Frees the messages of an error list and zeroes it. [any] */
void keel_config_errors_free(struct keel_cfg_errors *errs);

/** Fills every default of a cluster (policy, timeouts, pool, outlier, panic threshold), as the
 *  loader does before reading a cluster's keys; also used for clusters made at run time.
 *  [any] */
void keel_config_cluster_defaults(struct keel_cfg_cluster *cl);

/** Sets a cluster's upstream protocol and the defaults that follow from it (grpc: a 30 s PING
 *  keep-alive; none otherwise). [any] */
void keel_config_cluster_protocol(struct keel_cfg_cluster *cl, enum keel_upstream_proto p);

/** Fills the built-in outlier detection defaults. [any] */
void keel_config_outlier_defaults(struct keel_cfg_outlier *o);

/** Name of a policy as written in keel.yaml. [any] */
const char *keel_config_lb_name(enum keel_lb_policy p);

/** Name of an upstream protocol as written in keel.yaml ("http1", "h2", "grpc"). [any] */
const char *keel_config_upstream_proto_name(enum keel_upstream_proto p);

#endif
