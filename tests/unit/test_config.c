/* SPDX-License-Identifier: MIT */
/* Unit tests for the keel.yaml loader (sidecar/config.c). */
#include "keel/config.h"
#include "keel/err.h"
#include "testutil.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(void);

static int load(const char *yaml, struct keel_cfg **cfg, struct keel_cfg_errors *e)
{
    return keel_config_load_buf("t.yaml", yaml, strlen(yaml), cfg, e);
}

static void dump_errors(const struct keel_cfg_errors *e)
{
    for (size_t i = 0; i < e->n; i++)
        fprintf(stderr, "    | %s\n", e->msgs[i]);
}

static int addr_is_v4(const struct keel_cfg_addr *a, const char *ip, uint16_t port)
{
    const struct sockaddr_in *sin = (const struct sockaddr_in *)&a->sa;
    struct in_addr want;
    if (inet_pton(AF_INET, ip, &want) != 1)
        return 0;
    return a->salen == sizeof(*sin) && sin->sin_family == AF_INET &&
           sin->sin_addr.s_addr == want.s_addr && ntohs(sin->sin_port) == port;
}

static int addr_is_v6(const struct keel_cfg_addr *a, const char *ip, uint16_t port)
{
    const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&a->sa;
    struct in6_addr want;
    if (inet_pton(AF_INET6, ip, &want) != 1)
        return 0;
    return a->salen == sizeof(*sin6) && sin6->sin6_family == AF_INET6 &&
           !memcmp(&sin6->sin6_addr, &want, sizeof(want)) && ntohs(sin6->sin6_port) == port;
}

static int starts_with(const char *s, const char *prefix)
{
    return !strncmp(s, prefix, strlen(prefix));
}

static int streq(const char *a, const char *b)
{
    return a && b && !strcmp(a, b);
}

static const char full_yaml[] = "workers: 4\n"
                                "log_level: debug\n"
                                "access_log: off\n"
                                "drain_timeout: 30s\n"
                                "admin:\n"
                                "  address: \"[::1]:9902\"\n"
                                "  enabled: yes\n"
                                "listeners:\n"
                                "  - name: web\n"
                                "    address: 0.0.0.0:8080\n"
                                "    protocol: http\n"
                                "    routes:\n"
                                "      - match:\n"
                                "          host: API.Example.com\n"
                                "          path_prefix: /api/\n"
                                "          headers: [{name: X-Canary, value: \"1\"}, "
                                "{name: X-Debug}]\n"
                                "          cookies: [{name: canary, value: \"yes\"}]\n"
                                "        cluster: api\n"
                                "      - match: {path: /exact, host: \"*.example.org\"}\n"
                                "        cluster: api\n"
                                "      - cluster: static\n"
                                "    limits:\n"
                                "      max_request_line: 4KiB\n"
                                "      max_header_size: 32k\n"
                                "      max_headers: 50\n"
                                "      max_body_size: 0\n"
                                "      max_connections: 500\n"
                                "    timeouts:\n"
                                "      header: 5s\n"
                                "      keepalive: 30s\n"
                                "      idle: 2m\n"
                                "  - name: db\n"
                                "    address: localhost:5432\n"
                                "    protocol: tcp\n"
                                "    cluster: pg\n"
                                "  - name: default\n"
                                "    address: \"[::]:8081\"\n"
                                "    routes: [{cluster: static}]\n"
                                "clusters:\n"
                                "  - name: api\n"
                                "    lb: round_robin\n"
                                "    endpoints:\n"
                                "      - address: 127.0.0.1:9001\n"
                                "        weight: 2\n"
                                "      - 127.0.0.1:9002\n"
                                "      - {address: \"[::1]:9003\", weight: 0}\n"
                                "    timeouts: {connect: 250ms, response: 1h, idle: 45s}\n"
                                "    max_idle_per_endpoint: 8\n"
                                "  - name: static\n"
                                "    endpoints: [localhost:9100]\n"
                                "  - name: pg\n"
                                "    lb: ip_hash\n"
                                "    endpoints: [10.0.0.5:5432]\n";

static void test_full(void)
{
    struct keel_cfg *cfg = NULL;
    struct keel_cfg_errors e;
    int rc = load(full_yaml, &cfg, &e);
    if (!CHECKF(rc == 0 && cfg && e.n == 0, "rc %d", rc)) {
        dump_errors(&e);
        keel_config_errors_free(&e);
        return;
    }
    CHECK(streq(cfg->file, "t.yaml"));
    CHECK(cfg->workers == 4);
    CHECK(cfg->log_level == 3);
    CHECK(cfg->access_log == 0);
    CHECK(cfg->drain_timeout_ms == 30000);
    CHECK(cfg->admin_enabled == 1);
    CHECK(streq(cfg->admin.text, "[::1]:9902"));
    CHECK(addr_is_v6(&cfg->admin, "::1", 9902));

    CHECK(cfg->n_listeners == 3);
    CHECK(cfg->n_clusters == 3);
    if (cfg->n_listeners != 3 || cfg->n_clusters != 3)
        goto out;

    const struct keel_cfg_listener *web = &cfg->listeners[0];
    CHECK(streq(web->name, "web"));
    CHECK(streq(web->addr.text, "0.0.0.0:8080"));
    CHECK(addr_is_v4(&web->addr, "0.0.0.0", 8080));
    CHECK(web->proto == KEEL_LISTEN_HTTP);
    CHECK(web->cluster == NULL && web->cluster_idx == -1);
    CHECK(web->max_request_line == 4096);
    CHECK(web->max_header_size == 32768);
    CHECK(web->max_headers == 50);
    CHECK(web->max_body_size == 0);
    CHECK(web->max_connections == 500);
    CHECK(web->header_timeout_ms == 5000);
    CHECK(web->keepalive_timeout_ms == 30000);
    CHECK(web->idle_timeout_ms == 120000);
    CHECK(web->n_routes == 3);
    if (web->n_routes == 3) {
        const struct keel_cfg_route *r = web->routes;
        CHECK(streq(r[0].match.host, "api.example.com")); /* lowered: matched case-insensitively */
        CHECK(streq(r[0].match.path_prefix, "/api/"));
        CHECK(r[0].match.path == NULL);
        CHECK(r[0].match.n_headers == 2);
        if (r[0].match.n_headers == 2) {
            CHECK(streq(r[0].match.headers[0].name, "X-Canary"));
            CHECK(streq(r[0].match.headers[0].value, "1"));
            CHECK(streq(r[0].match.headers[1].name, "X-Debug"));
            CHECK(r[0].match.headers[1].value == NULL);
        }
        CHECK(r[0].match.n_cookies == 1);
        if (r[0].match.n_cookies == 1) {
            CHECK(streq(r[0].match.cookies[0].name, "canary"));
            CHECK(streq(r[0].match.cookies[0].value, "yes"));
        }
        CHECK(streq(r[0].cluster, "api") && r[0].cluster_idx == 0);
        CHECK(r[0].line == 13);
        CHECK(streq(r[1].match.path, "/exact"));
        CHECK(streq(r[1].match.host, "*.example.org"));
        CHECK(r[1].match.path_prefix == NULL && r[1].match.n_headers == 0);
        CHECK(r[1].cluster_idx == 0 && r[1].line == 19);
        CHECK(r[2].match.host == NULL && r[2].match.path == NULL &&
              r[2].match.path_prefix == NULL && r[2].match.n_headers == 0 &&
              r[2].match.n_cookies == 0);
        CHECK(streq(r[2].cluster, "static") && r[2].cluster_idx == 1 && r[2].line == 21);
    }

    const struct keel_cfg_listener *db = &cfg->listeners[1];
    CHECK(streq(db->name, "db"));
    CHECK(streq(db->addr.text, "localhost:5432"));
    CHECK(addr_is_v4(&db->addr, "127.0.0.1", 5432));
    CHECK(db->proto == KEEL_LISTEN_TCP);
    CHECK(streq(db->cluster, "pg") && db->cluster_idx == 2);
    CHECK(db->n_routes == 0 && db->routes == NULL);
    CHECK(db->idle_timeout_ms == 3600000); /* tcp default */
    CHECK(db->header_timeout_ms == 10000);

    const struct keel_cfg_listener *def = &cfg->listeners[2];
    CHECK(addr_is_v6(&def->addr, "::", 8081));
    CHECK(def->proto == KEEL_LISTEN_HTTP);
    CHECK(def->max_request_line == 8192);
    CHECK(def->max_header_size == 65536);
    CHECK(def->max_headers == 100);
    CHECK(def->max_body_size == (uint64_t)1 << 30);
    CHECK(def->max_connections == 10000);
    CHECK(def->header_timeout_ms == 10000);
    CHECK(def->keepalive_timeout_ms == 60000);
    CHECK(def->idle_timeout_ms == 60000); /* http default */
    CHECK(def->n_routes == 1 && def->routes[0].cluster_idx == 1);

    const struct keel_cfg_cluster *api = &cfg->clusters[0];
    CHECK(streq(api->name, "api"));
    CHECK(api->lb == KEEL_LB_ROUND_ROBIN);
    CHECK(api->n_endpoints == 3);
    if (api->n_endpoints == 3) {
        CHECK(streq(api->endpoints[0].addr.text, "127.0.0.1:9001"));
        CHECK(addr_is_v4(&api->endpoints[0].addr, "127.0.0.1", 9001));
        CHECK(api->endpoints[0].weight == 2);
        CHECK(addr_is_v4(&api->endpoints[1].addr, "127.0.0.1", 9002));
        CHECK(api->endpoints[1].weight == 1);
        CHECK(addr_is_v6(&api->endpoints[2].addr, "::1", 9003));
        CHECK(api->endpoints[2].weight == 0);
    }
    CHECK(api->connect_timeout_ms == 250);
    CHECK(api->response_timeout_ms == 3600000);
    CHECK(api->idle_timeout_ms == 45000);
    CHECK(api->max_idle_per_endpoint == 8);

    const struct keel_cfg_cluster *st = &cfg->clusters[1];
    CHECK(streq(st->name, "static"));
    CHECK(st->lb == KEEL_LB_WEIGHTED_LEAST_CONN);
    CHECK(st->n_endpoints == 1 && addr_is_v4(&st->endpoints[0].addr, "127.0.0.1", 9100));
    CHECK(st->n_endpoints == 1 && st->endpoints[0].weight == 1);
    CHECK(st->connect_timeout_ms == 5000);
    CHECK(st->response_timeout_ms == 60000);
    CHECK(st->idle_timeout_ms == 60000);
    CHECK(st->max_idle_per_endpoint == 64);
    CHECK(cfg->clusters[2].lb == KEEL_LB_IP_HASH);
    CHECK(addr_is_v4(&cfg->clusters[2].endpoints[0].addr, "10.0.0.5", 5432));
out:
    keel_config_free(cfg);
    keel_config_errors_free(&e);
}

#define MIN_LISTENERS                                                                              \
    "listeners:\n  - name: web\n    address: 127.0.0.1:8080\n    routes: [{cluster: api}]\n"
#define MIN_CLUSTERS "clusters:\n  - name: api\n    endpoints: [127.0.0.1:9001]\n"

