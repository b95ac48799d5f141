# SPDX-License-Identifier: MIT
"""Sticky sessions by cookie: keel sets an opaque cookie naming the endpoint that served, sends
later requests carrying it there, and re-pins (with a new cookie) when that endpoint drains."""

import json
import unittest

from keeltest import Client, KeelTestCase, cluster, http_listener, keel_yaml, wait_for


class StickyTest(KeelTestCase):
    def setUp(self):
        super().setUp()
        self.bs = [self.start_backend("s%d" % i) for i in range(3)]
        self.port, self.admin = self.free_port(), self.free_port()
        c = cluster("c", [b.addr for b in self.bs], lb="round_robin")
        c["sticky"] = {"cookie": "KEEL_ID"}
        self.k = self.start_keel(keel_yaml([http_listener(self.port, [{"cluster": "c"}])], [c],
                                           self.admin, workers=2,
                                           extra={"discovery_debounce": "20ms"}))

    def get(self, cookie=None):
        h = [("Cookie", "other=1; KEEL_ID=%s" % cookie)] if cookie else []
        r = self.client(self.port).get("/x", h)
        self.assertEqual(r.status, 200)
        setc = r.header("Set-Cookie")
        return r.header("X-Backend-Id"), setc

    def test_pins_and_repins(self):
        backend, setc = self.get()
        self.assertIsNotNone(setc)
        self.assertRegex(setc, r"^KEEL_ID=[0-9a-f]{16}; Path=/; HttpOnly$")
        value = setc.split(";")[0].split("=", 1)[1]
        addr = [b.addr for b in self.bs if b.ident == backend][0]
        self.assertNotIn(addr.split(":")[1], value)  # opaque, not the address
        # Round-robin would spread these; the cookie keeps them on one endpoint, no new cookie.
        for _ in range(12):
            self.assertEqual(self.get(value), (backend, None))
        # Without the cookie, requests spread as usual.
        self.assertGreater(len({self.get()[0] for _ in range(9)}), 1)
        # Drain the pinned endpoint: the client moves and gets a new cookie.
        c = Client(self.admin, timeout=5)
        r = c.exchange("POST", "/v1/endpoints/drain?cluster=c&endpoint=%s" % addr,
                       [("Connection", "close")], host="127.0.0.1")
        c.close()
        self.assertEqual(r.status, 200)

        def adopted():
            d = json.loads(self.k.admin("/v1/clusters").body)
            return d["workers_generation"] == d["generation"] and any(
                e["state"] == "draining" for e in d["clusters"][0]["endpoints"])
        wait_for(adopted, timeout=5, what="drain adopted by every worker")
        moved, setc2 = self.get(value)
        self.assertNotEqual(moved, backend)
        self.assertIsNotNone(setc2)
        value2 = setc2.split(";")[0].split("=", 1)[1]
        self.assertNotEqual(value2, value)
        for _ in range(6):
            self.assertEqual(self.get(value2), (moved, None))

    def test_garbage_cookie_is_replaced(self):
        backend, setc = self.get("not-hex-at-all!!")
        self.assertIsNotNone(setc)


if __name__ == "__main__":
    unittest.main()
