/* SPDX-License-Identifier: MIT */
/* Unit tests for DNS SRV/A/AAAA answer parsing and RFC 2782 tier and weight selection. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "keel/err.h"
#include "dns_srv_parse.h"
#include "testutil.h"

#define QN "_api._tcp.service.consul"
#define F_QR 0x8000
#define F_AA 0x0400
#define F_TC 0x0200
#define F_RD 0x0100
#define F_RA 0x0080
#define RESP (F_QR | F_AA | F_RD | F_RA)
#define T_A 1
#define T_CNAME 5
#define T_SOA 6
#define T_AAAA 28
#define T_SRV 33
#define T_OPT 41

/* ---- a tiny DNS packet builder ---- */

struct pb {
    uint8_t b[8192];
    size_t n;
};

static void u8(struct pb *p, unsigned v)
{
    p->b[p->n++] = (uint8_t)v;
}

static void u16(struct pb *p, unsigned v)
{
    u8(p, v >> 8);
    u8(p, v & 0xff);
}

static void u32(struct pb *p, uint32_t v)
{
    u16(p, v >> 16);
    u16(p, v & 0xffff);
}

static void set16(struct pb *p, size_t at, unsigned v)
{
    p->b[at] = (uint8_t)(v >> 8);
    p->b[at + 1] = (uint8_t)v;
}

/* Writes a name uncompressed ("." is the root); returns its offset. */
static size_t name(struct pb *p, const char *txt)
{
    size_t at = p->n;
    const char *s = txt;
    while (*s && strcmp(s, ".") != 0) {
        const char *dot = strchr(s, '.');
        size_t l = dot ? (size_t)(dot - s) : strlen(s);
        u8(p, (unsigned)l);
        memcpy(p->b + p->n, s, l);
        p->n += l;
        s += l;
        if (*s == '.')
            s++;
    }
    u8(p, 0);
    return at;
}

static void ptr(struct pb *p, size_t to)
{
    u16(p, 0xC000 | (unsigned)to);
}

static void hdr(struct pb *p, unsigned flags, unsigned qd, unsigned an, unsigned ns, unsigned ar)
{
    p->n = 0;
    u16(p, 0x1234);
    u16(p, flags);
    u16(p, qd);
    u16(p, an);
    u16(p, ns);
    u16(p, ar);
}

/* Question; returns the offset of its name (for compression pointers). */
static size_t question(struct pb *p, const char *qn, unsigned qtype)
{
    size_t at = name(p, qn);
    u16(p, qtype);
    u16(p, 1);
    return at;
}

/* Record header after an owner name already written; returns where RDLENGTH sits. */
static size_t rr_tail(struct pb *p, unsigned type, unsigned cls, uint32_t ttl)
{
    u16(p, type);
    u16(p, cls);
    u32(p, ttl);
    size_t at = p->n;
    u16(p, 0);
    return at;
}

static void rr_end(struct pb *p, size_t rdlen_at)
{
    set16(p, rdlen_at, (unsigned)(p->n - rdlen_at - 2));
}

static void srv(struct pb *p, const char *owner, uint32_t ttl, unsigned prio, unsigned w,
                unsigned port, const char *target)
{
    name(p, owner);
    size_t at = rr_tail(p, T_SRV, 1, ttl);
    u16(p, prio);
    u16(p, w);
    u16(p, port);
    name(p, target);
    rr_end(p, at);
}

static void a4(struct pb *p, const char *owner, uint32_t ttl, const char *ip)
{
    uint8_t b[4];
    name(p, owner);
    size_t at = rr_tail(p, T_A, 1, ttl);
    inet_pton(AF_INET, ip, b);
    memcpy(p->b + p->n, b, 4);
    p->n += 4;
    rr_end(p, at);
}

static void a6(struct pb *p, const char *owner, uint32_t ttl, const char *ip)
{
    uint8_t b[16];
    name(p, owner);
    size_t at = rr_tail(p, T_AAAA, 1, ttl);
    inet_pton(AF_INET6, ip, b);
    memcpy(p->b + p->n, b, 16);
    p->n += 16;
    rr_end(p, at);
}

static void soa(struct pb *p, const char *owner)
{
    name(p, owner);
    size_t at = rr_tail(p, T_SOA, 1, 0);
    name(p, "ns.consul");
    name(p, "hostmaster.consul");
    for (int i = 0; i < 5; i++)
        u32(p, 60);
    rr_end(p, at);
}

static void opt(struct pb *p)
{
    u8(p, 0);
    size_t at = rr_tail(p, T_OPT, 4096, 0);
    rr_end(p, at);
}

/* ---- packets used by several tests ---- */

static void pkt_single(struct pb *p)
{
    hdr(p, RESP, 1, 1, 0, 1);
    question(p, QN, T_SRV);
    srv(p, QN, 30, 1, 1, 8080, "node1.node.dc1.consul");
    a4(p, "node1.node.dc1.consul", 30, "10.0.0.1");
}

static void pkt_multi(struct pb *p)
{
    hdr(p, RESP, 1, 4, 0, 5);
    question(p, QN, T_SRV);
    srv(p, QN, 60, 10, 60, 8080, "a.example");
    srv(p, QN, 50, 10, 20, 8081, "b.example");
    srv(p, QN, 40, 20, 0, 8082, "c.example");
    srv(p, QN, 70, 30, 5, 8083, "d.example");
    a4(p, "a.example", 60, "10.0.0.1");
    a4(p, "b.example", 60, "10.0.0.2");
    a4(p, "c.example", 60, "10.0.0.3");
    a4(p, "d.example", 60, "10.0.0.4");
    opt(p);
}

