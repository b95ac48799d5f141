/* SPDX-License-Identifier: MIT */
/* Unit tests for sidecar/router.c: request preparation, match blocks, first-match tables. */
#include <stdlib.h>
#include <string.h>
#include "keel/config.h"
#include "keel/http1.h"
#include "keel/router.h"
#include "keel/snap.h"
#include "testutil.h"

int main(void);

#define MAXH 16

/* A parsed request: the bytes live in an exact-size heap copy so ASan sees overreads. */
struct preq {
    char *buf;
    struct keel_http1_header hdrs[MAXH];
    struct keel_http1_request req;
    struct keel_route_req rr;
    int ok;
};

static void preq_parse(struct preq *p, const char *raw)
{
    size_t n = strlen(raw);
    memset(p, 0, sizeof(*p));
    p->buf = malloc(n ? n : 1);
    if (!p->buf)
        abort();
    memcpy(p->buf, raw, n);
    p->req.headers = p->hdrs;
    p->req.num_headers = MAXH;
    ssize_t r = keel_http1_parse_request(p->buf, n, &p->req, NULL, NULL);
    p->ok = CHECKF(r == (ssize_t)n, "parse of %.60s... returned %zd, want %zu", raw, r, n);
    if (p->ok)
        keel_router_prepare(&p->rr, &p->req);
}

static void preq_free(struct preq *p)
{
    free(p->buf);
    p->buf = NULL;
}

static int span_eq(const char *s, size_t len, const char *want)
{
    if (!want)
        return s == NULL;
    return s && len == strlen(want) && memcmp(s, want, len) == 0;
}

/* ---- keel_router_prepare ------------------------------------------------------------------ */

struct prep_case {
    const char *raw;
    const char *host; /* NULL: no host */
    const char *path;
};

static const struct prep_case prep_cases[] = {
    {"GET / HTTP/1.1\r\nHost: Example.COM:8080\r\n\r\n", "Example.COM:8080", "/"},
    {"GET /a/b/c HTTP/1.1\r\nHost: h\r\n\r\n", "h", "/a/b/c"},
    {"GET /a/b?x=1/2&y=?z HTTP/1.1\r\nHost: h\r\n\r\n", "h", "/a/b"},
    {"GET /? HTTP/1.1\r\nHost: h\r\n\r\n", "h", "/"},
    /* Host OWS is stripped by the parser. */
    {"GET /p HTTP/1.1\r\nHost:   spaced.example   \r\n\r\n", "spaced.example", "/p"},
    /* absolute-form: the authority wins over the Host header, the query is cut off */
    {"GET http://h:1/p?q HTTP/1.1\r\nHost: other\r\n\r\n", "h:1", "/p"},
    {"GET http://h:1/p/q/r?s=t HTTP/1.1\r\nHost: other\r\n\r\n", "h:1", "/p/q/r"},
    {"GET https://secure.example/x HTTP/1.1\r\nHost: other\r\n\r\n", "secure.example", "/x"},
    {"GET http://h:1 HTTP/1.1\r\nHost: other\r\n\r\n", "h:1", "/"},
    {"GET http://h:1?q=1 HTTP/1.1\r\nHost: other\r\n\r\n", "h:1", "/"},
    {"GET http://[::1]:8080/v6 HTTP/1.1\r\nHost: other\r\n\r\n", "[::1]:8080", "/v6"},
    /* asterisk-form */
    {"OPTIONS * HTTP/1.1\r\nHost: star\r\n\r\n", "star", "*"},
    /* HTTP/1.0 without Host */
    {"GET /old HTTP/1.0\r\n\r\n", NULL, "/old"},
    {"GET http://abs10/x?1 HTTP/1.0\r\n\r\n", "abs10", "/x"},
    /* a colon and slashes later in an origin-form path are not a scheme */
    {"GET /a:b//c HTTP/1.1\r\nHost: h\r\n\r\n", "h", "/a:b//c"},
};

