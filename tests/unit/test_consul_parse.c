/* SPDX-License-Identifier: MIT */
/* Unit tests for the Consul answer parsers: health, catalog, index rules and keel.* tags. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include "consul_parse.h"
#include "keel/config.h"
#include "keel/err.h"
#include "testutil.h"

/* ---- reading vectors --------------------------------------------------------------------- */

/* tests/vectors/consul/, found from this file's path so the test runs from any directory. */
static char vec_dir[1024];

static void init_vec_dir(void)
{
    const char *env = getenv("KEEL_VECTORS_DIR");
    if (env) {
        snprintf(vec_dir, sizeof(vec_dir), "%s/consul/", env);
        return;
    }
    const char *f = __FILE__;
    const char *slash = strrchr(f, '/');
    if (!slash) {
        snprintf(vec_dir, sizeof(vec_dir), "../vectors/consul/");
        return;
    }
    snprintf(vec_dir, sizeof(vec_dir), "%.*s/../vectors/consul/", (int)(slash - f), f);
}

/* Reads a vector into a malloc'ed buffer of exactly its size (so ASan sees over-reads). */
static char *read_vec(const char *name, size_t *len)
{
    char path[1200];
    snprintf(path, sizeof(path), "%s%s", vec_dir, name);
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return NULL;
    }
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc(sz > 0 ? (size_t)sz : 1);
    if (buf && sz > 0 && fread(buf, 1, (size_t)sz, f) != (size_t)sz) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    *len = sz > 0 ? (size_t)sz : 0;
    return buf;
}

/* ---- health table ------------------------------------------------------------------------ */

#define ANY_MI UINT64_MAX

struct exp_ep {
    const char *id;
    const char *name;
    uint32_t weight;
    int draining;
    const char *reason; /* exact */
    uint64_t mi;        /* ANY_MI = not checked */
};

struct hcase {
    const char *title;
    const char *file; /* vector file, or NULL and body */
    const char *body;
    int warning_drain;
    int rc;
    size_t n;
    size_t skipped;
    const char *err_sub; /* substring of err, or NULL = err must be "" (rc 0) */
    struct exp_ep eps[5];
};

static char long_id_body[1024];

