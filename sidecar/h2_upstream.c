/* SPDX-License-Identifier: MIT */
/* HTTP/2 upstream sessions: one multiplexed connection per endpoint per worker. */
#include "keel/err.h"
#include "conn.h"

struct keel_upconn *keel_h2up_get(struct keel_worker *w, const struct keel_endpoint *ep,
                                  const struct keel_cluster *cl, int *err)
{
    (void)w;
    (void)ep;
    (void)cl;
    *err = KEEL_ENOTIMPL; /* being written: h2 upstream sessions */
    return NULL;
}

void keel_h2up_close_all(struct keel_worker *w)
{
    (void)w;
}
