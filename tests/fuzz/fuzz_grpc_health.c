/* SPDX-License-Identifier: MIT */
/* Fuzz target: the gRPC health check's verdict on whatever a server sends back; the verdict
 * must be well-formed and, for inputs too small to flood the output, not depend on the split. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "grpc_health.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Sends everything the check has to say (as health.c does after each read). */
static void drain(struct keel_grpc_health *g)
{
    const uint8_t *p;
    size_t n;
    for (int i = 0; i < 64 && (n = keel_grpc_health_output(g, &p)) > 0; i++)
        keel_grpc_health_sent(g, n);
}

/* One check fed data cut at the given positions; its state, reason copied to out. */
static enum keel_grpc_health_state run(const uint8_t *data, size_t size, size_t a, size_t b,
                                       char out[128])
{
    struct keel_grpc_health *g;
    if (keel_grpc_health_new(&g, "fuzz.test:50051", "svc", 1000) != 0)
        abort();
    drain(g);
    keel_grpc_health_feed(g, data, a);
    drain(g);
    keel_grpc_health_feed(g, data + a, b - a);
    drain(g);
    keel_grpc_health_feed(g, data + b, size - b);
    drain(g); /* may decide too: a connection the session gave up */
    enum keel_grpc_health_state st = keel_grpc_health_state(g);
    const char *r = keel_grpc_health_reason(g);
    size_t rl = strlen(r);
    if (rl >= 128 || (st == KEEL_GRPC_HEALTH_PENDING) != (rl == 0))
        abort();
    memcpy(out, r, rl + 1);
    if (st == KEEL_GRPC_HEALTH_PENDING && keel_grpc_health_eof(g) == KEEL_GRPC_HEALTH_PENDING)
        abort(); /* a closed connection always decides */
    keel_grpc_health_free(g);
    return st;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char r1[128], r2[128];
    enum keel_grpc_health_state whole = run(data, size, 0, 0, r1);
    if (whole != KEEL_GRPC_HEALTH_PENDING && whole != KEEL_GRPC_HEALTH_SERVING &&
        whole != KEEL_GRPC_HEALTH_FAILED)
        abort();
    if (size > 2048)
        return 0; /* enough PINGs fill the output buffer: then timing may differ */
    enum keel_grpc_health_state part = run(data, size, size / 3, size - size / 3, r2);
    if (part != whole || strcmp(r1, r2) != 0)
        abort();
    return 0;
}
