/* SPDX-License-Identifier: MIT */
/* hash: consistent hashing of a header, cookie or the client IP with bounded load (Mirrokni,
 * Thorup, Zadimoghaddam, "Consistent Hashing with Bounded Loads", 2016), over weighted
 * rendezvous hashing. Also finds the key in a request head (keel_balancer_key_hash()). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "keel/balancer.h"

/* No endpoint takes more than this factor times its weighted share of the in-flight requests
 * (counting the one being placed). 1.25 is the paper's and HAProxy's usual choice: a key moves
 * off its endpoint only when that one is clearly hotter than the average, and the expected
 * number of endpoints a key walks past stays small. */
#define HASH_LOAD_FACTOR 1.25

/*
 * The endpoints in the key's rendezvous order, skipping those at or above their load bound
 * ceil(1.25 x (in flight + 1) x weight / total weight): the first one left is the
 * highest-ranked endpoint under its bound, found in one pass. Some endpoint is always under
 * its bound (the bounds sum to more than the in-flight total); should racing workers make the
 * reads say otherwise, the key's first choice is used.
 */
static int hash_pick(const struct keel_cluster *cl, void *st, const struct keel_lb_req *req)
{
    const struct keel_rendezvous_state *s = st;
    uint64_t key = req->hash;
    uint64_t total_active = 0, total_weight = 0;

    if (s != NULL && s->n != cl->n_eps)
        s = NULL;
    for (uint32_t i = 0; i < cl->n_eps; i++) {
        if (!keel_balancer_usable(cl, req, i))
            continue;
        total_active += keel_balancer_active(&cl->eps[i]);
        total_weight += cl->eps[i].weight;
    }
    if (total_weight == 0)
        return -1;
    double per_weight = HASH_LOAD_FACTOR * (double)(total_active + 1) / (double)total_weight;

    /* With equal weights the score is monotonic in h: compare hashes, skip the logarithm. */
    int uniform = s != NULL && s->uniform;
    int best = -1, first = -1;
    uint64_t best_h = 0, first_h = 0;
    double best_sc = 0, first_sc = 0;
    for (uint32_t i = 0; i < cl->n_eps; i++) {
        const struct keel_endpoint *ep = &cl->eps[i];
        if (!keel_balancer_usable(cl, req, i))
            continue;
        uint64_t h = keel_balancer_mix(key ^ (s ? s->id[i] : keel_balancer_ep_hash(ep)));
        double sc = uniform ? 0 : keel_balancer_rendezvous(h, ep->weight);
        if (first < 0 || (uniform ? h > first_h : sc > first_sc)) {
            first = (int)i;
            first_h = h;
            first_sc = sc;
        }
        double bound = ceil(per_weight * ep->weight);
        if ((double)keel_balancer_active(ep) >= bound)
            continue;
        if (best < 0 || (uniform ? h > best_h : sc > best_sc)) {
            best = (int)i;
            best_h = h;
            best_sc = sc;
        }
    }
    return best >= 0 ? best : first;
}

const struct keel_lb_ops keel_lb_hash = {
    .name = "hash",
    .state_new = keel_balancer_rendezvous_state_new,
    .state_free = keel_balancer_state_free,
    .pick = hash_pick,
};

/* ---- the key ---------------------------------------------------------------------------- */

static int name_eq(const char *a, size_t alen, const char *b, size_t blen)
{
    if (alen != blen)
        return 0;
    for (size_t i = 0; i < alen; i++) {
        unsigned char x = (unsigned char)a[i], y = (unsigned char)b[i];
        if (x >= 'A' && x <= 'Z')
            x = (unsigned char)(x - 'A' + 'a');
        if (y >= 'A' && y <= 'Z')
            y = (unsigned char)(y - 'A' + 'a');
        if (x != y)
            return 0;
    }
    return 1;
}

/* The value of cookie `want` in one Cookie header value ("a=b; c=d", RFC 6265 5.4), quotes
 * removed; NULL when absent. Cookie names are case-sensitive. */
static const char *find_cookie(const char *p, const char *end, const char *want, size_t wl,
                               size_t *vlen)
{
    while (p < end) {
        while (p < end && (*p == ' ' || *p == '\t' || *p == ';'))
            p++;
        const char *pair = p;
        while (p < end && *p != ';')
            p++;
        const char *eq = memchr(pair, '=', (size_t)(p - pair));
        if (eq == NULL)
            continue;
        size_t klen = (size_t)(eq - pair);
        while (klen && (pair[klen - 1] == ' ' || pair[klen - 1] == '\t'))
            klen--;
        if (klen != wl || memcmp(pair, want, wl) != 0)
            continue;
        const char *v = eq + 1;
        size_t l = (size_t)(p - v);
        while (l && (*v == ' ' || *v == '\t')) {
            v++;
            l--;
        }
        while (l && (v[l - 1] == ' ' || v[l - 1] == '\t'))
            l--;
        if (l >= 2 && v[0] == '"' && v[l - 1] == '"') {
            v++;
            l -= 2;
        }
        *vlen = l;
        return v;
    }
    return NULL;
}

int keel_balancer_key_hash(const struct keel_cfg_cluster *cfg, const char *head, size_t len,
                           uint64_t *out)
{
    if (cfg == NULL || head == NULL || cfg->hash_on.name == NULL ||
        cfg->hash_on.source == KEEL_HASH_ON_IP)
        return 0;
    int cookie = cfg->hash_on.source == KEEL_HASH_ON_COOKIE;
    const char *want = cfg->hash_on.name;
    size_t wl = strlen(want);
    const char *end = head + len;
    const char *p = memchr(head, '\n', len); /* skip the request line */

    if (p == NULL)
        return 0;
    for (p++; p < end;) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *next = eol ? eol + 1 : end;
        size_t ll = (size_t)((eol ? eol : end) - p);
        if (ll && p[ll - 1] == '\r')
            ll--;
        if (ll == 0)
            break; /* the blank line ends the head */
        const char *colon = memchr(p, ':', ll);
        if (colon != NULL) {
            size_t nl = (size_t)(colon - p);
            const char *v = colon + 1, *vend = p + ll;
            while (v < vend && (*v == ' ' || *v == '\t'))
                v++;
            while (vend > v && (vend[-1] == ' ' || vend[-1] == '\t'))
                vend--;
            size_t vl = (size_t)(vend - v);
            /* An empty value is no key: such requests spread by client address instead of
             * all landing on the endpoint of "". */
            if (cookie && name_eq(p, nl, "cookie", 6)) {
                const char *cv = find_cookie(v, vend, want, wl, &vl);
                if (cv != NULL && vl > 0) {
                    *out = keel_balancer_hash(cv, vl);
                    return 1;
                }
            } else if (!cookie && vl > 0 && name_eq(p, nl, want, wl)) {
                *out = keel_balancer_hash(v, vl);
                return 1;
            }
        }
        p = next;
    }
    return 0;
}
