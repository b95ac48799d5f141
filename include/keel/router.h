/* SPDX-License-Identifier: MIT */
/* Route matching: host, path prefix / exact path, header and cookie values. [worker] */
#ifndef KEEL_ROUTER_H
#define KEEL_ROUTER_H

#include <stddef.h>
#include "keel/http1.h"
#include "keel/snap.h"

/* The parts of a request that routes look at. */
struct keel_route_req {
    const char *host; /* Host header value (or authority of an absolute-form target), may be NULL */
    size_t host_len;
    const char *path; /* path only: no scheme/authority, no query */
    size_t path_len;
    const struct keel_http1_header *headers;
    size_t n_headers;
    int absolute;     /* the target was absolute-form (scheme://authority...) */
    const char *rest; /* absolute-form: what follows the authority ("/p?q", "?q" or "") */
    size_t rest_len;
};

/**
 * Extracts host and path from a request-target and Host header into rr.
 * Absolute-form targets give both; the query string is cut off. [any]
 */
void keel_router_prepare(struct keel_route_req *rr, const struct keel_http1_request *req);

/**
 * Finds the first route of a listener that matches. @return the cluster index in the
 * snapshot, or -1 when no route matches. [any]
 */
int keel_router_match(const struct keel_snap_listener *l, const struct keel_route_req *rr);

/** Finds the first cookie called name in the Cookie headers (quotes removed).
 *  @return 1 with *val and *val_len pointing into the header, 0 when absent. [any] */
int keel_router_cookie(const struct keel_http1_header *hs, size_t n, const char *name,
                       const char **val, size_t *val_len);

/** Whether one match block accepts the request. [any] */
int keel_router_match_one(const struct keel_cfg_match *m, const struct keel_route_req *rr);

#endif
