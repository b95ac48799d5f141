/* SPDX-License-Identifier: MIT */
/* Fuzz target: the active health check's response head reader, with and without an identity
 * header to look for; the verdict must not depend on where the bytes were split. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "keel/err.h"
#include "health_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct keel_health_resp whole, part;
    for (int with_id = 0; with_id < 2; with_id++) {
        const char *name = with_id ? "X-Service" : NULL;
        memset(&whole, 0, sizeof(whole));
        ssize_t n = keel_health_parse_response((const char *)data, size, name, "api", &whole);
        if (n > (ssize_t)size)
            abort();
        if (n < 0 && n != KEEL_EAGAIN && n != KEEL_EBADMSG)
            abort();
        /* A prefix either needs more bytes or reaches the same verdict. */
        size_t cut = size / 2;
        memset(&part, 0, sizeof(part));
        ssize_t m = keel_health_parse_response((const char *)data, cut, name, "api", &part);
        if (m > 0 && n > 0 && (m != n || part.status != whole.status))
            abort();
        if (m == KEEL_EBADMSG && n != KEEL_EBADMSG)
            abort();
    }
    return 0;
}
