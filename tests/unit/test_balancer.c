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
    };
    for (int p = 0; p < KEEL_LB__COUNT; p++) {
        const struct keel_lb_ops *ops = keel_lb_registry[p];
        CHECK(ops != NULL && strcmp(ops->name, names[p]) == 0, "registry[%d] is %s", p, names[p]);
        CHECK(ops->pick && ops->state_new && ops->state_free, "registry[%d] complete", p);
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
        if (ops == &keel_lb_round_robin || ops == &keel_lb_least_conn) {
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
    printf("test_balancer: %d passed, %d failed\n", n_pass, n_fail);
    return n_fail != 0;
}