static void test_defaults(void)
{
    struct keel_cfg *cfg = NULL;
    struct keel_cfg_errors e;
    int rc = load(MIN_LISTENERS MIN_CLUSTERS, &cfg, &e);
    if (!CHECKF(rc == 0 && cfg, "rc %d", rc)) {
        dump_errors(&e);
        keel_config_errors_free(&e);
        return;
    }
    CHECK(cfg->workers == 0);
    CHECK(cfg->log_level == 2);
    CHECK(cfg->access_log == 1);
    CHECK(cfg->drain_timeout_ms == 15000);
    CHECK(cfg->admin_enabled == 1);
    CHECK(streq(cfg->admin.text, "127.0.0.1:9901"));
    CHECK(addr_is_v4(&cfg->admin, "127.0.0.1", 9901));
    CHECK(cfg->n_listeners == 1 && cfg->listeners[0].routes[0].cluster_idx == 0);
    keel_config_free(cfg);

    /* admin disabled: text NULL means off */
    rc = load("admin: {enabled: false}\n" MIN_LISTENERS MIN_CLUSTERS, &cfg, &e);
    CHECK(rc == 0 && cfg);
    if (cfg) {
        CHECK(cfg->admin_enabled == 0);
        CHECK(cfg->admin.text == NULL);
    }
    keel_config_free(cfg);

    /* Aliases of scalars are fine. */
    rc = load("clusters:\n  - name: &c api\n    endpoints: [127.0.0.1:9001]\n"
              "listeners:\n  - name: web\n    address: 127.0.0.1:8080\n"
              "    routes: [{cluster: *c}]\n",
              &cfg, &e);
    CHECKF(rc == 0, "rc %d", rc);
    dump_errors(&e);
    keel_config_free(cfg);
    keel_config_errors_free(&e);
}

struct bad_case {
    const char *yaml;
    const char *pos;   /* "line:column" of the (first) error */
    const char *words; /* '|'-separated substrings that the message must contain */
    size_t nerr;       /* expected number of errors */
};

#define L4 MIN_LISTENERS
#define C3 MIN_CLUSTERS
#define WEB "listeners:\n  - name: web\n    address: 127.0.0.1:8080\n"

static const struct bad_case bad_cases[] = {
    {"workers: 0\n" L4 C3, "1:10", "workers: |out of range|1..256", 1},
    {"workers: abc\n" L4 C3, "1:10", "workers: |expected an integer|\"abc\"", 1},
    {"workers: \"4\"\n" L4 C3, "1:10", "workers: |expected an integer|quoted", 1},
    {"workers: [4]\n" L4 C3, "1:10", "workers: |expected an integer|found a sequence", 1},
    {"log_level: verbose\n" L4 C3, "1:12",
     "log_level: |unknown log level \"verbose\"|error, warn, info, debug", 1},
    {"access_log: maybe\n" L4 C3, "1:13", "access_log: |expected a boolean|\"maybe\"", 1},
    {"drain_timeout: 5x\n" L4 C3, "1:16", "drain_timeout: |invalid duration \"5x\"|ms, s, m or h",
     1},
    {"drain_timeout: -5s\n" L4 C3, "1:16", "drain_timeout: |invalid duration \"-5s\"", 1},
    {"drain_timeout: 1200h\n" L4 C3, "1:16", "drain_timeout: |\"1200h\" is too large", 1},
    {"tiemouts: 5\n" L4 C3, "1:1", "tiemouts: |unknown key \"tiemouts\"|expected one of workers",
     1},
    {"workers: 2\nworkers: 3\n" L4 C3, "2:1", "workers: |duplicate key \"workers\"|line 1", 1},
    {"admin: [1]\n" L4 C3, "1:8", "admin: |expected a mapping|found a sequence", 1},
    {"admin: {address: 127.0.0.1}\n" L4 C3, "1:18", "admin.address: |missing port", 1},
    {"admin: {enabled: 2}\n" L4 C3, "1:18", "admin.enabled: |expected a boolean", 1},
    {C3, "1:1", "listeners: |missing required key \"listeners\"", 1},
    {"listeners: []\n" C3, "1:12", "listeners: |at least one listener", 1},
    {"", "1:1", "(top level): |empty configuration", 1},
    {"# only a comment\n", "1:1", "(top level): |empty configuration", 1},
    {"- a\n- b\n", "1:1", "(top level): |expected a mapping|found a sequence", 1},
    {"listeners:\n  - address: 127.0.0.1:8080\n    routes: [{cluster: api}]\n" C3, "2:5",
     "listeners[0].name: |missing required key \"name\"", 1},
    {"listeners:\n  - {name: web, address: 127.0.0.1:8080, routes: [{cluster: api}]}\n"
     "  - {name: web, address: 127.0.0.1:8081, routes: [{cluster: api}]}\n" C3,
     "3:12", "listeners[1].name: |duplicate listener name \"web\"|listeners[0]", 1},
    {"listeners:\n  - {name: web, address: 127.0.0.1:8080, routes: [{cluster: api}]}\n"
     "  - {name: web2, address: 127.0.0.1:8080, routes: [{cluster: api}]}\n" C3,
     "3:27", "listeners[1].address: |duplicate listener address \"127.0.0.1:8080\"", 1},
    {"listeners:\n  - {name: a, address: \"[::1]:80\", routes: [{cluster: api}]}\n"
     "  - {name: b, address: \"[0:0::1]:80\", routes: [{cluster: api}]}\n" C3,
     "3:24", "listeners[1].address: |duplicate listener address", 1},
    {WEB "    routes: [{cluster: apx}]\n" C3, "4:24",
     "listeners[0].routes[0].cluster: |unknown cluster \"apx\"|defined clusters: api", 1},
    {"listeners:\n  - name: db\n    address: 127.0.0.1:5432\n    protocol: tcp\n"
     "    cluster: api\n    routes: [{cluster: api}]\n" C3,
     "6:13", "listeners[0].routes: |only for http listeners", 1},
    {"listeners:\n  - name: db\n    address: 127.0.0.1:5432\n    protocol: tcp\n" C3, "2:5",
     "listeners[0].cluster: |missing required key \"cluster\"|tcp", 1},
    {L4 "    cluster: api\n" C3, "5:14",
     "listeners[0].cluster: |only for tcp listeners|route without match", 1},
    {WEB "    protocol: udp\n    routes: [{cluster: api}]\n" C3, "4:15",
     "listeners[0].protocol: |unknown protocol \"udp\"|http, tcp", 1},
    {WEB C3, "2:5", "listeners[0].routes: |missing required key \"routes\"", 1},
    {"listeners:\n  - name: web\n    address: 127.0.0.1:0\n    routes: [{cluster: api}]\n" C3,
     "3:14", "listeners[0].address: |bad port \"0\"|1..65535", 1},
    {"listeners:\n  - name: web\n    address: 127.0.0.1:70000\n    routes: [{cluster: api}]\n" C3,
     "3:14", "listeners[0].address: |bad port \"70000\"", 1},
    {"listeners:\n  - name: web\n    address: \"::1:80\"\n    routes: [{cluster: api}]\n" C3,
     "3:14", "listeners[0].address: |needs brackets", 1},
    {"listeners:\n  - name: web\n    address: backend.internal:80\n"
     "    routes: [{cluster: api}]\n" C3,
     "3:14",
     "listeners[0].address: |cannot resolve \"backend.internal\" (name resolution "
     "disabled)",
     1},
    {"listeners:\n  - name: web\n    address: \"bad host:80\"\n    routes: [{cluster: api}]\n" C3,
     "3:14", "listeners[0].address: |neither an IPv4 address nor a host name", 1},
    {"listeners:\n  - name: web\n    address: 127.0.0.256:80\n    routes: [{cluster: api}]\n" C3,
     "3:14", "listeners[0].address: |\"127.0.0.256\" is not a valid IPv4 address", 1},
    {"listeners:\n  - name: web\n    address: \"[::g]:80\"\n    routes: [{cluster: api}]\n" C3,
     "3:14", "listeners[0].address: |not a numeric IPv6 address", 1},
    {L4 "clusters:\n  - name: api\n    lb: fastest\n    endpoints: [127.0.0.1:9001]\n", "7:9",
     "t.yaml:7:9: clusters[0].lb: unknown policy \"fastest\" (expected one of "
     "weighted_least_conn, least_conn, round_robin, weighted_round_robin, ip_hash, random, "
     "least_response_time, hash)",
     1},
    {L4 "clusters:\n  - name: api\n    endpoints: []\n", "7:16",
     "clusters[0].endpoints: |at least one endpoint", 1},
    {L4 "clusters:\n  - name: api\n", "6:5", "clusters[0].endpoints: |missing required key", 1},
    {L4 "clusters:\n  - name: api\n    endpoints: [{address: 127.0.0.1:1, weight: 10001}]\n",
     "7:48", "clusters[0].endpoints[0].weight: |\"10001\" is out of range|0..10000", 1},
    {L4 "clusters:\n  - name: api\n    endpoints: [{weight: 2}]\n", "7:17",
     "clusters[0].endpoints[0].address: |missing required key \"address\"", 1},
    {L4 "clusters:\n  - name: api\n    endpoints: [[1]]\n", "7:17",
     "clusters[0].endpoints[0]: |expected an endpoint|found a sequence", 1},
    {L4 "clusters:\n  - name: api\n    endpoints: [127.0.0.1:1, 127.0.0.1:1]\n", "7:30",
     "clusters[0].endpoints[1]: |duplicate endpoint \"127.0.0.1:1\"", 1},
    {L4 C3 "    timeouts: {connect: 0s}\n", "8:25",
     "clusters[0].timeouts.connect: |too short|minimum 1ms", 1},
    {L4 C3 "    timeouts: {conect: 1s}\n", "8:16",
     "clusters[0].timeouts.conect: |unknown key \"conect\"|connect, response, idle", 1},
    {L4 C3 "    max_idle_per_endpoint: 100001\n", "8:28",
     "clusters[0].max_idle_per_endpoint: |out of range|0..100000", 1},
    {L4 C3 "  - name: api\n    endpoints: [127.0.0.1:9002]\n", "8:11",
     "clusters[1].name: |duplicate cluster name \"api\"|clusters[0]", 1},
    {L4 C3 "  - name: \"my cluster\"\n    endpoints: [127.0.0.1:9002]\n", "8:11",
     "clusters[1].name: |invalid name \"my cluster\"", 1},
    {L4 C3 "  - name:\n    endpoints: [127.0.0.1:9002]\n", "8:10",
     "clusters[1].name: |expected a name, found null", 1},
    {L4 "    limits: {max_body_size: 1TiB}\n" C3, "5:29",
     "listeners[0].limits.max_body_size: |invalid size \"1TiB\"|KiB", 1},
    {L4 "    limits: {max_header_size: 99999999999999999999999}\n" C3, "5:31",
     "listeners[0].limits.max_header_size: |out of range", 1},
    {L4 "    limits: {max_request_line: 2MiB}\n" C3, "5:32",
     "listeners[0].limits.max_request_line: |\"2MiB\" is out of range|16..1048576", 1},
    {L4 "    limits: {max_header: 10}\n" C3, "5:14",
     "listeners[0].limits.max_header: |unknown key|max_headers", 1},
    {L4 "    timeouts: {header: 1.5s}\n" C3, "5:24",
     "listeners[0].timeouts.header: |invalid duration \"1.5s\"", 1},
    {WEB "    routes: [{match: {path: /a, path_prefix: /b}, cluster: api}]\n" C3, "4:29",
     "listeners[0].routes[0].match.path: |mutually exclusive", 1},
    {WEB "    routes: [{match: {path_prefix: api}, cluster: api}]\n" C3, "4:36",
     "listeners[0].routes[0].match.path_prefix: |invalid path \"api\"|'/'", 1},
    {WEB "    routes: [{match: {hots: a.com}, cluster: api}]\n" C3, "4:23",
     "listeners[0].routes[0].match.hots: |unknown key \"hots\"|host, path_prefix", 1},
    {WEB "    routes: [{match: {host: \"api.*.com\"}, cluster: api}]\n" C3, "4:29",
     "listeners[0].routes[0].match.host: |invalid host \"api.*.com\"", 1},
    {WEB "    routes: [{match: {headers: [{value: x}]}, cluster: api}]\n" C3, "4:33",
     "listeners[0].routes[0].match.headers[0].name: |missing required key \"name\"", 1},
    {WEB "    routes: [{match: {cookies: [{name: \"a b\"}]}, cluster: api}]\n" C3, "4:40",
     "listeners[0].routes[0].match.cookies[0].name: |invalid cookie name \"a b\"", 1},
    {WEB "    routes: [{match: {path: /x}}]\n" C3, "4:14",
     "listeners[0].routes[0].cluster: |missing required key \"cluster\"", 1},
    {WEB "    routes: [{cluster: api}, {cluster: {name: api}}]\n" C3, "4:40",
     "listeners[0].routes[1].cluster: |expected a cluster name, found a mapping", 1},
    {"workers: !!int 4\n" L4 C3, "1:10", "workers: |YAML tags are not supported", 1},
    {"admin: !custom {enabled: true}\n" L4 C3, "1:8", "admin: |YAML tags are not supported|!custom",
     1},
    {L4 "clusters:\n  - &c {name: api, endpoints: [127.0.0.1:9001]}\n  - *c\n", "6:5",
     "clusters[1]: |used again through a YAML alias", 1},
    {"listeners: &a [*a]\n" C3, "1:12", "listeners[0]: |expected a mapping|found a sequence", 1},
    {"x: &a {y: *a}\n" L4 C3, "1:1", "x: |unknown key \"x\"", 1},
    {L4 C3 "---\nworkers: 2\n", "9:1", "(top level): |more than one YAML document", 1},
    {"? [a]\n: 1\n" L4 C3, "1:3", "(top level): |expected a key (a string)|found a sequence", 1},
    {"workers: \"\\x00\"\n" L4 C3, "1:10", "workers: |NUL byte", 1},
    {"a: b: c\n", "1:5", "t.yaml:1:5: yaml: mapping values are not allowed in this context", 1},
    {"listeners: [a, b\n", "2:1", "yaml: did not find expected ',' or ']'", 1},
    {"workers: 1\nx: \xc3\x28\n", "2:5", "yaml: invalid trailing UTF-8 octet", 1},
    {"x: \xff\n", "1:4", "yaml: invalid leading UTF-8 octet (byte 0xff)", 1},
};

