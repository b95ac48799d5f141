/* SPDX-License-Identifier: MIT */
/* keel.yaml loader: libyaml document -> struct keel_cfg, collecting every error. [control] */
#include "keel/config.h"
#include "keel/err.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

int keel_config_resolve_names = 1;

/* Bounds memory on hostile input; a real config never comes close. */
#define MAX_ERRORS 1000
#define MAX_FILE_SIZE (16u << 20)
#define MAX_NAME_LEN 128
#define PATHLEN 256
#define MAX_KEYS 32

struct errpos {
    size_t line, col, seq;
};

struct ctx {
    const char *name;
    yaml_document_t *doc;
    unsigned char *entered; /* per node: collection already walked (reached again = alias) */
    size_t n_nodes;
    struct keel_cfg_errors *errs;
    struct errpos *pos; /* parallel to errs->msgs, for sorting by position */
    size_t cap;
    int nomem;
    int truncated;
    /* discovery: consul.catalog / consul.catalog_listener nodes, resolved after listeners */
    yaml_node_t *catalog_node, *catalog_listener_node;
    int seen_http; /* an http listener was parsed already (default catalog listener) */
};

/* Quoted, escaped, truncated copy of user text for messages. */
struct qbuf {
    char s[96];
};

static const char *const lb_names[KEEL_LB__COUNT] = {
    "weighted_least_conn", "least_conn", "round_robin", "weighted_round_robin", "ip_hash", "random",
    "least_response_time", "hash",
};

const char *keel_config_lb_name(enum keel_lb_policy p)
{
    if ((int)p < 0 || p >= KEEL_LB__COUNT)
        return "unknown";
    return lb_names[p];
}

static const char *const up_protos[] = {"http1", "h2", "grpc"};

void keel_config_cluster_protocol(struct keel_cfg_cluster *cl, enum keel_upstream_proto p)
{
    cl->protocol = p;
    cl->h2_keepalive_ms = p == KEEL_UP_GRPC ? 30000 : 0;
}

const char *keel_config_upstream_proto_name(enum keel_upstream_proto p)
{
    if ((int)p < 0 || p > KEEL_UP_GRPC)
        return "unknown";
    return up_protos[p];
}

/* ---- errors ---------------------------------------------------------------------------- */

static void add_error_v(struct ctx *c, size_t line, size_t col, const char *path, const char *fmt,
                        va_list ap) __attribute__((format(printf, 5, 0)));

static void add_error_v(struct ctx *c, size_t line, size_t col, const char *path, const char *fmt,
                        va_list ap)
{
    if (c->errs->n >= MAX_ERRORS) {
        c->truncated = 1;
        return;
    }
    if (c->errs->n == c->cap) {
        size_t ncap = c->cap ? c->cap * 2 : 8;
        char **m = realloc(c->errs->msgs, ncap * sizeof(*m));
        if (!m) {
            c->nomem = 1;
            return;
        }
        c->errs->msgs = m;
        struct errpos *p = realloc(c->pos, ncap * sizeof(*p));
        if (!p) {
            c->nomem = 1;
            return;
        }
        c->pos = p;
        c->cap = ncap;
    }
    char body[768];
    vsnprintf(body, sizeof(body), fmt, ap);
    if (!path[0])
        path = "(top level)";
    int len = snprintf(NULL, 0, "%s:%zu:%zu: %s: %s", c->name, line, col, path, body);
    char *msg = len >= 0 ? malloc((size_t)len + 1) : NULL;
    if (!msg) {
        c->nomem = 1;
        return;
    }
    snprintf(msg, (size_t)len + 1, "%s:%zu:%zu: %s: %s", c->name, line, col, path, body);
    c->pos[c->errs->n] = (struct errpos){line, col, c->errs->n};
    c->errs->msgs[c->errs->n++] = msg;
}

static void err_at(struct ctx *c, size_t line, size_t col, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static void err_at(struct ctx *c, size_t line, size_t col, const char *path, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    add_error_v(c, line, col, path, fmt, ap);
    va_end(ap);
}

/* An error at a node's position (libyaml marks are 0-based, messages 1-based). */
static void err(struct ctx *c, const yaml_node_t *n, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void err(struct ctx *c, const yaml_node_t *n, const char *path, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    add_error_v(c, n->start_mark.line + 1, n->start_mark.column + 1, path, fmt, ap);
    va_end(ap);
}

static const char *quote(struct qbuf *q, const char *s, size_t len)
{
    const size_t max = sizeof(q->s) - 16; /* room for an escape, "..." and the quotes */
    size_t o = 0;
    q->s[o++] = '"';
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (o >= max) {
            /* Do not cut a UTF-8 sequence in half. */
            while (o > 1 && ((unsigned char)q->s[o - 1] & 0xC0) == 0x80)
                o--;
            if (o > 1 && ((unsigned char)q->s[o - 1] & 0xC0) == 0xC0)
                o--;
            memcpy(q->s + o, "...", 3);
            o += 3;
            break;
        }
        if (ch == '"' || ch == '\\') {
            q->s[o++] = '\\';
            q->s[o++] = (char)ch;
        } else if (ch < 0x20 || ch == 0x7f) {
            o += (size_t)snprintf(q->s + o, 5, "\\x%02x", ch);
        } else {
            q->s[o++] = (char)ch;
        }
    }
    q->s[o++] = '"';
    q->s[o] = 0;
    return q->s;
}

static const char *quotez(struct qbuf *q, const char *s)
{
    return quote(q, s, strlen(s));
}

static int is_null(const yaml_node_t *n)
{
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return 0;
    const char *s = (const char *)n->data.scalar.value;
    size_t len = n->data.scalar.length;
    return len == 0 || (len == 1 && s[0] == '~') ||
           (len == 4 && (!strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL")));
}

/* What a node is, for "found ..." in messages. */
static const char *describe(struct qbuf *q, const yaml_node_t *n)
{
    switch (n->type) {
    case YAML_MAPPING_NODE:
        return "a mapping";
    case YAML_SEQUENCE_NODE:
        return "a sequence";
    case YAML_SCALAR_NODE:
        if (is_null(n))
            return "null";
        return quote(q, (const char *)n->data.scalar.value, n->data.scalar.length);
    default:
        return "nothing";
    }
}

/* ---- paths ----------------------------------------------------------------------------- */

/* Paths are bounded by the schema depth; a truncated one is still a usable message. */
static void path_key(char *out, const char *parent, const char *key)
{
    int n = snprintf(out, PATHLEN, "%s%s%s", parent, parent[0] ? "." : "", key);
    if (n < 0)
        out[0] = 0;
}

/* For an unknown key: printable ASCII only, truncated, so the path stays one short line. */
static void path_key_raw(char *out, const char *parent, const char *key, size_t len)
{
    char clean[41];
    size_t n = len < sizeof(clean) - 1 ? len : sizeof(clean) - 1;
    for (size_t i = 0; i < n; i++)
        clean[i] = key[i] > 0x20 && key[i] < 0x7f ? key[i] : '?';
    clean[n] = 0;
    path_key(out, parent, clean);
}

static void path_idx(char *out, const char *parent, size_t i)
{
    int n = snprintf(out, PATHLEN, "%s[%zu]", parent, i);
    if (n < 0)
        out[0] = 0;
}

/* ---- node access ----------------------------------------------------------------------- */

static yaml_node_t *node_at(struct ctx *c, int idx)
{
    return yaml_document_get_node(c->doc, idx);
}

static int check_tag(struct ctx *c, const yaml_node_t *n, const char *path)
{
    const char *def = n->type == YAML_SCALAR_NODE     ? YAML_DEFAULT_SCALAR_TAG
                      : n->type == YAML_SEQUENCE_NODE ? YAML_DEFAULT_SEQUENCE_TAG
                                                      : YAML_DEFAULT_MAPPING_TAG;
    if (n->tag && strcmp((const char *)n->tag, def) != 0) {
        struct qbuf q;
        err(c, n, path, "YAML tags are not supported (found tag %s)",
            quotez(&q, (const char *)n->tag));
        return -1;
    }
    return 0;
}

/* Checks that n is a collection of the wanted type and walks it at most once: a mapping or
 * sequence reached twice came through an alias, and refusing it also stops alias cycles
 * (&a [*a]) and exponential "billion laughs" expansion. */
static int enter(struct ctx *c, yaml_node_t *n, const char *path, yaml_node_type_t want,
                 const char *what)
{
    struct qbuf q;
    if (n->type != want) {
        err(c, n, path, "expected %s, found %s", what, describe(&q, n));
        return -1;
    }
    if (check_tag(c, n, path))
        return -1;
    size_t i = (size_t)(n - c->doc->nodes.start);
    if (i >= c->n_nodes)
        return -1;
    if (c->entered[i]) {
        err(c, n, path,
            "%s used again through a YAML alias (aliases may only refer to scalars; "
            "write the %s out)",
            what, want == YAML_MAPPING_NODE ? "mapping" : "sequence");
        return -1;
    }
    c->entered[i] = 1;
    return 0;
}

/* A scalar's text, or NULL after reporting "expected <what>". */
static const char *scalar(struct ctx *c, yaml_node_t *n, const char *path, const char *what,
                          size_t *len)
{
    struct qbuf q;
    if (n->type != YAML_SCALAR_NODE) {
        err(c, n, path, "expected %s, found %s", what, describe(&q, n));
        return NULL;
    }
    if (check_tag(c, n, path))
        return NULL;
    const char *s = (const char *)n->data.scalar.value;
    *len = n->data.scalar.length;
    if (memchr(s, 0, *len)) {
        err(c, n, path, "expected %s, found a string containing a NUL byte", what);
        return NULL;
    }
    return s;
}

/* Reads the keys listed in keys[] of mapping n into vals[] (NULL when absent); reports
 * unknown and duplicate keys. Returns -1 if n is not a usable mapping. */
static int fields(struct ctx *c, yaml_node_t *n, const char *path, const char *const *keys,
                  size_t nkeys, yaml_node_t **vals)
{
    yaml_node_t *keynodes[MAX_KEYS] = {0};
    for (size_t i = 0; i < nkeys; i++)
        vals[i] = NULL;
    if (enter(c, n, path, YAML_MAPPING_NODE, "a mapping"))
        return -1;
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *k = node_at(c, p->key), *v = node_at(c, p->value);
        struct qbuf q;
        if (!k || !v)
            continue;
        size_t klen;
        const char *ks = scalar(c, k, path, "a key (a string)", &klen);
        if (!ks)
            continue;
        size_t i;
        for (i = 0; i < nkeys; i++)
            if (strlen(keys[i]) == klen && !memcmp(keys[i], ks, klen))
                break;
        if (i == nkeys) {
            char expected[512] = "";
            size_t o = 0;
            for (size_t j = 0; j < nkeys && o < sizeof(expected); j++)
                o += (size_t)snprintf(expected + o, sizeof(expected) - o, "%s%s", j ? ", " : "",
                                      keys[j]);
            char upath[PATHLEN];
            path_key_raw(upath, path, ks, klen);
            err(c, k, upath, "unknown key %s (expected one of %s)", quote(&q, ks, klen), expected);
            continue;
        }
        char kpath[PATHLEN];
        path_key(kpath, path, keys[i]);
        if (vals[i]) {
            err(c, k, kpath, "duplicate key \"%s\" (first defined at line %zu, column %zu)",
                keys[i], keynodes[i]->start_mark.line + 1, keynodes[i]->start_mark.column + 1);
            continue;
        }
        vals[i] = v;
        keynodes[i] = k;
    }
    return 0;
}

/* Reports a missing required key at the position of the mapping that should hold it. */
static void missing(struct ctx *c, yaml_node_t *parent, const char *path, const char *key,
                    const char *hint)
{
    char kpath[PATHLEN];
    path_key(kpath, path, key);
    err(c, parent, kpath, "missing required key \"%s\"%s", key, hint ? hint : "");
}

/* ---- scalar values --------------------------------------------------------------------- */

/* Parses decimal digits only. 0 ok, -1 not a number, -2 overflow. */
static int parse_u64(const char *s, size_t len, uint64_t *out)
{
    uint64_t v = 0;
    if (len == 0)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -2;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

/* Splits "<digits><unit>": returns the digit count. */
static size_t digit_prefix(const char *s, size_t len)
{
    size_t i = 0;
    while (i < len && s[i] >= '0' && s[i] <= '9')
        i++;
    return i;
}

static int get_uint(struct ctx *c, yaml_node_t *n, const char *path, uint64_t min, uint64_t max,
                    uint64_t *out)
{
    struct qbuf q;
    size_t len;
    const char *s = scalar(c, n, path, "an integer", &len);
    if (!s)
        return -1;
    uint64_t v = 0;
    int rc = parse_u64(s, len, &v);
    if (n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE && rc == 0) {
        err(c, n, path, "expected an integer, found a quoted string %s (remove the quotes)",
            quote(&q, s, len));
        return -1;
    }
    if (rc == -1) {
        err(c, n, path, "expected an integer %" PRIu64 "..%" PRIu64 ", found %s", min, max,
            describe(&q, n));
        return -1;
    }
    if (rc == -2 || v < min || v > max) {
        err(c, n, path, "%s is out of range (expected %" PRIu64 "..%" PRIu64 ")", quote(&q, s, len),
            min, max);
        return -1;
    }
    *out = v;
    return 0;
}

static void get_u32(struct ctx *c, yaml_node_t *n, const char *path, uint32_t min, uint32_t max,
                    uint32_t *out)
{
    uint64_t v;
    if (get_uint(c, n, path, min, max, &v) == 0)
        *out = (uint32_t)v;
}

static void get_bool(struct ctx *c, yaml_node_t *n, const char *path, int *out)
{
    static const char *const yes[] = {"true", "yes", "on"};
    static const char *const no[] = {"false", "no", "off"};
    struct qbuf q;
    size_t len;
    const char *s = scalar(c, n, path, "a boolean", &len);
    if (!s)
        return;
    if (n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE) {
        for (size_t i = 0; i < 3; i++) {
            if (!strcasecmp(s, yes[i])) {
                *out = 1;
                return;
            }
            if (!strcasecmp(s, no[i])) {
                *out = 0;
                return;
            }
        }
    }
    err(c, n, path, "expected a boolean (true/false, yes/no, on/off, unquoted), found %s",
        describe(&q, n));
}

static void get_choice(struct ctx *c, yaml_node_t *n, const char *path, const char *what,
                       const char *const *names, size_t count, int *out)
{
    struct qbuf q;
    size_t len;
    char expected[256] = "";
    size_t o = 0;
    for (size_t j = 0; j < count && o < sizeof(expected); j++)
        o += (size_t)snprintf(expected + o, sizeof(expected) - o, "%s%s", j ? ", " : "", names[j]);
    if (n->type != YAML_SCALAR_NODE || is_null(n)) {
        err(c, n, path, "expected a %s (one of %s), found %s", what, expected, describe(&q, n));
        return;
    }
    const char *s = scalar(c, n, path, what, &len);
    if (!s)
        return;
    for (size_t j = 0; j < count; j++) {
        if (strlen(names[j]) == len && !memcmp(names[j], s, len)) {
            *out = (int)j;
            return;
        }
    }
    err(c, n, path, "unknown %s %s (expected one of %s)", what, quote(&q, s, len), expected);
}

/* Durations: "<digits><unit>" with unit ms, s, m or h, or bare digits meaning seconds.
 * 0 ok, -1 syntax, -2 does not fit in uint32 milliseconds. */
static int parse_duration(const char *s, size_t len, uint32_t *out)
{
    size_t nd = digit_prefix(s, len);
    uint64_t v, mult;
    int rc = parse_u64(s, nd, &v);
    if (rc == -1)
        return -1;
    const char *u = s + nd;
    size_t ul = len - nd;
    if (ul == 0 || (ul == 1 && u[0] == 's'))
        mult = 1000;
    else if (ul == 2 && u[0] == 'm' && u[1] == 's')
        mult = 1;
    else if (ul == 1 && u[0] == 'm')
        mult = 60000;
    else if (ul == 1 && u[0] == 'h')
        mult = 3600000;
    else
        return -1;
    if (rc == -2 || v > UINT32_MAX / mult)
        return -2;
    *out = (uint32_t)(v * mult);
    return 0;
}

static int get_duration(struct ctx *c, yaml_node_t *n, const char *path, uint32_t min_ms,
                        uint32_t *out)
{
    struct qbuf q;
    size_t len;
    if (n->type != YAML_SCALAR_NODE || is_null(n)) {
        err(c, n, path, "expected a duration (e.g. 250ms, 5s, 2m, 1h), found %s", describe(&q, n));
        return -1;
    }
    const char *s = scalar(c, n, path, "a duration", &len);
    if (!s)
        return -1;
    uint32_t v;
    int rc = parse_duration(s, len, &v);
    if (rc == -1) {
        err(c, n, path,
            "invalid duration %s (expected a non-negative integer with unit ms, s, m or h, "
            "e.g. 250ms, 5s, 2m, 1h, or a bare integer of seconds)",
            quote(&q, s, len));
        return -1;
    }
    if (rc == -2) {
        err(c, n, path, "duration %s is too large (maximum 4294967295ms, about 49 days)",
            quote(&q, s, len));
        return -1;
    }
    if (v < min_ms) {
        err(c, n, path, "duration %s is too short (minimum %" PRIu32 "ms)", quote(&q, s, len),
            min_ms);
        return -1;
    }
    *out = v;
    return 0;
}

/* A duration in the largest unit that shows it exactly, for range messages. */
static const char *fmt_ms(char buf[16], uint32_t ms)
{
    if (ms == 0)
        snprintf(buf, 16, "0");
    else if (ms % 3600000 == 0)
        snprintf(buf, 16, "%" PRIu32 "h", ms / 3600000);
    else if (ms % 60000 == 0)
        snprintf(buf, 16, "%" PRIu32 "m", ms / 60000);
    else if (ms % 1000 == 0)
        snprintf(buf, 16, "%" PRIu32 "s", ms / 1000);
    else
        snprintf(buf, 16, "%" PRIu32 "ms", ms);
    return buf;
}

/* A duration within min_ms..max_ms; *out is left alone on error. */
static int get_duration_in(struct ctx *c, yaml_node_t *n, const char *path, uint32_t min_ms,
                           uint32_t max_ms, uint32_t *out)
{
    struct qbuf q;
    char lo[16], hi[16];
    uint32_t v;
    if (get_duration(c, n, path, 0, &v))
        return -1;
    if (v < min_ms || v > max_ms) {
        err(c, n, path, "duration %s is out of range (expected %s..%s)",
            quote(&q, (const char *)n->data.scalar.value, n->data.scalar.length),
            fmt_ms(lo, min_ms), fmt_ms(hi, max_ms));
        return -1;
    }
    *out = v;
    return 0;
}

/* Sizes: bytes, or "<digits><suffix>" with k K KB KiB m M MB MiB g G GB GiB, all 1024-based.
 * 0 ok, -1 syntax, -2 overflow. */
static int parse_size(const char *s, size_t len, uint64_t *out)
{
    static const struct {
        const char *sfx;
        unsigned shift;
    } units[] = {
        {"", 0},    {"k", 10},   {"K", 10}, {"KB", 10}, {"KiB", 10}, {"m", 20},   {"M", 20},
        {"MB", 20}, {"MiB", 20}, {"g", 30}, {"G", 30},  {"GB", 30},  {"GiB", 30},
    };
    size_t nd = digit_prefix(s, len);
    uint64_t v;
    int rc = parse_u64(s, nd, &v);
    if (rc == -1)
        return -1;
    const char *u = s + nd;
    size_t ul = len - nd;
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strlen(units[i].sfx) == ul && !memcmp(units[i].sfx, u, ul)) {
            if (rc == -2 || v > (UINT64_MAX >> units[i].shift))
                return -2;
            *out = v << units[i].shift;
            return 0;
        }
    }
    return -1;
}

static int get_size(struct ctx *c, yaml_node_t *n, const char *path, uint64_t min, uint64_t max,
                    uint64_t *out)
{
    struct qbuf q;
    size_t len;
    if (n->type != YAML_SCALAR_NODE || is_null(n)) {
        err(c, n, path, "expected a size (e.g. 8192, 64KiB, 1GiB), found %s", describe(&q, n));
        return -1;
    }
    const char *s = scalar(c, n, path, "a size", &len);
    if (!s)
        return -1;
    uint64_t v = 0;
    int rc = parse_size(s, len, &v);
    if (rc == -1) {
        err(c, n, path,
            "invalid size %s (expected a non-negative integer of bytes, optionally with suffix "
            "k, K, KB, KiB, m, M, MB, MiB, g, G, GB or GiB, all 1024-based)",
            quote(&q, s, len));
        return -1;
    }
    if (rc == -2 || v < min || v > max) {
        err(c, n, path, "size %s is out of range (expected %" PRIu64 "..%" PRIu64 " bytes)",
            quote(&q, s, len), min, max);
        return -1;
    }
    *out = v;
    return 0;
}

static void get_size32(struct ctx *c, yaml_node_t *n, const char *path, uint32_t min, uint32_t max,
                       uint32_t *out)
{
    uint64_t v;
    if (get_size(c, n, path, min, max, &v) == 0)
        *out = (uint32_t)v;
}

/* A string scalar, copied. Null and (unless allow_empty) "" are errors. */
static int get_str(struct ctx *c, yaml_node_t *n, const char *path, const char *what,
                   int allow_empty, char **out)
{
    struct qbuf q;
    size_t len;
    if (is_null(n) || n->type != YAML_SCALAR_NODE) {
        err(c, n, path, "expected %s, found %s", what, describe(&q, n));
        return -1;
    }
    const char *s = scalar(c, n, path, what, &len);
    if (!s)
        return -1;
    if (len == 0 && !allow_empty) {
        err(c, n, path, "expected %s, found an empty string", what);
        return -1;
    }
    char *d = malloc(len + 1);
    if (!d) {
        c->nomem = 1;
        return -1;
    }
    memcpy(d, s, len + 1);
    free(*out);
    *out = d;
    return 0;
}

/* Listener and cluster names: they show up in logs, metrics and the admin API. */
static int get_name(struct ctx *c, yaml_node_t *n, const char *path, char **out)
{
    struct qbuf q;
    char *s = NULL;
    if (get_str(c, n, path, "a name", 0, &s))
        return -1;
    size_t len = strlen(s);
    int ok = len <= MAX_NAME_LEN;
    for (size_t i = 0; ok && i < len; i++)
        ok = isalnum((unsigned char)s[i]) || s[i] == '.' || s[i] == '_' || s[i] == '-';
    if (!ok) {
        err(c, n, path,
            "invalid name %s (expected 1..%d characters of letters, digits, '.', '_', '-')",
            quotez(&q, s), MAX_NAME_LEN);
        free(s);
        return -1;
    }
    *out = s;
    return 0;
}

static int valid_hostname(const char *h)
{
    size_t len = strlen(h), label = 0;
    if (len == 0 || len > 253)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char ch = h[i];
        if (ch == '.') {
            if (label == 0)
                return 0;
            label = 0;
        } else if (isalnum((unsigned char)ch) || ch == '-' || ch == '_') {
            if (++label > 63)
                return 0;
        } else {
            return 0;
        }
    }
    return 1;
}

