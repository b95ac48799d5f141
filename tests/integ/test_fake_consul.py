# SPDX-License-Identifier: MIT
"""Keeps fake_consul.py honest: its answers follow Consul's documented HTTP API.

Does not start keel. Each test runs an in-process FakeConsul (one test starts the CLI).
"""

import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import fake_consul  # noqa: E402
from fake_consul import ApiError, ConsulClient, FakeConsul  # noqa: E402
from keeltest import wait_for  # noqa: E402

NODE_KEYS = {"ID", "Node", "Address", "Datacenter", "TaggedAddresses", "Meta", "CreateIndex",
             "ModifyIndex"}
SERVICE_KEYS = {"ID", "Service", "Tags", "Address", "Port", "Weights", "Meta",
                "EnableTagOverride", "CreateIndex", "ModifyIndex"}
CHECK_KEYS = {"Node", "CheckID", "Name", "Status", "Notes", "Output", "ServiceID", "ServiceName",
              "ServiceTags", "Type", "CreateIndex", "ModifyIndex"}


def svc(sid, name="web", port=8080, tags=(), weights=None, ttl="1h", address=None, **extra):
    body = {"ID": sid, "Name": name, "Port": port, "Tags": list(tags)}
    if weights:
        body["Weights"] = weights
    if ttl:
        body["Check"] = {"TTL": ttl}
    if address:
        body["Address"] = address
    body.update(extra)
    return body


class _FakeConsulBase(unittest.TestCase):
    """Starts a FakeConsul per test; helpers, no tests."""

    token = None

    def setUp(self):
        self.fc = FakeConsul(acl_token=self.token).start()
        self.addCleanup(self.fc.stop)
        self.c = ConsulClient(self.fc.port, token=self.token)

    def health(self, name, **params):
        status, hdrs, body = self.c.health(name, **params)
        self.assertEqual(status, 200, body)
        return hdrs, body

    def index(self, name):
        hdrs, _ = self.health(name)
        return int(hdrs["x-consul-index"])

    def timed_health(self, name, **params):
        t0 = time.monotonic()
        status, hdrs, body = self.c.health(name, **params)
        return time.monotonic() - t0, status, hdrs, body


