/* SPDX-License-Identifier: MIT */
/* First-match routing over a listener's route table. */
#include <string.h>
#include <strings.h>
#include "keel/router.h"

static unsigned char lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + 32) : c;
}

static int ieq(const char *a, size_t alen, const char *b, size_t blen)
{
    if (alen != blen)
        return 0;
    for (size_t i = 0; i < alen; i++)
        if (lower((unsigned char)a[i]) != lower((unsigned char)b[i]))
            return 0;
    return 1;
}

void keel_router_prepare(struct keel_route_req *rr, const struct keel_http1_request *req)
{
    const char *t = req->target;
    size_t tl = req->target_len;
    rr->host = NULL;
    rr->host_len = 0;
    rr->absolute = 0;
    rr->rest = NULL;
    rr->rest_len = 0;
    if (req->host_index >= 0) {
        rr->host = req->headers[req->host_index].value;
        rr->host_len = req->headers[req->host_index].value_len;
    }
    /* absolute-form: scheme "://" authority path */
    const char *sep = tl > 3 ? memchr(t, ':', tl < 16 ? tl : 16) : NULL;
    if (t[0] != '/' && sep && (size_t)(sep - t) + 3 <= tl && sep[1] == '/' && sep[2] == '/') {
        const char *auth = sep + 3;
        const char *end = t + tl;
        const char *p = auth;
        while (p < end && *p != '/' && *p != '?')
            p++;
        rr->host = auth;
        rr->host_len = (size_t)(p - auth);
        rr->absolute = 1;
        rr->rest = p;
        rr->rest_len = (size_t)(end - p);
        t = p;
        tl = (size_t)(end - p);
        if (tl == 0 || *t != '/') {
            t = "/";
            tl = 1;
        }
    }
    const char *q = memchr(t, '?', tl);
    rr->path = t;
    rr->path_len = q ? (size_t)(q - t) : tl;
    rr->headers = req->headers;
    rr->n_headers = req->num_headers;
}

static int host_matches(const char *want, const char *host, size_t len)
{
    /* The port is not part of the name. IPv6 literals keep their brackets. */
    if (len && host[0] != '[') {
        const char *c = memchr(host, ':', len);
        if (c)
            len = (size_t)(c - host);
    } else if (len) {
        const char *c = memchr(host, ']', len);
        if (c)
            len = (size_t)(c - host) + 1;
    }
    size_t wl = strlen(want);
    if (wl > 2 && want[0] == '*' && want[1] == '.') {
        /* "*.example.com" matches any subdomain, not the apex. */
        size_t sl = wl - 1; /* ".example.com" */
        return len > sl && ieq(host + len - sl, sl, want + 1, sl);
    }
    return ieq(host, len, want, wl);
}

static int header_matches(const struct keel_route_req *rr, const struct keel_cfg_kv *kv)
{
    size_t nl = strlen(kv->name);
    for (size_t i = 0; i < rr->n_headers; i++) {
        const struct keel_http1_header *h = &rr->headers[i];
        if (!ieq(h->name, h->name_len, kv->name, nl))
            continue;
        if (!kv->value)
            return 1;
        if (h->value_len == strlen(kv->value) && memcmp(h->value, kv->value, h->value_len) == 0)
            return 1;
    }
    return 0;
}

/* Cookie: a=b; c=d (RFC 6265 5.4), possibly in several Cookie headers. Finds the next cookie
 * called name at or after header *hi, byte *off; advances them past it. */
static int cookie_next(const struct keel_http1_header *hs, size_t n, const char *name, size_t nl,
                       size_t *hi, size_t *off, const char **val, size_t *val_len)
{
    for (; *hi < n; (*hi)++, *off = 0) {
        const struct keel_http1_header *h = &hs[*hi];
        if (!ieq(h->name, h->name_len, "cookie", 6))
            continue;
        const char *p = h->value + *off, *end = h->value + h->value_len;
        while (p < end) {
            while (p < end && (*p == ' ' || *p == ';'))
                p++;
            const char *pair = p;
            while (p < end && *p != ';')
                p++;
            const char *eq = memchr(pair, '=', (size_t)(p - pair));
            if (!eq)
                continue;
            size_t klen = (size_t)(eq - pair);
            while (klen && pair[klen - 1] == ' ')
                klen--;
            if (klen != nl || memcmp(pair, name, nl) != 0)
                continue;
            const char *v = eq + 1;
            size_t vlen = (size_t)(p - v);
            while (vlen && v[vlen - 1] == ' ')
                vlen--;
            if (vlen >= 2 && v[0] == '"' && v[vlen - 1] == '"') {
                v++;
                vlen -= 2;
            }
            *off = (size_t)(p - h->value);
            *val = v;
            *val_len = vlen;
            return 1;
        }
    }
    return 0;
}

static int cookie_matches(const struct keel_route_req *rr, const struct keel_cfg_kv *kv)
{
    size_t hi = 0, off = 0, vlen;
    const char *v;
    size_t nl = strlen(kv->name);
    while (cookie_next(rr->headers, rr->n_headers, kv->name, nl, &hi, &off, &v, &vlen))
        if (!kv->value || (vlen == strlen(kv->value) && memcmp(v, kv->value, vlen) == 0))
            return 1;
    return 0;
}

int keel_router_cookie(const struct keel_http1_header *hs, size_t n, const char *name,
                       const char **val, size_t *val_len)
{
    size_t hi = 0, off = 0;
    return cookie_next(hs, n, name, strlen(name), &hi, &off, val, val_len);
}

int keel_router_match_one(const struct keel_cfg_match *m, const struct keel_route_req *rr)
{
    if (m->host && !(rr->host && host_matches(m->host, rr->host, rr->host_len)))
        return 0;
    if (m->path) {
        size_t l = strlen(m->path);
        if (rr->path_len != l || memcmp(rr->path, m->path, l) != 0)
            return 0;
    }
    if (m->path_prefix) {
        size_t l = strlen(m->path_prefix);
        if (rr->path_len < l || memcmp(rr->path, m->path_prefix, l) != 0)
            return 0;
    }
    for (size_t i = 0; i < m->n_headers; i++)
        if (!header_matches(rr, &m->headers[i]))
            return 0;
    for (size_t i = 0; i < m->n_cookies; i++)
        if (!cookie_matches(rr, &m->cookies[i]))
            return 0;
    return 1;
}

int keel_router_match(const struct keel_snap_listener *l, const struct keel_route_req *rr)
{
    for (uint32_t i = 0; i < l->n_routes; i++)
        if (keel_router_match_one(l->routes[i].match, rr))
            return (int)l->routes[i].cluster;
    return -1;
}
