# SPDX-License-Identifier: MIT
"""Active health checks against the real keel binary: HTTP checks take an endpoint out of
rotation after `fall` failures and bring it back after `rise` passes, TCP checks notice a
killed backend, the identity check (expect_header) catches an address that answers as
another service, a separate check port, endpoints known at start serve at once, and a new
endpoint from Consul gets no traffic until its first check passed."""

import time
import unittest

from keeltest import KeelTestCase, http_listener, keel_yaml, wait_for

INTERVAL = "200ms"


def set_health(be, code):
    """Makes be's /health answer code (fake_backend /__backend/health)."""
    r = be._admin("/__backend/health?status=%d" % code)
    assert r.status == 200, r


def health_log(be):
    return [e for e in be.log() if e["target"] == "/health"]


def traffic_log(be):
    return [e for e in be.log() if e["target"] != "/health"]


class HealthCase(KeelTestCase):

    def start(self, backends, health, clusters_extra=None, lb="round_robin"):
        """keel with one http listener and cluster api over backends (BackendProc list or
        'host:port' strings), with the given health_check."""
        self.port = self.free_port()
        eps = [{"address": b if isinstance(b, str) else b.addr} for b in backends]
        cl = {"name": "api", "lb": lb, "endpoints": eps, "health_check": health}
        return self.start_keel(keel_yaml([http_listener(self.port, [{"cluster": "api"}])],
                                         [cl] + (clusters_extra or []), self.free_port(),
                                         extra={"discovery_debounce": "50ms"}))

    def eps(self, name="api"):
        r = self.keel.admin("/v1/clusters")
        self.assertEqual(r.status, 200, r)
        for c in r.json()["clusters"]:
            if c["name"] == name:
                return {e["address"]: e for e in c["endpoints"]}
        raise AssertionError("no cluster %s" % name)

    def wait_state(self, addr, state, timeout=5.0):
        box = {}

        def check():
            box["eps"] = self.eps()
            e = box["eps"].get(addr)
            return e if e and e["state"] == state else None
        try:
            return wait_for(check, timeout, what="%s %s" % (addr, state))
        except AssertionError as e:
            raise AssertionError("%s; endpoints: %s" % (e, {a: (v["state"], v["reason"])
                                                            for a, v in box["eps"].items()}))

    def served_by(self, n, client=None):
        """Sends n GETs on one keep-alive connection; returns the list of X-Backend-Id (or
        'status N' for a non-200 answer)."""
        c = client or self.client(self.port)
        out = []
        for i in range(n):
            r = c.get("/req/%d" % i)
            out.append(r.header("X-Backend-Id") if r.status == 200 else "status %d" % r.status)
        return out


