/* SPDX-License-Identifier: MIT */
/* Strict, bounds-checked DNS response parsing for SRV/A/AAAA and RFC 2782 tier selection. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "keel/err.h"
#include "dns_srv_parse.h"

#define T_A 1
#define T_CNAME 5
#define T_AAAA 28
#define T_SRV 33
#define C_IN 1
#define HDR_LEN 12
#define MAX_JUMPS 128
#define MAX_CNAMES 8

/* Parser state: the whole packet (pointers may reach anywhere before them) and the error sink. */
struct rd {
    const uint8_t *p;
    size_t len;
    char *err;
    size_t errlen;
};

__attribute__((format(printf, 3, 4))) static int bad(struct rd *r, size_t off, const char *fmt, ...)
{
    if (r->err && r->errlen) {
        int n = snprintf(r->err, r->errlen, "offset %zu: ", off);
        if (n >= 0 && (size_t)n < r->errlen) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(r->err + n, r->errlen - (size_t)n, fmt, ap);
            va_end(ap);
        }
    }
    return KEEL_EBADMSG;
}

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

static uint32_t get32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/* Labels that print unambiguously as text: no dot or backslash inside, no blanks/controls. */
static int plain_byte(uint8_t c)
{
    return c > 0x20 && c < 0x7f && c != '.' && c != '\\';
}

/* Reads the name at *off into txt (text form, "." for the root). *off moves past the name as it
 * sits at that position (up to its first pointer). *odd is set when a label is not plain text.
 * The wire form is bounded by 255 bytes, so the text (at most 253 chars) always fits. */
static int read_name(struct rd *r, size_t *off, char txt[256], int *odd, const char *what)
{
    size_t pos = *off, end = 0, wire = 0, tl = 0;
    int jumps = 0;

    *odd = 0;
    for (;;) {
        if (pos >= r->len)
            return bad(r, pos, "%s: name runs past the end", what);
        uint8_t c = r->p[pos];
        if ((c & 0xC0) == 0xC0) {
            if (pos + 1 >= r->len)
                return bad(r, pos, "%s: compression pointer cut short", what);
            size_t to = ((size_t)(c & 0x3F) << 8) | r->p[pos + 1];
            /* Strictly backwards makes loops impossible; the jump cap bounds the work anyway. */
            if (to >= pos)
                return bad(r, pos, "%s: compression pointer to %zu does not point backwards", what,
                           to);
            if (to < HDR_LEN)
                return bad(r, pos, "%s: compression pointer into the header", what);
            if (++jumps > MAX_JUMPS)
                return bad(r, pos, "%s: more than %d compression pointers", what, MAX_JUMPS);
            if (!end)
                end = pos + 2;
            pos = to;
            continue;
        }
        if (c & 0xC0)
            return bad(r, pos, "%s: reserved label type 0x%02x", what, c & 0xC0);
        if (c == 0) {
            if (!end)
                end = pos + 1;
            break;
        }
        /* c <= 63 here. Count the length byte and the final zero against the 255 limit. */
        wire += (size_t)c + 1;
        if (wire + 1 > 255)
            return bad(r, pos, "%s: name longer than 255 bytes", what);
        if (pos + 1 + c > r->len)
            return bad(r, pos, "%s: label runs past the end", what);
        if (tl)
            txt[tl++] = '.';
        for (size_t i = 0; i < c; i++) {
            uint8_t b = r->p[pos + 1 + i];
            if (!plain_byte(b))
                *odd = 1;
            txt[tl++] = (char)b;
        }
        pos += 1 + (size_t)c;
    }
    if (tl == 0)
        txt[tl++] = '.';
    txt[tl] = '\0';
    *off = end;
    return 0;
}

static int lower(int c)
{
    return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c;
}

/* ASCII case-insensitive name equality; one trailing dot on either side is ignored. */
static int name_eq(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 1 && a[la - 1] == '.')
        la--;
    if (lb > 1 && b[lb - 1] == '.')
        lb--;
    if (la != lb)
        return 0;
    for (size_t i = 0; i < la; i++)
        if (lower((unsigned char)a[i]) != lower((unsigned char)b[i]))
            return 0;
    return 1;
}

/* Grows an array to hold one more element; *cap is the allocated element count. */
static int grow(void **arr, size_t *cap, size_t n, size_t elem)
{
    if (n < *cap)
        return 0;
    size_t ncap = *cap ? *cap * 2 : 4;
    void *na = realloc(*arr, ncap * elem);
    if (!na)
        return KEEL_ENOMEM;
    *arr = na;
    *cap = ncap;
    return 0;
}

