/* SPDX-License-Identifier: MIT */
/* libcurl loaded on first use (dlopen), so that a keel without consul discovery maps none of it. */
#ifndef KEEL_CURL_DL_H
#define KEEL_CURL_DL_H

/*
 * Linking libcurl costs every keel process about 6 MB of resident memory at rest (libcurl
 * pulls in GnuTLS, Kerberos, LDAP, libssh2, p11-kit... whose constructors run at load) while
 * only consul discovery uses it. consul.c includes this header after <curl/curl.h>: every
 * libcurl function it calls becomes keel_curl_<name>, which calls the function resolved from
 * libcurl.so.4 (loaded by the first call, normally curl_global_init). Same signatures and
 * returns as libcurl's own; when libcurl cannot be loaded: curl_global_init returns
 * CURLE_FAILED_INIT (consul.c then reports that discovery cannot start), the others return
 * NULL / CURLE_FAILED_INIT / CURLM_INTERNAL_ERROR.
 */
#include <curl/curl.h>

/** Loads libcurl.so.4 and resolves the functions below, once per process (thread-safe).
 *  @return 0, or KEEL_ENOTIMPL when libcurl or one of the functions is missing (logged). [any] */
int keel_curl_load(void);

/* The libcurl functions keel uses; see libcurl's documentation. [any, as libcurl's] */
CURLcode keel_curl_global_init(long flags);
CURL *keel_curl_easy_init(void);
void keel_curl_easy_cleanup(CURL *h);
void keel_curl_easy_reset(CURL *h);
CURLcode keel_curl_easy_setopt(CURL *h, CURLoption opt, ...);
CURLcode keel_curl_easy_getinfo(CURL *h, CURLINFO info, ...);
const char *keel_curl_easy_strerror(CURLcode rc);
char *keel_curl_easy_escape(CURL *h, const char *s, int len);
void keel_curl_free(void *p);
struct curl_slist *keel_curl_slist_append(struct curl_slist *l, const char *s);
void keel_curl_slist_free_all(struct curl_slist *l);
CURLM *keel_curl_multi_init(void);
CURLMcode keel_curl_multi_cleanup(CURLM *m);
CURLMcode keel_curl_multi_add_handle(CURLM *m, CURL *h);
CURLMcode keel_curl_multi_remove_handle(CURLM *m, CURL *h);
CURLMcode keel_curl_multi_setopt(CURLM *m, CURLMoption opt, ...);
CURLMcode keel_curl_multi_assign(CURLM *m, curl_socket_t s, void *p);
CURLMcode keel_curl_multi_socket_action(CURLM *m, curl_socket_t s, int ev_bitmask, int *running);
CURLMsg *keel_curl_multi_info_read(CURLM *m, int *msgs_in_queue);
const char *keel_curl_multi_strerror(CURLMcode rc);

#ifndef KEEL_CURL_DL_IMPL
/* curl.h defines the three variadic ones as (type-checking) macros. */
#undef curl_easy_setopt
#undef curl_easy_getinfo
#undef curl_multi_setopt
#define curl_global_init keel_curl_global_init
#define curl_easy_init keel_curl_easy_init
#define curl_easy_cleanup keel_curl_easy_cleanup
#define curl_easy_reset keel_curl_easy_reset
#define curl_easy_setopt keel_curl_easy_setopt
#define curl_easy_getinfo keel_curl_easy_getinfo
#define curl_easy_strerror keel_curl_easy_strerror
#define curl_easy_escape keel_curl_easy_escape
#define curl_free keel_curl_free
#define curl_slist_append keel_curl_slist_append
#define curl_slist_free_all keel_curl_slist_free_all
#define curl_multi_init keel_curl_multi_init
#define curl_multi_cleanup keel_curl_multi_cleanup
#define curl_multi_add_handle keel_curl_multi_add_handle
#define curl_multi_remove_handle keel_curl_multi_remove_handle
#define curl_multi_setopt keel_curl_multi_setopt
#define curl_multi_assign keel_curl_multi_assign
#define curl_multi_socket_action keel_curl_multi_socket_action
#define curl_multi_info_read keel_curl_multi_info_read
#define curl_multi_strerror keel_curl_multi_strerror
#endif

#endif