static const struct hcase hcases[] = {
    {"three passing instances with weights",
     "health_three_passing.json",
     NULL,
     0,
     0,
     3,
     0,
     NULL,
     {{"node-a/web-1", "10.0.1.10:8080", 3, 0, "passing", 31},
      {"node-b/web-2", "10.0.1.11:8080", 1, 0, "passing", 32},
      {"node-c/web-3", "10.0.1.12:8081", 10, 0, "passing", 33}}},
    {"empty array (authoritative empty set)", "health_empty.json", NULL, 0, 0, 0, 0, NULL, {{0}}},
    {"empty array inline with spaces", NULL, "  [ ]\n", 0, 0, 0, 0, NULL, {{0}}},
    {"Service.Address empty: Node.Address used",
     "health_node_address.json",
     NULL,
     0,
     0,
     1,
     0,
     NULL,
     {{"node-a/web-1", "10.0.2.7:9000", 1, 0, "passing", 30}}},
    {"IPv6 service and node addresses",
     "health_ipv6.json",
     NULL,
     0,
     0,
     2,
     0,
     NULL,
     {{"node-v6/web-6", "[2001:db8::10]:443", 1, 0, "passing", 30},
      {"node-v6b/web-7", "[fd00::1]:8443", 1, 0, "passing", 30}}},
    {"hostname addresses are skipped, not resolved",
     "health_hostname.json",
     NULL,
     0,
     0,
     1,
     2,
     "entry 0: Service.Address \"web-1.service.internal\" is not a numeric IP address",
     {{"node-c/web-3", "10.0.3.3:8080", 1, 0, "passing", 30}}},
    {"serfHealth critical drains",
     "health_serf_critical.json",
     NULL,
     0,
     0,
     2,
     0,
     NULL,
     {{"node-a/web-1", "10.0.4.1:8080", 0, 1, "critical: check 'serfHealth'", 30},
      {"node-b/web-2", "10.0.4.2:8080", 1, 0, "passing", 30}}},
    {"node and service maintenance drain",
     "health_maintenance.json",
     NULL,
     0,
     0,
     3,
     0,
     NULL,
     {{"node-a/web-1", "10.0.5.1:8080", 0, 1, "node maintenance", 30},
      {"node-b/web-2", "10.0.5.2:8080", 0, 1, "service maintenance", 30},
      {"node-c/web-3", "10.0.5.3:8080", 1, 0, "passing", 30}}},
    {"warning serves at Weights.Warning; Warning 0 drains",
     "health_warning.json",
     NULL,
     0,
     0,
     3,
     0,
     NULL,
     {{"node-a/web-1", "10.0.6.1:8080", 2, 0,
       "warning: check 'service:web-1' (serving at weight 2)", 30},
      {"node-b/web-2", "10.0.6.2:8080", 0, 1, "warning: check 'service:web-2' (weight 0)", 30},
      {"node-c/web-3", "10.0.6.3:8080", 5, 0, "passing", 30}}},
    {"warning with cluster warning: drain",
     "health_warning.json",
     NULL,
     1,
     0,
     3,
     0,
     NULL,
     {{"node-a/web-1", "10.0.6.1:8080", 0, 1, "warning: check 'service:web-1' (draining)", 30},
      {"node-b/web-2", "10.0.6.2:8080", 0, 1, "warning: check 'service:web-2' (draining)", 30},
      {"node-c/web-3", "10.0.6.3:8080", 5, 0, "passing", 30}}},
    {"critical service check; critical beats warning",
     "health_critical_service.json",
     NULL,
     0,
     0,
     2,
     0,
     NULL,
     {{"node-a/web-1", "10.0.7.1:8080", 0, 1, "critical: check 'service:web-1'", 30},
      {"node-b/web-2", "10.0.7.2:8080", 0, 1, "critical: check 'mem'", 30}}},
    {"Weights absent -> 1, Passing 0 drains, clamped to 0..10000",
     "health_weights.json",
     NULL,
     0,
     0,
     4,
     0,
     NULL,
     {{"node-a/web-1", "10.0.8.1:8080", 1, 0, "passing", 30},
      {"node-b/web-2", "10.0.8.2:8080", 0, 1, "weight 0", 30},
      {"node-c/web-3", "10.0.8.3:8080", 10000, 0, "passing", 30},
      {"node-d/web-4", "10.0.8.4:8080", 1, 0,
       "warning: check 'service:web-4' (serving at weight 1)", 30}}},
    {"duplicate ids: highest ModifyIndex wins",
     "health_duplicate.json",
     NULL,
     0,
     0,
     2,
     2,
     "duplicate id \"node-a/web-1\"",
     {{"node-a/web-1", "10.0.9.9:9090", 1, 0, "passing", 57},
      {"node-b/web-1", "10.0.9.2:8080", 1, 0, "passing", 41}}},
    {"wrong types skip only their entry",
     "health_wrong_types.json",
     NULL,
     0,
     0,
     4,
     10,
     "entry 1: Service.Port is a string, not an integer",
     {{"node-12/web-13", "10.0.10.13:8080", 1, 0, "passing", 30},
      {"node-13/web-14", "10.0.10.14:8080", 0, 1, "critical: check 'service:web-14'", 30},
      {"node-9/web-10", "10.0.10.10:8080", 1, 0, "passing", 30},
      {"node-ok/web-ok", "10.0.10.1:8080", 1, 0, "passing", 30}}},
    {"huge numbers: port out of range skipped (not truncated), weight clamped",
     "health_huge_numbers.json",
     NULL,
     0,
     0,
     1,
     3,
     "entry 1: Service.Port 4294967377 is out of range 1..65535",
     {{"node-h/web-h", "10.0.11.1:8080", 10000, 0, "passing", 9223372036854775807ULL}}},
    {"integer beyond int64 is unparseable",
     "health_too_big_integer.json",
     NULL,
     0,
     KEEL_EBADMSG,
     0,
     0,
     "invalid JSON at line 1",
     {{0}}},
    {"top-level object instead of array",
     "health_object.json",
     NULL,
     0,
     KEEL_EBADMSG,
     0,
     0,
     "top level is an object, not an array",
     {{0}}},
    {"truncated JSON",
     "health_truncated.json",
     NULL,
     0,
     KEEL_EBADMSG,
     0,
     0,
     "invalid JSON at line",
     {{0}}},
    {"an HTML error page",
     "health_not_json.html",
     NULL,
     0,
     KEEL_EBADMSG,
     0,
     0,
     "invalid JSON at line 1, column 1",
     {{0}}},
    {"empty body", NULL, "", 0, KEEL_EBADMSG, 0, 0, "invalid JSON", {{0}}},
    {"null", NULL, "null", 0, KEEL_EBADMSG, 0, 0, "top level is null", {{0}}},
    {"no address anywhere",
     NULL,
     "[{\"Node\":{\"Node\":\"n1\",\"Address\":\"\"},\"Service\":{\"ID\":\"s1\",\"Address\":\"\","
     "\"Port\":80},\"Checks\":[]},"
     "{\"Node\":{\"Node\":\"n2\",\"Address\":\"10.9.0.2\"},\"Service\":{\"ID\":\"s2\",\"Port\":80}}"
     "]",
     0,
     0,
     1,
     1,
     "entry 0: no address",
     {{"n2/s2", "10.9.0.2:80", 1, 0, "passing", 0}}},
    {"port 0 skipped, port 65535 kept",
     NULL,
     "[{\"Node\":{\"Node\":\"n\",\"Address\":\"10.9.1.1\"},\"Service\":{\"ID\":\"a\",\"Port\":0}},"
     "{\"Node\":{\"Node\":\"n\",\"Address\":\"10.9.1.1\"},\"Service\":{\"ID\":\"b\",\"Port\":65535}"
     "},"
     "{\"Node\":{\"Node\":\"n\",\"Address\":\"10.9.1.1\"},\"Service\":{\"ID\":\"c\",\"Port\":65536}"
     "}]",
     0,
     0,
     1,
     2,
     "entry 0: Service.Port 0 is out of range",
     {{"n/b", "10.9.1.1:65535", 1, 0, "passing", 0}}},
    {"unknown or missing check status counts as critical",
     NULL,
     "[{\"Node\":{\"Node\":\"n\",\"Address\":\"10.9.2.1\"},\"Service\":{\"ID\":\"a\",\"Port\":1},"
     "\"Checks\":[{\"CheckID\":\"serfHealth\",\"Status\":\"passing\"},{\"CheckID\":\"disk\","
     "\"Status\":\"maintenance\"}]},"
     "{\"Node\":{\"Node\":\"n\",\"Address\":\"10.9.2.1\"},\"Service\":{\"ID\":\"b\",\"Port\":2},"
     "\"Checks\":[{\"Name\":\"no id\",\"Status\":7}]}]",
     0,
     0,
     2,
     0,
     NULL,
     {{"n/a", "10.9.2.1:1", 0, 1, "critical: check 'disk'", 0},
      {"n/b", "10.9.2.1:2", 0, 1, "critical: check 'no id'", 0}}},
    {"node check warning (ServiceID \"\") applies to the service",
     NULL,
     "[{\"Node\":{\"Node\":\"n\",\"Address\":\"10.9.3.1\"},\"Service\":{\"ID\":\"a\",\"Port\":80,"
     "\"Weights\":{\"Passing\":10,\"Warning\":3},\"ModifyIndex\":9},"
     "\"Checks\":[{\"CheckID\":\"load\",\"ServiceID\":\"\",\"Status\":\"warning\"},"
     "{\"CheckID\":\"service:a\",\"ServiceID\":\"a\",\"Status\":\"passing\"}]}]",
     0,
     0,
     1,
     0,
     NULL,
     {{"n/a", "10.9.3.1:80", 3, 0, "warning: check 'load' (serving at weight 3)", 9}}},
    {"maintenance wins over a critical serfHealth in the reason",
     NULL,
     "[{\"Node\":{\"Node\":\"n\",\"Address\":\"10.9.4.1\"},\"Service\":{\"ID\":\"a\",\"Port\":80},"
     "\"Checks\":[{\"CheckID\":\"serfHealth\",\"Status\":\"critical\"},"
     "{\"CheckID\":\"_service_maintenance:a\",\"ServiceID\":\"a\",\"Status\":\"critical\"},"
     "{\"CheckID\":\"_node_maintenance\",\"Status\":\"critical\"}]}]",
     0,
     0,
     1,
     0,
     NULL,
     {{"n/a", "10.9.4.1:80", 0, 1, "node maintenance", 0}}},
    {"Weights {} and members null default to 1",
     NULL,
     "[{\"Node\":{\"Node\":\"n\",\"Address\":\"10.9.5.1\"},\"Service\":{\"ID\":\"a\",\"Port\":80,"
     "\"Weights\":{}}},{\"Node\":{\"Node\":\"n\",\"Address\":\"10.9.5.1\"},\"Service\":{\"ID\":"
     "\"b\","
     "\"Port\":81,\"Weights\":{\"Passing\":null,\"Warning\":4}}}]",
     0,
     0,
     2,
     0,
     NULL,
     {{"n/a", "10.9.5.1:80", 1, 0, "passing", 0}, {"n/b", "10.9.5.1:81", 1, 0, "passing", 0}}},
    {"ModifyIndex of the wrong type skips; real Port skips",
     NULL,
     "[{\"Node\":{\"Node\":\"n\",\"Address\":\"10.9.6.1\"},\"Service\":{\"ID\":\"a\",\"Port\":80,"
     "\"ModifyIndex\":\"12\"}},{\"Node\":{\"Node\":\"n\",\"Address\":\"10.9.6.1\"},\"Service\":{"
     "\"ID\":\"b\",\"Port\":80.5}},{\"Node\":{\"Node\":\"n\",\"Address\":\"10.9.6.1\"},"
     "\"Service\":{\"ID\":\"c\",\"Port\":80,\"ModifyIndex\":-1}}]",
     0,
     0,
     0,
     3,
     "entry 0: Service.ModifyIndex is not a non-negative integer",
     {{0}}},
    {"entries that are arrays or scalars",
     NULL,
     "[[], [1], 2, \"x\", null, true]",
     0,
     0,
     0,
     6,
     "entry 0: is an array, not an object",
     {{0}}},
    {"IPv4-mapped IPv6 and a non-canonical IPv6",
     NULL,
     "[{\"Node\":{\"Node\":\"n\",\"Address\":\"::ffff:10.9.7.1\"},\"Service\":{\"ID\":\"a\","
     "\"Port\":80}},{\"Node\":{\"Node\":\"n\",\"Address\":\"10.9.7.2\"},\"Service\":{\"ID\":\"b\","
     "\"Address\":\"2001:0db8:0000:0000:0000:0000:0000:0001\",\"Port\":80}}]",
     0,
     0,
     2,
     0,
     NULL,
     {{"n/a", "[::ffff:10.9.7.1]:80", 1, 0, "passing", 0},
      {"n/b", "[2001:db8::1]:80", 1, 0, "passing", 0}}},
    {"addresses with spaces, scope ids or ports are not numeric IPs",
     NULL,
     "[{\"Node\":{\"Node\":\"n\",\"Address\":\" "
     "10.9.8.1\"},\"Service\":{\"ID\":\"a\",\"Port\":80}},"
     "{\"Node\":{\"Node\":\"n\",\"Address\":\"fe80::1%eth0\"},\"Service\":{\"ID\":\"b\",\"Port\":"
     "80}},"
     "{\"Node\":{\"Node\":\"n\",\"Address\":\"10.9.8.3:80\"},\"Service\":{\"ID\":\"c\",\"Port\":80}"
     "},"
     "{\"Node\":{\"Node\":\"n\",\"Address\":\"10.9.8.4\"},\"Service\":{\"ID\":\"d\",\"Port\":80}}]",
     0,
     0,
     1,
     3,
     "entry 0: Node.Address \" 10.9.8.1\" is not a numeric IP address",
     {{"n/d", "10.9.8.4:80", 1, 0, "passing", 0}}},
    {"nesting deeper than jansson allows",
     NULL,
     NULL /* built at run time */,
     0,
     KEEL_EBADMSG,
     0,
     0,
     "invalid JSON",
     {{0}}},
    {"id longer than KEEL_DISC_ID_MAX-1 is skipped",
     NULL,
     long_id_body,
     0,
     0,
     0,
     1,
     "is longer than 255 bytes",
     {{0}}},
};

