# SPDX-License-Identifier: MIT
"""Passive outlier detection: consecutive failures of one endpoint, counted across all
workers, eject it; keel never ejects more than max_ejection_percent of a cluster."""

import json
import unittest

from keeltest import (KeelTestCase, ScriptedBackend, cluster, http_listener, keel_yaml,
                      wait_for)


class PassiveOutlierTest(KeelTestCase):
    def endpoints(self, k, name="c"):
        for c in json.loads(k.admin("/v1/clusters").body)["clusters"]:
            if c["name"] == name:
                return {e["address"]: e for e in c["endpoints"]}
        return {}

    def test_consecutive_5xx_ejects(self):
        good = [self.start_backend("g%d" % i) for i in range(3)]
        bad = ScriptedBackend("500", "bad")
        self.addCleanup(bad.close)
        port, admin = self.free_port(), self.free_port()
        k = self.start_keel(keel_yaml(
            [http_listener(port, [{"cluster": "c"}])],
            [dict(cluster("c", [b.addr for b in good] + [bad.addr], lb="round_robin"),
                  outlier={"consecutive_5xx": 5})], admin, workers=1))
        c = self.client(port)
        statuses = [c.get("/x").status for _ in range(60)]
        # The broken endpoint answered 500 until its fifth in a row, then got nothing more.
        self.assertEqual(statuses.count(500), 5, statuses)
        self.assertEqual(bad.count, 5)
        ep = self.endpoints(k)[bad.addr]
        self.assertEqual(ep["state"], "ejected")
        self.assertIn("consecutive 5xx", ep["reason"])
        k.wait_log(r"endpoint %s ejected for 30\.0s" % bad.addr)
        m = k.admin("/metrics").body.decode()
        self.assertIn('keel_upstream_ejections_total{cluster="c",endpoint="%s"} 1' % bad.addr, m)
        self.assertIn('keel_upstream_healthy{cluster="c",endpoint="%s"} 0' % bad.addr, m)

    def test_5xx_not_counted_by_default(self):
        good = self.start_backend("g")
        bad = ScriptedBackend("500", "bad")
        self.addCleanup(bad.close)
        port, admin = self.free_port(), self.free_port()
        k = self.start_keel(keel_yaml(
            [http_listener(port, [{"cluster": "c"}])],
            [cluster("c", [good.addr, bad.addr], lb="round_robin")], admin, workers=1))
        c = self.client(port)
        statuses = [c.get("/x").status for _ in range(30)]
        # An application answering 500 is not ejected unless the cluster asks for it.
        self.assertEqual(statuses.count(500), 15)
        self.assertEqual(self.endpoints(k)[bad.addr]["state"], "healthy")

    def test_ejection_expires_and_probe_decides(self):
        good = self.start_backend("g")
        bad = ScriptedBackend("500", "bad")
        self.addCleanup(bad.close)
        port, admin = self.free_port(), self.free_port()
        k = self.start_keel(keel_yaml(
            [http_listener(port, [{"cluster": "c"}])],
            [dict(cluster("c", [good.addr, bad.addr], lb="round_robin"),
                  outlier={"consecutive_5xx": 2, "base_ejection_time": "1s",
                           "max_ejection_time": "10s"})], admin, workers=1))
        c = self.client(port)
        for _ in range(4):
            c.get("/x")
        self.assertEqual(self.endpoints(k)[bad.addr]["state"], "ejected")
        self.assertEqual(bad.count, 2)
        # After the ejection time the next outcome decides: still failing -> ejected again at
        # once (one probe request, not two), for twice as long.
        wait_for(lambda: self.endpoints(k)[bad.addr]["state"] == "healthy", timeout=10,
                 what="ejection to expire")
        for _ in range(4):
            c.get("/x")
        self.assertEqual(bad.count, 3)
        ep = self.endpoints(k)[bad.addr]
        self.assertEqual(ep["state"], "ejected")
        self.assertIn("probe", ep["reason"])
        self.assertIn("ejection #2", ep["reason"])
        k.wait_log(r"endpoint %s ejected for 2\.0s" % bad.addr)

    def test_gateway_failures_eject_and_requests_still_succeed(self):
        good = [self.start_backend("g%d" % i) for i in range(3)]
        dead = "127.0.0.1:%d" % self.free_port()  # refuses connections
        port, admin = self.free_port(), self.free_port()
        k = self.start_keel(keel_yaml(
            [http_listener(port, [{"cluster": "c"}])],
            [cluster("c", [b.addr for b in good] + [dead], lb="round_robin")], admin,
            workers=1))
        c = self.client(port)
        # A refused connect is retried on another endpoint: no client sees an error.
        for _ in range(40):
            self.assertEqual(c.get("/x").status, 200)
        eps = self.endpoints(k)
        self.assertEqual(eps[dead]["state"], "ejected")
        self.assertIn("gateway failures", eps[dead]["reason"])
        self.assertEqual(eps[dead]["source"], "passive_ejection")
        self.assertLess(eps[dead]["since_seconds"], 30)
        failures = eps[dead]["connect_failures"]
        self.assertEqual(failures, 5)
        for _ in range(20):
            self.assertEqual(c.get("/x").status, 200)
        # Ejected: keel stopped trying it.
        self.assertEqual(self.endpoints(k)[dead]["connect_failures"], failures)

    def test_never_ejects_more_than_max_percent(self):
        ok = self.start_backend("ok")
        dead = ["127.0.0.1:%d" % self.free_port() for _ in range(3)]
        port, admin = self.free_port(), self.free_port()
        k = self.start_keel(keel_yaml(
            [http_listener(port, [{"cluster": "c"}])],
            [cluster("c", dead + [ok.addr], lb="round_robin")], admin, workers=1))
        c = self.client(port)
        # Before two of them are ejected a request may meet three dead endpoints in a row
        # (keel tries three): 502. Once the two are out, every request reaches "ok".
        statuses = [c.get("/x").status for _ in range(60)]
        self.assertLessEqual(set(statuses), {200, 502})
        self.assertEqual(statuses[-20:], [200] * 20, statuses)
        states = [e["state"] for e in self.endpoints(k).values()]
        # 4 endpoints, default max_ejection_percent 50: two ejected at most, never three.
        self.assertEqual(states.count("ejected"), 2, states)
        k.wait_log(r"ejected already \(max_ejection_percent 50\)")


if __name__ == "__main__":
    unittest.main()
