# SPDX-License-Identifier: MIT
"""Rolling deploy under load through Consul discovery: every request must succeed.

Three instances of service "api" are registered in the fake Consul. Several keep-alive
clients send requests through keel the whole time while each instance in turn is failed
(critical check, or deregistered), drained, stopped, replaced by a new instance (new ID,
new port) registered passing, and seen taking traffic."""

import collections
import threading
import time
import unittest

from keeltest import Client, Closed, KeelTestCase, http_listener, keel_yaml, wait_for

N_CLIENTS = 6
NODE = "node1"


class LoadGen:
    """N_CLIENTS threads, each one keep-alive connection to keel (reopened only when keel
    says Connection: close or on an error), sending requests until stop()."""

    def __init__(self, port, deadline_s):
        self.port = port
        self.deadline = time.monotonic() + deadline_s
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.phase = "warm-up"
        self.total = 0
        self.ok = 0
        self.failures = []  # (seconds since start, phase, thread, path, what)
        self.by_backend = collections.Counter()
        self.by_phase_backend = collections.defaultdict(collections.Counter)
        self.t0 = time.monotonic()
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                        for i in range(N_CLIENTS)]

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def set_phase(self, phase):
        with self.lock:
            self.phase = phase

    def stop(self):
        self.stopping.set()
        for t in self.threads:
            t.join(20)
        return not any(t.is_alive() for t in self.threads)

    def _record(self, path, i, status=None, backend=None, error=None):
        with self.lock:
            self.total += 1
            if error is None and status == 200:
                self.ok += 1
                self.by_backend[backend] += 1
                self.by_phase_backend[self.phase][backend] += 1
            else:
                what = error if error is not None else "status %s" % status
                self.failures.append((round(time.monotonic() - self.t0, 3), self.phase, i,
                                      path, what))

    def _run(self, i):
        conn = None
        n = 0
        while not self.stopping.is_set() and time.monotonic() < self.deadline:
            n += 1
            # Mix quick requests with slow ones so requests are in flight at every change.
            path = "/sleep?ms=40&c=%d&n=%d" % (i, n) if n % 3 == 0 else "/?c=%d&n=%d" % (i, n)
            try:
                if conn is None:
                    conn = Client(self.port, timeout=10)
                r = conn.get(path)
            except (OSError, Closed, AssertionError) as e:
                self._record(path, i, error="%s: %s" % (type(e).__name__, e))
                if conn:
                    conn.close()
                conn = None
                time.sleep(0.01)
                continue
            err = None if r.status == 200 else "status %d body %r" % (r.status, r.body[:200])
            self._record(path, i, r.status, r.header("X-Backend-Id"), err)
            if (r.header("Connection") or "").lower() == "close":
                conn.close()
                conn = None
            time.sleep(0.002)
        if conn:
            conn.close()


