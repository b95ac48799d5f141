/* SPDX-License-Identifier: MIT */
/* Admin HTTP endpoint on the control thread: /ready, /v1/clusters, /metrics. [control] */
#ifndef KEEL_ADMIN_H
#define KEEL_ADMIN_H

#include "worker.h"

/** Binds the admin address and starts serving on rt->control_loop. @return 0 or KEEL_EIO. */
int keel_admin_start(struct keel_runtime *rt);
/** Stops serving and closes open admin connections. */
void keel_admin_stop(void);

/** Renders /metrics into b. @return 0 or KEEL_ENOMEM. [control] */
int keel_admin_metrics(struct keel_runtime *rt, struct keel_buf *b);
/** Renders /v1/clusters (JSON) into b. @return 0 or KEEL_ENOMEM. [control] */
int keel_admin_clusters(struct keel_runtime *rt, struct keel_buf *b);

#endif
