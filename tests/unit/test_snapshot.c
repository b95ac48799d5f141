/* SPDX-License-Identifier: MIT */
/* Unit tests for snapshots built from a hand-made configuration, and load refcounting. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "keel/balancer.h"
#include "keel/snap.h"

static int n_pass, n_fail;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (cond) {                                                                                \
            n_pass++;                                                                              \
        } else {                                                                                   \
            n_fail++;                                                                              \
            fprintf(stderr, "%s:%d: FAIL: %s: ", __FILE__, __LINE__, #cond);                       \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
        }                                                                                          \
    } while (0)

/* The configuration lives in static storage, as the loader's would live for the process. */
static struct keel_cfg cfg;
static struct keel_cfg_cluster clusters[2];
static struct keel_cfg_endpoint api_eps[2], db_eps[1];
static struct keel_cfg_listener listeners[2];
static struct keel_cfg_route routes[2];
static char text0[] = "10.1.0.1:8080", text1[] = "10.1.0.2:8080", text2[] = "[::1]:5432";
static char name_api[] = "api", name_db[] = "db";
static char prefix_api[] = "/api/", host_db[] = "db.example.com";

static void set_v4(struct keel_cfg_addr *a, char *text, const char *ip, uint16_t port)
{
    struct sockaddr_in *sin = (struct sockaddr_in *)&a->sa;
    memset(a, 0, sizeof(*a));
    a->text = text;
    sin->sin_family = AF_INET;
    sin->sin_port = htons(port);
    inet_pton(AF_INET, ip, &sin->sin_addr);
    a->salen = sizeof(*sin);
}

static void set_v6(struct keel_cfg_addr *a, char *text, const char *ip, uint16_t port)
{
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&a->sa;
    memset(a, 0, sizeof(*a));
    a->text = text;
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons(port);
    inet_pton(AF_INET6, ip, &sin6->sin6_addr);
    a->salen = sizeof(*sin6);
}

/* 2 clusters (api: 2 endpoints, smooth WRR; db: 1 endpoint, default policy), an http listener
 * with 2 routes and a tcp listener. */
static void build_cfg(void)
{
    memset(&cfg, 0, sizeof(cfg));
    set_v4(&api_eps[0].addr, text0, "10.1.0.1", 8080);
    api_eps[0].weight = 3;
    set_v4(&api_eps[1].addr, text1, "10.1.0.2", 8080);
    api_eps[1].weight = 1;
    set_v6(&db_eps[0].addr, text2, "::1", 5432);
    db_eps[0].weight = 1;

    clusters[0] = (struct keel_cfg_cluster){.name = name_api,
                                            .lb = KEEL_LB_WEIGHTED_ROUND_ROBIN,
                                            .endpoints = api_eps,
                                            .n_endpoints = 2};
    clusters[1] = (struct keel_cfg_cluster){
        .name = name_db, .lb = KEEL_LB_WEIGHTED_LEAST_CONN, .endpoints = db_eps, .n_endpoints = 1};

    memset(routes, 0, sizeof(routes));
    routes[0].match.path_prefix = prefix_api;
    routes[0].cluster = name_api;
    routes[0].cluster_idx = 0;
    routes[1].match.host = host_db;
    routes[1].cluster = name_db;
    routes[1].cluster_idx = 1;

    memset(listeners, 0, sizeof(listeners));
    listeners[0].proto = KEEL_LISTEN_HTTP;
    listeners[0].routes = routes;
    listeners[0].n_routes = 2;
    listeners[0].cluster_idx = -1;
    listeners[1].proto = KEEL_LISTEN_TCP;
    listeners[1].cluster = name_db;
    listeners[1].cluster_idx = 1;

    cfg.clusters = clusters;
    cfg.n_clusters = 2;
    cfg.listeners = listeners;
    cfg.n_listeners = 2;
}