static int same_addr(const struct keel_srv_addr *x, int fam, const uint8_t *ip)
{
    if (x->sa.ss_family != fam)
        return 0;
    if (fam == AF_INET)
        return memcmp(&((const struct sockaddr_in *)&x->sa)->sin_addr, ip, 4) == 0;
    return memcmp(&((const struct sockaddr_in6 *)&x->sa)->sin6_addr, ip, 16) == 0;
}

/* Appends (or merges, keeping the lower TTL) one address for `name`. */
static int add_addr(struct keel_srv_answer *out, const char *name, int fam, const uint8_t *ip,
                    uint32_t ttl, int *added)
{
    for (size_t i = 0; i < out->n_addrs; i++) {
        struct keel_srv_addr *x = &out->addrs[i];
        if (same_addr(x, fam, ip) && name_eq(x->name, name)) {
            if (ttl < x->ttl)
                x->ttl = ttl;
            return 0;
        }
    }
    if (grow((void **)&out->addrs, &out->addrs_cap, out->n_addrs, sizeof(*out->addrs)))
        return KEEL_ENOMEM;
    struct keel_srv_addr *x = &out->addrs[out->n_addrs++];
    memset(x, 0, sizeof(*x));
    snprintf(x->name, sizeof(x->name), "%s", name);
    x->ttl = ttl;
    if (fam == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&x->sa;
        sin->sin_family = AF_INET;
        memcpy(&sin->sin_addr, ip, 4);
        x->salen = sizeof(*sin);
    } else {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&x->sa;
        sin6->sin6_family = AF_INET6;
        memcpy(&sin6->sin6_addr, ip, 16);
        x->salen = sizeof(*sin6);
    }
    (*added)++;
    return 0;
}

/* One resource record as read from the wire; rdata stays in the packet. */
struct rr {
    char owner[256];
    int owner_odd;
    uint16_t type, cls;
    uint32_t ttl;
    size_t rdoff, rdlen;
};

static int read_rr(struct rd *r, size_t *off, struct rr *rr, const char *what)
{
    int rc = read_name(r, off, rr->owner, &rr->owner_odd, what);
    if (rc)
        return rc;
    if (r->len - *off < 10)
        return bad(r, *off, "%s: record header cut short", what);
    const uint8_t *h = r->p + *off;
    rr->type = get16(h);
    rr->cls = get16(h + 2);
    rr->ttl = get32(h + 4);
    if (rr->ttl & 0x80000000u)
        rr->ttl = 0;
    rr->rdlen = get16(h + 8);
    rr->rdoff = *off + 10;
    if (rr->rdlen > r->len - rr->rdoff)
        return bad(r, *off + 8, "%s: RDLENGTH %zu runs past the end", what, rr->rdlen);
    if (rr->type == T_A && rr->rdlen != 4)
        return bad(r, *off + 8, "%s: A record with RDLENGTH %zu", what, rr->rdlen);
    if (rr->type == T_AAAA && rr->rdlen != 16)
        return bad(r, *off + 8, "%s: AAAA record with RDLENGTH %zu", what, rr->rdlen);
    *off = rr->rdoff + rr->rdlen;
    return 0;
}

/* Reads a name that must fill the rest of the RDATA exactly (SRV target, CNAME). */
static int read_rdata_name(struct rd *r, const struct rr *rr, size_t at, char txt[256], int *odd,
                           const char *what)
{
    size_t off = at, rdend = rr->rdoff + rr->rdlen;
    /* A name that starts inside RDATA may only reach outside through a backwards pointer;
     * reading on past rdend stays inside the packet and is caught by the length check. */
    int rc = read_name(r, &off, txt, odd, what);
    if (rc)
        return rc;
    if (off != rdend)
        return bad(r, at, "%s: name does not end with the RDATA", what);
    return 0;
}

/* Header fields and the question; leaves *off after the question section. */
struct hdr {
    uint16_t id, flags, qd, an, ns, ar;
};

