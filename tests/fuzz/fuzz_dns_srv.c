/* SPDX-License-Identifier: MIT */
/* libFuzzer target: DNS SRV and A/AAAA answer parsing, then RFC 2782 endpoint selection. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include "keel/err.h"
#include "dns_srv_parse.h"

#define QNAME "_api._tcp.service.consul"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Rejects ids by a hash mixed with the input, so tier failover paths get exercised. */
static int eligible_hash(const char *id, void *arg)
{
    uint32_t h = *(const uint32_t *)arg;
    for (const char *p = id; *p; p++)
        h = (h ^ (uint8_t)*p) * 16777619u;
    return (h & 3) != 0;
}

static int ep_priority(const struct keel_disc_ep *e)
{
    const char *p = strstr(e->reason, "priority ");
    return p ? atoi(p + 9) : -1;
}

static void check_set(const struct keel_disc_set *s)
{
    int active = -1, prev = -1;
    for (size_t i = 0; i < s->n; i++) {
        const struct keel_disc_ep *e = &s->eps[i];
        int prio = ep_priority(e);
        if (prio < 0 || prio < prev || !memchr(e->id, 0, sizeof(e->id)) || !e->id[0] ||
            !memchr(e->name, 0, sizeof(e->name)) || !e->name[0])
            abort();
        prev = prio;
        if (e->sa.ss_family != AF_INET && e->sa.ss_family != AF_INET6)
            abort();
        if (e->draining) {
            if (strncmp(e->reason, "standby: priority ", 18) != 0)
                abort();
        } else {
            if (active >= 0 && prio != active)
                abort(); /* one active tier only */
            active = prio;
        }
        for (size_t j = 0; j < i; j++)
            if (strcmp(s->eps[j].id, e->id) == 0)
                abort();
    }
    if (s->n > 0 && active < 0)
        abort();
}

static void check_answer(const struct keel_srv_answer *a)
{
    uint32_t mn = 0;
    if (a->truncated && (a->n_srv || a->n_addrs))
        abort();
    if (a->rcode != 0 && (a->n_srv || a->n_addrs))
        abort();
    for (size_t i = 0; i < a->n_srv; i++) {
        size_t l = strnlen(a->srv[i].target, sizeof(a->srv[i].target));
        if (l == 0 || l > 253 || a->srv[i].port == 0 || (a->srv[i].ttl & 0x80000000u))
            abort();
        if (i == 0 || a->srv[i].ttl < mn)
            mn = a->srv[i].ttl;
    }
    if (mn != a->min_ttl)
        abort();
    for (size_t i = 0; i < a->n_addrs; i++) {
        const struct keel_srv_addr *x = &a->addrs[i];
        if (strnlen(x->name, sizeof(x->name)) > 253)
            abort();
        if (!(x->sa.ss_family == AF_INET && x->salen == sizeof(struct sockaddr_in)) &&
            !(x->sa.ss_family == AF_INET6 && x->salen == sizeof(struct sockaddr_in6)))
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct keel_srv_answer a;
    struct keel_disc_set s;
    char err[160];
    uint32_t seed = size >= 2 ? (uint32_t)(data[0] << 8 | data[1]) : 0;

    int rc = keel_dns_srv_parse(data, size, QNAME, &a, err, sizeof(err));
    if (rc != 0 && rc != KEEL_EBADMSG && rc != KEEL_ENOMEM)
        abort();
    if (rc == KEEL_EBADMSG && strncmp(err, "offset ", 7) != 0)
        abort();
    if (rc != 0) {
        if (a.srv || a.addrs || a.n_srv || a.n_addrs)
            abort();
        /* The same bytes as an address answer for a typical target. */
        int rcode;
        int n = keel_dns_addr_parse(data, size, "node1.node.dc1.consul", &a, &rcode, NULL, 0);
        if (n < 0 && n != KEEL_EBADMSG && n != KEEL_EAGAIN && n != KEEL_ENOMEM)
            abort();
        if (n >= 0 && (size_t)n != a.n_addrs)
            abort();
        if (keel_dns_srv_build(&a, NULL, NULL, &s) == 0) {
            check_set(&s);
            keel_disc_set_free(&s);
        }
        keel_dns_srv_answer_free(&a);
        return 0;
    }
    check_answer(&a);
    if (keel_dns_srv_build(&a, NULL, NULL, &s) == 0) {
        check_set(&s);
        /* Everything eligible: the active tier is the lowest present. */
        if (s.n && s.eps[0].draining)
            abort();
        keel_disc_set_free(&s);
    }
    if (keel_dns_srv_build(&a, eligible_hash, &seed, &s) == 0) {
        check_set(&s);
        keel_disc_set_free(&s);
    }
    (void)keel_dns_refresh_ms(a.min_ttl, 1000, 300000);
    keel_dns_srv_answer_free(&a);
    return 0;
}
