/* SPDX-License-Identifier: MIT */
/* Passive outlier detection: consecutive failures across all workers eject an endpoint for
 * base x times-ejected (capped); when that expires, the next outcome decides. [worker] */
#ifndef KEEL_OUTLIER_H
#define KEEL_OUTLIER_H

#include <stdint.h>
#include "keel/snap.h"

enum keel_outlier_outcome {
    KEEL_OUTCOME_OK = 0,  /* a response below 500 */
    KEEL_OUTCOME_5XX,     /* the endpoint answered 500-599 */
    KEEL_OUTCOME_GATEWAY, /* connect refused/failed, reset or closed early, bad response */
    KEEL_OUTCOME_TIMEOUT, /* connect or response timeout */
};

enum keel_outlier_cause {
    KEEL_EJECT_NONE = 0,
    KEEL_EJECT_5XX,
    KEEL_EJECT_GATEWAY,
    KEEL_EJECT_TIMEOUT,
    KEEL_EJECT_PROBE, /* the probe after an ejection failed */
};

/* Thresholds and times come from the cluster's "outlier:" (struct keel_cfg_outlier). Built-in
 * defaults (keel_config_outlier_defaults): 5xx off (an application error is not an endpoint
 * failure unless the cluster says so), 5 gateway failures, 3 timeouts, 30 s base, 300 s cap,
 * at most 50% of a cluster ejected. */

/**
 * Records the outcome of one request (HTTP) or connection attempt (TCP) on endpoint ep of cl,
 * and ejects it when a threshold is reached and max_ejection_percent allows. Logs ejections.
 * @return 1 when this call ejected the endpoint, else 0. [worker]
 */
int keel_outlier_report(const struct keel_cluster *cl, const struct keel_endpoint *ep,
                        enum keel_outlier_outcome outcome);

/** Records the time to a response head on an endpoint (peak-EWMA in the load record). [any] */
void keel_outlier_latency(struct keel_ep_load *l, uint32_t latency_us);

/** Name of an ejection cause for logs and the admin API. [any] */
const char *keel_outlier_cause_str(uint32_t cause);

#endif
