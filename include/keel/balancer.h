/* SPDX-License-Identifier: MIT */
/* Load-balancing policies: one file per policy under sidecar/balancer/, behind an ops struct.
 * [worker] unless noted. */
#ifndef KEEL_BALANCER_H
#define KEEL_BALANCER_H

#include <stddef.h>
#include <stdint.h>
#include "keel/snap.h"

/* What a pick knows about the request. */
struct keel_lb_req {
    uint64_t hash;           /* hash of the client key: the client IP; for lb: hash the
                                header or cookie of hash_on when the request has it */
    const uint32_t *exclude; /* endpoint indices not to pick (already tried), may be NULL */
    size_t n_exclude;
    int panic; /* too little of the cluster is healthy: use every endpoint still present in
                  discovery, whatever active checks and passive ejection say */
};

struct keel_lb_ops {
    const char *name; /* as in keel.yaml */
    /**
     * Creates the per-worker state for one cluster of one snapshot (counters, current weights).
     * Called when a worker adopts a snapshot. May return NULL when the policy has no state;
     * returns NULL on ENOMEM too, and pick() must then still work (stateless fallback).
     */
    void *(*state_new)(const struct keel_cluster *cl);
    /** Frees what state_new returned (NULL is fine). */
    void (*state_free)(void *st);
    /**
     * Chooses an eligible endpoint (keel_ep_eligible) not in req->exclude.
     * @return endpoint index, or -1 when none is eligible.
     */
    int (*pick)(const struct keel_cluster *cl, void *st, const struct keel_lb_req *req);
};

extern const struct keel_lb_ops keel_lb_weighted_least_conn;
extern const struct keel_lb_ops keel_lb_least_conn;
extern const struct keel_lb_ops keel_lb_round_robin;
extern const struct keel_lb_ops keel_lb_weighted_round_robin;
extern const struct keel_lb_ops keel_lb_ip_hash;
extern const struct keel_lb_ops keel_lb_random;
extern const struct keel_lb_ops keel_lb_least_response_time;
extern const struct keel_lb_ops keel_lb_hash;

/** Registry indexed by enum keel_lb_policy. [any] */
extern const struct keel_lb_ops *const keel_lb_registry[KEEL_LB__COUNT];

/** Whether index i is in req->exclude. [any] */
int keel_balancer_excluded(const struct keel_lb_req *req, uint32_t i);

/** 64-bit hash (FNV-1a then a finaliser) for hashing client keys. [any] */
uint64_t keel_balancer_hash(const void *data, size_t len);

/**
 * Finds the key of `lb: hash` in a request head as cfg->hash_on says (a header value, or a
 * cookie value from the Cookie headers) and hashes it with keel_balancer_hash().
 * @param head  the request head, "Name: value" lines after the request line; borrowed.
 * @param out   out: the key's hash, set only when found (so it may hold the client IP hash
 *              beforehand, as the fallback).
 * @return 1 when the key is present and not empty, 0 when absent or hash_on is the client IP
 *         (the caller then uses the client IP hash). [any]
 */
int keel_balancer_key_hash(const struct keel_cfg_cluster *cfg, const char *head, size_t len,
                           uint64_t *out);

/** Whether endpoint i may be picked for req: eligible (present, in panic mode) and not
 *  excluded. Every policy decides through this. [any] */
static inline int keel_balancer_usable(const struct keel_cluster *cl, const struct keel_lb_req *req,
                                       uint32_t i)
{
    const struct keel_endpoint *ep = &cl->eps[i];
    if (req && req->panic ? !keel_ep_present(ep) : !keel_ep_eligible(ep))
        return 0;
    return !keel_balancer_excluded(req, i);
}

/** In-flight requests on an endpoint across all workers (relaxed read). [any] */
static inline uint32_t keel_balancer_active(const struct keel_endpoint *ep)
{
    return ep->load ? atomic_load_explicit(&ep->load->active, memory_order_relaxed) : 0;
}

/** splitmix64 finaliser: every output bit depends on every input bit. [any] */
uint64_t keel_balancer_mix(uint64_t h);

/** Hash of an endpoint's identity (its name) for rendezvous hashing. [any] */
uint64_t keel_balancer_ep_hash(const struct keel_endpoint *ep);

/* Per-worker state of the rendezvous-hashing policies (ip_hash, hash): each endpoint's
 * identity hash, computed once per snapshot. */
struct keel_rendezvous_state {
    uint32_t n;    /* cl->n_eps when created */
    int uniform;   /* all endpoints have the same weight: compare raw hashes, no log() */
    uint64_t id[]; /* keel_balancer_ep_hash() of each endpoint */
};

/** state_new of the rendezvous policies. @return NULL on ENOMEM. [worker] */
void *keel_balancer_rendezvous_state_new(const struct keel_cluster *cl);

/** state_free for states that are one malloc() block. [worker] */
void keel_balancer_state_free(void *st);

/** Weighted rendezvous score -weight / ln(u), u from h uniform in (0,1): the endpoint with the
 *  highest score wins with probability weight / total weight, independently per key. [any] */
double keel_balancer_rendezvous(uint64_t h, uint32_t weight);

/** A non-zero generator seed distinct per state object, cluster and moment, so workers (and
 *  snapshots) do not draw the same sequences. [any] */
uint64_t keel_balancer_seed(uintptr_t state_addr, uint32_t salt);

/** xorshift64* step on a policy's per-state generator; a 0 state is seeded from its address.
 *  [worker] */
uint64_t keel_balancer_rand(uint64_t *state);

/** A uniformly drawn usable endpoint other than `avoid` (-1: none to avoid), or -1. A few
 *  probes find one at once in a healthy cluster; a scan from a random start covers
 *  mostly-ineligible or excluded ones, so with two usable endpoints the second draw always
 *  finds the other one. [worker] */
int keel_balancer_random_usable(const struct keel_cluster *cl, uint64_t *rng,
                                const struct keel_lb_req *req, int avoid);

/** Uniform in [0, n) from keel_balancer_rand() without a division (Lemire). [worker] */
uint32_t keel_balancer_rand_below(uint64_t *state, uint32_t n);

#endif
