# SPDX-License-Identifier: MIT
"""WebSocket upgrade through keel: 101 handshake relayed, then a byte tunnel."""

import os
import unittest

from keeltest import (KeelTestCase, cluster, http_listener, keel_yaml, ws_accept,
                      ws_handshake, ws_recv, ws_send)


class WebSocketTest(KeelTestCase):
    def setUp(self):
        super().setUp()
        self.be = self.start_backend("ws1")
        self.port = self.free_port()
        self.start_keel(keel_yaml(
            [http_listener(self.port, [{"cluster": "app"}])],
            [cluster("app", [self.be.addr])], self.free_port()))

    def test_handshake_and_echo(self):
        c = self.client(self.port)
        r, key = ws_handshake(c)
        self.assertEqual(r.status, 101)
        self.assertEqual(r.header("Sec-WebSocket-Accept"), ws_accept(key))
        self.assertEqual((r.header("Upgrade") or "").lower(), "websocket")
        self.assertIn("upgrade", (r.header("Connection") or "").lower())
        self.assertEqual(r.header("X-Backend-Id"), "ws1")

        # The backend received the upgrade headers (they are not stripped when upgrading).
        log = [e for e in self.be.log() if e["target"] == "/ws"]
        self.assertEqual(len(log), 1)
        hdrs = {k.lower(): v for k, v in log[0]["headers"]}
        self.assertEqual(hdrs.get("upgrade", "").lower(), "websocket")
        self.assertIn("upgrade", hdrs.get("connection", "").lower())
        self.assertEqual(hdrs.get("sec-websocket-key"), key)

        messages = [(1, "hello".encode()), (1, "ünïcödé ✓".encode()),
                    (2, os.urandom(200)), (2, os.urandom(70000)), (1, b""),
                    (2, bytes(range(256)) * 4), (1, b"x" * 125), (1, b"y" * 126)]
        for opcode, payload in messages:
            ws_send(c, opcode, payload)
            fin, op, data = ws_recv(c)
            self.assertTrue(fin)
            self.assertEqual(op, opcode)
            self.assertEqual(data, payload)

        # Several frames in one write come back in order.
        for i in range(5):
            ws_send(c, 1, b"burst %d" % i)
        for i in range(5):
            self.assertEqual(ws_recv(c)[2], b"burst %d" % i)

        # Close handshake: the close frame is echoed and the tunnel is torn down.
        ws_send(c, 8, (1000).to_bytes(2, "big"))
        fin, op, data = ws_recv(c)
        self.assertEqual(op, 8)
        self.assertEqual(data, (1000).to_bytes(2, "big"))
        self.assertTrue(c.wait_closed(5), "keel kept the client side open after the backend closed")

    def test_plain_requests_still_work_after_tunnel(self):
        c = self.client(self.port)
        r, _ = ws_handshake(c)
        self.assertEqual(r.status, 101)
        ws_send(c, 1, b"ping")
        self.assertEqual(ws_recv(c)[2], b"ping")
        c2 = self.client(self.port)
        r = c2.get("/plain")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json()["target"], "/plain")
        # The tunnel is still alive while other traffic flows.
        ws_send(c, 2, b"\x00\x01\x02")
        self.assertEqual(ws_recv(c)[2], b"\x00\x01\x02")

    def test_upgrade_refused_by_backend_is_plain_http(self):
        # No Sec-WebSocket-Key: the backend answers 400; keel relays it, no tunnel.
        c = self.client(self.port)
        r = c.get("/ws", [("Upgrade", "websocket"), ("Connection", "Upgrade")])
        self.assertEqual(r.status, 400)
        self.assertEqual(r.header("X-Backend-Id"), "ws1")
        c2 = self.client(self.port)
        self.assertEqual(c2.get("/ok").status, 200)


if __name__ == "__main__":
    unittest.main()
