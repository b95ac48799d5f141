/* SPDX-License-Identifier: MIT */
/* Unit tests for the load-balancing policies: distribution, eligibility, consistency. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "keel/balancer.h"

static int n_pass, n_fail;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (cond) {                                                                                \
            n_pass++;                                                                              \
        } else {                                                                                   \
            n_fail++;                                                                              \
            fprintf(stderr, "%s:%d: FAIL: %s: ", __FILE__, __LINE__, #cond);                       \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
        }                                                                                          \
    } while (0)

#define MAX_EPS 64

/* A hand-built cluster with its own endpoints and load records. */
struct tcl {
    struct keel_cluster cl;
    struct keel_endpoint eps[MAX_EPS];
    struct keel_ep_load loads[MAX_EPS];
};

/* Endpoint i is named "10.0.<i/256>.<i%256>:80" so names are stable identities. */
static void tcl_init(struct tcl *t, const uint32_t *weights, uint32_t n)
{
    memset(t, 0, sizeof(*t));
    t->cl.name = "test";
    t->cl.eps = n ? t->eps : NULL;
    t->cl.n_eps = n;
    for (uint32_t i = 0; i < n; i++) {
        snprintf(t->eps[i].name, sizeof(t->eps[i].name), "10.0.%u.%u:80", i / 256, i % 256);
        t->eps[i].weight = weights ? weights[i] : 1;
        t->eps[i].load = &t->loads[i];
        atomic_init(&t->loads[i].refs, 1);
        atomic_init(&t->loads[i].active, 0);
        t->loads[i].id = i + 1;
    }
}

static void set_active(struct tcl *t, uint32_t i, uint32_t v)
{
    atomic_store_explicit(&t->loads[i].active, v, memory_order_relaxed);
}

static uint32_t get_active(struct tcl *t, uint32_t i)
{
    return atomic_load_explicit(&t->loads[i].active, memory_order_relaxed);
}

static uint64_t rng_state = 0x123456789abcdefull;

static uint64_t test_rand(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545f4914f6cdd1dull;
}

static const struct keel_lb_req no_req = {0, NULL, 0, 0};

/* Picks `n` times and counts per endpoint; each pick uses a new hash key. Returns the number
 * of -1 answers. */
static uint32_t count_picks(const struct keel_lb_ops *ops, struct tcl *t, void *st, uint32_t n,
                            uint64_t *counts)
{
    uint32_t none = 0;

    memset(counts, 0, sizeof(counts[0]) * MAX_EPS);
    for (uint32_t k = 0; k < n; k++) {
        struct keel_lb_req req = {keel_balancer_hash(&k, sizeof(k)), NULL, 0, 0};
        int i = ops->pick(&t->cl, st, &req);
        if (i < 0)
            none++;
        else if ((uint32_t)i < t->cl.n_eps)
            counts[i]++;
        else
            none += 1000000; /* out of range: make it fail loudly */
    }
    return none;
}

/* ---- helpers ---- */

static void test_hash_and_exclude(void)
{
    static const struct {
        const char *in;
        uint64_t want;
    } vec[] = {
        {"", 0xf52a15e9a9b5e89bull},
        {"a", 0x02c0bdbf481420f8ull},
        {"10.0.0.1", 0x7fb1b600f0f5c6d3ull},
        {"127.0.0.1:8080", 0x210de053f452be8dull},
    };
    for (size_t i = 0; i < sizeof(vec) / sizeof(vec[0]); i++) {
        uint64_t h = keel_balancer_hash(vec[i].in, strlen(vec[i].in));
        CHECK(h == vec[i].want, "hash(\"%s\") = %016llx", vec[i].in, (unsigned long long)h);
    }

    uint32_t ex[] = {3, 7};
    struct keel_lb_req req = {0, ex, 2, 0};
    CHECK(keel_balancer_excluded(&req, 3), "3 excluded");
    CHECK(keel_balancer_excluded(&req, 7), "7 excluded");
    CHECK(!keel_balancer_excluded(&req, 0), "0 not excluded");
    CHECK(!keel_balancer_excluded(&no_req, 3), "NULL exclude list");

    static const char *names[KEEL_LB__COUNT] = {
        [KEEL_LB_WEIGHTED_LEAST_CONN] = "weighted_least_conn",
        [KEEL_LB_LEAST_CONN] = "least_conn",
        [KEEL_LB_ROUND_ROBIN] = "round_robin",
        [KEEL_LB_WEIGHTED_ROUND_ROBIN] = "weighted_round_robin",
        [KEEL_LB_IP_HASH] = "ip_hash",
        [KEEL_LB_RANDOM] = "random",
        [KEEL_LB_LEAST_RESPONSE_TIME] = "least_response_time",
        [KEEL_LB_HASH] = "hash",
    };
    for (int p = 0; p < KEEL_LB__COUNT; p++) {
        const struct keel_lb_ops *ops = keel_lb_registry[p];
        CHECK(ops != NULL && names[p] != NULL && strcmp(ops->name, names[p]) == 0,
              "registry[%d] is %s", p, names[p] ? names[p] : "(not in this test)");
        CHECK(ops && ops->pick && ops->state_new && ops->state_free, "registry[%d] complete", p);
    }
}

/* ---- weighted distribution (policies that honour weights statelessly per pick) ---- */

static void test_weighted_distribution(void)
{
    static const struct {
        const struct keel_lb_ops *ops;
        uint32_t picks;
        double tol; /* relative, per endpoint */
        int weighted;
    } cases[] = {
        {&keel_lb_weighted_round_robin, 60000, 0.0, 1}, /* exact: deterministic */
        {&keel_lb_random, 600000, 0.02, 1},             /* 2% is > 6 sigma here */
        {&keel_lb_ip_hash, 60000, 0.05, 1},             /* per key, over 60000 keys */
        {&keel_lb_round_robin, 60000, 0.0, 0},          /* weights ignored, exact */
    };
    const uint32_t w[] = {1, 2, 3};

    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        struct tcl t;
        uint64_t counts[MAX_EPS];
        tcl_init(&t, w, 3);
        void *st = cases[c].ops->state_new(&t.cl);
        uint32_t none = count_picks(cases[c].ops, &t, st, cases[c].picks, counts);
        CHECK(none == 0, "%s: %u failed picks", cases[c].ops->name, none);
        printf("  %-22s weights 1,2,3 over %u picks:", cases[c].ops->name, cases[c].picks);
        for (uint32_t i = 0; i < 3; i++) {
            double want = cases[c].weighted ? cases[c].picks * w[i] / 6.0 : cases[c].picks / 3.0;
            double dev = (counts[i] - want) / want;
            printf(" %llu (%+.2f%%)", (unsigned long long)counts[i], dev * 100);
            CHECK(dev <= cases[c].tol && dev >= -cases[c].tol, "%s: ep %u got %llu want %.0f",
                  cases[c].ops->name, i, (unsigned long long)counts[i], want);
        }
        printf("\n");
        cases[c].ops->state_free(st);
    }
}

/* ---- weighted least connections under steady concurrent load ---- */

/* Keeps `inflight` requests open: after each pick (which takes a slot), a random open request
 * ends. Returns the time-averaged active count per endpoint in avg[]. */