/* "host:port", "[v6]:port"; with defport != 0 also "host" and "[v6]". Fills text (as
 * written), sa and salen. */
static int get_addr_port(struct ctx *c, yaml_node_t *n, const char *path, struct keel_cfg_addr *a,
                         const char *defport)
{
    const char *forms = defport ? "expected host[:port] or [ipv6][:port] with port 1..65535"
                                : "expected host:port or [ipv6]:port with port 1..65535";
    struct qbuf q, q2;
    char *text = NULL;
    if (get_str(c, n, path, "an address (host:port)", 0, &text))
        return -1;
    size_t len = strlen(text);
    const char *qa = quotez(&q, text);
    if (len > 300) {
        err(c, n, path, "invalid address %s: too long (%s)", qa, forms);
        goto fail;
    }
    char buf[304];
    memcpy(buf, text, len + 1);
    char *host;
    const char *port;
    int bracket = 0;
    if (buf[0] == '[') {
        char *close = strchr(buf, ']');
        if (close && !close[1] && defport) {
            *close = 0;
            host = buf + 1;
            port = defport;
            bracket = 1;
        } else if (!close || close[1] != ':') {
            err(c, n, path, "invalid address %s: missing \"]:port\" after an IPv6 address (%s)", qa,
                forms);
            goto fail;
        } else {
            *close = 0;
            host = buf + 1;
            port = close + 2;
            bracket = 1;
        }
    } else {
        char *colon = strrchr(buf, ':');
        if (!colon && !defport) {
            err(c, n, path, "invalid address %s: missing port (%s)", qa, forms);
            goto fail;
        }
        if (colon && memchr(buf, ':', (size_t)(colon - buf))) {
            err(c, n, path, "invalid address %s: an IPv6 address needs brackets, e.g. [::1]:8080",
                qa);
            goto fail;
        }
        host = buf;
        if (colon) {
            *colon = 0;
            port = colon + 1;
        } else {
            port = defport;
        }
    }
    uint64_t pv = 0;
    if (parse_u64(port, strlen(port), &pv) != 0 || pv < 1 || pv > 65535) {
        err(c, n, path, "invalid address %s: bad port %s (%s)", qa, quotez(&q2, port), forms);
        goto fail;
    }
    if (!host[0]) {
        err(c, n, path, "invalid address %s: missing host (use 0.0.0.0:%s for all addresses)", qa,
            port);
        goto fail;
    }
    memset(&a->sa, 0, sizeof(a->sa));
    struct sockaddr_in *sin = (struct sockaddr_in *)&a->sa;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&a->sa;
    if (bracket) {
        if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1) {
            err(c, n, path, "invalid address %s: %s is not a numeric IPv6 address", qa,
                quotez(&q2, host));
            goto fail;
        }
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)pv);
        a->salen = sizeof(*sin6);
    } else if (inet_pton(AF_INET, host, &sin->sin_addr) == 1 || !strcasecmp(host, "localhost")) {
        if (!strcasecmp(host, "localhost"))
            sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)pv);
        a->salen = sizeof(*sin);
    } else if (strspn(host, "0123456789.") == strlen(host)) {
        /* Else getaddrinfo() would take inet_aton() forms such as "127.1" or "2130706433". */
        err(c, n, path, "invalid address %s: %s is not a valid IPv4 address (%s)", qa,
            quotez(&q2, host), forms);
        goto fail;
    } else if (!valid_hostname(host)) {
        err(c, n, path, "invalid address %s: %s is neither an IPv4 address nor a host name (%s)",
            qa, quotez(&q2, host), forms);
        goto fail;
    } else if (!keel_config_resolve_names) {
        err(c, n, path, "cannot resolve %s (name resolution disabled)", quotez(&q2, host));
        goto fail;
    } else {
        struct addrinfo hints, *res = NULL;
        memset(&hints, 0, sizeof(hints));
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        int rc = getaddrinfo(host, NULL, &hints, &res);
        if (rc != 0 || !res || res->ai_addrlen > sizeof(a->sa)) {
            err(c, n, path, "cannot resolve %s: %s", quotez(&q2, host),
                rc ? gai_strerror(rc) : "no address");
            if (res)
                freeaddrinfo(res);
            goto fail;
        }
        memcpy(&a->sa, res->ai_addr, res->ai_addrlen);
        a->salen = (socklen_t)res->ai_addrlen;
        freeaddrinfo(res);
        if (a->sa.ss_family == AF_INET)
            sin->sin_port = htons((uint16_t)pv);
        else
            sin6->sin6_port = htons((uint16_t)pv);
    }
    free(a->text);
    a->text = text;
    return 0;
fail:
    free(text);
    return -1;
}

static int get_addr(struct ctx *c, yaml_node_t *n, const char *path, struct keel_cfg_addr *a)
{
    return get_addr_port(c, n, path, a, NULL);
}

/* Consul identifiers (service, datacenter, namespace, partition) go into URL paths and query
 * strings unescaped, so only the characters Consul itself recommends are accepted. */
static int get_ident(struct ctx *c, yaml_node_t *n, const char *path, const char *what, char **out)
{
    struct qbuf q;
    char *s = NULL;
    if (get_str(c, n, path, what, 0, &s))
        return -1;
    size_t len = strlen(s);
    int ok = len <= 255;
    for (size_t i = 0; ok && i < len; i++)
        ok = isalnum((unsigned char)s[i]) || s[i] == '.' || s[i] == '_' || s[i] == '-';
    if (!ok) {
        err(c, n, path, "invalid %s %s (expected 1..255 letters, digits, '.', '_', '-')", what,
            quotez(&q, s));
        free(s);
        return -1;
    }
    free(*out);
    *out = s;
    return 0;
}

/* Consul tags are free text (the discovery code URL-escapes them); only control characters,
 * which cannot be sent, are refused. */