static int read_head(struct rd *r, size_t *off, struct hdr *h, const char *qname,
                     int (*qtype_ok)(uint16_t), int *has_question)
{
    if (r->len < HDR_LEN)
        return bad(r, r->len, "header cut short (%zu bytes)", r->len);
    h->id = get16(r->p);
    h->flags = get16(r->p + 2);
    h->qd = get16(r->p + 4);
    h->an = get16(r->p + 6);
    h->ns = get16(r->p + 8);
    h->ar = get16(r->p + 10);
    if (!(h->flags & 0x8000))
        return bad(r, 2, "QR is 0: a query, not a response");
    if ((h->flags >> 11) & 0xF)
        return bad(r, 2, "opcode %u is not QUERY", (h->flags >> 11) & 0xF);
    *off = HDR_LEN;
    *has_question = 0;
    if (h->qd == 0) {
        if ((h->flags & 0xF) == 0)
            return bad(r, 4, "no question in a NOERROR response");
        return 0;
    }
    if (h->qd != 1)
        return bad(r, 4, "QDCOUNT %u (expected 1)", h->qd);
    char qn[256];
    int odd;
    size_t qoff = *off;
    int rc = read_name(r, off, qn, &odd, "question");
    if (rc)
        return rc;
    if (r->len - *off < 4)
        return bad(r, *off, "question: QTYPE/QCLASS cut short");
    uint16_t qtype = get16(r->p + *off), qclass = get16(r->p + *off + 2);
    if (odd || !name_eq(qn, qname))
        return bad(r, qoff, "question name \"%s\" is not \"%s\"", qn, qname);
    if (!qtype_ok(qtype))
        return bad(r, *off, "question type %u not asked for", qtype);
    if (qclass != C_IN)
        return bad(r, *off + 2, "question class %u is not IN", qclass);
    *off += 4;
    *has_question = 1;
    return 0;
}

static int is_srv(uint16_t t)
{
    return t == T_SRV;
}

static int is_addr(uint16_t t)
{
    return t == T_A || t == T_AAAA;
}

static const char *section_name(unsigned i)
{
    return i == 0 ? "answer" : i == 1 ? "authority" : "additional";
}

int keel_dns_srv_parse(const uint8_t *pkt, size_t len, const char *qname,
                       struct keel_srv_answer *out, char *err, size_t errlen)
{
    struct rd r = {pkt, len, err, errlen};
    struct hdr h = {0};
    size_t off;
    int has_q, rc;

    if (!out)
        return KEEL_EINVAL;
    memset(out, 0, sizeof(*out));
    if (!pkt || !qname)
        return KEEL_EINVAL;
    if (err && errlen)
        err[0] = '\0';
    rc = read_head(&r, &off, &h, qname, is_srv, &has_q);
    if (rc)
        return rc;
    out->rcode = h.flags & 0xF;
    out->truncated = !!(h.flags & 0x0200);
    out->authoritative = !!(h.flags & 0x0400);
    /* A truncated answer is never used (the caller asks again over TCP), so nothing after the
     * question is read: its records may well be cut in the middle. */
    if (out->truncated || !has_q)
        return 0;

    unsigned counts[3] = {h.an, h.ns, h.ar};
    int collect = out->rcode == 0;
    int dummy = 0;
    for (unsigned s = 0; s < 3; s++) {
        for (unsigned i = 0; i < counts[s]; i++) {
            char what[32];
            struct rr rr;
            snprintf(what, sizeof(what), "%s %u", section_name(s), i + 1);
            if (off >= len) {
                rc = bad(&r, off, "%s: missing (%s count %u)", what, section_name(s), counts[s]);
                goto fail;
            }
            rc = read_rr(&r, &off, &rr, what);
            if (rc)
                goto fail;
            if (rr.type == T_SRV) {
                if (rr.rdlen < 7) {
                    rc = bad(&r, rr.rdoff, "%s: SRV RDATA of %zu bytes", what, rr.rdlen);
                    goto fail;
                }
                struct keel_srv_rr srv;
                int odd;
                memset(&srv, 0, sizeof(srv));
                rc = read_rdata_name(&r, &rr, rr.rdoff + 6, srv.target, &odd, what);
                if (rc)
                    goto fail;
                if (!collect || s != 0 || rr.cls != C_IN || odd || rr.owner_odd ||
                    !name_eq(rr.owner, qname))
                    continue;
                srv.priority = get16(pkt + rr.rdoff);
                srv.weight = get16(pkt + rr.rdoff + 2);
                srv.port = get16(pkt + rr.rdoff + 4);
                srv.ttl = rr.ttl;
                if (srv.port == 0)
                    continue;
                if (grow((void **)&out->srv, &out->srv_cap, out->n_srv, sizeof(*out->srv))) {
                    rc = KEEL_ENOMEM;
                    goto fail;
                }
                if (out->n_srv == 0 || srv.ttl < out->min_ttl)
                    out->min_ttl = srv.ttl;
                out->srv[out->n_srv++] = srv;
            } else if (rr.type == T_A || rr.type == T_AAAA) {
                if (!collect || s == 1 || rr.cls != C_IN || rr.owner_odd)
                    continue;
                rc = add_addr(out, rr.owner, rr.type == T_A ? AF_INET : AF_INET6, pkt + rr.rdoff,
                              rr.ttl, &dummy);
                if (rc)
                    goto fail;
            }
        }
    }
    return 0;
fail:
    keel_dns_srv_answer_free(out);
    return rc;
}

