/* SPDX-License-Identifier: MIT */
/* Passive outlier detection shared by all workers through the endpoint load records. */
#include <math.h>
#include <stdatomic.h>
#include <time.h>
#include "keel/log.h"
#include "keel/outlier.h"

_Thread_local uint64_t keel_clock_now_ms;

void keel_clock_update(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    keel_clock_now_ms = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

const char *keel_outlier_cause_str(uint32_t cause)
{
    switch (cause) {
    case KEEL_EJECT_5XX:
        return "consecutive 5xx responses";
    case KEEL_EJECT_GATEWAY:
        return "consecutive gateway failures (connect, reset, bad response)";
    case KEEL_EJECT_TIMEOUT:
        return "consecutive timeouts";
    case KEEL_EJECT_PROBE:
        return "the probe after an ejection failed";
    }
    return "none";
}

/* Counts endpoints of the cluster that are ejected now. */
static uint32_t ejected_now(const struct keel_cluster *cl)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < cl->n_eps; i++) {
        uint64_t u = atomic_load_explicit(&cl->eps[i].load->ejected_until_ms, memory_order_relaxed);
        n += u > keel_clock_now_ms;
    }
    return n;
}

static int eject(const struct keel_cluster *cl, const struct keel_endpoint *ep, uint32_t cause,
                 const struct keel_cfg_outlier *oc)
{
    struct keel_ep_load *l = ep->load;
    /* Never eject so much that the pool cannot serve: at most max_ejection_percent, and
     * always leave one endpoint. */
    uint32_t already = ejected_now(cl);
    if (already + 1 >= cl->n_eps) {
        KEEL_WARN_RL("cluster %s: endpoint %s has %s but ejecting it would leave no endpoint: "
                     "keeping it",
                     cl->name, ep->name, keel_outlier_cause_str(cause));
        return 0;
    }
    if ((uint64_t)(already + 1) * 100 > (uint64_t)cl->n_eps * oc->max_ejection_percent) {
        KEEL_WARN_RL("cluster %s: endpoint %s has %s but %u of %u are ejected already "
                     "(max_ejection_percent %u): keeping it",
                     cl->name, ep->name, keel_outlier_cause_str(cause), already, cl->n_eps,
                     oc->max_ejection_percent);
        return 0;
    }
    uint64_t cur = atomic_load_explicit(&l->ejected_until_ms, memory_order_relaxed);
    if (cur > keel_clock_now_ms)
        return 0; /* another worker just did it */
    uint32_t times = atomic_fetch_add_explicit(&l->times_ejected, 1, memory_order_relaxed) + 1;
    uint64_t dur = (uint64_t)oc->base_ms * times;
    if (dur > oc->max_ms)
        dur = oc->max_ms;
    if (!atomic_compare_exchange_strong_explicit(&l->ejected_until_ms, &cur,
                                                 keel_clock_now_ms + dur, memory_order_relaxed,
                                                 memory_order_relaxed))
        return 0;
    atomic_store_explicit(&l->eject_cause, cause, memory_order_relaxed);
    atomic_store_explicit(&l->ejected_at_ms, keel_clock_now_ms, memory_order_relaxed);
    atomic_store_explicit(&l->probation, 1, memory_order_relaxed);
    atomic_store_explicit(&l->consec_5xx, 0, memory_order_relaxed);
    atomic_store_explicit(&l->consec_gateway, 0, memory_order_relaxed);
    atomic_store_explicit(&l->consec_timeout, 0, memory_order_relaxed);
    atomic_fetch_add_explicit(&l->ejections, 1, memory_order_relaxed);
    KEEL_WARN("cluster %s: endpoint %s ejected for %.1fs (%s; ejection #%u)", cl->name, ep->name,
              dur / 1000.0, keel_outlier_cause_str(cause), times);
    return 1;
}

static void clear(_Atomic uint32_t *c)
{
    /* Read first: a store on every success would bounce the cache line between workers. */
    if (atomic_load_explicit(c, memory_order_relaxed))
        atomic_store_explicit(c, 0, memory_order_relaxed);
}