static int get_tag(struct ctx *c, yaml_node_t *n, const char *path, char **out)
{
    struct qbuf q;
    char *s = NULL;
    if (get_str(c, n, path, "a Consul tag", 0, &s))
        return -1;
    size_t len = strlen(s);
    int ok = len <= 255;
    for (size_t i = 0; ok && i < len; i++)
        ok = (unsigned char)s[i] >= 0x20 && s[i] != 0x7f;
    if (!ok) {
        err(c, n, path, "invalid Consul tag %s (expected 1..255 characters, no control characters)",
            quotez(&q, s));
        free(s);
        return -1;
    }
    free(*out);
    *out = s;
    return 0;
}

/* A token is a header value: visible ASCII only. Its text never appears in messages. */
static int valid_token_text(const char *s)
{
    size_t len = strlen(s);
    if (len > 1024)
        return 0;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
            return 0;
    return 1;
}

/* "http[s]://host[:port]" with an optional trailing '/'. Stored with the scheme lower-cased and
 * without the slash, so the discovery code can append "/v1/...". The host is not resolved here:
 * libcurl resolves it on every connection, so a Consul behind a DNS name that moves still works.
 * Returns 1 for https, 0 for http, -1 after reporting an error. */
static int get_http_url(struct ctx *c, yaml_node_t *n, const char *path, char **out)
{
    static const char *const forms = "expected http://host[:port] or https://host[:port]";
    struct qbuf q, q2;
    char *text = NULL;
    if (get_str(c, n, path, "a URL", 0, &text))
        return -1;
    const char *qa = quotez(&q, text);
    size_t len = strlen(text), slen;
    int https;
    if (!strncasecmp(text, "http://", 7)) {
        https = 0;
        slen = 7;
    } else if (!strncasecmp(text, "https://", 8)) {
        https = 1;
        slen = 8;
    } else {
        const char *sep = strstr(text, "://");
        if (sep)
            err(c, n, path, "invalid URL %s: unsupported scheme %s (%s)", qa,
                quote(&q2, text, (size_t)(sep - text)), forms);
        else
            err(c, n, path, "invalid URL %s: missing http:// or https:// (%s)", qa, forms);
        goto fail;
    }
    if (len > 300) {
        err(c, n, path, "invalid URL %s: too long (%s)", qa, forms);
        goto fail;
    }
    char buf[304];
    memcpy(buf, text + slen, len - slen + 1);
    size_t alen = strcspn(buf, "/?#");
    if (buf[alen] && !(buf[alen] == '/' && !buf[alen + 1])) {
        err(c, n, path, "invalid URL %s: a path, query or fragment (%s) is not allowed (%s)", qa,
            quotez(&q2, buf + alen), forms);
        goto fail;
    }
    buf[alen] = 0;
    if (strchr(buf, '@')) {
        err(c, n, path, "invalid URL %s: user information is not allowed (use \"token\")", qa);
        goto fail;
    }
    char *host = buf, *port = NULL;
    if (buf[0] == '[') {
        char *close = strchr(buf, ']');
        if (!close || (close[1] && close[1] != ':')) {
            err(c, n, path, "invalid URL %s: bad IPv6 address (%s)", qa, forms);
            goto fail;
        }
        *close = 0;
        host = buf + 1;
        port = close[1] ? close + 2 : NULL;
        struct in6_addr a6;
        if (inet_pton(AF_INET6, host, &a6) != 1) {
            err(c, n, path, "invalid URL %s: %s is not a numeric IPv6 address", qa,
                quotez(&q2, host));
            goto fail;
        }
    } else {
        char *colon = strchr(buf, ':');
        if (colon) {
            *colon = 0;
            port = colon + 1;
        }
        struct in_addr a4;
        if (!host[0]) {
            err(c, n, path, "invalid URL %s: missing host (%s)", qa, forms);
            goto fail;
        }
        if (inet_pton(AF_INET, host, &a4) != 1) {
            if (strspn(host, "0123456789.") == strlen(host)) {
                err(c, n, path, "invalid URL %s: %s is not a valid IPv4 address", qa,
                    quotez(&q2, host));
                goto fail;
            }
            if (!valid_hostname(host)) {
                err(c, n, path,
                    "invalid URL %s: %s is neither an IPv4 address nor a host name (%s)", qa,
                    quotez(&q2, host), forms);
                goto fail;
            }
        }
    }
    uint64_t pv;
    if (port && (parse_u64(port, strlen(port), &pv) != 0 || pv < 1 || pv > 65535)) {
        err(c, n, path, "invalid URL %s: bad port %s (expected 1..65535)", qa, quotez(&q2, port));
        goto fail;
    }
    /* Normalise: lower-case scheme, no trailing slash. */
    for (size_t i = 0; i < slen; i++)
        text[i] = (char)tolower((unsigned char)text[i]);
    text[slen + alen] = 0;
    free(*out);
    *out = text;
    return https;
fail:
    free(text);
    return -1;
}

/* A file keel must read later: it has to exist, be a regular file and be readable now, so a
 * typo fails at load rather than at the first TLS handshake. stat() comes first so that no
 * device or FIFO is ever opened (opening some devices has side effects). */
static void check_readable_file(struct ctx *c, yaml_node_t *n, const char *path, const char *what,
                                const char *file)
{
    struct qbuf q;
    struct stat st;
    if (stat(file, &st) != 0) {
        err(c, n, path, "cannot read %s %s: %s", what, quotez(&q, file), strerror(errno));
        return;
    }
    if (!S_ISREG(st.st_mode)) {
        err(c, n, path, "cannot read %s %s: not a regular file", what, quotez(&q, file));
        return;
    }
    int fd = open(file, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) {
        err(c, n, path, "cannot read %s %s: %s", what, quotez(&q, file), strerror(errno));
        return;
    }
    close(fd);
}

/* The state file is written later; its directory has to exist now. */
static void check_state_path(struct ctx *c, yaml_node_t *n, const char *path, const char *file)
{
    struct qbuf q, q2;
    struct stat st;
    size_t len = strlen(file);
    if (file[len - 1] == '/') {
        err(c, n, path, "expected a file path, found a directory %s", quotez(&q, file));
        return;
    }
    if (stat(file, &st) == 0 && S_ISDIR(st.st_mode)) {
        err(c, n, path, "%s is a directory (expected a file path inside it)", quotez(&q, file));
        return;
    }
    const char *slash = strrchr(file, '/');
    char dir[PATH_MAX];
    if (!slash) {
        strcpy(dir, ".");
    } else if (slash == file) {
        strcpy(dir, "/");
    } else {
        size_t dlen = (size_t)(slash - file);
        if (dlen >= sizeof(dir)) {
            err(c, n, path, "path %s is too long", quotez(&q, file));
            return;
        }
        memcpy(dir, file, dlen);
        dir[dlen] = 0;
    }
    if (stat(dir, &st) != 0) {
        int e = errno;
        if (e == ENOENT)
            err(c, n, path, "directory %s of %s does not exist (create it first)", quotez(&q, dir),
                quotez(&q2, file));
        else
            err(c, n, path, "directory %s of %s: %s", quotez(&q, dir), quotez(&q2, file),
                strerror(e));
        return;
    }
    if (!S_ISDIR(st.st_mode))
        err(c, n, path, "%s (the directory of %s) is not a directory", quotez(&q, dir),
            quotez(&q2, file));
}

static int addr_equal(const struct keel_cfg_addr *x, const struct keel_cfg_addr *y)
{
    if (!x->text || !y->text || x->sa.ss_family != y->sa.ss_family)
        return 0;
    if (x->sa.ss_family == AF_INET) {
        const struct sockaddr_in *a = (const void *)&x->sa, *b = (const void *)&y->sa;
        return a->sin_port == b->sin_port && a->sin_addr.s_addr == b->sin_addr.s_addr;
    }
    const struct sockaddr_in6 *a = (const void *)&x->sa, *b = (const void *)&y->sa;
    return a->sin6_port == b->sin6_port &&
           !memcmp(&a->sin6_addr, &b->sin6_addr, sizeof(a->sin6_addr));
}

static void set_ipv4(struct keel_cfg_addr *a, uint32_t ip, uint16_t port)
{
    struct sockaddr_in *sin = (struct sockaddr_in *)&a->sa;
    memset(&a->sa, 0, sizeof(a->sa));
    sin->sin_family = AF_INET;
    sin->sin_addr.s_addr = htonl(ip);
    sin->sin_port = htons(port);
    a->salen = sizeof(*sin);
}

/* ---- sections -------------------------------------------------------------------------- */

static void parse_admin(struct ctx *c, struct keel_cfg *cfg, yaml_node_t *n)
{
    static const char *const keys[] = {"address", "enabled"};
    yaml_node_t *v[2];
    if (fields(c, n, "admin", keys, 2, v))
        return;
    if (v[0]) {
        struct keel_cfg_addr a = {0};
        if (get_addr(c, v[0], "admin.address", &a) == 0) {
            free(cfg->admin.text);
            cfg->admin = a;
        }
    }
    if (v[1])
        get_bool(c, v[1], "admin.enabled", &cfg->admin_enabled);
    if (!cfg->admin_enabled) {
        free(cfg->admin.text);
        memset(&cfg->admin, 0, sizeof(cfg->admin));
    }
}

enum {
    CO_ADDRESS,
    CO_TOKEN,
    CO_CA_FILE,
    CO_DATACENTER,
    CO_WAIT,
    CO_MIN_INTERVAL,
    CO_CATALOG,
    CO_CATALOG_LISTENER,
    CO__N
};

static void parse_consul(struct ctx *c, struct keel_cfg *cfg, yaml_node_t *n, int *token_set)
{
    static const char *const keys[CO__N] = {
        "address", "token",        "ca_file", "datacenter",
        "wait",    "min_interval", "catalog", "catalog_listener"};
    struct keel_cfg_consul *co = &cfg->consul;
    yaml_node_t *v[CO__N];
    struct qbuf q;
    if (fields(c, n, "consul", keys, CO__N, v))
        return;
    int https = 0;
    if (v[CO_ADDRESS])
        https = get_http_url(c, v[CO_ADDRESS], "consul.address", &co->address);
    if (v[CO_TOKEN]) {
        char *t = NULL;
        *token_set = 1;
        if (get_str(c, v[CO_TOKEN], "consul.token", "a token", 1, &t) == 0) {
            if (!valid_token_text(t))
                err(c, v[CO_TOKEN], "consul.token",
                    "invalid token (expected at most 1024 visible ASCII characters; the value is "
                    "not shown)");
            else if (t[0])
                co->token = t, t = NULL;
        }
        free(t); /* "" means: no token, and do not take $CONSUL_HTTP_TOKEN either */
    }
    if (v[CO_CA_FILE] &&
        get_str(c, v[CO_CA_FILE], "consul.ca_file", "a file path", 0, &co->ca_file) == 0) {
        if (https == 0)
            err(c, v[CO_CA_FILE], "consul.ca_file",
                "\"ca_file\" is only used with an https:// address (consul.address is %s)",
                quotez(&q, co->address));
        else
            check_readable_file(c, v[CO_CA_FILE], "consul.ca_file", "CA file", co->ca_file);
    }
    if (v[CO_DATACENTER])
        get_ident(c, v[CO_DATACENTER], "consul.datacenter", "Consul datacenter name",
                  &co->datacenter);
    if (v[CO_WAIT])
        get_duration_in(c, v[CO_WAIT], "consul.wait", 1000, 600000, &co->wait_ms);
    if (v[CO_MIN_INTERVAL])
        get_duration_in(c, v[CO_MIN_INTERVAL], "consul.min_interval", 0, 60000,
                        &co->min_interval_ms);
    int catalog = -1;
    if (v[CO_CATALOG]) {
        get_bool(c, v[CO_CATALOG], "consul.catalog", &catalog);
        if (catalog >= 0)
            co->catalog = catalog;
        c->catalog_node = v[CO_CATALOG];
    }
    if (v[CO_CATALOG_LISTENER]) {
        if (catalog == 0 || !v[CO_CATALOG])
            err(c, v[CO_CATALOG_LISTENER], "consul.catalog_listener",
                "\"catalog_listener\" is only used with \"catalog: true\"");
        else if (get_name(c, v[CO_CATALOG_LISTENER], "consul.catalog_listener",
                          &co->catalog_listener) == 0)
            c->catalog_listener_node = v[CO_CATALOG_LISTENER];
    }
}

enum { D_SERVERS, D_MIN_TTL, D_MAX_TTL, D_EMPTY_HOLD, D_TIMEOUT, D__N };

static void parse_dns_servers(struct ctx *c, struct keel_cfg_dns *d, yaml_node_t *n)
{
    struct qbuf q;
    if (enter(c, n, "dns.servers", YAML_SEQUENCE_NODE, "a sequence of addresses"))
        return;
    size_t count = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    if (count == 0) {
        err(c, n, "dns.servers",
            "at least one server is required (omit \"servers\" to use /etc/resolv.conf)");
        return;
    }
    d->servers = calloc(count, sizeof(*d->servers));
    if (!d->servers) {
        c->nomem = 1;
        return;
    }
    d->n_servers = count;
    for (size_t i = 0; i < count; i++) {
        yaml_node_t *item = node_at(c, n->data.sequence.items.start[i]);
        char ipath[PATHLEN];
        if (!item)
            continue;
        path_idx(ipath, "dns.servers", i);
        if (get_addr_port(c, item, ipath, &d->servers[i], "53"))
            continue;
        for (size_t j = 0; j < i; j++) {
            if (addr_equal(&d->servers[j], &d->servers[i])) {
                err(c, item, ipath, "duplicate server %s (same address as dns.servers[%zu])",
                    quotez(&q, d->servers[i].text), j);
                break;
            }
        }
    }
}

