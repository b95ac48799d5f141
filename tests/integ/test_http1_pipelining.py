# SPDX-License-Identifier: MIT
"""Deep pipelining: thousands of requests in one write are answered in order, and keel neither
recurses per buffered request nor disturbs other clients."""

import unittest

from keeltest import KeelTestCase, build_request, cluster, http_listener, keel_yaml


class PipeliningTest(KeelTestCase):
    def setUp(self):
        super().setUp()
        self.be = self.start_backend("p1")
        self.port = self.free_port()
        self.admin = self.free_port()
        routes = [{"match": {"path_prefix": "/api/"}, "cluster": "api"}]  # no catch-all: 404
        self.k = self.start_keel(keel_yaml([http_listener(self.port, routes)],
                                           [cluster("api", [self.be.addr])], self.admin,
                                           workers=1, extra={"access_log": False}))

    def test_thousands_of_pipelined_404s(self):
        # Each answer is generated synchronously by keel: a regression here overflowed the
        # worker's stack (one recursion per buffered request).
        req = build_request("GET", "/nowhere", [("Host", "a")])
        n = 60000 // len(req)
        c = self.client(self.port, timeout=20)
        c.send(req * n)
        for i in range(n):
            r = c.read_response()
            self.assertEqual(r.status, 404, "response %d of %d" % (i, n))
        # The same connection still works afterwards.
        self.assertEqual(c.get("/api/after").status, 200)
        # And so does a fresh one.
        self.assertEqual(self.client(self.port).get("/api/fresh").status, 200)

    def test_pipelined_requests_answered_in_order(self):
        n = 300
        c = self.client(self.port, timeout=20)
        c.send(b"".join(build_request("GET", "/api/%d" % i, [("Host", "a")]) for i in range(n)))
        for i in range(n):
            r = c.read_response()
            self.assertEqual(r.status, 200)
            self.assertEqual(r.json()["target"], "/api/%d" % i)
        self.assertEqual(len(self.be.log()), n)

    def test_mixed_pipeline_of_404_and_proxied(self):
        c = self.client(self.port, timeout=20)
        targets = ["/api/a", "/no", "/api/b", "/no", "/no", "/api/c"]
        c.send(b"".join(build_request("GET", t, [("Host", "a")]) for t in targets))
        for t in targets:
            r = c.read_response()
            if t.startswith("/api/"):
                self.assertEqual((r.status, r.json()["target"]), (200, t))
            else:
                self.assertEqual(r.status, 404)

    def test_half_closed_client_still_gets_its_response(self):
        # Like HAProxy: a client that shuts down its sending side after the request (nc -q,
        # some HTTP/1.0 tools) is answered, then the connection closes.
        import socket
        s = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        self.addCleanup(s.close)
        s.sendall(build_request("GET", "/api/sleep?ms=300", [("Host", "a")]))
        s.shutdown(socket.SHUT_WR)
        data = b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            data += d
        self.assertTrue(data.startswith(b"HTTP/1.1 200"), data[:100])
        self.assertIn(b"slept 300", data)


if __name__ == "__main__":
    unittest.main()