static void simulate_load(const struct keel_lb_ops *ops, struct tcl *t, uint32_t inflight,
                          uint32_t steps, double *avg)
{
    uint32_t *open = calloc(inflight + 1, sizeof(*open));
    uint32_t n_open = 0;
    uint64_t sum[MAX_EPS] = {0};
    void *st = ops->state_new(&t->cl);

    for (uint32_t s = 0; s < steps + inflight; s++) {
        int i = ops->pick(&t->cl, st, &no_req);
        if (i < 0)
            break;
        atomic_fetch_add_explicit(&t->loads[i].active, 1, memory_order_relaxed);
        open[n_open++] = (uint32_t)i;
        if (n_open > inflight) {
            uint32_t r = (uint32_t)(test_rand() % n_open);
            atomic_fetch_sub_explicit(&t->loads[open[r]].active, 1, memory_order_relaxed);
            open[r] = open[--n_open];
        }
        if (s >= inflight) /* warmed up */
            for (uint32_t e = 0; e < t->cl.n_eps; e++)
                sum[e] += get_active(t, e);
    }
    for (uint32_t e = 0; e < t->cl.n_eps; e++)
        avg[e] = (double)sum[e] / steps;
    ops->state_free(st);
    free(open);
}

static void test_wlc_steady_load(void)
{
    struct tcl t;
    double avg[MAX_EPS];
    const uint32_t w2[] = {1, 3};

    /* Scan path, two endpoints. */
    tcl_init(&t, w2, 2);
    simulate_load(&keel_lb_weighted_least_conn, &t, 64, 100000, avg);
    double ratio = avg[1] / avg[0];
    printf("  weighted_least_conn    weights 1,3, 64 in flight: avg active %.2f / %.2f, ratio "
           "%.2f\n",
           avg[0], avg[1], ratio);
    CHECK(ratio >= 2.5 && ratio <= 3.5, "scan ratio %.2f", ratio);

    /* Two-choices path: 32 endpoints, alternate weights 1 and 3. */
    uint32_t w32[32];
    for (uint32_t i = 0; i < 32; i++)
        w32[i] = i % 2 ? 3 : 1;
    tcl_init(&t, w32, 32);
    simulate_load(&keel_lb_weighted_least_conn, &t, 512, 200000, avg);
    double lo = 0, hi = 0;
    for (uint32_t i = 0; i < 32; i++)
        *(i % 2 ? &hi : &lo) += avg[i];
    ratio = hi / lo;
    printf("  weighted_least_conn    32 eps (p2c) weights 1/3, 512 in flight: avg per ep %.2f / "
           "%.2f, ratio %.2f\n",
           lo / 16, hi / 16, ratio);
    /* The equilibrium of (active + 1) / weight at 16 per endpoint is about 3.25; candidates
     * drawn uniformly instead of by weight would end near 2.5. */
    CHECK(ratio >= 2.75 && ratio <= 3.5, "p2c ratio %.2f", ratio);
    /* And endpoints of equal weight share evenly among themselves. */
    double mn = 1e9, mx = 0;
    for (uint32_t i = 1; i < 32; i += 2) {
        mn = avg[i] < mn ? avg[i] : mn;
        mx = avg[i] > mx ? avg[i] : mx;
    }
    CHECK(mx - mn < 0.25 * mx, "weight-3 endpoints spread %.2f..%.2f", mn, mx);

    /* Two-choices compares its candidates: a loaded endpoint loses to any idle one, so it is
     * never picked while all others are idle. */
    const struct keel_lb_ops *p2c_ops[] = {&keel_lb_weighted_least_conn, &keel_lb_least_conn};
    for (int o = 0; o < 2; o++) {
        uint64_t counts[MAX_EPS];
        tcl_init(&t, NULL, 32);
        set_active(&t, 5, 1000);
        void *st = p2c_ops[o]->state_new(&t.cl);
        count_picks(p2c_ops[o], &t, st, 10000, counts);
        CHECK(counts[5] == 0, "%s p2c picked the loaded endpoint %llu times", p2c_ops[o]->name,
              (unsigned long long)counts[5]);
        uint64_t cmin = ~0ull, cmax = 0;
        for (uint32_t i = 0; i < 32; i++) {
            if (i == 5)
                continue;
            cmin = counts[i] < cmin ? counts[i] : cmin;
            cmax = counts[i] > cmax ? counts[i] : cmax;
        }
        /* 10000 / 31 = 323 each on average. */
        CHECK(cmin > 200 && cmax < 450, "%s p2c spread %llu..%llu", p2c_ops[o]->name,
              (unsigned long long)cmin, (unsigned long long)cmax);
        p2c_ops[o]->state_free(st);
    }

    /* least_conn on the same steady load: equal share whatever the weights. */
    tcl_init(&t, w2, 2);
    simulate_load(&keel_lb_least_conn, &t, 64, 100000, avg);
    ratio = avg[1] / avg[0];
    printf("  least_conn             weights 1,3, 64 in flight: avg active %.2f / %.2f\n", avg[0],
           avg[1]);
    CHECK(ratio >= 0.95 && ratio <= 1.05, "least_conn ratio %.2f", ratio);
    tcl_init(&t, w32, 32);
    simulate_load(&keel_lb_least_conn, &t, 512, 200000, avg);
    lo = hi = 0;
    for (uint32_t i = 0; i < 32; i++)
        *(i % 2 ? &hi : &lo) += avg[i];
    CHECK(hi / lo >= 0.9 && hi / lo <= 1.1, "least_conn p2c ratio %.2f", hi / lo);
}

/* Score cases for the scan path: which endpoint has the lowest (active + 1) / weight. */
static void test_wlc_scores(void)
{
    static const struct {
        uint32_t n;
        uint32_t weight[4];
        uint32_t active[4];
        int want;
    } cases[] = {
        {2, {1, 2}, {1, 2}, 1},       /* 2/1 vs 3/2 */
        {2, {1, 2}, {0, 2}, 0},       /* 1/1 vs 3/2 */
        {3, {1, 1, 1}, {5, 0, 9}, 1}, /* plain least */
        {3, {3, 1, 1}, {5, 1, 1}, 0}, /* 6/3 = 2/1 = 2/1: tie, a fresh state starts at 0 */
        {2, {4000000000u, 1}, {4000000000u, 0}, 1}, /* no overflow in the products */
        {2, {4000000000u, 2000000000u}, {2, 0}, 1}, /* 6e9 > 2^32: needs 64-bit products */
        {2, {100, 1}, {0, 0}, 0},
    };
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        struct tcl t;
        tcl_init(&t, cases[c].weight, cases[c].n);
        for (uint32_t i = 0; i < cases[c].n; i++)
            set_active(&t, i, cases[c].active[i]);
        void *st = keel_lb_weighted_least_conn.state_new(&t.cl);
        int got = keel_lb_weighted_least_conn.pick(&t.cl, st, &no_req);
        CHECK(got == cases[c].want, "wlc case %zu: got %d want %d", c, got, cases[c].want);
        keel_lb_weighted_least_conn.state_free(st);
    }

    /* All idle and equal: the rotating start shares evenly even though active stays 0. */
    struct tcl t;
    uint64_t counts[MAX_EPS];
    tcl_init(&t, NULL, 4);
    void *st = keel_lb_weighted_least_conn.state_new(&t.cl);
    count_picks(&keel_lb_weighted_least_conn, &t, st, 400, counts);
    for (uint32_t i = 0; i < 4; i++)
        CHECK(counts[i] == 100, "wlc idle ep %u: %llu", i, (unsigned long long)counts[i]);
    keel_lb_weighted_least_conn.state_free(st);

    /* Sequential traffic (equal in-flight counts) still splits by weight: a weight-1 canary
     * beside a weight-9 peer gets exactly a tenth, also when both carry the same load. */
    const uint32_t canary[] = {1, 9};
    for (uint32_t load = 0; load < 3; load += 2) {
        tcl_init(&t, canary, 2);
        set_active(&t, 0, load);
        set_active(&t, 1, load);
        st = keel_lb_weighted_least_conn.state_new(&t.cl);
        count_picks(&keel_lb_weighted_least_conn, &t, st, 1000, counts);
        CHECK(counts[0] == 100 && counts[1] == 900, "wlc equal load %u: %llu/%llu", load,
              (unsigned long long)counts[0], (unsigned long long)counts[1]);
        keel_lb_weighted_least_conn.state_free(st);
    }
}

