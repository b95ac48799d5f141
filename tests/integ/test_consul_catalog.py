# SPDX-License-Identifier: MIT
"""Clusters from Consul catalog tags: a service tagged "keel" becomes a cluster with the route
its keel.route tag names; during a deploy the newest registration's tags win and the
disagreement is reported, never a dropped cluster."""

import json
import unittest

from keeltest import KeelTestCase, keel_yaml, wait_for


class ConsulCatalogTest(KeelTestCase):
    def setUp(self):
        super().setUp()
        self.consul = self.start_consul()
        self.b1 = self.start_backend("w1")
        self.b2 = self.start_backend("w2")
        self.port, self.admin = self.free_port(), self.free_port()
        cfg = keel_yaml(
            [{"name": "web", "address": "127.0.0.1:%d" % self.port, "protocol": "http",
              "routes": [{"match": {"path": "/fixed"}, "cluster": "fixed"}]}],
            [{"name": "fixed", "endpoints": [{"address": self.b1.addr}]}], self.admin,
            extra={"discovery_debounce": "50ms",
                   "consul": {"address": "http://%s" % self.consul.addr, "wait": "5s",
                              "min_interval": "100ms", "catalog": True}})
        self.k = self.start_keel(cfg)

    def reg(self, sid, backend, tags, meta=None):
        port = int(backend.addr.split(":")[1])
        body = {"ID": sid, "Name": "web", "Tags": tags, "Address": "127.0.0.1", "Port": port}
        if meta:
            body["Meta"] = meta
        self.consul.register(body)

    def status(self, path):
        r = self.client(self.port).get(path)
        return r.status, r.header("X-Backend-Id")

    def cluster(self, name):
        for c in json.loads(self.k.admin("/v1/clusters").body)["clusters"]:
            if c["name"] == name:
                return c
        return None

    def test_tagged_service_becomes_cluster_with_route(self):
        self.assertEqual(self.status("/web/a")[0], 404)
        self.reg("web-1", self.b2, ["keel", "keel.route=/web/", "keel.lb=round_robin"])
        wait_for(lambda: self.status("/web/a") == (200, "w2"), timeout=10,
                 what="/web/ routed to the catalog cluster")
        # The file's own route still works, and other paths are not captured.
        self.assertEqual(self.status("/fixed"), (200, "w1"))
        self.assertEqual(self.status("/other")[0], 404)
        c = self.cluster("web")
        self.assertEqual(c["lb"], "round_robin")
        self.assertTrue(c["discovery"]["from_catalog"])
        self.assertEqual(c["discovery"]["route"]["path_prefix"], "/web/")
        # Removing the tag removes the cluster and its route.
        self.reg("web-1", self.b2, ["v1"])
        wait_for(lambda: self.status("/web/a")[0] == 404, timeout=10,
                 what="route gone once the keel tag is gone")
        self.assertIsNone(self.cluster("web"))

    def test_newest_registration_wins_and_conflict_is_reported(self):
        self.reg("web-1", self.b1, ["keel", "keel.route=/old/"])
        wait_for(lambda: self.status("/old/x")[0] == 200, timeout=10, what="old route")
        # A new instance registers later with a different route: it is the newest.
        self.reg("web-2", self.b2, ["keel", "keel.route=/new/"])
        wait_for(lambda: self.status("/new/x")[0] == 200, timeout=10, what="new route")
        c = self.cluster("web")
        self.assertEqual(c["discovery"]["tag_conflicts"], 1)
        self.assertEqual(c["discovery"]["tag_conflict_example"], "node1/web-1")
        # Both instances keep serving the (single) cluster: nothing was dropped.
        seen = {self.status("/new/x")[1] for _ in range(20)}
        self.assertEqual(seen, {"w1", "w2"})
        metrics = self.k.admin("/metrics").body.decode()
        self.assertIn('keel_discovery_tag_conflicts{cluster="web"} 1', metrics)

    def test_invalid_tags_are_reported_not_fatal(self):
        self.reg("web-1", self.b1, ["keel", "keel.route=/v/", "keel.lb=fastest"])
        wait_for(lambda: self.status("/v/x")[0] == 200, timeout=10, what="route despite bad tag")
        c = self.cluster("web")
        self.assertIn("keel.lb=fastest", c["discovery"]["tag_errors"])
        self.assertEqual(c["lb"], "weighted_least_conn")

    def test_protocol_tag_switches_the_upstream_protocol(self):
        # HTTP/1.1 first (no keel.protocol tag)...
        self.reg("web-1", self.b1, ["keel", "keel.route=/p/"])
        wait_for(lambda: self.status("/p/x") == (200, "w1"), timeout=10, what="http1 route")
        self.assertEqual(self.cluster("web")["protocol"], "http1")
        # ...then the service moves to an HTTP/2-only server tagged keel.protocol=h2: keel must
        # speak h2c to it (an HTTP/1.1 request would get nothing but a GOAWAY).
        h2b = self.start_h2("h2b")
        self.reg("web-1", h2b, ["keel", "keel.route=/p/", "keel.protocol=h2"])
        wait_for(lambda: self.status("/p/x") == (200, "h2b"), timeout=10,
                 what="h2 backend served through the catalog cluster")
        c = self.cluster("web")
        self.assertEqual(c["protocol"], "h2")
        self.assertEqual(c["discovery"]["tag_errors"], "")
        seen = h2b.stats()["requests"]
        self.assertTrue(seen and seen[-1]["path"] == "/p/x", seen)
        self.assertNotIn("te", [k for k, _ in seen[-1]["headers"]])
        # keel.protocol=grpc: still h2, now with "te: trailers" as gRPC servers require.
        self.reg("web-1", h2b, ["keel", "keel.route=/p/", "keel.protocol=grpc"])
        wait_for(lambda: self.cluster("web")["protocol"] == "grpc", timeout=10, what="grpc")
        r = self.client(self.port).get("/p/g")
        self.assertEqual((r.status, r.header("X-Backend-Id")), (200, "h2b"))
        last = h2b.stats()["requests"][-1]
        self.assertEqual(last["path"], "/p/g")
        self.assertIn(["te", "trailers"], [list(h) for h in last["headers"]])
        # tcp cannot be a catalog cluster's protocol: reported, and served as HTTP/1.1.
        self.reg("web-1", self.b2, ["keel", "keel.route=/p/", "keel.protocol=tcp"])
        # (The instance kept its ID at a new address: connections pooled to the old one, from
        # the first step, must not be reused.)
        wait_for(lambda: self.status("/p/x") == (200, "w2"), timeout=10, what="back to http1")
        c = self.cluster("web")
        self.assertEqual(c["protocol"], "http1")
        self.assertIn("keel.protocol=tcp", c["discovery"]["tag_errors"])


if __name__ == "__main__":
    unittest.main()
