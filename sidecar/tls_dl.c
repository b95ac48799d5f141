/* SPDX-License-Identifier: MIT */
/* OpenSSL loaded on first use (dlopen): see tls_dl.h. */
#define KEEL_TLS_DL_IMPL
#include "tls_dl.h"
#include <pthread.h>
#include "keel/err.h"
#include "keel/log.h"
#include "dl.h"

#ifndef KEEL_LIBSSL_SONAME
#define KEEL_LIBSSL_SONAME "libssl.so.3"
#endif

struct keel_ssl_fns keel_ssl;

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static int load_rc = KEEL_ENOTIMPL;

static void load(void)
{
    void *h = dlopen(KEEL_LIBSSL_SONAME, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        KEEL_ERROR("TLS: cannot load %s: %s", KEEL_LIBSSL_SONAME, dlerror());
        return;
    }
    int bad = 0;
    /* dlsym on libssl's handle also finds libcrypto's functions (its dependency). */
#define KEEL_SSL_RESOLVE(f) bad |= keel_dl_resolve(h, KEEL_LIBSSL_SONAME, #f, &keel_ssl.f);
    KEEL_SSL_FUNCS(KEEL_SSL_RESOLVE)
#undef KEEL_SSL_RESOLVE
    if (bad) {
        keel_ssl = (struct keel_ssl_fns){0}; /* never half-loaded */
        return;
    }
    load_rc = 0;
}

int keel_ssl_load(void)
{
    pthread_once(&load_once, load);
    return load_rc;
}

int keel_ssl_loaded(void)
{
    return load_rc == 0;
}
