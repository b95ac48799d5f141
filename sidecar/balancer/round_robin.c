/* SPDX-License-Identifier: MIT */
/* Round-robin: each worker walks the eligible endpoints in order, weights ignored (0 drains). */
#include <stdint.h>
#include <stdlib.h>
#include "keel/balancer.h"

struct rr_state {
    uint32_t next; /* index to try first on the next pick */
};

/* Used when state_new failed: shared by all clusters of this thread, still rotates. */
static _Thread_local struct rr_state fallback;

static int rr_pick(const struct keel_cluster *cl, void *st, const struct keel_lb_req *req)
{
    struct rr_state *s = st ? st : &fallback;
    uint32_t n = cl->n_eps;
    uint32_t i = s->next < n ? s->next : 0;

    for (uint32_t k = 0; k < n; k++, i = i + 1 < n ? i + 1 : 0) {
        if (!keel_balancer_usable(cl, req, i))
            continue;
        /* Continue after the chosen one, so ineligible endpoints do not double their
         * successor's share. */
        s->next = i + 1 < n ? i + 1 : 0;
        return (int)i;
    }
    return -1;
}

static void *rr_state_new(const struct keel_cluster *cl)
{
    return calloc(1, sizeof(struct rr_state));
}

const struct keel_lb_ops keel_lb_round_robin = {
    .name = "round_robin",
    .state_new = rr_state_new,
    .state_free = keel_balancer_state_free,
    .pick = rr_pick,
};