static void test_prepare(void)
{
    for (size_t i = 0; i < sizeof(prep_cases) / sizeof(prep_cases[0]); i++) {
        const struct prep_case *c = &prep_cases[i];
        struct preq p;
        preq_parse(&p, c->raw);
        if (p.ok) {
            CHECKF(span_eq(p.rr.host, p.rr.host_len, c->host), "case %zu host %.*s want %s", i,
                   p.rr.host ? (int)p.rr.host_len : 6, p.rr.host ? p.rr.host : "(null)",
                   c->host ? c->host : "(null)");
            CHECKF(span_eq(p.rr.path, p.rr.path_len, c->path), "case %zu path %.*s want %s", i,
                   (int)p.rr.path_len, p.rr.path, c->path);
            CHECKF(p.rr.headers == p.req.headers && p.rr.n_headers == p.req.num_headers,
                   "case %zu headers not passed through (%zu vs %zu)", i, p.rr.n_headers,
                   p.req.num_headers);
        }
        preq_free(&p);
    }
}

/* ---- keel_router_match_one ---------------------------------------------------------------- */

static struct keel_cfg_kv kv_env_canary[] = {{"X-Env", "canary"}};
static struct keel_cfg_kv kv_env_lower[] = {{"x-env", "canary"}};
static struct keel_cfg_kv kv_debug_any[] = {{"X-Debug", NULL}};
static struct keel_cfg_kv kv_two_headers[] = {{"X-Env", "canary"}, {"X-Tenant", "acme"}};
static struct keel_cfg_kv ck_session_abc[] = {{"session", "abc"}};
static struct keel_cfg_kv ck_session_any[] = {{"session", NULL}};
static struct keel_cfg_kv ck_two[] = {{"session", "abc"}, {"lang", "en"}};
static struct keel_cfg_kv ck_empty_val[] = {{"flag", ""}};

#define HDRS(a) a, sizeof(a) / sizeof(a[0])
#define NOKV NULL, 0

struct match_case {
    const char *what;
    const char *raw;
    struct keel_cfg_match m; /* host, path_prefix, path, headers, n, cookies, n */
    int want;
};

#define REQ(target, hdrs) "GET " target " HTTP/1.1\r\n" hdrs "\r\n"

