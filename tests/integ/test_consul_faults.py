# SPDX-License-Identifier: MIT
"""Consul faults with traffic flowing through the real keel binary: 500, hang, garbage JSON,
wrong JSON types, connection reset and a stopped Consul keep every request succeeding on
the last good endpoints; a backwards X-Consul-Index resets the watch; the token bucket
bounds the query rate when every answer comes back at once."""

import collections
import threading
import time
import unittest

from keeltest import Client, Closed, wait_for
from test_consul_discovery import HEALTH, ConsulKeelCase, instance

PATH = HEALTH + "api"


class Traffic:
    """n keep-alive client connections sending GET / in a loop until stop()."""

    def __init__(self, port, conns=2, pause=0.005):
        self.port = port
        self.pause = pause
        self.ok = 0
        self.failures = []
        self.by_backend = collections.Counter()
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(conns)]
        for t in self.threads:
            t.start()

    def _run(self):
        c = None
        while not self.stopping.is_set():
            try:
                if c is None:
                    c = Client(self.port, timeout=10)
                r = c.get("/")
                with self.lock:
                    if r.status == 200:
                        self.ok += 1
                        self.by_backend[r.header("X-Backend-Id")] += 1
                    else:
                        self.failures.append("status %d" % r.status)
            except (OSError, Closed, AssertionError) as e:
                with self.lock:
                    self.failures.append(repr(e))
                if c is not None:
                    c.close()
                c = None
            time.sleep(self.pause)
        if c is not None:
            c.close()

    def snapshot(self):
        with self.lock:
            return self.ok, list(self.failures), collections.Counter(self.by_backend)

    def stop(self):
        self.stopping.set()
        for t in self.threads:
            t.join(15)


