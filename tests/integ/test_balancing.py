# SPDX-License-Identifier: MIT
"""Load-balancing policies: observed distributions over real requests."""

import collections
import unittest

from keeltest import KeelTestCase, cluster, http_listener, keel_yaml


class BalancingTest(KeelTestCase):
    def setUp(self):
        super().setUp()
        self.b1 = self.start_backend("w1")
        self.b3 = self.start_backend("w3")

    def start(self, lb, weights=(1, 3)):
        self.port = self.free_port()
        self.start_keel(keel_yaml(
            [http_listener(self.port, [{"cluster": "api"}])],
            [cluster("api", [self.b1.addr, self.b3.addr], lb=lb, weights=list(weights))],
            self.free_port()))

    def count(self, n_conns, per_conn, path="/"):
        """Sequential keep-alive requests on n_conns parallel connections."""
        def run(i):
            c = self.client(self.port)
            ids = []
            for _ in range(per_conn):
                r = c.get(path)
                self.assertEqual(r.status, 200)
                ids.append(r.header("X-Backend-Id"))
            c.close()
            return ids
        out = collections.Counter()
        for ids in self.run_threads(run, [(i,) for i in range(n_conns)], timeout=120):
            out.update(ids)
        return out

    def test_round_robin_ignores_weights(self):
        self.start("round_robin")
        c = self.count(4, 100)
        self.assertEqual(c["w1"] + c["w3"], 400)
        self.assertTrue(180 <= c["w1"] <= 220, c)

    def test_weighted_round_robin(self):
        self.start("weighted_round_robin")
        c = self.count(4, 100)
        self.assertEqual(c["w1"] + c["w3"], 400)
        self.assertTrue(80 <= c["w1"] <= 120, c)
        self.assertTrue(280 <= c["w3"] <= 320, c)

    def test_weighted_random(self):
        # Random: enough draws that the bound is many standard deviations wide (at 400 draws
        # a +-30% bound was only 3.5 sd: about one failure in 2000 runs).
        self.start("random")
        c = self.count(4, 400)
        self.assertEqual(c["w1"] + c["w3"], 1600)
        self.assertTrue(300 <= c["w1"] <= 500, c)  # expected 400, sd ~17.3: +-5.8 sd

    def test_weighted_least_conn_concurrent(self):
        self.start("weighted_least_conn")
        c = self.count(16, 6, path="/sleep?ms=200")
        self.assertEqual(c["w1"] + c["w3"], 96)
        ratio = c["w3"] / max(1, c["w1"])
        self.assertTrue(2.2 <= ratio <= 4.0, "w3/w1 = %.2f (%s)" % (ratio, dict(c)))

    def test_least_conn_ignores_weights(self):
        self.start("least_conn")
        c = self.count(16, 4, path="/sleep?ms=200")
        self.assertEqual(c["w1"] + c["w3"], 64)
        ratio = c["w3"] / max(1, c["w1"])
        self.assertTrue(0.6 <= ratio <= 1.6, "w3/w1 = %.2f (%s)" % (ratio, dict(c)))

    def test_ip_hash_sticky(self):
        self.start("ip_hash", weights=(1, 1))
        seen = {}
        for i in range(2, 18):
            src = "127.0.0.%d" % i
            ids = set()
            for _ in range(5):  # a new connection each time
                c = self.client(self.port, source=src)
                r = c.get("/")
                self.assertEqual(r.status, 200)
                ids.add(r.header("X-Backend-Id"))
                # The backend sees the real client address in X-Forwarded-For.
                xff = [v for k, v in r.json()["headers"] if k.lower() == "x-forwarded-for"]
                self.assertEqual(xff, [src])
                c.close()
            self.assertEqual(len(ids), 1, "%s went to %s" % (src, ids))
            seen[src] = ids.pop()
        # 16 client addresses over two equal endpoints: both get some.
        self.assertEqual(set(seen.values()), {"w1", "w3"}, seen)


if __name__ == "__main__":
    unittest.main()