void keel_dns_srv_answer_free(struct keel_srv_answer *a)
{
    if (!a)
        return;
    free(a->srv);
    free(a->addrs);
    memset(a, 0, sizeof(*a));
}

int keel_dns_addr_parse(const uint8_t *pkt, size_t len, const char *name,
                        struct keel_srv_answer *out, int *rcode, char *err, size_t errlen)
{
    struct rd r = {pkt, len, err, errlen};
    struct hdr h = {0};
    size_t off, n_before;
    int has_q, rc, added = 0;
    /* The names this one is known by: `name`, then each CNAME target in turn. */
    char chain[MAX_CNAMES + 1][256];
    size_t n_chain = 1;

    if (!pkt || !name || !out)
        return KEEL_EINVAL;
    if (err && errlen)
        err[0] = '\0';
    rc = read_head(&r, &off, &h, name, is_addr, &has_q);
    if (rc)
        return rc;
    if (rcode)
        *rcode = h.flags & 0xF;
    if (h.flags & 0x0200)
        return KEEL_EAGAIN;
    if (!has_q)
        return 0;
    snprintf(chain[0], sizeof(chain[0]), "%s", name);
    n_before = out->n_addrs;

    unsigned counts[3] = {h.an, h.ns, h.ar};
    for (unsigned s = 0; s < 3; s++) {
        for (unsigned i = 0; i < counts[s]; i++) {
            char what[32];
            struct rr rr;
            snprintf(what, sizeof(what), "%s %u", section_name(s), i + 1);
            if (off >= len) {
                rc = bad(&r, off, "%s: missing (%s count %u)", what, section_name(s), counts[s]);
                goto fail;
            }
            rc = read_rr(&r, &off, &rr, what);
            if (rc)
                goto fail;
            int in_chain = 0;
            for (size_t k = 0; k < n_chain && !rr.owner_odd; k++)
                if (name_eq(rr.owner, chain[k]))
                    in_chain = 1;
            if (rr.type == T_CNAME) {
                char cn[256];
                int odd;
                rc = read_rdata_name(&r, &rr, rr.rdoff, cn, &odd, what);
                if (rc)
                    goto fail;
                /* Servers list the chain in order; a CNAME out of order is just not followed. */
                if (s == 0 && in_chain && !odd && n_chain <= MAX_CNAMES && (h.flags & 0xF) == 0)
                    snprintf(chain[n_chain++], sizeof(chain[0]), "%s", cn);
            } else if ((rr.type == T_A || rr.type == T_AAAA) && s == 0 && in_chain &&
                       rr.cls == C_IN && (h.flags & 0xF) == 0) {
                rc = add_addr(out, name, rr.type == T_A ? AF_INET : AF_INET6, pkt + rr.rdoff,
                              rr.ttl, &added);
                if (rc)
                    goto fail;
            }
        }
    }
    return added;
fail:
    /* Merges only lowered TTLs of existing entries; dropping the new ones restores the set. */
    out->n_addrs = n_before;
    return rc;
}

/* A candidate endpoint with what tier selection needs. */
struct cand {
    struct keel_disc_ep ep;
    uint16_t priority, weight;
    int eligible;
};

static int cmp_id_prio(const void *x, const void *y)
{
    const struct cand *a = x, *b = y;
    int c = strcmp(a->ep.id, b->ep.id);
    if (c)
        return c;
    return (a->priority > b->priority) - (a->priority < b->priority);
}

static int cmp_prio_id(const void *x, const void *y)
{
    const struct cand *a = x, *b = y;
    if (a->priority != b->priority)
        return (a->priority > b->priority) - (a->priority < b->priority);
    return strcmp(a->ep.id, b->ep.id);
}

