#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# Writes the seed corpus for fuzz_dns_srv: real-shaped DNS answers (Consul, dnsmasq, BIND style).
# Files named found_* in the corpus were added from libFuzzer runs (-merge=1) and are kept.
import ipaddress
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "corpus", "dns_srv")
QN = "_api._tcp.service.consul"

QR, AA, TC, RD, RA = 0x8000, 0x0400, 0x0200, 0x0100, 0x0080
A, NS, CNAME, SOA, TXT, AAAA, SRV, OPT = 1, 2, 5, 6, 16, 28, 33, 41


class Msg:
    """A DNS message writer with optional RFC 1035 4.1.4 name compression."""

    def __init__(self, compress=True):
        self.b = bytearray(12)
        self.names = {}
        self.compress = compress

    def name(self, n):
        labels = [l for l in n.rstrip(".").split(".") if l] if n != "." else []
        for i in range(len(labels)):
            suffix = ".".join(labels[i:]).lower()
            if self.compress and suffix in self.names:
                self.b += struct.pack(">H", 0xC000 | self.names[suffix])
                return
            if len(self.b) < 0x3FFF:
                self.names[suffix] = len(self.b)
            lab = labels[i].encode()
            self.b += bytes([len(lab)]) + lab
        self.b += b"\0"

    def question(self, n, qtype):
        self.name(n)
        self.b += struct.pack(">HH", qtype, 1)

    def rr(self, owner, rtype, ttl, rdata_fn, cls=1):
        self.name(owner)
        self.b += struct.pack(">HHI", rtype, cls, ttl)
        at = len(self.b)
        self.b += b"\0\0"
        rdata_fn()
        struct.pack_into(">H", self.b, at, len(self.b) - at - 2)

    def srv(self, owner, ttl, prio, weight, port, target, compress_target=None):
        def rd():
            self.b += struct.pack(">HHH", prio, weight, port)
            keep = self.compress
            if compress_target is not None:
                self.compress = compress_target
            self.name(target)
            self.compress = keep

        self.rr(owner, SRV, ttl, rd)

    def a(self, owner, ttl, ip):
        self.rr(owner, A, ttl, lambda: self.__iadd_bytes(ipaddress.IPv4Address(ip).packed))

    def aaaa(self, owner, ttl, ip):
        self.rr(owner, AAAA, ttl, lambda: self.__iadd_bytes(ipaddress.IPv6Address(ip).packed))

    def txt(self, owner, ttl, *strings):
        def rd():
            for s in strings:
                self.b += bytes([len(s)]) + s.encode()

        self.rr(owner, TXT, ttl, rd)

    def cname(self, owner, ttl, target):
        self.rr(owner, CNAME, ttl, lambda: self.name(target))

    def soa(self, owner, ttl=0):
        def rd():
            self.name("ns.consul")
            self.name("hostmaster.consul")
            self.b += struct.pack(">IIIII", 1, 3600, 600, 86400, 0)

        self.rr(owner, SOA, ttl, rd)

    def opt(self, udp=4096):
        self.b += b"\0" + struct.pack(">HHIH", OPT, udp, 0, 0)

    def __iadd_bytes(self, data):
        self.b += data

    def done(self, flags, qd, an, ns, ar, msg_id=0xBEEF):
        struct.pack_into(">HHHHHH", self.b, 0, msg_id, flags, qd, an, ns, ar)
        return bytes(self.b)


def consul(n, ttl=0, meta=True, v6=False):
    """Consul DNS: targets <hex>.addr.dc1.consul or node names, TXT node meta in additional."""
    m = Msg()
    m.question(QN, SRV)
    for i in range(n):
        m.srv(QN, ttl, 1, 1, 21000 + i, "node%d.node.dc1.consul" % (i + 1))
    ar = 0
    for i in range(n):
        tgt = "node%d.node.dc1.consul" % (i + 1)
        if v6:
            m.aaaa(tgt, ttl, "2001:db8::%x" % (i + 1))
        else:
            m.a(tgt, ttl, "10.0.0.%d" % (i + 1))
        ar += 1
        if meta:
            m.txt(tgt, ttl, "consul-network-segment=", "rack=r%d" % i)
            ar += 1
    m.opt()
    return m.done(QR | AA | RD, 1, n, 0, ar + 1)


def tiers():
    m = Msg()
    m.question(QN, SRV)
    recs = [(10, 60, 8080, "a.example.net"), (10, 20, 8081, "b.example.net"),
            (10, 0, 8082, "c.example.net"), (20, 0, 8083, "d.example.net"),
            (30, 5, 8084, "e.example.net")]
    for p, w, port, t in recs:
        m.srv(QN, 300, p, w, port, t)
    for i, (_, _, _, t) in enumerate(recs):
        m.a(t, 300, "192.0.2.%d" % (i + 10))
    return m.done(QR | RD | RA, 1, len(recs), 0, len(recs))


def dnsmasq(compress_target):
    """dnsmasq answers for srv-host= lines; targets resolved from host-record lines."""
    m = Msg()
    m.question(QN, SRV)
    m.srv(QN, 0, 1, 10, 9001, "be1.test", compress_target)
    m.srv(QN, 0, 2, 10, 9002, "be2.test", compress_target)
    m.a("be1.test", 0, "127.0.0.1")
    m.a("be2.test", 0, "127.0.0.2")
    return m.done(QR | AA | RD | RA, 1, 2, 0, 2)