static int contains_all(const char *msg, const char *words)
{
    char buf[512];
    snprintf(buf, sizeof(buf), "%s", words);
    for (char *save = NULL, *w = strtok_r(buf, "|", &save); w; w = strtok_r(NULL, "|", &save))
        if (!strstr(msg, w))
            return 0;
    return 1;
}

/* ---- discovery settings ---------------------------------------------------------------- */

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (CHECKF(f != NULL, "%s", path)) {
        fputs(text, f);
        fclose(f);
    }
}

static void test_discovery_full(void)
{
    char dir[] = "/tmp/keel_test_disc_XXXXXX";
    if (!CHECK(mkdtemp(dir) != NULL))
        return;
    char ca[128], state[128], yaml[4096];
    snprintf(ca, sizeof(ca), "%s/ca.pem", dir);
    snprintf(state, sizeof(state), "%s/state.json", dir);
    write_file(ca, "-----BEGIN CERTIFICATE-----\n");
    snprintf(yaml, sizeof(yaml),
             "consul:\n"
             "  address: HTTPS://consul.example.com:8501/\n"
             "  token: s3cr3t-token\n"
             "  ca_file: %s\n"
             "  datacenter: dc1\n"
             "  wait: 5m\n"
             "  min_interval: 500ms\n"
             "  catalog: yes\n"
             "  catalog_listener: edge\n"
             "dns:\n"
             "  servers: [127.0.0.1:8600, 10.0.0.2, \"[::1]\", \"[::1]:5353\"]\n"
             "  min_ttl: 2s\n"
             "  max_ttl: 10m\n"
             "  empty_hold: 0\n"
             "  timeout: 750ms\n"
             "state_file: %s\n"
             "discovery_debounce: 250ms\n"
             "listeners:\n"
             "  - name: web\n"
             "    address: 127.0.0.1:8080\n"
             "    routes: [{cluster: static}]\n"
             "  - name: db\n"
             "    address: 127.0.0.1:5432\n"
             "    protocol: tcp\n"
             "    cluster: billing\n"
             "  - name: edge\n"
             "    address: 127.0.0.1:8081\n"
             "clusters:\n"
             "  - name: static\n"
             "    discovery: static\n"
             "    endpoints: [127.0.0.1:9001]\n"
             "  - name: billing\n"
             "    discovery: consul\n"
             "    service: billing-api\n"
             "    tag: \"keel.route=api.example.com/v1\"\n"
             "    datacenter: dc2\n"
             "    namespace: team-a\n"
             "    partition: p1\n"
             "    warning: drain\n"
             "    lb: round_robin\n"
             "  - name: billing-default\n"
             "    discovery: consul\n"
             "    service: billing\n"
             "    warning: serve\n"
             "  - name: search\n"
             "    discovery: dns\n"
             "    dns_name: _search._tcp.service.consul.\n",
             ca, state);
    setenv("CONSUL_HTTP_TOKEN", "from-env", 1); /* the file's token wins */
    struct keel_cfg *cfg = NULL;
    struct keel_cfg_errors e;
    int rc = load(yaml, &cfg, &e);
    unsetenv("CONSUL_HTTP_TOKEN");
    if (!CHECKF(rc == 0 && cfg, "rc %d", rc)) {
        dump_errors(&e);
        goto out;
    }
    const struct keel_cfg_consul *co = &cfg->consul;
    CHECKF(streq(co->address, "https://consul.example.com:8501"), "%s", co->address);
    CHECK(streq(co->token, "s3cr3t-token"));
    CHECK(streq(co->ca_file, ca));
    CHECK(streq(co->datacenter, "dc1"));
    CHECK(co->wait_ms == 300000);
    CHECK(co->min_interval_ms == 500);
    CHECK(co->catalog == 1);
    CHECK(streq(co->catalog_listener, "edge"));
    CHECK(co->catalog_listener_idx == 2);
    CHECK(cfg->n_listeners == 3 && cfg->listeners[2].n_routes == 0 &&
          cfg->listeners[2].routes == NULL);
    CHECK(cfg->listeners[1].cluster_idx == 1);

    const struct keel_cfg_dns *d = &cfg->dns;
    CHECK(d->n_servers == 4);
    if (d->n_servers == 4) {
        CHECK(streq(d->servers[0].text, "127.0.0.1:8600"));
        CHECK(addr_is_v4(&d->servers[0], "127.0.0.1", 8600));
        CHECK(streq(d->servers[1].text, "10.0.0.2"));
        CHECK(addr_is_v4(&d->servers[1], "10.0.0.2", 53));
        CHECK(streq(d->servers[2].text, "[::1]"));
        CHECK(addr_is_v6(&d->servers[2], "::1", 53));
        CHECK(addr_is_v6(&d->servers[3], "::1", 5353));
    }
    CHECK(d->min_ttl_ms == 2000);
    CHECK(d->max_ttl_ms == 600000);
    CHECK(d->empty_hold_ms == 0);
    CHECK(d->timeout_ms == 750);
    CHECK(streq(cfg->state_file, state));
    CHECK(access(state, F_OK) != 0); /* the loader only checks; it never creates the file */
    CHECK(cfg->debounce_ms == 250);

    CHECK(cfg->n_clusters == 4);
    if (cfg->n_clusters != 4)
        goto out;
    const struct keel_cfg_cluster *st = &cfg->clusters[0], *bi = &cfg->clusters[1],
                                  *bd = &cfg->clusters[2], *se = &cfg->clusters[3];
    CHECK(st->discovery == KEEL_DISC_STATIC && st->n_endpoints == 1);
    CHECK(!st->service && !st->tag && !st->datacenter && !st->ns && !st->partition &&
          !st->dns_name && !st->warning_drain && !st->dynamic);
    CHECK(bi->discovery == KEEL_DISC_CONSUL);
    CHECK(bi->n_endpoints == 0 && bi->endpoints == NULL);
    CHECK(streq(bi->service, "billing-api"));
    CHECK(streq(bi->tag, "keel.route=api.example.com/v1"));
    CHECK(streq(bi->datacenter, "dc2"));
    CHECK(streq(bi->ns, "team-a"));
    CHECK(streq(bi->partition, "p1"));
    CHECK(bi->warning_drain == 1);
    CHECK(bi->lb == KEEL_LB_ROUND_ROBIN);
    CHECK(bi->dns_name == NULL && bi->dynamic == 0);
    CHECK(bd->discovery == KEEL_DISC_CONSUL && streq(bd->service, "billing"));
    CHECK(streq(bd->datacenter, "dc1")); /* consul.datacenter, copied by the loader */
    CHECK(bd->tag == NULL && bd->ns == NULL && bd->partition == NULL && bd->warning_drain == 0);
    CHECK(se->discovery == KEEL_DISC_DNS);
    CHECK(streq(se->dns_name, "_search._tcp.service.consul."));
    CHECK(se->service == NULL && se->datacenter == NULL && se->n_endpoints == 0);
out:
    keel_config_free(cfg);
    keel_config_errors_free(&e);
    unlink(ca);
    rmdir(dir);
}