static void parse_dns(struct ctx *c, struct keel_cfg *cfg, yaml_node_t *n)
{
    static const char *const keys[D__N] = {"servers", "min_ttl", "max_ttl", "empty_hold",
                                           "timeout"};
    struct keel_cfg_dns *d = &cfg->dns;
    yaml_node_t *v[D__N];
    char a[16], b[16];
    if (fields(c, n, "dns", keys, D__N, v))
        return;
    if (v[D_SERVERS])
        parse_dns_servers(c, d, v[D_SERVERS]);
    int min_ok = 1, max_ok = 1;
    if (v[D_MIN_TTL])
        min_ok = get_duration_in(c, v[D_MIN_TTL], "dns.min_ttl", 100, 3600000, &d->min_ttl_ms) == 0;
    if (v[D_MAX_TTL])
        max_ok =
            get_duration_in(c, v[D_MAX_TTL], "dns.max_ttl", 1000, 86400000, &d->max_ttl_ms) == 0;
    if (min_ok && max_ok && d->max_ttl_ms < d->min_ttl_ms) {
        if (v[D_MAX_TTL])
            err(c, v[D_MAX_TTL], "dns.max_ttl",
                "max_ttl %s is below min_ttl %s (it must be at least min_ttl)",
                fmt_ms(a, d->max_ttl_ms), fmt_ms(b, d->min_ttl_ms));
        else
            err(c, v[D_MIN_TTL], "dns.min_ttl",
                "min_ttl %s is above max_ttl %s (the default; raise max_ttl too)",
                fmt_ms(a, d->min_ttl_ms), fmt_ms(b, d->max_ttl_ms));
    }
    if (v[D_EMPTY_HOLD])
        get_duration_in(c, v[D_EMPTY_HOLD], "dns.empty_hold", 0, 86400000, &d->empty_hold_ms);
    if (v[D_TIMEOUT])
        get_duration_in(c, v[D_TIMEOUT], "dns.timeout", 100, 60000, &d->timeout_ms);
}

static void parse_endpoints(struct ctx *c, struct keel_cfg_cluster *cl, yaml_node_t *n,
                            const char *path)
{
    static const char *const keys[] = {"address", "weight"};
    if (enter(c, n, path, YAML_SEQUENCE_NODE, "a sequence of endpoints"))
        return;
    size_t count = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    if (count == 0) {
        err(c, n, path, "at least one endpoint is required");
        return;
    }
    cl->endpoints = calloc(count, sizeof(*cl->endpoints));
    if (!cl->endpoints) {
        c->nomem = 1;
        return;
    }
    cl->n_endpoints = count;
    for (size_t i = 0; i < count; i++) {
        struct keel_cfg_endpoint *ep = &cl->endpoints[i];
        yaml_node_t *item = node_at(c, n->data.sequence.items.start[i]), *addr_node = NULL;
        char ipath[PATHLEN], kpath[PATHLEN];
        struct qbuf q;
        ep->weight = 1;
        if (!item)
            continue;
        path_idx(ipath, path, i);
        if (item->type == YAML_SCALAR_NODE) {
            addr_node = item;
            if (get_addr(c, item, ipath, &ep->addr))
                continue;
        } else if (item->type == YAML_MAPPING_NODE) {
            yaml_node_t *v[2];
            if (fields(c, item, ipath, keys, 2, v))
                continue;
            if (v[1]) {
                path_key(kpath, ipath, "weight");
                get_u32(c, v[1], kpath, 0, 10000, &ep->weight);
            }
            if (!v[0]) {
                missing(c, item, ipath, "address", NULL);
                continue;
            }
            addr_node = v[0];
            path_key(kpath, ipath, "address");
            if (get_addr(c, v[0], kpath, &ep->addr))
                continue;
        } else {
            err(c, item, ipath,
                "expected an endpoint (an address string or a mapping with address and weight), "
                "found %s",
                describe(&q, item));
            continue;
        }
        for (size_t j = 0; j < i; j++) {
            if (addr_equal(&cl->endpoints[j].addr, &ep->addr)) {
                err(c, addr_node, ipath, "duplicate endpoint %s (same address as %s[%zu])",
                    quotez(&q, ep->addr.text), path, j);
                break;
            }
        }
    }
}

/* A file keel must read at start-up: reported here, with its position, when it cannot be. */
static void get_file(struct ctx *c, yaml_node_t *n, const char *path, const char *what, char **out)
{
    struct qbuf q;
    if (get_str(c, n, path, what, 0, out) != 0)
        return;
    if (access(*out, R_OK) != 0)
        err(c, n, path, "cannot read %s %s: %s", what, quotez(&q, *out), strerror(errno));
}

/* The "cert" and "key" values v[0], v[1] of mapping n (either may be NULL). */
static void get_cert(struct ctx *c, struct keel_cfg_cert *ct, yaml_node_t *n, const char *path,
                     yaml_node_t **v)
{
    static const char *const keys[] = {"cert", "key"};
    char kpath[PATHLEN];
    for (size_t i = 0; i < 2; i++) {
        path_key(kpath, path, keys[i]);
        if (!v[i])
            missing(c, n, path, keys[i], i ? " (the private key file, PEM)" : " (PEM file)");
        else
            get_file(c, v[i], kpath, i ? "key file" : "certificate file", i ? &ct->key : &ct->cert);
    }
}

/* "{cert: F, key: F}" */
static void parse_cert(struct ctx *c, struct keel_cfg_cert *ct, yaml_node_t *n, const char *path)
{
    static const char *const keys[] = {"cert", "key"};
    yaml_node_t *v[2];
    if (fields(c, n, path, keys, 2, v) == 0)
        get_cert(c, ct, n, path, v);
}

/* Listener "tls: {cert, key | certificates: [...], client_ca, min_version, ciphers,
 * ciphersuites}" */
static void parse_tls_server(struct ctx *c, struct keel_cfg_tls_server *t, yaml_node_t *n,
                             const char *path)
{
    static const char *const keys[] = {"cert",        "key",     "certificates", "client_ca",
                                       "min_version", "ciphers", "ciphersuites"};
    static const char *const versions[] = {"1.2", "1.3"};
    yaml_node_t *v[7];
    char kpath[PATHLEN], ipath[PATHLEN];
    if (fields(c, n, path, keys, 7, v))
        return;
    t->enabled = 1;
    snprintf(t->where, sizeof(t->where), "%s:%zu:%zu: %s", c->name, n->start_mark.line + 1,
             n->start_mark.column + 1, path);
    if (v[2] && (v[0] || v[1])) {
        path_key(kpath, path, "certificates");
        err(c, v[2], kpath, "use either cert/key or certificates, not both");
    } else if (v[2]) {
        path_key(kpath, path, "certificates");
        if (enter(c, v[2], kpath, YAML_SEQUENCE_NODE, "a sequence of {cert, key}") == 0) {
            size_t count =
                (size_t)(v[2]->data.sequence.items.top - v[2]->data.sequence.items.start);
            if (count == 0 || count > 64) {
                err(c, v[2], kpath, "expected 1 to 64 certificates, found %zu", count);
            } else if (!(t->certs = calloc(count, sizeof(*t->certs)))) {
                c->nomem = 1;
            } else {
                t->n_certs = count;
                for (size_t i = 0; i < count; i++) {
                    yaml_node_t *item = node_at(c, v[2]->data.sequence.items.start[i]);
                    path_idx(ipath, kpath, i);
                    if (item)
                        parse_cert(c, &t->certs[i], item, ipath);
                }
            }
        }
    } else if (v[0] || v[1]) {
        if (!(t->certs = calloc(1, sizeof(*t->certs)))) {
            c->nomem = 1;
            return;
        }
        t->n_certs = 1;
        get_cert(c, &t->certs[0], n, path, v);
    } else {
        missing(c, n, path, "cert", " (and \"key\", or \"certificates: [{cert, key}]\")");
    }
    if (v[3]) {
        path_key(kpath, path, "client_ca");
        get_file(c, v[3], kpath, "CA file", &t->client_ca);
    }
    t->min_version = 0x0303;
    if (v[4]) {
        int ver = 0;
        path_key(kpath, path, "min_version");
        get_choice(c, v[4], kpath, "TLS version", versions, 2, &ver);
        t->min_version = ver == 1 ? 0x0304 : 0x0303;
    }
    if (v[5]) {
        path_key(kpath, path, "ciphers");
        get_str(c, v[5], kpath, "an OpenSSL cipher list", 0, &t->ciphers);
    }
    if (v[6]) {
        path_key(kpath, path, "ciphersuites");
        get_str(c, v[6], kpath, "a TLS 1.3 cipher suite list", 0, &t->ciphersuites);
    }
}

/* Cluster "tls: {ca_file, verify, sni, cert, key}" */
static void parse_tls_client(struct ctx *c, struct keel_cfg_tls_client *t, yaml_node_t *n,
                             const char *path)
{
    static const char *const keys[] = {"ca_file", "verify", "sni", "cert", "key"};
    yaml_node_t *v[5];
    char kpath[PATHLEN];
    if (fields(c, n, path, keys, 5, v))
        return;
    t->enabled = 1;
    t->verify = 1;
    snprintf(t->where, sizeof(t->where), "%s:%zu:%zu: %s", c->name, n->start_mark.line + 1,
             n->start_mark.column + 1, path);
    if (v[0]) {
        path_key(kpath, path, "ca_file");
        get_file(c, v[0], kpath, "CA file", &t->ca_file);
    }
    if (v[1]) {
        path_key(kpath, path, "verify");
        get_bool(c, v[1], kpath, &t->verify);
    }
    if (v[2]) {
        path_key(kpath, path, "sni");
        get_str(c, v[2], kpath, "a server name", 0, &t->sni);
    }
    if (v[3] || v[4])
        get_cert(c, &t->client, n, path, v + 3);
}

/* Listener "http2: {enabled, max_concurrent_streams, initial_window_size}" */
static void parse_h2_server(struct ctx *c, struct keel_cfg_h2_server *h, yaml_node_t *n,
                            const char *path)
{
    static const char *const keys[] = {"enabled", "max_concurrent_streams", "initial_window_size"};
    yaml_node_t *v[3];
    char kpath[PATHLEN];
    if (fields(c, n, path, keys, 3, v))
        return;
    if (v[0]) {
        path_key(kpath, path, "enabled");
        get_bool(c, v[0], kpath, &h->enabled);
    }
    if (v[1]) {
        path_key(kpath, path, "max_concurrent_streams");
        get_u32(c, v[1], kpath, 1, 10000, &h->max_concurrent_streams);
    }
    if (v[2]) {
        path_key(kpath, path, "initial_window_size");
        get_size32(c, v[2], kpath, 65535, 16u << 20, &h->initial_window_size);
    }
}

enum {
    C_NAME,
    C_LB,
    C_ENDPOINTS,
    C_TIMEOUTS,
    C_MAX_IDLE,
    C_DISCOVERY,
    C_SERVICE,
    C_TAG,
    C_DATACENTER,
    C_NAMESPACE,
    C_PARTITION,
    C_WARNING,
    C_DNS_NAME,
    C_HEALTH,
    C_OUTLIER,
    C_PANIC,
    C_CIRCUIT,
    C_HASH_ON,
    C_SLOW_START,
    C_RETRIES,
    C_STICKY,
    C_PROTOCOL,
    C_HTTP2,
    C_TLS,
    C__N
};

static const char *const disc_names[] = {"static", "consul", "dns"};

void keel_config_cluster_defaults(struct keel_cfg_cluster *cl)
{
    cl->lb = KEEL_LB_WEIGHTED_LEAST_CONN;
    cl->connect_timeout_ms = 5000;
    cl->response_timeout_ms = 60000;
    cl->idle_timeout_ms = 60000;
    cl->max_idle_per_endpoint = 64;
    keel_config_outlier_defaults(&cl->outlier);
    cl->panic_threshold = 50;
    cl->hash_on.source = KEEL_HASH_ON_IP;
    cl->slow_start_aggression = 1.0;
    cl->slow_start_min_percent = 10;
    cl->retry_max = 2;
    cl->retry_budget_percent = 20;
    cl->h2_max_streams = 100;
    cl->h2_keepalive_timeout_ms = 10000;
}

/* "retries: {max: 2, on_status: [502, 503, 504], budget_percent: 20}" */
static void parse_retries(struct ctx *c, struct keel_cfg_cluster *cl, yaml_node_t *n,
                          const char *path)
{
    static const char *const keys[] = {"max", "on_status", "budget_percent", "per_try_timeout"};
    yaml_node_t *v[4];
    char kpath[PATHLEN], ipath[PATHLEN];
    if (fields(c, n, path, keys, 4, v))
        return;
    if (v[3]) {
        path_key(kpath, path, "per_try_timeout");
        get_duration(c, v[3], kpath, 1, &cl->retry_per_try_ms);
    }
    if (v[0]) {
        path_key(kpath, path, "max");
        get_u32(c, v[0], kpath, 0, 10, &cl->retry_max);
    }
    if (v[1]) {
        path_key(kpath, path, "on_status");
        if (enter(c, v[1], kpath, YAML_SEQUENCE_NODE, "a list of status codes"))
            return;
        size_t count = (size_t)(v[1]->data.sequence.items.top - v[1]->data.sequence.items.start);
        if (count > 8) {
            err(c, v[1], kpath, "at most 8 statuses, found %zu", count);
            count = 8;
        }
        for (size_t i = 0; i < count; i++) {
            yaml_node_t *item = node_at(c, v[1]->data.sequence.items.start[i]);
            uint32_t st = 0;
            path_idx(ipath, kpath, i);
            if (!item)
                continue;
            get_u32(c, item, ipath, 500, 599, &st);
            if (st)
                cl->retry_on[cl->n_retry_on++] = (uint16_t)st;
        }
    }
    if (v[2]) {
        path_key(kpath, path, "budget_percent");
        get_u32(c, v[2], kpath, 1, 100, &cl->retry_budget_percent);
    }
}

/* "slow_start: {window: 30s, aggression: 1.5, min_weight_percent: 10}" */
static void parse_slow_start(struct ctx *c, struct keel_cfg_cluster *cl, yaml_node_t *n,
                             const char *path)
{
    static const char *const keys[] = {"window", "aggression", "min_weight_percent"};
    yaml_node_t *v[3];
    char kpath[PATHLEN];
    struct qbuf q;
    if (fields(c, n, path, keys, 3, v))
        return;
    if (v[0]) {
        path_key(kpath, path, "window");
        get_duration(c, v[0], kpath, 0, &cl->slow_start_ms);
    } else {
        missing(c, n, path, "window", " (how long a new endpoint ramps, e.g. 30s)");
    }
    if (v[1]) {
        size_t len;
        path_key(kpath, path, "aggression");
        const char *s = scalar(c, v[1], kpath, "a number", &len);
        if (s) {
            char buf[32];
            char *end = NULL;
            double a = -1;
            /* Digits with an optional fraction: no signs, exponents, inf or nan. */
            if (len > 0 && len < sizeof(buf) && strspn(s, "0123456789.") == len && s[0] != '.' &&
                s[len - 1] != '.') {
                memcpy(buf, s, len);
                buf[len] = 0;
                a = strtod(buf, &end);
                if (!end || *end)
                    a = -1;
            }
            if (a < 0.1 || a > 10)
                err(c, v[1], kpath, "expected a number 0.1..10 (1 = linear), found %s",
                    describe(&q, v[1]));
            else
                cl->slow_start_aggression = a;
        }
    }
    if (v[2]) {
        path_key(kpath, path, "min_weight_percent");
        get_u32(c, v[2], kpath, 1, 100, &cl->slow_start_min_percent);
    }
}