static char *deep_body;

static void run_hcase(const struct hcase *c)
{
    size_t len = 0;
    char *owned = NULL;
    const char *body = c->body;
    if (c->file) {
        owned = read_vec(c->file, &len);
        if (!CHECKF(owned != NULL, "%s: cannot read %s", c->title, c->file))
            return;
        body = owned;
    } else if (!body) {
        body = deep_body;
        len = strlen(body);
    } else {
        len = strlen(body);
    }
    /* Exact-size copy: the parser must not read past len or need a NUL. */
    char *buf = malloc(len ? len : 1);
    memcpy(buf, body, len);

    struct keel_consul_opts o = {c->warning_drain};
    struct keel_disc_set set;
    size_t skipped = 99;
    char err[256];
    int rc = keel_consul_parse_health(buf, len, &o, &set, &skipped, NULL, err, sizeof(err));
    CHECKF(rc == c->rc, "%s: rc %d, want %d (err: %s)", c->title, rc, c->rc, err);
    if (c->err_sub)
        CHECKF(strstr(err, c->err_sub) != NULL, "%s: err \"%s\" lacks \"%s\"", c->title, err,
               c->err_sub);
    else
        CHECKF(err[0] == '\0', "%s: unexpected err \"%s\"", c->title, err);
    if (rc != 0) {
        CHECKF(set.eps == NULL && set.n == 0, "%s: set not zeroed on error", c->title);
    } else {
        CHECKF(set.n == c->n, "%s: n %zu, want %zu", c->title, set.n, c->n);
        CHECKF(skipped == c->skipped, "%s: skipped %zu, want %zu", c->title, skipped, c->skipped);
        for (size_t i = 0; i < set.n && i < c->n; i++) {
            const struct keel_disc_ep *ep = &set.eps[i];
            const struct exp_ep *x = &c->eps[i];
            CHECKF(strcmp(ep->id, x->id) == 0, "%s[%zu]: id %s, want %s", c->title, i, ep->id,
                   x->id);
            CHECKF(strcmp(ep->name, x->name) == 0, "%s[%zu]: name %s, want %s", c->title, i,
                   ep->name, x->name);
            CHECKF(ep->weight == x->weight, "%s[%zu]: weight %u, want %u", c->title, i,
                   (unsigned)ep->weight, (unsigned)x->weight);
            CHECKF(ep->draining == x->draining, "%s[%zu]: draining %d, want %d", c->title, i,
                   ep->draining, x->draining);
            CHECKF(strcmp(ep->reason, x->reason) == 0, "%s[%zu]: reason \"%s\", want \"%s\"",
                   c->title, i, ep->reason, x->reason);
            if (x->mi != ANY_MI)
                CHECKF(ep->modify_index == x->mi,
                       "%s[%zu]: modify_index %" PRIu64 ", want %" PRIu64, c->title, i,
                       ep->modify_index, x->mi);
            /* The socket address must agree with the printed name. */
            if (ep->sa.ss_family == AF_INET) {
                const struct sockaddr_in *sin = (const struct sockaddr_in *)&ep->sa;
                CHECKF(ep->salen == sizeof(*sin) && ep->name[0] != '[', "%s[%zu]: v4 salen",
                       c->title, i);
                CHECKF(ntohs(sin->sin_port) == (unsigned)atoi(strrchr(ep->name, ':') + 1),
                       "%s[%zu]: port in sa", c->title, i);
            } else {
                const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&ep->sa;
                CHECKF(ep->sa.ss_family == AF_INET6 && ep->salen == sizeof(*sin6) &&
                           ep->name[0] == '[',
                       "%s[%zu]: v6 family/salen", c->title, i);
                CHECKF(ntohs(sin6->sin6_port) == (unsigned)atoi(strrchr(ep->name, ':') + 1),
                       "%s[%zu]: port in sa", c->title, i);
            }
        }
    }
    keel_disc_set_free(&set);
    free(buf);
    free(owned);
}