/* Consul-style: owner and target compressed against earlier names. */
static void pkt_compressed(struct pb *p)
{
    hdr(p, RESP, 1, 2, 0, 2);
    size_t q = question(p, QN, T_SRV);
    ptr(p, q);
    size_t at = rr_tail(p, T_SRV, 1, 0);
    u16(p, 1);
    u16(p, 1);
    u16(p, 9000);
    size_t t1 = p->n;
    u8(p, 8);
    memcpy(p->b + p->n, "0a000001", 8);
    p->n += 8;
    u8(p, 4);
    memcpy(p->b + p->n, "addr", 4);
    p->n += 4;
    ptr(p, q + 1 + 4 + 1 + 4 + 1 + 7); /* "consul" of the question */
    rr_end(p, at);
    ptr(p, q);
    at = rr_tail(p, T_SRV, 1, 0);
    u16(p, 1);
    u16(p, 1);
    u16(p, 9001);
    u8(p, 8);
    memcpy(p->b + p->n, "0a000002", 8);
    p->n += 8;
    ptr(p, t1 + 9); /* "addr.consul" */
    rr_end(p, at);
    ptr(p, t1);
    at = rr_tail(p, T_A, 1, 0);
    u32(p, 0x0a000001);
    rr_end(p, at);
    name(p, "0a000002.addr.consul");
    at = rr_tail(p, T_A, 1, 0);
    u32(p, 0x0a000002);
    rr_end(p, at);
}

/* ---- helpers ---- */

static int parse(const struct pb *p, const char *qn, struct keel_srv_answer *ans, char *err,
                 size_t errlen)
{
    /* An exact-size copy so ASan sees any read past the end. */
    uint8_t *copy = malloc(p->n ? p->n : 1);
    memcpy(copy, p->b, p->n);
    int rc = keel_dns_srv_parse(copy, p->n, qn, ans, err, errlen);
    free(copy);
    return rc;
}

static const char *ip_of(const struct keel_srv_addr *a, char *buf, size_t len)
{
    if (a->sa.ss_family == AF_INET)
        return inet_ntop(AF_INET, &((const struct sockaddr_in *)&a->sa)->sin_addr, buf,
                         (socklen_t)len);
    return inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)&a->sa)->sin6_addr, buf,
                     (socklen_t)len);
}

static const struct keel_disc_ep *find_ep(const struct keel_disc_set *s, const char *id)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->eps[i].id, id) == 0)
            return &s->eps[i];
    return NULL;
}

/* ---- table of parse cases: build, expected rc and counts ---- */

static void c_single(struct pb *p)
{
    pkt_single(p);
}

static void c_multi(struct pb *p)
{
    pkt_multi(p);
}

static void c_aaaa(struct pb *p)
{
    hdr(p, RESP, 1, 2, 0, 2);
    question(p, QN, T_SRV);
    srv(p, QN, 30, 1, 1, 443, "v6a.example");
    srv(p, QN, 30, 1, 1, 443, "v6b.example");
    a6(p, "v6a.example", 30, "2001:db8::1");
    a6(p, "v6b.example", 30, "2001:db8::2");
}

static void c_missing_additional(struct pb *p)
{
    hdr(p, RESP, 1, 2, 0, 1);
    question(p, QN, T_SRV);
    srv(p, QN, 30, 1, 1, 80, "has.example");
    srv(p, QN, 30, 1, 1, 80, "missing.example");
    a4(p, "has.example", 30, "10.1.1.1");
}

static void c_compressed(struct pb *p)
{
    pkt_compressed(p);
}

static void c_forward_ptr(struct pb *p)
{
    hdr(p, RESP, 1, 1, 0, 0);
    question(p, QN, T_SRV);
    ptr(p, p->n + 2); /* points just after itself */
    size_t at = rr_tail(p, T_SRV, 1, 0);
    u16(p, 1);
    u16(p, 1);
    u16(p, 80);
    name(p, "x.example");
    rr_end(p, at);
}

static void c_loop_ptr(struct pb *p)
{
    hdr(p, RESP, 1, 1, 0, 0);
    question(p, QN, T_SRV);
    ptr(p, p->n); /* points at itself */
    size_t at = rr_tail(p, T_SRV, 1, 0);
    u16(p, 1);
    u16(p, 1);
    u16(p, 80);
    name(p, "x.example");
    rr_end(p, at);
}

static void c_two_ptr_loop(struct pb *p)
{
    /* Two names pointing at each other: the second points forward, so it is refused. */
    hdr(p, RESP, 1, 1, 0, 0);
    question(p, QN, T_SRV);
    size_t first = p->n;
    ptr(p, first + 2 + 10 + 6);
    size_t at = rr_tail(p, T_SRV, 1, 0);
    u16(p, 1);
    u16(p, 1);
    u16(p, 80);
    ptr(p, first);
    rr_end(p, at);
}

static void c_oob_ptr(struct pb *p)
{
    hdr(p, RESP, 1, 1, 0, 0);
    question(p, QN, T_SRV);
    ptr(p, 0x3fff);
    size_t at = rr_tail(p, T_SRV, 1, 0);
    u16(p, 1);
    u16(p, 1);
    u16(p, 80);
    name(p, "x.example");
    rr_end(p, at);
}

static void c_header_ptr(struct pb *p)
{
    hdr(p, RESP, 1, 1, 0, 0);
    question(p, QN, T_SRV);
    ptr(p, 4);
    size_t at = rr_tail(p, T_SRV, 1, 0);
    u16(p, 1);
    u16(p, 1);
    u16(p, 80);
    name(p, "x.example");
    rr_end(p, at);
}

static void c_tc(struct pb *p)
{
    pkt_multi(p);
    set16(p, 2, RESP | F_TC);
    p->n -= 20; /* cut inside the records, as a UDP answer would be */
}

static void c_nxdomain(struct pb *p)
{
    hdr(p, RESP | 3, 1, 0, 1, 0);
    question(p, QN, T_SRV);
    soa(p, "consul");
}

static void c_servfail_noq(struct pb *p)
{
    hdr(p, F_QR | F_RD | F_RA | 2, 0, 0, 0, 0);
}

static void c_servfail_q(struct pb *p)
{
    hdr(p, F_QR | F_RD | F_RA | 2, 1, 0, 0, 0);
    question(p, QN, T_SRV);
}

