/* SPDX-License-Identifier: MIT */
/* Pure parsers for Consul HTTP API answers (health, catalog, index, keel.* tags). [any] */
#ifndef KEEL_CONSUL_PARSE_H
#define KEEL_CONSUL_PARSE_H

#include <stddef.h>
#include <stdint.h>
#include "disc.h"

/* Bounds applied to Consul's Weights before they become endpoint weights. */
#define KEEL_CONSUL_WEIGHT_MAX 10000u

/* Per-cluster knobs that change how an answer is read. */
struct keel_consul_opts {
    int warning_drain; /* cluster `warning: drain`: an instance with a warning check drains */
};

/* What the health answer says about the service itself (for clusters made from tags). */
struct keel_consul_svcinfo {
    /* Service.Tags and Service.Meta of the instance with the highest Service.ModifyIndex
     * (ties: the first in the answer). Owned; free with keel_consul_svcinfo_free(). */
    char **tags;
    size_t n_tags;
    char **meta_keys;
    char **meta_values;
    size_t n_meta;
    char newest_id[KEEL_DISC_ID_MAX]; /* "<node>/<service-id>" of that instance, "" if none */
    uint64_t newest_index;            /* its ModifyIndex */
    /* Instances (among the parsed ones) whose keel configuration (tags "keel" and "keel.*",
     * meta keys "keel-*", order ignored) differs from the newest instance's. */
    size_t conflicts;
    char conflict_id[KEEL_DISC_ID_MAX]; /* one of them, "" when conflicts == 0 */
};

/**
 * Parses a /v1/health/service/<name> answer (a JSON array of {Node, Service, Checks}) into an
 * endpoint set.
 *
 * Per entry:
 * - id = "<Node.Node>/<Service.ID>" (both non-empty strings, at most KEEL_DISC_ID_MAX-1 bytes).
 * - address = Service.Address, or Node.Address when Service.Address is empty or absent; it must
 *   be a numeric IPv4 or IPv6 address (a hostname is not resolved: the entry is skipped).
 *   name = "ip:port" or "[ip6]:port".
 * - port = Service.Port, an integer in 1..65535.
 * - health from every check of the entry (Consul sends the node's checks, ServiceID "", and this
 *   service's checks): a "_node_maintenance" check -> draining, reason "node maintenance"; a
 *   "_service_maintenance:<id>" check -> draining, "service maintenance"; any critical check
 *   (including serfHealth) or a check with a missing/unknown Status -> draining,
 *   "critical: check '<CheckID>'"; else any warning -> weight Weights.Warning, draining when
 *   o->warning_drain or that weight is 0, reason "warning: check '<CheckID>' (serving at weight
 *   N)" or "warning: check '<CheckID>' (draining)"; else weight Weights.Passing, reason
 *   "passing". Checks absent or null = no checks = passing.
 * - Weights absent or null -> Passing 1, Warning 1; a member absent -> 1. Values are clamped
 *   to 0..KEEL_CONSUL_WEIGHT_MAX. A serving weight of 0 -> draining, reason "weight 0".
 *   A draining endpoint has weight 0.
 * - modify_index = Service.ModifyIndex (absent -> 0).
 * Entries of the wrong type or shape (not an object, Port a string, Weights an array, Checks not
 * an array, a check not an object, ...) are skipped and counted in *skipped; the first reason
 * is written to err ("entry 3: ..."), err is "" when nothing was skipped. Entries with the same
 * id collapse to the one with the highest ModifyIndex (ties: the first); each dropped duplicate
 * counts as skipped too. out->eps is sorted by id (byte order), ids are unique; an empty array
 * gives n == 0 (an authoritative empty set).
 *
 * Integers beyond int64 make the whole JSON unparseable (jansson's limit): KEEL_EBADMSG.
 *
 * @param o        options, NULL = defaults (all 0)
 * @param out      filled on success (caller frees with keel_disc_set_free()); zeroed on error
 * @param skipped  may be NULL
 * @param info     may be NULL; filled on success (caller frees with keel_consul_svcinfo_free()),
 *                 zeroed on error
 * @param err      errlen bytes (may be NULL when errlen is 0)
 * @return 0; KEEL_EBADMSG when the body is not JSON or the top level is not an array (err says
 *         why, with jansson's line and column); KEEL_ENOMEM.
 * [any] (no shared state)
 */
int keel_consul_parse_health(const char *body, size_t len, const struct keel_consul_opts *o,
                             struct keel_disc_set *out, size_t *skipped,
                             struct keel_consul_svcinfo *info, char *err, size_t errlen);

