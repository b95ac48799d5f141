/* SPDX-License-Identifier: MIT */
/* Pure parsers for Consul HTTP API answers: health/service, catalog/services, index, tags. */
#include <arpa/inet.h>
#include <inttypes.h>
#include <jansson.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "consul_parse.h"
#include "keel/config.h"
#include "keel/err.h"

/* ---- small helpers ----------------------------------------------------------------------- */

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* Copies at most max bytes of untrusted text for a one-line message: control bytes (and, with
 * quotes set, quote characters) become '?', so a hostile answer cannot forge log lines or break
 * the quoting around the copy. */
static const char *clean_q(char *dst, size_t dstlen, const char *src, size_t max, int quotes)
{
    size_t i = 0;
    for (; src[i] && i < max && i + 1 < dstlen; i++) {
        unsigned char ch = (unsigned char)src[i];
        int bad = ch < 0x20 || ch == 0x7f || (quotes && (ch == '\'' || ch == '"'));
        dst[i] = bad ? '?' : (char)ch;
    }
    dst[i] = '\0';
    if (src[i] && i + 4 < dstlen && i == max) {
        memcpy(dst + i, "...", 4);
    }
    return dst;
}

static const char *clean(char *dst, size_t dstlen, const char *src, size_t max)
{
    return clean_q(dst, dstlen, src, max, 1);
}

static const char *json_type_name(const json_t *j)
{
    switch (json_typeof(j)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
        return "an integer";
    case JSON_REAL:
        return "a real number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    case JSON_NULL:
        return "null";
    }
    return "unknown";
}

static json_t *load_json(const char *body, size_t len, char *err, size_t errlen)
{
    json_error_t je;
    json_t *root = json_loadb(body ? body : "", body ? len : 0, JSON_DECODE_ANY, &je);
    if (!root) {
        char t[96];
        set_err(err, errlen, "invalid JSON at line %d, column %d: %s", je.line, je.column,
                clean_q(t, sizeof(t), je.text, 80, 0));
    }
    return root;
}

static int absent(const json_t *j)
{
    return j == NULL || json_is_null(j);
}

/* ---- health/service ---------------------------------------------------------------------- */

struct weights {
    uint32_t passing, warning;
};

/* Reads Weights.<name>: absent/null -> 1, integer -> clamped, else -1 (wrong type). */
static int read_weight(const json_t *w, const char *name, uint32_t *out)
{
    const json_t *v = json_object_get(w, name);
    if (absent(v)) {
        *out = 1;
        return 0;
    }
    if (!json_is_integer(v))
        return -1;
    json_int_t x = json_integer_value(v);
    *out = x < 0                                    ? 0
           : x > (json_int_t)KEEL_CONSUL_WEIGHT_MAX ? KEEL_CONSUL_WEIGHT_MAX
                                                    : (uint32_t)x;
    return 0;
}

/* A non-empty string member, or NULL. */
static const char *str_member(const json_t *obj, const char *key)
{
    const char *s = json_string_value(json_object_get(obj, key));
    return s && s[0] ? s : NULL;
}

static int set_sockaddr(struct keel_disc_ep *ep, const char *ip, unsigned port)
{
    memset(&ep->sa, 0, sizeof(ep->sa));
    struct sockaddr_in *sin = (struct sockaddr_in *)&ep->sa;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ep->sa;
    if (inet_pton(AF_INET, ip, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)port);
        ep->salen = sizeof(*sin);
        snprintf(ep->name, sizeof(ep->name), "%s:%u", ip, port);
        return 0;
    }
    if (inet_pton(AF_INET6, ip, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)port);
        ep->salen = sizeof(*sin6);
        /* Print it back canonically: "0:0::1" and "::1" are the same endpoint name. */
        char canon[INET6_ADDRSTRLEN];
        inet_ntop(AF_INET6, &sin6->sin6_addr, canon, sizeof(canon));
        snprintf(ep->name, sizeof(ep->name), "[%s]:%u", canon, port);
        return 0;
    }
    return -1;
}