static void c_question_mismatch(struct pb *p)
{
    hdr(p, RESP, 1, 1, 0, 0);
    question(p, "_web._tcp.service.consul", T_SRV);
    srv(p, "_web._tcp.service.consul", 30, 1, 1, 80, "x.example");
}

static void c_question_type(struct pb *p)
{
    hdr(p, RESP, 1, 0, 0, 0);
    question(p, QN, T_A);
}

static void c_wrong_qr(struct pb *p)
{
    pkt_single(p);
    set16(p, 2, F_RD);
}

static void c_opcode(struct pb *p)
{
    pkt_single(p);
    set16(p, 2, RESP | (2u << 11));
}

static void c_ancount_big(struct pb *p)
{
    pkt_single(p);
    set16(p, 6, 3);
}

static void c_rdlen_overrun(struct pb *p)
{
    hdr(p, RESP, 1, 1, 0, 0);
    question(p, QN, T_SRV);
    srv(p, QN, 30, 1, 1, 80, "x.example");
    set16(p, p->n - 6 - 11 - 2, 200); /* RDLENGTH of the only record */
}

static void c_rdlen_short(struct pb *p)
{
    hdr(p, RESP, 1, 1, 0, 0);
    question(p, QN, T_SRV);
    srv(p, QN, 30, 1, 1, 80, "x.example");
    u8(p, 0); /* one more byte inside RDATA than the target needs */
    set16(p, p->n - 1 - 6 - 11 - 2, 6 + 11 + 1);
}

static void c_srv_rdata_tiny(struct pb *p)
{
    hdr(p, RESP, 1, 1, 0, 0);
    question(p, QN, T_SRV);
    name(p, QN);
    size_t at = rr_tail(p, T_SRV, 1, 0);
    u16(p, 1);
    u16(p, 1);
    rr_end(p, at);
}

static void c_a_bad_len(struct pb *p)
{
    pkt_single(p);
    u8(p, 0);
    set16(p, p->n - 1 - 4 - 2, 5);
}

static void c_target_dot(struct pb *p)
{
    hdr(p, RESP, 1, 1, 0, 0);
    question(p, QN, T_SRV);
    srv(p, QN, 30, 0, 0, 1, ".");
}

static void c_uppercase(struct pb *p)
{
    hdr(p, RESP, 1, 1, 0, 1);
    question(p, "_API._TCP.Service.CONSUL", T_SRV);
    srv(p, "_Api._Tcp.SERVICE.consul", 30, 1, 1, 8080, "NODE1.Node.DC1.consul");
    a4(p, "node1.node.dc1.CONSUL", 30, "10.0.0.9");
}

static void c_ttl0(struct pb *p)
{
    hdr(p, RESP, 1, 2, 0, 2);
    question(p, QN, T_SRV);
    srv(p, QN, 0, 1, 1, 8080, "n1.consul");
    srv(p, QN, 0, 1, 1, 8080, "n2.consul");
    a4(p, "n1.consul", 0, "10.0.0.1");
    a4(p, "n2.consul", 0, "10.0.0.2");
}

static void c_ttl_highbit(struct pb *p)
{
    hdr(p, RESP, 1, 2, 0, 0);
    question(p, QN, T_SRV);
    srv(p, QN, 0x80000005u, 1, 1, 8080, "n1.consul");
    srv(p, QN, 45, 1, 1, 8080, "n2.consul");
}

static void c_label_type(struct pb *p)
{
    hdr(p, RESP, 1, 1, 0, 0);
    question(p, QN, T_SRV);
    u8(p, 0x41); /* reserved/extended label type 01 */
    u8(p, 'x');
    u8(p, 0);
    size_t at = rr_tail(p, T_SRV, 1, 0);
    rr_end(p, at);
}

static void c_name_too_long(struct pb *p)
{
    hdr(p, RESP, 1, 0, 0, 0);
    /* 5 labels of 63 bytes: 320 wire bytes */
    for (int i = 0; i < 5; i++) {
        u8(p, 63);
        memset(p->b + p->n, 'a', 63);
        p->n += 63;
    }
    u8(p, 0);
    u16(p, T_SRV);
    u16(p, 1);
}

static void c_qdcount2(struct pb *p)
{
    hdr(p, RESP, 2, 0, 0, 0);
    question(p, QN, T_SRV);
    question(p, QN, T_SRV);
}

static void c_noerror_noq(struct pb *p)
{
    hdr(p, RESP, 0, 0, 0, 0);
}

static void c_ignored_records(struct pb *p)
{
    /* SRV of another name, SRV of class CH, SRV in additional, SRV port 0, A in authority:
     * well-formed but not used. */
    hdr(p, RESP, 1, 4, 1, 2);
    question(p, QN, T_SRV);
    srv(p, "_other._tcp.service.consul", 30, 1, 1, 80, "o.example");
    name(p, QN);
    size_t at = rr_tail(p, T_SRV, 3, 30);
    u16(p, 1);
    u16(p, 1);
    u16(p, 80);
    name(p, "ch.example");
    rr_end(p, at);
    srv(p, QN, 30, 1, 1, 0, "port0.example");
    srv(p, QN, 30, 1, 1, 80, "good.example");
    a4(p, "auth.example", 30, "10.9.9.9");
    srv(p, QN, 30, 1, 1, 80, "extra.example");
    a4(p, "good.example", 30, "10.0.0.1");
}

static void c_dup_addr(struct pb *p)
{
    hdr(p, RESP, 1, 2, 0, 2);
    question(p, QN, T_SRV);
    srv(p, QN, 30, 1, 1, 80, "n.example");
    a4(p, "n.example", 50, "10.0.0.1");
    a4(p, "N.example", 20, "10.0.0.1");
    a4(p, "n.example", 30, "10.0.0.2");
}

static void c_trailing(struct pb *p)
{
    pkt_single(p);
    u32(p, 0xdeadbeef);
}