void keel_config_outlier_defaults(struct keel_cfg_outlier *o)
{
    o->consecutive_5xx = 0;
    o->consecutive_gateway = 5;
    o->consecutive_timeout = 3;
    o->base_ms = 30000;
    o->max_ms = 300000;
    o->max_ejection_percent = 50;
}

static void parse_outlier(struct ctx *c, struct keel_cfg_outlier *o, yaml_node_t *n,
                          const char *path)
{
    static const char *const keys[] = {"consecutive_5xx",      "consecutive_gateway_failures",
                                       "consecutive_timeouts", "base_ejection_time",
                                       "max_ejection_time",    "max_ejection_percent"};
    yaml_node_t *v[6];
    char kpath[PATHLEN];
    if (fields(c, n, path, keys, 6, v))
        return;
    uint32_t *counts[3] = {&o->consecutive_5xx, &o->consecutive_gateway, &o->consecutive_timeout};
    for (size_t i = 0; i < 3; i++) {
        if (!v[i])
            continue;
        path_key(kpath, path, keys[i]);
        get_u32(c, v[i], kpath, 0, 1000, counts[i]);
    }
    if (v[3]) {
        path_key(kpath, path, keys[3]);
        get_duration(c, v[3], kpath, 1, &o->base_ms);
    }
    if (v[4]) {
        path_key(kpath, path, keys[4]);
        get_duration(c, v[4], kpath, 1, &o->max_ms);
    }
    if (v[5]) {
        path_key(kpath, path, keys[5]);
        get_u32(c, v[5], kpath, 0, 100, &o->max_ejection_percent);
    }
    if (o->max_ms < o->base_ms) {
        path_key(kpath, path, "max_ejection_time");
        err(c, v[4] ? v[4] : n, kpath, "must be at least base_ejection_time (%ums), found %ums",
            o->base_ms, o->max_ms);
    }
}

/* The keys that depend on "discovery:", once the kind is known. */
static void parse_cluster_source(struct ctx *c, struct keel_cfg *cfg, struct keel_cfg_cluster *cl,
                                 yaml_node_t *n, yaml_node_t **v, const char *path)
{
    static const char *const warn_modes[] = {"serve", "drain"};
    char kpath[PATHLEN];
    struct qbuf q;
    const char *kind = disc_names[cl->discovery];
    for (size_t i = C_SERVICE; i <= C_DNS_NAME; i++) {
        int want = i == C_DNS_NAME ? KEEL_DISC_DNS : KEEL_DISC_CONSUL;
        if (!v[i] || (int)cl->discovery == want)
            continue;
        static const char *const names[C__N] = {
            [C_SERVICE] = "service",       [C_TAG] = "tag",
            [C_DATACENTER] = "datacenter", [C_NAMESPACE] = "namespace",
            [C_PARTITION] = "partition",   [C_WARNING] = "warning",
            [C_DNS_NAME] = "dns_name"};
        path_key(kpath, path, names[i]);
        err(c, v[i], kpath,
            "\"%s\" is only for clusters with \"discovery: %s\" (this cluster is %s)", names[i],
            disc_names[want], kind);
    }
    path_key(kpath, path, "endpoints");
    if (cl->discovery == KEEL_DISC_STATIC) {
        if (v[C_ENDPOINTS])
            parse_endpoints(c, cl, v[C_ENDPOINTS], kpath);
        else
            missing(c, n, path, "endpoints",
                    " (a static cluster lists its endpoints; or set \"discovery: consul\" or "
                    "\"discovery: dns\")");
    } else if (v[C_ENDPOINTS]) {
        err(c, v[C_ENDPOINTS], kpath, "%s clusters get their endpoints from %s; remove endpoints",
            kind, cl->discovery == KEEL_DISC_CONSUL ? "Consul" : "DNS SRV records");
    }
    if (cl->discovery == KEEL_DISC_CONSUL) {
        path_key(kpath, path, "service");
        if (v[C_SERVICE])
            get_ident(c, v[C_SERVICE], kpath, "Consul service name", &cl->service);
        else
            missing(c, n, path, "service",
                    " (a consul cluster needs the name of the Consul service to watch)");
        if (v[C_TAG]) {
            path_key(kpath, path, "tag");
            get_tag(c, v[C_TAG], kpath, &cl->tag);
        }
        if (v[C_DATACENTER]) {
            path_key(kpath, path, "datacenter");
            get_ident(c, v[C_DATACENTER], kpath, "Consul datacenter name", &cl->datacenter);
        } else if (cfg->consul.datacenter) {
            /* Resolved here so the discovery code has one place to look. */
            cl->datacenter = strdup(cfg->consul.datacenter);
            if (!cl->datacenter)
                c->nomem = 1;
        }
        if (v[C_NAMESPACE]) {
            path_key(kpath, path, "namespace");
            get_ident(c, v[C_NAMESPACE], kpath, "Consul namespace", &cl->ns);
        }
        if (v[C_PARTITION]) {
            path_key(kpath, path, "partition");
            get_ident(c, v[C_PARTITION], kpath, "Consul partition", &cl->partition);
        }
        if (v[C_WARNING]) {
            path_key(kpath, path, "warning");
            get_choice(c, v[C_WARNING], kpath, "warning mode", warn_modes, 2, &cl->warning_drain);
        }
    } else if (cl->discovery == KEEL_DISC_DNS) {
        path_key(kpath, path, "dns_name");
        if (!v[C_DNS_NAME])
            missing(
                c, n, path, "dns_name",
                " (a dns cluster needs the SRV name to resolve, e.g. _api._tcp.service.consul)");
        else if (get_str(c, v[C_DNS_NAME], kpath, "a DNS name", 0, &cl->dns_name) == 0 &&
                 !valid_hostname(cl->dns_name))
            err(c, v[C_DNS_NAME], kpath,
                "invalid DNS name %s (expected a name like _api._tcp.service.consul)",
                quotez(&q, cl->dns_name));
    }
}

/* ---- health_check ------------------------------------------------------------------------ */

static int valid_token(const char *s);
static void parse_path(struct ctx *c, yaml_node_t *n, const char *path, char **out);

/* One expected status: "200" or "200-399" (an integer node or a string), 100..599. */
static int parse_status_range(struct ctx *c, yaml_node_t *n, const char *path,
                              struct keel_cfg_status_range *out)
{
    struct qbuf q;
    size_t len;
    if (n->type != YAML_SCALAR_NODE || is_null(n)) {
        err(c, n, path, "expected a status code or range (e.g. 200 or 200-399), found %s",
            describe(&q, n));
        return -1;
    }
    const char *s = scalar(c, n, path, "a status code or range", &len);
    if (!s)
        return -1;
    const char *dash = memchr(s, '-', len);
    size_t l1 = dash ? (size_t)(dash - s) : len;
    uint64_t lo = 0, hi = 0;
    int rc = parse_u64(s, l1, &lo);
    if (rc == 0 && dash)
        rc = parse_u64(dash + 1, len - l1 - 1, &hi);
    else
        hi = lo;
    if (rc != 0) {
        err(c, n, path, "invalid status %s (expected a code like 200 or a range like 200-399)",
            quote(&q, s, len));
        return -1;
    }
    if (lo < 100 || hi > 599 || lo > 599 || hi < 100) {
        err(c, n, path, "status %s is out of range (expected codes 100..599)", quote(&q, s, len));
        return -1;
    }
    if (lo > hi) {
        err(c, n, path, "status range %s is empty (the first code is above the second)",
            quote(&q, s, len));
        return -1;
    }
    out->lo = (uint16_t)lo;
    out->hi = (uint16_t)hi;
    return 0;
}

static void parse_health_expect(struct ctx *c, struct keel_cfg_health *h, yaml_node_t *n,
                                const char *path)
{
    if (n->type == YAML_SCALAR_NODE) {
        struct keel_cfg_status_range r;
        if (parse_status_range(c, n, path, &r) == 0)
            h->expect[0] = r;
        return;
    }
    if (enter(c, n, path, YAML_SEQUENCE_NODE, "a status code, range or a sequence of them"))
        return;
    size_t count = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    if (count == 0) {
        err(c, n, path, "at least one expected status is required (e.g. [200-399])");
        return;
    }
    if (count > 64) {
        err(c, n, path, "too many expected statuses (%zu, at most 64: use ranges)", count);
        return;
    }
    struct keel_cfg_status_range *r = calloc(count, sizeof(*r));
    if (!r) {
        c->nomem = 1;
        return;
    }
    int ok = 1;
    for (size_t i = 0; i < count; i++) {
        yaml_node_t *item = node_at(c, n->data.sequence.items.start[i]);
        char ipath[PATHLEN];
        path_idx(ipath, path, i);
        if (!item || parse_status_range(c, item, ipath, &r[i]) != 0)
            ok = 0;
    }
    if (!ok) {
        free(r);
        return;
    }
    free(h->expect);
    h->expect = r;
    h->n_expect = count;
}

/* "api.internal", "10.0.0.1:8080", "[::1]:80": what goes into the Host header. */
static int valid_host_header(const char *s)
{
    size_t len = strlen(s);
    if (len == 0 || len > 255)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (!isalnum((unsigned char)s[i]) && !strchr(".-_:[]", s[i]))
            return 0;
    return 1;
}

/* "10%": the share of the interval by which each check moves, 0..50. */
static void get_percent(struct ctx *c, yaml_node_t *n, const char *path, uint32_t max,
                        uint32_t *out)
{
    struct qbuf q;
    size_t len;
    if (n->type != YAML_SCALAR_NODE || is_null(n)) {
        err(c, n, path, "expected a percentage (e.g. 10%%), found %s", describe(&q, n));
        return;
    }
    const char *s = scalar(c, n, path, "a percentage", &len);
    if (!s)
        return;
    uint64_t v = 0;
    if (len < 2 || s[len - 1] != '%' || parse_u64(s, len - 1, &v) != 0) {
        err(c, n, path, "invalid percentage %s (expected an integer followed by %%, e.g. 10%%)",
            quote(&q, s, len));
        return;
    }
    if (v > max) {
        err(c, n, path, "%s is out of range (expected 0%%..%" PRIu32 "%%)", quote(&q, s, len), max);
        return;
    }
    *out = (uint32_t)v;
}

enum {
    H_TYPE,
    H_PATH,
    H_METHOD,
    H_HOST,
    H_EXPECT,
    H_INTERVAL,
    H_TIMEOUT,
    H_RISE,
    H_FALL,
    H_PORT,
    H_JITTER,
    H_EXPECT_HEADER,
    H_SERVICE,
    H__N
};

static void parse_health(struct ctx *c, struct keel_cfg_health *h, yaml_node_t *n, const char *path)
{
    static const char *const keys[H__N] = {"type",     "path",          "method", "host", "expect",
                                           "interval", "timeout",       "rise",   "fall", "port",
                                           "jitter",   "expect_header", "service"};
    static const char *const types[] = {"http", "tcp", "grpc"};
    static const char *const kv_keys[] = {"name", "value"};
    yaml_node_t *v[H__N];
    char kpath[PATHLEN];
    struct qbuf q;
    if (fields(c, n, path, keys, H__N, v))
        return;
    h->enabled = 1;
    h->interval_ms = 5000;
    h->rise = 2;
    h->fall = 3;
    h->jitter_pct = 10;
    int type = KEEL_HEALTH_HTTP;
    if (v[H_TYPE]) {
        path_key(kpath, path, "type");
        get_choice(c, v[H_TYPE], kpath, "health check type", types, 3, &type);
    } else {
        missing(c, n, path, "type", " (http, tcp or grpc)");
    }
    h->type = (enum keel_health_type)type;
    if (h->type == KEEL_HEALTH_TCP) {
        static const int http_only[] = {H_PATH, H_METHOD, H_HOST, H_EXPECT, H_EXPECT_HEADER};
        for (size_t k = 0; k < sizeof(http_only) / sizeof(http_only[0]); k++) {
            int i = http_only[k];
            if (!v[i])
                continue;
            path_key(kpath, path, keys[i]);
            err(c, v[i], kpath,
                "\"%s\" is only for \"type: http\"%s checks (a tcp check only connects)", keys[i],
                i == H_HOST ? " and \"type: grpc\"" : "");
        }
    }
    if (h->type == KEEL_HEALTH_GRPC) {
        static const int http_only[] = {H_PATH, H_METHOD, H_EXPECT, H_EXPECT_HEADER};
        for (size_t k = 0; k < sizeof(http_only) / sizeof(http_only[0]); k++) {
            int i = http_only[k];
            if (!v[i])
                continue;
            path_key(kpath, path, keys[i]);
            err(c, v[i], kpath,
                "\"%s\" is only for \"type: http\" checks (a grpc check calls "
                "grpc.health.v1.Health/Check and passes on SERVING)",
                keys[i]);
        }
        h->grpc_service = strdup("");
        if (!h->grpc_service) {
            c->nomem = 1;
            return;
        }
        if (v[H_SERVICE]) {
            path_key(kpath, path, "service");
            if (get_str(c, v[H_SERVICE], kpath, "a gRPC service name", 1, &h->grpc_service) == 0 &&
                strlen(h->grpc_service) > 256)
                err(c, v[H_SERVICE], kpath, "service name is too long (%zu bytes, at most 256)",
                    strlen(h->grpc_service));
        }
    } else if (v[H_SERVICE]) {
        path_key(kpath, path, "service");
        err(c, v[H_SERVICE], kpath,
            "\"service\" is only for \"type: grpc\" checks (the name asked about in "
            "HealthCheckRequest)");
    }
    if (h->type != KEEL_HEALTH_TCP && v[H_HOST]) {
        path_key(kpath, path, "host");
        if (get_str(c, v[H_HOST], kpath, "a host name", 0, &h->host) == 0 &&
            !valid_host_header(h->host))
            err(c, v[H_HOST], kpath,
                "invalid host %s (expected a host name or address, optionally with :port)",
                quotez(&q, h->host));
    }
    if (h->type == KEEL_HEALTH_HTTP) {
        h->path = strdup("/health");
        h->method = strdup("GET");
        h->expect = calloc(1, sizeof(*h->expect));
        if (!h->path || !h->method || !h->expect) {
            c->nomem = 1;
            return;
        }
        h->expect[0] = (struct keel_cfg_status_range){200, 399};
        h->n_expect = 1;
        if (v[H_PATH]) {
            path_key(kpath, path, "path");
            parse_path(c, v[H_PATH], kpath, &h->path);
            if (strlen(h->path) > 1024)
                err(c, v[H_PATH], kpath, "path is too long (%zu bytes, at most 1024)",
                    strlen(h->path));
        }
        if (v[H_METHOD]) {
            path_key(kpath, path, "method");
            if (get_str(c, v[H_METHOD], kpath, "an HTTP method", 0, &h->method) == 0 &&
                (!valid_token(h->method) || strlen(h->method) > 32))
                err(c, v[H_METHOD], kpath,
                    "invalid method %s (expected an HTTP token of at most 32 characters, e.g. "
                    "GET or HEAD)",
                    quotez(&q, h->method));
        }
        if (v[H_EXPECT]) {
            path_key(kpath, path, "expect");
            parse_health_expect(c, h, v[H_EXPECT], kpath);
        }
        if (v[H_EXPECT_HEADER]) {
            yaml_node_t *kv[2];
            char epath[PATHLEN];
            path_key(epath, path, "expect_header");
            if (fields(c, v[H_EXPECT_HEADER], epath, kv_keys, 2, kv) == 0) {
                if (!kv[0])
                    missing(c, v[H_EXPECT_HEADER], epath, "name", NULL);
                if (!kv[1])
                    missing(c, v[H_EXPECT_HEADER], epath, "value",
                            " (the value the service must send)");
                if (kv[0]) {
                    path_key(kpath, epath, "name");
                    if (get_str(c, kv[0], kpath, "a header name", 0, &h->expect_header.name) == 0 &&
                        !valid_token(h->expect_header.name))
                        err(c, kv[0], kpath, "invalid header name %s (expected an HTTP token)",
                            quotez(&q, h->expect_header.name));
                }
                if (kv[1]) {
                    path_key(kpath, epath, "value");
                    if (get_str(c, kv[1], kpath, "a string", 1, &h->expect_header.value) == 0 &&
                        (strpbrk(h->expect_header.value, "\r\n") ||
                         strlen(h->expect_header.value) > 256))
                        err(c, kv[1], kpath,
                            "invalid header value %s (at most 256 bytes, no line breaks)",
                            quotez(&q, h->expect_header.value));
                }
            }
        }
    }
    if (v[H_INTERVAL]) {
        path_key(kpath, path, "interval");
        get_duration_in(c, v[H_INTERVAL], kpath, 100, 3600000, &h->interval_ms);
    }
    /* The default timeout must fit inside a short interval too. */
    h->timeout_ms = h->interval_ms < 4000 ? h->interval_ms / 2 : 2000;
    if (v[H_TIMEOUT]) {
        char a[16], b[16];
        path_key(kpath, path, "timeout");
        if (get_duration_in(c, v[H_TIMEOUT], kpath, 1, 3600000, &h->timeout_ms) == 0 &&
            h->timeout_ms >= h->interval_ms)
            err(c, v[H_TIMEOUT], kpath, "timeout %s must be shorter than the interval %s",
                fmt_ms(a, h->timeout_ms), fmt_ms(b, h->interval_ms));
    }
    if (v[H_RISE]) {
        path_key(kpath, path, "rise");
        get_u32(c, v[H_RISE], kpath, 1, 100, &h->rise);
    }
    if (v[H_FALL]) {
        path_key(kpath, path, "fall");
        get_u32(c, v[H_FALL], kpath, 1, 100, &h->fall);
    }
    if (v[H_PORT]) {
        uint32_t port = 0;
        path_key(kpath, path, "port");
        get_u32(c, v[H_PORT], kpath, 1, 65535, &port);
        h->port = (uint16_t)port;
    }
    if (v[H_JITTER]) {
        path_key(kpath, path, "jitter");
        get_percent(c, v[H_JITTER], kpath, 50, &h->jitter_pct);
    }
}

