/* SPDX-License-Identifier: MIT */
/* The retry decision for a request that failed after it may have reached an endpoint. [any] */
#ifndef KEEL_RETRY_H
#define KEEL_RETRY_H

#include <stdint.h>

/* What the decision looks at. */
struct keel_retry_in {
    int idempotent;          /* method (or Idempotency-Key) allows a repeat */
    int has_body;            /* a body was (being) streamed: it cannot be replayed */
    int response_started;    /* the client already has response bytes */
    uint32_t retries;        /* retries made so far for this request */
    uint32_t retry_max;      /* cluster's retries.max */
    uint32_t tried;          /* endpoints tried so far */
    uint32_t endpoints;      /* endpoints in the cluster */
    int already_counted;     /* this request already holds a slot of the budget */
    int64_t retries_active;  /* cluster's retries in flight */
    int64_t requests_active; /* cluster's requests in flight */
    uint32_t budget_percent; /* cluster's retries.budget_percent */
};

enum keel_retry_verdict {
    KEEL_RETRY_YES = 0,
    KEEL_RETRY_NOT_IDEMPOTENT,
    KEEL_RETRY_HAS_BODY,
    KEEL_RETRY_RESPONSE_STARTED,
    KEEL_RETRY_EXHAUSTED,   /* retries.max reached */
    KEEL_RETRY_NO_ENDPOINT, /* every endpoint was tried */
    KEEL_RETRY_OVER_BUDGET, /* retries in flight at the budget (max(3, percent of requests)) */
};

/** Decides whether a request may be sent again; the first reason that forbids it wins, in
 *  the order of the enum. [any] */
enum keel_retry_verdict keel_retry_decide(const struct keel_retry_in *in);

/** Short text for a verdict (logs). [any] */
const char *keel_retry_verdict_str(enum keel_retry_verdict v);

#endif