static void c_odd_label(struct pb *p)
{
    /* A target whose label holds a dot cannot be matched in text form: skipped. */
    hdr(p, RESP, 1, 2, 0, 0);
    question(p, QN, T_SRV);
    name(p, QN);
    size_t at = rr_tail(p, T_SRV, 1, 30);
    u16(p, 1);
    u16(p, 1);
    u16(p, 80);
    u8(p, 3);
    memcpy(p->b + p->n, "a.b", 3);
    p->n += 3;
    u8(p, 0);
    rr_end(p, at);
    srv(p, QN, 30, 1, 1, 80, "ok.example");
}

/* 100 (accepted) or 129 (refused) chained backwards pointers inside an unknown record's RDATA;
 * the SRV target enters the chain at its far end. */
static void chain(struct pb *p, int jumps)
{
    hdr(p, RESP, 1, 2, 0, 0);
    question(p, QN, T_SRV);
    name(p, "chain.example");
    size_t at = rr_tail(p, 99, 1, 0);
    size_t base = p->n;
    name(p, "deep.example");
    size_t prev = base;
    for (int i = 1; i < jumps; i++) {
        size_t here = p->n;
        ptr(p, prev);
        prev = here;
    }
    rr_end(p, at);
    name(p, QN);
    at = rr_tail(p, T_SRV, 1, 0);
    u16(p, 1);
    u16(p, 1);
    u16(p, 80);
    ptr(p, prev);
    rr_end(p, at);
}

static void c_chain_ok(struct pb *p)
{
    chain(p, 100);
}

static void c_chain_too_long(struct pb *p)
{
    chain(p, 129);
}

static void c_empty(struct pb *p)
{
    hdr(p, RESP, 1, 0, 0, 0);
    question(p, QN, T_SRV);
}

static void c_short_header(struct pb *p)
{
    hdr(p, RESP, 1, 0, 0, 0);
    p->n = 11;
}

struct pcase {
    const char *name;
    void (*build)(struct pb *p);
    const char *qname;
    int rc;
    size_t n_srv, n_addrs;
    int rcode, truncated;
    uint32_t min_ttl;
    const char *err_has; /* substring of the error text for KEEL_EBADMSG */
};

static const struct pcase pcases[] = {
    {"single SRV + additional A", c_single, QN, 0, 1, 1, 0, 0, 30, NULL},
    {"priorities and weights + OPT", c_multi, QN, 0, 4, 4, 0, 0, 40, NULL},
    {"AAAA targets", c_aaaa, QN, 0, 2, 2, 0, 0, 30, NULL},
    {"target missing from additional", c_missing_additional, QN, 0, 2, 1, 0, 0, 30, NULL},
    {"compression pointers", c_compressed, QN, 0, 2, 2, 0, 0, 0, NULL},
    {"forward pointer", c_forward_ptr, QN, KEEL_EBADMSG, 0, 0, 0, 0, 0, "backwards"},
    {"self pointer", c_loop_ptr, QN, KEEL_EBADMSG, 0, 0, 0, 0, 0, "backwards"},
    {"two-name pointer loop", c_two_ptr_loop, QN, KEEL_EBADMSG, 0, 0, 0, 0, 0, "backwards"},
    {"pointer out of bounds", c_oob_ptr, QN, KEEL_EBADMSG, 0, 0, 0, 0, 0, "backwards"},
    {"pointer into header", c_header_ptr, QN, KEEL_EBADMSG, 0, 0, 0, 0, 0, "header"},
    {"TC bit, cut records", c_tc, QN, 0, 0, 0, 0, 1, 0, NULL},
    {"NXDOMAIN with SOA", c_nxdomain, QN, 0, 0, 0, 3, 0, 0, NULL},
    {"SERVFAIL without question", c_servfail_noq, QN, 0, 0, 0, 2, 0, 0, NULL},
    {"SERVFAIL with question", c_servfail_q, QN, 0, 0, 0, 2, 0, 0, NULL},
    {"question mismatch", c_question_mismatch, QN, KEEL_EBADMSG, 0, 0, 0, 0, 0, "question"},
    {"question type A", c_question_type, QN, KEEL_EBADMSG, 0, 0, 0, 0, 0, "type 1"},
    {"QR=0", c_wrong_qr, QN, KEEL_EBADMSG, 0, 0, 0, 0, 0, "QR"},
    {"opcode STATUS", c_opcode, QN, KEEL_EBADMSG, 0, 0, 0, 0, 0, "opcode"},
    {"ANCOUNT past the records", c_ancount_big, QN, KEEL_EBADMSG, 0, 0, 0, 0, 0, "answer 3"},
    {"RDLENGTH overrun", c_rdlen_overrun, QN, KEEL_EBADMSG, 0, 0, 0, 0, 0, "RDLENGTH"},
    {"RDATA longer than SRV", c_rdlen_short, QN, KEEL_EBADMSG, 0, 0, 0, 0, 0, "RDATA"},
    {"SRV RDATA 4 bytes", c_srv_rdata_tiny, QN, KEEL_EBADMSG, 0, 0, 0, 0, 0, "SRV RDATA"},
    {"A with RDLENGTH 5", c_a_bad_len, QN, KEEL_EBADMSG, 0, 0, 0, 0, 0, "A record"},
    {"SRV target \".\"", c_target_dot, QN, 0, 1, 0, 0, 0, 30, NULL},
    {"uppercase names", c_uppercase, QN, 0, 1, 1, 0, 0, 30, NULL},
    {"trailing dot in qname", c_single, QN ".", 0, 1, 1, 0, 0, 30, NULL},
    {"TTL 0", c_ttl0, QN, 0, 2, 2, 0, 0, 0, NULL},
    {"TTL high bit counts as 0", c_ttl_highbit, QN, 0, 2, 0, 0, 0, 0, NULL},
    {"reserved label type", c_label_type, QN, KEEL_EBADMSG, 0, 0, 0, 0, 0, "label type"},
    {"name over 255 bytes", c_name_too_long, QN, KEEL_EBADMSG, 0, 0, 0, 0, 0, "255"},
    {"QDCOUNT 2", c_qdcount2, QN, KEEL_EBADMSG, 0, 0, 0, 0, 0, "QDCOUNT"},
    {"NOERROR without question", c_noerror_noq, QN, KEEL_EBADMSG, 0, 0, 0, 0, 0, "question"},
    {"ignored records", c_ignored_records, QN, 0, 1, 1, 0, 0, 30, NULL},
    {"duplicate addresses merged", c_dup_addr, QN, 0, 1, 2, 0, 0, 30, NULL},
    {"trailing bytes ignored", c_trailing, QN, 0, 1, 1, 0, 0, 30, NULL},
    {"label with a dot skipped", c_odd_label, QN, 0, 1, 0, 0, 0, 30, NULL},
    {"100 pointer jumps", c_chain_ok, QN, 0, 1, 0, 0, 0, 0, NULL},
    {"129 pointer jumps", c_chain_too_long, QN, KEEL_EBADMSG, 0, 0, 0, 0, 0, "128"},
    {"empty answer", c_empty, QN, 0, 0, 0, 0, 0, 0, NULL},
    {"header cut short", c_short_header, QN, KEEL_EBADMSG, 0, 0, 0, 0, 0, "header"},
};