class TestHttpCheck(HealthCase):

    def test_fall_takes_out_rise_brings_back(self):
        b1, b2 = self.start_backends(["b1", "b2"]).values()
        self.start([b1, b2], {"type": "http", "path": "/health", "interval": INTERVAL,
                              "rise": 2, "fall": 3, "jitter": "0%"})
        self.assertEqual(set(self.served_by(10)), {"b1", "b2"})

        before = len(health_log(b2))
        set_health(b2, 503)
        e = self.wait_state(b2.addr, "unhealthy")
        self.assertIn("active health check failing", e["reason"])
        # fall: 3 -> at least three checks since the flip (the first may have passed).
        self.assertGreaterEqual(len(health_log(b2)) - before, 3)
        self.keel.wait_log(r"cluster api: endpoint %s \(%s\) is DOWN: HTTP 503, 3 checks in a "
                           r"row" % (b2.addr, b2.addr))
        self.assertEqual(self.eps()[b1.addr]["state"], "healthy")

        # Out of rotation: every request goes to b1, none to b2.
        b2.reset()
        got = self.served_by(30)
        self.assertEqual(got, ["b1"] * 30)
        self.assertEqual(traffic_log(b2), [])
        # Still checked while down (so it can come back).
        wait_for(lambda: health_log(b2), 2, what="checks of the down endpoint")

        before = len(health_log(b2))
        set_health(b2, 200)
        self.wait_state(b2.addr, "healthy")
        self.assertGreaterEqual(len(health_log(b2)) - before, 2)  # rise: 2
        self.keel.wait_log(r"endpoint %s \(%s\) is UP: 2 checks passed in a row"
                           % (b2.addr, b2.addr))
        self.assertEqual(set(self.served_by(10)), {"b1", "b2"})

    def test_check_request_and_expected_status(self):
        # Two endpoints: with one of them out, the cluster stays above the panic threshold.
        b1, b2 = self.start_backends(["b1", "b2"]).values()
        self.start([b1, b2], {"type": "http", "path": "/health", "method": "GET",
                          "host": "api.internal", "expect": [200, "500-502"],
                          "interval": INTERVAL, "rise": 1, "fall": 1})
        wait_for(lambda: health_log(b1), 3, what="a check request")
        h = {k.lower(): v for k, v in health_log(b1)[0]["headers"]}
        self.assertEqual(h.get("host"), "api.internal")
        self.assertEqual(h.get("connection"), "close")
        # 501 is listed as expected: stays healthy across several checks.
        set_health(b1, 501)
        n = len(health_log(b1))
        wait_for(lambda: len(health_log(b1)) >= n + 3, 3, what="three more checks")
        self.assertEqual(self.eps()[b1.addr]["state"], "healthy")
        # 404 is not.
        set_health(b1, 404)
        self.wait_state(b1.addr, "unhealthy")
        self.keel.wait_log(r"is DOWN: HTTP 404, 1 check in a row")
        self.assertEqual(self.eps()[b2.addr]["state"], "healthy")
        b1.reset()
        self.assertEqual(self.served_by(10), ["b2"] * 10)
        self.assertEqual(traffic_log(b1), [])


    def test_timeout_counts_as_failure(self):
        b1, = self.start_backends(["b1"]).values()
        # fake_backend answers /sleep after the given time: well past the check's timeout.
        self.start([b1], {"type": "http", "path": "/health/sleep?ms=800", "interval": INTERVAL,
                          "timeout": "100ms", "fall": 2})
        e = self.wait_state(b1.addr, "unhealthy")
        self.assertIn("active health check failing", e["reason"])
        self.keel.wait_log(r"endpoint %s \(%s\) is DOWN: timeout after 100ms, 2 checks in a row"
                           % (b1.addr, b1.addr))


class TestTcpCheck(HealthCase):

    def test_killed_backend_out_of_rotation(self):
        bes = self.start_backends(["b1", "b2", "b3"])
        b1, b2, b3 = bes["b1"], bes["b2"], bes["b3"]
        self.start([b1, b2, b3], {"type": "tcp", "interval": INTERVAL, "rise": 2, "fall": 2})
        self.assertEqual(set(self.served_by(12)), {"b1", "b2", "b3"})
        b3.kill()
        e = self.wait_state(b3.addr, "unhealthy")
        self.assertIn("active health check failing", e["reason"])
        self.keel.wait_log(r"endpoint %s \(%s\) is DOWN: connect refused, 2 checks in a row"
                           % (b3.addr, b3.addr))
        # Once marked down, no request fails: all go to the two live ones.
        got = self.served_by(40) + self.served_by(20, self.client(self.port))
        self.assertEqual(sorted(set(got)), ["b1", "b2"], got)
        self.assertEqual(self.eps()[b1.addr]["state"], "healthy")
        self.assertEqual(self.eps()[b2.addr]["state"], "healthy")

    def test_known_endpoints_serve_before_first_checks(self):
        # The check port is closed, so no check will ever pass. Endpoints known at start
        # still serve until `fall` checks failed, then leave the rotation.
        b1, = self.start_backends(["b1"]).values()
        closed = self.free_port()
        self.start([b1], {"type": "tcp", "port": closed, "interval": "1s", "fall": 2,
                          "jitter": "0%"})
        r = self.client(self.port).get("/first")
        self.assertEqual((r.status, r.header("X-Backend-Id")), (200, "b1"))
        t0 = time.monotonic()
        self.wait_state(b1.addr, "unhealthy", timeout=6)
        # Two failed checks, one second apart: not before about a second. (Traffic now
        # would still reach it: the last endpoint of a cluster serves in panic mode.)
        self.assertGreater(time.monotonic() - t0, 0.5)
        self.keel.wait_log(r"is DOWN: connect refused, 2 checks in a row")


