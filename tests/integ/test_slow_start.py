# SPDX-License-Identifier: MIT
"""Slow start: an instance that joins after keel's first Consul answer ramps from a floor to its
full weight over the window; the instances keel started with never ramp."""

import json
import time
import unittest

from keeltest import KeelTestCase, http_listener, keel_yaml, wait_for


class SlowStartTest(KeelTestCase):
    def test_new_instance_ramps_up(self):
        consul = self.start_consul()
        b1, b2 = self.start_backend("old"), self.start_backend("new")

        def reg(sid, b):
            consul.register({"ID": sid, "Name": "api", "Address": "127.0.0.1",
                             "Port": int(b.addr.split(":")[1]),
                             "Weights": {"Passing": 10, "Warning": 1}})
        reg("api-old", b1)
        port, admin = self.free_port(), self.free_port()
        k = self.start_keel(keel_yaml(
            [http_listener(port, [{"cluster": "api"}])],
            [{"name": "api", "discovery": "consul", "service": "api",
              "slow_start": {"window": "4s", "min_weight_percent": 10}}], admin, workers=1,
            extra={"discovery_debounce": "20ms",
                   "consul": {"address": "http://%s" % consul.addr, "wait": "5s",
                              "min_interval": "100ms"}}))
        c = self.client(port)
        wait_for(lambda: c.get("/x").header("X-Backend-Id") == "old", timeout=10,
                 what="first instance serving")

        def endpoint(addr):
            for cl in json.loads(k.admin("/v1/clusters").body)["clusters"]:
                for e in cl["endpoints"]:
                    if e["address"] == addr:
                        return e
            return None
        # Present from the start: full weight, no ramp.
        self.assertEqual(endpoint(b1.addr)["weight"], 10)

        reg("api-new", b2)
        wait_for(lambda: endpoint(b2.addr) is not None, timeout=10, what="new instance seen")
        t0 = time.monotonic()
        e = endpoint(b2.addr)
        self.assertLess(e["weight"], 10)
        self.assertIn("slow start", e["reason"])
        # Sequential requests: the split follows the weights (equal in-flight counts).
        early = [c.get("/x").header("X-Backend-Id") for _ in range(60)]
        wait_for(lambda: time.monotonic() - t0 > 5.0, timeout=10, what="window to pass")
        self.assertEqual(endpoint(b2.addr)["weight"], 10)
        late = [c.get("/x").header("X-Backend-Id") for _ in range(60)]
        early_share = early.count("new") / len(early)
        late_share = late.count("new") / len(late)
        self.assertLess(early_share, 0.35, early)
        self.assertGreater(late_share, 0.4, late)
        self.assertGreater(late_share, early_share + 0.15)


if __name__ == "__main__":
    unittest.main()
