/* SPDX-License-Identifier: MIT */
/* ip_hash: weighted rendezvous (highest random weight) hashing of the client key. Adding an
 * endpoint moves only the keys it wins (~w/W of them); removing or ejecting one moves only its
 * own keys. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "keel/balancer.h"

static int iph_pick(const struct keel_cluster *cl, void *st, const struct keel_lb_req *req)
{
    const struct keel_rendezvous_state *s = st;
    int best = -1;
    uint64_t best_h = 0;
    double best_score = 0;

    if (s != NULL && s->n != cl->n_eps)
        s = NULL;
    for (uint32_t i = 0; i < cl->n_eps; i++) {
        const struct keel_endpoint *ep = &cl->eps[i];
        if (!keel_balancer_usable(cl, req, i))
            continue;
        uint64_t h = keel_balancer_mix(req->hash ^ (s ? s->id[i] : keel_balancer_ep_hash(ep)));
        if (s != NULL && s->uniform) {
            /* With equal weights the score is monotonic in h: skip the logarithm. */
            if (best < 0 || h > best_h) {
                best = (int)i;
                best_h = h;
            }
            continue;
        }
        double sc = keel_balancer_rendezvous(h, ep->weight);
        if (best < 0 || sc > best_score) {
            best = (int)i;
            best_score = sc;
        }
    }
    return best;
}

const struct keel_lb_ops keel_lb_ip_hash = {
    .name = "ip_hash",
    .state_new = keel_balancer_rendezvous_state_new,
    .state_free = keel_balancer_state_free,
    .pick = iph_pick,
};