/* Every strict prefix of a valid answer (up to its closing bracket) is an error, never a
 * smaller set: a connection cut mid-body must keep the last good set. */
static void test_every_prefix(void)
{
    size_t len;
    char *body = read_vec("health_three_passing.json", &len);
    if (!CHECK(body != NULL))
        return;
    size_t close = len;
    while (close > 0 && body[close - 1] != ']')
        close--;
    int bad = 0;
    for (size_t cut = 0; cut < close; cut++) {
        char *p = malloc(cut ? cut : 1);
        memcpy(p, body, cut);
        struct keel_disc_set set;
        char err[128];
        int rc = keel_consul_parse_health(p, cut, NULL, &set, NULL, NULL, err, sizeof(err));
        if (rc != KEEL_EBADMSG || set.n != 0) {
            if (bad++ < 3)
                CHECKF(0, "prefix %zu: rc %d n %zu", cut, rc, set.n);
        }
        keel_disc_set_free(&set);
        free(p);
    }
    CHECKF(bad == 0, "%d prefixes parsed", bad);
    struct keel_disc_set set;
    CHECK(keel_consul_parse_health(body, close, NULL, &set, NULL, NULL, NULL, 0) == 0 &&
          set.n == 3);
    keel_disc_set_free(&set);
    free(body);
}