/* Health of one entry from its checks. Returns 0, or -1 with why set (wrong shape). */
static int read_checks(const json_t *checks, const struct keel_consul_opts *o,
                       const struct weights *w, struct keel_disc_ep *ep, char *why, size_t wl)
{
    int node_maint = 0, svc_maint = 0;
    const char *critical = NULL, *warning = NULL;
    if (!absent(checks)) {
        if (!json_is_array(checks)) {
            snprintf(why, wl, "Checks is %s, not an array", json_type_name(checks));
            return -1;
        }
        size_t i;
        const json_t *c;
        json_array_foreach(checks, i, c)
        {
            if (!json_is_object(c)) {
                snprintf(why, wl, "Checks[%zu] is %s, not an object", i, json_type_name(c));
                return -1;
            }
            const char *cid = str_member(c, "CheckID");
            if (!cid)
                cid = str_member(c, "Name");
            if (!cid)
                cid = "?";
            const char *status = json_string_value(json_object_get(c, "Status"));
            if (strcmp(cid, "_node_maintenance") == 0) {
                node_maint = 1;
            } else if (strncmp(cid, "_service_maintenance:", 21) == 0) {
                svc_maint = 1;
            } else if (status && strcmp(status, "passing") == 0) {
                /* nothing */
            } else if (status && strcmp(status, "warning") == 0) {
                if (!warning)
                    warning = cid;
            } else if (!critical) {
                /* "critical", and also a missing or unknown status: never serve on a state
                 * we cannot read. */
                critical = cid;
            }
        }
    }

    char name[84]; /* fits every reason below into KEEL_DISC_REASON_MAX */
    ep->draining = 0;
    ep->weight = 0;
    if (node_maint) {
        ep->draining = 1;
        snprintf(ep->reason, sizeof(ep->reason), "node maintenance");
    } else if (svc_maint) {
        ep->draining = 1;
        snprintf(ep->reason, sizeof(ep->reason), "service maintenance");
    } else if (critical) {
        ep->draining = 1;
        snprintf(ep->reason, sizeof(ep->reason), "critical: check '%s'",
                 clean(name, sizeof(name), critical, 78));
    } else if (warning) {
        clean(name, 65, warning, 60);
        if (o->warning_drain) {
            ep->draining = 1;
            snprintf(ep->reason, sizeof(ep->reason), "warning: check '%.64s' (draining)", name);
        } else if (w->warning == 0) {
            ep->draining = 1;
            snprintf(ep->reason, sizeof(ep->reason), "warning: check '%.64s' (weight 0)", name);
        } else {
            ep->weight = w->warning;
            snprintf(ep->reason, sizeof(ep->reason),
                     "warning: check '%.64s' (serving at weight %u)", name, (unsigned)w->warning);
        }
    } else if (w->passing == 0) {
        ep->draining = 1;
        snprintf(ep->reason, sizeof(ep->reason), "weight 0");
    } else {
        ep->weight = w->passing;
        snprintf(ep->reason, sizeof(ep->reason), "passing");
    }
    return 0;
}