static void test_least_conn(void)
{
    struct tcl t;
    uint64_t counts[MAX_EPS];
    const uint32_t active[] = {3, 1, 7, 1, 5};

    tcl_init(&t, NULL, 5);
    for (uint32_t i = 0; i < 5; i++)
        set_active(&t, i, active[i]);
    void *st = keel_lb_least_conn.state_new(&t.cl);
    count_picks(&keel_lb_least_conn, &t, st, 400, counts);
    /* Only the two endpoints at the lowest count, taking turns. */
    CHECK(counts[1] == 200 && counts[3] == 200, "ties: %llu / %llu", (unsigned long long)counts[1],
          (unsigned long long)counts[3]);
    CHECK(counts[0] + counts[2] + counts[4] == 0, "non-lowest picked");

    /* Weight is ignored except that 0 drains. */
    t.eps[1].weight = 100;
    t.eps[3].weight = 0;
    set_active(&t, 1, 2);
    CHECK(keel_lb_least_conn.pick(&t.cl, st, &no_req) == 1, "weight ignored");
    set_active(&t, 0, 0);
    CHECK(keel_lb_least_conn.pick(&t.cl, st, &no_req) == 0, "lowest wins");
    keel_lb_least_conn.state_free(st);
}

/* ---- smooth weighted round-robin ---- */

static void test_wrr_sequence(void)
{
    struct tcl t;
    const uint32_t w[] = {5, 1, 1};
    const char *want = "aabacaa";
    char got[8];

    tcl_init(&t, w, 3);
    void *st = keel_lb_weighted_round_robin.state_new(&t.cl);
    int ok = 1;
    for (int round = 0; round < 10; round++) {
        for (int k = 0; k < 7; k++) {
            int i = keel_lb_weighted_round_robin.pick(&t.cl, st, &no_req);
            got[k] = i >= 0 ? (char)('a' + i) : '-';
        }
        got[7] = 0;
        if (strcmp(got, want) != 0)
            ok = 0;
    }
    CHECK(ok, "sequence %s, want %s each round", got, want);
    keel_lb_weighted_round_robin.state_free(st);
}

/* ---- eligibility, for every policy ---- */

static const struct keel_lb_ops *const all_ops[] = {
    &keel_lb_weighted_least_conn,  &keel_lb_least_conn, &keel_lb_round_robin,
    &keel_lb_weighted_round_robin, &keel_lb_ip_hash,    &keel_lb_random,
    &keel_lb_least_response_time,  &keel_lb_hash,
};
#define N_OPS (sizeof(all_ops) / sizeof(all_ops[0]))

/* Marks endpoint `bad` ineligible in way `how` (0-3 health bits, 4 weight 0, 5 excluded). */
static const char *const how_names[] = {"discovery", "active",   "passive",
                                        "admin",     "weight 0", "excluded"};

static void test_ineligible(void)
{
    const uint32_t sizes[] = {5, 32}; /* scan and two-choices paths */

    for (size_t o = 0; o < N_OPS; o++) {
        const struct keel_lb_ops *ops = all_ops[o];
        for (size_t z = 0; z < 2; z++) {
            uint32_t n = sizes[z];
            for (uint32_t how = 0; how < 6; how++) {
                for (int use_state = 0; use_state < 2; use_state++) {
                    struct tcl t;
                    uint64_t counts[MAX_EPS] = {0};
                    uint32_t ex[MAX_EPS];
                    uint32_t n_ex = 0;
                    tcl_init(&t, NULL, n);
                    /* Make every endpoint but 1 and n-1 bad, so a policy that ignores the
                     * rule cannot hide behind luck. */
                    for (uint32_t i = 0; i < n; i++) {
                        if (i == 1 || i == n - 1)
                            continue;
                        if (how < 4)
                            t.eps[i].health = 1u << how;
                        else if (how == 4)
                            t.eps[i].weight = 0;
                        else
                            ex[n_ex++] = i;
                    }
                    void *st = use_state ? ops->state_new(&t.cl) : NULL;
                    uint32_t none = 0;
                    for (uint32_t k = 0; k < 2000; k++) {
                        struct keel_lb_req req = {keel_balancer_hash(&k, sizeof(k)),
                                                  n_ex ? ex : NULL, n_ex, 0};
                        int i = ops->pick(&t.cl, st, &req);
                        if (i < 0 || (uint32_t)i >= n)
                            none++;
                        else
                            counts[i]++;
                    }
                    CHECK(none == 0 && counts[1] + counts[n - 1] == 2000,
                          "%s n=%u %s state=%d: %llu bad picks, %u none", ops->name, n,
                          how_names[how], use_state,
                          (unsigned long long)(2000 - counts[1] - counts[n - 1] - none), none);
                    /* Both good ones get traffic (all policies spread over distinct keys or
                     * idle endpoints). */
                    CHECK(counts[1] > 200 && counts[n - 1] > 200,
                          "%s n=%u %s state=%d: split %llu/%llu", ops->name, n, how_names[how],
                          use_state, (unsigned long long)counts[1],
                          (unsigned long long)counts[n - 1]);

                    /* Now the last good ones go too: nothing is eligible. */
                    if (how < 4) {
                        t.eps[1].health = t.eps[n - 1].health = 1u << how;
                    } else if (how == 4) {
                        t.eps[1].weight = t.eps[n - 1].weight = 0;
                    } else {
                        ex[n_ex++] = 1;
                        ex[n_ex++] = n - 1;
                    }
                    struct keel_lb_req req = {42, n_ex ? ex : NULL, n_ex, 0};
                    int got = 0;
                    for (int k = 0; k < 50 && got == 0; k++)
                        if (ops->pick(&t.cl, st, &req) != -1)
                            got = 1;
                    CHECK(got == 0, "%s n=%u %s state=%d: picked with none eligible", ops->name, n,
                          how_names[how], use_state);
                    ops->state_free(st);
                }
            }
        }
        /* Empty cluster, with and without state. */
        struct tcl t;
        tcl_init(&t, NULL, 0);
        void *st = ops->state_new(&t.cl);
        CHECK(ops->pick(&t.cl, st, &no_req) == -1, "%s: empty cluster", ops->name);
        CHECK(ops->pick(&t.cl, NULL, &no_req) == -1, "%s: empty cluster, no state", ops->name);
        ops->state_free(st);
        ops->state_free(NULL);
    }
}

