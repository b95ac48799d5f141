# SPDX-License-Identifier: MIT
"""Consul discovery against the real keel binary and fake_consul.py: endpoints appear and
disappear, blocking queries, Weights, warning/critical/maintenance/serfHealth, tags, ACL
tokens and instance identity. ConsulKeelCase (no tests) is shared with test_consul_faults.py
and test_consul_state_file.py."""

import collections
import os
import re
import threading
import time
import unittest

from keeltest import KeelTestCase, http_listener, keel_yaml, wait_for

HEALTH = "/v1/health/service/"


def instance(sid, backend, name="api", weights=None, tags=(), status="passing",
             address="127.0.0.1"):
    """An agent register body for backend (a BackendProc) with a TTL check
    'service:<sid>' in the given status."""
    body = {"ID": sid, "Name": name, "Port": backend.port, "Tags": list(tags),
            "Check": {"TTL": "1h", "Status": status}}
    if address:
        body["Address"] = address
    if weights is not None:
        body["Weights"] = weights
    return body


def consul_cluster(name="api", service="api", tag=None, warning=None, lb=None):
    c = {"name": name, "discovery": "consul", "service": service}
    if tag is not None:
        c["tag"] = tag
    if warning is not None:
        c["warning"] = warning
    if lb is not None:
        c["lb"] = lb
    return c


class ConsulKeelCase(KeelTestCase):
    """Helpers for keel with discovery: consul; no tests of its own."""

    WAIT = "5s"
    MIN_INTERVAL = "100ms"

    def setUp(self):
        super().setUp()
        # keel takes its token from the environment when the config has none.
        self._saved_token = os.environ.pop("CONSUL_HTTP_TOKEN", None)
        if self._saved_token is not None:
            self.addCleanup(os.environ.__setitem__, "CONSUL_HTTP_TOKEN", self._saved_token)

    def consul_yaml(self, consul, clusters=None, routes=None, token=None, state_file=None,
                    wait=None, min_interval=None, port=None, admin_port=None):
        """A keel.yaml with one http listener (self.port) and consul clusters."""
        clusters = clusters or [consul_cluster(lb="round_robin")]
        routes = routes or [{"cluster": clusters[0]["name"]}]
        ccfg = {"address": "http://%s" % consul.addr, "wait": wait or self.WAIT,
                "min_interval": min_interval or self.MIN_INTERVAL}
        if token is not None:
            ccfg["token"] = token
        extra = {"discovery_debounce": "50ms", "consul": ccfg}
        if state_file:
            extra["state_file"] = state_file
        self.port = port or self.free_port()
        return keel_yaml([http_listener(self.port, routes)], clusters,
                         admin_port or self.free_port(), extra=extra)

    def start_consul_keel(self, consul, name="keel", **kw):
        return self.start_keel(self.consul_yaml(consul, **kw), name=name)

    # -- admin --------------------------------------------------------------------------
    @staticmethod
    def cluster_info(keel, name="api"):
        r = keel.admin("/v1/clusters")
        assert r.status == 200, r
        for c in r.json()["clusters"]:
            if c["name"] == name:
                return c
        raise AssertionError("no cluster %s in /v1/clusters" % name)

    def eps(self, keel, name="api"):
        """{endpoint id: endpoint JSON} from /v1/clusters."""
        return {e["id"]: e for e in self.cluster_info(keel, name)["endpoints"]}

    def wait_eps(self, keel, pred, what, timeout=10.0, name="api"):
        """Waits until pred({id: endpoint}) holds; returns that dict."""
        box = {}

        def check():
            box["eps"] = self.eps(keel, name)
            return pred(box["eps"])
        try:
            wait_for(check, timeout, what=what)
        except AssertionError as e:
            raise AssertionError("%s; endpoints now: %s" % (
                e, {k: (v["state"], v["weight"], v["reason"])
                    for k, v in box.get("eps", {}).items()}))
        return box["eps"]

    def wait_ids(self, keel, ids, timeout=10.0, name="api", state="healthy"):
        """Waits until the cluster lists exactly ids, each in the given state."""
        ids = set(ids)
        return self.wait_eps(
            keel, lambda e: set(e) == ids and all(v["state"] == state for v in e.values()),
            "endpoints %s %s" % (sorted(ids), state), timeout, name)

    # -- traffic ------------------------------------------------------------------------
    def hits(self, n, path="/", port=None):
        """n sequential keep-alive requests; all must answer 200. Counter of backends."""
        c = self.client(port or self.port)
        out = collections.Counter()
        for _ in range(n):
            r = c.get(path)
            self.assertEqual(r.status, 200, r)
            out[r.header("X-Backend-Id")] += 1
        c.close()
        return out

    def concurrent_hits(self, n_conns, per_conn, path):
        def run():
            c = self.client(self.port)
            ids = []
            for _ in range(per_conn):
                r = c.get(path)
                self.assertEqual(r.status, 200, r)
                ids.append(r.header("X-Backend-Id"))
            c.close()
            return ids
        out = collections.Counter()
        for ids in self.run_threads(run, [()] * n_conns, timeout=60):
            out.update(ids)
        return out

    @staticmethod
    def health_log(consul, service="api", since=0):
        return [e for e in consul.requests(HEALTH + service, since)
                if e["path"] == HEALTH + service]

    @staticmethod
    def param(entry, name):
        v = entry["params"].get(name)
        return v[-1] if v else None


