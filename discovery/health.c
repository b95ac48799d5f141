/* SPDX-License-Identifier: MIT */
/* Active health checks on the control thread (HTTP and TCP connect), feeding the snapshot. */
#include "keel/err.h"
#include "keel/log.h"
#include "discovery.h"

int keel_health_start(struct keel_discovery *d)
{
    (void)d;
    return 0;
}

void keel_health_stop(struct keel_discovery *d)
{
    (void)d;
}

void keel_health_annotate(struct keel_discovery *d, struct keel_dcluster *c)
{
    (void)d;
    (void)c;
}