/** Frees what keel_consul_parse_health() put in info and zeroes it (NULL is fine). [any] */
void keel_consul_svcinfo_free(struct keel_consul_svcinfo *info);

/* One service of a /v1/catalog/services answer: {"svc": ["tag1", ...], ...}. */
struct keel_consul_service {
    char *name;
    char **tags;
    size_t n_tags;
};

/* All services, sorted by name (byte order), names unique. */
struct keel_consul_services {
    struct keel_consul_service *v;
    size_t n;
};

/**
 * Parses a /v1/catalog/services answer. The answer is taken whole or not at all (so the caller
 * keeps its last good list): a top level that is not an object, a value that is neither an
 * array nor null, or a tag that is not a string makes it KEEL_EBADMSG. null means no tags.
 * @param out  filled on success (free with keel_consul_services_free()), zeroed on error
 * @return 0, KEEL_EBADMSG (err says why), KEEL_ENOMEM. [any]
 */
int keel_consul_parse_services(const char *body, size_t len, struct keel_consul_services *out,
                               char *err, size_t errlen);

/** Frees a service list and zeroes it (NULL is fine). [any] */
void keel_consul_services_free(struct keel_consul_services *s);

/**
 * Parses an X-Consul-Index header value: decimal uint64, optional surrounding spaces/tabs (and
 * a trailing CR/LF), nothing else; no sign, no overflow.
 * @return 0 (*out set) or KEEL_EINVAL (*out untouched). [any]
 */
int keel_consul_parse_index(const char *value, size_t len, uint64_t *out);

/**
 * The blocking-query index rule from Consul's docs: given the index sent last (prev) and the
 * X-Consul-Index received (got), returns the index to send next: 0 when got < prev (the index
 * went backwards, e.g. a snapshot restore: start over with a non-blocking query), else got,
 * but at least 1 (a 0 would make the next query return at once, forever). [any]
 */
uint64_t keel_consul_next_index(uint64_t prev, uint64_t got);

/* Values of keel.protocol=. */
enum keel_consul_proto {
    KEEL_CONSUL_PROTO_HTTP = 0,
    KEEL_CONSUL_PROTO_H2,
    KEEL_CONSUL_PROTO_GRPC,
    KEEL_CONSUL_PROTO_TCP,
};

/* keel.* tags / keel-* service meta that turn a Consul service into a cluster + route. */
struct keel_consul_tagcfg {
    int enabled;       /* tag "keel" present */
    char *route_host;  /* keel.route=<host><path>: host part, lower-cased (NULL: any host) */
    char *route_path;  /* path prefix part (NULL: "/") */
    int protocol;      /* enum keel_consul_proto, default KEEL_CONSUL_PROTO_HTTP */
    int lb;            /* enum keel_lb_policy, default KEEL_LB_WEIGHTED_LEAST_CONN */
    int warning_drain; /* keel.warning=drain (1) | serve (0), default 0 */
    /* Problems, one line each, e.g. "keel.lb=fastest: unknown policy" (tag) or
     * "meta keel-lb=fastest: unknown policy". Owned. */
    char **errors;
    size_t n_errors;
};

/* At most this many errors are kept; one more line says how many were left off. */
#define KEEL_CONSUL_TAG_ERRORS_MAX 16

/**
 * Parses the keel.* tags and keel-* meta keys of one service instance.
 *
 * Tags: "keel" (enables), "keel.route=<host><path>" (host without a scheme; path starts with
 * '/'; "keel.route=/api" = any host; "keel.route=api.example.com" = path "/"),
 * "keel.protocol=http|h2|grpc|tcp", "keel.lb=<policy as in keel.yaml>",
 * "keel.warning=drain|serve". Meta keys "keel-route", "keel-protocol", "keel-lb",
 * "keel-warning" take the same values and win over tags when both are given. Unknown keel.* tags
 * or keel-* keys, bad values and repeated tags (the first one counts) are collected in
 * out->errors, never fatal; tags not starting with "keel" are ignored. NULL strings in the
 * arrays are ignored.
 * @param out  zeroed and filled (free with keel_consul_tagcfg_free()), also on KEEL_ENOMEM
 * @return 0 or KEEL_ENOMEM. [any]
 */
int keel_consul_parse_tags(const char *const *tags, size_t n_tags, const char *const *meta_keys,
                           const char *const *meta_values, size_t n_meta,
                           struct keel_consul_tagcfg *out);

/** Frees a tag configuration and zeroes it (NULL is fine). [any] */
void keel_consul_tagcfg_free(struct keel_consul_tagcfg *c);

/** Name of a keel.protocol value ("http", "h2", "grpc", "tcp", else "unknown"). [any] */
const char *keel_consul_proto_str(int proto);

#endif
