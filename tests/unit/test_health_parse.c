/* SPDX-License-Identifier: MIT */
/* Unit tests for the active health checker's pure parts (discovery/health_parse.c). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include "keel/err.h"
#include "health_parse.h"
#include "testutil.h"

int main(void);

struct resp_case {
    const char *in;
    const char *name, *value; /* expect_header; NULL: status line only */
    ssize_t rc;               /* > 0: bytes that decided; else the error */
    int status, found, matched;
};

#define R200 "HTTP/1.1 200 OK\r\n"

static const struct resp_case resp_cases[] = {
    {R200 "Content-Length: 0\r\n\r\n", NULL, NULL, 17, 200, 0, 0},
    {"HTTP/1.0 503 Service Unavailable\r\n\r\n", NULL, NULL, 34, 503, 0, 0},
    {"HTTP/1.1 204\r\n\r\n", NULL, NULL, 14, 204, 0, 0},   /* no reason phrase */
    {"HTTP/1.1 302 Found\n\n", NULL, NULL, 19, 302, 0, 0}, /* bare LF */
    {"HTTP/1.1 200 OK", NULL, NULL, KEEL_EAGAIN, 0, 0, 0}, /* line not complete */
    {"HTTP/1.", NULL, NULL, KEEL_EAGAIN, 0, 0, 0},
    {"", NULL, NULL, KEEL_EAGAIN, 0, 0, 0},
    {"SSH-2.0-OpenSSH_9.2\r\n", NULL, NULL, KEEL_EBADMSG, 0, 0, 0},
    {"SSH-2.0", NULL, NULL, KEEL_EBADMSG, 0, 0, 0}, /* refused before the line ends */
    {"HTTP/2 200\r\n\r\n", NULL, NULL, KEEL_EBADMSG, 0, 0, 0},
    {"HTTP/1.1 20 OK\r\n\r\n", NULL, NULL, KEEL_EBADMSG, 0, 0, 0},
    {"HTTP/1.1 2000 OK\r\n\r\n", NULL, NULL, KEEL_EBADMSG, 0, 0, 0},
    {"HTTP/1.1 099 Low\r\n\r\n", NULL, NULL, KEEL_EBADMSG, 0, 0, 0},
    {"HTTP/1.1 200 O\x01K\r\n\r\n", NULL, NULL, KEEL_EBADMSG, 0, 0, 0},
    /* identity header */
    {R200 "X-Service: api\r\n\r\n", "X-Service", "api", 35, 200, 1, 1},
    {R200 "x-service:   api \t\r\n\r\n", "X-Service", "api", 39, 200, 1, 1},
    {R200 "X-Service: web\r\n\r\n", "X-Service", "api", 35, 200, 1, 0},
    {R200 "X-Service: API\r\n\r\n", "X-Service", "api", 35, 200, 1, 0}, /* value exact */
    {R200 "X-Service: web\r\nX-Service: api\r\n\r\n", "X-Service", "api", 51, 200, 1, 1},
    {R200 "X-Services: api\r\n\r\n", "X-Service", "api", 36, 200, 0, 0},
    {R200 "Server: x\r\n\r\n", "X-Service", "api", 30, 200, 0, 0},
    {R200 "X-Service: api\r\n", "X-Service", "api", KEEL_EAGAIN, 0, 0, 0}, /* head open */
    {R200 "no colon here\r\n\r\n", "X-Service", "api", KEEL_EBADMSG, 0, 0, 0},
    {R200 ": empty name\r\n\r\n", "X-Service", "api", KEEL_EBADMSG, 0, 0, 0},
    {"HTTP/1.1 503 No\r\nX-Service: api\r\n\r\n", "X-Service", "api", 35, 503, 1, 1},
};