static void test_parse_table(void)
{
    for (size_t i = 0; i < sizeof(pcases) / sizeof(pcases[0]); i++) {
        const struct pcase *c = &pcases[i];
        struct pb p;
        struct keel_srv_answer ans;
        char err[200] = "";
        c->build(&p);
        int rc = parse(&p, c->qname, &ans, err, sizeof(err));
        CHECKF(rc == c->rc, "%s: rc %d, want %d (%s)", c->name, rc, c->rc, err);
        if (rc == 0) {
            CHECKF(ans.n_srv == c->n_srv, "%s: n_srv %zu", c->name, ans.n_srv);
            CHECKF(ans.n_addrs == c->n_addrs, "%s: n_addrs %zu", c->name, ans.n_addrs);
            CHECKF(ans.rcode == c->rcode, "%s: rcode %d", c->name, ans.rcode);
            CHECKF(ans.truncated == c->truncated, "%s: truncated %d", c->name, ans.truncated);
            CHECKF(ans.min_ttl == c->min_ttl, "%s: min_ttl %u", c->name, ans.min_ttl);
        } else {
            CHECKF(ans.srv == NULL && ans.addrs == NULL && ans.n_srv == 0, "%s: answer not zeroed",
                   c->name);
            CHECKF(c->err_has && strstr(err, c->err_has) && strstr(err, "offset "),
                   "%s: error text \"%s\" lacks \"%s\"", c->name, err,
                   c->err_has ? c->err_has : "");
        }
        keel_dns_srv_answer_free(&ans);
    }
}

/* Field values of the well-formed cases. */
static void test_parse_values(void)
{
    struct pb p;
    struct keel_srv_answer ans;
    char ip[64];

    pkt_single(&p);
    if (CHECK(parse(&p, QN, &ans, NULL, 0) == 0 && ans.n_srv == 1 && ans.n_addrs == 1)) {
        CHECK(ans.srv[0].priority == 1 && ans.srv[0].weight == 1 && ans.srv[0].port == 8080);
        CHECK(strcmp(ans.srv[0].target, "node1.node.dc1.consul") == 0);
        CHECK(ans.authoritative == 1);
        CHECK(strcmp(ans.addrs[0].name, "node1.node.dc1.consul") == 0);
        CHECK(strcmp(ip_of(&ans.addrs[0], ip, sizeof(ip)), "10.0.0.1") == 0);
        CHECK(ans.addrs[0].salen == sizeof(struct sockaddr_in));
    }
    keel_dns_srv_answer_free(&ans);

    pkt_compressed(&p);
    if (CHECK(parse(&p, QN, &ans, NULL, 0) == 0 && ans.n_srv == 2 && ans.n_addrs == 2)) {
        CHECKF(strcmp(ans.srv[0].target, "0a000001.addr.consul") == 0, "%s", ans.srv[0].target);
        CHECKF(strcmp(ans.srv[1].target, "0a000002.addr.consul") == 0, "%s", ans.srv[1].target);
        CHECK(ans.srv[1].port == 9001);
        CHECK(strcmp(ans.addrs[0].name, "0a000001.addr.consul") == 0);
        CHECK(strcmp(ip_of(&ans.addrs[1], ip, sizeof(ip)), "10.0.0.2") == 0);
    }
    keel_dns_srv_answer_free(&ans);

    c_aaaa(&p);
    if (CHECK(parse(&p, QN, &ans, NULL, 0) == 0 && ans.n_addrs == 2)) {
        CHECK(ans.addrs[1].sa.ss_family == AF_INET6);
        CHECK(strcmp(ip_of(&ans.addrs[1], ip, sizeof(ip)), "2001:db8::2") == 0);
    }
    keel_dns_srv_answer_free(&ans);

    c_ttl_highbit(&p);
    if (CHECK(parse(&p, QN, &ans, NULL, 0) == 0 && ans.n_srv == 2))
        CHECK(ans.srv[0].ttl == 0 && ans.srv[1].ttl == 45);
    keel_dns_srv_answer_free(&ans);

    c_dup_addr(&p);
    if (CHECK(parse(&p, QN, &ans, NULL, 0) == 0 && ans.n_addrs == 2))
        CHECKF(ans.addrs[0].ttl == 20, "merged ttl %u", ans.addrs[0].ttl);
    keel_dns_srv_answer_free(&ans);

    c_ignored_records(&p);
    if (CHECK(parse(&p, QN, &ans, NULL, 0) == 0 && ans.n_srv == 1))
        CHECK(strcmp(ans.srv[0].target, "good.example") == 0);
    keel_dns_srv_answer_free(&ans);

    c_chain_ok(&p);
    if (CHECK(parse(&p, QN, &ans, NULL, 0) == 0 && ans.n_srv == 1))
        CHECK(strcmp(ans.srv[0].target, "deep.example") == 0);
    keel_dns_srv_answer_free(&ans);

    /* NULL arguments */
    CHECK(keel_dns_srv_parse(NULL, 0, QN, &ans, NULL, 0) == KEEL_EINVAL);
    CHECK(keel_dns_srv_parse(p.b, p.n, NULL, &ans, NULL, 0) == KEEL_EINVAL);
}