/* Parses one entry into ep. Returns 0, or -1 with why set when the entry is skipped. */
static int parse_entry(const json_t *e, const struct keel_consul_opts *o, struct keel_disc_ep *ep,
                       char *why, size_t wl)
{
    char t[96];
    memset(ep, 0, sizeof(*ep));
    if (!json_is_object(e)) {
        snprintf(why, wl, "is %s, not an object", json_type_name(e));
        return -1;
    }
    const json_t *node = json_object_get(e, "Node");
    const json_t *svc = json_object_get(e, "Service");
    if (!json_is_object(node)) {
        snprintf(why, wl, "Node is %s, not an object", node ? json_type_name(node) : "missing");
        return -1;
    }
    if (!json_is_object(svc)) {
        snprintf(why, wl, "Service is %s, not an object", svc ? json_type_name(svc) : "missing");
        return -1;
    }
    const char *node_name = str_member(node, "Node");
    const char *sid = str_member(svc, "ID");
    if (!node_name) {
        snprintf(why, wl, "Node.Node is missing or not a non-empty string");
        return -1;
    }
    if (!sid) {
        snprintf(why, wl, "Service.ID is missing or not a non-empty string");
        return -1;
    }
    int n = snprintf(ep->id, sizeof(ep->id), "%s/%s", node_name, sid);
    if (n < 0 || (size_t)n >= sizeof(ep->id)) {
        snprintf(why, wl, "id \"%s/...\" is longer than %d bytes",
                 clean(t, sizeof(t), node_name, 40), KEEL_DISC_ID_MAX - 1);
        return -1;
    }

    const json_t *sa = json_object_get(svc, "Address");
    if (!absent(sa) && !json_is_string(sa)) {
        snprintf(why, wl, "Service.Address is %s, not a string", json_type_name(sa));
        return -1;
    }
    const char *addr = str_member(svc, "Address");
    const char *from = "Service.Address";
    if (!addr) {
        const json_t *na = json_object_get(node, "Address");
        if (!absent(na) && !json_is_string(na)) {
            snprintf(why, wl, "Node.Address is %s, not a string", json_type_name(na));
            return -1;
        }
        addr = str_member(node, "Address");
        from = "Node.Address";
    }
    if (!addr) {
        snprintf(why, wl, "no address (Service.Address and Node.Address are empty)");
        return -1;
    }

    const json_t *p = json_object_get(svc, "Port");
    if (!json_is_integer(p) || json_integer_value(p) < 1 || json_integer_value(p) > 65535) {
        if (json_is_integer(p))
            snprintf(why, wl, "Service.Port %" JSON_INTEGER_FORMAT " is out of range 1..65535",
                     json_integer_value(p));
        else
            snprintf(why, wl, "Service.Port is %s, not an integer",
                     p ? json_type_name(p) : "missing");
        return -1;
    }
    if (set_sockaddr(ep, addr, (unsigned)json_integer_value(p)) != 0) {
        snprintf(why, wl, "%s \"%s\" is not a numeric IP address (hostnames are not resolved)",
                 from, clean(t, sizeof(t), addr, 64));
        return -1;
    }

    struct weights w = {1, 1};
    const json_t *wj = json_object_get(svc, "Weights");
    if (!absent(wj)) {
        if (!json_is_object(wj)) {
            snprintf(why, wl, "Service.Weights is %s, not an object", json_type_name(wj));
            return -1;
        }
        if (read_weight(wj, "Passing", &w.passing) != 0 ||
            read_weight(wj, "Warning", &w.warning) != 0) {
            snprintf(why, wl, "Service.Weights.Passing/Warning is not an integer");
            return -1;
        }
    }

    const json_t *mi = json_object_get(svc, "ModifyIndex");
    if (!absent(mi)) {
        if (!json_is_integer(mi) || json_integer_value(mi) < 0) {
            snprintf(why, wl, "Service.ModifyIndex is not a non-negative integer");
            return -1;
        }
        ep->modify_index = (uint64_t)json_integer_value(mi);
    }

    return read_checks(json_object_get(e, "Checks"), o, &w, ep, why, wl);
}

/* A parsed entry before de-duplication. */
struct parsed {
    struct keel_disc_ep *ep;
    const json_t *svc; /* its Service object, for tags and meta */
    size_t seq;        /* position in the answer */
};

