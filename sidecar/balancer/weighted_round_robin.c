/* SPDX-License-Identifier: MIT */
/* Smooth weighted round-robin (nginx): weights 5,1,1 give a a b a c a a, never a burst. */
#include <stdint.h>
#include <stdlib.h>
#include "keel/balancer.h"

struct wrr_state {
    uint32_t n;        /* cl->n_eps when created */
    int64_t current[]; /* nginx's current_weight, one per endpoint */
};

/* Used when state_new failed: a plain weighted counter, not smooth but still proportional. */
static _Thread_local uint64_t fallback_counter;

static int pick_fallback(const struct keel_cluster *cl, const struct keel_lb_req *req)
{
    uint64_t total = 0;

    for (uint32_t i = 0; i < cl->n_eps; i++)
        if (keel_balancer_usable(cl, req, i))
            total += cl->eps[i].weight;
    if (total == 0)
        return -1;
    uint64_t r = fallback_counter++ % total;
    for (uint32_t i = 0; i < cl->n_eps; i++) {
        if (!keel_balancer_usable(cl, req, i))
            continue;
        if (r < cl->eps[i].weight)
            return (int)i;
        r -= cl->eps[i].weight;
    }
    return -1; /* not reached */
}

static int wrr_pick(const struct keel_cluster *cl, void *st, const struct keel_lb_req *req)
{
    struct wrr_state *s = st;
    int64_t total = 0;
    int best = -1;

    if (s == NULL || s->n != cl->n_eps)
        return pick_fallback(cl, req);
    /* Excluded endpoints neither gain nor lose: like nginx skipping peers already tried. Every
     * current weight stays within [-total, total] because each pick adds total and subtracts
     * total, so int64 cannot overflow. */
    for (uint32_t i = 0; i < s->n; i++) {
        if (!keel_balancer_usable(cl, req, i))
            continue;
        s->current[i] += cl->eps[i].weight;
        total += cl->eps[i].weight;
        if (best < 0 || s->current[i] > s->current[best])
            best = (int)i;
    }
    if (best >= 0)
        s->current[best] -= total;
    return best;
}

static void *wrr_state_new(const struct keel_cluster *cl)
{
    struct wrr_state *s = calloc(1, sizeof(*s) + (size_t)cl->n_eps * sizeof(s->current[0]));

    if (s != NULL)
        s->n = cl->n_eps;
    return s;
}

const struct keel_lb_ops keel_lb_weighted_round_robin = {
    .name = "weighted_round_robin",
    .state_new = wrr_state_new,
    .state_free = keel_balancer_state_free,
    .pick = wrr_pick,
};
