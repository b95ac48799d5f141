# SPDX-License-Identifier: MIT
"""Limits, timeouts and upstream failures: the status codes keel answers with."""

import select
import socket
import time
import unittest

from keeltest import (KeelTestCase, Closed, cluster, http_listener, keel_yaml, wait_for)


class LimitsTest(KeelTestCase):
    def setUp(self):
        super().setUp()
        self.be = self.start_backend("b1")
        self.port = self.free_port()
        self.dead_port = self.free_port()  # nothing listens here
        routes = [
            {"match": {"path_prefix": "/app/"}, "cluster": "app"},
            {"match": {"path_prefix": "/dead/"}, "cluster": "dead"},
            {"match": {"path_prefix": "/drained/"}, "cluster": "drained"},
        ]
        clusters = [
            cluster("app", [self.be.addr], timeouts={"connect": "1s", "response": "2s"}),
            cluster("dead", [self.dead_port], timeouts={"connect": "1s", "response": "1s"}),
            cluster("drained", [self.be.addr], weights=[0]),
        ]
        self.start_keel(keel_yaml(
            [http_listener(self.port, routes,
                           limits={"max_request_line": "1KiB", "max_header_size": "4KiB",
                                   "max_headers": 20, "max_body_size": "1MiB"},
                           timeouts={"header": "1s", "keepalive": "60s", "idle": "60s"})],
            clusters, self.free_port()))

    # -- helpers ------------------------------------------------------------------
    def assert_fresh_ok(self):
        c = self.client(self.port)
        r = c.get("/app/ok")
        self.assertEqual(r.status, 200, "a fresh request after the error failed")
        self.assertEqual(r.header("X-Backend-Id"), "b1")
        c.close()

    def raw(self, data, method="GET", timeout=5.0):
        c = self.client(self.port, timeout=timeout)
        c.send(data)
        return c, c.read_response(method)

    def assert_keel_error(self, r, status):
        self.assertEqual(r.status, status, r)
        self.assertIsNone(r.header("X-Backend-Id"), "the error came from the backend")
        ctype = (r.header("Content-Type") or "").lower()
        self.assertTrue(ctype.startswith("text/plain"), "Content-Type %r" % ctype)
        self.assertLess(len(r.body), 1024)

    # -- client-side limits -----------------------------------------------------
    def test_414_request_line_too_long(self):
        c, r = self.raw(b"GET /app/" + b"a" * 2000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assert_keel_error(r, 414)
        self.assertTrue(c.wait_closed(5), "connection not closed after 414")
        self.assertEqual(self.be.log(), [])
        self.assert_fresh_ok()

    def test_431_header_block_too_large(self):
        big = b"".join(b"X-Big-%d: %s\r\n" % (i, b"v" * 2000) for i in range(3))
        c, r = self.raw(b"GET /app/ HTTP/1.1\r\nHost: x\r\n" + big + b"\r\n")
        self.assert_keel_error(r, 431)
        self.assertTrue(c.wait_closed(5), "connection not closed after 431")
        self.assertEqual(self.be.log(), [])
        self.assert_fresh_ok()

    def test_431_too_many_headers(self):
        many = b"".join(b"X-H%d: v\r\n" % i for i in range(30))
        c, r = self.raw(b"GET /app/ HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n")
        self.assert_keel_error(r, 431)
        self.assertTrue(c.wait_closed(5), "connection not closed after 431")
        self.assertEqual(self.be.log(), [])
        self.assert_fresh_ok()

    def test_413_body_too_large(self):
        # Content-Length over the limit: answered before any body byte is sent.
        c, r = self.raw(b"POST /app/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 2097152\r\n\r\n",
                        method="POST")
        self.assert_keel_error(r, 413)
        self.assertEqual(self.be.log(), [], "upstream contacted for an oversized body")
        self.assert_fresh_ok()
        # Exactly at the limit is fine.
        c = self.client(self.port)
        r = c.exchange("POST", "/app/upload", [], b"z" * (1024 * 1024))
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json()["body_len"], 1024 * 1024)

    def test_408_header_timeout(self):
        c = self.client(self.port, timeout=8)
        t0 = time.monotonic()
        c.send(b"GET /app/slowloris HTTP/1.1\r\nHost: x\r\nX-Partial: ")
        r = c.read_response()
        elapsed = time.monotonic() - t0
        self.assert_keel_error(r, 408)
        self.assertGreater(elapsed, 0.7)
        self.assertLess(elapsed, 6.0)  # header timeout 1 s (+ slack), not the client's 8 s
        self.assertTrue(c.wait_closed(3), "connection not closed after 408")
        self.assertEqual(self.be.log(), [])
        self.assert_fresh_ok()

    # -- routing / balancing failures --------------------------------------------
    def test_404_no_route(self):
        c, r = self.raw(b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assert_keel_error(r, 404)
        self.assert_fresh_ok()

    def test_503_no_eligible_endpoint(self):
        c, r = self.raw(b"GET /drained/x HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assert_keel_error(r, 503)
        self.assertTrue(r.header("X-Keel-Reason"), "503 without X-Keel-Reason: %s" % r.headers)
        self.assertEqual(self.be.log(), [])
        self.assert_fresh_ok()

    # -- upstream failures ----------------------------------------------------------
    def test_502_connection_refused(self):
        c, r = self.raw(b"GET /dead/x HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assert_keel_error(r, 502)
        self.assert_fresh_ok()

    def test_502_upstream_closes_without_response(self):
        c, r = self.raw(b"GET /app/close HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assert_keel_error(r, 502)
        self.assert_fresh_ok()

    def test_502_garbage_response(self):
        c, r = self.raw(b"GET /app/garbage HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assert_keel_error(r, 502)
        self.assert_fresh_ok()

    def test_truncated_response_body(self):
        # The backend sends a head with Content-Length: 100, 10 bytes, then closes. keel may
        # answer 502 (if it has not relayed the head yet) or relay the head and then close
        # the connection early; it must never present the response as complete, nor hang.
        c = self.client(self.port, timeout=5)
        c.send(b"GET /app/half HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            r = c.read_response()
        except Closed:
            r = None  # head relayed, body cut short: the client can tell
        if r is not None:
            self.assert_keel_error(r, 502)
        self.assert_fresh_ok()

    def test_504_response_timeout(self):
        slow = self.client(self.port, timeout=10)
        t0 = time.monotonic()
        slow.send(b"GET /app/sleep?ms=6000 HTTP/1.1\r\nHost: x\r\n\r\n")
        # While that request waits at the backend, another connection is served: its answer
        # comes while the slow one still has nothing (its 504 is due 2 s after forwarding).
        wait_for(lambda: any(e["target"].startswith("/app/sleep") for e in self.be.log()), 10,
                 what="the slow request at the backend")
        self.assert_fresh_ok()
        r_, _, _ = select.select([slow.sock], [], [], 0)
        self.assertEqual(r_, [], "the fresh request was answered only after the slow one")
        r = slow.read_response()
        elapsed = time.monotonic() - t0
        self.assert_keel_error(r, 504)
        self.assertGreater(elapsed, 1.8)  # response timeout 2 s
        self.assertLess(elapsed, 5.9, "504 came only after the backend answered")
        self.assert_fresh_ok()

    def test_504_connect_timeout(self):
        # A listener whose accept queue is full: further SYNs are dropped, connect() hangs.
        ls = socket.socket()
        self.addCleanup(ls.close)
        ls.bind(("127.0.0.1", 0))
        ls.listen(0)
        fillers = []
        for _ in range(4):
            f = socket.socket()
            f.setblocking(False)
            f.connect_ex(ls.getsockname())
            fillers.append(f)
            self.addCleanup(f.close)
        time.sleep(0.2)
        probe = socket.socket()
        self.addCleanup(probe.close)
        probe.settimeout(0.5)
        try:
            probe.connect(ls.getsockname())
            self.skipTest("kernel accepted beyond the backlog; cannot simulate connect timeout")
        except (socket.timeout, OSError):
            pass
        port = self.free_port()
        self.keel.stop()
        self.start_keel(keel_yaml(
            [http_listener(port, [{"cluster": "blackhole"}])],
            [cluster("blackhole", [ls.getsockname()[1]],
                     timeouts={"connect": "1s", "response": "1s"})],
            self.free_port()), name="keel2")
        c = self.client(port, timeout=15)
        t0 = time.monotonic()
        r = c.get("/x")
        elapsed = time.monotonic() - t0
        self.assert_keel_error(r, 504)
        self.assertGreater(elapsed, 0.8)
        self.assertLess(elapsed, 8.0)


if __name__ == "__main__":
    unittest.main()