static void test_responses(void)
{
    for (size_t i = 0; i < sizeof(resp_cases) / sizeof(resp_cases[0]); i++) {
        const struct resp_case *tc = &resp_cases[i];
        struct keel_health_resp r;
        size_t len = strlen(tc->in);
        ssize_t rc = keel_health_parse_response(tc->in, len, tc->name, tc->value, &r);
        CHECKF(rc == tc->rc, "case %zu: rc %zd, want %zd", i, rc, tc->rc);
        if (rc > 0 && tc->rc > 0) {
            CHECKF(r.status == tc->status, "case %zu: status %d", i, r.status);
            CHECKF(r.header_found == tc->found, "case %zu: found %d", i, r.header_found);
            CHECKF(r.header_matched == tc->matched, "case %zu: matched %d", i, r.header_matched);
        }
        /* Fed a byte at a time (as a slow peer would), every shorter prefix asks for more or
         * is refused early, never decides differently. */
        if (tc->rc > 0) {
            for (size_t k = 0; k < (size_t)tc->rc; k++) {
                ssize_t p = keel_health_parse_response(tc->in, k, tc->name, tc->value, &r);
                if (!CHECKF(p == KEEL_EAGAIN, "case %zu prefix %zu: rc %zd", i, k, p))
                    break;
            }
        }
    }
}

static void test_identity_value(void)
{
    struct keel_health_resp r;
    const char *in = R200 "X-Service: a-very-long-service-name-that-goes-on-and-on-and-on-"
                          "beyond-sixty-four-bytes\r\n\r\n";
    ssize_t rc = keel_health_parse_response(in, strlen(in), "X-Service", "api", &r);
    CHECK(rc > 0 && r.header_found && !r.header_matched);
    CHECK(strlen(r.header_value) == sizeof(r.header_value) - 1);
    CHECK(strncmp(r.header_value, "a-very-long", 11) == 0);
}

static void test_status_ok(void)
{
    const struct keel_cfg_status_range def[] = {{200, 399}};
    const struct keel_cfg_status_range list[] = {{200, 200}, {204, 204}, {500, 503}};
    CHECK(keel_health_parse_status_ok(def, 1, 200));
    CHECK(keel_health_parse_status_ok(def, 1, 399));
    CHECK(keel_health_parse_status_ok(def, 1, 302));
    CHECK(!keel_health_parse_status_ok(def, 1, 199));
    CHECK(!keel_health_parse_status_ok(def, 1, 400));
    CHECK(!keel_health_parse_status_ok(def, 1, 503));
    CHECK(keel_health_parse_status_ok(list, 3, 200));
    CHECK(!keel_health_parse_status_ok(list, 3, 201));
    CHECK(keel_health_parse_status_ok(list, 3, 204));
    CHECK(keel_health_parse_status_ok(list, 3, 501));
    CHECK(!keel_health_parse_status_ok(list, 3, 504));
    CHECK(!keel_health_parse_status_ok(list, 0, 200));
}

static void test_request(void)
{
    char buf[256];
    ssize_t n =
        keel_health_parse_format_request(buf, sizeof(buf), "GET", "/health", "127.0.0.1:9001");
    const char *want = "GET /health HTTP/1.1\r\nHost: 127.0.0.1:9001\r\n"
                       "User-Agent: keel-health-check\r\nAccept: */*\r\n"
                       "Connection: close\r\n\r\n";
    CHECKF(n == (ssize_t)strlen(want) && strcmp(buf, want) == 0, "got %zd: %s", n, buf);
    n = keel_health_parse_format_request(buf, 40, "HEAD", "/ready", "api.internal");
    CHECK(n == KEEL_EINVAL);
    n = keel_health_parse_format_request(buf, sizeof(buf), "HEAD", "/ready?x=1", "api.internal");
    CHECK(n > 0 && strncmp(buf, "HEAD /ready?x=1 HTTP/1.1\r\nHost: api.internal\r\n", 46) == 0);
}

static void test_addr_str(void)
{
    struct sockaddr_storage ss;
    char out[64];
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
    s4->sin_family = AF_INET;
    s4->sin_port = htons(9901);
    inet_pton(AF_INET, "10.1.2.3", &s4->sin_addr);
    CHECK(keel_health_parse_addr_str(&ss, out, sizeof(out)) == 0 &&
          strcmp(out, "10.1.2.3:9901") == 0);
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
    s6->sin6_family = AF_INET6;
    s6->sin6_port = htons(80);
    inet_pton(AF_INET6, "::1", &s6->sin6_addr);
    CHECK(keel_health_parse_addr_str(&ss, out, sizeof(out)) == 0 && strcmp(out, "[::1]:80") == 0);
    ss.ss_family = AF_UNIX;
    CHECK(keel_health_parse_addr_str(&ss, out, sizeof(out)) == KEEL_EINVAL);
}

int main(void)
{
    test_responses();
    test_identity_value();
    test_status_ok();
    test_request();
    test_addr_str();
    return TEST_SUMMARY("test_health_parse");
}
