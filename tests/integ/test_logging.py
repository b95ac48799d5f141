# SPDX-License-Identifier: MIT
"""Logs: one access line per request with the fields users grep for, and per-request warnings
rate-limited so a failing backend cannot flood the log."""

import re
import time
import unittest

from keeltest import KeelTestCase, cluster, http_listener, keel_yaml, wait_for


class LoggingTest(KeelTestCase):
    def test_access_line_fields(self):
        be = self.start_backend("b1")
        port, admin = self.free_port(), self.free_port()
        k = self.start_keel(keel_yaml([http_listener(port, [{"cluster": "c"}])],
                                      [cluster("c", [be.addr])], admin, workers=1))
        r = self.client(port).get("/hello?x=1", [("X-Request-Id", "req-abc-123")])
        self.assertEqual(r.status, 200)
        line = k.wait_log(r"access .*req_id=req-abc-123.*", timeout=10).group(0)
        for want in ('"GET /hello?x=1"', "status=200", "cluster=c", "endpoint=%s" % be.addr,
                     "client=127.0.0.1"):
            self.assertIn(want, line)
        self.assertRegex(line, r"bytes_in=\d+ bytes_out=\d+ dur_ms=[0-9.]+")

    def test_upstream_failures_are_rate_limited(self):
        dead = self.free_port()  # nothing listens here
        port, admin = self.free_port(), self.free_port()
        k = self.start_keel(keel_yaml([http_listener(port, [{"cluster": "c"}])],
                                      [cluster("c", ["127.0.0.1:%d" % dead])], admin,
                                      workers=1))
        c = self.client(port)
        n = 300
        t0 = time.monotonic()
        for _ in range(n):
            self.assertEqual(c.get("/").status, 502)
        elapsed = time.monotonic() - t0
        time.sleep(1.1)
        c.get("/")  # a request in a new second reports what was suppressed
        # Every request still has its access line (written as each exchange finishes, which
        # can be just after the client read its response: polled, bounded)...
        log = wait_for(lambda: (lambda t: t if len(re.findall(r"access .*status=502", t)) >= n + 1
                                else None)(k.log_text()),
                       10, what="%d access lines" % (n + 1))
        # ...but the warnings about the refused connection are bounded (20/s per worker).
        warns = len(re.findall(r"warn .*connect to .* failed", log))
        self.assertLessEqual(warns, 20 * (int(elapsed) + 3), "%d warnings" % warns)
        if elapsed < 1.0:
            k.wait_log(r"\d+ similar messages suppressed", timeout=10)


if __name__ == "__main__":
    unittest.main()