static const struct match_case match_cases[] = {
    /* an empty match block matches everything, even without Host */
    {"empty block", REQ("/", "Host: x\r\n"), {NULL, NULL, NULL, NOKV, NOKV}, 1},
    {"empty block 1.0 no host", "GET / HTTP/1.0\r\n\r\n", {NULL, NULL, NULL, NOKV, NOKV}, 1},

    /* host: exact, case-insensitive, port ignored */
    {"host exact",
     REQ("/", "Host: api.example.com\r\n"),
     {"api.example.com", NULL, NULL, NOKV, NOKV},
     1},
    {"host case",
     REQ("/", "Host: API.Example.COM\r\n"),
     {"api.example.com", NULL, NULL, NOKV, NOKV},
     1},
    {"host port ignored",
     REQ("/", "Host: api.example.com:8443\r\n"),
     {"api.example.com", NULL, NULL, NOKV, NOKV},
     1},
    {"host other",
     REQ("/", "Host: www.example.com\r\n"),
     {"api.example.com", NULL, NULL, NOKV, NOKV},
     0},
    {"host longer",
     REQ("/", "Host: api.example.com.evil\r\n"),
     {"api.example.com", NULL, NULL, NOKV, NOKV},
     0},
    {"host shorter",
     REQ("/", "Host: api.example.co\r\n"),
     {"api.example.com", NULL, NULL, NOKV, NOKV},
     0},
    {"host subdomain is not exact",
     REQ("/", "Host: a.api.example.com\r\n"),
     {"api.example.com", NULL, NULL, NOKV, NOKV},
     0},
    {"host missing (1.0)",
     "GET / HTTP/1.0\r\n\r\n",
     {"api.example.com", NULL, NULL, NOKV, NOKV},
     0},
    {"host empty value", REQ("/", "Host: \r\n"), {"api.example.com", NULL, NULL, NOKV, NOKV}, 0},
    {"host from absolute-form",
     "GET http://API.example.com:80/x HTTP/1.1\r\nHost: other\r\n\r\n",
     {"api.example.com", NULL, NULL, NOKV, NOKV},
     1},
    {"absolute-form authority beats Host",
     "GET http://other/x HTTP/1.1\r\nHost: api.example.com\r\n\r\n",
     {"api.example.com", NULL, NULL, NOKV, NOKV},
     0},
    /* IPv6 literals keep their brackets; the port after ']' is ignored */
    {"ipv6 with port", REQ("/", "Host: [::1]:80\r\n"), {"[::1]", NULL, NULL, NOKV, NOKV}, 1},
    {"ipv6 no port", REQ("/", "Host: [::1]\r\n"), {"[::1]", NULL, NULL, NOKV, NOKV}, 1},
    {"ipv6 other", REQ("/", "Host: [::2]:80\r\n"), {"[::1]", NULL, NULL, NOKV, NOKV}, 0},
    {"ipv6 case", REQ("/", "Host: [FE80::1]:8080\r\n"), {"[fe80::1]", NULL, NULL, NOKV, NOKV}, 1},
    {"ipv4 with port",
     REQ("/", "Host: 10.0.0.1:8080\r\n"),
     {"10.0.0.1", NULL, NULL, NOKV, NOKV},
     1},

    /* wildcard host */
    {"wildcard sub",
     REQ("/", "Host: a.example.com\r\n"),
     {"*.example.com", NULL, NULL, NOKV, NOKV},
     1},
    {"wildcard deep sub",
     REQ("/", "Host: x.y.example.com\r\n"),
     {"*.example.com", NULL, NULL, NOKV, NOKV},
     1},
    {"wildcard sub case+port",
     REQ("/", "Host: A.EXAMPLE.com:9000\r\n"),
     {"*.example.com", NULL, NULL, NOKV, NOKV},
     1},
    {"wildcard not apex",
     REQ("/", "Host: example.com\r\n"),
     {"*.example.com", NULL, NULL, NOKV, NOKV},
     0},
    {"wildcard not apex with port",
     REQ("/", "Host: example.com:80\r\n"),
     {"*.example.com", NULL, NULL, NOKV, NOKV},
     0},
    {"wildcard not suffix without dot",
     REQ("/", "Host: badexample.com\r\n"),
     {"*.example.com", NULL, NULL, NOKV, NOKV},
     0},
    {"wildcard not bare dot",
     REQ("/", "Host: .example.com\r\n"),
     {"*.example.com", NULL, NULL, NOKV, NOKV},
     0},
    {"wildcard not other domain",
     REQ("/", "Host: a.example.org\r\n"),
     {"*.example.com", NULL, NULL, NOKV, NOKV},
     0},
    {"wildcard not as prefix",
     REQ("/", "Host: a.example.com.evil\r\n"),
     {"*.example.com", NULL, NULL, NOKV, NOKV},
     0},

    /* exact path (query ignored) */
    {"path exact", REQ("/api", "Host: h\r\n"), {NULL, NULL, "/api", NOKV, NOKV}, 1},
    {"path exact with query", REQ("/api?x=1", "Host: h\r\n"), {NULL, NULL, "/api", NOKV, NOKV}, 1},
    {"path exact trailing slash", REQ("/api/", "Host: h\r\n"), {NULL, NULL, "/api", NOKV, NOKV}, 0},
    {"path exact longer", REQ("/apix", "Host: h\r\n"), {NULL, NULL, "/api", NOKV, NOKV}, 0},
    {"path exact shorter", REQ("/ap", "Host: h\r\n"), {NULL, NULL, "/api", NOKV, NOKV}, 0},
    {"path exact case-sensitive", REQ("/API", "Host: h\r\n"), {NULL, NULL, "/api", NOKV, NOKV}, 0},
    {"path exact absolute-form",
     "GET http://h/api?q HTTP/1.1\r\nHost: h\r\n\r\n",
     {NULL, NULL, "/api", NOKV, NOKV},
     1},
    {"path exact root via authority-only",
     "GET http://h?q HTTP/1.1\r\nHost: h\r\n\r\n",
     {NULL, NULL, "/", NOKV, NOKV},
     1},
    {"path asterisk is not /",
     "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",
     {NULL, NULL, "/", NOKV, NOKV},
     0},
    {"path prefix / rejects *",
     "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",
     {NULL, "/", NULL, NOKV, NOKV},
     0},

    /* path prefix (byte comparison) */
    {"prefix equal", REQ("/api", "Host: h\r\n"), {NULL, "/api", NULL, NOKV, NOKV}, 1},
    {"prefix sub", REQ("/api/v1/x", "Host: h\r\n"), {NULL, "/api", NULL, NOKV, NOKV}, 1},
    {"prefix bytes", REQ("/apix", "Host: h\r\n"), {NULL, "/api", NULL, NOKV, NOKV}, 1},
    {"prefix slash-terminated", REQ("/apix", "Host: h\r\n"), {NULL, "/api/", NULL, NOKV, NOKV}, 0},
    {"prefix shorter path", REQ("/ap", "Host: h\r\n"), {NULL, "/api", NULL, NOKV, NOKV}, 0},
    {"prefix not in query", REQ("/x?/api", "Host: h\r\n"), {NULL, "/api", NULL, NOKV, NOKV}, 0},
    {"prefix query cut", REQ("/ap?i", "Host: h\r\n"), {NULL, "/api", NULL, NOKV, NOKV}, 0},
    {"prefix root", REQ("/anything", "Host: h\r\n"), {NULL, "/", NULL, NOKV, NOKV}, 1},

    /* headers: name case-insensitive, value exact and case-sensitive */
    {"header exact",
     REQ("/", "Host: h\r\nX-Env: canary\r\n"),
     {NULL, NULL, NULL, HDRS(kv_env_canary), NOKV},
     1},
    {"header name case",
     REQ("/", "Host: h\r\nx-ENV: canary\r\n"),
     {NULL, NULL, NULL, HDRS(kv_env_canary), NOKV},
     1},
    {"header config name lower",
     REQ("/", "Host: h\r\nX-Env: canary\r\n"),
     {NULL, NULL, NULL, HDRS(kv_env_lower), NOKV},
     1},
    {"header value case",
     REQ("/", "Host: h\r\nX-Env: Canary\r\n"),
     {NULL, NULL, NULL, HDRS(kv_env_canary), NOKV},
     0},
    {"header value prefix",
     REQ("/", "Host: h\r\nX-Env: canary2\r\n"),
     {NULL, NULL, NULL, HDRS(kv_env_canary), NOKV},
     0},
    {"header value shorter",
     REQ("/", "Host: h\r\nX-Env: canar\r\n"),
     {NULL, NULL, NULL, HDRS(kv_env_canary), NOKV},
     0},
    {"header value OWS stripped",
     REQ("/", "Host: h\r\nX-Env: \t canary \t\r\n"),
     {NULL, NULL, NULL, HDRS(kv_env_canary), NOKV},
     1},
    {"header list value is not split",
     REQ("/", "Host: h\r\nX-Env: stable, canary\r\n"),
     {NULL, NULL, NULL, HDRS(kv_env_canary), NOKV},
     0},
    {"header missing",
     REQ("/", "Host: h\r\nX-Other: canary\r\n"),
     {NULL, NULL, NULL, HDRS(kv_env_canary), NOKV},
     0},
    {"header name prefix",
     REQ("/", "Host: h\r\nX-Environment: canary\r\n"),
     {NULL, NULL, NULL, HDRS(kv_env_canary), NOKV},
     0},
    {"header repeated, second matches",
     REQ("/", "Host: h\r\nX-Env: stable\r\nX-Env: canary\r\n"),
     {NULL, NULL, NULL, HDRS(kv_env_canary), NOKV},
     1},
    {"header repeated, first matches",
     REQ("/", "Host: h\r\nX-Env: canary\r\nX-Env: stable\r\n"),
     {NULL, NULL, NULL, HDRS(kv_env_canary), NOKV},
     1},
    {"header repeated, none matches",
     REQ("/", "Host: h\r\nX-Env: stable\r\nX-Env: beta\r\n"),
     {NULL, NULL, NULL, HDRS(kv_env_canary), NOKV},
     0},
    {"header presence",
     REQ("/", "Host: h\r\nX-Debug: 0\r\n"),
     {NULL, NULL, NULL, HDRS(kv_debug_any), NOKV},
     1},
    {"header presence empty value",
     REQ("/", "Host: h\r\nX-Debug:\r\n"),
     {NULL, NULL, NULL, HDRS(kv_debug_any), NOKV},
     1},
    {"header presence missing",
     REQ("/", "Host: h\r\nX-Debugger: 1\r\n"),
     {NULL, NULL, NULL, HDRS(kv_debug_any), NOKV},
     0},
    {"two headers both",
     REQ("/", "Host: h\r\nX-Tenant: acme\r\nX-Env: canary\r\n"),
     {NULL, NULL, NULL, HDRS(kv_two_headers), NOKV},
     1},
    {"two headers one",
     REQ("/", "Host: h\r\nX-Env: canary\r\n"),
     {NULL, NULL, NULL, HDRS(kv_two_headers), NOKV},
     0},

    /* cookies */
    {"cookie single",
     REQ("/", "Host: h\r\nCookie: session=abc\r\n"),
     {NULL, NULL, NULL, NOKV, HDRS(ck_session_abc)},
     1},
    {"cookie among several",
     REQ("/", "Host: h\r\nCookie: a=1; session=abc; b=2\r\n"),
     {NULL, NULL, NULL, NOKV, HDRS(ck_session_abc)},
     1},
    {"cookie last",
     REQ("/", "Host: h\r\nCookie: a=1; b=2; session=abc\r\n"),
     {NULL, NULL, NULL, NOKV, HDRS(ck_session_abc)},
     1},
    {"cookie no spaces",
     REQ("/", "Host: h\r\nCookie: a=1;session=abc;b=2\r\n"),
     {NULL, NULL, NULL, NOKV, HDRS(ck_session_abc)},
     1},
    {"cookie extra spaces",
     REQ("/", "Host: h\r\nCookie: a=1;   session=abc  ;  b=2\r\n"),
     {NULL, NULL, NULL, NOKV, HDRS(ck_session_abc)},
     1},
    {"cookie space before =",
     REQ("/", "Host: h\r\nCookie: session =abc\r\n"),
     {NULL, NULL, NULL, NOKV, HDRS(ck_session_abc)},
     1},
    {"cookie trailing ;",
     REQ("/", "Host: h\r\nCookie: session=abc;\r\n"),
     {NULL, NULL, NULL, NOKV, HDRS(ck_session_abc)},
     1},
    {"cookie header name case",
     REQ("/", "Host: h\r\ncOOKIE: session=abc\r\n"),
     {NULL, NULL, NULL, NOKV, HDRS(ck_session_abc)},
     1},
    {"cookie quoted",
     REQ("/", "Host: h\r\nCookie: a=1; session=\"abc\"; b=2\r\n"),
     {NULL, NULL, NULL, NOKV, HDRS(ck_session_abc)},
     1},
    {"cookie quoted wrong",
     REQ("/", "Host: h\r\nCookie: session=\"abcd\"\r\n"),
     {NULL, NULL, NULL, NOKV, HDRS(ck_session_abc)},
     0},
    {"cookie lone quote",
     REQ("/", "Host: h\r\nCookie: session=\"abc\r\n"),
     {NULL, NULL, NULL, NOKV, HDRS(ck_session_abc)},
     0},
    {"cookie several Cookie headers",
     REQ("/", "Host: h\r\nCookie: a=1; b=2\r\nX-Mid: 1\r\nCookie: c=3; session=abc\r\n"),
     {NULL, NULL, NULL, NOKV, HDRS(ck_session_abc)},
     1},
    {"cookie suffix name",
     REQ("/", "Host: h\r\nCookie: xsession=abc\r\n"),
     {NULL, NULL, NULL, NOKV, HDRS(ck_session_abc)},
     0},
    {"cookie suffix name, others",
     REQ("/", "Host: h\r\nCookie: a=1; my_session=abc; b=2\r\n"),
     {NULL, NULL, NULL, NOKV, HDRS(ck_session_abc)},
     0},
    {"cookie prefix name",
     REQ("/", "Host: h\r\nCookie: session2=abc; sessio=abc\r\n"),
     {NULL, NULL, NULL, NOKV, HDRS(ck_session_abc)},
     0},
    {"cookie name case-sensitive",
     REQ("/", "Host: h\r\nCookie: Session=abc\r\n"),
     {NULL, NULL, NULL, NOKV, HDRS(ck_session_abc)},
     0},
    {"cookie value prefix",
     REQ("/", "Host: h\r\nCookie: session=abcd\r\n"),
     {NULL, NULL, NULL, NOKV, HDRS(ck_session_abc)},
     0},
    {"cookie value shorter",
     REQ("/", "Host: h\r\nCookie: session=ab\r\n"),
     {NULL, NULL, NULL, NOKV, HDRS(ck_session_abc)},
     0},
    {"cookie value case",
     REQ("/", "Host: h\r\nCookie: session=ABC\r\n"),
     {NULL, NULL, NULL, NOKV, HDRS(ck_session_abc)},
     0},
    {"cookie in other header",
     REQ("/", "Host: h\r\nX-Cookie: session=abc\r\n"),
     {NULL, NULL, NULL, NOKV, HDRS(ck_session_abc)},
     0},
    {"cookie in Set-Cookie",
     REQ("/", "Host: h\r\nSet-Cookie: session=abc\r\n"),
     {NULL, NULL, NULL, NOKV, HDRS(ck_session_abc)},
     0},
    {"cookie name as a value",
     REQ("/", "Host: h\r\nCookie: a=session\r\n"),
     {NULL, NULL, NULL, NOKV, HDRS(ck_session_any)},
     0},
    {"cookie name inside a value",
     REQ("/", "Host: h\r\nCookie: a=x session=abc\r\n"),
     {NULL, NULL, NULL, NOKV, HDRS(ck_session_abc)},
     0},
    {"cookie pair without =",
     REQ("/", "Host: h\r\nCookie: session; a=1\r\n"),
     {NULL, NULL, NULL, NOKV, HDRS(ck_session_any)},
     0},
    {"cookie pair without = before match",
     REQ("/", "Host: h\r\nCookie: junk; session=abc\r\n"),
     {NULL, NULL, NULL, NOKV, HDRS(ck_session_abc)},
     1},
    {"cookie empty header",
     REQ("/", "Host: h\r\nCookie: \r\n"),
     {NULL, NULL, NULL, NOKV, HDRS(ck_session_any)},
     0},
    {"cookie only separators",
     REQ("/", "Host: h\r\nCookie: ;; ; \r\n"),
     {NULL, NULL, NULL, NOKV, HDRS(ck_session_any)},
     0},
    {"cookie presence",
     REQ("/", "Host: h\r\nCookie: a=1; session=zzz\r\n"),
     {NULL, NULL, NULL, NOKV, HDRS(ck_session_any)},
     1},
    {"cookie presence empty value",
     REQ("/", "Host: h\r\nCookie: session=\r\n"),
     {NULL, NULL, NULL, NOKV, HDRS(ck_session_any)},
     1},
    {"cookie empty wanted value",
     REQ("/", "Host: h\r\nCookie: flag=\r\n"),
     {NULL, NULL, NULL, NOKV, HDRS(ck_empty_val)},
     1},
    {"cookie empty wanted value, got one",
     REQ("/", "Host: h\r\nCookie: flag=1\r\n"),
     {NULL, NULL, NULL, NOKV, HDRS(ck_empty_val)},
     0},
    {"cookie no Cookie header",
     REQ("/", "Host: h\r\n"),
     {NULL, NULL, NULL, NOKV, HDRS(ck_session_any)},
     0},
    {"cookies both, split headers",
     REQ("/", "Host: h\r\nCookie: lang=en\r\nCookie: session=abc\r\n"),
     {NULL, NULL, NULL, NOKV, HDRS(ck_two)},
     1},
    {"cookies one missing",
     REQ("/", "Host: h\r\nCookie: lang=de; session=abc\r\n"),
     {NULL, NULL, NULL, NOKV, HDRS(ck_two)},
     0},
    /* a later duplicate with the wanted value still counts as present */
    {"cookie duplicate name",
     REQ("/", "Host: h\r\nCookie: session=old; session=abc\r\n"),
     {NULL, NULL, NULL, NOKV, HDRS(ck_session_abc)},
     1},

    /* all conditions of a block must hold */
    {"all hold",
     REQ("/api/v1?x", "Host: A.example.com:80\r\nX-Env: canary\r\nCookie: session=abc\r\n"),
     {"*.example.com", "/api/", NULL, HDRS(kv_env_canary), HDRS(ck_session_abc)},
     1},
    {"all but host",
     REQ("/api/v1?x", "Host: example.com\r\nX-Env: canary\r\nCookie: session=abc\r\n"),
     {"*.example.com", "/api/", NULL, HDRS(kv_env_canary), HDRS(ck_session_abc)},
     0},
    {"all but path",
     REQ("/web/v1?x", "Host: a.example.com\r\nX-Env: canary\r\nCookie: session=abc\r\n"),
     {"*.example.com", "/api/", NULL, HDRS(kv_env_canary), HDRS(ck_session_abc)},
     0},
    {"all but header",
     REQ("/api/v1?x", "Host: a.example.com\r\nX-Env: stable\r\nCookie: session=abc\r\n"),
     {"*.example.com", "/api/", NULL, HDRS(kv_env_canary), HDRS(ck_session_abc)},
     0},
    {"all but cookie",
     REQ("/api/v1?x", "Host: a.example.com\r\nX-Env: canary\r\nCookie: session=xyz\r\n"),
     {"*.example.com", "/api/", NULL, HDRS(kv_env_canary), HDRS(ck_session_abc)},
     0},
};