/* Every prefix of a valid answer is refused cleanly; so is every single-byte corruption
 * (0 or KEEL_EBADMSG, never a crash or an out-of-bounds read under ASan). */
static void test_every_cut_and_flip(void)
{
    void (*pkts[])(struct pb *) = {pkt_single, pkt_multi, pkt_compressed, c_nxdomain, c_chain_ok};
    for (size_t k = 0; k < sizeof(pkts) / sizeof(pkts[0]); k++) {
        struct pb full;
        pkts[k](&full);
        int bad_prefix = 0, bad_flip = 0;
        for (size_t n = 0; n < full.n; n++) {
            struct pb cut = full;
            struct keel_srv_answer ans;
            char err[200];
            cut.n = n;
            int rc = parse(&cut, QN, &ans, err, sizeof(err));
            if (rc != KEEL_EBADMSG || err[0] == '\0')
                bad_prefix++;
            keel_dns_srv_answer_free(&ans);
        }
        for (size_t i = 0; i < full.n; i++) {
            for (unsigned x = 1; x < 256; x <<= 1) {
                struct pb flip = full;
                struct keel_srv_answer ans;
                flip.b[i] ^= (uint8_t)x;
                int rc = parse(&flip, QN, &ans, NULL, 0);
                if (rc != 0 && rc != KEEL_EBADMSG)
                    bad_flip++;
                if (rc == 0) {
                    struct keel_disc_set s;
                    if (keel_dns_srv_build(&ans, NULL, NULL, &s) != 0)
                        bad_flip++;
                    keel_disc_set_free(&s);
                }
                keel_dns_srv_answer_free(&ans);
            }
        }
        CHECKF(bad_prefix == 0, "packet %zu: %d prefixes not refused", k, bad_prefix);
        CHECKF(bad_flip == 0, "packet %zu: %d flips gave another code", k, bad_flip);
    }
}

/* ---- A/AAAA answers ---- */

static void test_addr_parse(void)
{
    struct pb p;
    struct keel_srv_answer ans;
    char err[200], ip[64];
    int rcode = -1;

    /* targets missing from the additional section get resolved one by one */
    c_missing_additional(&p);
    CHECK(parse(&p, QN, &ans, NULL, 0) == 0 && ans.n_addrs == 1);

    hdr(&p, RESP, 1, 2, 0, 0);
    question(&p, "missing.example", T_A);
    a4(&p, "missing.example", 10, "10.2.2.2");
    a4(&p, "missing.example", 10, "10.2.2.3");
    CHECK(keel_dns_addr_parse(p.b, p.n, "missing.example", &ans, &rcode, err, sizeof(err)) == 2);
    CHECK(rcode == 0 && ans.n_addrs == 3);
    /* the same answer again adds nothing */
    CHECK(keel_dns_addr_parse(p.b, p.n, "MISSING.example.", &ans, NULL, NULL, 0) == 0);
    CHECK(ans.n_addrs == 3);

    /* AAAA behind a CNAME chain, stored under the asked name */
    hdr(&p, RESP, 1, 3, 0, 0);
    question(&p, "missing.example", T_AAAA);
    name(&p, "missing.example");
    size_t at = rr_tail(&p, T_CNAME, 1, 10);
    name(&p, "alias1.example");
    rr_end(&p, at);
    name(&p, "alias1.example");
    at = rr_tail(&p, T_CNAME, 1, 10);
    name(&p, "real.example");
    rr_end(&p, at);
    a6(&p, "real.example", 10, "2001:db8::7");
    CHECK(keel_dns_addr_parse(p.b, p.n, "missing.example", &ans, &rcode, err, sizeof(err)) == 1);
    if (CHECK(ans.n_addrs == 4)) {
        CHECK(strcmp(ans.addrs[3].name, "missing.example") == 0);
        CHECK(strcmp(ip_of(&ans.addrs[3], ip, sizeof(ip)), "2001:db8::7") == 0);
    }

    struct keel_disc_set s;
    CHECK(keel_dns_srv_build(&ans, NULL, NULL, &s) == 0);
    CHECKF(s.n == 4, "endpoints %zu", s.n); /* has: 1, missing: 2 v4 + 1 v6 */
    CHECK(find_ep(&s, "missing.example:80/2001:db8::7") != NULL);
    const struct keel_disc_ep *e6 = find_ep(&s, "missing.example:80/2001:db8::7");
    if (e6) {
        CHECK(strcmp(e6->name, "[2001:db8::7]:80") == 0);
        CHECK(ntohs(((const struct sockaddr_in6 *)&e6->sa)->sin6_port) == 80);
    }
    keel_disc_set_free(&s);

    /* TC: retry over TCP, nothing added */
    set16(&p, 2, RESP | F_TC);
    CHECK(keel_dns_addr_parse(p.b, p.n, "missing.example", &ans, &rcode, NULL, 0) == KEEL_EAGAIN);
    CHECK(ans.n_addrs == 4);

    /* NXDOMAIN: nothing, rcode reported */
    hdr(&p, RESP | 3, 1, 0, 1, 0);
    question(&p, "gone.example", T_A);
    soa(&p, "example");
    CHECK(keel_dns_addr_parse(p.b, p.n, "gone.example", &ans, &rcode, NULL, 0) == 0);
    CHECK(rcode == 3 && ans.n_addrs == 4);

    /* wrong question and SRV type refused, answer unchanged */
    hdr(&p, RESP, 1, 1, 0, 0);
    question(&p, "other.example", T_A);
    a4(&p, "other.example", 10, "10.3.3.3");
    CHECK(keel_dns_addr_parse(p.b, p.n, "gone.example", &ans, NULL, err, sizeof(err)) ==
          KEEL_EBADMSG);
    hdr(&p, RESP, 1, 0, 0, 0);
    question(&p, "gone.example", T_SRV);
    CHECK(keel_dns_addr_parse(p.b, p.n, "gone.example", &ans, NULL, err, sizeof(err)) ==
          KEEL_EBADMSG);

    /* an A for another name (not in the chain) is not taken; a bad record rolls back */
    hdr(&p, RESP, 1, 3, 0, 0);
    question(&p, "x.example", T_A);
    a4(&p, "x.example", 10, "10.4.4.4");
    a4(&p, "y.example", 10, "10.4.4.5");
    a4(&p, "x.example", 10, "10.4.4.6");
    u8(&p, 0);
    set16(&p, p.n - 1 - 4 - 2, 5);
    CHECK(keel_dns_addr_parse(p.b, p.n, "x.example", &ans, NULL, err, sizeof(err)) == KEEL_EBADMSG);
    CHECK(ans.n_addrs == 4);
    p.n -= 1;
    set16(&p, p.n - 4 - 2, 4);
    CHECK(keel_dns_addr_parse(p.b, p.n, "x.example", &ans, NULL, err, sizeof(err)) == 2);
    CHECK(ans.n_addrs == 6);
    keel_dns_srv_answer_free(&ans);
    CHECK(ans.addrs == NULL && ans.n_addrs == 0);
}