/* Panic mode: every policy then balances over the endpoints discovery still offers, also the
 * ones active checks or passive ejection took out; drained ones stay out even then. */
static void test_panic(void)
{
    for (size_t o = 0; o < N_OPS; o++) {
        const struct keel_lb_ops *ops = all_ops[o];
        struct tcl t;
        uint64_t counts[MAX_EPS] = {0};
        tcl_init(&t, NULL, 4);
        t.eps[0].health = KEEL_EP_H_ACTIVE;
        t.eps[1].health = KEEL_EP_H_PASSIVE;
        atomic_store(&t.loads[2].ejected_until_ms, UINT64_MAX); /* ejected */
        t.eps[3].health = KEEL_EP_H_DISCOVERY;                  /* draining: never */
        void *st = ops->state_new(&t.cl);
        struct keel_lb_req normal = {7, NULL, 0, 0}, panic = {7, NULL, 0, 1};
        CHECK(ops->pick(&t.cl, st, &normal) == -1, "%s: nothing eligible", ops->name);
        for (uint32_t k = 0; k < 300; k++) {
            panic.hash = keel_balancer_hash(&k, sizeof(k));
            int i = ops->pick(&t.cl, st, &panic);
            CHECK(i >= 0 && i < 3, "%s: panic pick %d", ops->name, i);
            if (i >= 0 && i < MAX_EPS)
                counts[i]++;
        }
        CHECK(counts[3] == 0, "%s: a draining endpoint got %llu picks in panic", ops->name,
              (unsigned long long)counts[3]);
        /* Round-robin-like policies must spread; hashing ones at least use two. */
        uint32_t used = (counts[0] > 0) + (counts[1] > 0) + (counts[2] > 0);
        CHECK(used >= 2, "%s: panic used only %u endpoints", ops->name, used);
        ops->state_free(st);
    }
}

/* Without state every policy still spreads over the eligible set and honours weights roughly. */
static void test_no_state(void)
{
    const uint32_t w[] = {1, 3};

    for (size_t o = 0; o < N_OPS; o++) {
        const struct keel_lb_ops *ops = all_ops[o];
        struct tcl t;
        uint64_t counts[MAX_EPS];
        tcl_init(&t, w, 2);
        if (ops == &keel_lb_weighted_least_conn) {
            /* Idle (equal in-flight counts): smooth weighted round-robin splits by weight. */
            uint32_t none = count_picks(ops, &t, NULL, 1000, counts);
            CHECK(none == 0 && counts[0] == 250 && counts[1] == 750, "%s no state: %llu/%llu",
                  ops->name, (unsigned long long)counts[0], (unsigned long long)counts[1]);
            continue;
        }
        uint32_t none = count_picks(ops, &t, NULL, 40000, counts);
        CHECK(none == 0, "%s no state: %u none", ops->name, none);
        if (ops == &keel_lb_least_response_time) {
            /* Idle and equally fast: (0 + 1) x (0 + 1) / 3 beats / 1 every time. */
            CHECK(counts[0] == 0 && counts[1] == 40000, "%s no state: %llu/%llu", ops->name,
                  (unsigned long long)counts[0], (unsigned long long)counts[1]);
        } else if (ops == &keel_lb_round_robin || ops == &keel_lb_least_conn) {
            CHECK(counts[0] == 20000 && counts[1] == 20000, "%s no state: %llu/%llu", ops->name,
                  (unsigned long long)counts[0], (unsigned long long)counts[1]);
        } else {
            double share = counts[1] / 40000.0;
            CHECK(share > 0.72 && share < 0.78, "%s no state: weight-3 share %.3f", ops->name,
                  share);
        }
    }
}

/* ---- ip_hash consistency ---- */

#define N_KEYS 10000

static void assign(const struct tcl *t, int *out)
{
    void *st = keel_lb_ip_hash.state_new(&t->cl);
    for (uint32_t k = 0; k < N_KEYS; k++) {
        char ip[32];
        snprintf(ip, sizeof(ip), "192.168.%u.%u", k / 256, k % 256);
        struct keel_lb_req req = {keel_balancer_hash(ip, strlen(ip)), NULL, 0, 0};
        out[k] = keel_lb_ip_hash.pick(&t->cl, st, &req);
    }
    keel_lb_ip_hash.state_free(st);
}

static void test_ip_hash(void)
{
    static int a[N_KEYS], b[N_KEYS];
    struct tcl t4, t5, t3;

    /* Same key, same endpoint, with and without state, across fresh states. */
    tcl_init(&t4, NULL, 4);
    void *s1 = keel_lb_ip_hash.state_new(&t4.cl);
    int same = 1;
    for (uint64_t k = 0; k < 1000; k++) {
        struct keel_lb_req req = {keel_balancer_hash(&k, sizeof(k)), NULL, 0, 0};
        int x = keel_lb_ip_hash.pick(&t4.cl, s1, &req);
        if (keel_lb_ip_hash.pick(&t4.cl, s1, &req) != x ||
            keel_lb_ip_hash.pick(&t4.cl, NULL, &req) != x)
            same = 0;
    }
    CHECK(same, "ip_hash not stable for a key");
    keel_lb_ip_hash.state_free(s1);

    /* Adding a 5th endpoint: ~1/5 of keys move, all of them to the new one. */
    tcl_init(&t5, NULL, 5);
    assign(&t4, a);
    assign(&t5, b);
    uint32_t moved = 0, moved_elsewhere = 0;
    for (uint32_t k = 0; k < N_KEYS; k++) {
        if (a[k] != b[k]) {
            moved++;
            if (b[k] != 4)
                moved_elsewhere++;
        }
    }
    printf("  ip_hash                add 5th to 4: %.2f%% of %d keys moved (ideal 20%%), %u "
           "elsewhere\n",
           moved * 100.0 / N_KEYS, N_KEYS, moved_elsewhere);
    CHECK(moved >= N_KEYS * 15 / 100 && moved <= N_KEYS * 25 / 100, "moved %u", moved);
    CHECK(moved_elsewhere == 0, "%u keys moved between old endpoints", moved_elsewhere);

    /* Removing endpoint 1 (the others keep their names, hence identity, at new indices). */
    tcl_init(&t3, NULL, 3);
    for (uint32_t i = 0, j = 0; i < 4; i++)
        if (i != 1)
            memcpy(t3.eps[j++].name, t4.eps[i].name, sizeof(t4.eps[i].name));
    assign(&t3, b);
    uint32_t bad = 0, from_removed = 0;
    for (uint32_t k = 0; k < N_KEYS; k++) {
        const char *before = t4.eps[a[k]].name, *after = t3.eps[b[k]].name;
        if (a[k] == 1)
            from_removed++;
        else if (strcmp(before, after) != 0)
            bad++;
    }
    printf("  ip_hash                remove 1 of 4: %u keys of the removed endpoint moved, %u "
           "others\n",
           from_removed, bad);
    CHECK(bad == 0, "%u keys of surviving endpoints moved", bad);
    CHECK(from_removed > N_KEYS / 5 && from_removed < N_KEYS * 3 / 10, "removed ep had %u",
          from_removed);

    /* Ejecting endpoint 2 (health bit) also moves only its keys; healing restores them. */
    t4.eps[2].health = KEEL_EP_H_PASSIVE;
    assign(&t4, b);
    bad = 0;
    for (uint32_t k = 0; k < N_KEYS; k++)
        if (a[k] != 2 && b[k] != a[k])
            bad++;
    CHECK(bad == 0, "ejection moved %u other keys", bad);
    t4.eps[2].health = 0;
    assign(&t4, b);
    CHECK(memcmp(a, b, sizeof(a)) == 0, "healing restores the mapping");

    /* A retry (exclude) moves the key off the tried endpoint only. */
    s1 = keel_lb_ip_hash.state_new(&t4.cl);
    bad = 0;
    for (uint64_t k = 0; k < 1000; k++) {
        struct keel_lb_req req = {keel_balancer_hash(&k, sizeof(k)), NULL, 0, 0};
        uint32_t first = (uint32_t)keel_lb_ip_hash.pick(&t4.cl, s1, &req);
        req.exclude = &first;
        req.n_exclude = 1;
        int second = keel_lb_ip_hash.pick(&t4.cl, s1, &req);
        if (second < 0 || (uint32_t)second == first)
            bad++;
    }
    CHECK(bad == 0, "retry picked the excluded endpoint %u times", bad);
    keel_lb_ip_hash.state_free(s1);

    /* Weighted, 4 endpoints 1,1,2,4: keys split by weight within 5%. */
    const uint32_t w[] = {1, 1, 2, 4};
    tcl_init(&t4, w, 4);
    assign(&t4, a);
    uint32_t cnt[4] = {0};
    for (uint32_t k = 0; k < N_KEYS; k++)
        cnt[a[k]]++;
    printf("  ip_hash                weights 1,1,2,4 over %d keys: %u %u %u %u\n", N_KEYS, cnt[0],
           cnt[1], cnt[2], cnt[3]);
    for (uint32_t i = 0; i < 4; i++) {
        double want = N_KEYS * w[i] / 8.0;
        double dev = (cnt[i] - want) / want;
        CHECK(dev > -0.05 && dev < 0.05, "ip_hash weight %u: %u want %.0f", w[i], cnt[i], want);
    }
    /* Doubling one weight moves keys only onto that endpoint. */
    t4.eps[0].weight = 2;
    assign(&t4, b);
    bad = 0;
    for (uint32_t k = 0; k < N_KEYS; k++)
        if (a[k] != b[k] && b[k] != 0)
            bad++;
    CHECK(bad == 0, "weight increase moved %u keys elsewhere", bad);
}

