/* SPDX-License-Identifier: MIT */
/* least_response_time: power of two choices scored by peak-EWMA latency x in-flight / weight. */
#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#include "keel/balancer.h"

/* A latency estimate not refreshed for a while is forgiven with this time constant (the same
 * one the estimate itself decays with, outlier.c): an endpoint that lost every comparison gets
 * no new samples, and without forgiveness a single slow answer would bar it for good. After
 * about ln(slow / fast) time constants it looks as fast as the others and takes one request,
 * which measures it again. This is Finagle's peak-EWMA, which decays on read too. */
#define LRT_FORGIVE_TAU_MS 1000.0

struct lrt_state {
    uint64_t rng; /* xorshift64* state, never 0 */
};

/* Used when state_new failed: shared by all clusters of this thread. */
static _Thread_local struct lrt_state fallback;

/* Latency estimate of an endpoint in microseconds, decayed since its last sample; -1 when it
 * has none yet. */
static double latency_us(const struct keel_endpoint *ep)
{
    if (ep->load == NULL)
        return -1;
    uint32_t l = atomic_load_explicit(&ep->load->ewma_latency_us, memory_order_relaxed);
    if (l == 0)
        return -1;
    uint64_t stamp = atomic_load_explicit(&ep->load->ewma_stamp_ms, memory_order_relaxed);
    uint64_t now = keel_clock_now_ms;
    if (stamp != 0 && now > stamp)
        return l * exp(-(double)(now - stamp) / LRT_FORGIVE_TAU_MS);
    return l;
}

/* (latency + 1) x (in flight + 1) / weight: the expected wait behind the requests already
 * there, per unit of capacity. A double: the product of three 32-bit factors does not fit in
 * 64 bits, and only the order matters. */
static double score(const struct keel_endpoint *ep, double lat)
{
    uint32_t w = ep->weight ? ep->weight : 1;
    return (lat + 1.0) * ((double)keel_balancer_active(ep) + 1.0) / (double)w;
}

static int lrt_pick(const struct keel_cluster *cl, void *st, const struct keel_lb_req *req)
{
    struct lrt_state *s = st ? st : &fallback;

    if (cl->n_eps == 0)
        return -1;
    int a = keel_balancer_random_usable(cl, &s->rng, req, -1);
    if (a < 0)
        return -1;
    int b = keel_balancer_random_usable(cl, &s->rng, req, a);
    if (b < 0)
        return a;
    const struct keel_endpoint *ea = &cl->eps[a], *eb = &cl->eps[b];
    double la = latency_us(ea), lb = latency_us(eb);
    /* An endpoint without a measurement yet scores as the best known latency, so a new one
     * is tried rather than shunned; the in-flight count and weight still decide. */
    if (la < 0 && lb < 0)
        la = lb = 0;
    else if (la < 0)
        la = lb;
    else if (lb < 0)
        lb = la;
    /* a was drawn at random, so keeping it on a tie breaks ties at random. */
    return score(eb, lb) < score(ea, la) ? b : a;
}

static void *lrt_state_new(const struct keel_cluster *cl)
{
    struct lrt_state *s = malloc(sizeof(*s));

    if (s == NULL)
        return NULL;
    s->rng = keel_balancer_seed((uintptr_t)s, cl->index);
    return s;
}

const struct keel_lb_ops keel_lb_least_response_time = {
    .name = "least_response_time",
    .state_new = lrt_state_new,
    .state_free = keel_balancer_state_free,
    .pick = lrt_pick,
};
