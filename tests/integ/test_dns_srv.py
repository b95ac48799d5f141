# SPDX-License-Identifier: MIT
"""DNS SRV discovery against a real dnsmasq: weights, priority failover, TTL refresh,
fail static on SERVFAIL/timeouts/refused, NXDOMAIN emptying a cluster only after empty_hold."""

import collections
import os
import signal
import socket
import struct
import subprocess
import threading
import time
import unittest

from keeltest import KeelTestCase, http_listener, keel_yaml, one_request, wait_for

DNSMASQ = "/usr/sbin/dnsmasq"
SRV_NAME = "_api._tcp.service.test"
T_SRV = 33


def free_udp_tcp_port():
    """A port free for both TCP and UDP on 127.0.0.1 a moment ago."""
    for _ in range(50):
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            t.bind(("127.0.0.1", 0))
            port = t.getsockname()[1]
            u.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            t.close()
            u.close()
    raise AssertionError("no port free for both TCP and UDP")


def dns_query(port, name, qtype, timeout=0.5):
    """One UDP query; returns (rcode, ancount) or None when nothing answered."""
    qid = int.from_bytes(os.urandom(2), "big")
    qname = b"".join(bytes([len(lb)]) + lb.encode() for lb in name.split(".")) + b"\0"
    pkt = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + qname + struct.pack(">HH", qtype, 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.settimeout(timeout)
        s.sendto(pkt, ("127.0.0.1", port))
        data = s.recv(4096)
    except OSError:
        return None
    finally:
        s.close()
    if len(data) < 12 or struct.unpack(">H", data[:2])[0] != qid:
        return None
    return data[3] & 0x0F, struct.unpack(">H", data[6:8])[0]


class Dnsmasq:
    """dnsmasq in the foreground on 127.0.0.1:port with a generated config."""

    def __init__(self, tmp, port):
        self.tmp = tmp
        self.port = port
        self.proc = None
        self.qlog = os.path.join(tmp, "dnsmasq-queries.log")
        self.starts = 0

    def start(self, srv=(), hosts=(), ttl=1, extra=()):
        """srv: (target, port, priority, weight); hosts: (name, ip). Waits until it answers."""
        self.stop()
        self.starts += 1
        lines = ["port=%d" % self.port, "listen-address=127.0.0.1", "bind-interfaces",
                 "no-resolv", "no-hosts", "keep-in-foreground", "pid-file=", "user=",
                 "log-queries", "log-facility=%s" % self.qlog, "local=/test/",
                 "local-ttl=%d" % ttl]
        lines += ["srv-host=%s,%s,%d,%d,%d" % ((SRV_NAME,) + tuple(r)) for r in srv]
        lines += ["host-record=%s,%s" % h for h in hosts]
        lines += list(extra)
        cfg = os.path.join(self.tmp, "dnsmasq-%d.conf" % self.starts)
        with open(cfg, "w") as f:
            f.write("\n".join(lines) + "\n")
        errf = open(os.path.join(self.tmp, "dnsmasq.err"), "ab")
        self.proc = subprocess.Popen([DNSMASQ, "-C", cfg], stdout=errf, stderr=errf,
                                     stdin=subprocess.DEVNULL)
        errf.close()
        deadline = time.monotonic() + 10
        while dns_query(self.port, "probe.test", 1, 0.2) is None:
            if self.proc.poll() is not None:
                raise AssertionError("dnsmasq exited %d; see %s" % (self.proc.returncode, cfg))
            if time.monotonic() > deadline:
                raise AssertionError("dnsmasq did not answer within 10 s")
            time.sleep(0.05)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def srv_queries(self):
        """How many SRV queries for SRV_NAME dnsmasq has logged so far."""
        try:
            with open(self.qlog, "rb") as f:
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return 0
        return text.count("query[SRV] %s " % SRV_NAME)


class FakeDns:
    """A UDP+TCP DNS 'server' on the dnsmasq port that answers SERVFAIL (mode 'servfail')
    or reads and never answers (mode 'blackhole')."""

    def __init__(self, port, mode):
        self.mode = mode
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.udp.bind(("127.0.0.1", port))
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.tcp.bind(("127.0.0.1", port))
        self.tcp.listen(8)
        self.queries = 0
        self.stopping = False
        self.held = []
        self.threads = [threading.Thread(target=self._udp, daemon=True),
                        threading.Thread(target=self._tcp, daemon=True)]
        for t in self.threads:
            t.start()

    def _udp(self):
        self.udp.settimeout(0.1)
        while not self.stopping:
            try:
                data, peer = self.udp.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            self.queries += 1
            if self.mode == "servfail" and len(data) >= 12:
                # Same id and question, QR + RD + RA, RCODE 2, no records.
                flags = 0x8000 | (struct.unpack(">H", data[2:4])[0] & 0x0100) | 0x0080 | 2
                resp = data[:2] + struct.pack(">HHHHH", flags, 1, 0, 0, 0) + data[12:]
                try:
                    self.udp.sendto(resp, peer)
                except OSError:
                    pass

    def _tcp(self):
        self.tcp.settimeout(0.1)
        while not self.stopping:
            try:
                c, _ = self.tcp.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.held.append(c)  # never answered

    def close(self):
        self.stopping = True
        for t in self.threads:
            t.join(2)
        for s in [self.udp, self.tcp] + self.held:
            s.close()


class DnsSrvTest(KeelTestCase):
    def setUp(self):
        super().setUp()
        self.dns_port = free_udp_tcp_port()
        self.dns = Dnsmasq(self.tmp, self.dns_port)
        self.addCleanup(self.dns.stop)

    def start_keel_dns(self, clusters=None, empty_hold="2s", min_ttl="1s", max_ttl="300s"):
        self.port = self.free_port()
        admin = self.free_port()
        if clusters is None:
            clusters = [{"name": "api", "discovery": "dns", "dns_name": SRV_NAME}]
        routes = [{"match": {"path_prefix": "/%s/" % c["name"]}, "cluster": c["name"]}
                  for c in clusters]
        routes[-1] = {"cluster": clusters[-1]["name"]}
        extra = {"dns": {"servers": ["127.0.0.1:%d" % self.dns_port], "min_ttl": min_ttl,
                         "max_ttl": max_ttl, "empty_hold": empty_hold, "timeout": "1s"},
                 "discovery_debounce": "50ms"}
        return self.start_keel(keel_yaml([http_listener(self.port, routes)], clusters, admin,
                                         extra=extra))

    def cluster_info(self, name="api"):
        r = self.keel.admin("/v1/clusters")
        self.assertEqual(r.status, 200)
        for c in r.json()["clusters"]:
            if c["name"] == name:
                return c
        raise AssertionError("cluster %s not in /v1/clusters" % name)

    def endpoints(self, name="api"):
        return {e["id"]: e for e in self.cluster_info(name)["endpoints"]}

    def wait_endpoints(self, ids, name="api", timeout=10.0):
        """Waits until the cluster's endpoint ids are exactly ids; returns {id: endpoint}."""
        want = set(ids)
        last = []

        def ok():
            eps = self.endpoints(name)
            last[:] = [sorted(eps)]
            return eps if set(eps) == want else None
        try:
            return wait_for(ok, timeout, 0.05, "endpoints %s" % sorted(want))
        except AssertionError as e:
            raise AssertionError("%s; last seen %s" % (e, last))

    def hits(self, n, path="/", conn=None):
        """n sequential keep-alive requests; all must be 200. Counter of X-Backend-Id."""
        c = conn or self.client(self.port)
        out = collections.Counter()
        for _ in range(n):
            r = c.get(path)
            self.assertEqual(r.status, 200, r)
            out[r.header("X-Backend-Id")] += 1
        return out

    # ------------------------------------------------------------------------------------
    def test_records_resolve_and_srv_weights_split_traffic(self):
        b = self.start_backends(["a1", "a2", "a3"])
        self.dns.start(srv=[("a1.test", b["a1"].port, 1, 10), ("a2.test", b["a2"].port, 1, 30),
                            ("a3.test", b["a3"].port, 1, 0)],
                       hosts=[("a1.test", "127.0.0.1"), ("a2.test", "127.0.0.1"),
                              ("a3.test", "127.0.0.1")], ttl=30)
        clusters = [{"name": "wrr", "discovery": "dns", "dns_name": SRV_NAME,
                     "lb": "weighted_round_robin"},
                    {"name": "api", "discovery": "dns", "dns_name": SRV_NAME}]
        self.start_keel_dns(clusters)
        ids = {k: "%s.test:%d/127.0.0.1" % (k, b[k].port) for k in b}
        for name in ("wrr", "api"):
            eps = self.wait_endpoints(ids.values(), name)
            self.assertEqual(eps[ids["a1"]]["weight"], 10, eps)
            self.assertEqual(eps[ids["a2"]]["weight"], 30, eps)
            self.assertEqual(eps[ids["a1"]]["address"], "127.0.0.1:%d" % b["a1"].port)
            self.assertEqual(eps[ids["a1"]]["state"], "healthy", eps)
            self.assertEqual(eps[ids["a2"]]["state"], "healthy", eps)
            # SRV weight 0 beside weighted records: kept, but gets nothing.
            self.assertEqual(eps[ids["a3"]]["weight"], 0, eps)
            self.assertEqual(eps[ids["a3"]]["state"], "draining", eps)
            d = self.cluster_info(name)["discovery"]
            self.assertEqual((d["source"], d["name"]), ("dns", SRV_NAME))
            self.assertGreaterEqual(d["answers"], 1)
            self.assertEqual(d["last_error"], "")

        # Smooth weighted round robin on one connection: exactly 1:3.
        c = self.hits(200, "/wrr/x")
        self.assertEqual(c["a3"], 0, c)
        self.assertTrue(45 <= c["a1"] <= 55 and 145 <= c["a2"] <= 155, c)

        # Default policy (weighted least connections) under concurrent slow requests.
        def run(i):
            cl = self.client(self.port)
            ids_seen = []
            for _ in range(6):
                r = cl.get("/sleep?ms=200")
                self.assertEqual(r.status, 200, r)
                ids_seen.append(r.header("X-Backend-Id"))
            cl.close()
            return ids_seen
        cnt = collections.Counter()
        for got in self.run_threads(run, [(i,) for i in range(16)], timeout=60):
            cnt.update(got)
        self.assertEqual(sum(cnt.values()), 96)
        self.assertEqual(cnt["a3"], 0, cnt)
        ratio = cnt["a2"] / max(1, cnt["a1"])
        self.assertTrue(2.0 <= ratio <= 4.5, "a2/a1 = %.2f (%s)" % (ratio, dict(cnt)))

    def test_priority_failover_and_failback(self):
        b = self.start_backends(["p1a", "p1b", "p2"])
        hosts = [("p1a.test", "127.0.0.1"), ("p1b.test", "127.0.0.1"), ("p2.test", "127.0.0.1")]
        tier1 = [("p1a.test", b["p1a"].port, 1, 10), ("p1b.test", b["p1b"].port, 1, 10)]
        tier2 = [("p2.test", b["p2"].port, 2, 10)]
        self.dns.start(srv=tier1 + tier2, hosts=hosts, ttl=1)
        self.start_keel_dns()
        ids = {k: "%s.test:%d/127.0.0.1" % (k, b[k].port) for k in b}
        eps = self.wait_endpoints(ids.values())
        self.assertEqual(eps[ids["p2"]]["state"], "draining", eps)
        self.assertEqual(eps[ids["p2"]]["reason"], "standby: priority 2", eps)
        self.assertEqual(eps[ids["p1a"]]["state"], "healthy", eps)
        c = self.hits(60)
        self.assertEqual(c["p2"], 0, c)
        self.assertTrue(c["p1a"] >= 20 and c["p1b"] >= 20, c)

        # Failover: the priority-1 records disappear; priority 2 takes the traffic.
        self.dns.start(srv=tier2, hosts=hosts, ttl=1)
        t0 = time.monotonic()
        conn = self.client(self.port)

        def on_p2():
            return self.hits(1, conn=conn)["p2"] == 1
        wait_for(on_p2, 10.0, 0.05, "traffic to the priority-2 endpoint")
        took = time.monotonic() - t0
        eps = self.wait_endpoints([ids["p2"]])
        self.assertEqual(eps[ids["p2"]]["state"], "healthy", eps)
        self.assertEqual(self.hits(20, conn=conn), collections.Counter({"p2": 20}))

        # Failback: priority 1 returns; priority 2 is standby again.
        self.dns.start(srv=tier1 + tier2, hosts=hosts, ttl=1)
        wait_for(lambda: self.hits(1, conn=conn)["p2"] == 0, 10.0, 0.05,
                 "traffic back on priority 1")
        eps = self.wait_endpoints(ids.values())
        self.assertEqual(eps[ids["p2"]]["reason"], "standby: priority 2", eps)
        c = self.hits(40, conn=conn)
        self.assertEqual(c["p2"], 0, c)
        print("\nDNS failover to priority 2 took %.2fs (TTL 1s)" % took)

    def test_ttl_refresh_follows_record_changes(self):
        b = self.start_backends(["old", "new"])
        hosts = [("svc.test", "127.0.0.1")]
        self.dns.start(srv=[("svc.test", b["old"].port, 1, 1)], hosts=hosts, ttl=2)
        self.start_keel_dns(min_ttl="1s", max_ttl="300s")
        self.wait_endpoints(["svc.test:%d/127.0.0.1" % b["old"].port])
        self.assertEqual(self.hits(5), collections.Counter({"old": 5}))

        # Refresh cadence follows the TTL (2 s): count keel's SRV queries for 6 s.
        q0 = self.dns.srv_queries()
        time.sleep(6.0)
        n = self.dns.srv_queries() - q0
        self.assertTrue(2 <= n <= 4, "%d SRV queries in 6 s with TTL 2s" % n)

        # The record moves to another port: keel follows within TTL + a bit.
        self.dns.start(srv=[("svc.test", b["new"].port, 1, 1)], hosts=hosts, ttl=2)
        t0 = time.monotonic()
        conn = self.client(self.port)
        wait_for(lambda: self.hits(1, conn=conn)["new"] == 1, 10.0, 0.05, "traffic to 'new'")
        took = time.monotonic() - t0
        # TTL 2 s (max_ttl 300 s): re-asked after the TTL, not the ceiling; the slack is for
        # the query, debounce and a busy machine.
        self.assertLess(took, 2.0 + 3.0, "followed the change after %.2fs (TTL 2s)" % took)
        self.wait_endpoints(["svc.test:%d/127.0.0.1" % b["new"].port])
        self.assertEqual(self.hits(10, conn=conn), collections.Counter({"new": 10}))

    def test_truncated_answer_retried_over_tcp(self):
        b = self.start_backend("big")
        names = ["target-number-%02d.backends.example.test" % i for i in range(25)]
        self.dns.start(srv=[(n, b.port, 1, 10) for n in names],
                       hosts=[(n, "127.0.0.1") for n in names], ttl=30)
        # Over UDP the answer does not fit in 512 bytes: dnsmasq sets TC.
        qid = 0x4242
        qname = b"".join(bytes([len(lb)]) + lb.encode() for lb in SRV_NAME.split(".")) + b"\0"
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            u.settimeout(2)
            u.sendto(struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + qname +
                     struct.pack(">HH", T_SRV, 1), ("127.0.0.1", self.dns_port))
            data = u.recv(4096)
        finally:
            u.close()
        self.assertTrue(data[2] & 0x02, "expected a truncated UDP answer")
        self.assertLess(struct.unpack(">H", data[6:8])[0], 25)
        self.start_keel_dns()
        eps = self.wait_endpoints(["%s:%d/127.0.0.1" % (n, b.port) for n in names])
        self.assertTrue(all(e["weight"] == 10 and e["state"] == "healthy"
                            for e in eps.values()), eps)
        self.assertEqual(self.hits(10), collections.Counter({"big": 10}))

    def test_ttl_clamped_to_floor_and_ceiling(self):
        b = self.start_backend("c1")
        self.dns.start(srv=[("c1.test", b.port, 1, 1)], hosts=[("c1.test", "127.0.0.1")],
                       ttl=3600)
        self.start_keel_dns(min_ttl="1s", max_ttl="1s")
        self.wait_endpoints(["c1.test:%d/127.0.0.1" % b.port])
        # TTL 3600 s, max_ttl 1 s: about one query a second.
        q0 = self.dns.srv_queries()
        time.sleep(4.0)
        n = self.dns.srv_queries() - q0
        self.assertTrue(3 <= n <= 5, "%d SRV queries in 4 s with max_ttl 1s" % n)
        # TTL 0 (what Consul's DNS answers), min_ttl 1 s: no more than about one a second.
        self.dns.start(srv=[("c1.test", b.port, 1, 1)], hosts=[("c1.test", "127.0.0.1")],
                       ttl=0)
        time.sleep(1.5)
        q0 = self.dns.srv_queries()
        time.sleep(4.0)
        n = self.dns.srv_queries() - q0
        self.assertTrue(3 <= n <= 5, "%d SRV queries in 4 s with TTL 0, min_ttl 1s" % n)

    def load_while(self, seconds, failures, statuses):
        """Sends requests for `seconds` on one keep-alive connection; records statuses."""
        conn = self.client(self.port)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                r = conn.get("/")
                statuses[r.status] += 1
                if r.status != 200:
                    failures.append(r)
            except Exception as e:  # noqa: BLE001 - any failure is reported
                failures.append(e)
                conn = self.client(self.port)
            time.sleep(0.02)

    def test_dns_failures_keep_last_good_set(self):
        b = self.start_backend("s1")
        self.dns.start(srv=[("s1.test", b.port, 1, 1)], hosts=[("s1.test", "127.0.0.1")],
                       ttl=1)
        self.start_keel_dns()
        ep_id = "s1.test:%d/127.0.0.1" % b.port
        self.wait_endpoints([ep_id])

        for phase in ("refused", "timeout", "servfail"):
            errors0 = self.cluster_info()["discovery"]["errors"]
            self.dns.stop()
            fake = None
            if phase != "refused":
                fake = FakeDns(self.dns_port, "blackhole" if phase == "timeout" else "servfail")
            try:
                failures, statuses = [], collections.Counter()
                # Long enough for at least two failed refreshes (TTL 1 s, 1 s query timeout).
                self.load_while(3.5, failures, statuses)
                self.assertEqual(failures, [], "%s: %s" % (phase, statuses))
                self.assertGreater(statuses[200], 50, statuses)
                d = wait_for(lambda: (lambda x: x if x["errors"] > errors0 else None)(
                    self.cluster_info()["discovery"]), 10.0, 0.1, "discovery.errors to grow")
                self.assertNotEqual(d["last_error"], "", d)
                self.assertIn(SRV_NAME, d["last_error"])
                if phase == "servfail":
                    # c-ares 1.18 reports a SERVFAIL from every server as "Could not contact
                    # DNS servers"; newer versions as "Server failed"; keel's own rcode check
                    # says "SERVFAIL".
                    self.assertRegex(d["last_error"], "SERVFAIL|Server failed|Could not contact")
                    self.assertGreater(fake.queries, 0)
                elif phase == "timeout":
                    self.assertGreater(fake.queries, 0)
                    self.assertIn("Timeout", d["last_error"])
                print("\n%s: %s" % (phase, d["last_error"]))
                eps = self.endpoints()
                self.assertEqual(list(eps), [ep_id], phase)
                self.assertEqual(eps[ep_id]["state"], "healthy", eps)
            finally:
                if fake:
                    fake.close()
            # DNS comes back: the error clears with the next good answer.
            self.dns.start(srv=[("s1.test", b.port, 1, 1)], hosts=[("s1.test", "127.0.0.1")],
                           ttl=1)
            wait_for(lambda: self.cluster_info()["discovery"]["last_error"] == "", 40.0, 0.1,
                     "last_error to clear after %s" % phase)
        self.keel.wait_log(r"discovery failed, keeping the last good 1 endpoints", 5.0)

    def test_nxdomain_empties_only_after_empty_hold(self):
        b = self.start_backend("n1")
        hosts = [("n1.test", "127.0.0.1")]
        self.dns.start(srv=[("n1.test", b.port, 1, 1)], hosts=hosts, ttl=1)
        self.start_keel_dns(empty_hold="2s")
        self.wait_endpoints(["n1.test:%d/127.0.0.1" % b.port])
        self.assertEqual(self.hits(3), collections.Counter({"n1": 3}))

        # The records go away: dnsmasq is authoritative for .test, so NXDOMAIN.
        self.dns.start(srv=[], hosts=hosts, ttl=1)
        self.assertEqual(dns_query(self.dns_port, SRV_NAME, T_SRV)[0], 3)
        conn = self.client(self.port)
        seen = wait_for(lambda: "NXDOMAIN" in self.cluster_info()["discovery"]["last_error"],
                        10.0, 0.05, "keel to see NXDOMAIN")
        self.assertTrue(seen)
        t_seen = time.monotonic()
        # Within the hold the last endpoints still serve.
        self.assertEqual(self.hits(1, conn=conn), collections.Counter({"n1": 1}))
        statuses = []
        while True:
            r = conn.get("/")
            statuses.append(r.status)
            if r.status != 200:
                break
            if time.monotonic() - t_seen > 10:
                self.fail("cluster not emptied 10 s after NXDOMAIN (empty_hold 2s)")
            time.sleep(0.05)
        t_empty = time.monotonic() - t_seen
        self.assertEqual(r.status, 503, r)
        self.assertGreater(statuses.count(200), 10, statuses)
        self.assertGreaterEqual(t_empty, 1.5, "emptied %.2fs after NXDOMAIN was seen" % t_empty)
        # Upper bound: hold 2 s + one TTL (1 s) re-query, with slack for a busy machine.
        self.assertLessEqual(t_empty, 6.0, "emptied %.2fs after NXDOMAIN was seen" % t_empty)
        self.assertEqual(self.endpoints(), {})
        self.assertEqual(one_request(self.port, "GET", "/").status, 503)

        # Records return: the cluster fills again.
        self.dns.start(srv=[("n1.test", b.port, 1, 1)], hosts=hosts, ttl=1)
        self.wait_endpoints(["n1.test:%d/127.0.0.1" % b.port])
        wait_for(lambda: one_request(self.port, "GET", "/").status == 200, 10.0, 0.05,
                 "200 after the records return")

        # An empty answer (NODATA: the name exists with another type) is held the same way.
        self.dns.start(srv=[], hosts=hosts, ttl=1, extra=["txt-record=%s,x" % SRV_NAME])
        self.assertEqual(dns_query(self.dns_port, SRV_NAME, T_SRV), (0, 0))
        wait_for(lambda: "no SRV records" in self.cluster_info()["discovery"]["last_error"],
                 10.0, 0.05, "keel to see the empty answer")
        t_seen = time.monotonic()
        self.assertEqual(one_request(self.port, "GET", "/").status, 200)
        wait_for(lambda: one_request(self.port, "GET", "/").status == 503, 10.0, 0.05,
                 "503 after empty_hold")
        self.assertGreaterEqual(time.monotonic() - t_seen, 1.5)


if __name__ == "__main__":
    unittest.main()