/* ---- least_response_time ---- */

static void set_latency(struct tcl *t, uint32_t i, uint32_t us, uint64_t stamp_ms)
{
    atomic_store_explicit(&t->loads[i].ewma_latency_us, us, memory_order_relaxed);
    atomic_store_explicit(&t->loads[i].ewma_stamp_ms, stamp_ms, memory_order_relaxed);
}

static void test_lrt_scores(void)
{
    /* Two endpoints are always both compared: the lower (latency + 1) x (active + 1) / weight
     * wins, deterministically. */
    static const struct {
        uint32_t lat[2], active[2], weight[2];
        int want;
    } cases[] = {
        {{1000, 5000}, {0, 0}, {1, 1}, 0},               /* faster */
        {{5000, 1000}, {0, 0}, {1, 1}, 1},               /* faster, other side */
        {{1000, 1000}, {3, 0}, {1, 1}, 1},               /* same speed: fewer in flight */
        {{1000, 3000}, {2, 0}, {1, 1}, 1},               /* 1001 x 3 > 3001 x 1 */
        {{1000, 3000}, {1, 0}, {1, 1}, 0},               /* 1001 x 2 < 3001 x 1 */
        {{3000, 1000}, {0, 0}, {4, 1}, 0},               /* 3001 / 4 < 1001 / 1 */
        {{3000, 1000}, {0, 0}, {2, 1}, 1},               /* 3001 / 2 > 1001 / 1 */
        {{0, 5000}, {1, 0}, {1, 1}, 1},                  /* unmeasured scores as 5000: 2 x 5001 */
        {{0, 5000}, {0, 1}, {1, 1}, 0},                  /* ... and wins against 2 x 5001 */
        {{4000000000u, 1}, {4000000000u, 0}, {1, 1}, 1}, /* no overflow */
        {{1, 4000000000u}, {4000000000u, 0}, {1, 4000000000u}, 1},
    };
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        struct tcl t;
        tcl_init(&t, cases[c].weight, 2);
        for (uint32_t i = 0; i < 2; i++) {
            set_active(&t, i, cases[c].active[i]);
            set_latency(&t, i, cases[c].lat[i], 0);
        }
        void *st = keel_lb_least_response_time.state_new(&t.cl);
        int ok = 1, got = -2;
        for (int k = 0; k < 50 && ok; k++) {
            got = keel_lb_least_response_time.pick(&t.cl, k % 2 ? st : NULL, &no_req);
            ok = got == cases[c].want;
        }
        CHECK(ok, "lrt case %zu: got %d want %d", c, got, cases[c].want);
        keel_lb_least_response_time.state_free(st);
    }

    /* A new endpoint (no latency yet) scores as the best known one, so it is tried: beside a
     * 1 ms endpoint at equal load it gets about half, not nothing. */
    struct tcl t;
    uint64_t counts[MAX_EPS];
    tcl_init(&t, NULL, 2);
    set_latency(&t, 0, 1000, 0);
    void *st = keel_lb_least_response_time.state_new(&t.cl);
    count_picks(&keel_lb_least_response_time, &t, st, 10000, counts);
    CHECK(counts[1] > 4000 && counts[1] < 6000, "new endpoint got %llu of 10000",
          (unsigned long long)counts[1]);
    keel_lb_least_response_time.state_free(st);

    /* The fastest excluded (a retry): never picked, the next fastest instead. */
    tcl_init(&t, NULL, 3);
    set_latency(&t, 0, 100, 0);
    set_latency(&t, 1, 2000, 0);
    set_latency(&t, 2, 3000, 0);
    st = keel_lb_least_response_time.state_new(&t.cl);
    uint32_t ex = 0;
    struct keel_lb_req req = {0, &ex, 1, 0};
    uint32_t c0 = 0, c1 = 0;
    for (int k = 0; k < 1000; k++) {
        int i = keel_lb_least_response_time.pick(&t.cl, st, &req);
        c0 += i == 0;
        c1 += i == 1;
    }
    CHECK(c0 == 0 && c1 == 1000, "lrt with the fastest excluded: %u to it, %u to the next", c0, c1);
    keel_lb_least_response_time.state_free(st);
}

