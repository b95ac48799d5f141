# SPDX-License-Identifier: MIT
"""Admin API: /ready, /v1/clusters and /metrics agree with the traffic just sent."""

import collections
import json
import re
import subprocess
import threading
import unittest

from keeltest import KeelTestCase, Client, cluster, http_listener, keel_yaml, wait_for

METRIC_RX = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$')
LABEL_RX = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text):
    """[(name, {label: value}, float)] for every sample line."""
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = METRIC_RX.match(line)
        if not m:
            raise AssertionError("unparsable metrics line: %r" % line)
        labels = dict(LABEL_RX.findall(m.group(2) or ""))
        out.append((m.group(1), labels, float(m.group(3))))
    return out


def sample(samples, name, **labels):
    vals = [v for n, l, v in samples if n == name and all(l.get(k) == v2 for k, v2 in labels.items())]
    return vals


class AdminTest(KeelTestCase):
    def setUp(self):
        super().setUp()
        self.b1 = self.start_backend("a1")
        self.b2 = self.start_backend("a2")
        self.port = self.free_port()
        self.dead_port = self.free_port()
        self.start_keel(keel_yaml(
            [http_listener(self.port, [{"match": {"path_prefix": "/dead/"}, "cluster": "dead"},
                                       {"cluster": "api"}])],
            [cluster("api", [self.b1.addr, self.b2.addr], lb="weighted_round_robin",
                     weights=[1, 3]),
             cluster("dead", [self.dead_port], timeouts={"connect": "1s"})],
            self.free_port()))

    def send_traffic(self):
        """12 x 200 and 4 x 404 through cluster api; returns per-backend counts by class."""
        c = self.client(self.port)
        counts = collections.defaultdict(collections.Counter)
        for i in range(16):
            path = "/status?code=404" if i % 4 == 3 else "/ok/%d" % i
            r = c.get(path)
            self.assertIn(r.status, (200, 404))
            counts[r.header("X-Backend-Id")]["%dxx" % (r.status // 100)] += 1
        c.close()
        return counts

    def clusters_json(self):
        r = self.keel.admin("/v1/clusters")
        self.assertEqual(r.status, 200)
        self.assertIn("json", (r.header("Content-Type") or "").lower())
        return json.loads(r.body)

    def endpoint(self, doc, cname, addr):
        cl = [c for c in doc["clusters"] if c["name"] == cname]
        self.assertEqual(len(cl), 1, doc)
        eps = [e for e in cl[0]["endpoints"] if e["address"] == addr]
        self.assertEqual(len(eps), 1, cl[0])
        return cl[0], eps[0]

    def test_ready(self):
        r = self.keel.admin("/ready")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body.strip(), b"ready")

    def test_clusters_counts_match_traffic(self):
        counts = self.send_traffic()
        self.assertEqual(set(counts), {"a1", "a2"})
        by_addr = {self.b1.addr: counts["a1"], self.b2.addr: counts["a2"]}

        def matches():
            doc = self.clusters_json()
            for addr, want in by_addr.items():
                _, ep = self.endpoint(doc, "api", addr)
                got = ep.get("requests", {})
                if got.get("2xx", 0) != want["2xx"] or got.get("4xx", 0) != want["4xx"]:
                    return None
            return doc
        try:
            doc = wait_for(matches, 10.0, what="request counts in /v1/clusters")
        except AssertionError:
            self.fail("counts differ: sent %s, /v1/clusters says %s"
                      % (dict(by_addr), json.dumps(self.clusters_json())))
        self.assertIsInstance(doc["generation"], int)
        self.assertGreaterEqual(doc["generation"], 1)
        cl, ep1 = self.endpoint(doc, "api", self.b1.addr)
        _, ep2 = self.endpoint(doc, "api", self.b2.addr)
        self.assertEqual(cl["lb"], "weighted_round_robin")
        self.assertEqual((cl["protocol"], cl["tls"]), ("http1", False))
        self.assertEqual((ep1["weight"], ep2["weight"]), (1, 3))
        for ep in (ep1, ep2):
            self.assertEqual(ep["active"], 0)
            self.assertEqual(ep["state"], "healthy")
            self.assertEqual(ep["connect_failures"], 0)

    def test_active_during_slow_request(self):
        done = threading.Event()

        def slow():
            c = Client(self.port, timeout=15)
            try:
                # Long enough to still be in flight when /v1/clusters is read on a busy machine.
                c.get("/sleep?ms=3000")
            finally:
                c.close()
                done.set()
        # weighted_round_robin 1:3 from a fresh worker state: send 4 so both get one.
        ts = [threading.Thread(target=slow, daemon=True) for _ in range(4)]
        for t in ts:
            t.start()
        wait_for(lambda: len(self.b1.log()) + len(self.b2.log()) == 4, 10, what="4 in flight")
        doc = self.clusters_json()
        active = {self.b1.addr: len(self.b1.log()), self.b2.addr: len(self.b2.log())}
        for addr, want in active.items():
            self.assertEqual(self.endpoint(doc, "api", addr)[1]["active"], want, doc)
        for t in ts:
            t.join(15)
        wait_for(lambda: all(self.endpoint(self.clusters_json(), "api", a)[1]["active"] == 0
                             for a in active), 10, what="active back to 0")

    def test_connect_failures_counted(self):
        c = self.client(self.port)
        r = c.get("/dead/x")
        self.assertEqual(r.status, 502)
        dead_addr = "127.0.0.1:%d" % self.dead_port
        _, ep = self.endpoint(self.clusters_json(), "dead", dead_addr)
        self.assertGreaterEqual(ep["connect_failures"], 1)
        samples = parse_metrics(self.keel.admin("/metrics").body.decode())
        v = sample(samples, "keel_upstream_connect_failures_total", cluster="dead",
                   endpoint=dead_addr)
        self.assertEqual(len(v), 1, "no connect failure metric for %s" % dead_addr)
        self.assertGreaterEqual(v[0], 1)

    def test_metrics_promtool_and_counters(self):
        counts = self.send_traffic()

        # Counters are bumped as each exchange finishes, which can be just after the client
        # has the response: wait (bounded) until all 16 are counted, not a fixed sleep.
        def all_counted():
            r = self.keel.admin("/metrics")
            smp = parse_metrics(r.body.decode())
            done = (sum(sample(smp, "keel_listener_requests_total", listener="web")) >= 16 and
                    sum(sample(smp, "keel_upstream_requests_total", cluster="api")) >= 16 and
                    sum(sample(smp, "keel_request_duration_seconds_count", cluster="api")) >= 16)
            return r if done else None
        r = wait_for(all_counted, 10.0, what="16 requests counted in /metrics")
        self.assertEqual(r.status, 200)
        self.assertIn("text/plain", (r.header("Content-Type") or ""))
        p = subprocess.run(["/usr/bin/promtool", "check", "metrics"], input=r.body,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
        self.assertEqual(p.returncode, 0, "promtool check metrics:\n" + p.stdout.decode())
        samples = parse_metrics(r.body.decode())
        names = {n for n, _, _ in samples}
        for want in ("keel_listener_requests_total", "keel_upstream_requests_total",
                     "keel_listener_active_connections", "keel_request_duration_seconds_bucket",
                     "keel_request_duration_seconds_sum", "keel_request_duration_seconds_count"):
            self.assertIn(want, names)
        for ident, addr in (("a1", self.b1.addr), ("a2", self.b2.addr)):
            for klass in ("2xx", "4xx"):
                v = sample(samples, "keel_upstream_requests_total", cluster="api",
                           endpoint=addr, **{"class": klass})
                self.assertEqual(sum(v), counts[ident][klass],
                                 "%s %s %s" % (addr, klass, v))
        v = sample(samples, "keel_listener_requests_total", listener="web", **{"class": "2xx"})
        self.assertEqual(sum(v), 12)
        v = sample(samples, "keel_listener_requests_total", listener="web", **{"class": "4xx"})
        self.assertEqual(sum(v), 4)
        self.assertEqual(len(sample(samples, "keel_listener_active_connections", listener="web")), 1)
        v = sample(samples, "keel_request_duration_seconds_count", cluster="api")
        self.assertEqual(sum(v), 16)
        inf = sample(samples, "keel_request_duration_seconds_bucket", cluster="api", le="+Inf")
        self.assertEqual(sum(inf), 16)


if __name__ == "__main__":
    unittest.main()