static void test_discovery_defaults(void)
{
    struct keel_cfg *cfg = NULL;
    struct keel_cfg_errors e;
    int rc = load(MIN_LISTENERS MIN_CLUSTERS, &cfg, &e);
    if (!CHECKF(rc == 0 && cfg, "rc %d", rc)) {
        dump_errors(&e);
        keel_config_errors_free(&e);
        return;
    }
    CHECK(streq(cfg->consul.address, "http://127.0.0.1:8500"));
    CHECK(cfg->consul.token == NULL);
    CHECK(cfg->consul.ca_file == NULL);
    CHECK(cfg->consul.datacenter == NULL);
    CHECK(cfg->consul.wait_ms == 60000);
    CHECK(cfg->consul.min_interval_ms == 2000);
    CHECK(cfg->consul.catalog == 0);
    CHECK(cfg->consul.catalog_listener == NULL);
    CHECK(cfg->consul.catalog_listener_idx == -1);
    CHECK(cfg->dns.servers == NULL && cfg->dns.n_servers == 0);
    CHECK(cfg->dns.min_ttl_ms == 1000);
    CHECK(cfg->dns.max_ttl_ms == 300000);
    CHECK(cfg->dns.empty_hold_ms == 30000);
    CHECK(cfg->dns.timeout_ms == 2000);
    CHECK(cfg->state_file == NULL);
    CHECK(cfg->debounce_ms == 100);
    CHECK(cfg->clusters[0].discovery == KEEL_DISC_STATIC);
    keel_config_free(cfg);

    /* Empty sections keep the defaults; a consul cluster alone is enough. */
    rc = load("consul: {}\ndns: {}\n" MIN_LISTENERS
              "clusters:\n  - {name: api, discovery: consul, service: api}\n",
              &cfg, &e);
    if (CHECKF(rc == 0 && cfg, "rc %d", rc)) {
        CHECK(streq(cfg->consul.address, "http://127.0.0.1:8500"));
        CHECK(cfg->consul.wait_ms == 60000 && cfg->dns.max_ttl_ms == 300000);
        CHECK(cfg->clusters[0].datacenter == NULL); /* no consul.datacenter: the agent's */
        CHECK(cfg->clusters[0].n_endpoints == 0);
    } else {
        dump_errors(&e);
    }
    keel_config_free(cfg);
    keel_config_errors_free(&e);

    /* Range ends are accepted. */
    rc = load("consul: {wait: 1s, min_interval: 0}\ndiscovery_debounce: 0\n"
              "dns: {min_ttl: 5m, max_ttl: 5m, timeout: 100ms}\n" MIN_LISTENERS MIN_CLUSTERS,
              &cfg, &e);
    if (CHECKF(rc == 0 && cfg, "rc %d", rc)) {
        CHECK(cfg->consul.wait_ms == 1000 && cfg->consul.min_interval_ms == 0);
        CHECK(cfg->debounce_ms == 0);
        CHECK(cfg->dns.min_ttl_ms == 300000 && cfg->dns.max_ttl_ms == 300000);
        CHECK(cfg->dns.timeout_ms == 100);
    } else {
        dump_errors(&e);
    }
    keel_config_free(cfg);
    keel_config_errors_free(&e);
    rc = load("consul: {wait: 10m, min_interval: 60s}\ndiscovery_debounce: 10s\n" MIN_LISTENERS
                  MIN_CLUSTERS,
              &cfg, &e);
    CHECKF(rc == 0 && cfg && cfg->consul.wait_ms == 600000 &&
               cfg->consul.min_interval_ms == 60000 && cfg->debounce_ms == 10000,
           "rc %d", rc);
    keel_config_free(cfg);
    keel_config_errors_free(&e);
}

/* The address as stored, or NULL on error. Caller frees. */
static char *consul_address(const char *url)
{
    char yaml[512];
    struct keel_cfg *cfg;
    struct keel_cfg_errors e;
    char *out = NULL;
    snprintf(yaml, sizeof(yaml), "consul: {address: \"%s\"}\n" MIN_LISTENERS MIN_CLUSTERS, url);
    if (load(yaml, &cfg, &e) == 0)
        out = strdup(cfg->consul.address);
    keel_config_free(cfg);
    keel_config_errors_free(&e);
    return out;
}

static void test_consul_address(void)
{
    static const struct {
        const char *in, *out;
    } good[] = {
        {"http://127.0.0.1:8500", "http://127.0.0.1:8500"},
        {"http://127.0.0.1:8500/", "http://127.0.0.1:8500"},
        {"HTTPS://Consul.Example.com", "https://Consul.Example.com"},
        {"https://[::1]:8501", "https://[::1]:8501"},
        {"http://[fe80::1]", "http://[fe80::1]"},
        {"http://consul.service.consul:8500", "http://consul.service.consul:8500"},
        {"http://localhost", "http://localhost"},
    };
    static const char *const bad[] = {
        "127.0.0.1:8500",
        "ftp://127.0.0.1",
        "unix:///var/run/consul.sock",
        "http://",
        "http://:8500",
        "http://127.0.0.1:",
        "http://127.0.0.1:0",
        "http://127.0.0.1:65536",
        "http://127.0.0.1:85a0",
        "http://127.0.0.1:8500/v1",
        "http://127.0.0.1:8500//",
        "http://127.0.0.1:8500?dc=a",
        "http://127.0.0.1:8500#x",
        "http://user:pw@127.0.0.1:8500",
        "http://[::1",
        "http://[::g]:8500",
        "http://[::1]x",
        "http://::1:8500",
        "http://127.0.0.256",
        "http://bad host",
        "",
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        char *got = consul_address(good[i].in);
        CHECKF(streq(got, good[i].out), "%s -> %s, want %s", good[i].in, got ? got : "(error)",
               good[i].out);
        free(got);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char *got = consul_address(bad[i]);
        CHECKF(got == NULL, "%s accepted as %s", bad[i], got);
        free(got);
    }
}

static void test_consul_token(void)
{
    struct keel_cfg *cfg = NULL;
    struct keel_cfg_errors e;
    /* Taken from the environment at load time when the file has none. */
    setenv("CONSUL_HTTP_TOKEN", "env-token-1", 1);
    int rc = load(MIN_LISTENERS MIN_CLUSTERS, &cfg, &e);
    CHECKF(rc == 0 && cfg && streq(cfg->consul.token, "env-token-1"), "rc %d", rc);
    keel_config_free(cfg);
    keel_config_errors_free(&e);
    /* token: "" means none, even with the variable set. */
    rc = load("consul: {token: \"\"}\n" MIN_LISTENERS MIN_CLUSTERS, &cfg, &e);
    CHECKF(rc == 0 && cfg && cfg->consul.token == NULL, "rc %d", rc);
    keel_config_free(cfg);
    keel_config_errors_free(&e);
    /* An empty variable is no token. */
    setenv("CONSUL_HTTP_TOKEN", "", 1);
    rc = load(MIN_LISTENERS MIN_CLUSTERS, &cfg, &e);
    CHECKF(rc == 0 && cfg && cfg->consul.token == NULL, "rc %d", rc);
    keel_config_free(cfg);
    keel_config_errors_free(&e);
    /* A variable that cannot be sent as a header is an error, without echoing it. */
    setenv("CONSUL_HTTP_TOKEN", "secret\nvalue", 1);
    rc = load(MIN_LISTENERS MIN_CLUSTERS, &cfg, &e);
    CHECK(rc == KEEL_ECONFIG && cfg == NULL);
    CHECKF(e.n == 1 && starts_with(e.msgs[0], "t.yaml:1:1: consul.token: $CONSUL_HTTP_TOKEN") &&
               !strstr(e.msgs[0], "secret"),
           "%s", e.n ? e.msgs[0] : "-");
    keel_config_errors_free(&e);
    unsetenv("CONSUL_HTTP_TOKEN");
    /* Same for the file's token. */
    rc = load("consul:\n  token: \"secret value\"\n" MIN_LISTENERS MIN_CLUSTERS, &cfg, &e);
    CHECK(rc == KEEL_ECONFIG && cfg == NULL);
    CHECKF(e.n == 1 && starts_with(e.msgs[0], "t.yaml:2:10: consul.token: invalid token") &&
               !strstr(e.msgs[0], "secret"),
           "%s", e.n ? e.msgs[0] : "-");
    keel_config_errors_free(&e);
}

static void test_catalog_listener(void)
{
    struct keel_cfg *cfg = NULL;
    struct keel_cfg_errors e;
    /* Default: the first http listener (after a tcp one), which may have no routes. */
    int rc = load("consul: {catalog: true}\n"
                  "listeners:\n"
                  "  - {name: db, address: 127.0.0.1:5432, protocol: tcp, cluster: api}\n"
                  "  - {name: web, address: 127.0.0.1:8080}\n"
                  "  - {name: web2, address: 127.0.0.1:8081, routes: [{cluster: api}]}\n" C3,
                  &cfg, &e);
    if (CHECKF(rc == 0 && cfg, "rc %d", rc)) {
        CHECK(cfg->consul.catalog == 1 && cfg->consul.catalog_listener == NULL);
        CHECK(cfg->consul.catalog_listener_idx == 1);
        CHECK(cfg->listeners[1].n_routes == 0);
    } else {
        dump_errors(&e);
    }
    keel_config_free(cfg);
    keel_config_errors_free(&e);
    /* Only the catalog listener may go without routes. */
    rc = load("consul: {catalog: true}\n"
              "listeners:\n"
              "  - {name: web, address: 127.0.0.1:8080, routes: []}\n"
              "  - {name: web2, address: 127.0.0.1:8081}\n" C3,
              &cfg, &e);
    CHECK(rc == KEEL_ECONFIG);
    CHECKF(e.n == 1 && starts_with(e.msgs[0], "t.yaml:4:5: listeners[1].routes: missing required "
                                              "key \"routes\""),
           "%s", e.n ? e.msgs[0] : "-");
    keel_config_errors_free(&e);
    /* A named one, with an explicitly empty route list. */
    rc = load("consul: {catalog: on, catalog_listener: web2}\n"
              "listeners:\n"
              "  - {name: web, address: 127.0.0.1:8080, routes: [{cluster: api}]}\n"
              "  - {name: web2, address: 127.0.0.1:8081, routes: []}\n" C3,
              &cfg, &e);
    CHECKF(rc == 0 && cfg && cfg->consul.catalog_listener_idx == 1, "rc %d", rc);
    dump_errors(&e);
    keel_config_free(cfg);
    keel_config_errors_free(&e);
    /* Without catalog, the old rule holds for every listener. */
    rc = load("consul: {catalog: false}\nlisteners:\n  - {name: web, address: 127.0.0.1:8080}\n" C3,
              &cfg, &e);
    CHECKF(rc == KEEL_ECONFIG && e.n == 1 && strstr(e.msgs[0], "missing required key \"routes\""),
           "rc %d", rc);
    keel_config_errors_free(&e);
}

static void test_state_file_relative(void)
{
    /* Relative to the working directory, which exists. */
    struct keel_cfg *cfg = NULL;
    struct keel_cfg_errors e;
    int rc = load("state_file: keel-state.json\n" MIN_LISTENERS MIN_CLUSTERS, &cfg, &e);
    CHECKF(rc == 0 && cfg && streq(cfg->state_file, "keel-state.json"), "rc %d", rc);
    dump_errors(&e);
    keel_config_free(cfg);
    keel_config_errors_free(&e);
}

#define CONSUL_CL(extra) "clusters:\n  - name: api\n    discovery: consul\n    service: api\n" extra
#define DNS_CL(extra)                                                                              \
    "clusters:\n  - name: api\n    discovery: dns\n    dns_name: _api._tcp.service.consul\n" extra