class FakeConsulTest(_FakeConsulBase):
    # -- basic shape --------------------------------------------------------------------
    def test_headers_and_index_never_zero(self):
        hdrs, body = self.health("nothing-here")
        self.assertEqual(body, [])
        self.assertGreaterEqual(int(hdrs["x-consul-index"]), 1)
        self.assertEqual(hdrs["x-consul-knownleader"], "true")
        self.assertEqual(hdrs["x-consul-lastcontact"], "0")
        self.assertEqual(hdrs["content-type"], "application/json")
        self.fc.rebase(10 ** 6)  # reported indexes fall, but never below 1
        hdrs, _ = self.health("nothing-here")
        self.assertEqual(hdrs["x-consul-index"], "1")

    def test_health_shape_weights_and_checks(self):
        self.c.register(svc("web-1", tags=["v1", "primary"], weights={"Passing": 10, "Warning": 2},
                            Meta={"version": "1.2"}))
        self.c.register(svc("web-2", port=8081, address="10.0.0.9", ttl=None),
                        node="node2", node_address="127.0.0.2")
        _, body = self.health("web")
        self.assertEqual([e["Service"]["ID"] for e in body], ["web-1", "web-2"])
        e1, e2 = body
        self.assertLessEqual(NODE_KEYS, set(e1["Node"]))
        self.assertLessEqual(SERVICE_KEYS, set(e1["Service"]))
        for c in e1["Checks"]:
            self.assertLessEqual(CHECK_KEYS, set(c))
        self.assertEqual(e1["Node"]["Node"], "node1")
        self.assertEqual(e1["Node"]["Address"], "127.0.0.1")
        self.assertEqual(e1["Service"]["Address"], "")
        self.assertEqual(e1["Service"]["Port"], 8080)
        self.assertEqual(e1["Service"]["Weights"], {"Passing": 10, "Warning": 2})
        self.assertEqual(e1["Service"]["Meta"], {"version": "1.2"})
        self.assertEqual(e1["Service"]["Tags"], ["v1", "primary"])
        # node check first, then the service's TTL check, initially critical (Consul's default)
        self.assertEqual([(c["CheckID"], c["Status"]) for c in e1["Checks"]],
                         [("serfHealth", "passing"), ("service:web-1", "critical")])
        sc = e1["Checks"][1]
        self.assertEqual((sc["ServiceID"], sc["ServiceName"], sc["Type"]), ("web-1", "web", "ttl"))
        self.assertEqual(sc["ServiceTags"], ["v1", "primary"])
        # no Weights in the registration: the agent fills in {1, 1}
        self.assertEqual(e2["Service"]["Weights"], {"Passing": 1, "Warning": 1})
        self.assertEqual(e2["Node"]["Node"], "node2")
        self.assertEqual(e2["Node"]["Address"], "127.0.0.2")
        self.assertEqual(e2["Service"]["Address"], "10.0.0.9")
        self.assertEqual([c["CheckID"] for c in e2["Checks"]], ["serfHealth"])
        # invalid weights are refused like the agent does
        with self.assertRaises(ApiError) as cm:
            self.c.register(svc("web-3", weights={"Passing": 0, "Warning": 1}))
        self.assertEqual(cm.exception.status, 400)
        with self.assertRaises(ApiError) as cm:
            self.c.register({"Port": 1})
        self.assertEqual((cm.exception.status, cm.exception.text), (400, "Missing service name"))

    def test_multiple_checks_ids_and_check_endpoints(self):
        self.c.register(svc("api-1", name="api", ttl=None,
                            Checks=[{"TTL": "1h"}, {"TTL": "1h", "CheckID": "custom",
                                                    "Status": "passing"}]))
        _, body = self.health("api")
        self.assertEqual([(c["CheckID"], c["Status"]) for c in body[0]["Checks"]],
                         [("serfHealth", "passing"), ("custom", "passing"),
                          ("service:api-1:1", "critical")])
        i0 = self.index("api")
        self.c.check_pass("service:api-1:1", note="all good")
        i1 = self.index("api")
        self.assertGreater(i1, i0)
        _, body = self.health("api")
        ck = [c for c in body[0]["Checks"] if c["CheckID"] == "service:api-1:1"][0]
        self.assertEqual((ck["Status"], ck["Output"]), ("passing", "all good"))
        self.assertEqual(ck["ModifyIndex"], i1)
        self.c.check_pass("service:api-1:1", note="all good")  # idempotent: no new index
        self.assertEqual(self.index("api"), i1)
        self.c.check_warn("service:api-1:1", note="slow")
        self.c.check_fail("custom", note="down")
        _, body = self.health("api")
        st = {c["CheckID"]: (c["Status"], c["Output"]) for c in body[0]["Checks"]}
        self.assertEqual(st["service:api-1:1"], ("warning", "slow"))
        self.assertEqual(st["custom"], ("critical", "down"))
        with self.assertRaises(ApiError) as cm:
            self.c.check_pass("no-such-check")
        self.assertEqual(cm.exception.status, 404)
        status, _, _ = self.c.call("GET", "/v1/agent/check/pass/custom")
        self.assertEqual(status, 405)

    def test_ttl_expires(self):
        self.c.register(svc("t-1", name="t", ttl="300ms"))
        self.c.check_pass("service:t-1", note="alive")
        _, body = self.health("t")
        self.assertEqual(body[0]["Checks"][1]["Status"], "passing")
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            _, body = self.health("t")
            if body[0]["Checks"][1]["Status"] == "critical":
                break
            time.sleep(0.05)
        ck = body[0]["Checks"][1]
        self.assertEqual(ck["Status"], "critical")
        self.assertIn("TTL expired", ck["Output"])

    def test_deregister(self):
        self.c.register(svc("web-1"))
        self.c.register(svc("web-2"))
        i0 = self.index("web")
        self.c.deregister("web-1")
        hdrs, body = self.health("web")
        self.assertEqual([e["Service"]["ID"] for e in body], ["web-2"])
        self.assertGreater(int(hdrs["x-consul-index"]), i0)
        with self.assertRaises(ApiError) as cm:
            self.c.deregister("web-1")
        self.assertEqual(cm.exception.status, 404)
        self.c.deregister("web-2")
        hdrs, body = self.health("web")
        self.assertEqual(body, [])
        self.assertGreaterEqual(int(hdrs["x-consul-index"]), 1)

    # -- blocking queries ---------------------------------------------------------------
    def test_blocking_query_holds_until_change(self):
        self.c.register(svc("web-1"))
        idx = self.index("web")
        result = {}

        def waiter():
            result["r"] = self.timed_health("web", index=idx, wait="10s")
            result["done"] = time.monotonic()

        t = threading.Thread(target=waiter, daemon=True)
        t.start()
        # The query is held by the server (logged with its index) before the change.
        wait_for(lambda: any(e["params"].get("index") for e in
                             self.fc.requests(path="/v1/health/service/web")),
                 10, what="the blocking query at the server")
        time.sleep(0.6)
        self.assertTrue(t.is_alive(), "blocking query returned before any change")
        changed_at = time.monotonic()
        self.c.register(svc("web-2", port=8081))
        t.join(10)
        self.assertFalse(t.is_alive())
        elapsed, status, hdrs, body = result["r"]
        self.assertEqual(status, 200)
        # Held until the change, then woken by it (well before its 10 s wait).
        self.assertGreaterEqual(result["done"], changed_at)
        self.assertLess(result["done"] - changed_at, 5.0)
        self.assertGreater(int(hdrs["x-consul-index"]), idx)
        self.assertEqual(sorted(e["Service"]["ID"] for e in body), ["web-1", "web-2"])

    def test_blocking_wakes_on_check_and_node_changes(self):
        self.c.register(svc("web-1"), node="node2", node_address="127.0.0.2")
        for change in (lambda: self.c.check_pass("service:web-1"),
                       lambda: self.c.serf("node2", "critical"),
                       lambda: self.c.node_maintenance(True, node="node2")):
            idx = self.index("web")
            timer = threading.Timer(0.3, change)
            timer.start()
            elapsed, status, hdrs, _ = self.timed_health("web", index=idx, wait="5s")
            timer.join()
            self.assertEqual(status, 200)
            self.assertGreater(int(hdrs["x-consul-index"]), idx)
            self.assertLess(elapsed, 4.0)  # woken by the change, not the 5 s wait

    def test_stale_index_returns_at_once(self):
        self.c.register(svc("web-1"))
        self.c.register(svc("web-2"))
        idx = self.index("web")
        elapsed, status, hdrs, body = self.timed_health("web", index=idx - 1, wait="10s")
        self.assertEqual(status, 200)
        self.assertLess(elapsed, 5.0)  # not held for the 10 s wait
        self.assertEqual(int(hdrs["x-consul-index"]), idx)
        self.assertEqual(len(body), 2)
        # index=0 is not a blocking query
        elapsed, status, _, _ = self.timed_health("web", index=0, wait="10s")
        self.assertLess(elapsed, 5.0)

    def test_wait_is_honoured(self):
        self.c.register(svc("web-1"))
        idx = self.index("web")
        elapsed, status, hdrs, body = self.timed_health("web", index=idx, wait="1s")
        self.assertEqual(status, 200)
        self.assertGreaterEqual(elapsed, 1.0)
        self.assertLess(elapsed, 1.0 + 1.0 / 16 + 1.5)  # jitter bound: test_wait_jitter_...
        self.assertEqual(int(hdrs["x-consul-index"]), idx)  # no change: same index
        self.assertEqual(len(body), 1)
        # an index from the future (after a server reset) holds for the whole wait too
        elapsed, _, hdrs, _ = self.timed_health("web", index=idx + 1000, wait="500ms")
        self.assertGreaterEqual(elapsed, 0.5)
        self.assertEqual(int(hdrs["x-consul-index"]), idx)

    def test_wait_jitter_and_limits(self):
        samples = [fake_consul.blocking_timeout(16.0) for _ in range(300)]
        self.assertTrue(all(16.0 <= s < 17.0 for s in samples))
        self.assertGreater(max(samples) - min(samples), 0.3)  # really random
        self.assertGreaterEqual(fake_consul.blocking_timeout(0), 300.0)       # default 5m
        self.assertLess(fake_consul.blocking_timeout(0), 300.0 * 17 / 16)
        self.assertLess(fake_consul.blocking_timeout(3600), 600.0 * 17 / 16)  # max 10m
        self.assertEqual(fake_consul.parse_duration("1m30s"), 90.0)
        self.assertEqual(fake_consul.parse_duration("250ms"), 0.25)
        with self.assertRaises(ValueError):
            fake_consul.parse_duration("10")

    def test_bad_query_parameters(self):
        for params, text in (({"index": "abc"}, "Invalid index"),
                             ({"index": "5", "wait": "10"}, "Invalid wait time"),
                             ({"stale": "", "consistent": ""}, "Cannot specify ?stale"),
                             ({"passing": "maybe"}, "Invalid value for ?passing")):
            status, _, body = self.c.health("web", **params)
            self.assertEqual(status, 400, params)
            self.assertIn(text, body.decode())
        status, hdrs, _ = self.c.health("web", stale="")
        self.assertEqual((status, hdrs["x-consul-knownleader"]), (200, "true"))
        self.assertEqual(hdrs["x-consul-lastcontact"], "0")

    def test_datacenter_namespace_partition(self):
        self.c.register(svc("web-1"))
        _, body = self.health("web", dc="dc1", ns="default", partition="default")
        self.assertEqual(len(body), 1)
        status, _, body = self.c.health("web", dc="dc9")
        self.assertEqual(status, 500)
        self.assertIn(b"No path to datacenter", body)

    # -- filtering ------------------------------------------------------------------------
    def test_passing_filter(self):
        for i in (1, 2, 3):
            self.c.register(svc("web-%d" % i, port=8080 + i))
        self.c.check_pass("service:web-1")
        self.c.check_warn("service:web-2")
        self.c.check_fail("service:web-3")
        _, body = self.health("web")
        self.assertEqual(len(body), 3)
        _, body = self.health("web", passing="")
        self.assertEqual([e["Service"]["ID"] for e in body], ["web-1"])  # warning excluded
        _, body = self.health("web", passing="false")
        self.assertEqual(len(body), 3)
        self.c.serf("node1", "critical")  # a node check counts too
        _, body = self.health("web", passing="1")
        self.assertEqual(body, [])

    def test_tag_filter(self):
        self.c.register(svc("web-1", tags=["v1", "primary"]))
        self.c.register(svc("web-2", tags=["v1"]))
        self.c.register(svc("web-3", tags=["v2", "Primary"]))
        _, body = self.health("web", tag="v1")
        self.assertEqual([e["Service"]["ID"] for e in body], ["web-1", "web-2"])
        _, body = self.health("web", tag=["v1", "primary"])  # all must match
        self.assertEqual([e["Service"]["ID"] for e in body], ["web-1"])
        _, body = self.health("web", tag="PRIMARY")  # case-insensitive like Consul
        self.assertEqual([e["Service"]["ID"] for e in body], ["web-1", "web-3"])
        _, body = self.health("web", tag="nope")
        self.assertEqual(body, [])

    # -- maintenance and serf ---------------------------------------------------------------
    def test_service_and_node_maintenance(self):
        self.c.register(svc("web-1"))
        self.c.register(svc("web-2"), node="node2", node_address="127.0.0.2")
        self.c.check_pass("service:web-1")
        self.c.check_pass("service:web-2")
        i0 = self.index("web")
        self.c.service_maintenance("web-1", True, reason="deploying")
        hdrs, body = self.health("web")
        self.assertGreater(int(hdrs["x-consul-index"]), i0)
        ck = {c["CheckID"]: c for c in body[0]["Checks"]}
        m = ck["_service_maintenance:web-1"]
        self.assertEqual((m["Status"], m["Notes"], m["ServiceID"], m["Name"]),
                         ("critical", "deploying", "web-1", "Service Maintenance Mode"))
        _, body = self.health("web", passing="")
        self.assertEqual([e["Service"]["ID"] for e in body], ["web-2"])
        self.c.service_maintenance("web-1", False)
        _, body = self.health("web", passing="")
        self.assertEqual(len(body), 2)
        self.c.node_maintenance(True, node="node2")
        _, body = self.health("web")
        e2 = [e for e in body if e["Service"]["ID"] == "web-2"][0]
        nm = [c for c in e2["Checks"] if c["CheckID"] == "_node_maintenance"][0]
        self.assertEqual((nm["Status"], nm["ServiceID"]), ("critical", ""))
        self.assertIn("no reason was provided", nm["Notes"])
        _, body = self.health("web", passing="")
        self.assertEqual([e["Service"]["ID"] for e in body], ["web-1"])
        self.c.node_maintenance(False, node="node2")
        status, _, body = self.c.call("PUT", "/v1/agent/service/maintenance/web-1")
        self.assertEqual(status, 400)  # enable is required
        with self.assertRaises(ApiError) as cm:
            self.c.service_maintenance("nope", True)
        self.assertEqual(cm.exception.status, 404)

    def test_serf_critical(self):
        self.c.register(svc("web-1"))
        self.c.register(svc("web-2"), node="node2", node_address="127.0.0.2")
        i0 = self.index("web")
        self.c.serf("node2", "critical")
        hdrs, body = self.health("web")
        self.assertGreater(int(hdrs["x-consul-index"]), i0)
        serf = {e["Node"]["Node"]: e["Checks"][0] for e in body}
        self.assertEqual(serf["node1"]["Status"], "passing")
        self.assertEqual((serf["node2"]["CheckID"], serf["node2"]["Status"]),
                         ("serfHealth", "critical"))
        self.c.serf("node2", "passing")
        _, body = self.health("web")
        self.assertEqual([e["Checks"][0]["Status"] for e in body], ["passing", "passing"])

    # -- catalog --------------------------------------------------------------------------
    def test_catalog_services_and_service(self):
        st, hdrs, body = self.c.call("GET", "/v1/catalog/services")
        self.assertEqual(st, 200)
        self.assertEqual(json.loads(body), {"consul": []})
        i0 = int(hdrs["x-consul-index"])
        timer = threading.Timer(0.3, lambda: self.c.register(svc("web-1", tags=["keel", "b"])))
        timer.start()
        t0 = time.monotonic()
        st, hdrs, body = self.c.call("GET", "/v1/catalog/services", {"index": i0, "wait": "5s"})
        timer.join()
        self.assertLess(time.monotonic() - t0, 4.0)  # woken by the change, not the 5 s wait
        i1 = int(hdrs["x-consul-index"])
        self.assertGreater(i1, i0)
        self.c.register(svc("web-2", tags=["a", "keel"]))
        st, hdrs, body = self.c.call("GET", "/v1/catalog/services")
        self.assertEqual(json.loads(body), {"consul": [], "web": ["a", "b", "keel"]})
        # a health change is not a catalog change: the catalog view keeps its index
        i2 = int(hdrs["x-consul-index"])
        self.c.check_pass("service:web-1")
        st, hdrs, _ = self.c.call("GET", "/v1/catalog/services", {"index": i2, "wait": "300ms"})
        self.assertEqual(int(hdrs["x-consul-index"]), i2)
        st, hdrs, body = self.c.call("GET", "/v1/catalog/service/web", {"tag": "b"})
        rows = json.loads(body)
        self.assertEqual(len(rows), 1)
        self.assertEqual((rows[0]["ServiceID"], rows[0]["Node"], rows[0]["ServicePort"],
                          rows[0]["ServiceWeights"]),
                         ("web-1", "node1", 8080, {"Passing": 1, "Warning": 1}))

    # -- faults ---------------------------------------------------------------------------
    def test_fault_500_counted_and_per_path(self):
        self.c.register(svc("web-1"))
        self.c.fault("500", path="/v1/health/service/web", count=2)
        self.assertEqual(self.c.health("web")[0], 500)
        self.assertEqual(self.c.health("other")[0], 200)  # other path unaffected
        status, _, body = self.c.health("web")
        self.assertEqual(status, 500)
        self.assertTrue(body)  # a text body
        self.assertEqual(self.c.health("web")[0], 200)  # count used up
        self.c.fault("500", status=503)  # global, until cleared
        self.assertEqual(self.c.health("web")[0], 503)
        self.assertEqual(self.c.call("GET", "/v1/catalog/services")[0], 503)
        self.assertEqual(len(self.c.faults()), 1)
        self.c.clear_faults()
        self.assertEqual(self.c.health("web")[0], 200)

    def test_fault_hang(self):
        self.fc.fault("hang", path="/v1/health/")
        t0 = time.monotonic()
        with self.assertRaises(socket.timeout):
            self.c.call("GET", "/v1/health/service/web", timeout=0.5)
        self.assertGreaterEqual(time.monotonic() - t0, 0.5)
        self.assertEqual(self.c.call("GET", "/v1/catalog/services")[0], 200)
        self.fc.clear_faults()
        self.assertEqual(self.c.health("web")[0], 200)

    def test_fault_garbage_and_wrongtype(self):
        self.c.register(svc("web-1"))
        idx = self.index("web")
        self.c.fault("garbage", count=1)
        status, hdrs, body = self.c.call("GET", "/v1/health/service/web")
        self.assertEqual(status, 200)
        self.assertEqual(int(hdrs["x-consul-index"]), idx)
        with self.assertRaises(ValueError):
            json.loads(body)
        self.c.fault("wrongtype", count=1)
        status, _, body = self.c.call("GET", "/v1/health/service/web")
        self.assertIsInstance(json.loads(body), dict)  # valid JSON, not an array
        self.assertIsInstance(self.health("web")[1], list)

    def test_fault_index_backwards(self):
        self.c.register(svc("web-1"))
        self.c.register(svc("web-2"))
        idx = self.index("web")
        self.c.fault("index_backwards", count=1)
        elapsed, status, hdrs, body = self.timed_health("web", index=idx, wait="5s")
        self.assertEqual(status, 200)
        self.assertLess(elapsed, 3.0)  # answered at once, not held for the 5 s wait
        low = int(hdrs["x-consul-index"])
        self.assertLess(low, idx)
        self.assertGreaterEqual(low, 1)
        self.assertEqual(len(body), 2)
        self.assertEqual(self.index("web"), idx)
        # a restored server: every index drops and stays low, blocking on the old one holds
        self.c.rebase(idx - 2)
        self.assertEqual(self.index("web"), 2)
        elapsed, _, hdrs, _ = self.timed_health("web", index=idx, wait="300ms")
        self.assertGreaterEqual(elapsed, 0.3)

    def test_fault_reset(self):
        self.c.fault("reset", path="/v1/health/service/web", count=1)
        with self.assertRaises((ConnectionResetError, ConnectionError, OSError)) as cm:
            self.c.call("GET", "/v1/health/service/web")
        self.assertNotIsInstance(cm.exception, socket.timeout)
        self.assertEqual(self.c.health("web")[0], 200)
        log = self.c.requests(path="/v1/health/service/web")
        self.assertEqual([(e["fault"], e["status"]) for e in log], [("reset", "reset"),
                                                                  (None, 200)])

    def test_fault_slow(self):
        self.c.clear_requests()
        self.c.fault("slow_ms", ms=400, count=1)
        elapsed, status, _, _ = self.timed_health("web")
        self.assertEqual(status, 200)
        self.assertGreaterEqual(elapsed, 0.4)
        _, status, _, _ = self.timed_health("web")
        self.assertEqual(status, 200)
        # count=1: only the first request was slowed (the log says which fault applied;
        # a wall-clock bound on the second one raced with a busy machine).
        log = self.c.requests(path="/v1/health/service/web")
        self.assertEqual([e["fault"] for e in log], ["slow_ms", None])
        self.assertEqual(self.c.faults(), [])

    # -- log, keep-alive, patch -------------------------------------------------------------
    def test_request_log(self):
        self.c.clear_requests()
        self.c.call("GET", "/v1/health/service/web", {"index": 7, "wait": "1ms", "tag": "x"},
                    headers={"X-Consul-Token": "abc"})
        log = self.c.requests()
        self.assertEqual(len(log), 1)  # control calls are not logged
        e = log[0]
        self.assertEqual((e["method"], e["path"], e["status"]),
                         ("GET", "/v1/health/service/web", 200))
        self.assertEqual(e["params"]["index"], ["7"])
        self.assertIn("wait=1ms", e["query"])
        self.assertIn(["X-Consul-Token", "abc"], e["headers"])
        self.assertGreaterEqual(int(e["index"]), 1)
        self.assertEqual(self.c.requests(since=e["seq"]), [])

    def test_keep_alive(self):
        s = socket.create_connection(("127.0.0.1", self.fc.port), timeout=5)
        try:
            req = b"GET /v1/health/service/web HTTP/1.1\r\nHost: x\r\n\r\n"
            s.sendall(req + req)  # pipelined on one connection
            buf = b""
            deadline = time.monotonic() + 5
            while buf.count(b"HTTP/1.1 200") < 2 and time.monotonic() < deadline:
                d = s.recv(65536)
                if not d:
                    break
                buf += d
            self.assertEqual(buf.count(b"HTTP/1.1 200"), 2)
        finally:
            s.close()
        log = self.c.requests()
        self.assertEqual(log[0]["conn"], log[1]["conn"])

    def test_patch_changes_rendered_entry(self):
        self.c.register(svc("web-1", weights={"Passing": 3, "Warning": 1}))
        i0 = self.index("web")
        self.c.patch("web-1", {"Service": {"Weights": None, "Port": "8080"}})
        hdrs, body = self.health("web")
        self.assertGreater(int(hdrs["x-consul-index"]), i0)
        self.assertNotIn("Weights", body[0]["Service"])
        self.assertEqual(body[0]["Service"]["Port"], "8080")
        self.c.patch("web-1", None)
        _, body = self.health("web")
        self.assertEqual(body[0]["Service"]["Weights"], {"Passing": 3, "Warning": 1})


