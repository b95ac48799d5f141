/* SPDX-License-Identifier: MIT */
/* Unit tests of the passive ejection state machine (sidecar/outlier.c). */
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include "keel/config.h"
#include "keel/outlier.h"
#include "testutil.h"

int main(void);

#define N 4

struct tc {
    struct keel_cfg_cluster cfg;
    struct keel_cluster cl;
    struct keel_endpoint eps[N];
    struct keel_ep_load loads[N];
};

static void tc_init(struct tc *t, uint32_t n)
{
    memset(t, 0, sizeof(*t));
    keel_config_cluster_defaults(&t->cfg);
    t->cfg.outlier.consecutive_5xx = 3;
    t->cl.name = "c";
    t->cl.cfg = &t->cfg;
    t->cl.eps = t->eps;
    t->cl.n_eps = n;
    for (uint32_t i = 0; i < n; i++) {
        snprintf(t->eps[i].name, sizeof(t->eps[i].name), "10.0.0.%u:80", i + 1);
        t->eps[i].weight = 1;
        t->eps[i].load = &t->loads[i];
        atomic_init(&t->loads[i].refs, 1);
    }
}

static int report(struct tc *t, uint32_t i, enum keel_outlier_outcome o)
{
    return keel_outlier_report(&t->cl, &t->eps[i], o);
}

int main(void)
{
    struct tc t;
    keel_clock_now_ms = 1000000;

    /* Thresholds: each kind counts its own run; a success or another kind breaks it. */
    tc_init(&t, N);
    CHECK(report(&t, 0, KEEL_OUTCOME_5XX) == 0);
    CHECK(report(&t, 0, KEEL_OUTCOME_5XX) == 0);
    CHECK(report(&t, 0, KEEL_OUTCOME_OK) == 0); /* breaks the run */
    CHECK(report(&t, 0, KEEL_OUTCOME_5XX) == 0);
    CHECK(report(&t, 0, KEEL_OUTCOME_5XX) == 0);
    CHECK(report(&t, 0, KEEL_OUTCOME_TIMEOUT) == 0); /* another kind breaks it too */
    CHECK(report(&t, 0, KEEL_OUTCOME_5XX) == 0);
    CHECK(report(&t, 0, KEEL_OUTCOME_5XX) == 0);
    CHECK(keel_ep_eligible(&t.eps[0]));
    CHECK(report(&t, 0, KEEL_OUTCOME_5XX) == 1); /* third in a row */
    CHECK(!keel_ep_eligible(&t.eps[0]));
    CHECK(atomic_load(&t.loads[0].ejected_until_ms) == 1000000 + 30000);
    CHECK(atomic_load(&t.loads[0].eject_cause) == KEEL_EJECT_5XX);

    /* Gateway failures: 5 by default; timeouts: 3. */
    for (int k = 0; k < 4; k++)
        CHECK(report(&t, 1, KEEL_OUTCOME_GATEWAY) == 0);
    CHECK(report(&t, 1, KEEL_OUTCOME_GATEWAY) == 1);
    CHECK(atomic_load(&t.loads[1].eject_cause) == KEEL_EJECT_GATEWAY);

    /* max_ejection_percent 50 of 4: a third ejection is refused. */
    for (int k = 0; k < 3; k++)
        report(&t, 2, KEEL_OUTCOME_TIMEOUT);
    CHECK(keel_ep_eligible(&t.eps[2]));
    CHECK(atomic_load(&t.loads[2].ejections) == 0);

    /* Expiry: the endpoint is eligible again and the next outcome decides. */
    keel_clock_now_ms += 30000;
    CHECK(keel_ep_eligible(&t.eps[0]));
    CHECK(report(&t, 0, KEEL_OUTCOME_5XX) == 1); /* one failed probe is enough */
    CHECK(atomic_load(&t.loads[0].eject_cause) == KEEL_EJECT_PROBE);
    CHECK(atomic_load(&t.loads[0].ejected_until_ms) == keel_clock_now_ms + 60000); /* 2x */
    keel_clock_now_ms += 60000;
    CHECK(report(&t, 0, KEEL_OUTCOME_OK) == 0); /* a good probe clears it */
    CHECK(atomic_load(&t.loads[0].ejected_until_ms) == 0);
    CHECK(keel_ep_eligible(&t.eps[0]));

    /* Cap: the duration never exceeds max_ejection_time. */
    tc_init(&t, N);
    t.cfg.outlier.max_ms = 45000;
    atomic_store(&t.loads[3].times_ejected, 9);
    for (int k = 0; k < 3; k++)
        report(&t, 3, KEEL_OUTCOME_5XX);
    CHECK(atomic_load(&t.loads[3].ejected_until_ms) == keel_clock_now_ms + 45000);

    /* Never the last endpoint, and 5xx off by default. */
    tc_init(&t, 1);
    t.cfg.outlier.max_ejection_percent = 100;
    for (int k = 0; k < 10; k++)
        report(&t, 0, KEEL_OUTCOME_GATEWAY);
    CHECK(keel_ep_eligible(&t.eps[0]));
    tc_init(&t, N);
    keel_config_outlier_defaults(&t.cfg.outlier);
    for (int k = 0; k < 20; k++)
        CHECK(report(&t, 0, KEEL_OUTCOME_5XX) == 0);

    /* Latency peak-EWMA: a slower sample replaces it, faster ones decay towards them. */
    tc_init(&t, N);
    keel_outlier_latency(&t.loads[0], 1000);
    CHECK(atomic_load(&t.loads[0].ewma_latency_us) == 1000);
    keel_outlier_latency(&t.loads[0], 50000);
    CHECK(atomic_load(&t.loads[0].ewma_latency_us) == 50000);
    keel_clock_now_ms += 1000; /* one time constant */
    keel_outlier_latency(&t.loads[0], 1000);
    uint32_t e = atomic_load(&t.loads[0].ewma_latency_us);
    CHECKF(e > 15000 && e < 22000, "ewma %u after one time constant", e);
    return TEST_SUMMARY("test_outlier");
}