/* "hash_on: {header: X-User}" | "{cookie: session}" | "{ip: true}", for lb: hash. */
static void parse_hash_on(struct ctx *c, struct keel_cfg_cluster *cl, yaml_node_t *n,
                          const char *path)
{
    static const char *const keys[] = {"header", "cookie", "ip"};
    yaml_node_t *v[3];
    char kpath[PATHLEN];
    struct qbuf q;
    if (fields(c, n, path, keys, 3, v))
        return;
    int count = (v[0] != NULL) + (v[1] != NULL) + (v[2] != NULL);
    if (count == 0 && n->data.mapping.pairs.top > n->data.mapping.pairs.start)
        return; /* only unknown keys: reported already */
    if (count != 1) {
        err(c, n, path, "expected exactly one of header, cookie or ip, found %s",
            count ? "several" : "none");
        return;
    }
    if (v[2]) {
        int on = 1;
        path_key(kpath, path, "ip");
        get_bool(c, v[2], kpath, &on);
        if (!on)
            err(c, v[2], kpath,
                "\"ip: false\" leaves nothing to hash (use header or cookie, or ip: true)");
        cl->hash_on.source = KEEL_HASH_ON_IP;
        return;
    }
    size_t i = v[0] ? 0 : 1;
    path_key(kpath, path, keys[i]);
    if (get_str(c, v[i], kpath, i ? "a cookie name" : "a header name", 0, &cl->hash_on.name) == 0 &&
        !valid_token(cl->hash_on.name))
        err(c, v[i], kpath, "invalid %s name %s (expected an HTTP token)", keys[i],
            quotez(&q, cl->hash_on.name));
    cl->hash_on.source = i ? KEEL_HASH_ON_COOKIE : KEEL_HASH_ON_HEADER;
}

static void parse_cluster(struct ctx *c, struct keel_cfg *cfg, size_t idx, yaml_node_t *n,
                          const char *path)
{
    static const char *const keys[C__N] = {"name",
                                           "lb",
                                           "endpoints",
                                           "timeouts",
                                           "max_idle_per_endpoint",
                                           "discovery",
                                           "service",
                                           "tag",
                                           "datacenter",
                                           "namespace",
                                           "partition",
                                           "warning",
                                           "dns_name",
                                           "health_check",
                                           "outlier",
                                           "panic_threshold",
                                           "circuit_breaker",
                                           "hash_on",
                                           "slow_start",
                                           "retries",
                                           "sticky",
                                           "protocol",
                                           "http2",
                                           "tls"};
    static const char *const tkeys[] = {"connect", "response", "idle"};
    struct keel_cfg_cluster *cl = &cfg->clusters[idx];
    yaml_node_t *v[C__N], *t[3];
    char kpath[PATHLEN], tpath[PATHLEN];
    struct qbuf q;
    if (fields(c, n, path, keys, C__N, v))
        return;
    if (v[C_NAME]) {
        path_key(kpath, path, "name");
        if (get_name(c, v[C_NAME], kpath, &cl->name) == 0) {
            for (size_t j = 0; j < idx; j++) {
                if (cfg->clusters[j].name && !strcmp(cfg->clusters[j].name, cl->name)) {
                    err(c, v[C_NAME], kpath, "duplicate cluster name %s (also clusters[%zu])",
                        quotez(&q, cl->name), j);
                    break;
                }
            }
        }
    } else {
        missing(c, n, path, "name", NULL);
    }
    int lb = (int)cl->lb;
    if (v[C_LB]) {
        path_key(kpath, path, "lb");
        lb = -1;
        get_choice(c, v[C_LB], kpath, "policy", lb_names, KEEL_LB__COUNT, &lb);
        if (lb >= 0)
            cl->lb = (enum keel_lb_policy)lb;
    }
    if (v[C_HASH_ON]) {
        path_key(kpath, path, "hash_on");
        if (cl->lb == KEEL_LB_HASH)
            parse_hash_on(c, cl, v[C_HASH_ON], kpath);
        else if (lb >= 0) /* an unknown policy is reported already */
            err(c, v[C_HASH_ON], kpath,
                "\"hash_on\" is only for clusters with \"lb: hash\" (this cluster uses %s)",
                keel_config_lb_name(cl->lb));
    }
    path_key(tpath, path, "timeouts");
    if (v[C_TIMEOUTS] && fields(c, v[C_TIMEOUTS], tpath, tkeys, 3, t) == 0) {
        uint32_t *dst[3] = {&cl->connect_timeout_ms, &cl->response_timeout_ms,
                            &cl->idle_timeout_ms};
        for (size_t i = 0; i < 3; i++) {
            if (!t[i])
                continue;
            path_key(kpath, tpath, tkeys[i]);
            get_duration(c, t[i], kpath, 1, dst[i]);
        }
    }
    if (v[C_MAX_IDLE]) {
        path_key(kpath, path, "max_idle_per_endpoint");
        get_u32(c, v[C_MAX_IDLE], kpath, 0, 100000, &cl->max_idle_per_endpoint);
    }
    int kind = KEEL_DISC_STATIC;
    if (v[C_DISCOVERY]) {
        path_key(kpath, path, "discovery");
        kind = -1;
        get_choice(c, v[C_DISCOVERY], kpath, "discovery kind", disc_names, 3, &kind);
        if (kind < 0)
            return; /* which of endpoints/service/dns_name belongs here is unknown: no guess */
    }
    cl->discovery = (enum keel_discovery_kind)kind;
    parse_cluster_source(c, cfg, cl, n, v, path);
    if (v[C_HEALTH]) {
        path_key(kpath, path, "health_check");
        parse_health(c, &cl->health_check, v[C_HEALTH], kpath);
    }
    if (v[C_OUTLIER]) {
        path_key(kpath, path, "outlier");
        parse_outlier(c, &cl->outlier, v[C_OUTLIER], kpath);
    }
    if (v[C_PROTOCOL]) {
        int p = 0;
        path_key(kpath, path, "protocol");
        get_choice(c, v[C_PROTOCOL], kpath, "upstream protocol", up_protos, 3, &p);
        cl->protocol = (enum keel_upstream_proto)p;
    }
    keel_config_cluster_protocol(cl, cl->protocol);
    if (v[C_HTTP2]) {
        static const char *const hkeys[] = {"max_concurrent_streams", "keepalive_interval",
                                            "keepalive_timeout"};
        yaml_node_t *hv[3];
        char hpath[PATHLEN];
        path_key(hpath, path, "http2");
        if (cl->protocol == KEEL_UP_HTTP1) {
            err(c, v[C_HTTP2], hpath,
                "\"http2\" settings are only for clusters with \"protocol: h2\" or \"grpc\"");
        } else if (fields(c, v[C_HTTP2], hpath, hkeys, 3, hv) == 0) {
            if (hv[0]) {
                path_key(kpath, hpath, hkeys[0]);
                get_u32(c, hv[0], kpath, 1, 10000, &cl->h2_max_streams);
            }
            for (size_t i = 1; i < 3; i++) {
                if (!hv[i])
                    continue;
                path_key(kpath, hpath, hkeys[i]);
                get_duration(c, hv[i], kpath, i == 1 ? 0 : 1,
                             i == 1 ? &cl->h2_keepalive_ms : &cl->h2_keepalive_timeout_ms);
            }
        }
    }
    if (v[C_TLS]) {
        path_key(kpath, path, "tls");
        parse_tls_client(c, &cl->tls, v[C_TLS], kpath);
    }
    if (v[C_PANIC]) {
        path_key(kpath, path, "panic_threshold");
        get_u32(c, v[C_PANIC], kpath, 0, 100, &cl->panic_threshold);
    }
    if (v[C_STICKY]) {
        static const char *const skeys[] = {"cookie"};
        yaml_node_t *sv[1];
        char spath[PATHLEN];
        path_key(spath, path, "sticky");
        if (fields(c, v[C_STICKY], spath, skeys, 1, sv) == 0) {
            path_key(kpath, spath, "cookie");
            if (!sv[0])
                missing(c, v[C_STICKY], spath, "cookie", " (the cookie keel sets, e.g. KEEL_ID)");
            else if (get_str(c, sv[0], kpath, "a cookie name", 0, &cl->sticky_cookie) == 0 &&
                     !valid_token(cl->sticky_cookie))
                err(c, sv[0], kpath, "invalid cookie name %s", quotez(&q, cl->sticky_cookie));
        }
    }
    if (v[C_RETRIES]) {
        path_key(kpath, path, "retries");
        parse_retries(c, cl, v[C_RETRIES], kpath);
    }
    if (v[C_SLOW_START]) {
        path_key(kpath, path, "slow_start");
        parse_slow_start(c, cl, v[C_SLOW_START], kpath);
    }
    if (v[C_CIRCUIT]) {
        static const char *const ckeys[] = {"max_connections", "max_pending_requests",
                                            "max_requests"};
        yaml_node_t *cv[3];
        char cpath[PATHLEN];
        path_key(cpath, path, "circuit_breaker");
        if (fields(c, v[C_CIRCUIT], cpath, ckeys, 3, cv) == 0) {
            uint32_t *dst[3] = {&cl->max_connections, &cl->max_pending, &cl->max_requests};
            for (size_t i = 0; i < 3; i++) {
                if (!cv[i])
                    continue;
                path_key(kpath, cpath, ckeys[i]);
                get_u32(c, cv[i], kpath, 0, 10000000, dst[i]);
            }
        }
    }
}

static void parse_clusters(struct ctx *c, struct keel_cfg *cfg, yaml_node_t *n)
{
    if (enter(c, n, "clusters", YAML_SEQUENCE_NODE, "a sequence of clusters"))
        return;
    size_t count = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    if (count == 0) {
        err(c, n, "clusters", "at least one cluster is required");
        return;
    }
    cfg->clusters = calloc(count, sizeof(*cfg->clusters));
    if (!cfg->clusters) {
        c->nomem = 1;
        return;
    }
    cfg->n_clusters = count;
    for (size_t i = 0; i < count; i++) {
        struct keel_cfg_cluster *cl = &cfg->clusters[i];
        keel_config_cluster_defaults(cl);
        yaml_node_t *item = node_at(c, n->data.sequence.items.start[i]);
        char ipath[PATHLEN];
        path_idx(ipath, "clusters", i);
        if (item)
            parse_cluster(c, cfg, i, item, ipath);
    }
}

/* Resolves a cluster name to its index, or reports it (-1). */
static int find_cluster(struct ctx *c, struct keel_cfg *cfg, yaml_node_t *n, const char *path,
                        const char *name)
{
    struct qbuf q;
    char known[256] = "";
    size_t o = 0;
    for (size_t i = 0; i < cfg->n_clusters; i++)
        if (cfg->clusters[i].name && !strcmp(cfg->clusters[i].name, name))
            return (int)i;
    for (size_t i = 0; i < cfg->n_clusters && o < sizeof(known); i++)
        if (cfg->clusters[i].name)
            o += (size_t)snprintf(known + o, sizeof(known) - o, "%s%s", o ? ", " : "",
                                  cfg->clusters[i].name);
    if (o)
        err(c, n, path, "unknown cluster %s (defined clusters: %s)", quotez(&q, name), known);
    else
        err(c, n, path, "unknown cluster %s (no clusters are defined)", quotez(&q, name));
    return -1;
}