/* ---- RFC 2782 selection ---- */

struct reject {
    const char *prefix[4];
};

static int eligible_unless(const char *id, void *arg)
{
    const struct reject *r = arg;
    for (int i = 0; i < 4 && r->prefix[i]; i++)
        if (strncmp(id, r->prefix[i], strlen(r->prefix[i])) == 0)
            return 0;
    return 1;
}

static int build_from(void (*b)(struct pb *), const struct reject *rej, struct keel_disc_set *s)
{
    struct pb p;
    struct keel_srv_answer ans;
    b(&p);
    int rc = parse(&p, QN, &ans, NULL, 0);
    if (rc == 0)
        rc = keel_dns_srv_build(&ans, rej ? eligible_unless : NULL, (void *)rej, s);
    keel_dns_srv_answer_free(&ans);
    return rc;
}

static void test_tiers(void)
{
    struct keel_disc_set s;
    const struct keel_disc_ep *e;

    /* lowest priority used: a (60) and b (20) serve, c and d stand by */
    CHECK(build_from(pkt_multi, NULL, &s) == 0 && s.n == 4);
    e = find_ep(&s, "a.example:8080/10.0.0.1");
    CHECK(e && !e->draining && e->weight == 60 && strcmp(e->name, "10.0.0.1:8080") == 0);
    CHECK(e && strcmp(e->reason, "priority 10, weight 60") == 0);
    e = find_ep(&s, "b.example:8081/10.0.0.2");
    CHECK(e && !e->draining && e->weight == 20);
    e = find_ep(&s, "c.example:8082/10.0.0.3");
    CHECK(e && e->draining && strcmp(e->reason, "standby: priority 20") == 0);
    e = find_ep(&s, "d.example:8083/10.0.0.4");
    CHECK(e && e->draining && e->weight == 5 && strcmp(e->reason, "standby: priority 30") == 0);
    if (s.n == 4) /* sorted by priority, then id */
        CHECK(strncmp(s.eps[0].id, "a.", 2) == 0 && strncmp(s.eps[3].id, "d.", 2) == 0);
    e = find_ep(&s, "a.example:8080/10.0.0.1");
    CHECK(e && ntohs(((const struct sockaddr_in *)&e->sa)->sin_port) == 8080 &&
          e->salen == sizeof(struct sockaddr_in));
    keel_disc_set_free(&s);

    /* one of tier 10 down: tier 10 stays active */
    struct reject r1 = {{"a.example", NULL}};
    CHECK(build_from(pkt_multi, &r1, &s) == 0 && s.n == 4);
    e = find_ep(&s, "a.example:8080/10.0.0.1");
    CHECK(e && !e->draining);
    e = find_ep(&s, "c.example:8082/10.0.0.3");
    CHECK(e && e->draining);
    keel_disc_set_free(&s);

    /* all of tier 10 down: fail over to 20; its only record has weight 0 -> weight 1 */
    struct reject r2 = {{"a.example", "b.example", NULL}};
    CHECK(build_from(pkt_multi, &r2, &s) == 0 && s.n == 4);
    e = find_ep(&s, "a.example:8080/10.0.0.1");
    CHECK(e && e->draining &&
          strcmp(e->reason, "standby: priority 10 (no eligible endpoint)") == 0);
    e = find_ep(&s, "c.example:8082/10.0.0.3");
    CHECK(e && !e->draining && e->weight == 1);
    e = find_ep(&s, "d.example:8083/10.0.0.4");
    CHECK(e && e->draining);
    keel_disc_set_free(&s);

    /* tiers 10 and 20 down: 30 */
    struct reject r3 = {{"a.example", "b.example", "c.example", NULL}};
    CHECK(build_from(pkt_multi, &r3, &s) == 0 && s.n == 4);
    e = find_ep(&s, "d.example:8083/10.0.0.4");
    CHECK(e && !e->draining && e->weight == 5);
    keel_disc_set_free(&s);

    /* nothing eligible anywhere: the lowest tier stays active (panic mode decides) */
    struct reject r4 = {{"a.", "b.", "c.", "d."}};
    CHECK(build_from(pkt_multi, &r4, &s) == 0 && s.n == 4);
    e = find_ep(&s, "a.example:8080/10.0.0.1");
    CHECK(e && !e->draining);
    e = find_ep(&s, "d.example:8083/10.0.0.4");
    CHECK(e && e->draining);
    keel_disc_set_free(&s);

    /* target missing from additional: only the resolved target is an endpoint */
    CHECK(build_from(c_missing_additional, NULL, &s) == 0 && s.n == 1);
    CHECK(s.n == 1 && strcmp(s.eps[0].id, "has.example:80/10.1.1.1") == 0);
    keel_disc_set_free(&s);

    /* target "." : service not available */
    CHECK(build_from(c_target_dot, NULL, &s) == 0 && s.n == 0 && s.eps == NULL);
    keel_disc_set_free(&s);

    /* empty answer */
    CHECK(build_from(c_empty, NULL, &s) == 0 && s.n == 0);
    keel_disc_set_free(&s);

    /* uppercase target matches its lowercase A; the id is lowercased */
    CHECK(build_from(c_uppercase, NULL, &s) == 0 && s.n == 1);
    CHECK(s.n == 1 && strcmp(s.eps[0].id, "node1.node.dc1.consul:8080/10.0.0.9") == 0);
    keel_disc_set_free(&s);

    /* compressed Consul-style answer */
    CHECK(build_from(c_compressed, NULL, &s) == 0 && s.n == 2);
    CHECK(find_ep(&s, "0a000002.addr.consul:9001/10.0.0.2") != NULL);
    keel_disc_set_free(&s);
}

