/* SPDX-License-Identifier: MIT */
/* libFuzzer target for keel_consul_parse_health(): any bytes in, no crash, no leak, sane sets. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include "consul_parse.h"
#include "keel/err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* The last byte's low bit picks the cluster's warning knob, so both paths get explored
     * without making the JSON itself carry it. */
    struct keel_consul_opts o = {size > 0 && (data[size - 1] & 1)};
    struct keel_disc_set set;
    struct keel_consul_svcinfo info;
    size_t skipped = 0;
    char err[160];
    int rc = keel_consul_parse_health((const char *)data, size, &o, &set, &skipped, &info, err,
                                      sizeof(err));
    if (rc != 0) {
        if ((rc != KEEL_EBADMSG && rc != KEEL_ENOMEM) || set.eps || set.n || info.tags ||
            err[0] == '\0')
            __builtin_trap();
        return 0;
    }
    /* The contract: ids unique and sorted, draining exactly when weight is 0, weights bounded,
     * names and reasons NUL-terminated and non-empty, only IPv4/IPv6 addresses. */
    for (size_t i = 0; i < set.n; i++) {
        const struct keel_disc_ep *ep = &set.eps[i];
        if (i > 0 && strcmp(set.eps[i - 1].id, ep->id) >= 0)
            __builtin_trap();
        if ((ep->weight == 0) != (ep->draining != 0) || ep->weight > KEEL_CONSUL_WEIGHT_MAX)
            __builtin_trap();
        if (!memchr(ep->name, 0, sizeof(ep->name)) || !memchr(ep->reason, 0, sizeof(ep->reason)) ||
            !memchr(ep->id, 0, sizeof(ep->id)) || !ep->name[0] || !ep->reason[0] || !ep->id[0])
            __builtin_trap();
        if (ep->sa.ss_family != AF_INET && ep->sa.ss_family != AF_INET6)
            __builtin_trap();
    }
    if ((skipped == 0) != (err[0] == '\0'))
        __builtin_trap();
    if (set.n > 0 && info.newest_id[0] == '\0')
        __builtin_trap();
    /* The newest instance's tags go through the tag parser, as the control thread will do. */
    struct keel_consul_tagcfg tc;
    keel_consul_parse_tags((const char *const *)info.tags, info.n_tags,
                           (const char *const *)info.meta_keys,
                           (const char *const *)info.meta_values, info.n_meta, &tc);
    keel_consul_tagcfg_free(&tc);
    keel_consul_svcinfo_free(&info);
    keel_disc_set_free(&set);
    return 0;
}
