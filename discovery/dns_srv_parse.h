/* SPDX-License-Identifier: MIT */
/* Pure DNS answer parsing (SRV, A, AAAA) and RFC 2782 tier/weight selection. [any] */
#ifndef KEEL_DNS_SRV_PARSE_H
#define KEEL_DNS_SRV_PARSE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include "disc.h"

#define KEEL_DNS_RCODE_NOERROR 0
#define KEEL_DNS_RCODE_SERVFAIL 2
#define KEEL_DNS_RCODE_NXDOMAIN 3

/* One SRV record for the question name. Names are in text form without the trailing dot, the
 * root as "."; only names whose labels are printable ASCII without '.', '\\' or spaces are
 * kept (others cannot be told apart in text form and are skipped). */
struct keel_srv_rr {
    uint16_t priority, weight, port;
    uint32_t ttl; /* seconds; a TTL with the high bit set counts as 0 (RFC 2181 8) */
    char target[256];
};

/* One address record (A or AAAA). `sa` carries the address with port 0. */
struct keel_srv_addr {
    char name[256]; /* the owner name (for keel_dns_addr_parse: the name asked for) */
    struct sockaddr_storage sa;
    socklen_t salen;
    uint32_t ttl;
};

/* A parsed answer. Owns `srv` and `addrs`; free with keel_dns_srv_answer_free(). */
struct keel_srv_answer {
    int rcode;         /* 0 NOERROR, 2 SERVFAIL, 3 NXDOMAIN, ... */
    int truncated;     /* TC bit: the caller retries over TCP; no records are kept */
    int authoritative; /* AA bit */
    struct keel_srv_rr *srv;
    size_t n_srv; /* SRV records owned by the question name, answer section only */
    struct keel_srv_addr *addrs;
    size_t n_addrs;   /* A/AAAA from the answer and additional sections, duplicates merged */
    uint32_t min_ttl; /* smallest TTL over the SRV records (0 if none) */
    size_t srv_cap, addrs_cap; /* allocated lengths (internal) */
};

/** Parses a DNS response to an SRV question (RFC 1035 wire format, as received over UDP or
 *  without the two-byte length prefix over TCP). Checks QR=1, opcode QUERY, exactly one
 *  question whose name equals `qname` (ASCII case-insensitive, a trailing dot optional) with
 *  QTYPE SRV and QCLASS IN; every record of every section must be well-formed (names: labels at
 *  most 63 bytes, at most 255 bytes, compression pointers pointing strictly backwards and not
 *  into the header, at most 128 jumps; RDATA inside RDLENGTH; A is 4 bytes, AAAA 16). Bytes
 *  after the last record are ignored. A non-zero rcode with no question is accepted (servers
 *  may omit it on SERVFAIL/REFUSED). Records are only collected when rcode is 0 and TC is 0; a
 *  truncated answer returns 0 with truncated=1 after the question checks, whatever follows.
 *  SRV records with port 0 or class other than IN are ignored.
 *  @param out overwritten (must not hold memory: free it first); owned by the caller, who frees
 *         it with keel_dns_srv_answer_free(); zeroed on error.
 *  @param err if not NULL, receives on KEEL_EBADMSG one line naming the offset and the problem.
 *  @return 0, KEEL_EBADMSG (malformed or not an answer to this question), KEEL_EINVAL (NULL
 *          pkt/qname/out), KEEL_ENOMEM. [any] */
int keel_dns_srv_parse(const uint8_t *pkt, size_t len, const char *qname,
                       struct keel_srv_answer *out, char *err, size_t errlen);

/** Frees the arrays of an answer and zeroes it. Safe on a zeroed answer. [any] */
void keel_dns_srv_answer_free(struct keel_srv_answer *a);

/** Parses a response to an A or AAAA question for `name` (for SRV targets missing from the
 *  additional section) and appends its addresses to out->addrs under `name`, following CNAME
 *  records in the answer section (at most 8). Same checks as keel_dns_srv_parse() except that
 *  QTYPE must be A or AAAA. Addresses already present for `name` are merged (lowest TTL).
 *  out->rcode, truncated, srv and min_ttl are left alone.
 *  @param rcode if not NULL, receives the response code (also on KEEL_EAGAIN).
 *  @return the number of addresses added (>= 0; 0 also for NXDOMAIN etc.), KEEL_EAGAIN (TC
 *          bit set: retry over TCP; nothing added), KEEL_EBADMSG, KEEL_EINVAL, KEEL_ENOMEM. On
 *          error out is unchanged. [any] */
int keel_dns_addr_parse(const uint8_t *pkt, size_t len, const char *name,
                        struct keel_srv_answer *out, int *rcode, char *err, size_t errlen);

/** Builds the endpoint set of an answer (RFC 2782). The caller decides beforehand what to do
 *  with a non-zero rcode or a truncated answer; this looks only at srv and addrs.
 *
 *  One endpoint per (SRV record x address of its target); targets without a known address give
 *  none. id = "target:port/ip" (unique and stable even when a target has several addresses),
 *  name = "ip:port" or "[ip6]:port". A record with target "." (service decidedly not available)
 *  gives nothing; ids that would not fit KEEL_DISC_ID_MAX are skipped; duplicate ids keep the
 *  lowest priority. The set is sorted by (priority, id).
 *
 *  Tiers: `eligible(id, arg)` is called once per endpoint (NULL: all eligible). The active tier
 *  is the lowest priority value with at least one eligible endpoint, or the lowest priority
 *  present when none is eligible anywhere. Every endpoint outside it gets draining=1 and reason
 *  "standby: priority N" (a lower tier that failed: "standby: priority N (no eligible
 *  endpoint)"). Weights: the SRV weight; a weight-0 record gets weight 0 (used only when nothing
 *  else in its tier is up), unless no eligible endpoint of the active tier has a weight above 0,
 *  in which case every weight-0 endpoint of the active tier gets weight 1.
 *  @param out receives an owned array (free with keel_disc_set_free()); must not hold memory.
 *  @return 0 or KEEL_ENOMEM (out zeroed). [any] */
int keel_dns_srv_build(const struct keel_srv_answer *a, int (*eligible)(const char *id, void *arg),
                       void *arg, struct keel_disc_set *out);

/** Refresh interval for a record TTL: ttl_s * 1000 clamped to [floor_ms, ceil_ms]; TTL 0 (as
 *  Consul DNS answers) gives floor_ms. ceil_ms 0 means no ceiling; when floor_ms > ceil_ms the
 *  floor wins. [any] */
uint32_t keel_dns_refresh_ms(uint32_t ttl_s, uint32_t floor_ms, uint32_t ceil_ms);

#endif