static const struct bad_case disc_bad_cases[] = {
    /* clusters: which keys belong to which discovery */
    {L4 CONSUL_CL("    endpoints: [127.0.0.1:9001]\n"), "9:16",
     "clusters[0].endpoints: |consul clusters get their endpoints from Consul; remove endpoints",
     1},
    {L4 DNS_CL("    endpoints: [127.0.0.1:9001]\n"), "9:16",
     "clusters[0].endpoints: |dns clusters get their endpoints from DNS SRV records; remove "
     "endpoints",
     1},
    {L4 "clusters:\n  - name: api\n    discovery: consul\n", "6:5",
     "clusters[0].service: |missing required key \"service\"|Consul service", 1},
    {L4 CONSUL_CL("    dns_name: _a._tcp.example.com\n"), "9:15",
     "clusters[0].dns_name: |\"dns_name\" is only for clusters with \"discovery: dns\" (this "
     "cluster is consul)",
     1},
    {L4 C3 "    service: api\n", "8:14",
     "clusters[0].service: |\"service\" is only for clusters with \"discovery: consul\" (this "
     "cluster is static)",
     1},
    {L4 DNS_CL("    tag: v2\n"), "9:10",
     "clusters[0].tag: |only for clusters with \"discovery: consul\" (this cluster is dns)", 1},
    {L4 C3 "    warning: drain\n    partition: p1\n", "8:14",
     "clusters[0].warning: |only for clusters with \"discovery: consul\"", 2},
    {L4 "clusters:\n  - name: api\n    discovery: dns\n", "6:5",
     "clusters[0].dns_name: |missing required key \"dns_name\"|SRV name", 1},
    {L4 "clusters:\n  - name: api\n", "6:5",
     "clusters[0].endpoints: |missing required key \"endpoints\"|discovery: consul", 1},
    {L4 "clusters:\n  - name: api\n    discovery: etcd\n    service: x\n", "7:16",
     "clusters[0].discovery: |unknown discovery kind \"etcd\" (expected one of static, consul, "
     "dns)",
     1},
    {L4 CONSUL_CL("    warning: ignore\n"), "9:14",
     "clusters[0].warning: |unknown warning mode \"ignore\" (expected one of serve, drain)", 1},
    {L4 "clusters:\n  - name: api\n    discovery: consul\n    service: \"api/v1\"\n", "8:14",
     "clusters[0].service: |invalid Consul service name \"api/v1\"", 1},
    {L4 CONSUL_CL("    datacenter: \"dc 1\"\n"), "9:17",
     "clusters[0].datacenter: |invalid Consul datacenter name \"dc 1\"", 1},
    {L4 CONSUL_CL("    namespace: \"a&b\"\n"), "9:16",
     "clusters[0].namespace: |invalid Consul namespace \"a&b\"", 1},
    {L4 CONSUL_CL("    tag: \"a\\nb\"\n"), "9:10", "clusters[0].tag: |invalid Consul tag", 1},
    {L4 "clusters:\n  - name: api\n    discovery: dns\n    dns_name: \"_api tcp\"\n", "8:15",
     "clusters[0].dns_name: |invalid DNS name \"_api tcp\"", 1},
    /* consul: */
    {"consul: {address: ftp://127.0.0.1:8500}\n" L4 C3, "1:19",
     "consul.address: |invalid URL \"ftp://127.0.0.1:8500\": unsupported scheme \"ftp\"", 1},
    {"consul: {address: 127.0.0.1:8500}\n" L4 C3, "1:19",
     "consul.address: |missing http:// or https://", 1},
    {"consul:\n  address: http://127.0.0.1:8500/v1\n" L4 C3, "2:12",
     "consul.address: |a path, query or fragment (\"/v1\") is not allowed", 1},
    {"consul:\n  address: http://u:p@127.0.0.1:8500\n" L4 C3, "2:12",
     "consul.address: |user information is not allowed", 1},
    {"consul:\n  address: http://127.0.0.1:99999\n" L4 C3, "2:12",
     "consul.address: |bad port \"99999\"", 1},
    {"consul: {wait: 11m}\n" L4 C3, "1:16",
     "consul.wait: |duration \"11m\" is out of range (expected 1s..10m)", 1},
    {"consul: {wait: 999ms}\n" L4 C3, "1:16", "consul.wait: |out of range (expected 1s..10m)", 1},
    {"consul: {min_interval: 61s}\n" L4 C3, "1:24",
     "consul.min_interval: |\"61s\" is out of range (expected 0..1m)", 1},
    {"consul: {wait: 5x}\n" L4 C3, "1:16", "consul.wait: |invalid duration \"5x\"", 1},
    {"consul: {ca_file: /etc/ssl/ca.pem}\n" L4 C3, "1:19",
     "consul.ca_file: |only used with an https:// address (consul.address is "
     "\"http://127.0.0.1:8500\")",
     1},
    {"consul:\n  address: https://consul.local:8501\n  ca_file: /nonexistent/ca.pem\n" L4 C3,
     "3:12",
     "consul.ca_file: |cannot read CA file \"/nonexistent/ca.pem\": No such file or directory", 1},
    {"consul:\n  address: https://consul.local:8501\n  ca_file: /tmp\n" L4 C3, "3:12",
     "consul.ca_file: |cannot read CA file \"/tmp\": not a regular file", 1},
    {"consul: {datacenter: \"dc/1\"}\n" L4 C3, "1:22",
     "consul.datacenter: |invalid Consul datacenter name", 1},
    {"consul: {catalog: true, catalog_listener: db}\n"
     "listeners:\n  - {name: web, address: 127.0.0.1:8080, routes: [{cluster: api}]}\n"
     "  - {name: db, address: 127.0.0.1:5432, protocol: tcp, cluster: api}\n" C3,
     "1:43", "consul.catalog_listener: |listener \"db\" is a tcp listener|must be an http listener",
     1},
    {"consul: {catalog: true, catalog_listener: wbe}\n" L4 C3, "1:43",
     "consul.catalog_listener: |unknown listener \"wbe\" (http listeners: web)", 1},
    {"consul: {catalog_listener: web}\n" L4 C3, "1:28",
     "consul.catalog_listener: |only used with \"catalog: true\"", 1},
    {"consul: {catalog: 1, catalog_listener: web}\n" L4 C3, "1:19",
     "consul.catalog: |expected a boolean", 1},
    {"consul: {catalog: true}\n"
     "listeners:\n  - {name: db, address: 127.0.0.1:5432, protocol: tcp, cluster: api}\n" C3,
     "1:19", "consul.catalog: |needs an http listener", 1},
    {"consul: {adress: http://x:1}\n" L4 C3, "1:10",
     "consul.adress: |unknown key \"adress\" (expected one of address, token, ca_file, "
     "datacenter, wait, min_interval, catalog, catalog_listener)",
     1},
    {"consul: http://127.0.0.1:8500\n" L4 C3, "1:9", "consul: |expected a mapping", 1},
    /* dns: */
    {"dns:\n  min_ttl: 10s\n  max_ttl: 5s\n" L4 C3, "3:12",
     "dns.max_ttl: |max_ttl 5s is below min_ttl 10s", 1},
    {"dns:\n  min_ttl: 10m\n" L4 C3, "2:12",
     "dns.min_ttl: |min_ttl 10m is above max_ttl 5m (the default", 1},
    {"dns: {min_ttl: 50ms}\n" L4 C3, "1:16", "dns.min_ttl: |out of range (expected 100ms..1h)", 1},
    {"dns: {max_ttl: 25h}\n" L4 C3, "1:16", "dns.max_ttl: |out of range (expected 1s..24h)", 1},
    {"dns: {timeout: 61s}\n" L4 C3, "1:16", "dns.timeout: |out of range (expected 100ms..1m)", 1},
    {"dns: {empty_hold: -1s}\n" L4 C3, "1:19", "dns.empty_hold: |invalid duration \"-1s\"", 1},
    {"dns: {servers: []}\n" L4 C3, "1:16",
     "dns.servers: |at least one server is required (omit \"servers\" to use /etc/resolv.conf)", 1},
    {"dns: {servers: [127.0.0.1, \"127.0.0.1:53\"]}\n" L4 C3, "1:28",
     "dns.servers[1]: |duplicate server \"127.0.0.1:53\" (same address as dns.servers[0])", 1},
    {"dns: {servers: [\"::1\"]}\n" L4 C3, "1:17", "dns.servers[0]: |needs brackets", 1},
    {"dns: {servers: [\"127.0.0.1:0\"]}\n" L4 C3, "1:17", "dns.servers[0]: |bad port \"0\"", 1},
    {"dns: {servers: 127.0.0.1}\n" L4 C3, "1:16", "dns.servers: |expected a sequence of addresses",
     1},
    /* top level */
    {"state_file: /nonexistent-keel-dir/state.json\n" L4 C3, "1:13",
     "state_file: |directory \"/nonexistent-keel-dir\" of \"/nonexistent-keel-dir/state.json\" "
     "does not exist (create it first)",
     1},
    {"state_file: /tmp\n" L4 C3, "1:13", "state_file: |\"/tmp\" is a directory", 1},
    {"state_file: /tmp/keel/\n" L4 C3, "1:13", "state_file: |expected a file path", 1},
    {"state_file: test_config.c/state.json\n" L4 C3, "1:13",
     "state_file: |\"test_config.c\" (the directory of \"test_config.c/state.json\") is not a "
     "directory",
     1},
    {"state_file: \"\"\n" L4 C3, "1:13", "state_file: |expected a file path, found an empty", 1},
    {"discovery_debounce: 11s\n" L4 C3, "1:21",
     "discovery_debounce: |\"11s\" is out of range (expected 0..10s)", 1},
};

static void run_bad_cases(const char *table, const struct bad_case *cases, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const struct bad_case *bc = &cases[i];
        struct keel_cfg *cfg = (struct keel_cfg *)1;
        struct keel_cfg_errors e;
        int rc = load(bc->yaml, &cfg, &e);
        char prefix[64];
        snprintf(prefix, sizeof(prefix), "t.yaml:%s: ", bc->pos);
        CHECKF(rc == KEEL_ECONFIG, "%s case %zu: rc %d", table, i, rc);
        CHECKF(cfg == NULL, "%s case %zu: cfg not NULL on error", table, i);
        int ok = CHECKF(e.n == bc->nerr, "%s case %zu: %zu errors, expected %zu", table, i, e.n,
                        bc->nerr);
        if (e.n >= 1) {
            ok &= CHECKF(!strncmp(e.msgs[0], prefix, strlen(prefix)),
                         "%s case %zu: want prefix %s, got: %s", table, i, prefix, e.msgs[0]);
            ok &= CHECKF(contains_all(e.msgs[0], bc->words), "%s case %zu: want [%s], got: %s",
                         table, i, bc->words, e.msgs[0]);
        }
        if (!ok || getenv("KEEL_TEST_VERBOSE"))
            dump_errors(&e);
        keel_config_errors_free(&e);
        CHECK(e.n == 0 && e.msgs == NULL);
    }
}

static void test_discovery_bad_table(void)
{
    size_t n = sizeof(disc_bad_cases) / sizeof(disc_bad_cases[0]);
    CHECK(n >= 15);
    run_bad_cases("discovery", disc_bad_cases, n);
}

static void test_bad_table(void)
{
    size_t n = sizeof(bad_cases) / sizeof(bad_cases[0]);
    CHECK(n >= 30);
    run_bad_cases("core", bad_cases, n);
}

/* ---- health_check ---------------------------------------------------------------------- */

#define HC(body) L4 C3 "    health_check:\n" body

