# SPDX-License-Identifier: MIT
"""Retries: an idempotent request that failed after it was sent goes to another endpoint; a
POST that may have reached the application is never replayed (request ids counted at the
backends); configured statuses are retried for idempotent requests only."""

import re
import threading
import unittest

from keeltest import KeelTestCase, ScriptedBackend, cluster, http_listener, keel_yaml


class RetryTest(KeelTestCase):
    def start(self, flaky, retries=None):
        self.good = self.start_backend("good")
        self.port, self.admin = self.free_port(), self.free_port()
        c = cluster("c", [flaky.addr, self.good.addr], lb="round_robin")
        c["outlier"] = {"consecutive_gateway_failures": 0}  # keep the flaky one in rotation
        if retries:
            c["retries"] = retries
        self.k = self.start_keel(keel_yaml([http_listener(self.port, [{"cluster": "c"}])], [c],
                                           self.admin, workers=1))

    def good_ids(self):
        return [e["headers"] for e in self.good.log()]

    def test_get_retried_post_never_replayed(self):
        flaky = ScriptedBackend("reset")
        self.addCleanup(flaky.close)
        self.start(flaky)
        for i in range(10):
            c = self.client(self.port)
            r = c.get("/g", [("X-Request-Id", "get-%d" % i)])
            self.assertEqual(r.status, 200, "GET %d" % i)
            self.assertEqual(r.header("X-Backend-Id"), "good")
        statuses = []
        for i in range(10):
            c = self.client(self.port)
            r = c.exchange("POST", "/p", [("X-Request-Id", "post-%d" % i)], b"")
            statuses.append(r.status)
        # Every POST reached exactly one backend, once: the reset one (502) or the good one.
        seen = flaky.ids + [dict((k.lower(), v) for k, v in h)["x-request-id"]
                            for h in self.good_ids()]
        for i in range(10):
            self.assertEqual(seen.count("post-%d" % i), 1, seen)
        self.assertEqual(sorted(set(statuses)), [200, 502])
        # ...and each POST the reset backend swallowed is a 502 for the client, not a retry.
        self.assertEqual(statuses.count(502), sum(1 for x in flaky.ids if x.startswith("post-")))
        m = self.k.admin("/metrics").body.decode()
        self.assertRegex(m, r'keel_cluster_retries_total\{cluster="c"\} [1-9]')

    def test_status_retry_only_for_idempotent(self):
        flaky = ScriptedBackend("503")
        self.addCleanup(flaky.close)
        self.start(flaky, retries={"on_status": [503]})
        for i in range(10):
            r = self.client(self.port).get("/g", [("X-Request-Id", "g%d" % i)])
            self.assertEqual(r.status, 200)
        posts = [self.client(self.port).exchange("POST", "/p", [("X-Request-Id", "p%d" % i)],
                                                  b"").status for i in range(10)]
        # POSTs that met the 503 backend get its 503, never a second try.
        self.assertEqual(posts.count(503), sum(1 for x in flaky.ids if x.startswith("p")))
        self.assertGreater(posts.count(503), 0)
        # With Idempotency-Key a POST is retried like a GET.
        for i in range(6):
            r = self.client(self.port).exchange(
                "POST", "/p", [("X-Request-Id", "k%d" % i), ("Idempotency-Key", "k%d" % i)], b"")
            self.assertEqual(r.status, 200)

    def test_retry_after_honoured_or_passed_on(self):
        # Retry-After: 0 -> retried elsewhere; Retry-After: 30 -> the client gets the 503.
        for mode, want in (("503-ra0", 200), ("503-ra30", 503)):
            flaky = ScriptedBackend(mode)
            self.addCleanup(flaky.close)
            self.start(flaky, retries={"on_status": [503]})
            results = [self.client(self.port).get("/g").status for _ in range(6)]
            hit = len(flaky.ids)
            self.assertGreater(hit, 0)
            if want == 200:
                self.assertEqual(results, [200] * 6, mode)
            else:
                self.assertEqual(results.count(503), hit, mode)
            self.k.stop()
            self.k.stopped_by_test = True

    def test_per_try_timeout_moves_on(self):
        slow = ScriptedBackend("slow", "slow")  # answers 200 only after 2 s
        self.addCleanup(slow.close)
        self.good = self.start_backend("good")
        self.port, self.admin = self.free_port(), self.free_port()
        c = cluster("c", [slow.addr, self.good.addr], lb="round_robin")
        c["retries"] = {"per_try_timeout": "300ms"}
        c["outlier"] = {"consecutive_timeouts": 0}
        self.k = self.start_keel(keel_yaml([http_listener(self.port, [{"cluster": "c"}])], [c],
                                           self.admin, workers=1))
        # Every GET that meets the slow endpoint gives up on it after 300 ms and is answered
        # by the other one; none waits for the 2 s answer.
        for _ in range(4):
            r = self.client(self.port).get("/x")
            self.assertEqual((r.status, r.header("X-Backend-Id")), (200, "good"))
        self.assertGreater(len(slow.ids), 0)
    def test_retry_budget_holds_under_a_failing_endpoint(self):
        # Half of 24 concurrent slow GETs meet an endpoint that resets; their retries go to
        # the other endpoint, which takes 3 s to answer, so retries pile up in flight.
        # The budget allows max(3, 20% of requests in flight) of them; the rest get 502.
        flaky = ScriptedBackend("reset")
        self.addCleanup(flaky.close)
        self.start(flaky)
        n = 24
        results = [None] * n

        def one(i):
            try:
                r = self.client(self.port, timeout=30).get("/sleep?ms=3000")
                results[i] = r.status
            except Exception as e:  # a client-side failure is a test failure below
                results[i] = repr(e)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        self.assertLessEqual(set(results), {200, 502}, results)
        m = self.k.admin("/metrics").body.decode()
        retried = int(re.search(r'keel_cluster_retries_total\{cluster="c"\} (\d+)', m).group(1))
        denied = int(re.search(r'keel_cluster_retries_denied_total\{cluster="c"\} (\d+)',
                               m).group(1))
        self.assertGreater(denied, 0, m)
        # Every request that met the resetting endpoint was either retried or denied...
        self.assertEqual(retried + denied, len(flaky.ids))
        # ...and a denied one is exactly a 502 for its client.
        self.assertEqual(results.count(502), denied)


if __name__ == "__main__":
    unittest.main()
