/* SPDX-License-Identifier: MIT */
/* Balancer registry and helpers shared by every policy (exclusion test, key hashing). */
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <stdint.h>
#include "keel/balancer.h"

const struct keel_lb_ops *const keel_lb_registry[KEEL_LB__COUNT] = {
    [KEEL_LB_WEIGHTED_LEAST_CONN] = &keel_lb_weighted_least_conn,
    [KEEL_LB_LEAST_CONN] = &keel_lb_least_conn,
    [KEEL_LB_ROUND_ROBIN] = &keel_lb_round_robin,
    [KEEL_LB_WEIGHTED_ROUND_ROBIN] = &keel_lb_weighted_round_robin,
    [KEEL_LB_IP_HASH] = &keel_lb_ip_hash,
    [KEEL_LB_RANDOM] = &keel_lb_random,
    [KEEL_LB_LEAST_RESPONSE_TIME] = &keel_lb_least_response_time,
    [KEEL_LB_HASH] = &keel_lb_hash,
};

int keel_balancer_excluded(const struct keel_lb_req *req, uint32_t i)
{
    /* The list holds the few endpoints already tried for one request: a scan beats anything
     * cleverer. */
    if (req == NULL || req->exclude == NULL)
        return 0;
    for (size_t k = 0; k < req->n_exclude; k++)
        if (req->exclude[k] == i)
            return 1;
    return 0;
}

uint64_t keel_balancer_hash(const void *data, size_t len)
{
    const unsigned char *p = data;
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a 64 offset basis */

    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull; /* FNV 64 prime */
    }
    /* FNV-1a mixes the high bits poorly for short keys such as IPv4 addresses; the splitmix64
     * finaliser gives every output bit an even chance of flipping for each input bit. */
    return keel_balancer_mix(h);
}

uint64_t keel_balancer_mix(uint64_t h)
{
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebull;
    h ^= h >> 31;
    return h;
}

uint64_t keel_balancer_ep_hash(const struct keel_endpoint *ep)
{
    return keel_balancer_hash(ep->name, strnlen(ep->name, sizeof(ep->name)));
}

double keel_balancer_rendezvous(uint64_t h, uint32_t weight)
{
    double u = ((double)(h >> 11) + 0.5) * 0x1.0p-53;
    return -(double)weight / log(u);
}

uint64_t keel_balancer_rand(uint64_t *state)
{
    uint64_t x = *state;
    if (x == 0)
        x = 0x9e3779b97f4a7c15ull ^ (uint64_t)(uintptr_t)state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545f4914f6cdd1dull;
}

uint32_t keel_balancer_rand_below(uint64_t *state, uint32_t n)
{
    return (uint32_t)(((keel_balancer_rand(state) >> 32) * (uint64_t)n) >> 32);
}

uint64_t keel_balancer_seed(uintptr_t state_addr, uint32_t salt)
{
    struct timespec ts;
    timespec_get(&ts, TIME_UTC);
    uint64_t x = ((uint64_t)state_addr * 0x9e3779b97f4a7c15ull) ^
                 ((uint64_t)ts.tv_sec << 32 ^ (uint64_t)ts.tv_nsec) ^ salt;
    return x ? x : 1;
}

int keel_balancer_random_usable(const struct keel_cluster *cl, uint64_t *rng,
                                const struct keel_lb_req *req, int avoid)
{
    uint32_t n = cl->n_eps;
    for (int tries = 0; tries < 4; tries++) {
        uint32_t i = keel_balancer_rand_below(rng, n);
        if ((int)i != avoid && keel_balancer_usable(cl, req, i))
            return (int)i;
    }
    uint32_t i = keel_balancer_rand_below(rng, n);
    for (uint32_t k = 0; k < n; k++, i = i + 1 < n ? i + 1 : 0)
        if ((int)i != avoid && keel_balancer_usable(cl, req, i))
            return (int)i;
    return -1;
}

void *keel_balancer_rendezvous_state_new(const struct keel_cluster *cl)
{
    struct keel_rendezvous_state *s = malloc(sizeof(*s) + (size_t)cl->n_eps * sizeof(s->id[0]));
    if (s == NULL)
        return NULL;
    s->n = cl->n_eps;
    s->uniform = 1;
    for (uint32_t i = 0; i < cl->n_eps; i++) {
        s->id[i] = keel_balancer_ep_hash(&cl->eps[i]);
        if (cl->eps[i].weight != cl->eps[0].weight)
            s->uniform = 0;
    }
    return s;
}

void keel_balancer_state_free(void *st)
{
    free(st);
}