static void test_match_one(void)
{
    for (size_t i = 0; i < sizeof(match_cases) / sizeof(match_cases[0]); i++) {
        const struct match_case *c = &match_cases[i];
        struct preq p;
        preq_parse(&p, c->raw);
        if (p.ok) {
            int got = keel_router_match_one(&c->m, &p.rr);
            CHECKF(got == c->want, "case %zu \"%s\": got %d want %d", i, c->what, got, c->want);
        }
        preq_free(&p);
    }
}

/* ---- keel_router_match: first match wins, no match -1 ------------------------------------- */

static struct keel_cfg_match m_canary = {NULL, "/api", NULL, HDRS(kv_env_canary), NOKV};
static struct keel_cfg_match m_api = {NULL, "/api", NULL, NOKV, NOKV};
static struct keel_cfg_match m_admin_host = {"admin.example.com", NULL, NULL, NOKV, NOKV};
static struct keel_cfg_match m_wild = {"*.example.com", NULL, NULL, NOKV, NOKV};
static struct keel_cfg_match m_health = {NULL, NULL, "/healthz", NOKV, NOKV};
static struct keel_cfg_match m_any = {NULL, NULL, NULL, NOKV, NOKV};

struct table_case {
    const char *raw;
    int want_full;    /* with the catch-all route */
    int want_partial; /* without it */
};