static int valid_token(const char *s)
{
    /* RFC 9110 token characters. */
    static const char *const extra = "!#$%&'*+-.^_`|~";
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && !strchr(extra, *s))
            return 0;
    return 1;
}

static void parse_kvs(struct ctx *c, yaml_node_t *n, const char *path, const char *what,
                      struct keel_cfg_kv **out, size_t *n_out)
{
    static const char *const keys[] = {"name", "value"};
    struct qbuf q;
    if (enter(c, n, path, YAML_SEQUENCE_NODE, "a sequence of {name, value} mappings"))
        return;
    size_t count = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    if (count == 0)
        return;
    *out = calloc(count, sizeof(**out));
    if (!*out) {
        c->nomem = 1;
        return;
    }
    *n_out = count;
    for (size_t i = 0; i < count; i++) {
        struct keel_cfg_kv *kv = &(*out)[i];
        yaml_node_t *item = node_at(c, n->data.sequence.items.start[i]), *v[2];
        char ipath[PATHLEN], kpath[PATHLEN];
        if (!item)
            continue;
        path_idx(ipath, path, i);
        if (fields(c, item, ipath, keys, 2, v))
            continue;
        if (v[0]) {
            path_key(kpath, ipath, "name");
            if (get_str(c, v[0], kpath, "a name", 0, &kv->name) == 0 && !valid_token(kv->name))
                err(c, v[0], kpath, "invalid %s name %s (expected an HTTP token)", what,
                    quotez(&q, kv->name));
        } else {
            missing(c, item, ipath, "name", NULL);
        }
        if (v[1]) {
            path_key(kpath, ipath, "value");
            if (get_str(c, v[1], kpath, "a string", 1, &kv->value) == 0 &&
                strpbrk(kv->value, "\r\n"))
                err(c, v[1], kpath, "invalid %s value %s (no line breaks allowed)", what,
                    quotez(&q, kv->value));
        }
    }
}

static void parse_host_pattern(struct ctx *c, yaml_node_t *n, const char *path, char **out)
{
    struct qbuf q;
    if (get_str(c, n, path, "a host name", 0, out))
        return;
    for (char *p = *out; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    const char *h = *out;
    if (h[0] == '*' && h[1] == '.')
        h += 2;
    if (!valid_hostname(h))
        err(c, n, path,
            "invalid host %s (expected a host name like api.example.com or a wildcard like "
            "*.example.com)",
            quotez(&q, *out));
}

static void parse_path(struct ctx *c, yaml_node_t *n, const char *path, char **out)
{
    struct qbuf q;
    if (get_str(c, n, path, "a path", 0, out))
        return;
    int ok = (*out)[0] == '/';
    for (const char *p = *out; ok && *p; p++)
        ok = (unsigned char)*p > 0x20 && *p != 0x7f;
    if (!ok)
        err(c, n, path, "invalid path %s (expected a path starting with '/', without spaces)",
            quotez(&q, *out));
}

static void parse_match(struct ctx *c, struct keel_cfg_match *m, yaml_node_t *n, const char *path)
{
    static const char *const keys[] = {"host", "path_prefix", "path", "headers", "cookies"};
    yaml_node_t *v[5];
    char kpath[PATHLEN];
    if (fields(c, n, path, keys, 5, v))
        return;
    if (v[0]) {
        path_key(kpath, path, "host");
        parse_host_pattern(c, v[0], kpath, &m->host);
    }
    if (v[1]) {
        path_key(kpath, path, "path_prefix");
        parse_path(c, v[1], kpath, &m->path_prefix);
    }
    if (v[2]) {
        path_key(kpath, path, "path");
        if (v[1])
            err(c, v[2], kpath,
                "\"path\" and \"path_prefix\" are mutually exclusive (use one of them)");
        else
            parse_path(c, v[2], kpath, &m->path);
    }
    if (v[3]) {
        path_key(kpath, path, "headers");
        parse_kvs(c, v[3], kpath, "header", &m->headers, &m->n_headers);
    }
    if (v[4]) {
        path_key(kpath, path, "cookies");
        parse_kvs(c, v[4], kpath, "cookie", &m->cookies, &m->n_cookies);
    }
}

/* allow_empty: the Consul catalog listener, whose routes may all come from service tags. */
static void parse_routes(struct ctx *c, struct keel_cfg *cfg, struct keel_cfg_listener *l,
                         yaml_node_t *n, const char *path, int allow_empty)
{
    static const char *const keys[] = {"match", "cluster"};
    if (enter(c, n, path, YAML_SEQUENCE_NODE, "a sequence of routes"))
        return;
    size_t count = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    if (count == 0) {
        if (!allow_empty)
            err(c, n, path, "at least one route is required on an http listener");
        return;
    }
    l->routes = calloc(count, sizeof(*l->routes));
    if (!l->routes) {
        c->nomem = 1;
        return;
    }
    l->n_routes = count;
    for (size_t i = 0; i < count; i++) {
        struct keel_cfg_route *r = &l->routes[i];
        yaml_node_t *item = node_at(c, n->data.sequence.items.start[i]), *v[2];
        char ipath[PATHLEN], kpath[PATHLEN];
        r->cluster_idx = -1;
        if (!item)
            continue;
        r->line = (int)item->start_mark.line + 1;
        path_idx(ipath, path, i);
        if (fields(c, item, ipath, keys, 2, v))
            continue;
        if (v[0]) {
            path_key(kpath, ipath, "match");
            parse_match(c, &r->match, v[0], kpath);
        }
        if (v[1]) {
            path_key(kpath, ipath, "cluster");
            if (get_str(c, v[1], kpath, "a cluster name", 0, &r->cluster) == 0)
                r->cluster_idx = find_cluster(c, cfg, v[1], kpath, r->cluster);
        } else {
            missing(c, item, ipath, "cluster", NULL);
        }
    }
}

enum {
    L_NAME,
    L_ADDRESS,
    L_PROTOCOL,
    L_ROUTES,
    L_CLUSTER,
    L_LIMITS,
    L_TIMEOUTS,
    L_HTTP2,
    L_TLS,
    L__N
};

static void parse_listener(struct ctx *c, struct keel_cfg *cfg, size_t idx, yaml_node_t *n,
                           const char *path)
{
    static const char *const keys[L__N] = {"name",   "address",  "protocol", "routes", "cluster",
                                           "limits", "timeouts", "http2",    "tls"};
    static const char *const protos[] = {"http", "tcp"};
    static const char *const lkeys[] = {"max_request_line", "max_header_size", "max_headers",
                                        "max_body_size", "max_connections"};
    static const char *const tkeys[] = {"header", "keepalive", "idle"};
    struct keel_cfg_listener *l = &cfg->listeners[idx];
    yaml_node_t *v[L__N], *s[5];
    char kpath[PATHLEN], spath[PATHLEN];
    struct qbuf q;
    if (fields(c, n, path, keys, L__N, v))
        return;
    if (v[L_NAME]) {
        path_key(kpath, path, "name");
        if (get_name(c, v[L_NAME], kpath, &l->name) == 0) {
            for (size_t j = 0; j < idx; j++) {
                if (cfg->listeners[j].name && !strcmp(cfg->listeners[j].name, l->name)) {
                    err(c, v[L_NAME], kpath, "duplicate listener name %s (also listeners[%zu])",
                        quotez(&q, l->name), j);
                    break;
                }
            }
        }
    } else {
        missing(c, n, path, "name", NULL);
    }
    if (v[L_ADDRESS]) {
        path_key(kpath, path, "address");
        if (get_addr(c, v[L_ADDRESS], kpath, &l->addr) == 0) {
            for (size_t j = 0; j < idx; j++) {
                if (addr_equal(&cfg->listeners[j].addr, &l->addr)) {
                    err(c, v[L_ADDRESS], kpath,
                        "duplicate listener address %s (already used by listeners[%zu])",
                        quotez(&q, l->addr.text), j);
                    break;
                }
            }
        }
    } else {
        missing(c, n, path, "address", NULL);
    }
    int proto = KEEL_LISTEN_HTTP, proto_ok = 1;
    if (v[L_PROTOCOL]) {
        path_key(kpath, path, "protocol");
        proto = -1;
        get_choice(c, v[L_PROTOCOL], kpath, "protocol", protos, 2, &proto);
        proto_ok = proto >= 0;
        if (!proto_ok)
            proto = KEEL_LISTEN_HTTP;
    }
    l->proto = (enum keel_listener_proto)proto;
    if (l->proto == KEEL_LISTEN_TCP)
        l->idle_timeout_ms = 3600000;

    path_key(spath, path, "limits");
    if (v[L_LIMITS] && fields(c, v[L_LIMITS], spath, lkeys, 5, s) == 0) {
        if (s[0]) {
            path_key(kpath, spath, lkeys[0]);
            get_size32(c, s[0], kpath, 16, 1u << 20, &l->max_request_line);
        }
        if (s[1]) {
            path_key(kpath, spath, lkeys[1]);
            get_size32(c, s[1], kpath, 64, 16u << 20, &l->max_header_size);
        }
        if (s[2]) {
            path_key(kpath, spath, lkeys[2]);
            get_u32(c, s[2], kpath, 1, 10000, &l->max_headers);
        }
        if (s[3]) {
            path_key(kpath, spath, lkeys[3]);
            get_size(c, s[3], kpath, 0, UINT64_MAX, &l->max_body_size);
        }
        if (s[4]) {
            path_key(kpath, spath, lkeys[4]);
            get_u32(c, s[4], kpath, 1, 1000000, &l->max_connections);
        }
    }
    path_key(spath, path, "timeouts");
    if (v[L_TIMEOUTS] && fields(c, v[L_TIMEOUTS], spath, tkeys, 3, s) == 0) {
        uint32_t *dst[3] = {&l->header_timeout_ms, &l->keepalive_timeout_ms, &l->idle_timeout_ms};
        for (size_t i = 0; i < 3; i++) {
            if (!s[i])
                continue;
            path_key(kpath, spath, tkeys[i]);
            get_duration(c, s[i], kpath, 1, dst[i]);
        }
    }
    if (v[L_HTTP2]) {
        path_key(kpath, path, "http2");
        if (l->proto == KEEL_LISTEN_TCP)
            err(c, v[L_HTTP2], kpath, "\"http2\" is only for http listeners");
        else
            parse_h2_server(c, &l->h2, v[L_HTTP2], kpath);
    }
    if (v[L_TLS]) {
        path_key(kpath, path, "tls");
        parse_tls_server(c, &l->tls, v[L_TLS], kpath);
    }
    if (!proto_ok)
        return; /* which of routes/cluster belongs here is unknown: do not guess */
    if (l->proto == KEEL_LISTEN_HTTP) {
        /* The catalog listener may start without routes: Consul tags add them. */
        const char *cname = cfg->consul.catalog_listener;
        int catalog =
            cfg->consul.catalog && (cname ? l->name && !strcmp(l->name, cname) : !c->seen_http);
        c->seen_http = 1;
        if (v[L_CLUSTER]) {
            path_key(kpath, path, "cluster");
            err(c, v[L_CLUSTER], kpath,
                "\"cluster\" is only for tcp listeners; on an http listener use a route without "
                "match instead (routes: [{cluster: NAME}])");
        }
        path_key(kpath, path, "routes");
        if (v[L_ROUTES])
            parse_routes(c, cfg, l, v[L_ROUTES], kpath, catalog);
        else if (!catalog)
            missing(c, n, path, "routes",
                    " (an http listener needs at least one route; a route without match "
                    "matches every request)");
    } else {
        if (v[L_ROUTES]) {
            path_key(kpath, path, "routes");
            err(c, v[L_ROUTES], kpath,
                "\"routes\" are only for http listeners; a tcp listener forwards every "
                "connection to its \"cluster\"");
        }
        path_key(kpath, path, "cluster");
        if (!v[L_CLUSTER])
            missing(c, n, path, "cluster", " (a tcp listener needs the cluster to forward to)");
        else if (get_str(c, v[L_CLUSTER], kpath, "a cluster name", 0, &l->cluster) == 0)
            l->cluster_idx = find_cluster(c, cfg, v[L_CLUSTER], kpath, l->cluster);
    }
}

static void parse_listeners(struct ctx *c, struct keel_cfg *cfg, yaml_node_t *n)
{
    if (enter(c, n, "listeners", YAML_SEQUENCE_NODE, "a sequence of listeners"))
        return;
    size_t count = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    if (count == 0) {
        err(c, n, "listeners", "at least one listener is required");
        return;
    }
    cfg->listeners = calloc(count, sizeof(*cfg->listeners));
    if (!cfg->listeners) {
        c->nomem = 1;
        return;
    }
    cfg->n_listeners = count;
    for (size_t i = 0; i < count; i++) {
        struct keel_cfg_listener *l = &cfg->listeners[i];
        l->proto = KEEL_LISTEN_HTTP;
        l->cluster_idx = -1;
        l->max_request_line = 8192;
        l->max_header_size = 65536;
        l->max_headers = 100;
        l->max_body_size = (uint64_t)1 << 30;
        l->header_timeout_ms = 10000;
        l->keepalive_timeout_ms = 60000;
        l->idle_timeout_ms = 60000;
        l->max_connections = 10000;
        l->h2.enabled = 1;
        l->h2.max_concurrent_streams = 100;
        l->h2.initial_window_size = 256 * 1024;
        yaml_node_t *item = node_at(c, n->data.sequence.items.start[i]);
        char ipath[PATHLEN];
        path_idx(ipath, "listeners", i);
        if (item)
            parse_listener(c, cfg, i, item, ipath);
    }
}

/* consul.catalog_listener (or the first http listener) -> its index. */
static void resolve_catalog_listener(struct ctx *c, struct keel_cfg *cfg)
{
    struct keel_cfg_consul *co = &cfg->consul;
    struct qbuf q;
    char known[256] = "";
    size_t o = 0;
    if (!co->catalog || !cfg->n_listeners)
        return;
    if (!co->catalog_listener) {
        for (size_t i = 0; i < cfg->n_listeners; i++) {
            if (cfg->listeners[i].proto == KEEL_LISTEN_HTTP) {
                co->catalog_listener_idx = (int)i;
                return;
            }
        }
        err(c, c->catalog_node, "consul.catalog",
            "\"catalog: true\" needs an http listener for the routes of catalog clusters (there "
            "is none)");
        return;
    }
    for (size_t i = 0; i < cfg->n_listeners; i++) {
        const struct keel_cfg_listener *l = &cfg->listeners[i];
        if (!l->name || strcmp(l->name, co->catalog_listener))
            continue;
        if (l->proto != KEEL_LISTEN_HTTP)
            err(c, c->catalog_listener_node, "consul.catalog_listener",
                "listener %s is a tcp listener (the catalog listener must be an http listener: "
                "it gets the routes of catalog clusters)",
                quotez(&q, co->catalog_listener));
        else
            co->catalog_listener_idx = (int)i;
        return;
    }
    for (size_t i = 0; i < cfg->n_listeners && o < sizeof(known); i++)
        if (cfg->listeners[i].name && cfg->listeners[i].proto == KEEL_LISTEN_HTTP)
            o += (size_t)snprintf(known + o, sizeof(known) - o, "%s%s", o ? ", " : "",
                                  cfg->listeners[i].name);
    err(c, c->catalog_listener_node, "consul.catalog_listener",
        "unknown listener %s (http listeners: %s)", quotez(&q, co->catalog_listener),
        o ? known : "none");
}

enum {
    T_WORKERS,
    T_LOG_LEVEL,
    T_ACCESS_LOG,
    T_DRAIN_TIMEOUT,
    T_ADMIN,
    T_LISTENERS,
    T_CLUSTERS,
    T_CONSUL,
    T_DNS,
    T_STATE_FILE,
    T_DEBOUNCE,
    T__N
};

static void parse_top(struct ctx *c, struct keel_cfg *cfg, yaml_node_t *root)
{
    static const char *const keys[T__N] = {
        "workers", "log_level", "access_log", "drain_timeout",     "admin", "listeners", "clusters",
        "consul",  "dns",       "state_file", "discovery_debounce"};
    static const char *const levels[] = {"error", "warn", "info", "debug"};
    yaml_node_t *v[T__N];
    struct qbuf q;
    if (root->type != YAML_MAPPING_NODE) {
        err(c, root, "", "expected a mapping with listeners and clusters, found %s",
            describe(&q, root));
        return;
    }
    if (fields(c, root, "", keys, T__N, v))
        return;
    if (v[T_WORKERS])
        get_u32(c, v[T_WORKERS], "workers", 1, 256, &cfg->workers);
    if (v[T_LOG_LEVEL])
        get_choice(c, v[T_LOG_LEVEL], "log_level", "log level", levels, 4, &cfg->log_level);
    if (v[T_ACCESS_LOG])
        get_bool(c, v[T_ACCESS_LOG], "access_log", &cfg->access_log);
    if (v[T_DRAIN_TIMEOUT])
        get_duration(c, v[T_DRAIN_TIMEOUT], "drain_timeout", 0, &cfg->drain_timeout_ms);
    if (v[T_ADMIN])
        parse_admin(c, cfg, v[T_ADMIN]);
    /* Discovery settings before clusters: clusters take their defaults from them. */
    int token_set = 0;
    if (v[T_CONSUL])
        parse_consul(c, cfg, v[T_CONSUL], &token_set);
    const char *env = getenv("CONSUL_HTTP_TOKEN");
    if (!token_set && env && env[0]) {
        if (!valid_token_text(env))
            err_at(c, 1, 1, "consul.token",
                   "$CONSUL_HTTP_TOKEN is not a valid token (expected at most 1024 visible ASCII "
                   "characters; the value is not shown)");
        else if (!(cfg->consul.token = strdup(env)))
            c->nomem = 1;
    }
    if (v[T_DNS])
        parse_dns(c, cfg, v[T_DNS]);
    if (v[T_STATE_FILE] &&
        get_str(c, v[T_STATE_FILE], "state_file", "a file path", 0, &cfg->state_file) == 0)
        check_state_path(c, v[T_STATE_FILE], "state_file", cfg->state_file);
    if (v[T_DEBOUNCE])
        get_duration_in(c, v[T_DEBOUNCE], "discovery_debounce", 0, 10000, &cfg->debounce_ms);
    /* Clusters first, so routes can be resolved while their nodes are at hand. */
    if (v[T_CLUSTERS])
        parse_clusters(c, cfg, v[T_CLUSTERS]);
    else
        missing(c, root, "", "clusters", " (at least one cluster is required)");
    if (v[T_LISTENERS])
        parse_listeners(c, cfg, v[T_LISTENERS]);
    else
        missing(c, root, "", "listeners", " (at least one listener is required)");
    resolve_catalog_listener(c, cfg);
}

/* ---- entry points ---------------------------------------------------------------------- */

static void yaml_error(struct ctx *c, const yaml_parser_t *p, const char *buf, size_t len)
{
    size_t line = 1, col = 1;
    char extra[32] = "";
    if (p->error == YAML_MEMORY_ERROR) {
        c->nomem = 1;
        return;
    }
    if (p->error == YAML_READER_ERROR) {
        /* Reader errors carry a byte offset, not a mark. */
        size_t off = p->problem_offset < len ? p->problem_offset : len;
        for (size_t i = 0; i < off; i++) {
            if (buf[i] == '\n') {
                line++;
                col = 1;
            } else {
                col++;
            }
        }
        if (p->problem_value != -1)
            snprintf(extra, sizeof(extra), " (byte 0x%02x)", (unsigned)p->problem_value & 0xff);
    } else {
        line = p->problem_mark.line + 1;
        col = p->problem_mark.column + 1;
    }
    err_at(c, line, col, "yaml", "%s%s%s%s", p->problem ? p->problem : "syntax error", extra,
           p->context ? " " : "", p->context ? p->context : "");
}

static int cmp_pos(const void *a, const void *b)
{
    const struct errpos *x = a, *y = b;
    if (x->line != y->line)
        return x->line < y->line ? -1 : 1;
    if (x->col != y->col)
        return x->col < y->col ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Orders messages by position so they read top to bottom. */
static void sort_errors(struct ctx *c)
{
    size_t n = c->errs->n;
    if (n < 2)
        return;
    char **sorted = malloc(n * sizeof(*sorted));
    if (!sorted)
        return; /* unsorted is still correct */
    qsort(c->pos, n, sizeof(*c->pos), cmp_pos);
    for (size_t i = 0; i < n; i++)
        sorted[i] = c->errs->msgs[c->pos[i].seq];
    memcpy(c->errs->msgs, sorted, n * sizeof(*sorted));
    free(sorted);
}

void keel_config_errors_free(struct keel_cfg_errors *errs)
{
    if (!errs)
        return;
    for (size_t i = 0; i < errs->n; i++)
        free(errs->msgs[i]);
    free(errs->msgs);
    errs->msgs = NULL;
    errs->n = 0;
}

static void free_kvs(struct keel_cfg_kv *kv, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(kv[i].name);
        free(kv[i].value);
    }
    free(kv);
}

void keel_config_free(struct keel_cfg *cfg)
{
    if (!cfg)
        return;
    for (size_t i = 0; i < cfg->n_listeners; i++) {
        struct keel_cfg_listener *l = &cfg->listeners[i];
        for (size_t j = 0; j < l->n_routes; j++) {
            struct keel_cfg_route *r = &l->routes[j];
            free(r->match.host);
            free(r->match.path_prefix);
            free(r->match.path);
            free_kvs(r->match.headers, r->match.n_headers);
            free_kvs(r->match.cookies, r->match.n_cookies);
            free(r->cluster);
        }
        free(l->routes);
        for (size_t j = 0; j < l->tls.n_certs; j++) {
            free(l->tls.certs[j].cert);
            free(l->tls.certs[j].key);
        }
        free(l->tls.certs);
        free(l->tls.client_ca);
        free(l->tls.ciphers);
        free(l->tls.ciphersuites);
        free(l->name);
        free(l->addr.text);
        free(l->cluster);
    }
    free(cfg->listeners);
    for (size_t i = 0; i < cfg->n_clusters; i++) {
        struct keel_cfg_cluster *cl = &cfg->clusters[i];
        for (size_t j = 0; j < cl->n_endpoints; j++)
            free(cl->endpoints[j].addr.text);
        free(cl->endpoints);
        free(cl->name);
        free(cl->service);
        free(cl->tag);
        free(cl->datacenter);
        free(cl->ns);
        free(cl->partition);
        free(cl->dns_name);
        free(cl->health_check.path);
        free(cl->health_check.method);
        free(cl->health_check.host);
        free(cl->health_check.expect);
        free(cl->health_check.expect_header.name);
        free(cl->health_check.expect_header.value);
        free(cl->hash_on.name);
        free(cl->sticky_cookie);
        free(cl->health_check.grpc_service);
        free(cl->tls.ca_file);
        free(cl->tls.sni);
        free(cl->tls.client.cert);
        free(cl->tls.client.key);
    }
    free(cfg->clusters);
    free(cfg->consul.address);
    free(cfg->consul.token);
    free(cfg->consul.ca_file);
    free(cfg->consul.datacenter);
    free(cfg->consul.catalog_listener);
    for (size_t i = 0; i < cfg->dns.n_servers; i++)
        free(cfg->dns.servers[i].text);
    free(cfg->dns.servers);
    free(cfg->state_file);
    free(cfg->admin.text);
    free(cfg->file);
    free(cfg);
}

static void load_document(struct ctx *c, struct keel_cfg *cfg, const char *buf, size_t len)
{
    yaml_parser_t parser;
    yaml_document_t doc;
    if (!yaml_parser_initialize(&parser)) {
        c->nomem = 1;
        return;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)buf, len);
    if (!yaml_parser_load(&parser, &doc)) {
        yaml_error(c, &parser, buf, len);
        yaml_parser_delete(&parser);
        return;
    }
    c->doc = &doc;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (!root) {
        err_at(c, 1, 1, "",
               "empty configuration (expected a mapping with at least listeners and clusters)");
    } else {
        c->n_nodes = (size_t)(doc.nodes.top - doc.nodes.start);
        c->entered = calloc(c->n_nodes, 1);
        if (!c->entered)
            c->nomem = 1;
        else
            parse_top(c, cfg, root);
        free(c->entered);
        c->entered = NULL;
        yaml_document_t doc2;
        if (!yaml_parser_load(&parser, &doc2)) {
            yaml_error(c, &parser, buf, len);
        } else {
            yaml_node_t *root2 = yaml_document_get_root_node(&doc2);
            if (root2)
                err(c, root2, "",
                    "more than one YAML document (expected exactly one; remove the \"---\")");
            yaml_document_delete(&doc2);
        }
    }
    c->doc = NULL;
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
}