/* The svcinfo output: the newest instance's tags/meta, and keel conflicts between instances. */
static void test_svcinfo(void)
{
    size_t len;
    char *body = read_vec("health_keel_tags.json", &len);
    if (!CHECK(body != NULL))
        return;
    struct keel_disc_set set;
    struct keel_consul_svcinfo info;
    size_t skipped;
    int rc = keel_consul_parse_health(body, len, NULL, &set, &skipped, &info, NULL, 0);
    CHECK(rc == 0 && set.n == 3 && skipped == 0);
    CHECKF(strcmp(info.newest_id, "node-b/api-2") == 0, "newest %s", info.newest_id);
    CHECK(info.newest_index == 180);
    /* api-3 has the same keel tags in another order and other non-keel tags: no conflict. */
    CHECKF(info.conflicts == 1, "conflicts %zu", info.conflicts);
    CHECKF(strcmp(info.conflict_id, "node-a/api-1") == 0, "conflict_id %s", info.conflict_id);
    CHECK(info.n_tags == 4 && strcmp(info.tags[1], "keel.route=api.example.com/v2") == 0);
    CHECK(info.n_meta == 2);

    /* End to end: the newest instance's tags and meta configure the cluster. */
    struct keel_consul_tagcfg tc;
    rc = keel_consul_parse_tags((const char *const *)info.tags, info.n_tags,
                                (const char *const *)info.meta_keys,
                                (const char *const *)info.meta_values, info.n_meta, &tc);
    CHECK(rc == 0 && tc.enabled && tc.n_errors == 0);
    CHECK(tc.route_host && strcmp(tc.route_host, "api.example.com") == 0);
    CHECK(tc.route_path && strcmp(tc.route_path, "/v2") == 0);
    CHECK(tc.lb == KEEL_LB_LEAST_CONN);
    CHECK(tc.protocol == KEEL_CONSUL_PROTO_H2); /* from meta keel-protocol */
    keel_consul_tagcfg_free(&tc);
    keel_consul_svcinfo_free(&info);
    keel_disc_set_free(&set);
    free(body);

    /* No keel tags anywhere: no conflicts; newest by ModifyIndex. */
    body = read_vec("health_three_passing.json", &len);
    if (!CHECK(body != NULL))
        return;
    rc = keel_consul_parse_health(body, len, NULL, &set, NULL, &info, NULL, 0);
    CHECK(rc == 0 && info.conflicts == 0 && info.conflict_id[0] == '\0');
    CHECK(strcmp(info.newest_id, "node-c/web-3") == 0 && info.newest_index == 33);
    CHECK(info.n_tags == 2 && info.n_meta == 1 && strcmp(info.meta_keys[0], "version") == 0 &&
          strcmp(info.meta_values[0], "2.1.0") == 0);
    keel_consul_svcinfo_free(&info);
    keel_disc_set_free(&set);
    free(body);

    /* Errors leave info zeroed; empty answers give an empty info. */
    rc = keel_consul_parse_health("{}", 2, NULL, &set, NULL, &info, NULL, 0);
    CHECK(rc == KEEL_EBADMSG && info.tags == NULL && info.newest_id[0] == '\0');
    rc = keel_consul_parse_health("[]", 2, NULL, &set, NULL, &info, NULL, 0);
    CHECK(rc == 0 && set.n == 0 && info.n_tags == 0 && info.newest_id[0] == '\0');
    keel_consul_svcinfo_free(&info);
}

/* ---- catalog ----------------------------------------------------------------------------- */

