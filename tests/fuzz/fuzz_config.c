/* SPDX-License-Identifier: MIT */
/* libFuzzer target for the keel.yaml loader: any bytes in, no crash, no leak. */
#include "keel/config.h"

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct keel_cfg *cfg = NULL;
    struct keel_cfg_errors errs;
    keel_config_resolve_names = 0; /* never send DNS queries while fuzzing */
    int rc = keel_config_load_buf("fuzz.yaml", (const char *)data, size, &cfg, &errs);
    /* The contract: success means no errors and a config; failure means no config. */
    if ((rc == 0) != (cfg != NULL) || (rc == 0 && errs.n != 0))
        __builtin_trap();
    keel_config_free(cfg);
    keel_config_errors_free(&errs);
    return 0;
}
