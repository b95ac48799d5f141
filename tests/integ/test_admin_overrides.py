# SPDX-License-Identifier: MIT
"""Runtime overrides on the admin address: an operator drains an endpoint or sets its weight;
keel applies it within the debounce, shows who set it and why, and forgets it on reset."""

import json
import unittest

from keeltest import Client, KeelTestCase, cluster, http_listener, keel_yaml, wait_for


class AdminOverrideTest(KeelTestCase):
    def setUp(self):
        super().setUp()
        self.b1, self.b2 = self.start_backend("b1"), self.start_backend("b2")
        self.port, self.admin = self.free_port(), self.free_port()
        self.k = self.start_keel(keel_yaml(
            [http_listener(self.port, [{"cluster": "c"}])],
            [cluster("c", [self.b1.addr, self.b2.addr], lb="round_robin")], self.admin,
            workers=1, extra={"discovery_debounce": "20ms"}))

    def post(self, path):
        c = Client(self.admin, timeout=5)
        try:
            return c.exchange("POST", path, [("Connection", "close")], host="127.0.0.1")
        finally:
            c.close()

    def state(self, addr):
        """The endpoint's admin view, once every worker routes with the published snapshot
        (else None, so wait_for keeps polling)."""
        doc = json.loads(self.k.admin("/v1/clusters").body)
        if doc["workers_generation"] != doc["generation"]:
            return None
        for c in doc["clusters"]:
            for e in c["endpoints"]:
                if e["address"] == addr:
                    return e
        return None

    def served(self, n=20):
        c = self.client(self.port)
        return [c.get("/x").header("X-Backend-Id") for _ in range(n)]

    def test_drain_and_undrain(self):
        r = self.post("/v1/endpoints/drain?cluster=c&endpoint=%s" % self.b1.addr)
        self.assertEqual(r.status, 200, r.body)
        wait_for(lambda: (self.state(self.b1.addr) or {}).get("state") == "draining", timeout=5,
                 what="drain applied")
        ep = self.state(self.b1.addr)
        self.assertEqual(ep["reason"], "drained by an operator")
        self.assertEqual(ep["source"], "operator")
        self.assertGreaterEqual(ep["since_seconds"], 0)
        self.assertEqual(self.state(self.b2.addr)["source"], "discovery")
        self.assertEqual(set(self.served()), {"b2"})
        self.k.wait_log(r"operator override: drained")
        r = self.post("/v1/endpoints/undrain?cluster=c&endpoint=%s" % self.b1.addr)
        self.assertEqual(r.status, 200)
        wait_for(lambda: (self.state(self.b1.addr) or {}).get("state") == "healthy", timeout=5,
                 what="undrain applied")
        self.assertEqual(set(self.served()), {"b1", "b2"})

    def test_weight_override_and_reset(self):
        # Address with its colon %-encoded, as a careful client sends it.
        ep = self.b2.addr.replace(":", "%3A")
        r = self.post("/v1/endpoints/weight?cluster=c&endpoint=%s&weight=0" % ep)
        self.assertEqual(r.status, 200, r.body)
        wait_for(lambda: (self.state(self.b2.addr) or {}).get("weight") == 0, timeout=5, what="weight 0")
        self.assertEqual(set(self.served()), {"b1"})
        r = self.post("/v1/endpoints/reset?cluster=c&endpoint=%s" % self.b2.addr)
        self.assertEqual(r.status, 200)
        wait_for(lambda: (self.state(self.b2.addr) or {}).get("weight") == 1, timeout=5, what="reset")
        self.assertEqual(set(self.served()), {"b1", "b2"})

    def test_bad_requests(self):
        self.assertEqual(self.post("/v1/endpoints/drain?cluster=c&endpoint=1.2.3.4:5").status,
                         404)
        self.assertEqual(self.post("/v1/endpoints/drain?cluster=nope&endpoint=%s"
                                   % self.b1.addr).status, 404)
        self.assertEqual(self.post("/v1/endpoints/drain?cluster=c").status, 400)
        self.assertEqual(self.post("/v1/endpoints/weight?cluster=c&endpoint=%s&weight=-3"
                                   % self.b1.addr).status, 400)
        self.assertEqual(self.post("/v1/endpoints/explode?cluster=c&endpoint=%s"
                                   % self.b1.addr).status, 404)
        self.assertEqual(self.k.admin("/v1/endpoints/drain?cluster=c&endpoint=x").status, 405)
        # Nothing changed.
        self.assertEqual(set(self.served()), {"b1", "b2"})


if __name__ == "__main__":
    unittest.main()