static const struct bad_case health_bad_cases[] = {
    {HC("      type: udp\n"), "9:13",
     "clusters[0].health_check.type: |unknown health check type \"udp\" (expected one of http, "
     "tcp, grpc)",
     1},
    {HC("      path: /h\n"), "9:7",
     "clusters[0].health_check.type: |missing required key \"type\"|http, tcp or grpc", 1},
    {HC("      type: grpc\n      path: /h\n"), "10:13",
     "clusters[0].health_check.path: |\"path\" is only for \"type: http\" checks", 1},
    {HC("      type: http\n      service: a\n"), "10:16",
     "clusters[0].health_check.service: |\"service\" is only for \"type: grpc\" checks", 1},
    {HC("      type: http\n      intervall: 1s\n"), "10:7",
     "clusters[0].health_check.intervall: |unknown key \"intervall\" (expected one of type, "
     "path, method, host, expect, interval, timeout, rise, fall, port, jitter, expect_header, "
     "service)",
     1},
    {HC("      type: http\n      interval: 50ms\n"), "10:17",
     "clusters[0].health_check.interval: |duration \"50ms\" is out of range (expected "
     "100ms..1h)",
     1},
    {HC("      type: http\n      interval: 2h\n"), "10:17",
     "clusters[0].health_check.interval: |out of range (expected 100ms..1h)", 1},
    {HC("      type: tcp\n      interval: 1s\n      timeout: 1s\n"), "11:16",
     "clusters[0].health_check.timeout: |timeout 1s must be shorter than the interval 1s", 1},
    {HC("      type: tcp\n      timeout: 5s\n"), "10:16",
     "clusters[0].health_check.timeout: |timeout 5s must be shorter than the interval 5s", 1},
    {HC("      type: tcp\n      rise: 0\n"), "10:13",
     "clusters[0].health_check.rise: |\"0\" is out of range (expected 1..100)", 1},
    {HC("      type: tcp\n      fall: 101\n"), "10:13",
     "clusters[0].health_check.fall: |\"101\" is out of range (expected 1..100)", 1},
    {HC("      type: http\n      expect: [399-200]\n"), "10:16",
     "clusters[0].health_check.expect[0]: |status range \"399-200\" is empty", 1},
    {HC("      type: http\n      expect: [200, abc]\n"), "10:21",
     "clusters[0].health_check.expect[1]: |invalid status \"abc\" (expected a code like 200 or "
     "a range like 200-399)",
     1},
    {HC("      type: http\n      expect: [200-600]\n"), "10:16",
     "clusters[0].health_check.expect[0]: |status \"200-600\" is out of range (expected codes "
     "100..599)",
     1},
    {HC("      type: http\n      expect: []\n"), "10:15",
     "clusters[0].health_check.expect: |at least one expected status is required", 1},
    {HC("      type: http\n      expect: [2xx]\n"), "10:16",
     "clusters[0].health_check.expect[0]: |invalid status \"2xx\"", 1},
    {HC("      type: tcp\n      path: /health\n      expect: [200]\n"), "10:13",
     "clusters[0].health_check.path: |\"path\" is only for \"type: http\" checks (a tcp check "
     "only connects)",
     2},
    {HC("      type: tcp\n      port: 0\n"), "10:13",
     "clusters[0].health_check.port: |\"0\" is out of range (expected 1..65535)", 1},
    {HC("      type: tcp\n      jitter: 60%\n"), "10:15",
     "clusters[0].health_check.jitter: |\"60%\" is out of range (expected 0%..50%)", 1},
    {HC("      type: tcp\n      jitter: 10\n"), "10:15",
     "clusters[0].health_check.jitter: |invalid percentage \"10\"", 1},
    {HC("      type: http\n      method: \"G T\"\n"), "10:15",
     "clusters[0].health_check.method: |invalid method \"G T\" (expected an HTTP token", 1},
    {HC("      type: http\n      path: health\n"), "10:13",
     "clusters[0].health_check.path: |invalid path \"health\" (expected a path starting with "
     "'/'",
     1},
    {HC("      type: http\n      host: \"a b\"\n"), "10:13",
     "clusters[0].health_check.host: |invalid host \"a b\"", 1},
    {HC("      type: http\n      expect_header: {name: X-Service}\n"), "10:22",
     "clusters[0].health_check.expect_header.value: |missing required key \"value\"", 1},
    {HC("      type: http\n      expect_header: {name: \"X Service\", value: api}\n"), "10:29",
     "clusters[0].health_check.expect_header.name: |invalid header name \"X Service\"", 1},
    {HC("      type: http\n      expect_header: {name: X-S, value: api, other: 1}\n"), "10:46",
     "clusters[0].health_check.expect_header.other: |unknown key \"other\" (expected one of "
     "name, value)",
     1},
    {L4 C3 "    health_check: yes\n", "8:19",
     "clusters[0].health_check: |expected a mapping, found \"yes\"", 1},
    {L4 C3 "    health_check:\n      type: http\n      type: tcp\n", "10:7",
     "clusters[0].health_check.type: |duplicate key \"type\"", 1},
};

static void test_health_bad_table(void)
{
    size_t n = sizeof(health_bad_cases) / sizeof(health_bad_cases[0]);
    CHECK(n >= 10);
    run_bad_cases("health", health_bad_cases, n);
}

static void test_health_full(void)
{
    struct keel_cfg *cfg = NULL;
    struct keel_cfg_errors e;
    int rc = load(L4 C3 "    health_check:\n"
                        "      type: http\n"
                        "      path: /healthz?full=1\n"
                        "      method: HEAD\n"
                        "      host: api.internal:8080\n"
                        "      expect: [200, 204-206, \"300-302\"]\n"
                        "      interval: 2s\n"
                        "      timeout: 500ms\n"
                        "      rise: 5\n"
                        "      fall: 1\n"
                        "      port: 9902\n"
                        "      jitter: 0%\n"
                        "      expect_header: {name: X-Service, value: api}\n",
                  &cfg, &e);
    if (!CHECKF(rc == 0 && cfg && e.n == 0, "rc %d", rc)) {
        dump_errors(&e);
        keel_config_errors_free(&e);
        return;
    }
    const struct keel_cfg_health *h = &cfg->clusters[0].health_check;
    CHECK(h->enabled && h->type == KEEL_HEALTH_HTTP);
    CHECK(streq(h->path, "/healthz?full=1"));
    CHECK(streq(h->method, "HEAD"));
    CHECK(streq(h->host, "api.internal:8080"));
    CHECK(h->n_expect == 3);
    if (h->n_expect == 3) {
        CHECK(h->expect[0].lo == 200 && h->expect[0].hi == 200);
        CHECK(h->expect[1].lo == 204 && h->expect[1].hi == 206);
        CHECK(h->expect[2].lo == 300 && h->expect[2].hi == 302);
    }
    CHECK(h->interval_ms == 2000 && h->timeout_ms == 500);
    CHECK(h->rise == 5 && h->fall == 1);
    CHECK(h->port == 9902 && h->jitter_pct == 0);
    CHECK(streq(h->expect_header.name, "X-Service") && streq(h->expect_header.value, "api"));
    keel_config_free(cfg);
}

static void test_health_defaults(void)
{
    struct keel_cfg *cfg = NULL;
    struct keel_cfg_errors e;
    int rc = load(L4 C3 "    health_check: {type: http}\n", &cfg, &e);
    if (!CHECKF(rc == 0 && cfg, "rc %d", rc)) {
        dump_errors(&e);
        keel_config_errors_free(&e);
        return;
    }
    const struct keel_cfg_health *h = &cfg->clusters[0].health_check;
    CHECK(h->enabled && h->type == KEEL_HEALTH_HTTP);
    CHECK(streq(h->path, "/health") && streq(h->method, "GET") && h->host == NULL);
    CHECK(h->n_expect == 1 && h->expect[0].lo == 200 && h->expect[0].hi == 399);
    CHECK(h->interval_ms == 5000 && h->timeout_ms == 2000);
    CHECK(h->rise == 2 && h->fall == 3 && h->port == 0 && h->jitter_pct == 10);
    CHECK(h->expect_header.name == NULL && h->expect_header.value == NULL);
    keel_config_free(cfg);

    /* tcp: no http fields; a short interval gets half of it as the default timeout. */
    rc = load(L4 C3 "    health_check: {type: tcp, interval: 200ms}\n", &cfg, &e);
    CHECKF(rc == 0 && cfg, "rc %d", rc);
    if (cfg) {
        h = &cfg->clusters[0].health_check;
        CHECK(h->enabled && h->type == KEEL_HEALTH_TCP);
        CHECK(h->interval_ms == 200 && h->timeout_ms == 100);
        CHECK(h->path == NULL && h->method == NULL && h->n_expect == 0);
    }
    keel_config_free(cfg);
    dump_errors(&e);
    keel_config_errors_free(&e);

    /* A single status as a scalar; a consul cluster may be checked too. */
    rc = load(L4 "clusters:\n  - name: api\n    discovery: consul\n    service: api\n"
                 "    health_check: {type: http, expect: 204, timeout: 100ms}\n",
              &cfg, &e);
    CHECKF(rc == 0 && cfg, "rc %d", rc);
    if (cfg) {
        h = &cfg->clusters[0].health_check;
        CHECK(h->enabled && h->n_expect == 1 && h->expect[0].lo == 204 && h->expect[0].hi == 204);
        CHECK(h->timeout_ms == 100 && h->interval_ms == 5000);
    }
    keel_config_free(cfg);
    dump_errors(&e);
    keel_config_errors_free(&e);

    /* No health_check: not enabled. */
    rc = load(MIN_LISTENERS MIN_CLUSTERS, &cfg, &e);
    CHECK(rc == 0 && cfg && !cfg->clusters[0].health_check.enabled);
    keel_config_free(cfg);
    keel_config_errors_free(&e);
}

/* ---- outlier / panic_threshold ------------------------------------------------------------ */

static const struct bad_case outlier_bad_cases[] = {
    {L4 C3 "    outlier: {consecutive_5xx: -1}\n", "8:32",
     "clusters[0].outlier.consecutive_5xx: |expected an integer", 1},
    {L4 C3 "    outlier: {consecutive_gateway_failures: 1001}\n", "8:45",
     "clusters[0].outlier.consecutive_gateway_failures: |out of range", 1},
    {L4 C3 "    outlier: {base_ejection_time: 10s, max_ejection_time: 5s}\n", "8:59",
     "clusters[0].outlier.max_ejection_time: |must be at least base_ejection_time", 1},
    {L4 C3 "    outlier: {max_ejection_percent: 101}\n", "8:37",
     "clusters[0].outlier.max_ejection_percent: |out of range", 1},
    {L4 C3 "    outlier: {consecutive_errors: 3}\n", "8:15",
     "clusters[0].outlier.consecutive_errors: |unknown key \"consecutive_errors\"", 1},
    {L4 C3 "    panic_threshold: 150\n", "8:22", "clusters[0].panic_threshold: |out of range", 1},
    {L4 C3 "    circuit_breaker: {max_requests: -5}\n", "8:37",
     "clusters[0].circuit_breaker.max_requests: |expected an integer", 1},
    {L4 C3 "    slow_start: {window: 10s, aggression: 1e3}\n", "8:43",
     "clusters[0].slow_start.aggression: |expected a number 0.1..10", 1},
    {L4 C3 "    slow_start: {window: 10s, aggression: 20}\n", "8:43",
     "clusters[0].slow_start.aggression: |expected a number 0.1..10", 1},
    {L4 C3 "    slow_start: {aggression: 2}\n", "8:17",
     "clusters[0].slow_start.window: |missing required key \"window\"", 1},
    {L4 C3 "    slow_start: {window: 10s, min_weight_percent: 0}\n", "8:51",
     "clusters[0].slow_start.min_weight_percent: |out of range", 1},
    {L4 C3 "    retries: {max: 11}\n", "8:20", "clusters[0].retries.max: |out of range", 1},
    {L4 C3 "    sticky: {}\n", "8:13", "clusters[0].sticky.cookie: |missing required key", 1},
    {L4 C3 "    sticky: {cookie: \"a b\"}\n", "8:22",
     "clusters[0].sticky.cookie: |invalid cookie name", 1},
    {L4 C3 "    retries: {on_status: [404]}\n", "8:27",
     "clusters[0].retries.on_status[0]: |out of range", 1},
    {L4 C3 "    circuit_breaker: {max_pending: 5}\n", "8:23",
     "clusters[0].circuit_breaker.max_pending: |unknown key \"max_pending\"", 1},
};