/* Fills id/name/sa of a candidate; returns 0 when the id does not fit. */
static int make_ep(struct keel_disc_ep *ep, const struct keel_srv_rr *s,
                   const struct keel_srv_addr *ad)
{
    char ip[INET6_ADDRSTRLEN], tgt[256];
    size_t i;

    memset(ep, 0, sizeof(*ep));
    memcpy(&ep->sa, &ad->sa, sizeof(ep->sa));
    ep->salen = ad->salen;
    if (ad->sa.ss_family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&ep->sa;
        sin->sin_port = htons(s->port);
        inet_ntop(AF_INET, &sin->sin_addr, ip, sizeof(ip));
        snprintf(ep->name, sizeof(ep->name), "%s:%u", ip, s->port);
    } else {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ep->sa;
        sin6->sin6_port = htons(s->port);
        inet_ntop(AF_INET6, &sin6->sin6_addr, ip, sizeof(ip));
        snprintf(ep->name, sizeof(ep->name), "[%s]:%u", ip, s->port);
    }
    /* DNS names are case-insensitive: one spelling for the identity. */
    for (i = 0; s->target[i] && i < sizeof(tgt) - 1; i++)
        tgt[i] = (char)lower((unsigned char)s->target[i]);
    tgt[i] = '\0';
    int n = snprintf(ep->id, sizeof(ep->id), "%s:%u/%s", tgt, s->port, ip);
    return n > 0 && (size_t)n < sizeof(ep->id);
}

int keel_dns_srv_build(const struct keel_srv_answer *a, int (*eligible)(const char *id, void *arg),
                       void *arg, struct keel_disc_set *out)
{
    struct cand *c = NULL;
    size_t n = 0, cap = 0;

    memset(out, 0, sizeof(*out));
    for (size_t i = 0; i < a->n_srv; i++) {
        const struct keel_srv_rr *s = &a->srv[i];
        if (strcmp(s->target, ".") == 0)
            continue;
        for (size_t j = 0; j < a->n_addrs; j++) {
            if (!name_eq(a->addrs[j].name, s->target))
                continue;
            if (grow((void **)&c, &cap, n, sizeof(*c))) {
                free(c);
                return KEEL_ENOMEM;
            }
            if (!make_ep(&c[n].ep, s, &a->addrs[j]))
                continue;
            c[n].priority = s->priority;
            c[n].weight = s->weight;
            n++;
        }
    }
    if (n == 0) {
        free(c);
        return 0;
    }

    /* The same target:port listed twice keeps its lowest priority. */
    qsort(c, n, sizeof(*c), cmp_id_prio);
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (m == 0 || strcmp(c[m - 1].ep.id, c[i].ep.id) != 0)
            c[m++] = c[i];
    n = m;
    qsort(c, n, sizeof(*c), cmp_prio_id);

    int have_active = 0;
    uint16_t active = c[0].priority;
    for (size_t i = 0; i < n; i++) {
        c[i].eligible = eligible ? eligible(c[i].ep.id, arg) != 0 : 1;
        if (c[i].eligible && !have_active) {
            active = c[i].priority;
            have_active = 1;
        }
    }
    int tier_has_weight = 0;
    for (size_t i = 0; i < n; i++)
        if (c[i].priority == active && c[i].eligible && c[i].weight > 0)
            tier_has_weight = 1;

    for (size_t i = 0; i < n; i++) {
        struct keel_disc_ep *ep = &c[i].ep;
        ep->weight = c[i].weight;
        if (c[i].priority != active) {
            ep->draining = 1;
            snprintf(ep->reason, sizeof(ep->reason), "standby: priority %u%s", c[i].priority,
                     c[i].priority < active ? " (no eligible endpoint)" : "");
        } else if (c[i].weight > 0) {
            snprintf(ep->reason, sizeof(ep->reason), "priority %u, weight %u", c[i].priority,
                     c[i].weight);
        } else if (tier_has_weight) {
            snprintf(ep->reason, sizeof(ep->reason),
                     "priority %u, weight 0: only when the rest of the tier is down",
                     c[i].priority);
        } else {
            ep->weight = 1;
            snprintf(ep->reason, sizeof(ep->reason),
                     "priority %u, weight 0: nothing else up in the tier, serving at weight 1",
                     c[i].priority);
        }
    }

    out->eps = calloc(n, sizeof(*out->eps));
    if (!out->eps) {
        free(c);
        return KEEL_ENOMEM;
    }
    for (size_t i = 0; i < n; i++)
        out->eps[i] = c[i].ep;
    out->n = n;
    free(c);
    return 0;
}

uint32_t keel_dns_refresh_ms(uint32_t ttl_s, uint32_t floor_ms, uint32_t ceil_ms)
{
    uint64_t ms = (uint64_t)ttl_s * 1000u;
    if (ceil_ms && ms > ceil_ms)
        ms = ceil_ms;
    if (ms > UINT32_MAX)
        ms = UINT32_MAX;
    if (ms < floor_ms)
        ms = floor_ms;
    return (uint32_t)ms;
}