def seeds():
    s = {}
    s["consul_1"] = consul(1)
    s["consul_3"] = consul(3)
    s["consul_3_nometa"] = consul(3, meta=False)
    s["consul_v6"] = consul(2, v6=True)
    s["consul_ttl30"] = consul(2, ttl=30)
    s["tiers_weights"] = tiers()
    s["dnsmasq"] = dnsmasq(None)
    s["dnsmasq_uncompressed_target"] = dnsmasq(False)
    m = Msg(compress=False)
    m.question(QN, SRV)
    m.srv(QN, 60, 0, 0, 80, "plain.example")
    m.a("plain.example", 60, "198.51.100.7")
    s["uncompressed"] = m.done(QR | RD | RA, 1, 1, 0, 1)

    m = Msg()
    m.question(QN, SRV)
    m.srv(QN, 60, 1, 1, 443, "missing.example")
    m.srv(QN, 60, 1, 1, 443, "present.example")
    m.aaaa("present.example", 60, "2001:db8::10")
    s["missing_additional"] = m.done(QR | RD | RA, 1, 2, 0, 1)

    m = Msg()
    m.question(QN, SRV)
    m.srv(QN, 60, 0, 0, 1, ".")
    s["target_root"] = m.done(QR | AA, 1, 1, 0, 0)

    m = Msg()
    m.question(QN, SRV)
    m.soa("consul")
    s["nxdomain"] = m.done(QR | AA | RD | 3, 1, 0, 1, 0)
    m = Msg()
    m.question(QN, SRV)
    s["servfail"] = m.done(QR | RD | RA | 2, 1, 0, 0, 0)
    s["servfail_noq"] = Msg().done(QR | RD | RA | 2, 0, 0, 0, 0)
    m = Msg()
    m.question(QN, SRV)
    m.soa("consul")
    s["nodata"] = m.done(QR | AA | RD, 1, 0, 1, 0)

    full = consul(3)
    t = bytearray(full[:60])
    struct.pack_into(">H", t, 2, QR | AA | TC | RD)
    s["truncated_tc"] = bytes(t)
    s["truncated_notc"] = full[:-9]
    ac = bytearray(consul(1))
    struct.pack_into(">H", ac, 6, 5)
    s["ancount_big"] = bytes(ac)

    m = Msg()
    m.question(QN.upper(), SRV)
    m.srv("_Api._Tcp.Service.Consul", 10, 1, 1, 8080, "NODE1.Node.DC1.consul")
    m.a("node1.node.dc1.CONSUL", 10, "10.0.0.9")
    s["uppercase"] = m.done(QR | AA, 1, 1, 0, 1)

    m = Msg()
    m.question(QN, SRV)
    m.srv(QN, 10, 1, 1, 80, "x.example")
    s["query_not_response"] = m.done(RD, 1, 1, 0, 0)
    m = Msg()
    m.question("_web._tcp.service.consul", SRV)
    s["other_question"] = m.done(QR, 1, 0, 0, 0)

    # Pointer edge cases: forward, self, into the header.
    base = Msg()
    base.question(QN, SRV)
    for label, to in (("ptr_forward", None), ("ptr_self", "self"), ("ptr_header", 2)):
        b = bytearray(base.b)
        at = len(b)
        target = at + 2 if to is None else (at if to == "self" else to)
        b += struct.pack(">H", 0xC000 | target)
        b += struct.pack(">HHIH", SRV, 1, 10, 6 + 3) + struct.pack(">HHH", 1, 1, 80) + b"\1x\0"
        struct.pack_into(">HHHHHH", b, 0, 7, QR, 1, 1, 0, 0)
        s[label] = bytes(b)

    # CNAME + A answer (the address lookup for a target) and an A answer.
    m = Msg()
    m.question("node1.node.dc1.consul", A)
    m.cname("node1.node.dc1.consul", 0, "real.node.dc1.consul")
    m.a("real.node.dc1.consul", 0, "10.1.2.3")
    s["a_cname"] = m.done(QR | AA | RD, 1, 2, 0, 0)
    m = Msg()
    m.question("node1.node.dc1.consul", AAAA)
    m.aaaa("node1.node.dc1.consul", 0, "fd00::1")
    m.aaaa("node1.node.dc1.consul", 0, "fd00::2")
    s["aaaa_two"] = m.done(QR | AA | RD, 1, 2, 0, 0)

    # A big answer (20 targets, mixed families, dual-stack targets).
    m = Msg()
    m.question(QN, SRV)
    for i in range(20):
        m.srv(QN, 5, i % 3, (i * 7) % 11, 30000 + i, "n%02d.big.consul" % i)
    for i in range(20):
        m.a("n%02d.big.consul" % i, 5, "10.2.0.%d" % i)
        if i % 4 == 0:
            m.aaaa("n%02d.big.consul" % i, 5, "2001:db8:2::%x" % i)
    s["big_dual_stack"] = m.done(QR | AA, 1, 20, 0, 25)
    return s


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, data in sorted(seeds().items()):
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)
    print("wrote %d seeds to %s" % (len(seeds()), OUT))


if __name__ == "__main__":
    main()