static const struct table_case table_cases[] = {
    {REQ("/api/x", "Host: h\r\nX-Env: canary\r\n"), 10, 10},
    {REQ("/api/x", "Host: h\r\nX-Env: stable\r\n"), 11, 11},
    /* m_api is before the host routes: an /api request to admin goes to the api cluster */
    {REQ("/api/x", "Host: admin.example.com\r\n"), 11, 11},
    {REQ("/x", "Host: admin.example.com\r\n"), 12, 12},
    {REQ("/x", "Host: ADMIN.example.com:8080\r\n"), 12, 12},
    {REQ("/x", "Host: www.example.com\r\n"), 13, 13},
    {REQ("/healthz", "Host: www.example.com\r\n"), 13, 13},
    {REQ("/healthz", "Host: example.com\r\n"), 14, 14},
    {REQ("/healthz?full=1", "Host: other\r\n"), 14, 14},
    {REQ("/healthz/", "Host: other\r\n"), 15, -1},
    {REQ("/", "Host: example.com\r\n"), 15, -1},
    {"GET /nohost HTTP/1.0\r\n\r\n", 15, -1},
};

static void test_match_table(void)
{
    struct keel_snap_route routes[] = {
        {&m_canary, 10}, {&m_api, 11},    {&m_admin_host, 12},
        {&m_wild, 13},   {&m_health, 14}, {&m_any, 15},
    };
    struct keel_snap_listener full = {NULL, routes, 6, -1};
    struct keel_snap_listener partial = {NULL, routes, 5, -1};
    struct keel_snap_listener none = {NULL, routes, 0, -1};

    for (size_t i = 0; i < sizeof(table_cases) / sizeof(table_cases[0]); i++) {
        const struct table_case *c = &table_cases[i];
        struct preq p;
        preq_parse(&p, c->raw);
        if (p.ok) {
            int got = keel_router_match(&full, &p.rr);
            CHECKF(got == c->want_full, "table case %zu (full): got %d want %d", i, got,
                   c->want_full);
            got = keel_router_match(&partial, &p.rr);
            CHECKF(got == c->want_partial, "table case %zu (partial): got %d want %d", i, got,
                   c->want_partial);
            got = keel_router_match(&none, &p.rr);
            CHECKF(got == -1, "table case %zu (no routes): got %d", i, got);
        }
        preq_free(&p);
    }

    /* The same match block twice: the first route's cluster is returned. */
    struct keel_snap_route dup[] = {{&m_any, 3}, {&m_any, 4}};
    struct keel_snap_listener dl = {NULL, dup, 2, -1};
    struct preq p;
    preq_parse(&p, REQ("/", "Host: h\r\n"));
    if (p.ok)
        CHECK(keel_router_match(&dl, &p.rr) == 3);
    preq_free(&p);

    /* Cluster index 0 is a valid result, distinct from "no match". */
    struct keel_snap_route zero[] = {{&m_health, 0}};
    struct keel_snap_listener zl = {NULL, zero, 1, -1};
    preq_parse(&p, REQ("/healthz", "Host: h\r\n"));
    if (p.ok)
        CHECK(keel_router_match(&zl, &p.rr) == 0);
    preq_free(&p);
    preq_parse(&p, REQ("/other", "Host: h\r\n"));
    if (p.ok)
        CHECK(keel_router_match(&zl, &p.rr) == -1);
    preq_free(&p);
}