class ConsulFaultsTest(ConsulKeelCase):
    WAIT = "1s"  # blocking rounds end every ~1 s, so a new fault is met quickly

    def setUp(self):
        super().setUp()
        self.fc = self.start_consul()
        self.b = self.start_backends(["b1", "b2", "b3"])
        self.fc.register(instance("b1", self.b["b1"]))
        self.fc.register(instance("b2", self.b["b2"]))
        self.k = self.start_consul_keel(self.fc)
        self.wait_ids(self.k, ["node1/b1", "node1/b2"])
        self.traffic = Traffic(self.port)
        self.addCleanup(self.traffic.stop)
        self.pokes = 0

    def poke(self):
        """Bumps the service's index without changing its endpoints (a new check output),
        so keel's held query returns and the next one meets the fault at once."""
        self.pokes += 1
        self.fc.check_pass("service:b1", "poke %d" % self.pokes)

    def disc(self):
        return self.cluster_info(self.k)["discovery"]

    def assert_traffic_clean(self, since_ok=0, backends=("b1", "b2")):
        ok, failures, by = self.traffic.snapshot()
        self.assertEqual(failures, [], "requests failed during a Consul fault")
        self.assertGreater(ok, since_ok, "no traffic flowed")
        for b in backends:
            self.assertGreater(by[b], 0, "%s got no traffic" % b)

    def ride_out(self, mode, errors_needed=2, timeout=10.0, start=None, stop=None):
        """Runs one fault while traffic flows: the endpoints stay, errors grow and
        last_error is set; returns last_error. start/stop override the fault itself."""
        before = self.disc()
        ok0, _, by0 = self.traffic.snapshot()
        if start:
            start()
        else:
            self.fc.fault(mode, path=PATH)
            self.poke()
        info = wait_for(lambda: (lambda d: d if d["errors"] >= before["errors"] + errors_needed
                                 else None)(self.disc()), timeout,
                        what="%d more discovery errors under fault %s" % (errors_needed, mode))
        self.assertNotEqual(info["last_error"], "", mode)
        # Still both endpoints, healthy, and both still get requests.
        self.wait_ids(self.k, ["node1/b1", "node1/b2"], 0.5)
        _, _, by1 = self.traffic.snapshot()
        time.sleep(0.3)
        ok2, failures, by2 = self.traffic.snapshot()
        self.assertEqual(failures, [], "requests failed under fault %s" % mode)
        for b in ("b1", "b2"):
            self.assertGreater(by2[b], by0[b], "%s got no traffic under fault %s" % (b, mode))
        self.assertGreater(ok2, ok0)
        m = self.k.admin("/metrics").body.decode()
        self.assertRegex(m, r'keel_discovery_errors_total\{cluster="api"\} [1-9]')
        if stop:
            stop()
        else:
            self.fc.clear_faults()
        return info["last_error"]

    def change_is_seen(self, timeout=10.0):
        """After a fault: b3 joins and leaves again, seen by keel each time."""
        self.fc.register(instance("b3", self.b["b3"]))
        self.wait_ids(self.k, ["node1/b1", "node1/b2", "node1/b3"], timeout)
        wait_for(lambda: self.traffic.snapshot()[2]["b3"] > 0, 10, what="traffic to b3")
        self.fc.deregister("b3")
        self.wait_ids(self.k, ["node1/b1", "node1/b2"], 10)
        d = self.disc()
        self.assertEqual(d["last_error"], "")

    def test_faults_keep_traffic_flowing(self):
        errs = {}
        for mode in ("500", "garbage", "wrongtype", "reset"):
            errs[mode] = self.ride_out(mode)
            self.change_is_seen()
        self.assertIn("500", errs["500"])
        self.assertIn("unusable", errs["garbage"])
        self.assertIn("unusable", errs["wrongtype"])
        text = self.k.log_text()
        self.assertRegex(text, r"cluster api: discovery failed, keeping the last good 2 "
                               r"endpoints: consul answered HTTP 500")
        self.traffic.stop()
        self.assert_traffic_clean(backends=("b1", "b2", "b3"))

    def test_hang_and_consul_stopped(self):
        # A hung query is given up after wait + wait/16 + 5 s; meanwhile traffic flows.
        err = self.ride_out("hang", errors_needed=1, timeout=15.0)
        self.assertRegex(err.lower(), r"time|timeout")
        self.change_is_seen()

        # Consul stops: connection refused, then it comes back empty and is re-filled
        # (its index starts over, below keel's).
        port = self.fc.port
        index_before = self.disc()["index"]
        box = {}

        def start():
            self.fc.kill()

        def stop():
            box["fc"] = self.start_consul(port=port)
        err = self.ride_out("stopped", start=start, stop=stop)
        self.assertRegex(err.lower(), r"connect")
        self.fc = box["fc"]
        # The new Consul knows nothing yet: keel must not take "no instances" from an error.
        self.fc.register(instance("b1", self.b["b1"]))
        self.fc.register(instance("b2", self.b["b2"]))
        self.assertLess(self.fc.index("api"), index_before)
        self.change_is_seen(timeout=15.0)
        self.traffic.stop()
        self.assert_traffic_clean(backends=("b1", "b2", "b3"))

    def test_index_backwards_resets(self):
        wait_for(lambda: len(self.health_log(self.fc)) >= 2, 10, what="a blocking query")
        high = self.disc()["index"]
        self.assertGreater(high, 1)
        seq = self.fc.requests()[-1]["seq"]
        # Consul restored from an older snapshot: every index drops.
        self.fc.rebase(high - 2)
        self.k.wait_log(r"cluster api: X-Consul-Index went backwards", 10)

        # keel started over: a later query carries no index, or one below the old one.
        def reset_seen():
            lg = self.health_log(self.fc, since=seq)
            return any(self.param(e, "index") is None or int(self.param(e, "index")) < high
                       for e in lg)
        wait_for(reset_seen, 10, what="a query after the reset")
        # ... and still follows changes.
        self.change_is_seen()
        self.assertLess(self.disc()["index"], high)
        self.traffic.stop()
        self.assert_traffic_clean(backends=("b1", "b2", "b3"))

    def test_rate_limit_when_answers_return_at_once(self):
        # index_backwards answers at once with a lower index every time: without the token
        # bucket this is a query storm. min_interval 100ms: burst 2, then 10 per second.
        per = 0.1
        seq = self.fc.requests()[-1]["seq"]
        t_set = time.monotonic()
        self.fc.fault("index_backwards", path=PATH)
        self.poke()
        time.sleep(2.0)
        self.fc.clear_faults()
        span = time.monotonic() - t_set
        hits = [e for e in self.health_log(self.fc, since=seq) if e["fault"] == "index_backwards"]
        allowed = 2 + span / per + 1  # burst, refill, and one query that straddles the start
        self.assertLessEqual(len(hits), allowed,
                             "%d queries in %.2fs with min_interval 100ms" % (len(hits), span))
        self.assertGreaterEqual(len(hits), 8, "keel stopped asking (%d queries)" % len(hits))
        # Spacing: after the burst, no two queries closer than ~min_interval on average.
        ts = [e["t"] for e in hits]
        if len(ts) > 4:
            avg = (ts[-1] - ts[2]) / (len(ts) - 3)
            self.assertGreaterEqual(avg, per * 0.8, ts)
        self.change_is_seen()
        self.traffic.stop()
        self.assert_traffic_clean(backends=("b1", "b2", "b3"))


if __name__ == "__main__":
    unittest.main()