static void w0_tier(struct pb *p)
{
    /* one tier: two weighted records and one weight-0 record */
    hdr(p, RESP, 1, 3, 0, 3);
    question(p, QN, T_SRV);
    srv(p, QN, 30, 5, 10, 80, "w10.example");
    srv(p, QN, 30, 5, 30, 80, "w30.example");
    srv(p, QN, 30, 5, 0, 80, "w0.example");
    a4(p, "w10.example", 30, "10.0.0.1");
    a4(p, "w30.example", 30, "10.0.0.2");
    a4(p, "w0.example", 30, "10.0.0.3");
}

static void all_w0(struct pb *p)
{
    hdr(p, RESP, 1, 3, 0, 3);
    question(p, QN, T_SRV);
    srv(p, QN, 30, 5, 0, 80, "z1.example");
    srv(p, QN, 30, 5, 0, 80, "z2.example");
    srv(p, QN, 30, 9, 0, 80, "z3.example");
    a4(p, "z1.example", 30, "10.0.0.1");
    a4(p, "z2.example", 30, "10.0.0.2");
    a4(p, "z3.example", 30, "10.0.0.3");
}

static void multi_addr(struct pb *p)
{
    /* one target with an A and an AAAA; the same target:port listed again at priority 7 */
    hdr(p, RESP, 1, 2, 0, 2);
    question(p, QN, T_SRV);
    srv(p, QN, 30, 7, 1, 80, "dual.example");
    srv(p, QN, 30, 3, 2, 80, "dual.example");
    a4(p, "dual.example", 30, "10.0.0.1");
    a6(p, "dual.example", 30, "fd00::1");
}

static void test_weights(void)
{
    struct keel_disc_set s;
    const struct keel_disc_ep *e;

    CHECK(build_from(w0_tier, NULL, &s) == 0 && s.n == 3);
    e = find_ep(&s, "w0.example:80/10.0.0.3");
    CHECK(e && !e->draining && e->weight == 0);
    e = find_ep(&s, "w30.example:80/10.0.0.2");
    CHECK(e && e->weight == 30);
    keel_disc_set_free(&s);

    /* the weighted ones down: the weight-0 record carries the tier */
    struct reject r = {{"w10.", "w30.", NULL}};
    CHECK(build_from(w0_tier, &r, &s) == 0 && s.n == 3);
    e = find_ep(&s, "w0.example:80/10.0.0.3");
    CHECK(e && !e->draining && e->weight == 1);
    e = find_ep(&s, "w10.example:80/10.0.0.1");
    CHECK(e && !e->draining && e->weight == 10);
    keel_disc_set_free(&s);

    /* all weight 0: weight 1 in the active tier, 0 in the standby tier */
    CHECK(build_from(all_w0, NULL, &s) == 0 && s.n == 3);
    e = find_ep(&s, "z1.example:80/10.0.0.1");
    CHECK(e && e->weight == 1 && !e->draining);
    e = find_ep(&s, "z2.example:80/10.0.0.2");
    CHECK(e && e->weight == 1);
    e = find_ep(&s, "z3.example:80/10.0.0.3");
    CHECK(e && e->weight == 0 && e->draining);
    keel_disc_set_free(&s);

    /* a target with two addresses: two endpoints with distinct ids; duplicate keeps prio 3 */
    CHECK(build_from(multi_addr, NULL, &s) == 0 && s.n == 2);
    e = find_ep(&s, "dual.example:80/10.0.0.1");
    CHECK(e && !e->draining && e->weight == 2);
    e = find_ep(&s, "dual.example:80/fd00::1");
    CHECK(e && !e->draining && e->weight == 2 && strcmp(e->name, "[fd00::1]:80") == 0);
    keel_disc_set_free(&s);
}

static void test_refresh(void)
{
    CHECK(keel_dns_refresh_ms(0, 1000, 60000) == 1000);
    CHECK(keel_dns_refresh_ms(30, 1000, 60000) == 30000);
    CHECK(keel_dns_refresh_ms(3600, 1000, 60000) == 60000);
    CHECK(keel_dns_refresh_ms(1, 5000, 60000) == 5000);
    CHECK(keel_dns_refresh_ms(UINT32_MAX, 0, 0) == UINT32_MAX);
    CHECK(keel_dns_refresh_ms(10, 20000, 5000) == 20000);
}

int main(void)
{
    test_parse_table();
    test_parse_values();
    test_every_cut_and_flip();
    test_addr_parse();
    test_tiers();
    test_weights();
    test_refresh();
    return TEST_SUMMARY("test_dns_srv_parse");
}