static void test_lrt_proportion(void)
{
    struct tcl t;
    uint64_t counts[MAX_EPS];
    double avg[MAX_EPS];

    /* Sequential picks over 1, 2, 4 and 8 ms endpoints: two random candidates, the faster
     * wins, so the k-th fastest of n gets 2(n - k) / (n(n - 1)): 50%, 33%, 17%, 0%. */
    const uint32_t lat4[] = {1000, 2000, 4000, 8000};
    tcl_init(&t, NULL, 4);
    for (uint32_t i = 0; i < 4; i++)
        set_latency(&t, i, lat4[i], 0);
    void *st = keel_lb_least_response_time.state_new(&t.cl);
    count_picks(&keel_lb_least_response_time, &t, st, 60000, counts);
    printf("  least_response_time    1,2,4,8 ms, sequential: %llu %llu %llu %llu\n",
           (unsigned long long)counts[0], (unsigned long long)counts[1],
           (unsigned long long)counts[2], (unsigned long long)counts[3]);
    const double want4[] = {0.5, 1 / 3.0, 1 / 6.0, 0};
    for (uint32_t i = 0; i < 4; i++) {
        double share = counts[i] / 60000.0;
        CHECK(share > want4[i] - 0.02 && share < want4[i] + 0.02, "lrt ep %u share %.3f", i, share);
    }
    keel_lb_least_response_time.state_free(st);

    /* Under concurrent load the in-flight counts balance the scores: 64 requests in flight
     * over a 1 ms and a 3 ms endpoint settle where 1001 (a0 + 1) = 3001 (a1 + 1), about 48.5
     * against 15.5: the fast one carries three times as much, the slow one is not starved. */
    const uint32_t lat2[] = {1000, 3000};
    tcl_init(&t, NULL, 2);
    for (uint32_t i = 0; i < 2; i++)
        set_latency(&t, i, lat2[i], 0);
    simulate_load(&keel_lb_least_response_time, &t, 64, 100000, avg);
    double ratio = avg[0] / avg[1];
    printf("  least_response_time    1 ms vs 3 ms, 64 in flight: avg active %.2f / %.2f, ratio "
           "%.2f\n",
           avg[0], avg[1], ratio);
    CHECK(ratio >= 2.6 && ratio <= 3.6, "lrt latency ratio %.2f", ratio);

    /* Weights: equally fast, weights 1 and 3: (a0 + 1) / 1 = (a1 + 1) / 3, ratio ~3.2. */
    const uint32_t w2[] = {1, 3};
    tcl_init(&t, w2, 2);
    for (uint32_t i = 0; i < 2; i++)
        set_latency(&t, i, 2000, 0);
    simulate_load(&keel_lb_least_response_time, &t, 64, 100000, avg);
    ratio = avg[1] / avg[0];
    printf("  least_response_time    weights 1,3, equal latency, 64 in flight: ratio %.2f\n",
           ratio);
    CHECK(ratio >= 2.7 && ratio <= 3.6, "lrt weight ratio %.2f", ratio);

    /* Two random choices over 32 endpoints, half at 1 ms and half at 2 ms, 512 in flight:
     * 1001 (af + 1) = 2001 (as + 1) with af + as = 32 gives af / as of about 2. */
    tcl_init(&t, NULL, 32);
    for (uint32_t i = 0; i < 32; i++)
        set_latency(&t, i, i % 2 ? 2000 : 1000, 0);
    simulate_load(&keel_lb_least_response_time, &t, 512, 200000, avg);
    double fast = 0, slow = 0;
    for (uint32_t i = 0; i < 32; i++)
        *(i % 2 ? &slow : &fast) += avg[i];
    ratio = fast / slow;
    printf("  least_response_time    32 eps 1 ms / 2 ms, 512 in flight: avg per ep %.2f / %.2f, "
           "ratio %.2f\n",
           fast / 16, slow / 16, ratio);
    CHECK(ratio >= 1.6 && ratio <= 2.4, "lrt p2c ratio %.2f", ratio);
}

/* A slow endpoint that lost every comparison is forgiven as its estimate ages, and gets
 * measured again; a fresh slow estimate keeps it out. */
static void test_lrt_forgiveness(void)
{
    struct tcl t;
    uint64_t saved = keel_clock_now_ms;

    tcl_init(&t, NULL, 2);
    keel_clock_now_ms = 100000;
    set_latency(&t, 0, 1000, 100000); /* fast, measured just now */
    set_latency(&t, 1, 50000, 99000); /* 50 ms, 1 s ago: 18 ms still */
    void *st = keel_lb_least_response_time.state_new(&t.cl);
    int fresh = keel_lb_least_response_time.pick(&t.cl, st, &no_req);
    set_latency(&t, 1, 50000, 95000); /* 5 s ago: 50 ms x e^-5 = 0.34 ms */
    int aged = keel_lb_least_response_time.pick(&t.cl, st, &no_req);
    CHECK(fresh == 0 && aged == 1, "forgiveness: fresh %d (want 0), aged %d (want 1)", fresh, aged);
    keel_lb_least_response_time.state_free(st);
    keel_clock_now_ms = saved;
}

/* ---- hash: consistent hashing with bounded load ---- */

static void hash_assign(const struct tcl *t, int *out, uint32_t n_keys)
{
    void *st = keel_lb_hash.state_new(&t->cl);
    for (uint32_t k = 0; k < n_keys; k++) {
        char user[32];
        snprintf(user, sizeof(user), "user-%u", k);
        struct keel_lb_req req = {keel_balancer_hash(user, strlen(user)), NULL, 0, 0};
        out[k] = keel_lb_hash.pick(&t->cl, st, &req);
    }
    keel_lb_hash.state_free(st);
}

static uint32_t max_active(struct tcl *t, uint64_t *total)
{
    uint32_t mx = 0;
    *total = 0;
    for (uint32_t i = 0; i < t->cl.n_eps; i++) {
        uint32_t a = get_active(t, i);
        *total += a;
        mx = a > mx ? a : mx;
    }
    return mx;
}

static void test_hash_consistency(void)
{
    static int a[N_KEYS], b[N_KEYS];
    struct tcl t10, t11;

    /* Same key, same endpoint: with and without state, across fresh states. */
    tcl_init(&t10, NULL, 10);
    void *s1 = keel_lb_hash.state_new(&t10.cl), *s2 = keel_lb_hash.state_new(&t10.cl);
    int same = 1;
    uint32_t used[MAX_EPS] = {0};
    for (uint64_t k = 0; k < 1000; k++) {
        struct keel_lb_req req = {keel_balancer_hash(&k, sizeof(k)), NULL, 0, 0};
        int x = keel_lb_hash.pick(&t10.cl, s1, &req);
        if (x < 0 || keel_lb_hash.pick(&t10.cl, s1, &req) != x ||
            keel_lb_hash.pick(&t10.cl, s2, &req) != x ||
            keel_lb_hash.pick(&t10.cl, NULL, &req) != x)
            same = 0;
        else
            used[x]++;
    }
    CHECK(same, "hash not stable for a key");
    for (uint32_t i = 0; i < 10; i++)
        CHECK(used[i] > 60 && used[i] < 140, "hash: ep %u has %u of 1000 keys", i, used[i]);
    keel_lb_hash.state_free(s1);
    keel_lb_hash.state_free(s2);

    /* Adding an 11th endpoint moves ~1/11 of the keys, all to the new one. */
    tcl_init(&t11, NULL, 11);
    hash_assign(&t10, a, N_KEYS);
    hash_assign(&t11, b, N_KEYS);
    uint32_t moved = 0, elsewhere = 0;
    for (uint32_t k = 0; k < N_KEYS; k++) {
        if (a[k] != b[k]) {
            moved++;
            elsewhere += b[k] != 10;
        }
    }
    printf("  hash                   add 11th to 10: %.2f%% of %d keys moved (ideal 9.09%%), %u "
           "elsewhere\n",
           moved * 100.0 / N_KEYS, N_KEYS, elsewhere);
    CHECK(moved >= N_KEYS * 7 / 100 && moved <= N_KEYS * 11 / 100, "moved %u", moved);
    CHECK(elsewhere == 0, "%u keys moved between old endpoints", elsewhere);

    /* Removing endpoint 3 moves only its keys. */
    t10.eps[3].health = KEEL_EP_H_DISCOVERY;
    hash_assign(&t10, b, N_KEYS);
    uint32_t bad = 0;
    for (uint32_t k = 0; k < N_KEYS; k++)
        bad += a[k] != 3 && b[k] != a[k];
    CHECK(bad == 0, "removing one moved %u other keys", bad);
    t10.eps[3].health = 0;

    /* While the loads are balanced (everyone at 5 in flight, under the bound of
     * ceil(1.25 x 51 / 10) = 7), every key stays where it was when idle. */
    for (uint32_t i = 0; i < 10; i++)
        set_active(&t10, i, 5);
    hash_assign(&t10, b, N_KEYS);
    CHECK(memcmp(a, b, sizeof(a)) == 0, "balanced load moved keys");

    /* Weighted 1,1,2,4, idle: keys split by weight within 5%. */
    const uint32_t w[] = {1, 1, 2, 4};
    struct tcl t4;
    tcl_init(&t4, w, 4);
    hash_assign(&t4, a, N_KEYS);
    uint32_t cnt[4] = {0};
    for (uint32_t k = 0; k < N_KEYS; k++)
        if (a[k] >= 0 && a[k] < 4)
            cnt[a[k]]++;
    for (uint32_t i = 0; i < 4; i++) {
        double want = N_KEYS * w[i] / 8.0, dev = (cnt[i] - want) / want;
        CHECK(dev > -0.05 && dev < 0.05, "hash weight %u: %u want %.0f", w[i], cnt[i], want);
    }
}

