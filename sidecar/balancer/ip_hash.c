/* SPDX-License-Identifier: MIT */
/* ip_hash: weighted rendezvous (highest random weight) hashing of the client key. Adding an
 * endpoint moves only the keys it wins (~w/W of them); removing or ejecting one moves only its
 * own keys. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "keel/balancer.h"

struct iph_state {
    uint32_t n;    /* cl->n_eps when created */
    int uniform;   /* all endpoints have the same weight: compare raw hashes, no log() */
    uint64_t id[]; /* hash of each endpoint's name, its identity across snapshots */
};

static uint64_t mix(uint64_t h)
{
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebull;
    h ^= h >> 31;
    return h;
}

static uint64_t ep_id(const struct keel_endpoint *ep)
{
    return keel_balancer_hash(ep->name, strnlen(ep->name, sizeof(ep->name)));
}

/* -weight / ln(u), u uniform in (0,1): the endpoint with the largest score wins with
 * probability weight / total weight (the exponential race), independently per key. */
static double score(uint64_t h, uint32_t weight)
{
    double u = ((double)(h >> 11) + 0.5) * 0x1.0p-53;
    return -(double)weight / log(u);
}

static int iph_pick(const struct keel_cluster *cl, void *st, const struct keel_lb_req *req)
{
    const struct iph_state *s = st;
    int best = -1;
    uint64_t best_h = 0;
    double best_score = 0;

    if (s != NULL && s->n != cl->n_eps)
        s = NULL;
    for (uint32_t i = 0; i < cl->n_eps; i++) {
        const struct keel_endpoint *ep = &cl->eps[i];
        if (!keel_balancer_usable(cl, req, i))
            continue;
        uint64_t h = mix(req->hash ^ (s ? s->id[i] : ep_id(ep)));
        if (s != NULL && s->uniform) {
            /* With equal weights the score is monotonic in h: skip the logarithm. */
            if (best < 0 || h > best_h) {
                best = (int)i;
                best_h = h;
            }
            continue;
        }
        double sc = score(h, ep->weight);
        if (best < 0 || sc > best_score) {
            best = (int)i;
            best_score = sc;
        }
    }
    return best;
}

static void *iph_state_new(const struct keel_cluster *cl)
{
    struct iph_state *s = malloc(sizeof(*s) + (size_t)cl->n_eps * sizeof(s->id[0]));

    if (s == NULL)
        return NULL;
    s->n = cl->n_eps;
    s->uniform = 1;
    for (uint32_t i = 0; i < cl->n_eps; i++) {
        s->id[i] = ep_id(&cl->eps[i]);
        if (cl->eps[i].weight != cl->eps[0].weight)
            s->uniform = 0;
    }
    return s;
}

static void iph_state_free(void *st)
{
    free(st);
}

const struct keel_lb_ops keel_lb_ip_hash = {
    .name = "ip_hash",
    .state_new = iph_state_new,
    .state_free = iph_state_free,
    .pick = iph_pick,
};
