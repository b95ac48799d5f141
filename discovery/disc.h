/* SPDX-License-Identifier: MIT */
/* Endpoint sets as discovery sources report them, before they become a snapshot. [control] */
#ifndef KEEL_DISC_H
#define KEEL_DISC_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define KEEL_DISC_ID_MAX 256
#define KEEL_DISC_REASON_MAX 128

/* One endpoint of one cluster as a discovery source sees it. */
struct keel_disc_ep {
    /* Identity: Consul "node/service-id" (an address reused by a new instance is a new
     * endpoint); DNS "target:port"; static "address". */
    char id[KEEL_DISC_ID_MAX];
    char name[64]; /* "ip:port" or "[ip6]:port", shown in logs and the admin API */
    struct sockaddr_storage sa;
    socklen_t salen;
    uint32_t weight;   /* 0 = gets no new requests */
    int draining;      /* discovery says: no new requests (critical, maintenance, absent) */
    char reason[KEEL_DISC_REASON_MAX]; /* why it has this state, one line: "passing",
                                          "warning: check 'mem' (serving at weight 1)",
                                          "critical: check 'serfHealth'", "node maintenance" */
    uint64_t modify_index; /* Consul Service.ModifyIndex (newest registration wins), else 0 */
};

/* A set of endpoints (owned array). */
struct keel_disc_set {
    struct keel_disc_ep *eps;
    size_t n;
};

/** Frees the array and zeroes the set. [any] */
void keel_disc_set_free(struct keel_disc_set *s);

#endif