static int cmp_parsed(const void *a, const void *b)
{
    const struct parsed *x = a, *y = b;
    int c = strcmp(x->ep->id, y->ep->id);
    if (c)
        return c;
    if (x->ep->modify_index != y->ep->modify_index)
        return x->ep->modify_index > y->ep->modify_index ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static int is_keel_tag(const char *s)
{
    return strcmp(s, "keel") == 0 || strncmp(s, "keel.", 5) == 0;
}

static int has_string(const json_t *arr, const char *s)
{
    size_t i;
    const json_t *v;
    json_array_foreach(arr, i, v)
    {
        const char *t = json_string_value(v);
        if (t && strcmp(t, s) == 0)
            return 1;
    }
    return 0;
}

/* Is every keel tag / keel-* meta entry of a also in b? */
static int keel_subset(const json_t *a, const json_t *b)
{
    const json_t *at = json_object_get(a, "Tags"), *bt = json_object_get(b, "Tags");
    size_t i;
    const json_t *v;
    if (json_is_array(at)) {
        json_array_foreach(at, i, v)
        {
            const char *s = json_string_value(v);
            if (s && is_keel_tag(s) && (!json_is_array(bt) || !has_string(bt, s)))
                return 0;
        }
    }
    const json_t *am = json_object_get(a, "Meta"), *bm = json_object_get(b, "Meta");
    if (json_is_object(am)) {
        const char *k;
        json_object_foreach((json_t *)am, k, v)
        {
            const char *s = json_string_value(v);
            if (strncmp(k, "keel-", 5) != 0 || !s)
                continue;
            const char *o = json_is_object(bm) ? json_string_value(json_object_get(bm, k)) : NULL;
            if (!o || strcmp(o, s) != 0)
                return 0;
        }
    }
    return 1;
}

static char **dup_strings(const json_t *arr, size_t *n)
{
    *n = 0;
    if (!json_is_array(arr) || json_array_size(arr) == 0)
        return NULL;
    char **v = calloc(json_array_size(arr), sizeof(*v));
    if (!v)
        return NULL;
    size_t i;
    const json_t *x;
    json_array_foreach(arr, i, x)
    {
        const char *s = json_string_value(x);
        if (!s)
            continue;
        if (!(v[*n] = strdup(s)))
            return v; /* caller sees the short count and frees */
        (*n)++;
    }
    return v;
}

static void free_strings(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

void keel_consul_svcinfo_free(struct keel_consul_svcinfo *info)
{
    if (!info)
        return;
    free_strings(info->tags, info->n_tags);
    free_strings(info->meta_keys, info->n_meta);
    free_strings(info->meta_values, info->n_meta);
    memset(info, 0, sizeof(*info));
}

static int fill_info(struct keel_consul_svcinfo *info, const struct parsed *pv, size_t np)
{
    if (np == 0)
        return 0;
    const struct parsed *newest = &pv[0];
    for (size_t i = 1; i < np; i++)
        if (pv[i].ep->modify_index > newest->ep->modify_index ||
            (pv[i].ep->modify_index == newest->ep->modify_index && pv[i].seq < newest->seq))
            newest = &pv[i];
    memcpy(info->newest_id, newest->ep->id, sizeof(info->newest_id));
    info->newest_index = newest->ep->modify_index;
    for (size_t i = 0; i < np; i++) {
        if (&pv[i] == newest)
            continue;
        if (!keel_subset(pv[i].svc, newest->svc) || !keel_subset(newest->svc, pv[i].svc)) {
            if (info->conflicts++ == 0)
                memcpy(info->conflict_id, pv[i].ep->id, sizeof(info->conflict_id));
        }
    }

    const json_t *tags = json_object_get(newest->svc, "Tags");
    info->tags = dup_strings(tags, &info->n_tags);
    size_t want = 0;
    if (json_is_array(tags))
        for (size_t i = 0; i < json_array_size(tags); i++)
            want += json_is_string(json_array_get(tags, i));
    if (info->n_tags != want)
        return KEEL_ENOMEM;

    const json_t *meta = json_object_get(newest->svc, "Meta");
    if (!json_is_object(meta) || json_object_size(meta) == 0)
        return 0;
    size_t cap = json_object_size(meta);
    info->meta_keys = calloc(cap, sizeof(char *));
    info->meta_values = calloc(cap, sizeof(char *));
    if (!info->meta_keys || !info->meta_values)
        return KEEL_ENOMEM;
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)meta, k, v)
    {
        const char *s = json_string_value(v);
        if (!s)
            continue;
        char *dk = strdup(k), *dv = strdup(s);
        if (!dk || !dv) {
            free(dk);
            free(dv);
            return KEEL_ENOMEM;
        }
        info->meta_keys[info->n_meta] = dk;
        info->meta_values[info->n_meta] = dv;
        info->n_meta++;
    }
    return 0;
}