int keel_outlier_report(const struct keel_cluster *cl, const struct keel_endpoint *ep,
                        enum keel_outlier_outcome outcome)
{
    static struct keel_cfg_outlier defaults;
    struct keel_ep_load *l = ep->load;
    if (!l)
        return 0;
    const struct keel_cfg_outlier *oc = cl->cfg ? &cl->cfg->outlier : NULL;
    if (!oc) {
        if (!defaults.base_ms)
            keel_config_outlier_defaults(&defaults);
        oc = &defaults;
    }
    int on_probation =
        atomic_load_explicit(&l->probation, memory_order_relaxed) &&
        atomic_load_explicit(&l->ejected_until_ms, memory_order_relaxed) <= keel_clock_now_ms;
    if (outcome == KEEL_OUTCOME_OK) {
        clear(&l->consec_5xx);
        clear(&l->consec_gateway);
        clear(&l->consec_timeout);
        if (on_probation) {
            atomic_store_explicit(&l->probation, 0, memory_order_relaxed);
            atomic_store_explicit(&l->ejected_until_ms, 0, memory_order_relaxed);
            KEEL_INFO("cluster %s: endpoint %s back after its ejection (probe succeeded)", cl->name,
                      ep->name);
        }
        return 0;
    }
    if (on_probation)
        return eject(cl, ep, KEEL_EJECT_PROBE, oc);
    _Atomic uint32_t *ctr = outcome == KEEL_OUTCOME_5XX       ? &l->consec_5xx
                            : outcome == KEEL_OUTCOME_GATEWAY ? &l->consec_gateway
                                                              : &l->consec_timeout;
    uint32_t limit = outcome == KEEL_OUTCOME_5XX       ? oc->consecutive_5xx
                     : outcome == KEEL_OUTCOME_GATEWAY ? oc->consecutive_gateway
                                                       : oc->consecutive_timeout;
    /* A failure of one kind breaks the other kinds' runs. */
    if (outcome != KEEL_OUTCOME_5XX)
        clear(&l->consec_5xx);
    if (outcome != KEEL_OUTCOME_GATEWAY)
        clear(&l->consec_gateway);
    if (outcome != KEEL_OUTCOME_TIMEOUT)
        clear(&l->consec_timeout);
    uint32_t n = atomic_fetch_add_explicit(ctr, 1, memory_order_relaxed) + 1;
    if (limit && n >= limit)
        return eject(cl, ep,
                     outcome == KEEL_OUTCOME_5XX       ? KEEL_EJECT_5XX
                     : outcome == KEEL_OUTCOME_GATEWAY ? KEEL_EJECT_GATEWAY
                                                       : KEEL_EJECT_TIMEOUT,
                     oc);
    return 0;
}

void keel_outlier_latency(struct keel_ep_load *l, uint32_t latency_us)
{
    /* Peak-EWMA (Finagle, linkerd): a slower sample replaces the average at once, faster ones
     * pull it down with a time constant of TAU_MS, so a stalled endpoint is avoided right
     * away and forgiven gradually. Races between workers only lose a sample. */
    const double TAU_MS = 1000.0;
    uint64_t now = keel_clock_now_ms;
    uint64_t then = atomic_exchange_explicit(&l->ewma_stamp_ms, now, memory_order_relaxed);
    uint32_t prev = atomic_load_explicit(&l->ewma_latency_us, memory_order_relaxed);
    uint32_t next;
    if (latency_us >= prev || then == 0) {
        next = latency_us;
    } else {
        double elapsed = now > then ? (double)(now - then) : 0.0;
        double w = exp(-elapsed / TAU_MS);
        next = (uint32_t)(prev * w + latency_us * (1.0 - w));
    }
    atomic_store_explicit(&l->ewma_latency_us, next, memory_order_relaxed);
    atomic_store_explicit(&l->last_latency_us, latency_us, memory_order_relaxed);
}