class FakeConsulAclTest(_FakeConsulBase):
    """With --acl-token: every API call needs the token (header, ?token= or Bearer)."""

    token = "s3cret"

    def test_acl(self):
        anon = ConsulClient(self.fc.port)
        for client in (anon, ConsulClient(self.fc.port, token="wrong")):
            status, _, body = client.call("GET", "/v1/health/service/web")
            self.assertEqual(status, 403)
            status, _, body = client.call("PUT", "/v1/agent/service/register", body=svc("x"))
            self.assertEqual(status, 403)
            self.assertEqual(client.call("GET", "/v1/catalog/services")[0], 403)
        self.assertEqual(ConsulClient(self.fc.port, token="wrong").call(
            "GET", "/v1/health/service/web")[2], b"ACL not found")
        ok = [anon.call("GET", "/v1/health/service/web", {"token": "s3cret"}),
              anon.call("GET", "/v1/health/service/web", headers={"X-Consul-Token": "s3cret"}),
              anon.call("GET", "/v1/health/service/web",
                        headers={"Authorization": "Bearer s3cret"})]
        self.assertEqual([r[0] for r in ok], [200, 200, 200])
        self.assertEqual(anon.call("GET", "/_fake/state")[0], 200)  # control needs no token


class FakeConsulCliTest(unittest.TestCase):
    def test_cli_ready_and_sigterm(self):
        p = subprocess.Popen([sys.executable or "/usr/bin/python3",
                              os.path.join(HERE, "fake_consul.py"), "--port", "0",
                              "--acl-token", "tok"],
                             stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
        try:
            r, _, _ = select.select([p.stdout], [], [], 10)
            line = p.stdout.readline().decode() if r else ""
            self.assertRegex(line, r"^ready \d+\n$")
            port = int(line.split()[1])
            c = ConsulClient(port, token="tok")
            c.register(svc("web-1"))
            idx = c.index("web")
            result = {}
            t = threading.Thread(target=lambda: result.setdefault(
                "r", c.health("web", index=idx, wait="30s")), daemon=True)
            t.start()
            # SIGTERM only once the blocking query is held by the server (bounded wait: a
            # fixed sleep raced with a busy machine).
            ctl = ConsulClient(port)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                if any(r.get("params", {}).get("index") for r in ctl.requests(path="/v1/health")):
                    break
                time.sleep(0.05)
            # No settling sleep: a query logged but not yet waiting sees stopping at once, and
            # stop() lets every query being answered finish before the process exits.
            p.send_signal(signal.SIGTERM)
            self.assertEqual(p.wait(10), 0)
            t.join(5)
            self.assertEqual(result["r"][0], 200)  # the waiting query was answered
        finally:
            if p.poll() is None:
                p.kill()
                p.wait(5)
            p.stdout.close()


if __name__ == "__main__":
    unittest.main()