static void test_contents(void)
{
    struct keel_cluster_stats stats[2];
    struct keel_snap *s;

    build_cfg();
    s = keel_snap_from_config(&cfg, 7, stats);
    CHECK(s != NULL, "snapshot built");
    if (s == NULL)
        return;
    CHECK(atomic_load(&s->refs) == 1, "refs %u", atomic_load(&s->refs));
    CHECK(s->gen == 7, "gen %llu", (unsigned long long)s->gen);
    CHECK(s->n_clusters == 2, "n_clusters %u", s->n_clusters);

    const struct keel_cluster *api = &s->clusters[0], *db = &s->clusters[1];
    CHECK(strcmp(api->name, "api") == 0 && strcmp(db->name, "db") == 0, "names");
    CHECK(api->index == 0 && db->index == 1, "indices");
    CHECK(api->cfg == &clusters[0] && db->cfg == &clusters[1], "cfg pointers");
    CHECK(api->lb == &keel_lb_weighted_round_robin, "api lb %s", api->lb->name);
    CHECK(db->lb == &keel_lb_weighted_least_conn, "db lb %s", db->lb->name);
    CHECK(api->stats == &stats[0] && db->stats == &stats[1], "stats pointers");
    CHECK(api->n_eps == 2 && db->n_eps == 1, "endpoint counts");

    const struct keel_cfg_endpoint *want[3] = {&api_eps[0], &api_eps[1], &db_eps[0]};
    const struct keel_endpoint *got[3] = {&api->eps[0], &api->eps[1], &db->eps[0]};
    uint32_t ids[3];
    for (int i = 0; i < 3; i++) {
        CHECK(strcmp(got[i]->name, want[i]->addr.text) == 0, "ep %d name %s", i, got[i]->name);
        CHECK(got[i]->salen == want[i]->addr.salen &&
                  memcmp(&got[i]->sa, &want[i]->addr.sa, got[i]->salen) == 0,
              "ep %d address", i);
        CHECK(got[i]->weight == want[i]->weight, "ep %d weight %u", i, got[i]->weight);
        CHECK(got[i]->health == 0, "ep %d health %u", i, got[i]->health);
        CHECK(got[i]->load != NULL, "ep %d load", i);
        if (got[i]->load == NULL)
            goto out;
        CHECK(atomic_load(&got[i]->load->refs) == 1 && atomic_load(&got[i]->load->active) == 0,
              "ep %d fresh load", i);
        ids[i] = got[i]->load->id;
    }
    CHECK(ids[0] != 0 && ids[0] < ids[1] && ids[1] < ids[2],
          "load ids unique, increasing: %u %u %u", ids[0], ids[1], ids[2]);

    CHECK(s->n_listeners == 2, "n_listeners %u", s->n_listeners);
    const struct keel_snap_listener *http = &s->listeners[0], *tcp = &s->listeners[1];
    CHECK(http->cfg == &listeners[0] && tcp->cfg == &listeners[1], "listener cfg pointers");
    CHECK(http->tcp_cluster == -1, "http tcp_cluster %d", http->tcp_cluster);
    CHECK(tcp->tcp_cluster == 1, "tcp tcp_cluster %d", tcp->tcp_cluster);
    CHECK(http->n_routes == 2 && tcp->n_routes == 0, "route counts %u %u", http->n_routes,
          tcp->n_routes);
    if (http->n_routes == 2) {
        CHECK(http->routes[0].match == &routes[0].match && http->routes[0].cluster == 0, "route 0");
        CHECK(http->routes[1].match == &routes[1].match && http->routes[1].cluster == 1, "route 1");
        CHECK(strcmp(http->routes[0].match->path_prefix, "/api/") == 0, "route 0 match");
    }

    CHECK(keel_snap_find_cluster(s, "api") == 0, "find api");
    CHECK(keel_snap_find_cluster(s, "db") == 1, "find db");
    CHECK(keel_snap_find_cluster(s, "nope") == -1, "find missing");
    CHECK(keel_snap_find_cluster(s, "ap") == -1, "find prefix only");

    /* The snapshot's policy works on its own clusters: smooth WRR 3:1 on api. */
    void *st = api->lb->state_new(api);
    struct keel_lb_req req = {0, NULL, 0, 0};
    char seq[9] = {0};
    for (int k = 0; k < 8; k++)
        seq[k] = (char)('0' + api->lb->pick(api, st, &req));
    CHECK(strcmp(seq, "00100010") == 0, "api picks %s", seq);
    api->lb->state_free(st);

    /* A second snapshot of the same config gets fresh load records with new ids. */
    struct keel_snap *s2 = keel_snap_from_config(&cfg, 8, NULL);
    CHECK(s2 != NULL, "second snapshot");
    if (s2 != NULL) {
        CHECK(s2->clusters[0].eps[0].load != api->eps[0].load, "fresh load");
        CHECK(s2->clusters[0].eps[0].load->id > ids[2], "ids keep increasing");
        CHECK(s2->clusters[0].stats == NULL, "NULL stats");
        keel_snap_unref(s2);
    }
out:
    keel_snap_unref(s);
}

