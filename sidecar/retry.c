/* SPDX-License-Identifier: MIT */
/* Retry decision table: safety first (idempotent, no body, nothing sent), then limits. */
#include "keel/retry.h"

enum keel_retry_verdict keel_retry_decide(const struct keel_retry_in *in)
{
    if (!in->idempotent)
        return KEEL_RETRY_NOT_IDEMPOTENT;
    if (in->has_body)
        return KEEL_RETRY_HAS_BODY;
    if (in->response_started)
        return KEEL_RETRY_RESPONSE_STARTED;
    if (in->retries >= in->retry_max)
        return KEEL_RETRY_EXHAUSTED;
    if (in->tried >= in->endpoints)
        return KEEL_RETRY_NO_ENDPOINT;
    if (!in->already_counted) {
        /* Retries in flight stay under a share of the requests in flight (at least 3), so a
         * failing cluster is not hit with a multiple of its load. */
        int64_t allowed = in->requests_active * (int64_t)in->budget_percent / 100;
        if (allowed < 3)
            allowed = 3;
        if (in->retries_active >= allowed)
            return KEEL_RETRY_OVER_BUDGET;
    }
    return KEEL_RETRY_YES;
}

const char *keel_retry_verdict_str(enum keel_retry_verdict v)
{
    switch (v) {
    case KEEL_RETRY_YES:
        return "retry";
    case KEEL_RETRY_NOT_IDEMPOTENT:
        return "not idempotent";
    case KEEL_RETRY_HAS_BODY:
        return "has a body";
    case KEEL_RETRY_RESPONSE_STARTED:
        return "response already started";
    case KEEL_RETRY_EXHAUSTED:
        return "retries exhausted";
    case KEEL_RETRY_NO_ENDPOINT:
        return "no untried endpoint";
    case KEEL_RETRY_OVER_BUDGET:
        return "retry budget spent";
    }
    return "?";
}