int keel_consul_parse_health(const char *body, size_t len, const struct keel_consul_opts *o,
                             struct keel_disc_set *out, size_t *skipped,
                             struct keel_consul_svcinfo *info, char *err, size_t errlen)
{
    static const struct keel_consul_opts defaults;
    struct keel_disc_ep *eps = NULL;
    struct parsed *pv = NULL;
    size_t nskip = 0, np = 0;
    int rc = 0;

    memset(out, 0, sizeof(*out));
    if (info)
        memset(info, 0, sizeof(*info));
    if (skipped)
        *skipped = 0;
    set_err(err, errlen, "%s", "");
    if (!o)
        o = &defaults;

    json_t *root = load_json(body, len, err, errlen);
    if (!root)
        return KEEL_EBADMSG;
    if (!json_is_array(root)) {
        set_err(err, errlen, "top level is %s, not an array", json_type_name(root));
        json_decref(root);
        return KEEL_EBADMSG;
    }

    size_t n = json_array_size(root);
    if (n > 0) {
        eps = calloc(n, sizeof(*eps));
        pv = calloc(n, sizeof(*pv));
        if (!eps || !pv) {
            rc = KEEL_ENOMEM;
            goto fail;
        }
    }
    for (size_t i = 0; i < n; i++) {
        const json_t *e = json_array_get(root, i);
        char why[200];
        if (parse_entry(e, o, &eps[np], why, sizeof(why)) != 0) {
            if (nskip++ == 0)
                set_err(err, errlen, "entry %zu: %s", i, why);
            continue;
        }
        pv[np].ep = &eps[np];
        pv[np].svc = json_object_get(e, "Service");
        pv[np].seq = i;
        np++;
    }

    if (info && (rc = fill_info(info, pv, np)) != 0)
        goto fail;

    /* Sorted by id, the first of each run is the one with the highest ModifyIndex. */
    if (np > 1)
        qsort(pv, np, sizeof(*pv), cmp_parsed);
    struct keel_disc_ep *res = np ? calloc(np, sizeof(*res)) : NULL;
    if (np && !res) {
        rc = KEEL_ENOMEM;
        goto fail;
    }
    size_t nres = 0;
    for (size_t i = 0; i < np; i++) {
        if (nres > 0 && strcmp(res[nres - 1].id, pv[i].ep->id) == 0) {
            if (nskip++ == 0) {
                char t[96];
                set_err(err, errlen,
                        "entry %zu: duplicate id \"%s\" (ModifyIndex %" PRIu64
                        ", kept the one with %" PRIu64 ")",
                        pv[i].seq, clean(t, sizeof(t), pv[i].ep->id, 80), pv[i].ep->modify_index,
                        res[nres - 1].modify_index);
            }
            continue;
        }
        res[nres++] = *pv[i].ep;
    }
    out->eps = res;
    out->n = nres;
    if (skipped)
        *skipped = nskip;
    free(eps);
    free(pv);
    json_decref(root);
    return 0;

fail:
    free(eps);
    free(pv);
    json_decref(root);
    if (info)
        keel_consul_svcinfo_free(info);
    set_err(err, errlen, "out of memory");
    return rc;
}

/* ---- catalog/services -------------------------------------------------------------------- */