static void test_refcounts(void)
{
    build_cfg();
    struct keel_snap *s = keel_snap_from_config(&cfg, 1, NULL);
    CHECK(s != NULL, "snapshot built");
    if (s == NULL)
        return;

    keel_snap_ref(s);
    CHECK(atomic_load(&s->refs) == 2, "ref -> %u", atomic_load(&s->refs));
    keel_snap_unref(s);
    CHECK(atomic_load(&s->refs) == 1 && s->n_clusters == 2, "still alive after one unref");

    /* An in-flight request holds endpoint 0's load past the snapshot. */
    struct keel_ep_load *held = s->clusters[0].eps[0].load;
    keel_ep_load_ref(held);
    atomic_fetch_add(&held->active, 1);
    CHECK(atomic_load(&held->refs) == 2, "load refs %u", atomic_load(&held->refs));
    keel_snap_unref(s);
    /* Under ASan, reading a freed record would abort here. */
    CHECK(atomic_load(&held->refs) == 1 && atomic_load(&held->active) == 1,
          "held load survives the snapshot");
    atomic_fetch_sub(&held->active, 1);
    keel_ep_load_unref(held);
    keel_ep_load_unref(NULL);
    keel_snap_unref(NULL);

    /* Standalone load records. */
    struct keel_ep_load *a = keel_ep_load_new(), *b = keel_ep_load_new();
    CHECK(a && b && a->id != b->id && b->id > a->id, "new ids");
    if (a && b)
        CHECK(atomic_load(&a->refs) == 1 && atomic_load(&a->active) == 0, "new load state");
    keel_ep_load_unref(a);
    keel_ep_load_unref(b);
}

static void test_edge_cases(void)
{
    /* Empty configuration. */
    struct keel_cfg empty;
    memset(&empty, 0, sizeof(empty));
    struct keel_snap *s = keel_snap_from_config(&empty, 1, NULL);
    CHECK(s && s->n_clusters == 0 && s->n_listeners == 0, "empty config");
    if (s != NULL) {
        CHECK(keel_snap_find_cluster(s, "api") == -1, "find in empty");
        keel_snap_unref(s);
    }

    /* Unresolved route: refused, and the partly built snapshot leaks nothing (ASan). */
    build_cfg();
    routes[1].cluster_idx = 5;
    CHECK(keel_snap_from_config(&cfg, 1, NULL) == NULL, "route to cluster 5 refused");
    build_cfg();
    listeners[1].cluster_idx = -1;
    CHECK(keel_snap_from_config(&cfg, 1, NULL) == NULL, "unresolved tcp listener refused");

    /* Out-of-range policy falls back to the default; a cluster with no endpoints is fine. */
    build_cfg();
    clusters[1].lb = (enum keel_lb_policy)99;
    clusters[1].n_endpoints = 0;
    s = keel_snap_from_config(&cfg, 1, NULL);
    CHECK(s != NULL, "built");
    if (s != NULL) {
        CHECK(s->clusters[1].lb == &keel_lb_weighted_least_conn, "default policy");
        CHECK(s->clusters[1].n_eps == 0, "no endpoints");
        struct keel_lb_req req = {0, NULL, 0, 0};
        CHECK(s->clusters[1].lb->pick(&s->clusters[1], NULL, &req) == -1, "empty pick");
        keel_snap_unref(s);
    }

    /* A name longer than the endpoint's buffer is cut, NUL-terminated. */
    build_cfg();
    char longtext[200];
    memset(longtext, 'x', sizeof(longtext) - 1);
    longtext[sizeof(longtext) - 1] = 0;
    api_eps[0].addr.text = longtext;
    s = keel_snap_from_config(&cfg, 1, NULL);
    CHECK(s != NULL, "built");
    if (s != NULL) {
        const char *n = s->clusters[0].eps[0].name;
        CHECK(strlen(n) == sizeof(s->clusters[0].eps[0].name) - 1 &&
                  strncmp(n, longtext, strlen(n)) == 0,
              "long name cut to %zu", strlen(n));
        keel_snap_unref(s);
    }
}

static void test_latency_bounds(void)
{
    CHECK(keel_lat_bounds_ms[0] == 1 && keel_lat_bounds_ms[KEEL_LAT_BUCKETS - 1] == 5000,
          "bounds %g..%g", keel_lat_bounds_ms[0], keel_lat_bounds_ms[KEEL_LAT_BUCKETS - 1]);
    int increasing = 1;
    for (int i = 1; i < KEEL_LAT_BUCKETS; i++)
        if (!(keel_lat_bounds_ms[i] > keel_lat_bounds_ms[i - 1]))
            increasing = 0;
    CHECK(increasing, "bounds strictly increasing");
}

int main(void)
{
    test_contents();
    test_refcounts();
    test_edge_cases();
    test_latency_bounds();
    printf("test_snapshot: %d passed, %d failed\n", n_pass, n_fail);
    return n_fail != 0;
}
