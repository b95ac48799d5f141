/* SPDX-License-Identifier: MIT */
/* Pure parts of the active health checker: the check request and the response verdict. [any] */
#ifndef KEEL_HEALTH_PARSE_H
#define KEEL_HEALTH_PARSE_H

#include <stddef.h>
#include <sys/types.h>
#include "keel/config.h"

/* What the checker learned from a response head. */
struct keel_health_resp {
    int status;            /* the status code of the status line */
    int header_found;      /* the wanted header was present (any value) */
    int header_matched;    /* one of its values equals the wanted value */
    char header_value[64]; /* first value seen (truncated), for messages */
};

/**
 * Formats the check request (HTTP/1.1, Connection: close) into buf.
 * @param host  Host header value (not NULL).
 * @return bytes written (without a NUL; buf is NUL-terminated), or KEEL_EINVAL when it does
 *         not fit in cap. [any]
 */
ssize_t keel_health_parse_format_request(char *buf, size_t cap, const char *method,
                                         const char *path, const char *host);

/**
 * Reads an HTTP/1.x response head from buf[0..len): the status line and, when want_name is
 * not NULL, the header fields up to the empty line, looking for want_name (case-insensitive)
 * with a value equal to want_value (after trimming spaces and tabs). Lines end in CRLF or LF.
 * @param r  out: filled when the return is positive.
 * @return bytes of the head that decided (the status line alone when want_name is NULL),
 *         KEEL_EAGAIN when more bytes are needed, KEEL_EBADMSG when it is not an HTTP/1.x
 *         response. [any]
 */
ssize_t keel_health_parse_response(const char *buf, size_t len, const char *want_name,
                                   const char *want_value, struct keel_health_resp *r);

/** Whether status lies in one of the n ranges. [any] */
int keel_health_parse_status_ok(const struct keel_cfg_status_range *ranges, size_t n, int status);

/**
 * Formats an address with a port as "1.2.3.4:80" or "[::1]:80" into out.
 * @return 0, or KEEL_EINVAL for an address family other than IPv4/IPv6. [any]
 */
int keel_health_parse_addr_str(const struct sockaddr_storage *sa, char *out, size_t cap);

#endif
