/* SPDX-License-Identifier: MIT */
/* Weighted least-connections (the default): lowest (active + 1) / weight across all workers. */
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "keel/balancer.h"

/* Up to this many endpoints a full scan is cheaper than the random draws of two-choices; above
 * it, reading every shared counter (one cache miss each) would cost more than the choice gains. */
#define WLC_SCAN_MAX 16

struct wlc_state {
    uint32_t next;  /* where the scan starts, so ties do not always favour endpoint 0 */
    uint32_t n;     /* entries in cum[]: cl->n_eps, or 0 when not built (two-choices uniform) */
    uint64_t rng;   /* xorshift64* state, never 0 */
    uint64_t total; /* cum[n - 1] */
    int64_t cw[WLC_SCAN_MAX]; /* smooth weighted round-robin current weights, scan path */
    uint64_t cum[];           /* two-choices: running sum of eligible weights, to draw by weight */
};

/* Used when state_new failed: shared by all clusters of this thread, still rotates; draws
 * two-choices candidates uniformly. */
static _Thread_local struct wlc_state fallback;

/* (a_active + 1) / a_weight < (b_active + 1) / b_weight, cross-multiplied: both sides fit in
 * 64 bits since each factor is at most 2^32. */
static int better(uint32_t a_active, uint32_t a_weight, uint32_t b_active, uint32_t b_weight)
{
    return ((uint64_t)a_active + 1) * b_weight < ((uint64_t)b_active + 1) * a_weight;
}

/* Smooth weighted round-robin (nginx) over the usable endpoints: used when they all carry the
 * same number of in-flight requests, where (active + 1) / weight would always name the
 * heaviest one. Light, sequential traffic then still splits by weight (a weight-1 canary
 * beside weight-9 peers gets a tenth), and the least-connections score takes over as soon
 * as requests overlap. */
static int pick_wrr(const struct keel_cluster *cl, struct wlc_state *s,
                    const struct keel_lb_req *req)
{
    int best = -1;
    int64_t total = 0;

    for (uint32_t i = 0; i < cl->n_eps; i++) {
        if (!keel_balancer_usable(cl, req, i))
            continue;
        s->cw[i] += cl->eps[i].weight;
        total += cl->eps[i].weight;
        if (best < 0 || s->cw[i] > s->cw[best])
            best = (int)i;
    }
    if (best >= 0)
        s->cw[best] -= total;
    return best;
}

static int pick_scan(const struct keel_cluster *cl, struct wlc_state *s,
                     const struct keel_lb_req *req)
{
    uint32_t n = cl->n_eps;
    uint32_t start = s->next < n ? s->next : 0;
    int best = -1, all_equal = 1;
    uint32_t best_active = 0, best_weight = 0, first_active = 0;

    for (uint32_t k = 0, i = start; k < n; k++, i = i + 1 < n ? i + 1 : 0) {
        if (!keel_balancer_usable(cl, req, i))
            continue;
        uint32_t a = keel_balancer_active(&cl->eps[i]), w = cl->eps[i].weight;
        if (best < 0)
            first_active = a;
        else if (a != first_active)
            all_equal = 0;
        if (best < 0 || better(a, w, best_active, best_weight)) {
            best = (int)i;
            best_active = a;
            best_weight = w;
        }
    }
    if (best >= 0 && all_equal)
        best = pick_wrr(cl, s, req);
    /* Start after the winner next time: endpoints tied at the lowest score then take turns
     * even when others sit between them. */
    if (best >= 0)
        s->next = (uint32_t)best + 1 < n ? (uint32_t)best + 1 : 0;
    return best;
}

/* An endpoint drawn with probability weight / total: the first i with cum[i] > r. */
static uint32_t draw_weighted(struct wlc_state *s)
{
    uint64_t r = keel_balancer_rand(&s->rng) % s->total;
    uint32_t lo = 0, hi = s->n - 1;

    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (s->cum[mid] > r)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

/* A random usable endpoint other than `avoid`, or -1, drawn by weight when the state has the
 * weight table. Drawing by weight matters: with uniform draws a light endpoint paired with
 * another light one wins half the time whatever its load, and a 1:3 weight split ends near
 * 1:2.5. A few probes find one at once in a healthy cluster; a scan from a random start covers
 * mostly-ineligible or excluded ones. */
static int random_usable(const struct keel_cluster *cl, struct wlc_state *s,
                         const struct keel_lb_req *req, int avoid)
{
    if (s->n == cl->n_eps && s->total > 0) {
        for (int tries = 0; tries < 4; tries++) {
            uint32_t i = draw_weighted(s);
            if ((int)i != avoid && keel_balancer_usable(cl, req, i))
                return (int)i;
        }
    }
    return keel_balancer_random_usable(cl, &s->rng, req, avoid);
}

static int pick_two_choices(const struct keel_cluster *cl, struct wlc_state *s,
                            const struct keel_lb_req *req)
{
    int a = random_usable(cl, s, req, -1);
    if (a < 0)
        return -1;
    int b = random_usable(cl, s, req, a);
    if (b < 0)
        return a;
    const struct keel_endpoint *ea = &cl->eps[a], *eb = &cl->eps[b];
    return better(keel_balancer_active(eb), eb->weight, keel_balancer_active(ea), ea->weight) ? b
                                                                                              : a;
}

static int wlc_pick(const struct keel_cluster *cl, void *st, const struct keel_lb_req *req)
{
    struct wlc_state *s = st ? st : &fallback;

    if (cl->n_eps == 0)
        return -1;
    if (cl->n_eps <= WLC_SCAN_MAX)
        return pick_scan(cl, s, req);
    return pick_two_choices(cl, s, req);
}

static void *wlc_state_new(const struct keel_cluster *cl)
{
    uint32_t n = cl->n_eps > WLC_SCAN_MAX ? cl->n_eps : 0;
    struct wlc_state *s = malloc(sizeof(*s) + (size_t)n * sizeof(s->cum[0]));

    if (s == NULL)
        return NULL;
    s->next = 0;
    s->n = n;
    memset(s->cw, 0, sizeof(s->cw));
    s->total = 0;
    /* The snapshot is immutable, so eligibility (health, weight) is fixed for this state. */
    for (uint32_t i = 0; i < n; i++) {
        if (keel_ep_eligible(&cl->eps[i]))
            s->total += cl->eps[i].weight;
        s->cum[i] = s->total;
    }
    s->rng = keel_balancer_seed((uintptr_t)s, cl->index);
    return s;
}

const struct keel_lb_ops keel_lb_weighted_least_conn = {
    .name = "weighted_least_conn",
    .state_new = wlc_state_new,
    .state_free = keel_balancer_state_free,
    .pick = wlc_pick,
};