void keel_consul_services_free(struct keel_consul_services *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n; i++) {
        free(s->v[i].name);
        free_strings(s->v[i].tags, s->v[i].n_tags);
    }
    free(s->v);
    memset(s, 0, sizeof(*s));
}

static int cmp_service(const void *a, const void *b)
{
    const struct keel_consul_service *x = a, *y = b;
    return strcmp(x->name, y->name);
}

int keel_consul_parse_services(const char *body, size_t len, struct keel_consul_services *out,
                               char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    set_err(err, errlen, "%s", "");
    json_t *root = load_json(body, len, err, errlen);
    if (!root)
        return KEEL_EBADMSG;
    int rc = KEEL_EBADMSG;
    char t[96];
    if (!json_is_object(root)) {
        set_err(err, errlen, "top level is %s, not an object", json_type_name(root));
        goto fail;
    }
    size_t cap = json_object_size(root);
    if (cap && !(out->v = calloc(cap, sizeof(*out->v)))) {
        rc = KEEL_ENOMEM;
        goto fail;
    }
    const char *name;
    json_t *tags;
    json_object_foreach(root, name, tags)
    {
        if (!absent(tags) && !json_is_array(tags)) {
            set_err(err, errlen, "service \"%s\": tags are %s, not an array",
                    clean(t, sizeof(t), name, 64), json_type_name(tags));
            goto fail;
        }
        struct keel_consul_service *s = &out->v[out->n];
        if (!(s->name = strdup(name))) {
            rc = KEEL_ENOMEM;
            goto fail;
        }
        out->n++;
        size_t nt = absent(tags) ? 0 : json_array_size(tags);
        if (nt && !(s->tags = calloc(nt, sizeof(char *)))) {
            rc = KEEL_ENOMEM;
            goto fail;
        }
        for (size_t i = 0; i < nt; i++) {
            const json_t *tj = json_array_get(tags, i);
            if (!json_is_string(tj)) {
                set_err(err, errlen, "service \"%s\": tag %zu is %s, not a string",
                        clean(t, sizeof(t), name, 64), i, json_type_name(tj));
                goto fail;
            }
            if (!(s->tags[s->n_tags] = strdup(json_string_value(tj)))) {
                rc = KEEL_ENOMEM;
                goto fail;
            }
            s->n_tags++;
        }
    }
    if (out->n > 1)
        qsort(out->v, out->n, sizeof(*out->v), cmp_service);
    json_decref(root);
    return 0;

fail:
    if (rc == KEEL_ENOMEM)
        set_err(err, errlen, "out of memory");
    keel_consul_services_free(out);
    json_decref(root);
    return rc;
}

/* ---- blocking-query index ---------------------------------------------------------------- */

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