int keel_config_load_buf(const char *name, const char *buf, size_t len, struct keel_cfg **out,
                         struct keel_cfg_errors *errs)
{
    struct ctx c;
    memset(&c, 0, sizeof(c));
    *out = NULL;
    errs->msgs = NULL;
    errs->n = 0;
    c.name = name ? name : "<config>";
    c.errs = errs;
    struct keel_cfg *cfg = calloc(1, sizeof(*cfg));
    if (!cfg)
        return KEEL_ENOMEM;
    cfg->file = strdup(c.name);
    cfg->admin.text = strdup("127.0.0.1:9901");
    cfg->consul.address = strdup("http://127.0.0.1:8500");
    if (!cfg->file || !cfg->admin.text || !cfg->consul.address) {
        keel_config_free(cfg);
        return KEEL_ENOMEM;
    }
    set_ipv4(&cfg->admin, 0x7f000001, 9901);
    cfg->admin_enabled = 1;
    cfg->drain_timeout_ms = 15000;
    cfg->log_level = 2;
    cfg->access_log = 1;
    cfg->consul.wait_ms = 60000;
    cfg->consul.min_interval_ms = 2000;
    cfg->consul.catalog_listener_idx = -1;
    cfg->dns.min_ttl_ms = 1000;
    cfg->dns.max_ttl_ms = 300000;
    cfg->dns.empty_hold_ms = 30000;
    cfg->dns.timeout_ms = 2000;
    cfg->debounce_ms = 100;

    load_document(&c, cfg, buf ? buf : "", buf ? len : 0);

    if (c.nomem) {
        keel_config_errors_free(errs);
        free(c.pos);
        keel_config_free(cfg);
        return KEEL_ENOMEM;
    }
    sort_errors(&c);
    if (c.truncated) {
        /* Appended after sorting so it stays last, at the position of the last error. */
        size_t line = c.pos[errs->n - 1].line, col = c.pos[errs->n - 1].col;
        c.errs->n--;
        char *last = errs->msgs[errs->n];
        err_at(&c, line, col, "", "too many errors (only the first %d are shown)", MAX_ERRORS - 1);
        free(last);
    }
    free(c.pos);
    if (errs->n) {
        keel_config_free(cfg);
        return KEEL_ECONFIG;
    }
    *out = cfg;
    return 0;
}

int keel_config_load_file(const char *path, struct keel_cfg **out, struct keel_cfg_errors *errs)
{
    *out = NULL;
    errs->msgs = NULL;
    errs->n = 0;
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t len = 0, cap = 0;
    int e = 0;
    if (!f) {
        e = errno;
        goto read_fail;
    }
    for (;;) {
        if (len == cap) {
            if (cap >= MAX_FILE_SIZE) {
                e = EFBIG;
                break;
            }
            size_t ncap = cap ? cap * 2 : 8192;
            char *nb = realloc(buf, ncap);
            if (!nb) {
                free(buf);
                fclose(f);
                return KEEL_ENOMEM;
            }
            buf = nb;
            cap = ncap;
        }
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0) {
            if (ferror(f))
                e = errno ? errno : EIO;
            break;
        }
    }
    fclose(f);
    if (e)
        goto read_fail;
    int rc = keel_config_load_buf(path, buf, len, out, errs);
    free(buf);
    return rc;

read_fail:
    free(buf);
    {
        int n = snprintf(NULL, 0, "%s: cannot read: %s", path, strerror(e));
        char *msg = n >= 0 ? malloc((size_t)n + 1) : NULL;
        char **msgs = malloc(sizeof(*msgs));
        if (!msg || !msgs) {
            free(msg);
            free(msgs);
            return KEEL_ENOMEM;
        }
        snprintf(msg, (size_t)n + 1, "%s: cannot read: %s", path, strerror(e));
        msgs[0] = msg;
        errs->msgs = msgs;
        errs->n = 1;
    }
    return KEEL_ECONFIG;
}
