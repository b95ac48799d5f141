/* SPDX-License-Identifier: MIT */
/* Sans-I/O conversions between HTTP/1.1 message text and HTTP/2 header lists (nghttp2_nv). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "keel/err.h"
#include "keel/h2conv.h"

/* RFC 9110 5.6.2 tchar. */
static int is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return 1;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* Field-value byte HTTP/1.1 can carry: HTAB, SP, VCHAR, obs-text. */
static int is_vchar(unsigned char c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

static char lc(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
}

static int ieq_n(const char *a, const char *lower, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (lc(a[i]) != lower[i])
            return 0;
    return 1;
}

/* a (al bytes) equals the lower-case literal, ignoring case; lengths first, no strlen (each
 * field of each message is compared with a dozen names). */
#define ieq(a, al, lit) ((al) == sizeof(lit) - 1 && ieq_n((a), "" lit, sizeof(lit) - 1))

/* Fields HTTP/2 forbids (RFC 9113 8.2.2) or that describe the HTTP/1.1 hop only. */
static int conn_specific(const char *n, size_t l)
{
    return ieq(n, l, "connection") || ieq(n, l, "keep-alive") || ieq(n, l, "proxy-connection") ||
           ieq(n, l, "transfer-encoding") || ieq(n, l, "upgrade") || ieq(n, l, "http2-settings");
}

/* Whether a Connection header of the message lists this field name. */
static int named_by_connection(const struct keel_http1_header *hs, size_t n, const char *name,
                               size_t nl)
{
    for (size_t i = 0; i < n; i++) {
        if (!ieq(hs[i].name, hs[i].name_len, "connection"))
            continue;
        const char *p = hs[i].value, *end = p + hs[i].value_len;
        while (p < end) {
            while (p < end && (*p == ',' || *p == ' ' || *p == '\t'))
                p++;
            const char *s = p;
            while (p < end && *p != ',' && *p != ' ' && *p != '\t')
                p++;
            if ((size_t)(p - s) == nl) {
                size_t k = 0;
                while (k < nl && lc(s[k]) == lc(name[k]))
                    k++;
                if (k == nl)
                    return 1;
            }
        }
    }
    return 0;
}

static int push_nv(nghttp2_nv *nv, size_t *n, size_t cap, const char *name, size_t nl,
                   const char *value, size_t vl)
{
    if (*n >= cap)
        return KEEL_EINVAL;
    nv[*n].name = (uint8_t *)(uintptr_t)name;
    nv[*n].namelen = nl;
    nv[*n].value = (uint8_t *)(uintptr_t)value;
    nv[*n].valuelen = vl;
    nv[*n].flags = NGHTTP2_NV_FLAG_NONE;
    (*n)++;
    return 0;
}

/* Copies a name lower-cased into the scratch space. NULL when it does not fit. */
static const char *lower_into(const char *name, size_t nl, char *scratch, size_t cap, size_t *used)
{
    if (cap - *used < nl)
        return NULL;
    char *d = scratch + *used;
    for (size_t i = 0; i < nl; i++)
        d[i] = lc(name[i]);
    *used += nl;
    return d;
}

/* The fields of a request or response after the pseudo-headers. */
static int push_fields(const struct keel_http1_header *hs, size_t nh, int is_request,
                       nghttp2_nv *nv, size_t *n, size_t cap, char *scratch, size_t scap,
                       size_t *used, int *te_sent)
{
    int has_connection = 0; /* only then can a field be named by one (usually not) */
    for (size_t i = 0; i < nh && !has_connection; i++)
        has_connection = ieq(hs[i].name, hs[i].name_len, "connection");
    for (size_t i = 0; i < nh; i++) {
        const struct keel_http1_header *h = &hs[i];
        if (conn_specific(h->name, h->name_len))
            continue;
        if (is_request && ieq(h->name, h->name_len, "host"))
            continue;
        if (ieq(h->name, h->name_len, "te")) {
            if (is_request && !*te_sent &&
                keel_http1_value_has_token(h->value, h->value_len, "trailers")) {
                if (push_nv(nv, n, cap, "te", 2, "trailers", 8))
                    return KEEL_EINVAL;
                *te_sent = 1;
            }
            continue;
        }
        if (has_connection && !ieq(h->name, h->name_len, "content-length") &&
            named_by_connection(hs, nh, h->name, h->name_len))
            continue;
        const char *ln = lower_into(h->name, h->name_len, scratch, scap, used);
        if (!ln || push_nv(nv, n, cap, ln, h->name_len, h->value, h->value_len))
            return KEEL_EINVAL;
    }
    return 0;
}

int keel_h2conv_request(const struct keel_http1_request *req, unsigned flags, nghttp2_nv *nv,
                        size_t *n_nv, char *scratch, size_t scratch_len)
{
    size_t cap = *n_nv, n = 0, used = 0;
    const char *m = req->method, *t = req->target;
    size_t ml = req->method_len, tl = req->target_len;
    if (ml == 7 && memcmp(m, "CONNECT", 7) == 0)
        return KEEL_ENOTIMPL;
    const char *auth = NULL, *path = NULL;
    size_t al = 0, pl = 0;
    if (tl > 0 && t[0] == '/') {
        path = t;
        pl = tl;
    } else if (tl == 1 && t[0] == '*') {
        path = t;
        pl = 1;
    } else {
        /* absolute-form: scheme "://" authority [path-abempty] ["?" query] */
        const char *sep = tl >= 3 ? memchr(t, ':', tl) : NULL;
        if (!sep || (size_t)(t + tl - sep) < 3 || sep[1] != '/' || sep[2] != '/')
            return KEEL_EBADMSG;
        auth = sep + 3;
        const char *end = t + tl, *p = auth;
        while (p < end && *p != '/' && *p != '?' && *p != '#')
            p++;
        al = (size_t)(p - auth);
        if (p < end && *p == '/') {
            path = p;
            pl = (size_t)(end - p);
        } else {
            /* "http://h?q" -> "/?q": the path needs its slash. */
            size_t rest = (size_t)(end - p);
            if (scratch_len - used < rest + 1)
                return KEEL_EINVAL;
            char *d = scratch + used;
            d[0] = '/';
            memcpy(d + 1, p, rest);
            used += rest + 1;
            path = d;
            pl = rest + 1;
        }
        if (al == 0)
            auth = NULL;
    }
    if (!auth && req->host_index >= 0 && (size_t)req->host_index < req->num_headers) {
        const struct keel_http1_header *h = &req->headers[req->host_index];
        if (h->value_len > 0) {
            auth = h->value;
            al = h->value_len;
        }
    }
    const char *scheme = (flags & KEEL_H2CONV_HTTPS) ? "https" : "http";
    if (push_nv(nv, &n, cap, ":method", 7, m, ml) ||
        push_nv(nv, &n, cap, ":scheme", 7, scheme, strlen(scheme)) ||
        (auth && push_nv(nv, &n, cap, ":authority", 10, auth, al)) ||
        push_nv(nv, &n, cap, ":path", 5, path, pl))
        return KEEL_EINVAL;
    int te_sent = 0;
    if (flags & KEEL_H2CONV_TE_TRAILERS) {
        if (push_nv(nv, &n, cap, "te", 2, "trailers", 8))
            return KEEL_EINVAL;
        te_sent = 1;
    }
    int rc = push_fields(req->headers, req->num_headers, 1, nv, &n, cap, scratch, scratch_len,
                         &used, &te_sent);
    if (rc)
        return rc;
    *n_nv = n;
    return 0;
}

int keel_h2conv_response(const struct keel_http1_response *resp, nghttp2_nv *nv, size_t *n_nv,
                         char *scratch, size_t scratch_len, char status_buf[4])
{
    size_t cap = *n_nv, n = 0, used = 0;
    if (resp->status < 100 || resp->status > 999)
        return KEEL_EBADMSG;
    status_buf[0] = (char)('0' + resp->status / 100);
    status_buf[1] = (char)('0' + resp->status / 10 % 10);
    status_buf[2] = (char)('0' + resp->status % 10);
    status_buf[3] = 0;
    if (push_nv(nv, &n, cap, ":status", 7, status_buf, 3))
        return KEEL_EINVAL;
    int te_sent = 1;
    int rc = push_fields(resp->headers, resp->num_headers, 0, nv, &n, cap, scratch, scratch_len,
                         &used, &te_sent);
    if (rc)
        return rc;
    *n_nv = n;
    return 0;
}

/* ---- header block collector ---------------------------------------------------------------- */

void keel_h2conv_head_init(struct keel_h2conv_head *h, enum keel_h2conv_kind kind, size_t max)
{
    memset(h, 0, sizeof(*h));
    h->kind = kind;
    h->max = max;
    h->content_length = -1;
}

void keel_h2conv_head_reset(struct keel_h2conv_head *h)
{
    h->len = 0;
    h->status = 0;
    h->content_length = -1;
    h->body = 0;
}

void keel_h2conv_head_free(struct keel_h2conv_head *h)
{
    free(h->buf);
    h->buf = NULL;
    h->len = h->cap = 0;
}

static int head_put(struct keel_h2conv_head *h, const void *p, size_t n)
{
    if (n > h->max || h->len > h->max - n)
        return KEEL_EHDRTOOLARGE;
    if (h->cap - h->len < n) {
        size_t cap = h->cap ? h->cap : 512;
        while (cap - h->len < n)
            cap *= 2;
        char *nb = realloc(h->buf, cap);
        if (!nb)
            return KEEL_ENOMEM;
        h->buf = nb;
        h->cap = cap;
    }
    memcpy(h->buf + h->len, p, n);
    h->len += n;
    return 0;
}

static int parse_u63(const uint8_t *v, size_t n, int64_t *out)
{
    if (n == 0 || n > 18)
        return -1;
    int64_t x = 0;
    for (size_t i = 0; i < n; i++) {
        if (v[i] < '0' || v[i] > '9')
            return -1;
        x = x * 10 + (v[i] - '0');
    }
    *out = x;
    return 0;
}

/* Decimal digits of v into d (at least 20 bytes), most significant first. @return count. */
static size_t put_u64(char *d, uint64_t v)
{
    char t[20];
    size_t n = 0;
    do {
        t[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        d[i] = t[n - 1 - i];
    return n;
}

/* "Content-Length: <v>\r\n" into line (at least 64 bytes). @return its length. */
static int cl_line(char *line, int64_t v)
{
    static const char k[] = "Content-Length: ";
    memcpy(line, k, sizeof(k) - 1);
    size_t l = sizeof(k) - 1 + put_u64(line + sizeof(k) - 1, (uint64_t)v);
    line[l++] = '\r';
    line[l++] = '\n';
    return (int)l;
}

int keel_h2conv_head_add(struct keel_h2conv_head *h, const uint8_t *name, size_t name_len,
                         const uint8_t *value, size_t value_len)
{
    if (name_len == 0)
        return KEEL_EBADMSG;
    for (size_t i = 0; i < value_len; i++)
        if (!is_vchar(value[i]))
            return KEEL_EBADMSG;
    if (name[0] == ':') {
        if (h->kind != KEEL_H2CONV_RESPONSE || h->status != 0 || h->len != 0 ||
            !ieq((const char *)name, name_len, ":status") || value_len != 3)
            return KEEL_EBADMSG;
        int64_t st;
        if (parse_u63(value, 3, &st) || st < 100)
            return KEEL_EBADMSG;
        h->status = (int)st;
        /* "HTTP/1.1 %d %s\r\n": three digits (checked above) and the reason phrase */
        const char *reason = keel_http1_reason(h->status);
        size_t rl = strlen(reason);
        char line[13 + 64];
        if (rl > sizeof(line) - 13)
            rl = sizeof(line) - 13;
        memcpy(line, "HTTP/1.1 ", 9);
        memcpy(line + 9, value, 3);
        line[12] = ' ';
        memcpy(line + 13, reason, rl);
        int rc = head_put(h, line, 13 + rl);
        return rc ? rc : head_put(h, "\r\n", 2);
    }
    if (h->kind == KEEL_H2CONV_RESPONSE && h->status == 0)
        return KEEL_EBADMSG;
    for (size_t i = 0; i < name_len; i++)
        if (!is_tchar(name[i]) || (name[i] >= 'A' && name[i] <= 'Z'))
            return KEEL_EBADMSG;
    const char *n = (const char *)name;
    if (conn_specific(n, name_len))
        return 0;
    if (ieq(n, name_len, "content-length")) {
        int64_t cl;
        if (parse_u63(value, value_len, &cl) || (h->content_length >= 0 && cl != h->content_length))
            return KEEL_EBADMSG;
        h->content_length = cl;
        return 0;
    }
    if (h->kind == KEEL_H2CONV_TRAILERS &&
        (ieq(n, name_len, "host") || ieq(n, name_len, "te") || ieq(n, name_len, "trailer")))
        return 0;
    if (name_len > h->max || value_len > h->max || name_len + value_len + 4 > h->max - h->len)
        return KEEL_EHDRTOOLARGE;
    int rc = head_put(h, name, name_len);
    rc = rc ? rc : head_put(h, ": ", 2);
    rc = rc ? rc : head_put(h, value, value_len);
    return rc ? rc : head_put(h, "\r\n", 2);
}

int keel_h2conv_head_finish(struct keel_h2conv_head *h, unsigned flags)
{
    char line[64];
    int l = 0;
    if (h->kind == KEEL_H2CONV_TRAILERS) {
        h->body = KEEL_H1_BODY_NONE;
        return head_put(h, "\r\n", 2);
    }
    if (h->status == 0)
        return KEEL_EBADMSG;
    int st = h->status;
    if (st < 200 || st == 204 || st == 304 || (flags & KEEL_H2CONV_F_HEAD)) {
        if (h->content_length >= 0 && st >= 200 && st != 204)
            l = cl_line(line, h->content_length);
        h->body = KEEL_H1_BODY_NONE;
    } else if (flags & KEEL_H2CONV_F_END_STREAM) {
        l = cl_line(line, h->content_length > 0 ? h->content_length : 0);
        h->body = h->content_length > 0 ? KEEL_H1_BODY_LENGTH : KEEL_H1_BODY_NONE;
    } else if (h->content_length >= 0 && !(flags & KEEL_H2CONV_F_CHUNKED)) {
        l = cl_line(line, h->content_length);
        h->body = h->content_length > 0 ? KEEL_H1_BODY_LENGTH : KEEL_H1_BODY_NONE;
    } else {
        static const char te[] = "Transfer-Encoding: chunked\r\n";
        memcpy(line, te, sizeof(te) - 1);
        l = (int)sizeof(te) - 1;
        h->body = KEEL_H1_BODY_CHUNKED;
    }
    int rc = l > 0 ? head_put(h, line, (size_t)l) : 0;
    return rc ? rc : head_put(h, "\r\n", 2);
}

/* ---- chunked body decoder ------------------------------------------------------------------ */

enum {
    UC_SIZE,
    UC_SIZE_BWS,
    UC_EXT,
    UC_SIZE_LF,
    UC_DATA,
    UC_DATA_CR,
    UC_DATA_LF,
    UC_TR_START, /* start of a trailer line or the final CRLF */
    UC_TR_NAME,
    UC_TR_VALUE,
    UC_TR_LF,
    UC_END_LF,
    UC_DONE,
    UC_ERROR,
};

#define UC_MAX_LINE 4096 /* size line incl. extensions */
#define UC_MAX_DIGITS 15 /* < 2^60 */

void keel_h2conv_unchunk_init(struct keel_h2conv_unchunk *u)
{
    memset(u, 0, sizeof(*u));
}

void keel_h2conv_unchunk_free(struct keel_h2conv_unchunk *u)
{
    free(u->trailers);
    u->trailers = NULL;
    u->trailers_len = u->trailers_cap = 0;
}

static int tr_put(struct keel_h2conv_unchunk *u, char c)
{
    if (u->trailers_len >= KEEL_H2CONV_MAX_TRAILERS)
        return KEEL_EHDRTOOLARGE;
    if (u->trailers_len == u->trailers_cap) {
        size_t cap = u->trailers_cap ? u->trailers_cap * 2 : 256;
        char *nb = realloc(u->trailers, cap);
        if (!nb)
            return KEEL_ENOMEM;
        u->trailers = nb;
        u->trailers_cap = cap;
    }
    u->trailers[u->trailers_len++] = c;
    return 0;
}

static int hexv(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static int size_end(struct keel_h2conv_unchunk *u)
{
    u->line_len = 0;
    u->digits = 0;
    return u->remaining ? UC_DATA : UC_TR_START;
}

int keel_h2conv_unchunk_feed(struct keel_h2conv_unchunk *u, const char *buf, size_t len,
                             size_t max_data, size_t *consumed, size_t *data_off, size_t *data_len)
{
    size_t p = 0;
    int st = u->state, e = 0;
    *consumed = 0;
    if (st == UC_ERROR)
        return KEEL_EBADMSG;
    if (st == UC_DONE)
        return KEEL_H2CONV_DONE;
    while (p < len) {
        if (st == UC_DATA) {
            size_t n = len - p;
            if (n > u->remaining)
                n = (size_t)u->remaining;
            if (n > max_data)
                n = max_data;
            if (n == 0)
                break;
            *data_off = p;
            *data_len = n;
            u->remaining -= n;
            u->total += n;
            if (u->remaining == 0)
                st = UC_DATA_CR;
            u->state = st;
            *consumed = p + n;
            return KEEL_H2CONV_DATA;
        }
        unsigned char ch = (unsigned char)buf[p];
        if (st < UC_DATA && ++u->line_len > UC_MAX_LINE)
            goto bad;
        switch (st) {
        case UC_SIZE: {
            int v = hexv(ch);
            if (v >= 0) {
                if (u->digits >= UC_MAX_DIGITS)
                    goto bad;
                u->remaining = u->remaining << 4 | (uint64_t)v;
                u->digits++;
            } else if (u->digits == 0) {
                goto bad;
            } else if (ch == ';') {
                st = UC_EXT;
            } else if (ch == ' ' || ch == '\t') {
                st = UC_SIZE_BWS;
            } else if (ch == '\r') {
                st = UC_SIZE_LF;
            } else if (ch == '\n') {
                st = size_end(u);
            } else {
                goto bad;
            }
            break;
        }
        case UC_SIZE_BWS:
            if (ch == ';')
                st = UC_EXT;
            else if (ch == '\r')
                st = UC_SIZE_LF;
            else if (ch != ' ' && ch != '\t')
                goto bad;
            break;
        case UC_EXT:
            if (ch == '\r')
                st = UC_SIZE_LF;
            else if (ch == '\n')
                st = size_end(u);
            else if (!is_vchar(ch))
                goto bad;
            break;
        case UC_SIZE_LF:
            if (ch != '\n')
                goto bad;
            st = size_end(u);
            break;
        case UC_DATA_CR:
            if (ch != '\r')
                goto bad;
            st = UC_DATA_LF;
            break;
        case UC_DATA_LF:
            if (ch != '\n')
                goto bad;
            st = UC_SIZE;
            u->remaining = 0;
            break;
        case UC_TR_START:
            if (ch == '\r') {
                st = UC_END_LF;
            } else if (ch == '\n') {
                st = UC_DONE;
            } else if (is_tchar(ch)) {
                if ((e = tr_put(u, (char)ch)) != 0)
                    goto fail;
                st = UC_TR_NAME;
            } else {
                goto bad;
            }
            break;
        case UC_TR_NAME:
            if (ch != ':' && !is_tchar(ch))
                goto bad;
            if ((e = tr_put(u, (char)ch)) != 0)
                goto fail;
            if (ch == ':')
                st = UC_TR_VALUE;
            break;
        case UC_TR_VALUE:
            if (ch == '\r') {
                st = UC_TR_LF;
            } else if (ch == '\n') {
                if ((e = tr_put(u, '\n')) != 0)
                    goto fail;
                st = UC_TR_START;
            } else if (is_vchar(ch)) {
                if ((e = tr_put(u, (char)ch)) != 0)
                    goto fail;
            } else {
                goto bad;
            }
            break;
        case UC_TR_LF:
            if (ch != '\n')
                goto bad;
            if ((e = tr_put(u, '\n')) != 0)
                goto fail;
            st = UC_TR_START;
            break;
        case UC_END_LF:
            if (ch != '\n')
                goto bad;
            st = UC_DONE;
            break;
        default:
            goto bad;
        }
        p++;
        if (st == UC_DONE) {
            u->state = st;
            *consumed = p;
            return KEEL_H2CONV_DONE;
        }
    }
    u->state = st;
    *consumed = p;
    return KEEL_H2CONV_NEED;
bad:
    e = KEEL_EBADMSG;
fail:
    u->state = UC_ERROR;
    *consumed = p;
    return e;
}

int keel_h2conv_trailers(const char *text, size_t len, nghttp2_nv *nv, size_t *n_nv, char *scratch,
                         size_t scratch_len)
{
    size_t cap = *n_nv, n = 0, used = 0, p = 0;
    while (p < len) {
        const char *line = text + p;
        const char *nl = memchr(line, '\n', len - p);
        size_t ll = nl ? (size_t)(nl - line) : len - p;
        p += ll + (nl ? 1 : 0);
        if (ll && line[ll - 1] == '\r')
            ll--;
        if (ll == 0)
            continue;
        const char *colon = memchr(line, ':', ll);
        if (!colon || colon == line)
            return KEEL_EBADMSG;
        size_t nlen = (size_t)(colon - line);
        for (size_t i = 0; i < nlen; i++)
            if (!is_tchar((unsigned char)line[i]))
                return KEEL_EBADMSG;
        const char *v = colon + 1, *ve = line + ll;
        while (v < ve && (*v == ' ' || *v == '\t'))
            v++;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
            ve--;
        if (conn_specific(line, nlen) || ieq(line, nlen, "content-length") ||
            ieq(line, nlen, "host") || ieq(line, nlen, "te") || ieq(line, nlen, "trailer"))
            continue;
        const char *ln = lower_into(line, nlen, scratch, scratch_len, &used);
        if (!ln || push_nv(nv, &n, cap, ln, nlen, v, (size_t)(ve - v)))
            return KEEL_EINVAL;
    }
    *n_nv = n;
    return 0;
}