/* A hand-built keel_route_req (no parser): host given without Host header, NULL host. */
static void test_hand_built(void)
{
    struct keel_route_req rr = {"[::1]:80", 8, "/p", 2, NULL, 0, 0, NULL, 0};
    struct keel_cfg_match m6 = {"[::1]", NULL, NULL, NOKV, NOKV};
    CHECK(keel_router_match_one(&m6, &rr) == 1);

    /* "[::1]" must not match a longer literal that starts with the same characters. */
    struct keel_route_req rr2 = {"[::10]:80", 9, "/p", 2, NULL, 0, 0, NULL, 0};
    CHECK(keel_router_match_one(&m6, &rr2) == 0);

    /* Only the host's own bytes count: the span is not NUL-terminated. */
    struct keel_route_req rr3 = {"example.comXYZ", 11, "/pXYZ", 2, NULL, 0, 0, NULL, 0};
    struct keel_cfg_match mh = {"example.com", NULL, "/p", NOKV, NOKV};
    CHECK(keel_router_match_one(&mh, &rr3) == 1);

    struct keel_route_req rr4 = {NULL, 0, "/", 1, NULL, 0, 0, NULL, 0};
    CHECK(keel_router_match_one(&mh, &rr4) == 0);
    CHECK(keel_router_match_one(&m_any, &rr4) == 1);
    CHECK(keel_router_match_one(&m_canary, &rr4) == 0);
}

int main(void)
{
    test_prepare();
    test_match_one();
    test_match_table();
    test_hand_built();
    return TEST_SUMMARY("test_router");
}