static void test_services(void)
{
    size_t len;
    char *body = read_vec("catalog_services.json", &len);
    struct keel_consul_services s;
    char err[256];
    if (!CHECK(body != NULL))
        return;
    int rc = keel_consul_parse_services(body, len, &s, err, sizeof(err));
    CHECKF(rc == 0, "rc %d err %s", rc, err);
    CHECK(s.n == 5);
    static const char *const names[] = {"api", "billing", "consul", "redis", "web"};
    static const size_t ntags[] = {5, 2, 0, 0, 2};
    for (size_t i = 0; i < s.n && i < 5; i++) {
        CHECKF(strcmp(s.v[i].name, names[i]) == 0, "service %zu: %s", i, s.v[i].name);
        CHECKF(s.v[i].n_tags == ntags[i], "%s: %zu tags", s.v[i].name, s.v[i].n_tags);
    }
    if (s.n == 5) {
        CHECK(strcmp(s.v[0].tags[0], "keel") == 0 &&
              strcmp(s.v[0].tags[2], "keel.lb=least_conn") == 0);
        CHECK(strcmp(s.v[1].tags[1], "keel.protocol=grpc") == 0);
    }
    keel_consul_services_free(&s);
    CHECK(s.v == NULL && s.n == 0);
    free(body);

    static const struct {
        const char *file, *body;
        int rc;
        size_t n;
        const char *err_sub;
    } cases[] = {
        {"catalog_services_empty.json", NULL, 0, 0, NULL},
        {"catalog_services_bad_tag.json", NULL, KEEL_EBADMSG, 0,
         "service \"web\": tag 1 is an integer, not a string"},
        {"catalog_services_bad_value.json", NULL, KEEL_EBADMSG, 0,
         "service \"web\": tags are an object, not an array"},
        {"catalog_services_array.json", NULL, KEEL_EBADMSG, 0, "top level is an array"},
        {"health_not_json.html", NULL, KEEL_EBADMSG, 0, "invalid JSON at line 1"},
        {NULL, "{\"a\":[\"x\"],\"b\":[\"y\"", KEEL_EBADMSG, 0, "invalid JSON"},
        {NULL, "{\"z\":[],\"a\":null,\"m\":[\"t\",\"t\"]}", 0, 3, NULL},
        {NULL, "", KEEL_EBADMSG, 0, "invalid JSON"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *owned = NULL;
        const char *b = cases[i].body;
        len = b ? strlen(b) : 0;
        if (cases[i].file) {
            owned = read_vec(cases[i].file, &len);
            if (!CHECK(owned != NULL))
                continue;
            b = owned;
        }
        rc = keel_consul_parse_services(b, len, &s, err, sizeof(err));
        CHECKF(rc == cases[i].rc, "services case %zu: rc %d err %s", i, rc, err);
        CHECKF(s.n == cases[i].n, "services case %zu: n %zu", i, s.n);
        if (cases[i].err_sub)
            CHECKF(strstr(err, cases[i].err_sub) != NULL, "services case %zu: err \"%s\"", i, err);
        if (rc != 0)
            CHECK(s.v == NULL);
        if (rc == 0 && s.n == 3)
            CHECK(strcmp(s.v[0].name, "a") == 0 && s.v[0].n_tags == 0 &&
                  strcmp(s.v[1].name, "m") == 0 && s.v[1].n_tags == 2 &&
                  strcmp(s.v[2].name, "z") == 0);
        keel_consul_services_free(&s);
        free(owned);
    }
}

/* ---- index ------------------------------------------------------------------------------- */

static void test_index(void)
{
    static const struct {
        const char *v;
        size_t len; /* 0 = strlen */
        int rc;
        uint64_t want;
    } cases[] = {
        {"12345", 0, 0, 12345},
        {"0", 0, 0, 0},
        {" 42\r\n", 0, 0, 42},
        {"\t7 ", 0, 0, 7},
        {"18446744073709551615", 0, 0, UINT64_MAX},
        {"18446744073709551616", 0, KEEL_EINVAL, 0},
        {"99999999999999999999", 0, KEEL_EINVAL, 0},
        {"", 0, KEEL_EINVAL, 0},
        {"   ", 0, KEEL_EINVAL, 0},
        {"-1", 0, KEEL_EINVAL, 0},
        {"+1", 0, KEEL_EINVAL, 0},
        {"12a", 0, KEEL_EINVAL, 0},
        {"1 2", 0, KEEL_EINVAL, 0},
        {"0x10", 0, KEEL_EINVAL, 0},
        {"123456", 3, 0, 123},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint64_t got = 777;
        size_t len = cases[i].len ? cases[i].len : strlen(cases[i].v);
        int rc = keel_consul_parse_index(cases[i].v, len, &got);
        CHECKF(rc == cases[i].rc, "index \"%s\": rc %d", cases[i].v, rc);
        if (rc == 0)
            CHECKF(got == cases[i].want, "index \"%s\": %" PRIu64, cases[i].v, got);
        else
            CHECKF(got == 777, "index \"%s\": out written on error", cases[i].v);
    }
    uint64_t x = 5;
    CHECK(keel_consul_parse_index(NULL, 3, &x) == KEEL_EINVAL && x == 5);

    static const struct {
        uint64_t prev, got, want;
    } next[] = {
        {0, 0, 1},                   /* index 0 is never sent back: it would not block */
        {0, 7, 7},                   /* first answer */
        {7, 7, 7},                   /* wait timed out, nothing changed */
        {7, 12, 12},                 /* normal progress */
        {12, 3, 0},                  /* went backwards (snapshot restore): reset */
        {12, 0, 0},                  /* backwards to 0: reset */
        {0, UINT64_MAX, UINT64_MAX}, /* no overflow games */
        {UINT64_MAX, UINT64_MAX - 1, 0},
    };
    for (size_t i = 0; i < sizeof(next) / sizeof(next[0]); i++)
        CHECKF(keel_consul_next_index(next[i].prev, next[i].got) == next[i].want,
               "next(%" PRIu64 ", %" PRIu64 ")", next[i].prev, next[i].got);
}

/* ---- tags -------------------------------------------------------------------------------- */

struct tcase {
    const char *title;
    const char *tags[24];
    const char *mk[4], *mv[4];
    int enabled;
    const char *host, *path;
    int protocol, lb, warning_drain;
    size_t n_errors;
    const char *first_error; /* exact, or NULL */
};

#define T_LB_DEF KEEL_LB_WEIGHTED_LEAST_CONN

static const struct tcase tcases[] = {
    {"no tags", {NULL}, {NULL}, {NULL}, 0, NULL, NULL, 0, T_LB_DEF, 0, 0, NULL},
    {"only keel", {"keel"}, {NULL}, {NULL}, 1, NULL, NULL, 0, T_LB_DEF, 0, 0, NULL},
    {"full set of tags",
     {"primary", "keel", "keel.route=api.example.com/v1/", "keel.protocol=grpc",
      "keel.lb=round_robin", "keel.warning=drain"},
     {NULL},
     {NULL},
     1,
     "api.example.com",
     "/v1/",
     KEEL_CONSUL_PROTO_GRPC,
     KEEL_LB_ROUND_ROBIN,
     1,
     0,
     NULL},
    {"path-only route",
     {"keel", "keel.route=/api"},
     {NULL},
     {NULL},
     1,
     NULL,
     "/api",
     0,
     T_LB_DEF,
     0,
     0,
     NULL},
    {"host-only route is lower-cased",
     {"keel.route=API.Example.COM"},
     {NULL},
     {NULL},
     0,
     "api.example.com",
     NULL,
     0,
     T_LB_DEF,
     0,
     0,
     NULL},
    {"host with port",
     {"keel.route=api.example.com:8443/x"},
     {NULL},
     {NULL},
     0,
     "api.example.com:8443",
     "/x",
     0,
     T_LB_DEF,
     0,
     0,
     NULL},
    {"unknown policy",
     {"keel", "keel.lb=fastest"},
     {NULL},
     {NULL},
     1,
     NULL,
     NULL,
     0,
     T_LB_DEF,
     0,
     1,
     "keel.lb=fastest: unknown policy"},
    {"unknown protocol",
     {"keel.protocol=http3"},
     {NULL},
     {NULL},
     0,
     NULL,
     NULL,
     0,
     T_LB_DEF,
     0,
     1,
     "keel.protocol=http3: unknown protocol (http, h2, grpc, tcp)"},
    {"bad warning value",
     {"keel.warning=maybe"},
     {NULL},
     {NULL},
     0,
     NULL,
     NULL,
     0,
     T_LB_DEF,
     0,
     1,
     "keel.warning=maybe: expected drain or serve"},
    {"route with a scheme",
     {"keel.route=http://api/x"},
     {NULL},
     {NULL},
     0,
     NULL,
     NULL,
     0,
     T_LB_DEF,
     0,
     1,
     "keel.route=http://api/x: route must not have a scheme (write host/path)"},
    {"empty route",
     {"keel.route="},
     {NULL},
     {NULL},
     0,
     NULL,
     NULL,
     0,
     T_LB_DEF,
     0,
     1,
     "keel.route=: empty route"},
    {"bad host and path characters",
     {"keel.route=a_b/c", "keel.lb=random"},
     {NULL},
     {NULL},
     0,
     NULL,
     NULL,
     0,
     KEEL_LB_RANDOM,
     0,
     1,
     "keel.route=a_b/c: invalid character in host"},
    {"space in path",
     {"keel.route=/a b"},
     {NULL},
     {NULL},
     0,
     NULL,
     NULL,
     0,
     T_LB_DEF,
     0,
     1,
     "keel.route=/a b: invalid character in path"},
    {"bad ports in host",
     {"keel.route=x:0/", "keel.route=x:/"},
     {NULL},
     {NULL},
     0,
     NULL,
     NULL,
     0,
     T_LB_DEF,
     0,
     2,
     "keel.route=x:0/: invalid port in host"},
    {"unknown keel tag",
     {"keel.colour=blue", "keelhaul", "keel-route=/x"},
     {NULL},
     {NULL},
     0,
     NULL,
     NULL,
     0,
     T_LB_DEF,
     0,
     1,
     "keel.colour=blue: unknown tag"},
    {"tag without a value",
     {"keel.lb"},
     {NULL},
     {NULL},
     0,
     NULL,
     NULL,
     0,
     T_LB_DEF,
     0,
     1,
     "keel.lb: missing =value"},
    {"repeated tag: the first counts",
     {"keel.lb=random", "keel.lb=ip_hash", "keel.lb=random"},
     {NULL},
     {NULL},
     0,
     NULL,
     NULL,
     0,
     KEEL_LB_RANDOM,
     0,
     1,
     "keel.lb=ip_hash: given more than once, the first (random) counts"},
    {"meta wins over tags",
     {"keel", "keel.lb=random", "keel.route=/old", "keel.warning=drain"},
     {"keel-lb", "keel-route", "keel-warning", "version"},
     {"least_conn", "new.example.com/new", "serve", "3"},
     1,
     "new.example.com",
     "/new",
     0,
     KEEL_LB_LEAST_CONN,
     0,
     0,
     NULL},
    {"invalid meta keeps the tag value",
     {"keel.lb=random"},
     {"keel-lb"},
     {"nope"},
     0,
     NULL,
     NULL,
     0,
     KEEL_LB_RANDOM,
     0,
     1,
     "meta keel-lb=nope: unknown policy"},
    {"unknown meta key",
     {"keel"},
     {"keel-colour", "keel"},
     {"blue", "true"},
     1,
     NULL,
     NULL,
     0,
     T_LB_DEF,
     0,
     1,
     "meta keel-colour: unknown key"},
    {"meta only (protocol tcp, drain)",
     {NULL},
     {"keel-protocol", "keel-warning"},
     {"tcp", "drain"},
     0,
     NULL,
     NULL,
     KEEL_CONSUL_PROTO_TCP,
     T_LB_DEF,
     1,
     0,
     NULL},
    {"control characters are not copied into errors",
     {"keel.lb=a\nb\x01'"},
     {NULL},
     {NULL},
     0,
     NULL,
     NULL,
     0,
     T_LB_DEF,
     0,
     1,
     "keel.lb=a?b??: unknown policy"},
    {"too many errors are capped",
     {"keel.a", "keel.b", "keel.c", "keel.d", "keel.e", "keel.f", "keel.g",
      "keel.h", "keel.i", "keel.j", "keel.k", "keel.l", "keel.m", "keel.n",
      "keel.o", "keel.p", "keel.q", "keel.r", "keel.s", "keel.t", "keel"},
     {NULL},
     {NULL},
     1,
     NULL,
     NULL,
     0,
     T_LB_DEF,
     0,
     KEEL_CONSUL_TAG_ERRORS_MAX + 1,
     "keel.a: unknown tag"},
};

static size_t count(const char *const *v, size_t max)
{
    size_t n = 0;
    while (n < max && v[n])
        n++;
    return n;
}

static void test_tags(void)
{
    for (size_t i = 0; i < sizeof(tcases) / sizeof(tcases[0]); i++) {
        const struct tcase *c = &tcases[i];
        struct keel_consul_tagcfg tc;
        size_t nt = count(c->tags, 24), nm = count(c->mk, 4);
        int rc = keel_consul_parse_tags(c->tags, nt, c->mk, c->mv, nm, &tc);
        CHECKF(rc == 0, "%s: rc %d", c->title, rc);
        CHECKF(tc.enabled == c->enabled, "%s: enabled %d", c->title, tc.enabled);
        CHECKF((c->host == NULL) == (tc.route_host == NULL) &&
                   (!c->host || strcmp(c->host, tc.route_host) == 0),
               "%s: host %s", c->title, tc.route_host ? tc.route_host : "(null)");
        CHECKF((c->path == NULL) == (tc.route_path == NULL) &&
                   (!c->path || strcmp(c->path, tc.route_path) == 0),
               "%s: path %s", c->title, tc.route_path ? tc.route_path : "(null)");
        CHECKF(tc.protocol == c->protocol, "%s: protocol %d", c->title, tc.protocol);
        CHECKF(tc.lb == c->lb, "%s: lb %d", c->title, tc.lb);
        CHECKF(tc.warning_drain == c->warning_drain, "%s: warning_drain %d", c->title,
               tc.warning_drain);
        CHECKF(tc.n_errors == c->n_errors, "%s: %zu errors (first: %s)", c->title, tc.n_errors,
               tc.n_errors ? tc.errors[0] : "-");
        if (c->first_error && tc.n_errors)
            CHECKF(strcmp(tc.errors[0], c->first_error) == 0, "%s: error \"%s\"", c->title,
                   tc.errors[0]);
        for (size_t e = 0; e < tc.n_errors; e++)
            CHECKF(strchr(tc.errors[e], '\n') == NULL, "%s: newline in error", c->title);
        if (tc.n_errors == KEEL_CONSUL_TAG_ERRORS_MAX + 1)
            CHECKF(strcmp(tc.errors[KEEL_CONSUL_TAG_ERRORS_MAX], "(4 more errors left off)") == 0,
                   "%s: last error %s", c->title, tc.errors[KEEL_CONSUL_TAG_ERRORS_MAX]);
        keel_consul_tagcfg_free(&tc);
    }

    /* Every policy name keel.yaml knows is accepted as keel.lb. */
    for (int p = 0; p < KEEL_LB__COUNT; p++) {
        char tag[64];
        snprintf(tag, sizeof(tag), "keel.lb=%s", keel_config_lb_name((enum keel_lb_policy)p));
        const char *tags[] = {tag};
        struct keel_consul_tagcfg tc;
        CHECK(keel_consul_parse_tags(tags, 1, NULL, NULL, 0, &tc) == 0 && tc.lb == p &&
              tc.n_errors == 0);
        keel_consul_tagcfg_free(&tc);
    }
    /* NULL arrays with counts, NULL entries: ignored. */
    const char *tags[] = {NULL, "keel"};
    struct keel_consul_tagcfg tc;
    CHECK(keel_consul_parse_tags(tags, 2, NULL, NULL, 5, &tc) == 0 && tc.enabled);
    keel_consul_tagcfg_free(&tc);
    CHECK(keel_consul_parse_tags(NULL, 3, NULL, NULL, 0, &tc) == 0 && !tc.enabled);
    keel_consul_tagcfg_free(&tc);
    CHECK(strcmp(keel_consul_proto_str(KEEL_CONSUL_PROTO_GRPC), "grpc") == 0 &&
          strcmp(keel_consul_proto_str(9), "unknown") == 0);
}

int main(void)
{
    init_vec_dir();

    /* 3000 nested arrays: jansson stops at its depth limit instead of overflowing the stack. */
    deep_body = malloc(6001);
    memset(deep_body, '[', 3000);
    memset(deep_body + 3000, ']', 3000);
    deep_body[6000] = '\0';

    /* node name + "/" + 300-byte service id > 255 bytes. */
    char sid[301];
    memset(sid, 's', 300);
    sid[300] = '\0';
    snprintf(long_id_body, sizeof(long_id_body),
             "[{\"Node\":{\"Node\":\"n\",\"Address\":\"10.9.9.1\"},\"Service\":{\"ID\":\"%s\","
             "\"Port\":80}}]",
             sid);

    size_t nh = sizeof(hcases) / sizeof(hcases[0]);
    for (size_t i = 0; i < nh; i++)
        run_hcase(&hcases[i]);
    printf("health cases: %zu\n", nh);
    test_every_prefix();
    test_svcinfo();
    test_services();
    test_index();
    test_tags();
    printf("tag cases: %zu\n", sizeof(tcases) / sizeof(tcases[0]));
    free(deep_body);
    return TEST_SUMMARY("test_consul_parse");
}