static void test_outlier(void)
{
    run_bad_cases("outlier", outlier_bad_cases,
                  sizeof(outlier_bad_cases) / sizeof(outlier_bad_cases[0]));
    struct keel_cfg *cfg = NULL;
    struct keel_cfg_errors e;
    int rc = load(L4 C3 "    outlier: {consecutive_5xx: 7, consecutive_gateway_failures: 0,\n"
                        "              consecutive_timeouts: 2, base_ejection_time: 2s,\n"
                        "              max_ejection_time: 1m, max_ejection_percent: 30}\n"
                        "    panic_threshold: 0\n",
                  &cfg, &e);
    if (!CHECKF(rc == 0 && cfg, "rc %d", rc)) {
        dump_errors(&e);
        keel_config_errors_free(&e);
        return;
    }
    const struct keel_cfg_outlier *o = &cfg->clusters[0].outlier;
    CHECK(o->consecutive_5xx == 7 && o->consecutive_gateway == 0 && o->consecutive_timeout == 2);
    CHECK(o->base_ms == 2000 && o->max_ms == 60000 && o->max_ejection_percent == 30);
    CHECK(cfg->clusters[0].panic_threshold == 0);
    keel_config_free(cfg);
    rc = load(L4 C3 "    circuit_breaker: {max_connections: 10, max_pending_requests: 20,\n"
                    "                      max_requests: 30}\n",
              &cfg, &e);
    if (CHECKF(rc == 0 && cfg, "rc %d", rc)) {
        const struct keel_cfg_cluster *cc = &cfg->clusters[0];
        CHECK(cc->max_connections == 10 && cc->max_pending == 20 && cc->max_requests == 30);
        keel_config_free(cfg);
    }
    rc = load(L4 C3 "    slow_start: {window: 45s, aggression: 1.5, min_weight_percent: 5}\n", &cfg,
              &e);
    if (CHECKF(rc == 0 && cfg, "rc %d", rc)) {
        const struct keel_cfg_cluster *cc = &cfg->clusters[0];
        CHECK(cc->slow_start_ms == 45000 && cc->slow_start_aggression == 1.5 &&
              cc->slow_start_min_percent == 5);
        CHECK(cc->retry_max == 2 && cc->retry_budget_percent == 20 && cc->n_retry_on == 0);
        keel_config_free(cfg);
    }
    rc = load(L4 C3 "    retries: {max: 3, on_status: [502, 503], budget_percent: 50,\n"
                    "              per_try_timeout: 250ms}\n",
              &cfg, &e);
    if (CHECKF(rc == 0 && cfg, "rc %d", rc)) {
        const struct keel_cfg_cluster *cc = &cfg->clusters[0];
        CHECK(cc->retry_max == 3 && cc->retry_budget_percent == 50 && cc->n_retry_on == 2 &&
              cc->retry_on[0] == 502 && cc->retry_on[1] == 503 && cc->retry_per_try_ms == 250);
        keel_config_free(cfg);
    }
    rc = load(L4 C3, &cfg, &e);
    if (CHECKF(rc == 0 && cfg, "rc %d", rc)) {
        o = &cfg->clusters[0].outlier;
        CHECK(o->consecutive_5xx == 0 && o->consecutive_gateway == 5 &&
              o->consecutive_timeout == 3);
        CHECK(o->base_ms == 30000 && o->max_ms == 300000 && o->max_ejection_percent == 50);
        CHECK(cfg->clusters[0].panic_threshold == 50);
        CHECK(cfg->clusters[0].max_connections == 0 && cfg->clusters[0].max_pending == 0 &&
              cfg->clusters[0].max_requests == 0);
        keel_config_free(cfg);
    }
}

/* hash_on: only with lb: hash, exactly one of header / cookie / ip. */
static const struct bad_case hash_on_bad_cases[] = {
    {L4 C3 "    lb: hash\n    hash_on: {header: X-User, cookie: sid}\n", "9:14",
     "clusters[0].hash_on: |expected exactly one of header, cookie or ip, found several", 1},
    {L4 C3 "    lb: hash\n    hash_on: {}\n", "9:14",
     "clusters[0].hash_on: |expected exactly one of header, cookie or ip, found none", 1},
    {L4 C3 "    hash_on: {header: X-User}\n", "8:14",
     "clusters[0].hash_on: |\"hash_on\" is only for clusters with \"lb: hash\" (this cluster "
     "uses weighted_least_conn)",
     1},
    {L4 C3 "    lb: ip_hash\n    hash_on: {ip: true}\n", "9:14",
     "clusters[0].hash_on: |only for clusters with \"lb: hash\"|uses ip_hash", 1},
    {L4 C3 "    lb: hash\n    hash_on: {header: \"X User\"}\n", "9:23",
     "clusters[0].hash_on.header: |invalid header name \"X User\" (expected an HTTP token)", 1},
    {L4 C3 "    lb: hash\n    hash_on: {cookie: \"\"}\n", "9:23",
     "clusters[0].hash_on.cookie: |expected a cookie name, found an empty string", 1},
    {L4 C3 "    lb: hash\n    hash_on: {cookie: [a]}\n", "9:23",
     "clusters[0].hash_on.cookie: |expected a cookie name, found a sequence", 1},
    {L4 C3 "    lb: hash\n    hash_on: {ip: false}\n", "9:19",
     "clusters[0].hash_on.ip: |\"ip: false\" leaves nothing to hash", 1},
    {L4 C3 "    lb: hash\n    hash_on: {ip: maybe}\n", "9:19",
     "clusters[0].hash_on.ip: |expected a boolean", 1},
    {L4 C3 "    lb: hash\n    hash_on: {query: q}\n", "9:15",
     "clusters[0].hash_on.query: |unknown key \"query\" (expected one of header, cookie, ip)", 1},
    {L4 C3 "    lb: hash\n    hash_on: X-User\n", "9:14",
     "clusters[0].hash_on: |expected a mapping, found", 1},
    /* An unknown policy is the one error; hash_on is not blamed for it. */
    {L4 C3 "    lb: hashing\n    hash_on: {header: X-User}\n", "8:9",
     "clusters[0].lb: |unknown policy \"hashing\"", 1},
};

static void test_hash_on(void)
{
    static const struct {
        const char *yaml;
        enum keel_lb_policy lb;
        enum keel_hash_source source;
        const char *name;
    } good[] = {
        {"    lb: hash\n    hash_on: {header: X-User}\n", KEEL_LB_HASH, KEEL_HASH_ON_HEADER,
         "X-User"},
        {"    lb: hash\n    hash_on: {cookie: session}\n", KEEL_LB_HASH, KEEL_HASH_ON_COOKIE,
         "session"},
        {"    lb: hash\n    hash_on: {ip: true}\n", KEEL_LB_HASH, KEEL_HASH_ON_IP, NULL},
        {"    lb: hash\n", KEEL_LB_HASH, KEEL_HASH_ON_IP, NULL}, /* default: client IP */
        /* Key order does not matter: lb is read first. */
        {"    hash_on:\n      cookie: sid\n    lb: hash\n", KEEL_LB_HASH, KEEL_HASH_ON_COOKIE,
         "sid"},
        {"    lb: least_response_time\n", KEEL_LB_LEAST_RESPONSE_TIME, KEEL_HASH_ON_IP, NULL},
    };
    run_bad_cases("hash_on", hash_on_bad_cases,
                  sizeof(hash_on_bad_cases) / sizeof(hash_on_bad_cases[0]));
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        char yaml[512];
        struct keel_cfg *cfg = NULL;
        struct keel_cfg_errors e;
        snprintf(yaml, sizeof(yaml), "%s%s", L4 C3, good[i].yaml);
        int rc = load(yaml, &cfg, &e);
        if (!CHECKF(rc == 0 && cfg, "hash_on good case %zu: rc %d", i, rc)) {
            dump_errors(&e);
            keel_config_errors_free(&e);
            continue;
        }
        const struct keel_cfg_cluster *cc = &cfg->clusters[0];
        CHECKF(cc->lb == good[i].lb, "hash_on good case %zu: lb %d", i, (int)cc->lb);
        CHECKF(cc->hash_on.source == good[i].source, "hash_on good case %zu: source %d", i,
               (int)cc->hash_on.source);
        CHECKF(good[i].name ? streq(cc->hash_on.name, good[i].name) : cc->hash_on.name == NULL,
               "hash_on good case %zu: name %s", i, cc->hash_on.name ? cc->hash_on.name : "NULL");
        keel_config_free(cfg);
    }
    /* Clusters made at run time get the default too. */
    struct keel_cfg_cluster cl;
    memset(&cl, 0xff, sizeof(cl));
    keel_config_cluster_defaults(&cl);
    CHECK(cl.hash_on.source == KEEL_HASH_ON_IP);
}

static void test_all_errors_reported(void)
{
    struct keel_cfg *cfg;
    struct keel_cfg_errors e;
    int rc = load("workers: 0\n" WEB "    routes: [{cluster: nope}]\n"
                  "clusters:\n  - name: api\n    lb: fastest\n    endpoints: [127.0.0.1:9001]\n",
                  &cfg, &e);
    CHECK(rc == KEEL_ECONFIG && cfg == NULL);
    if (CHECKF(e.n == 3, "%zu errors", e.n)) {
        /* In file order, although clusters are validated before listeners. */
        CHECKF(starts_with(e.msgs[0], "t.yaml:1:10: workers: "), "%s", e.msgs[0]);
        CHECKF(starts_with(e.msgs[1], "t.yaml:5:24: listeners[0].routes[0].cluster: "), "%s",
               e.msgs[1]);
        CHECKF(strstr(e.msgs[1], "unknown cluster \"nope\""), "%s", e.msgs[1]);
        CHECKF(starts_with(e.msgs[2], "t.yaml:8:9: clusters[0].lb: unknown policy"), "%s",
               e.msgs[2]);
    } else {
        dump_errors(&e);
    }
    keel_config_errors_free(&e);
}

/* Loads `drain_timeout: <v>`; returns the rc and stores the value. */
static int duration_of(const char *v, uint32_t *ms)
{
    char yaml[512];
    struct keel_cfg *cfg;
    struct keel_cfg_errors e;
    snprintf(yaml, sizeof(yaml), "drain_timeout: %s\n" L4 C3, v);
    int rc = load(yaml, &cfg, &e);
    if (rc == 0)
        *ms = cfg->drain_timeout_ms;
    keel_config_free(cfg);
    keel_config_errors_free(&e);
    return rc;
}

static int size_of(const char *v, uint64_t *bytes)
{
    char yaml[512];
    struct keel_cfg *cfg;
    struct keel_cfg_errors e;
    snprintf(yaml, sizeof(yaml), L4 "    limits: {max_body_size: %s}\n" C3, v);
    int rc = load(yaml, &cfg, &e);
    if (rc == 0)
        *bytes = cfg->listeners[0].max_body_size;
    keel_config_free(cfg);
    keel_config_errors_free(&e);
    return rc;
}

static void test_durations(void)
{
    static const struct {
        const char *in;
        uint32_t ms;
    } good[] = {
        {"250ms", 250},
        {"5s", 5000},
        {"2m", 120000},
        {"1h", 3600000},
        {"15", 15000},
        {"0", 0},
        {"0ms", 0},
        {"\"5s\"", 5000},
        {"4294967295ms", 4294967295u},
        {"4294967s", 4294967000u},
        {"71582m", 4294920000u},
        {"1193h", 4294800000u},
        {"007s", 7000},
    };
    static const char *const bad[] = {
        "4294967296ms", "4294968s", "71583m", "1194h", "99999999999999999999999s",
        "1.5s",         "s",        "5 s",    "-1",    "5S",
        "5sec",         "1d",       "\"\"",   "5s5",   "0x10",
        "[5s]",         "~",
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        uint32_t ms = 1;
        int rc = duration_of(good[i].in, &ms);
        CHECKF(rc == 0 && ms == good[i].ms, "%s: rc %d ms %u", good[i].in, rc, ms);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint32_t ms = 0;
        CHECKF(duration_of(bad[i], &ms) == KEEL_ECONFIG, "%s accepted as %u", bad[i], ms);
    }
}