class ConsulDiscoveryTest(ConsulKeelCase):

    def test_endpoints_appear_and_disappear(self):
        fc = self.start_consul()
        b = self.start_backends(["b1", "b2"])
        fc.register(instance("b1", b["b1"]))
        k = self.start_consul_keel(fc)
        self.wait_ids(k, ["node1/b1"])
        self.assertEqual(self.hits(4), {"b1": 4})

        # Registered: traffic reaches it as the held blocking query returns, well before
        # that query's 5 s wait would have run out.
        t0 = time.monotonic()
        fc.register(instance("b2", b["b2"]))
        c = self.client(self.port)
        seen = None
        while time.monotonic() - t0 < 4.0:
            r = c.get("/")
            self.assertEqual(r.status, 200, r)
            if r.header("X-Backend-Id") == "b2":
                seen = time.monotonic() - t0
                break
            time.sleep(0.02)
        self.assertIsNotNone(seen, "no request reached b2 within 4 s of its registration")
        k.wait_log(r"cluster api: endpoint 127\.0\.0\.1:%d \(node1/b2\) added: weight 1, "
                   r"passing" % b["b2"].port, 5)
        self.assertEqual(set(self.hits(10)), {"b1", "b2"})

        # Slow requests in flight on both; b2 leaves Consul while they run: they finish,
        # admin shows b2 removed with requests in flight, and it gets no new request.
        slow = []

        def slow_req():
            cc = self.client(self.port, timeout=20)
            # Long enough to still be in flight through the deregistration below.
            r = cc.get("/sleep?ms=3000")
            slow.append((r.status, r.header("X-Backend-Id")))
            cc.close()
        ts = [threading.Thread(target=slow_req, daemon=True) for _ in range(4)]
        for t in ts:
            t.start()
        self.wait_eps(k, lambda e: sum(v["active"] for v in e.values()) == 4,
                      "4 slow requests in flight", 5)
        in_flight_b2 = self.eps(k)["node1/b2"]["active"]
        self.assertGreater(in_flight_b2, 0, "round_robin should have sent b2 a slow request")
        fc.deregister("b2")
        e = self.wait_eps(k, lambda e: e.get("node1/b2", {}).get("state") == "draining",
                          "b2 draining after deregistration", 2.0)
        self.assertRegex(e["node1/b2"]["reason"], r"^removed from discovery, \d+ in flight$")
        n_b2 = len(b["b2"].log())
        self.assertEqual(self.hits(10), {"b1": 10})
        self.assertEqual(len(b["b2"].log()), n_b2, "b2 got a new request after deregistration")
        for t in ts:
            t.join(15)
        self.assertEqual(len(slow), 4)
        self.assertTrue(all(s == 200 for s, _ in slow), slow)
        self.assertEqual(sum(1 for _, i in slow if i == "b2"), in_flight_b2)
        # Once its last request ended, b2 leaves the cluster.
        self.wait_ids(k, ["node1/b1"])
        k.wait_log(r"\(node1/b2\) removed", 5)

    def test_blocking_queries(self):
        fc = self.start_consul()
        b = self.start_backends(["b1", "b2", "b3"])
        fc.register(instance("b1", b["b1"]))
        k = self.start_consul_keel(fc)
        self.wait_ids(k, ["node1/b1"])
        # Idle: the blocking query is held, keel does not poll.
        wait_for(lambda: len(self.health_log(fc)) >= 2, 10, what="the first blocking query")
        time.sleep(0.2)
        n0 = len(self.health_log(fc))
        time.sleep(1.5)
        self.assertLessEqual(len(self.health_log(fc)) - n0, 1,
                             "keel polled while Consul held its blocking query")
        fc.register(instance("b2", b["b2"]))
        self.wait_ids(k, ["node1/b1", "node1/b2"])
        fc.register(instance("b3", b["b3"]))
        self.wait_ids(k, ["node1/b1", "node1/b2", "node1/b3"])
        log = self.health_log(fc)
        self.assertIsNone(self.param(log[0], "index"), log[0])
        indexes = []
        for prev, e in zip(log, log[1:]):
            self.assertEqual(self.param(e, "wait"), "5s", e)
            idx = self.param(e, "index")
            self.assertIsNotNone(idx, e)
            # Each query carries the X-Consul-Index of the answer before it.
            self.assertEqual(int(idx), prev["index"], (prev, e))
            indexes.append(int(idx))
        self.assertEqual(indexes, sorted(indexes))
        self.assertGreaterEqual(len(set(indexes)), 3, indexes)
        # admin and metrics show the index keel holds.
        info = self.cluster_info(k)["discovery"]
        self.assertEqual(info["source"], "consul")
        self.assertEqual(info["service"], "api")
        self.assertEqual(info["index"], fc.index("api"))
        self.assertFalse(info["from_state_file"])
        self.assertGreaterEqual(info["answers"], 3)
        self.assertEqual(info["errors"], 0)
        self.assertLess(info["seconds_since_success"], 6)
        m = k.admin("/metrics").body.decode()
        self.assertRegex(m, r'keel_discovery_index\{cluster="api"\} %d\b' % fc.index("api"))
        self.assertRegex(m, r'keel_discovery_errors_total\{cluster="api"\} 0\b')
        self.assertRegex(m, r'keel_discovery_answers_total\{cluster="api"\} [3-9]\d*\b')
        self.assertRegex(m, r'keel_discovery_seconds_since_success\{cluster="api"\} [0-9.]+')

    def test_weights_change_the_split(self):
        fc = self.start_consul()
        b = self.start_backends(["w1", "w3"])
        fc.register(instance("w1", b["w1"], weights={"Passing": 1, "Warning": 1}))
        fc.register(instance("w3", b["w3"], weights={"Passing": 3, "Warning": 1}))
        k = self.start_consul_keel(fc, clusters=[consul_cluster()])  # weighted_least_conn
        e = self.wait_ids(k, ["node1/w1", "node1/w3"])
        self.assertEqual((e["node1/w1"]["weight"], e["node1/w3"]["weight"]), (1, 3))
        c = self.concurrent_hits(16, 5, "/sleep?ms=150")
        self.assertEqual(c["w1"] + c["w3"], 80)
        ratio = c["w3"] / max(1, c["w1"])
        self.assertTrue(2.2 <= ratio <= 4.0, "w3/w1 = %.2f (%s)" % (ratio, dict(c)))

        # Swapped at run time: the traffic follows.
        fc.register(instance("w1", b["w1"], weights={"Passing": 3, "Warning": 1}))
        fc.register(instance("w3", b["w3"], weights={"Passing": 1, "Warning": 1}))
        self.wait_eps(k, lambda e: e["node1/w1"]["weight"] == 3 and e["node1/w3"]["weight"] == 1,
                      "weights swapped")
        k.wait_log(r"cluster api: endpoint \S+ \(node1/w1\) now weight 3, passing", 5)
        c = self.concurrent_hits(16, 5, "/sleep?ms=150")
        self.assertEqual(c["w1"] + c["w3"], 80)
        ratio = c["w1"] / max(1, c["w3"])
        self.assertTrue(2.2 <= ratio <= 4.0, "w1/w3 = %.2f (%s)" % (ratio, dict(c)))

        # An answer without Weights serves at weight 1.
        fc.patch("w1", {"Service": {"Weights": None}})
        e = self.wait_eps(k, lambda e: e["node1/w1"]["weight"] == 1, "w1 at weight 1")
        self.assertEqual(e["node1/w1"]["state"], "healthy")
        self.assertEqual(e["node1/w1"]["reason"], "passing")

    def test_warning_serves_at_warning_weight_or_drains(self):
        fc = self.start_consul()
        b = self.start_backends(["a", "b"])
        fc.register(instance("a", b["a"], weights={"Passing": 3, "Warning": 2}))
        fc.register(instance("b", b["b"], weights={"Passing": 1, "Warning": 0}))
        k = self.start_consul_keel(
            fc, clusters=[consul_cluster("api", lb="round_robin"),
                          consul_cluster("apid", warning="drain", lb="round_robin")],
            routes=[{"match": {"path_prefix": "/d/"}, "cluster": "apid"}, {"cluster": "api"}])
        self.wait_ids(k, ["node1/a", "node1/b"])
        self.wait_ids(k, ["node1/a", "node1/b"], name="apid")
        self.assertEqual(set(self.hits(6, "/d/x")), {"a", "b"})

        fc.check_warn("service:a", "disk 91% full")
        e = self.wait_eps(k, lambda e: e["node1/a"]["weight"] == 2, "a at its Warning weight")
        self.assertEqual(e["node1/a"]["state"], "healthy")
        self.assertEqual(e["node1/a"]["reason"], "warning: check 'service:a' (serving at weight 2)")
        self.assertEqual(e["node1/b"]["weight"], 1)
        self.assertEqual(set(self.hits(6)), {"a", "b"}, "warning (serve) still gets traffic")
        # warning: drain
        e = self.wait_eps(k, lambda e: e["node1/a"]["state"] == "draining", "a draining",
                          name="apid")
        self.assertEqual(e["node1/a"]["reason"], "warning: check 'service:a' (draining)")
        self.assertEqual(self.hits(8, "/d/x"), {"b": 8})

        # Weights.Warning 0: a warning drains even with warning: serve.
        fc.check_warn("service:b", "slow")
        e = self.wait_eps(k, lambda e: e["node1/b"]["state"] == "draining", "b draining")
        self.assertEqual(e["node1/b"]["reason"], "warning: check 'service:b' (weight 0)")
        self.assertEqual(self.hits(8), {"a": 8})
        # apid has its own watch: its view of b can land in a later snapshot than api's.
        self.wait_eps(k, lambda e: e["node1/b"]["state"] == "draining", "b draining in apid",
                      name="apid")
        r = self.client(self.port).get("/d/x")
        self.assertEqual(r.status, 503, "both drained in apid: no endpoint")

        fc.check_pass("service:a")
        fc.check_pass("service:b")
        e = self.wait_eps(k, lambda e: all(v["reason"] == "passing" for v in e.values()),
                          "both passing again")
        self.assertEqual((e["node1/a"]["weight"], e["node1/b"]["weight"]), (3, 1))
        self.wait_eps(k, lambda e: all(v["reason"] == "passing" for v in e.values()),
                      "both passing again in apid", name="apid")
        self.assertEqual(set(self.hits(6, "/d/x")), {"a", "b"})

    def test_critical_serf_and_maintenance_drain(self):
        fc = self.start_consul()
        names = ["a1", "a2", "a3", "a4", "a5"]
        b = self.start_backends(names)
        nodes = {"a1": "node1", "a2": "node2", "a3": "node3", "a4": "node1", "a5": "node4"}
        for n in names:
            fc.register(instance(n, b[n]), node=nodes[n], node_address="127.0.0.1")
        k = self.start_consul_keel(fc)
        ids = ["%s/%s" % (nodes[n], n) for n in names]
        self.wait_ids(k, ids)
        self.assertEqual(set(self.hits(20)), set(names))

        fc.check_fail("service:a1", "HTTP 500")
        fc.serf("node2", "critical")
        fc.node_maintenance(True, "kernel upgrade", node="node3")
        fc.service_maintenance("a4", True, "deploy")
        want = {"node1/a1": "critical: check 'service:a1'",
                "node2/a2": "critical: check 'serfHealth'",
                "node3/a3": "node maintenance",
                "node1/a4": "service maintenance"}
        e = self.wait_eps(k, lambda e: all(e[i]["state"] == "draining" for i in want),
                          "a1..a4 draining")
        self.assertEqual({i: e[i]["reason"] for i in want}, want)
        self.assertEqual((e["node4/a5"]["state"], e["node4/a5"]["reason"]), ("healthy", "passing"))
        before = {n: len(b[n].log()) for n in names}
        self.assertEqual(self.hits(20), {"a5": 20})
        for n in names[:4]:
            self.assertEqual(len(b[n].log()), before[n], "%s got a request while draining" % n)
        for i, reason in want.items():
            self.assertRegex(k.log_text(), r"cluster api: endpoint \S+ \(%s\) now weight 0, %s"
                             % (re.escape(i), re.escape(reason)))

        # Each comes back when its cause clears.
        fc.check_pass("service:a1")
        fc.serf("node2", "passing")
        fc.node_maintenance(False, node="node3")
        fc.service_maintenance("a4", False)
        self.wait_ids(k, ids)
        self.assertEqual(set(self.hits(20)), set(names))

    def test_tag_filter(self):
        fc = self.start_consul()
        b = self.start_backends(["v1", "v2", "none"])
        fc.register(instance("v1", b["v1"], tags=["v1"]))
        fc.register(instance("v2", b["v2"], tags=["blue", "v2"]))
        fc.register(instance("none", b["none"]))
        k = self.start_consul_keel(fc, clusters=[consul_cluster(tag="v2", lb="round_robin")])
        self.wait_ids(k, ["node1/v2"])
        self.assertEqual(self.hits(6), {"v2": 6})
        log = self.health_log(fc)
        self.assertTrue(log and all(self.param(e, "tag") == "v2" for e in log),
                        [e["query"] for e in log])
        # An instance that gains the tag joins; one that loses it leaves.
        fc.register(instance("v1", b["v1"], tags=["v1", "v2"]))
        self.wait_ids(k, ["node1/v1", "node1/v2"])
        fc.register(instance("v2", b["v2"], tags=["blue"]))
        self.wait_ids(k, ["node1/v1"])
        self.assertEqual(self.hits(6), {"v1": 6})

    def test_acl_token(self):
        fc = self.start_consul(acl_token="s3cret-token")
        be = self.start_backend("b1")
        fc.register(instance("b1", be))
        good = self.start_consul_keel(fc, name="keel-token", token="s3cret-token")
        good_port = self.port
        self.wait_ids(good, ["node1/b1"])
        self.assertEqual(self.hits(3, port=good_port), {"b1": 3})
        log = self.health_log(fc)
        self.assertTrue(log)
        for e in log:
            hdrs = {k.lower(): v for k, v in e["headers"]}
            self.assertEqual(hdrs.get("x-consul-token"), "s3cret-token", e)
            self.assertEqual(e["status"] if e["status"] is not None else 200, 200, e)
        self.assertNotIn("s3cret-token", good.log_text(), "the token must not be logged")

        # Without a token: 403, logged and shown; no endpoints, so 503 to clients.
        bad = self.start_consul_keel(fc, name="keel-notoken", token="")
        bad.wait_log(r"cluster api: discovery failed.*403", 10)
        info = wait_for(lambda: (lambda d: d if d["errors"] >= 1 else None)(
            self.cluster_info(bad)["discovery"]), 10, what="an error in admin")
        self.assertIn("403", info["last_error"])
        self.assertEqual(info["answers"], 0)
        self.assertIsNone(info["seconds_since_success"])
        self.assertEqual(self.eps(bad), {})
        r = self.client(self.port).get("/")
        self.assertEqual(r.status, 503)
        m = bad.admin("/metrics").body.decode()
        self.assertRegex(m, r'keel_discovery_errors_total\{cluster="api"\} [1-9]')

    def test_reused_address_is_a_new_endpoint(self):
        fc = self.start_consul()
        be = self.start_backend("b1")
        fc.register(instance("old-1", be))
        k = self.start_consul_keel(fc)
        e = self.wait_ids(k, ["node1/old-1"])
        addr = e["node1/old-1"]["address"]
        self.assertEqual(addr, "127.0.0.1:%d" % be.port)
        # The same address comes back as a new instance: a new endpoint, not the old one.
        fc.deregister("old-1")
        fc.register(instance("new-2", be))
        e = self.wait_ids(k, ["node1/new-2"])
        self.assertEqual(e["node1/new-2"]["address"], addr)
        text = k.log_text()
        self.assertIn("(node1/old-1) removed", text)
        self.assertRegex(text, r"endpoint 127\.0\.0\.1:%d \(node1/new-2\) added" % be.port)
        self.assertEqual(self.hits(3), {"b1": 3})


if __name__ == "__main__":
    unittest.main()
