/* SPDX-License-Identifier: MIT */
/* libcurl loaded on first use (dlopen): see curl_dl.h. */
#define KEEL_CURL_DL_IMPL
#include "curl_dl.h"
#include <dlfcn.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include "keel/err.h"
#include "keel/log.h"
#include "dl.h"

/* Resolved functions; all NULL until keel_curl_load succeeded. */
static struct {
    CURLcode (*global_init)(long);
    CURL *(*easy_init)(void);
    void (*easy_cleanup)(CURL *);
    void (*easy_reset)(CURL *);
    CURLcode (*easy_setopt)(CURL *, CURLoption, ...);
    CURLcode (*easy_getinfo)(CURL *, CURLINFO, ...);
    const char *(*easy_strerror)(CURLcode);
    char *(*easy_escape)(CURL *, const char *, int);
    void (*free)(void *);
    struct curl_slist *(*slist_append)(struct curl_slist *, const char *);
    void (*slist_free_all)(struct curl_slist *);
    CURLM *(*multi_init)(void);
    CURLMcode (*multi_cleanup)(CURLM *);
    CURLMcode (*multi_add_handle)(CURLM *, CURL *);
    CURLMcode (*multi_remove_handle)(CURLM *, CURL *);
    CURLMcode (*multi_setopt)(CURLM *, CURLMoption, ...);
    CURLMcode (*multi_assign)(CURLM *, curl_socket_t, void *);
    CURLMcode (*multi_socket_action)(CURLM *, curl_socket_t, int, int *);
    CURLMsg *(*multi_info_read)(CURLM *, int *);
    const char *(*multi_strerror)(CURLMcode);
} fn;

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static int load_rc = KEEL_ENOTIMPL;

static int resolve(void *h, const char *name, void *slot)
{
    return keel_dl_resolve(h, "libcurl", name, slot);
}

static void load(void)
{
    void *h = dlopen("libcurl.so.4", RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        KEEL_ERROR("libcurl: cannot load libcurl.so.4 (needed by consul discovery): %s", dlerror());
        return;
    }
    int bad = 0;
    bad |= resolve(h, "curl_global_init", &fn.global_init);
    bad |= resolve(h, "curl_easy_init", &fn.easy_init);
    bad |= resolve(h, "curl_easy_cleanup", &fn.easy_cleanup);
    bad |= resolve(h, "curl_easy_reset", &fn.easy_reset);
    bad |= resolve(h, "curl_easy_setopt", &fn.easy_setopt);
    bad |= resolve(h, "curl_easy_getinfo", &fn.easy_getinfo);
    bad |= resolve(h, "curl_easy_strerror", &fn.easy_strerror);
    bad |= resolve(h, "curl_easy_escape", &fn.easy_escape);
    bad |= resolve(h, "curl_free", &fn.free);
    bad |= resolve(h, "curl_slist_append", &fn.slist_append);
    bad |= resolve(h, "curl_slist_free_all", &fn.slist_free_all);
    bad |= resolve(h, "curl_multi_init", &fn.multi_init);
    bad |= resolve(h, "curl_multi_cleanup", &fn.multi_cleanup);
    bad |= resolve(h, "curl_multi_add_handle", &fn.multi_add_handle);
    bad |= resolve(h, "curl_multi_remove_handle", &fn.multi_remove_handle);
    bad |= resolve(h, "curl_multi_setopt", &fn.multi_setopt);
    bad |= resolve(h, "curl_multi_assign", &fn.multi_assign);
    bad |= resolve(h, "curl_multi_socket_action", &fn.multi_socket_action);
    bad |= resolve(h, "curl_multi_info_read", &fn.multi_info_read);
    bad |= resolve(h, "curl_multi_strerror", &fn.multi_strerror);
    if (bad) {
        /* Never half-loaded: every wrapper checks its own pointer, clear them all. */
        fn = (__typeof__(fn)){0};
        return; /* the library stays loaded: other code of the process may share it */
    }
    load_rc = 0;
}

int keel_curl_load(void)
{
    pthread_once(&load_once, load);
    return load_rc;
}

/* Every wrapper loads first: consul.c calls curl_global_init first, but need not. */
#define LOADED(f) (keel_curl_load() == 0 && fn.f)

CURLcode keel_curl_global_init(long flags)
{
    return LOADED(global_init) ? fn.global_init(flags) : CURLE_FAILED_INIT;
}

CURL *keel_curl_easy_init(void)
{
    return LOADED(easy_init) ? fn.easy_init() : NULL;
}

void keel_curl_easy_cleanup(CURL *h)
{
    if (LOADED(easy_cleanup))
        fn.easy_cleanup(h);
}

void keel_curl_easy_reset(CURL *h)
{
    if (LOADED(easy_reset))
        fn.easy_reset(h);
}

