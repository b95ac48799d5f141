/* SPDX-License-Identifier: MIT */
/* Helpers for discovered endpoint sets. */
#include <stdlib.h>
#include <string.h>
#include "keel/err.h"
#include "disc.h"

void keel_disc_set_free(struct keel_disc_set *s)
{
    free(s->eps);
    memset(s, 0, sizeof(*s));
}

int keel_disc_set_add(struct keel_disc_set *s, const struct keel_disc_ep *ep)
{
    if (s->cap <= s->n) {
        size_t cap = s->n < 2 ? 4 : s->n * 2;
        struct keel_disc_ep *n = realloc(s->eps, cap * sizeof(*n));
        if (!n)
            return KEEL_ENOMEM;
        s->eps = n;
        s->cap = cap;
    }
    s->eps[s->n++] = *ep;
    return 0;
}

int keel_disc_set_equal(const struct keel_disc_set *a, const struct keel_disc_set *b)
{
    if (a->n != b->n)
        return 0;
    for (size_t i = 0; i < a->n; i++) {
        const struct keel_disc_ep *x = &a->eps[i], *y = &b->eps[i];
        if (strcmp(x->id, y->id) || strcmp(x->name, y->name) || x->weight != y->weight ||
            x->draining != y->draining || strcmp(x->reason, y->reason) || x->salen != y->salen ||
            memcmp(&x->sa, &y->sa, x->salen))
            return 0;
    }
    return 1;
}
