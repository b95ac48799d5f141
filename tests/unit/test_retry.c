/* SPDX-License-Identifier: MIT */
/* The retry decision table (sidecar/retry.c). */
#include "keel/retry.h"
#include "testutil.h"

int main(void);

int main(void)
{
    /* idem, body, started, retries, max, tried, eps, counted, r_active, q_active, pct -> want */
    static const struct {
        struct keel_retry_in in;
        enum keel_retry_verdict want;
    } cases[] = {
        {{1, 0, 0, 0, 2, 1, 3, 0, 0, 10, 20}, KEEL_RETRY_YES},
        {{0, 0, 0, 0, 2, 1, 3, 0, 0, 10, 20}, KEEL_RETRY_NOT_IDEMPOTENT}, /* POST */
        {{0, 1, 1, 5, 2, 3, 3, 0, 9, 10, 20}, KEEL_RETRY_NOT_IDEMPOTENT}, /* safety first */
        {{1, 1, 0, 0, 2, 1, 3, 0, 0, 10, 20}, KEEL_RETRY_HAS_BODY},       /* PUT with body */
        {{1, 0, 1, 0, 2, 1, 3, 0, 0, 10, 20}, KEEL_RETRY_RESPONSE_STARTED},
        {{1, 0, 0, 2, 2, 2, 3, 1, 0, 10, 20}, KEEL_RETRY_EXHAUSTED},
        {{1, 0, 0, 0, 0, 1, 3, 0, 0, 10, 20}, KEEL_RETRY_EXHAUSTED},   /* retries off */
        {{1, 0, 0, 0, 2, 2, 2, 0, 0, 10, 20}, KEEL_RETRY_NO_ENDPOINT}, /* all tried */
        {{1, 0, 0, 0, 2, 1, 3, 0, 2, 10, 20}, KEEL_RETRY_YES},         /* 2 < max(3, 2) */
        {{1, 0, 0, 0, 2, 1, 3, 0, 3, 10, 20}, KEEL_RETRY_OVER_BUDGET}, /* the floor of 3 */
        {{1, 0, 0, 0, 2, 1, 3, 0, 19, 100, 20}, KEEL_RETRY_YES},       /* 19 < 20% of 100 */
        {{1, 0, 0, 0, 2, 1, 3, 0, 20, 100, 20}, KEEL_RETRY_OVER_BUDGET},
        {{1, 0, 0, 1, 2, 2, 3, 1, 50, 100, 20}, KEEL_RETRY_YES}, /* holds its slot already */
        {{1, 0, 0, 0, 2, 1, 3, 0, 49, 100, 50}, KEEL_RETRY_YES},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        enum keel_retry_verdict got = keel_retry_decide(&cases[i].in);
        CHECKF(got == cases[i].want, "case %zu: got %s, want %s", i, keel_retry_verdict_str(got),
               keel_retry_verdict_str(cases[i].want));
    }
    CHECK(keel_retry_verdict_str((enum keel_retry_verdict)99)[0] == '?');
    return TEST_SUMMARY("test_retry");
}