CURLcode keel_curl_easy_setopt(CURL *h, CURLoption opt, ...)
{
    if (!LOADED(easy_setopt))
        return CURLE_FAILED_INIT;
    /* The option number says the argument's type (curl.h CURLOPTTYPE_*). */
    va_list ap;
    va_start(ap, opt);
    CURLcode rc;
    if (opt < CURLOPTTYPE_OBJECTPOINT)
        rc = fn.easy_setopt(h, opt, va_arg(ap, long));
    else if (opt < CURLOPTTYPE_FUNCTIONPOINT)
        rc = fn.easy_setopt(h, opt, va_arg(ap, void *));
    else if (opt < CURLOPTTYPE_OFF_T)
        rc = fn.easy_setopt(h, opt, va_arg(ap, keel_dl_any_fn));
    else if (opt < CURLOPTTYPE_BLOB)
        rc = fn.easy_setopt(h, opt, va_arg(ap, curl_off_t));
    else
        rc = fn.easy_setopt(h, opt, va_arg(ap, void *));
    va_end(ap);
    return rc;
}

CURLcode keel_curl_easy_getinfo(CURL *h, CURLINFO info, ...)
{
    if (!LOADED(easy_getinfo))
        return CURLE_FAILED_INIT;
    /* Every CURLINFO takes a pointer to where the value goes. */
    va_list ap;
    va_start(ap, info);
    void *p = va_arg(ap, void *);
    va_end(ap);
    return fn.easy_getinfo(h, info, p);
}

const char *keel_curl_easy_strerror(CURLcode rc)
{
    return LOADED(easy_strerror) ? fn.easy_strerror(rc) : "libcurl not loaded";
}

char *keel_curl_easy_escape(CURL *h, const char *s, int len)
{
    return LOADED(easy_escape) ? fn.easy_escape(h, s, len) : NULL;
}

void keel_curl_free(void *p)
{
    if (LOADED(free))
        fn.free(p);
}

struct curl_slist *keel_curl_slist_append(struct curl_slist *l, const char *s)
{
    return LOADED(slist_append) ? fn.slist_append(l, s) : NULL;
}

void keel_curl_slist_free_all(struct curl_slist *l)
{
    if (LOADED(slist_free_all))
        fn.slist_free_all(l);
}

CURLM *keel_curl_multi_init(void)
{
    return LOADED(multi_init) ? fn.multi_init() : NULL;
}

CURLMcode keel_curl_multi_cleanup(CURLM *m)
{
    return LOADED(multi_cleanup) ? fn.multi_cleanup(m) : CURLM_INTERNAL_ERROR;
}

CURLMcode keel_curl_multi_add_handle(CURLM *m, CURL *h)
{
    return LOADED(multi_add_handle) ? fn.multi_add_handle(m, h) : CURLM_INTERNAL_ERROR;
}

CURLMcode keel_curl_multi_remove_handle(CURLM *m, CURL *h)
{
    return LOADED(multi_remove_handle) ? fn.multi_remove_handle(m, h) : CURLM_INTERNAL_ERROR;
}

CURLMcode keel_curl_multi_setopt(CURLM *m, CURLMoption opt, ...)
{
    if (!LOADED(multi_setopt))
        return CURLM_INTERNAL_ERROR;
    va_list ap;
    va_start(ap, opt);
    CURLMcode rc;
    if (opt < CURLOPTTYPE_OBJECTPOINT)
        rc = fn.multi_setopt(m, opt, va_arg(ap, long));
    else if (opt < CURLOPTTYPE_FUNCTIONPOINT)
        rc = fn.multi_setopt(m, opt, va_arg(ap, void *));
    else if (opt < CURLOPTTYPE_OFF_T)
        rc = fn.multi_setopt(m, opt, va_arg(ap, keel_dl_any_fn));
    else
        rc = fn.multi_setopt(m, opt, va_arg(ap, curl_off_t));
    va_end(ap);
    return rc;
}

CURLMcode keel_curl_multi_assign(CURLM *m, curl_socket_t s, void *p)
{
    return LOADED(multi_assign) ? fn.multi_assign(m, s, p) : CURLM_INTERNAL_ERROR;
}

CURLMcode keel_curl_multi_socket_action(CURLM *m, curl_socket_t s, int ev_bitmask, int *running)
{
    return LOADED(multi_socket_action) ? fn.multi_socket_action(m, s, ev_bitmask, running)
                                       : CURLM_INTERNAL_ERROR;
}

CURLMsg *keel_curl_multi_info_read(CURLM *m, int *msgs_in_queue)
{
    return LOADED(multi_info_read) ? fn.multi_info_read(m, msgs_in_queue) : NULL;
}

const char *keel_curl_multi_strerror(CURLMcode rc)
{
    return LOADED(multi_strerror) ? fn.multi_strerror(rc) : "libcurl not loaded";
}