int keel_consul_parse_index(const char *value, size_t len, uint64_t *out)
{
    if (!value)
        return KEEL_EINVAL;
    while (len > 0 && is_space(value[0])) {
        value++;
        len--;
    }
    while (len > 0 && is_space(value[len - 1]))
        len--;
    if (len == 0)
        return KEEL_EINVAL;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (value[i] < '0' || value[i] > '9')
            return KEEL_EINVAL;
        unsigned d = (unsigned)(value[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return KEEL_EINVAL;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

uint64_t keel_consul_next_index(uint64_t prev, uint64_t got)
{
    if (got < prev)
        return 0;
    return got < 1 ? 1 : got;
}

/* ---- keel.* tags ------------------------------------------------------------------------- */

enum tag_field { F_ROUTE, F_PROTOCOL, F_LB, F_WARNING, F__COUNT };

static const char *const tag_names[F__COUNT] = {"keel.route", "keel.protocol", "keel.lb",
                                                "keel.warning"};
static const char *const meta_names[F__COUNT] = {"keel-route", "keel-protocol", "keel-lb",
                                                 "keel-warning"};
static const char *const proto_names[] = {"http", "h2", "grpc", "tcp"};

#define ROUTE_MAX 1024

const char *keel_consul_proto_str(int proto)
{
    if (proto < 0 || proto >= (int)(sizeof(proto_names) / sizeof(proto_names[0])))
        return "unknown";
    return proto_names[proto];
}

struct tagctx {
    struct keel_consul_tagcfg *c;
    size_t left_off;
    int nomem;
};

static void add_error(struct tagctx *x, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void add_error(struct tagctx *x, const char *fmt, ...)
{
    if (x->c->n_errors >= KEEL_CONSUL_TAG_ERRORS_MAX) {
        x->left_off++;
        return;
    }
    if (!x->c->errors && !(x->c->errors = calloc(KEEL_CONSUL_TAG_ERRORS_MAX + 1, sizeof(char *)))) {
        x->nomem = 1;
        return;
    }
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    char *s = strdup(buf);
    if (!s) {
        x->nomem = 1;
        return;
    }
    x->c->errors[x->c->n_errors++] = s;
}

static int host_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '-' || ch == '.';
}

/* Validates "<host><path>". Returns NULL or a short reason. */
static const char *check_route(const char *v)
{
    size_t len = strlen(v);
    if (len == 0)
        return "empty route";
    if (len > ROUTE_MAX)
        return "route too long";
    if (strstr(v, "://"))
        return "route must not have a scheme (write host/path)";
    const char *slash = strchr(v, '/');
    size_t hlen = slash ? (size_t)(slash - v) : len;
    const char *colon = memchr(v, ':', hlen);
    size_t name_len = colon ? (size_t)(colon - v) : hlen;
    for (size_t i = 0; i < name_len; i++)
        if (!host_char(v[i]))
            return "invalid character in host";
    if (hlen > 0 && (name_len == 0 || v[0] == '.' || v[0] == '-'))
        return "invalid host";
    if (colon) {
        size_t plen = hlen - name_len - 1;
        unsigned port = 0;
        if (plen == 0 || plen > 5)
            return "invalid port in host";
        for (size_t i = 1; i <= plen; i++) {
            if (colon[i] < '0' || colon[i] > '9')
                return "invalid port in host";
            port = port * 10 + (unsigned)(colon[i] - '0');
        }
        if (port == 0 || port > 65535)
            return "invalid port in host";
    }
    if (slash)
        for (const char *p = slash; *p; p++)
            if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f || *p == '?' || *p == '#')
                return "invalid character in path";
    return NULL;
}

/* Applies one value (already known to be for field f). Returns 0 or -1 (bad value, reported). */
static int apply_value(struct tagctx *x, enum tag_field f, const char *v, const char *src,
                       const char *key)
{
    struct keel_consul_tagcfg *c = x->c;
    char t[96];
    const char *why = NULL;
    switch (f) {
    case F_ROUTE: {
        if ((why = check_route(v)) != NULL)
            break;
        const char *slash = strchr(v, '/');
        size_t hlen = slash ? (size_t)(slash - v) : strlen(v);
        char *host = hlen ? strndup(v, hlen) : NULL;
        char *path = slash ? strdup(slash) : NULL;
        if ((hlen && !host) || (slash && !path)) {
            free(host);
            free(path);
            x->nomem = 1;
            return -1;
        }
        for (char *p = host; p && *p; p++)
            if (*p >= 'A' && *p <= 'Z')
                *p = (char)(*p - 'A' + 'a');
        free(c->route_host);
        free(c->route_path);
        c->route_host = host;
        c->route_path = path;
        return 0;
    }
    case F_PROTOCOL:
        for (int i = 0; i < (int)(sizeof(proto_names) / sizeof(proto_names[0])); i++)
            if (strcmp(v, proto_names[i]) == 0) {
                c->protocol = i;
                return 0;
            }
        why = "unknown protocol (http, h2, grpc, tcp)";
        break;
    case F_LB:
        for (int i = 0; i < KEEL_LB__COUNT; i++)
            if (strcmp(v, keel_config_lb_name((enum keel_lb_policy)i)) == 0) {
                c->lb = i;
                return 0;
            }
        why = "unknown policy";
        break;
    case F_WARNING:
        if (strcmp(v, "drain") == 0 || strcmp(v, "serve") == 0) {
            c->warning_drain = v[0] == 'd';
            return 0;
        }
        why = "expected drain or serve";
        break;
    case F__COUNT:
        break;
    }
    add_error(x, "%s%s=%s: %s", src, key, clean(t, sizeof(t), v, 64), why ? why : "invalid");
    return -1;
}

int keel_consul_parse_tags(const char *const *tags, size_t n_tags, const char *const *meta_keys,
                           const char *const *meta_values, size_t n_meta,
                           struct keel_consul_tagcfg *out)
{
    struct tagctx x = {out, 0, 0};
    const char *tag_val[F__COUNT] = {0};
    char t[96], t2[96];

    memset(out, 0, sizeof(*out));
    out->protocol = KEEL_CONSUL_PROTO_HTTP;
    out->lb = KEEL_LB_WEIGHTED_LEAST_CONN;

    for (size_t i = 0; tags && i < n_tags; i++) {
        const char *s = tags[i];
        if (!s)
            continue;
        if (strcmp(s, "keel") == 0) {
            out->enabled = 1;
            continue;
        }
        if (strncmp(s, "keel.", 5) != 0)
            continue;
        const char *eq = strchr(s, '=');
        size_t klen = eq ? (size_t)(eq - s) : strlen(s);
        int f = -1;
        for (int k = 0; k < F__COUNT; k++)
            if (strlen(tag_names[k]) == klen && strncmp(s, tag_names[k], klen) == 0)
                f = k;
        if (f < 0) {
            add_error(&x, "%s: unknown tag", clean(t, sizeof(t), s, 80));
            continue;
        }
        if (!eq) {
            add_error(&x, "%s: missing =value", tag_names[f]);
            continue;
        }
        if (tag_val[f]) {
            if (strcmp(tag_val[f], eq + 1) != 0)
                add_error(&x, "%s=%s: given more than once, the first (%s) counts", tag_names[f],
                          clean(t, sizeof(t), eq + 1, 64), clean(t2, sizeof(t2), tag_val[f], 64));
            continue;
        }
        tag_val[f] = eq + 1;
        apply_value(&x, (enum tag_field)f, eq + 1, "", tag_names[f]);
    }

    /* Meta second, so a valid meta value overrides the tag; an invalid one leaves the tag's. */
    for (size_t i = 0; meta_keys && meta_values && i < n_meta; i++) {
        const char *k = meta_keys[i], *v = meta_values[i];
        if (!k || !v || strncmp(k, "keel-", 5) != 0)
            continue;
        int f = -1;
        for (int j = 0; j < F__COUNT; j++)
            if (strcmp(k, meta_names[j]) == 0)
                f = j;
        if (f < 0) {
            add_error(&x, "meta %s: unknown key", clean(t, sizeof(t), k, 80));
            continue;
        }
        apply_value(&x, (enum tag_field)f, v, "meta ", meta_names[f]);
    }

    if (x.left_off && !x.nomem) {
        /* The array has one spare slot for this line. */
        char buf[64];
        snprintf(buf, sizeof(buf), "(%zu more errors left off)", x.left_off);
        char *s = strdup(buf);
        if (!s)
            x.nomem = 1;
        else
            out->errors[out->n_errors++] = s;
    }
    return x.nomem ? KEEL_ENOMEM : 0;
}

void keel_consul_tagcfg_free(struct keel_consul_tagcfg *c)
{
    if (!c)
        return;
    free(c->route_host);
    free(c->route_path);
    free_strings(c->errors, c->n_errors);
    memset(c, 0, sizeof(*c));
}
