/* SPDX-License-Identifier: MIT */
/* Helpers for discovered endpoint sets. */
#include <stdlib.h>
#include <string.h>
#include "disc.h"

void keel_disc_set_free(struct keel_disc_set *s)
{
    free(s->eps);
    memset(s, 0, sizeof(*s));
}
