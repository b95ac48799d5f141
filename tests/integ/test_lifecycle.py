# SPDX-License-Identifier: MIT
"""Process lifecycle: graceful drain on SIGTERM, surviving a backend that dies."""

import re
import signal
import socket
import threading
import time
import unittest

from keeltest import KeelTestCase, Closed, Client, cluster, http_listener, keel_yaml, wait_for


class LifecycleTest(KeelTestCase):
    def test_graceful_sigterm_drains_in_flight(self):
        be = self.start_backend("b1")
        port = self.free_port()
        keel = self.start_keel(keel_yaml(
            [http_listener(port, [{"cluster": "app"}])],
            [cluster("app", [be.addr])], self.free_port(), drain_timeout="10s"))
        results = [None] * 10

        def call(i):
            c = Client(port, timeout=20)
            try:
                # Long enough that the drain is still under way when /ready is polled.
                results[i] = c.get("/sleep?ms=2500")
            except (OSError, Closed) as e:
                results[i] = e
            finally:
                c.close()

        ts = [threading.Thread(target=call, args=(i,), daemon=True) for i in range(10)]
        for t in ts:
            t.start()
        # All ten are at the backend (it logs the head before sleeping).
        wait_for(lambda: len(be.log()) == 10, 10, what="10 requests in flight")
        t0 = time.monotonic()
        keel.proc.send_signal(signal.SIGTERM)
        # While draining, /ready says so (polled: keel handles the signal asynchronously).
        last = {}

        def ready_says_draining():
            try:
                last["r"] = keel.admin("/ready")
            except (OSError, Closed) as e:
                last["err"] = e
                return True  # stop polling: reported below
            return last["r"].status == 503
        try:
            wait_for(ready_says_draining, 2.0, 0.02, what="/ready 503 after SIGTERM")
        except AssertionError:
            pass  # reported below with the last answer
        if "err" in last:
            self.fail("admin /ready unreachable during drain: %r" % last["err"])
        self.assertEqual(last["r"].status, 503, "/ready during drain: %r" % last["r"])
        self.assertIn(b"draining", last["r"].body)
        rc = keel.stop(None, timeout=12)  # no second signal: wait for the drain
        elapsed = time.monotonic() - t0
        for t in ts:
            t.join(5)
        for i, r in enumerate(results):
            self.assertNotIsInstance(r, Exception, "request %d: %r" % (i, r))
            self.assertIsNotNone(r, "request %d did not finish" % i)
            self.assertEqual(r.status, 200, "request %d: %r" % (i, r))
            self.assertEqual(r.body, b"slept 2500\n")
        self.assertEqual(rc, 0, "keel exit code after SIGTERM")
        self.assertLess(elapsed, 10.0, "drain took longer than drain_timeout")
        # Gone: new connections are refused.
        s = socket.socket()
        s.settimeout(2)
        try:
            with self.assertRaises(ConnectionRefusedError):
                s.connect(("127.0.0.1", port))
        finally:
            s.close()

    def test_sigint_idle_exits_zero(self):
        be = self.start_backend("b1")
        port = self.free_port()
        keel = self.start_keel(keel_yaml(
            [http_listener(port, [{"cluster": "app"}])],
            [cluster("app", [be.addr])], self.free_port()))
        c = self.client(port)
        self.assertEqual(c.get("/").status, 200)  # an idle keep-alive connection stays open
        t0 = time.monotonic()
        self.assertEqual(keel.stop(signal.SIGINT, timeout=12), 0)
        self.assertLess(time.monotonic() - t0, 5.0, "idle keep-alive connection delayed exit")

    def test_sigterm_does_not_wait_for_silent_connection(self):
        # A connection that never sent a request has nothing in flight: SIGTERM must not
        # wait drain_timeout for it.
        be = self.start_backend("b1")
        port = self.free_port()
        keel = self.start_keel(keel_yaml(
            [http_listener(port, [{"cluster": "app"}])],
            [cluster("app", [be.addr])], self.free_port(), drain_timeout="10s"))
        silent = self.client(port)
        # Accepted by a worker (the gauge counts it), not merely queued in the backlog.
        wait_for(lambda: re.search(r'^keel_listener_active_connections\{listener="web"\} 1$',
                                   keel.admin("/metrics").body.decode(), re.M),
                 10, what="the silent connection accepted")
        t0 = time.monotonic()
        self.assertEqual(keel.stop(signal.SIGTERM, timeout=12), 0)
        self.assertLess(time.monotonic() - t0, 5.0,
                        "a connection without any request delayed exit")
        self.assertTrue(silent.wait_closed(1))

    def test_backend_killed_mid_traffic(self):
        b1 = self.start_backend("b1")
        b2 = self.start_backend("b2")
        port = self.free_port()
        self.start_keel(keel_yaml(
            [http_listener(port, [{"cluster": "app"}])],
            [cluster("app", [b1.addr, b2.addr], lb="round_robin",
                     timeouts={"connect": "1s", "response": "5s"})], self.free_port()))
        kill_at = 60
        outcomes = []
        c = None
        for i in range(200):
            if i == kill_at:
                b2.kill()
            if c is None:
                c = self.client(port)
            try:
                r = c.get("/req/%d" % i)
                outcomes.append((i, r.status, r.header("X-Backend-Id")))
                if (r.header("Connection") or "").lower() == "close":
                    c.close()
                    c = None
            except (Closed, OSError) as e:
                outcomes.append((i, "closed: %s" % e, None))
                c.close()
                c = None
        before = [o for o in outcomes if o[0] < kill_at]
        self.assertTrue(all(o[1] == 200 for o in before), before)
        self.assertEqual({o[2] for o in before}, {"b1", "b2"})
        failures = [o for o in outcomes if o[1] != 200]
        for f in failures:
            self.assertIn(f[1], (502, 503), "failure other than 502/503: %r" % (f,))
            self.assertLess(f[0], kill_at + 10, "failure long after the kill: %r" % (f,))
        self.assertLessEqual(len(failures), 10, failures)
        late = [o for o in outcomes if o[0] >= kill_at + 10]
        self.assertTrue(all(o[1] == 200 and o[2] == "b1" for o in late), late)
        # keel still serves on a fresh connection.
        c2 = self.client(port)
        self.assertEqual(c2.get("/final").header("X-Backend-Id"), "b1")


if __name__ == "__main__":
    unittest.main()
