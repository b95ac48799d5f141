# SPDX-License-Identifier: MIT
"""Panic mode: when active checks fail on most of a cluster, keel balances over every endpoint
discovery still offers instead of crushing the one that passes; panic_threshold 0 turns it off."""

import collections
import json
import unittest

from keeltest import KeelTestCase, cluster, http_listener, keel_yaml, wait_for


class PanicModeTest(KeelTestCase):
    def run_cluster(self, panic_threshold):
        bes = [self.start_backend("p%d" % i) for i in range(4)]
        port, admin = self.free_port(), self.free_port()
        c = cluster("c", [b.addr for b in bes], lb="round_robin")
        c["health_check"] = {"type": "http", "path": "/health", "interval": "200ms",
                             "fall": 1, "rise": 1}
        c["panic_threshold"] = panic_threshold
        k = self.start_keel(keel_yaml([http_listener(port, [{"cluster": "c"}])], [c], admin,
                                      workers=1))
        # Three of four fail their checks but still serve traffic fine.
        for b in bes[1:]:
            b._admin("/__backend/health?status=503")
        def unhealthy():
            d = json.loads(k.admin("/v1/clusters").body)
            states = [e["state"] for e in d["clusters"][0]["endpoints"]]
            return states.count("unhealthy") == 3 and d["workers_generation"] == d["generation"]
        wait_for(unhealthy, timeout=10, what="three endpoints unhealthy")
        cl = self.client(port)
        seen = collections.Counter()
        for _ in range(40):
            r = cl.get("/x")
            self.assertEqual(r.status, 200)
            seen[r.header("X-Backend-Id")] += 1
        return k, seen

    def test_panic_spreads_over_present_endpoints(self):
        k, seen = self.run_cluster(50)
        # 25% of the weight eligible < 50%: every present endpoint serves.
        self.assertEqual(set(seen), {"p0", "p1", "p2", "p3"}, seen)
        m = k.admin("/metrics").body.decode()
        self.assertRegex(m, r'keel_cluster_panic_total\{cluster="c"\} [1-9]')
        k.wait_log(r"cluster c: entering panic mode")

    def test_no_panic_when_disabled(self):
        k, seen = self.run_cluster(0)
        self.assertEqual(set(seen), {"p0"}, seen)


if __name__ == "__main__":
    unittest.main()