static void test_sizes(void)
{
    static const struct {
        const char *in;
        uint64_t bytes;
    } good[] = {
        {"0", 0},
        {"1", 1},
        {"1k", 1024},
        {"1K", 1024},
        {"1KB", 1024},
        {"3KiB", 3072},
        {"2m", 2u << 20},
        {"2M", 2u << 20},
        {"2MB", 2u << 20},
        {"2MiB", 2u << 20},
        {"1g", 1u << 30},
        {"1G", 1u << 30},
        {"1GB", 1u << 30},
        {"5GiB", (uint64_t)5 << 30},
        {"\"8KiB\"", 8192},
        {"17179869183GiB", ((uint64_t)17179869183u) << 30},
        {"18446744073709551615", UINT64_MAX},
    };
    static const char *const bad[] = {
        "17179869184GiB",
        "18446744073709551616",
        "1kb",
        "1 KiB",
        "1TiB",
        "-1",
        "1.5M",
        "KiB",
        "1Ki",
        "1B",
        "{}",
        "\"\"",
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        uint64_t b = 7;
        int rc = size_of(good[i].in, &b);
        CHECKF(rc == 0 && b == good[i].bytes, "%s: rc %d bytes %llu", good[i].in, rc,
               (unsigned long long)b);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint64_t b = 0;
        CHECKF(size_of(bad[i], &b) == KEEL_ECONFIG, "%s accepted as %llu", bad[i],
               (unsigned long long)b);
    }
}

static void test_booleans(void)
{
    static const char *const yes[] = {"true", "True", "yes", "on", "ON"};
    static const char *const no[] = {"false", "no", "off", "Off"};
    static const char *const bad[] = {"1", "y", "\"true\"", "enabled"};
    char yaml[512];
    struct keel_cfg *cfg;
    struct keel_cfg_errors e;
    for (int pass = 0; pass < 3; pass++) {
        const char *const *list = pass == 0 ? yes : pass == 1 ? no : bad;
        size_t n = pass == 0 ? 5 : 4;
        for (size_t i = 0; i < n; i++) {
            snprintf(yaml, sizeof(yaml), "access_log: %s\n" L4 C3, list[i]);
            int rc = load(yaml, &cfg, &e);
            if (pass < 2)
                CHECKF(rc == 0 && cfg->access_log == (pass == 0), "%s", list[i]);
            else
                CHECKF(rc == KEEL_ECONFIG, "%s accepted", list[i]);
            keel_config_free(cfg);
            keel_config_errors_free(&e);
        }
    }
}

static void test_lb_names(void)
{
    CHECK(streq(keel_config_lb_name(KEEL_LB_WEIGHTED_LEAST_CONN), "weighted_least_conn"));
    CHECK(streq(keel_config_lb_name(KEEL_LB_LEAST_CONN), "least_conn"));
    CHECK(streq(keel_config_lb_name(KEEL_LB_ROUND_ROBIN), "round_robin"));
    CHECK(streq(keel_config_lb_name(KEEL_LB_WEIGHTED_ROUND_ROBIN), "weighted_round_robin"));
    CHECK(streq(keel_config_lb_name(KEEL_LB_IP_HASH), "ip_hash"));
    CHECK(streq(keel_config_lb_name(KEEL_LB_RANDOM), "random"));
    CHECK(streq(keel_config_lb_name(KEEL_LB_LEAST_RESPONSE_TIME), "least_response_time"));
    CHECK(streq(keel_config_lb_name(KEEL_LB_HASH), "hash"));
    CHECK(streq(keel_config_lb_name(KEEL_LB__COUNT), "unknown"));
    /* Every name round-trips through the loader. */
    for (int p = 0; p < KEEL_LB__COUNT; p++) {
        char yaml[512];
        struct keel_cfg *cfg;
        struct keel_cfg_errors e;
        snprintf(yaml, sizeof(yaml), L4 C3 "    lb: %s\n", keel_config_lb_name(p));
        int rc = load(yaml, &cfg, &e);
        CHECKF(rc == 0 && (int)cfg->clusters[0].lb == p, "%s", keel_config_lb_name(p));
        keel_config_free(cfg);
        keel_config_errors_free(&e);
    }
}

static void test_many_errors_bounded(void)
{
    /* 3000 unknown keys: the list is capped and ends with a notice. */
    size_t cap = 3000 * 16 + 256;
    char *yaml = malloc(cap);
    size_t o = 0;
    for (int i = 0; i < 3000; i++)
        o += (size_t)snprintf(yaml + o, cap - o, "k%d: 1\n", i);
    struct keel_cfg *cfg;
    struct keel_cfg_errors e;
    int rc = keel_config_load_buf("t.yaml", yaml, o, &cfg, &e);
    CHECK(rc == KEEL_ECONFIG);
    CHECKF(e.n == 1000, "%zu", e.n);
    if (e.n == 1000) {
        CHECKF(strstr(e.msgs[0], "t.yaml:1:1: k0: unknown key") == e.msgs[0], "%s", e.msgs[0]);
        CHECKF(strstr(e.msgs[999], "too many errors"), "%s", e.msgs[999]);
    }
    keel_config_errors_free(&e);
    free(yaml);
}

static void test_file(void)
{
    char path[] = "/tmp/keel_test_config_XXXXXX";
    int fd = mkstemp(path);
    if (!CHECK(fd >= 0))
        return;
    const char *yaml = "workers: 3\n" L4 C3;
    CHECK(write(fd, yaml, strlen(yaml)) == (ssize_t)strlen(yaml));
    close(fd);
    struct keel_cfg *cfg = NULL;
    struct keel_cfg_errors e;
    int rc = keel_config_load_file(path, &cfg, &e);
    CHECKF(rc == 0 && cfg && e.n == 0, "rc %d", rc);
    if (cfg) {
        CHECK(streq(cfg->file, path));
        CHECK(cfg->workers == 3);
        CHECK(cfg->n_listeners == 1 && cfg->n_clusters == 1);
    }
    keel_config_free(cfg);
    keel_config_errors_free(&e);

    /* Errors in a file carry its path. */
    FILE *f = fopen(path, "w");
    if (CHECK(f != NULL)) {
        fputs("workers: 999\n" L4 C3, f);
        fclose(f);
    }
    rc = keel_config_load_file(path, &cfg, &e);
    char want[128];
    snprintf(want, sizeof(want), "%s:1:10: workers: ", path);
    CHECK(rc == KEEL_ECONFIG && cfg == NULL);
    CHECKF(e.n == 1 && !strncmp(e.msgs[0], want, strlen(want)), "%s", e.n ? e.msgs[0] : "-");
    keel_config_errors_free(&e);
    unlink(path);

    rc = keel_config_load_file("/nonexistent/keel.yaml", &cfg, &e);
    CHECK(rc == KEEL_ECONFIG && cfg == NULL);
    CHECKF(e.n == 1 && streq(e.msgs[0], "/nonexistent/keel.yaml: cannot read: No such file or "
                                        "directory"),
           "%s", e.n ? e.msgs[0] : "-");
    keel_config_errors_free(&e);

    rc = keel_config_load_file("/tmp", &cfg, &e);
    CHECK(rc == KEEL_ECONFIG && cfg == NULL);
    CHECKF(e.n == 1 && strstr(e.msgs[0], "/tmp: cannot read: "), "%s", e.n ? e.msgs[0] : "-");
    keel_config_errors_free(&e);
}

/* deploy/keel.example.yaml documents every key: it must stay valid. */
static void test_example_file(void)
{
    struct keel_cfg *cfg = NULL;
    struct keel_cfg_errors e;
    int rc = keel_config_load_file("../../deploy/keel.example.yaml", &cfg, &e);
    if (!CHECKF(rc == 0 && cfg, "rc %d", rc)) {
        dump_errors(&e);
        keel_config_errors_free(&e);
        return;
    }
    CHECK(cfg->workers == 2 && cfg->n_listeners == 2 && cfg->n_clusters == 7);
    CHECK(cfg->listeners[0].n_routes == 5);
    CHECK(cfg->listeners[1].proto == KEEL_LISTEN_TCP && cfg->listeners[1].cluster_idx == 3);
    CHECK(cfg->listeners[1].max_connections == 500);
    CHECK(cfg->clusters[0].n_endpoints == 3 && cfg->clusters[0].endpoints[0].weight == 2);
    CHECK(cfg->clusters[3].connect_timeout_ms == 2000);
    /* Every discovery key is in the example. */
    CHECK(streq(cfg->consul.address, "https://127.0.0.1:8501") && cfg->consul.token &&
          cfg->consul.ca_file && streq(cfg->consul.datacenter, "dc1"));
    CHECK(cfg->consul.catalog == 1 && cfg->consul.catalog_listener_idx == 0);
    CHECK(cfg->dns.n_servers == 3 && addr_is_v4(&cfg->dns.servers[2], "10.0.0.2", 53));
    CHECK(cfg->state_file && cfg->debounce_ms == 100);
    if (cfg->n_clusters == 6) {
        const struct keel_cfg_cluster *b = &cfg->clusters[4], *s = &cfg->clusters[5];
        CHECK(b->discovery == KEEL_DISC_CONSUL && streq(b->service, "billing") && b->tag &&
              streq(b->datacenter, "dc2") && b->ns && b->partition && b->warning_drain == 1);
        CHECK(s->discovery == KEEL_DISC_DNS && streq(s->dns_name, "_search._tcp.service.consul"));
    }
    keel_config_free(cfg);
    keel_config_errors_free(&e);
}

static void test_localhost_without_dns(void)
{
    /* localhost never needs a lookup, whatever the switch says. */
    keel_config_resolve_names = 1;
    struct keel_cfg *cfg;
    struct keel_cfg_errors e;
    int rc = load("listeners:\n  - name: web\n    address: LocalHost:80\n"
                  "    routes: [{cluster: api}]\n" C3,
                  &cfg, &e);
    CHECK(rc == 0 && addr_is_v4(&cfg->listeners[0].addr, "127.0.0.1", 80));
    keel_config_free(cfg);
    keel_config_errors_free(&e);
    keel_config_resolve_names = 0;
}

int main(void)
{
    keel_config_resolve_names = 0; /* never send DNS queries from tests */
    unsetenv("CONSUL_HTTP_TOKEN"); /* the tests set it where they want it */
    test_full();
    test_defaults();
    test_bad_table();
    test_discovery_full();
    test_discovery_defaults();
    test_consul_address();
    test_consul_token();
    test_catalog_listener();
    test_state_file_relative();
    test_discovery_bad_table();
    test_all_errors_reported();
    test_durations();
    test_sizes();
    test_booleans();
    test_lb_names();
    test_many_errors_bounded();
    test_file();
    test_example_file();
    test_localhost_without_dns();
    test_health_bad_table();
    test_health_full();
    test_health_defaults();
    test_outlier();
    test_hash_on();
    return TEST_SUMMARY("test_config");
}