static void test_hash_bounded_load(void)
{
    struct tcl t;
    uint64_t total;
    const uint64_t hot = keel_balancer_hash("hot-user", 8);
    struct keel_lb_req req = {hot, NULL, 0, 0};

    /* One hot key, requests piling up (none finish): the key's own endpoint fills to its
     * bound, then the next in the key's order, and so on; no endpoint ever holds more than
     * 1.25 x the average + 1. */
    tcl_init(&t, NULL, 8);
    void *st = keel_lb_hash.state_new(&t.cl);
    int home = keel_lb_hash.pick(&t.cl, st, &req);
    int ok = 1;
    uint32_t worst_step = 0;
    double worst = 0;
    for (uint32_t s = 0; s < 2000 && ok; s++) {
        int i = keel_lb_hash.pick(&t.cl, st, &req);
        if (i < 0) {
            ok = 0;
            break;
        }
        atomic_fetch_add_explicit(&t.loads[i].active, 1, memory_order_relaxed);
        uint32_t mx = max_active(&t, &total);
        double limit = 1.25 * (double)total / 8 + 1;
        if (mx > limit) {
            ok = 0;
            worst_step = s;
            worst = mx;
        }
    }
    CHECK(ok, "hot key: an endpoint at %.0f in flight at step %u", worst, worst_step);
    max_active(&t, &total);
    CHECK(total == 2000, "hot key: %llu placed", (unsigned long long)total);
    uint32_t home_active = home >= 0 ? get_active(&t, (uint32_t)home) : 0;
    uint32_t mx = max_active(&t, &total);
    CHECK(home >= 0 && home_active == mx, "hot key: home %d holds %u, max %u", home, home_active,
          mx);
    /* The key spilled over in its own order: six endpoints at the bound of 1.25 x 250 hold
     * at most 1878, so a seventh takes the rest; an eighth is not needed. */
    uint32_t in_use = 0, full = 0;
    for (uint32_t i = 0; i < 8; i++) {
        in_use += get_active(&t, i) > 0;
        full += get_active(&t, i) >= 300;
    }
    printf("  hash                   hot key, 2000 in flight over 8: %u endpoints used, %u near "
           "the bound, max %u (avg 250, bound %.1f)\n",
           in_use, full, mx, 1.25 * 2000 / 8 + 1);
    CHECK(in_use >= 7 && full >= 6, "hot key: %u endpoints used, %u full", in_use, full);
    keel_lb_hash.state_free(st);

    /* Steady state with completions: 200 in flight, a hot key for half the requests and many
     * cold keys for the rest. The bound holds after every pick, and the cold keys mostly
     * stay home (only endpoints at their bound turn keys away). */
    tcl_init(&t, NULL, 8);
    st = keel_lb_hash.state_new(&t.cl);
    uint32_t open[256], n_open = 0, cold = 0, cold_home = 0;
    ok = 1;
    for (uint32_t s = 0; s < 20000 && ok; s++) {
        uint32_t key = (uint32_t)(test_rand() % 1000);
        struct keel_lb_req r = {s % 2 ? hot : keel_balancer_hash(&key, sizeof(key)), NULL, 0, 0};
        int i = keel_lb_hash.pick(&t.cl, st, &r);
        if (i < 0) {
            ok = 0;
            break;
        }
        if (s % 2 == 0) {
            /* Where the key lives when nothing is loaded: a stateless pick on an idle copy. */
            struct tcl idle;
            tcl_init(&idle, NULL, 8);
            cold++;
            cold_home += keel_lb_hash.pick(&idle.cl, NULL, &r) == i;
        }
        atomic_fetch_add_explicit(&t.loads[i].active, 1, memory_order_relaxed);
        open[n_open++] = (uint32_t)i;
        uint32_t m = max_active(&t, &total);
        if (m > 1.25 * (double)total / 8 + 1)
            ok = 0;
        if (n_open > 200) {
            uint32_t k = (uint32_t)(test_rand() % n_open);
            atomic_fetch_sub_explicit(&t.loads[open[k]].active, 1, memory_order_relaxed);
            open[k] = open[--n_open];
        }
    }
    CHECK(ok, "steady hot key: bound broken");
    printf("  hash                   half hot key, 200 in flight: %.1f%% of cold keys at home\n",
           cold_home * 100.0 / cold);
    CHECK(cold_home > cold / 2, "cold keys at home %u of %u", cold_home, cold);
    keel_lb_hash.state_free(st);

    /* Weighted bounds: weights 1 and 3, so bounds of 1.25 x 1/4 and 1.25 x 3/4 of the load.
     * For hot keys at home on either endpoint, the home fills to its own bound (31% or 94%)
     * and the other takes the rest; neither passes its bound. */
    const uint32_t w[] = {1, 3};
    int homes[2] = {0, 0};
    for (uint32_t key = 0; key < 64 && !(homes[0] && homes[1]); key++) {
        tcl_init(&t, w, 2);
        st = keel_lb_hash.state_new(&t.cl);
        struct keel_lb_req r = {keel_balancer_hash(&key, sizeof(key)), NULL, 0, 0};
        int h = keel_lb_hash.pick(&t.cl, st, &r);
        ok = h >= 0;
        for (uint32_t s = 1; s <= 1000 && ok; s++) {
            int i = keel_lb_hash.pick(&t.cl, st, &r);
            if (i < 0)
                break;
            atomic_fetch_add_explicit(&t.loads[i].active, 1, memory_order_relaxed);
            ok = get_active(&t, 0) <= 1.25 * s / 4 + 1 && get_active(&t, 1) <= 1.25 * s * 3 / 4 + 1;
        }
        CHECK(ok, "weighted bound broken for key %u", key);
        if (h >= 0 && !homes[h]) {
            homes[h] = 1;
            double share = get_active(&t, (uint32_t)h) / 1000.0, want = h ? 0.9375 : 0.3125;
            CHECK(share > want - 0.01 && share < want + 0.01, "weighted home %d share %.3f", h,
                  share);
        }
        keel_lb_hash.state_free(st);
    }
    CHECK(homes[0] && homes[1], "no hot key at home on each endpoint");
}

