# SPDX-License-Identifier: MIT
"""Circuit breaking per cluster: over max_requests or max_connections keel answers 503 at once
with the reason, counts it, and serves again as soon as the load is back under the limit."""

import threading
import time
import unittest

from keeltest import KeelTestCase, cluster, http_listener, keel_yaml


class CircuitBreakerTest(KeelTestCase):
    def start(self, breaker):
        self.be = self.start_backend("b1")
        self.port, self.admin = self.free_port(), self.free_port()
        c = cluster("c", [self.be.addr])
        c["circuit_breaker"] = breaker
        self.k = self.start_keel(keel_yaml([http_listener(self.port, [{"cluster": "c"}])], [c],
                                           self.admin, workers=1))

    def parallel(self, n, path):
        results = [None] * n

        def one(i):
            r = self.client(self.port, timeout=20).get(path)
            results[i] = (r.status, r.header("X-Keel-Reason"))

        threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
            time.sleep(0.05)  # let each request reach keel before the next one
        for t in threads:
            t.join(30)
        return results

    def test_max_requests(self):
        self.start({"max_requests": 2})
        results = self.parallel(5, "/sleep?ms=3000")
        ok = [r for r in results if r[0] == 200]
        shed = [r for r in results if r[0] == 503]
        self.assertEqual(len(ok), 2, results)
        self.assertEqual(len(shed), 3, results)
        self.assertTrue(all(r[1] == "circuit breaker: max_requests reached" for r in shed))
        # The backend only ever saw the two admitted requests.
        self.assertEqual(len(self.be.log()), 2)
        m = self.k.admin("/metrics").body.decode()
        self.assertIn('keel_cluster_circuit_breaker_rejections_total{cluster="c",'
                      'limit="max_requests"} 3', m)
        # Under the limit again: served.
        self.assertEqual(self.client(self.port).get("/after").status, 200)

    def test_max_connections(self):
        self.start({"max_connections": 1})
        results = self.parallel(2, "/sleep?ms=3000")
        self.assertEqual(sorted(r[0] for r in results), [200, 503], results)
        self.assertIn("circuit breaker: max_connections reached", [r[1] for r in results])
        # The one upstream connection is pooled and reused: sequential requests all pass.
        c = self.client(self.port)
        for _ in range(5):
            self.assertEqual(c.get("/seq").status, 200)
        m = self.k.admin("/metrics").body.decode()
        self.assertIn('keel_cluster_upstream_connections{cluster="c"} 1', m)


if __name__ == "__main__":
    unittest.main()