class TestIdentityAndPort(HealthCase):

    def test_identity_mismatch_marks_down(self):
        b1, b2 = self.start_backends(["b1", "b2"]).values()
        # Both answer /health with 200, but only b1 says it is "b1".
        self.start([b1, b2], {"type": "http", "interval": INTERVAL, "fall": 2, "rise": 2,
                              "expect_header": {"name": "X-Backend-Id", "value": "b1"}})
        self.wait_state(b2.addr, "unhealthy")
        self.keel.wait_log(r"endpoint %s \(%s\) is DOWN: identity mismatch: X-Backend-Id is "
                           r"\"b2\", 2 checks in a row" % (b2.addr, b2.addr))
        b2.reset()
        self.assertEqual(self.served_by(20), ["b1"] * 20)
        self.assertEqual(traffic_log(b2), [])
        self.assertEqual(self.eps()[b1.addr]["state"], "healthy")

    def test_check_port_differs_from_traffic_port(self):
        traffic, checked = self.start_backends(["traffic", "checked"]).values()
        self.start([traffic], {"type": "http", "port": checked.port, "interval": INTERVAL,
                               "fall": 2, "rise": 2})
        wait_for(lambda: len(health_log(checked)) >= 2, 3, what="checks on the check port")
        self.assertEqual(self.eps()[traffic.addr]["state"], "healthy")
        # The Host header names the checked address.
        h = {k.lower(): v for k, v in health_log(checked)[0]["headers"]}
        self.assertEqual(h.get("host"), checked.addr)
        # The check port fails: the endpoint leaves although its traffic port is fine. (As
        # the cluster's only endpoint it would still get traffic in panic mode.)
        set_health(checked, 503)
        self.wait_state(traffic.addr, "unhealthy")
        set_health(checked, 200)
        self.wait_state(traffic.addr, "healthy")
        self.assertEqual(self.served_by(3), ["traffic"] * 3)
        # No check ever went to the traffic port.
        self.assertEqual(health_log(traffic), [])


class TestNewEndpoint(HealthCase):

    def test_consul_new_endpoint_waits_for_first_check(self):
        b1, b2 = self.start_backends(["b1", "b2"]).values()
        consul = self.start_consul()

        def register(sid, be):
            consul.register({"ID": sid, "Name": "api", "Address": "127.0.0.1", "Port": be.port,
                             "Check": {"TTL": "1h", "Status": "passing"}})
        register("api-1", b1)
        self.port = self.free_port()
        cl = {"name": "api", "discovery": "consul", "service": "api", "lb": "round_robin",
              "health_check": {"type": "http", "interval": INTERVAL, "rise": 4, "fall": 2}}
        self.start_keel(keel_yaml(
            [http_listener(self.port, [{"cluster": "api"}])], [cl], self.free_port(),
            extra={"discovery_debounce": "50ms",
                   "consul": {"address": "http://%s" % consul.addr, "wait": "5s",
                              "min_interval": "100ms"}}))
        # The first answer's endpoints are the ones known at start: they serve at once.
        wait_for(lambda: self.served_by(1) == ["b1"], 5, what="b1 serving")

        # A new instance that is not ready yet.
        set_health(b2, 503)
        register("api-2", b2)
        c = self.client(self.port)
        seen_states = set()
        deadline = time.monotonic() + 1.5
        got = []
        while time.monotonic() < deadline:
            got += self.served_by(5, c)
            e = self.eps().get(b2.addr)
            if e:
                seen_states.add(e["state"])
        self.assertEqual(seen_states, {"unhealthy"}, "b2 must never look healthy")
        self.assertEqual(set(got), {"b1"})
        self.assertEqual(traffic_log(b2), [])
        self.assertGreater(len(health_log(b2)), 0)

        # Ready now: one passing check is enough for a new endpoint (rise 4 is for returns).
        before = len(b2.log())
        set_health(b2, 200)
        wait_for(lambda: "b2" in self.served_by(4, c), 5, what="traffic on b2")
        after = b2.log()[before:]
        first_traffic = next(i for i, e in enumerate(after) if e["target"] != "/health")
        checks = [e for e in after[:first_traffic] if e["target"] == "/health"]
        self.assertGreaterEqual(len(checks), 1)
        self.assertLessEqual(len(checks), 3, "came up only after %d checks" % len(checks))
        self.keel.wait_log(r"endpoint %s \([^)]*api-2\) is UP: its first health check passed"
                           % b2.addr)


if __name__ == "__main__":
    unittest.main()