/* The key comes from the configured header or cookie; absent, the client IP hash stays. */
static void test_hash_key(void)
{
    struct keel_cfg_cluster cfg;
    const uint64_t ip = 0x1234567890abcdefull;
    static const struct {
        enum keel_hash_source source;
        const char *name;
        const char *head;
        const char *want; /* the value hashed, NULL: no key */
    } cases[] = {
        {KEEL_HASH_ON_HEADER, "X-User", "GET / HTTP/1.1\r\nHost: a\r\nX-User: alice\r\n\r\n",
         "alice"},
        {KEEL_HASH_ON_HEADER, "X-User", "GET / HTTP/1.1\r\nx-user:  bob \t\r\n\r\n", "bob"},
        {KEEL_HASH_ON_HEADER, "X-User", "GET / HTTP/1.1\r\nX-User-Id: carol\r\n\r\n", NULL},
        {KEEL_HASH_ON_HEADER, "X-User", "GET / HTTP/1.1\r\nX-Use: carol\r\n\r\n", NULL},
        {KEEL_HASH_ON_HEADER, "X-User", "GET / HTTP/1.1\r\nX-User:\r\nX-User: dave\r\n\r\n",
         "dave"},
        {KEEL_HASH_ON_HEADER, "X-User", "GET / HTTP/1.1\r\nX-User: \r\n\r\n", NULL},
        {KEEL_HASH_ON_HEADER, "X-User", "GET /X-User: x HTTP/1.1\r\nHost: a\r\n\r\n", NULL},
        {KEEL_HASH_ON_HEADER, "X-User", "GET / HTTP/1.1\r\nHost: a\r\n\r\nX-User: body\r\n", NULL},
        {KEEL_HASH_ON_HEADER, "X-User", "GET / HTTP/1.1\nX-User: lf\n\n", "lf"},
        {KEEL_HASH_ON_HEADER, "X-User", "GET / HTTP/1.1\r\nX-User: eve", "eve"},
        {KEEL_HASH_ON_HEADER, "X-User", "", NULL},
        {KEEL_HASH_ON_COOKIE, "sid", "GET / HTTP/1.1\r\nCookie: a=1; sid=s1; b=2\r\n\r\n", "s1"},
        {KEEL_HASH_ON_COOKIE, "sid", "GET / HTTP/1.1\r\ncookie: sid=\"s2\"\r\n\r\n", "s2"},
        {KEEL_HASH_ON_COOKIE, "sid", "GET / HTTP/1.1\r\nCookie: a=1\r\nCookie: sid=s3\r\n\r\n",
         "s3"},
        {KEEL_HASH_ON_COOKIE, "sid", "GET / HTTP/1.1\r\nCookie: SID=x; xsid=y; sid2=z\r\n\r\n",
         NULL},
        {KEEL_HASH_ON_COOKIE, "sid", "GET / HTTP/1.1\r\nCookie: sid=\r\n\r\n", NULL},
        {KEEL_HASH_ON_COOKIE, "sid", "GET / HTTP/1.1\r\nX-Cookie: sid=no\r\n\r\n", NULL},
        {KEEL_HASH_ON_COOKIE, "sid", "GET / HTTP/1.1\r\nsid: no\r\n\r\n", NULL},
        {KEEL_HASH_ON_COOKIE, "sid", "GET / HTTP/1.1\r\nCookie: noeq; sid = s4 \r\n\r\n", "s4"},
        {KEEL_HASH_ON_IP, NULL, "GET / HTTP/1.1\r\nX-User: alice\r\n\r\n", NULL},
    };
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        memset(&cfg, 0, sizeof(cfg));
        cfg.lb = KEEL_LB_HASH;
        cfg.hash_on.source = cases[c].source;
        cfg.hash_on.name = (char *)cases[c].name;
        uint64_t h = ip;
        int got = keel_balancer_key_hash(&cfg, cases[c].head, strlen(cases[c].head), &h);
        if (cases[c].want)
            CHECK(got == 1 && h == keel_balancer_hash(cases[c].want, strlen(cases[c].want)),
                  "key case %zu: got %d", c, got);
        else
            CHECK(got == 0 && h == ip, "key case %zu: got %d, hash changed %d", c, got, h != ip);
    }
    CHECK(keel_balancer_key_hash(NULL, "x", 1, NULL) == 0, "NULL cluster config");

    /* As the proxy uses it: the same X-User from 200 client addresses lands on one endpoint;
     * without the header each address goes its own way (over all endpoints). */
    struct tcl t;
    tcl_init(&t, NULL, 5);
    memset(&cfg, 0, sizeof(cfg));
    cfg.hash_on.source = KEEL_HASH_ON_HEADER;
    cfg.hash_on.name = "X-User";
    void *st = keel_lb_hash.state_new(&t.cl);
    static const char with[] = "GET / HTTP/1.1\r\nX-User: alice\r\n\r\n";
    static const char without[] = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    int first = -1, same = 1;
    uint32_t used[MAX_EPS] = {0};
    for (uint32_t k = 0; k < 200; k++) {
        char addr[32];
        snprintf(addr, sizeof(addr), "10.1.%u.%u", k / 256, k % 256);
        struct keel_lb_req r = {keel_balancer_hash(addr, strlen(addr)), NULL, 0, 0};
        struct keel_lb_req r2 = r;
        keel_balancer_key_hash(&cfg, with, strlen(with), &r.hash);
        keel_balancer_key_hash(&cfg, without, strlen(without), &r2.hash);
        int i = keel_lb_hash.pick(&t.cl, st, &r);
        if (first < 0)
            first = i;
        same &= i == first;
        int j = keel_lb_hash.pick(&t.cl, st, &r2);
        if (j >= 0 && j < MAX_EPS)
            used[j]++;
    }
    CHECK(same && first >= 0, "one user from many addresses spread");
    for (uint32_t i = 0; i < 5; i++)
        CHECK(used[i] > 10, "no-key fallback: ep %u got %u of 200 addresses", i, used[i]);
    keel_lb_hash.state_free(st);
}

int main(void)
{
    test_hash_and_exclude();
    test_weighted_distribution();
    test_wlc_scores();
    test_wlc_steady_load();
    test_least_conn();
    test_wrr_sequence();
    test_ineligible();
    test_no_state();
    test_panic();
    test_ip_hash();
    test_lrt_scores();
    test_lrt_proportion();
    test_lrt_forgiveness();
    test_hash_consistency();
    test_hash_bounded_load();
    test_hash_key();
    printf("test_balancer: %d passed, %d failed\n", n_pass, n_fail);
    return n_fail != 0;
}
