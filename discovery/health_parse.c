/* SPDX-License-Identifier: MIT */
/* Pure parts of the active health checker: check request, response head verdict. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include "keel/err.h"
#include "health_parse.h"

ssize_t keel_health_parse_format_request(char *buf, size_t cap, const char *method,
                                         const char *path, const char *host)
{
    int n = snprintf(buf, cap,
                     "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: keel-health-check\r\n"
                     "Accept: */*\r\nConnection: close\r\n\r\n",
                     method, path, host);
    if (n < 0 || (size_t)n >= cap)
        return KEEL_EINVAL;
    return n;
}

/* The end of the line starting at p (the '\n'), or NULL when it is not complete yet. */
static const char *line_end(const char *p, const char *end)
{
    return memchr(p, '\n', (size_t)(end - p));
}

static int is_digit(char ch)
{
    return ch >= '0' && ch <= '9';
}

/* "HTTP/1.x SSS[ reason]" in [p, e) (e excludes the line break). */
static int status_line(const char *p, const char *e, int *status)
{
    if (e > p && e[-1] == '\r')
        e--;
    if (e - p < 12 || memcmp(p, "HTTP/1.", 7) != 0 || !is_digit(p[7]) || p[8] != ' ' ||
        !is_digit(p[9]) || !is_digit(p[10]) || !is_digit(p[11]))
        return -1;
    if (e - p > 12 && p[12] != ' ')
        return -1;
    for (const char *q = p; q < e; q++)
        if ((unsigned char)*q < 0x20 && *q != '\t')
            return -1;
    *status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
    return *status >= 100 ? 0 : -1;
}

static void trim(const char **a, const char **b)
{
    while (*a < *b && (**a == ' ' || **a == '\t'))
        (*a)++;
    while (*b > *a && ((*b)[-1] == ' ' || (*b)[-1] == '\t' || (*b)[-1] == '\r'))
        (*b)--;
}

ssize_t keel_health_parse_response(const char *buf, size_t len, const char *want_name,
                                   const char *want_value, struct keel_health_resp *r)
{
    const char *p = buf, *end = buf + len;
    const char *e = line_end(p, end);
    memset(r, 0, sizeof(*r));
    if (!e) {
        /* Refuse garbage early instead of waiting for a line that never comes. */
        size_t k = len < 7 ? len : 7;
        if (memcmp(buf, "HTTP/1.", k) != 0)
            return KEEL_EBADMSG;
        return KEEL_EAGAIN;
    }
    int status = 0;
    if (status_line(p, e, &status) != 0)
        return KEEL_EBADMSG;
    r->status = status;
    if (!want_name)
        return (ssize_t)(e + 1 - buf);
    size_t wlen = strlen(want_name);
    for (p = e + 1;; p = e + 1) {
        e = line_end(p, end);
        if (!e)
            return KEEL_EAGAIN;
        const char *le = e;
        if (le > p && le[-1] == '\r')
            le--;
        if (le == p)
            return (ssize_t)(e + 1 - buf); /* the empty line: head complete */
        const char *colon = memchr(p, ':', (size_t)(le - p));
        if (!colon || colon == p)
            return KEEL_EBADMSG;
        if ((size_t)(colon - p) != wlen || strncasecmp(p, want_name, wlen) != 0)
            continue;
        const char *va = colon + 1, *vb = le;
        trim(&va, &vb);
        size_t vl = (size_t)(vb - va);
        if (!r->header_found) {
            size_t cl = vl < sizeof(r->header_value) - 1 ? vl : sizeof(r->header_value) - 1;
            memcpy(r->header_value, va, cl);
            r->header_value[cl] = 0;
        }
        r->header_found = 1;
        if (want_value && strlen(want_value) == vl && memcmp(va, want_value, vl) == 0)
            r->header_matched = 1;
    }
}

int keel_health_parse_status_ok(const struct keel_cfg_status_range *ranges, size_t n, int status)
{
    for (size_t i = 0; i < n; i++)
        if (status >= ranges[i].lo && status <= ranges[i].hi)
            return 1;
    return 0;
}

int keel_health_parse_addr_str(const struct sockaddr_storage *sa, char *out, size_t cap)
{
    char ip[INET6_ADDRSTRLEN];
    if (sa->ss_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof(ip));
        snprintf(out, cap, "%s:%u", ip, (unsigned)ntohs(s4->sin_port));
        return 0;
    }
    if (sa->ss_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof(ip));
        snprintf(out, cap, "[%s]:%u", ip, (unsigned)ntohs(s6->sin6_port));
        return 0;
    }
    return KEEL_EINVAL;
}
