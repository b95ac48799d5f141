/* SPDX-License-Identifier: MIT */
/* libFuzzer target for keel_consul_parse_services() and the keel.* tag parser behind it. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include "consul_parse.h"
#include "keel/err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct keel_consul_services s;
    char err[160];
    int rc = keel_consul_parse_services((const char *)data, size, &s, err, sizeof(err));
    if (rc != 0) {
        if ((rc != KEEL_EBADMSG && rc != KEEL_ENOMEM) || s.v || s.n || err[0] == '\0')
            __builtin_trap();
        return 0;
    }
    for (size_t i = 0; i < s.n; i++) {
        if (i > 0 && strcmp(s.v[i - 1].name, s.v[i].name) >= 0)
            __builtin_trap();
        /* Each service's tags as one instance's tags; half of them again as meta ("keel.x=v"
         * becomes key "keel-x", value "v") so meta precedence gets exercised too. */
        const char *keys[8], *vals[8];
        char kbuf[8][64];
        size_t nm = 0;
        for (size_t t = 0; t < s.v[i].n_tags && nm < 8; t += 2) {
            const char *tag = s.v[i].tags[t];
            const char *eq = strchr(tag, '=');
            if (strncmp(tag, "keel.", 5) != 0 || !eq || (size_t)(eq - tag) >= sizeof(kbuf[0]))
                continue;
            memcpy(kbuf[nm], tag, (size_t)(eq - tag));
            kbuf[nm][eq - tag] = '\0';
            kbuf[nm][4] = '-';
            keys[nm] = kbuf[nm];
            vals[nm] = eq + 1;
            nm++;
        }
        struct keel_consul_tagcfg tc;
        if (keel_consul_parse_tags((const char *const *)s.v[i].tags, s.v[i].n_tags, keys, vals, nm,
                                   &tc) == 0) {
            if (tc.n_errors > KEEL_CONSUL_TAG_ERRORS_MAX + 1 || tc.protocol < 0 ||
                tc.protocol > KEEL_CONSUL_PROTO_TCP)
                __builtin_trap();
            if (tc.route_path && tc.route_path[0] != '/')
                __builtin_trap();
        }
        keel_consul_tagcfg_free(&tc);
    }
    /* The same bytes as an X-Consul-Index header value. */
    uint64_t idx;
    if (keel_consul_parse_index((const char *)data, size, &idx) == 0)
        (void)keel_consul_next_index(idx / 2, idx);
    keel_consul_services_free(&s);
    return 0;
}