class RollingDeployTest(KeelTestCase):
    def setUp(self):
        super().setUp()
        self.consul = self.start_consul()
        self.generation = 0
        self.instances = []  # [(service id, BackendProc)]

    def new_instance(self):
        """Starts a backend and registers it passing under a new service ID."""
        self.generation += 1
        sid = "api-%d" % self.generation
        be = self.start_backend(sid)
        self.consul.register({"ID": sid, "Name": "api", "Address": "127.0.0.1", "Port": be.port,
                              "Check": {"CheckID": "chk-" + sid, "TTL": "1h",
                                        "Status": "passing"}})
        return sid, be

    def endpoints(self):
        r = self.keel.admin("/v1/clusters")
        self.assertEqual(r.status, 200)
        for c in r.json()["clusters"]:
            if c["name"] == "api":
                return {e["id"]: e for e in c["endpoints"]}
        raise AssertionError("cluster api not in /v1/clusters")

    def start_keel_consul(self):
        self.port = self.free_port()
        extra = {"consul": {"address": "http://%s" % self.consul.addr, "wait": "5s",
                            "min_interval": "100ms"},
                 "discovery_debounce": "50ms"}
        self.start_keel(keel_yaml([http_listener(self.port, [{"cluster": "api"}])],
                                  [{"name": "api", "discovery": "consul", "service": "api"}],
                                  self.free_port(), extra=extra))

    def wait_drained(self, ep_id, removed_ok, timeout=10.0):
        """Until the endpoint is draining with nothing active (or gone, when removed_ok)."""
        last = {}

        def drained():
            eps = self.endpoints()
            e = eps.get(ep_id)
            last["ep"] = e
            if e is None:
                return removed_ok
            return e["state"] == "draining" and e["active"] == 0
        try:
            wait_for(drained, timeout, 0.05, "%s drained" % ep_id)
        except AssertionError as e:
            raise AssertionError("%s; last seen %s" % (e, last.get("ep")))
        return last["ep"]

    def rolling_deploy(self, how):
        for _ in range(3):
            self.instances.append(self.new_instance())
        self.start_keel_consul()
        want = {"%s/%s" % (NODE, sid) for sid, _ in self.instances}
        wait_for(lambda: set(self.endpoints()) == want, 10, 0.05, "three endpoints")

        load = LoadGen(self.port, deadline_s=40).start()
        steps = []
        max_active_at_fail = 0
        try:
            time.sleep(1.0)
            for step in range(3):
                old_sid, old_be = self.instances.pop(0)
                old_id = "%s/%s" % (NODE, old_sid)
                load.set_phase("step %d: %s %s" % (step + 1, how, old_sid))
                # Wait (bounded) for a moment with requests in flight on the old instance,
                # so the drain has something to finish.
                active_before = 0
                until = time.monotonic() + 2.0
                while time.monotonic() < until and active_before == 0:
                    active_before = self.endpoints()[old_id]["active"]
                t_step = time.monotonic()
                if how == "fail":
                    self.consul.check_fail("chk-" + old_sid, note="deploying")
                else:
                    self.consul.deregister(old_sid)
                ep = self.wait_drained(old_id, removed_ok=(how == "deregister"))
                max_active_at_fail = max(max_active_at_fail, active_before)
                if how == "fail":
                    self.assertIn("critical", ep["reason"], ep)
                t_drained = time.monotonic()
                # Drained means drained: the old instance gets no new requests.
                seen = len(old_be.log())
                time.sleep(0.3)
                self.assertEqual(len(old_be.log()), seen,
                                 "%s got requests after keel reported it drained" % old_sid)
                load.set_phase("step %d: stop %s" % (step + 1, old_sid))
                old_be.proc.terminate()
                old_be.proc.wait(10)
                new_sid, new_be = self.new_instance()
                self.instances.append((new_sid, new_be))
                load.set_phase("step %d: new %s" % (step + 1, new_sid))
                wait_for(lambda: load.by_backend[new_sid] > 0, 10, 0.05,
                         "traffic on %s" % new_sid)
                steps.append("step %d: %s (%d in flight) drained in %.2fs, %s serving %.2fs "
                             "after the step began"
                             % (step + 1, old_sid, active_before, t_drained - t_step, new_sid,
                                time.monotonic() - t_step))
                if how == "deregister":
                    wait_for(lambda: old_id not in self.endpoints(), 5, 0.05,
                             "%s to leave the snapshot" % old_id)
                time.sleep(1.0)  # the new set carries the load for a while
            load.set_phase("after the deploy")
            time.sleep(1.0)
        finally:
            finished = load.stop()
        self.assertTrue(finished, "load generator threads did not finish")

        print("\n" + "\n".join(steps))
        print("rolling deploy (%s): %d requests, %d failed; per instance %s"
              % (how, load.total, len(load.failures), dict(load.by_backend)))
        if load.failures:
            for f in load.failures[:30]:
                print("  failed at t=%.3fs [%s] client %d %s: %s" % f)
        self.assertEqual(len(load.failures), 0,
                         "%d of %d requests failed, first: %s"
                         % (len(load.failures), load.total, load.failures[:5]))
        self.assertGreater(load.total, 300, "too little load to mean anything")
        # The three new instances serve after the deploy; the old ones are gone
        # (deregistered) or still listed as draining (critical check).
        want = {"%s/%s" % (NODE, sid) for sid, _ in self.instances}
        old = {"%s/api-%d" % (NODE, g) for g in (1, 2, 3)}
        eps = self.endpoints()
        self.assertEqual(set(eps), want if how == "deregister" else want | old, eps)
        for ep_id, e in eps.items():
            self.assertEqual(e["state"], "healthy" if ep_id in want else "draining", e)
        self.assertGreater(max_active_at_fail, 0,
                           "no step had a request in flight on the instance it removed")
        served = load.by_phase_backend["after the deploy"]
        self.assertEqual(set(served), {sid for sid, _ in self.instances}, dict(served))

    def test_rolling_deploy_failing_checks(self):
        self.rolling_deploy("fail")

    def test_rolling_deploy_deregistering(self):
        self.rolling_deploy("deregister")


if __name__ == "__main__":
    unittest.main()
