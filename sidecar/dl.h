/* SPDX-License-Identifier: MIT */
/* Shared by the libraries keel loads on first use (curl_dl.c, tls_dl.c). */
#ifndef KEEL_DL_H
#define KEEL_DL_H

#include <dlfcn.h>
#include "keel/log.h"

typedef void (*keel_dl_any_fn)(void);

/** Resolves one function of library `lib` (handle h) into *slot, a function pointer of the
 *  right type. @return 0, or -1 when it is missing (logged). [any] */
static inline int keel_dl_resolve(void *h, const char *lib, const char *name, void *slot)
{
    void *p = dlsym(h, name);
    if (!p) {
        KEEL_ERROR("%s: symbol %s not found: %s", lib, name, dlerror());
        return -1;
    }
    /* POSIX guarantees that a dlsym result converts to a function pointer. */
    *(keel_dl_any_fn *)slot = (keel_dl_any_fn)p;
    return 0;
}

#endif
