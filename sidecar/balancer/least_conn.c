/* SPDX-License-Identifier: MIT */
/* Least-connections: lowest active count across all workers, weights ignored (but 0 drains). */
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#include "keel/balancer.h"

/* Up to this many endpoints a full scan is cheaper than the random draws of two-choices; above
 * it, reading every shared counter (one cache miss each) would cost more than the choice gains. */
#define LC_SCAN_MAX 16

struct lc_state {
    uint32_t next; /* where the scan starts, so ties do not always favour endpoint 0 */
    uint64_t rng;  /* xorshift64* state, never 0 */
};

/* Used when state_new failed: shared by all clusters of this thread, still rotates. */
static _Thread_local struct lc_state fallback;

static int pick_scan(const struct keel_cluster *cl, struct lc_state *s,
                     const struct keel_lb_req *req)
{
    uint32_t n = cl->n_eps;
    uint32_t start = s->next < n ? s->next : 0;
    int best = -1;
    uint32_t best_active = 0;

    for (uint32_t k = 0, i = start; k < n; k++, i = i + 1 < n ? i + 1 : 0) {
        if (!keel_balancer_usable(cl, req, i))
            continue;
        uint32_t a = keel_balancer_active(&cl->eps[i]);
        if (best < 0 || a < best_active) {
            best = (int)i;
            best_active = a;
        }
    }
    /* Start after the winner next time: endpoints tied at the lowest score then take turns
     * even when others sit between them. */
    if (best >= 0)
        s->next = (uint32_t)best + 1 < n ? (uint32_t)best + 1 : 0;
    return best;
}

static int pick_two_choices(const struct keel_cluster *cl, struct lc_state *s,
                            const struct keel_lb_req *req)
{
    int a = keel_balancer_random_usable(cl, &s->rng, req, -1);
    if (a < 0)
        return -1;
    int b = keel_balancer_random_usable(cl, &s->rng, req, a);
    if (b < 0)
        return a;
    return keel_balancer_active(&cl->eps[b]) < keel_balancer_active(&cl->eps[a]) ? b : a;
}

static int lc_pick(const struct keel_cluster *cl, void *st, const struct keel_lb_req *req)
{
    struct lc_state *s = st ? st : &fallback;

    if (cl->n_eps == 0)
        return -1;
    if (cl->n_eps <= LC_SCAN_MAX)
        return pick_scan(cl, s, req);
    return pick_two_choices(cl, s, req);
}

static void *lc_state_new(const struct keel_cluster *cl)
{
    struct lc_state *s = malloc(sizeof(*s));

    if (s == NULL)
        return NULL;
    s->next = 0;
    s->rng = keel_balancer_seed((uintptr_t)s, cl->index);
    return s;
}

const struct keel_lb_ops keel_lb_least_conn = {
    .name = "least_conn",
    .state_new = lc_state_new,
    .state_free = keel_balancer_state_free,
    .pick = lc_pick,
};
