# SPDX-License-Identifier: MIT
"""keel restarted during a Consul outage routes from its state file, then switches to live
answers when Consul is back (real keel binary, fake_consul.py)."""

import json
import os
import time
import unittest

from keeltest import wait_for
from test_consul_discovery import ConsulKeelCase, instance


class ConsulStateFileTest(ConsulKeelCase):

    def read_state(self, path):
        try:
            with open(path) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    def test_restart_during_outage_routes_from_state_file(self):
        fc = self.start_consul()
        consul_port = fc.port
        b = self.start_backends(["s1", "s2"])
        fc.register(instance("s1", b["s1"], weights={"Passing": 2, "Warning": 1}))
        fc.register(instance("s2", b["s2"]))
        state = os.path.join(self.tmp, "state", "keel-state.json")
        os.mkdir(os.path.dirname(state))
        cfg = self.consul_yaml(fc, state_file=state)

        # 1. keel learns the endpoints from Consul and saves them (within about a second).
        k1 = self.start_keel(cfg, name="keel1")
        self.wait_ids(k1, ["node1/s1", "node1/s2"])
        self.assertEqual(set(self.hits(6)), {"s1", "s2"})

        def saved_ids():
            st = self.read_state(state)
            try:
                return sorted(e["id"] for e in st["clusters"]["api"]["endpoints"])
            except (TypeError, KeyError):
                return None
        wait_for(lambda: saved_ids() == ["node1/s1", "node1/s2"], 10,
                 what="both endpoints in the state file")
        self.assertEqual(sorted(os.listdir(os.path.dirname(state))), ["keel-state.json"],
                         "temporary files left next to the state file")
        self.assertEqual(k1.stop(), 0)

        # 2. Consul goes away; keel starts again and routes to the saved endpoints.
        fc.kill()
        k2 = self.start_keel(cfg, name="keel2")
        self.assertEqual(set(self.hits(10)), {"s1", "s2"})
        e = self.eps(k2)
        self.assertEqual(set(e), {"node1/s1", "node1/s2"})
        self.assertEqual(e["node1/s1"]["weight"], 2)
        for v in e.values():
            self.assertEqual(v["state"], "healthy", v)
            self.assertTrue(v["reason"].endswith("(from state file)"), v)
        d = self.cluster_info(k2)["discovery"]
        self.assertTrue(d["from_state_file"], d)
        self.assertEqual(d["answers"], 0)
        self.assertIsNone(d["seconds_since_success"])
        d = wait_for(lambda: (lambda x: x if x["errors"] >= 1 else None)(
            self.cluster_info(k2)["discovery"]), 10, what="keel2 failing to reach Consul")
        self.assertIn("connect", d["last_error"].lower())
        self.assertTrue(d["from_state_file"], d)
        self.assertIn("endpoints from state file", k2.log_text())
        time.sleep(0.5)  # a few failed rounds: still routing
        self.assertEqual(set(self.hits(6)), {"s1", "s2"})

        # 3. Consul is back with the same instances: keel switches to live answers.
        fc = self.start_consul(port=consul_port)
        fc.register(instance("s1", b["s1"], weights={"Passing": 2, "Warning": 1}))
        fc.register(instance("s2", b["s2"]))
        d = wait_for(lambda: (lambda x: x if not x["from_state_file"] else None)(
            self.cluster_info(k2)["discovery"]), 20, what="a live answer from Consul")
        self.assertGreaterEqual(d["answers"], 1)
        self.assertEqual(d["last_error"], "")
        e = self.wait_eps(k2, lambda e: all(v["reason"] == "passing" for v in e.values()),
                          "live reasons (no longer from the state file)")
        self.assertEqual(set(e), {"node1/s1", "node1/s2"})
        self.assertEqual(set(self.hits(6)), {"s1", "s2"})
        # ... and follows Consul from now on.
        fc.deregister("s2")
        self.wait_ids(k2, ["node1/s1"])
        self.assertEqual(self.hits(4), {"s1": 4})
        wait_for(lambda: saved_ids() == ["node1/s1"], 10, what="the state file updated")


if __name__ == "__main__":
    unittest.main()
