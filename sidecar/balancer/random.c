/* SPDX-License-Identifier: MIT */
/* Weighted random: each eligible endpoint with probability weight / total eligible weight. */
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#include "keel/balancer.h"

struct rnd_state {
    uint64_t rng; /* xorshift64* state, never 0 */
};

/* Used when state_new failed. */
static _Thread_local struct rnd_state fallback;

static int rnd_pick(const struct keel_cluster *cl, void *st, const struct keel_lb_req *req)
{
    struct rnd_state *s = st ? st : &fallback;
    uint64_t total = 0;

    for (uint32_t i = 0; i < cl->n_eps; i++)
        if (keel_balancer_usable(cl, req, i))
            total += cl->eps[i].weight;
    if (total == 0)
        return -1;
    /* The modulo bias is total / 2^64: nothing for any real sum of 32-bit weights. */
    uint64_t r = keel_balancer_rand(&s->rng) % total;
    for (uint32_t i = 0; i < cl->n_eps; i++) {
        if (!keel_balancer_usable(cl, req, i))
            continue;
        if (r < cl->eps[i].weight)
            return (int)i;
        r -= cl->eps[i].weight;
    }
    return -1; /* not reached */
}

static void *rnd_state_new(const struct keel_cluster *cl)
{
    struct rnd_state *s = malloc(sizeof(*s));

    if (s == NULL)
        return NULL;
    s->rng = keel_balancer_seed((uintptr_t)s, cl->index);
    return s;
}

const struct keel_lb_ops keel_lb_random = {
    .name = "random",
    .state_new = rnd_state_new,
    .state_free = keel_balancer_state_free,
    .pick = rnd_pick,
};
