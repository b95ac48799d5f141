# SPDX-License-Identifier: MIT
"""HTTP/1.1 proxying through keel: forwarding, headers, keep-alive, framing, big bodies."""

import hashlib
import os
import re
import threading
import time
import unittest

from keeltest import (KeelTestCase, build_request, chunked_body, cluster,
                      http_listener, keel_is_sanitized, keel_yaml, pattern_chunks,
                      pattern_sha256, sha256)

HOP_BY_HOP = ("connection", "keep-alive", "proxy-connection", "te", "upgrade", "x-secret-hop")


class Http1ProxyTest(KeelTestCase):
    def setUp(self):
        super().setUp()
        self.be = self.start_backend("b1")
        self.port = self.free_port()
        admin = self.free_port()
        self.start_keel(keel_yaml(
            [http_listener(self.port, [{"cluster": "app"}])],
            [cluster("app", [self.be.addr])], admin))

    def backend_headers(self, resp):
        """Headers the backend saw, as a list of [name, value], from its JSON echo."""
        return resp.json()["headers"]

    @staticmethod
    def hvals(headers, name):
        return [v for k, v in headers if k.lower() == name.lower()]

    def test_basic_get(self):
        c = self.client(self.port)
        r = c.get("/hello?x=1")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("X-Backend-Id"), "b1")
        j = r.json()
        self.assertEqual(j["method"], "GET")
        self.assertEqual(j["target"], "/hello?x=1")
        self.assertEqual(j["body_len"], 0)
        # The access log line names status, cluster, endpoint and request id.
        rid = self.hvals(j["headers"], "X-Request-Id")
        self.assertEqual(len(rid), 1, j["headers"])
        self.keel.wait_log(r"req_id=" + re.escape(rid[0]))
        text = self.keel.log_text()
        access = [ln for ln in text.splitlines() if "req_id=" + rid[0] in ln]
        self.assertEqual(len(access), 1, "no single access line for req_id=%s" % rid[0])
        self.assertIn("status=200", access[0])
        self.assertIn("cluster=app", access[0])
        self.assertIn("endpoint=" + self.be.addr, access[0])

    def test_forwarded_headers(self):
        c = self.client(self.port)
        r = c.get("/fwd", [("X-Request-Id", "rid-abc-123"),
                           ("X-Forwarded-For", "10.1.2.3")], host="svc.example.org")
        self.assertEqual(r.status, 200)
        h = self.backend_headers(r)
        self.assertEqual(self.hvals(h, "X-Request-Id"), ["rid-abc-123"])
        xff = ", ".join(self.hvals(h, "X-Forwarded-For"))
        self.assertRegex(xff, r"^10\.1\.2\.3\s*,\s*127\.0\.0\.1$")
        self.assertEqual(self.hvals(h, "X-Forwarded-Proto"), ["http"])
        self.assertEqual(self.hvals(h, "X-Forwarded-Host"), ["svc.example.org"])
        self.assertEqual(self.hvals(h, "Host"), ["svc.example.org"])
        # The client got a response; the request id is the one it sent.
        self.assertIn(r.header("X-Backend-Id"), ("b1",))

        # Without X-Request-Id keel generates one, different per request.
        ids = []
        for _ in range(2):
            r = c.get("/fwd2")
            h = self.backend_headers(r)
            self.assertEqual(self.hvals(h, "X-Forwarded-For"), ["127.0.0.1"])
            rid = self.hvals(h, "X-Request-Id")
            self.assertEqual(len(rid), 1, h)
            self.assertRegex(rid[0], r"^\S{8,}$")
            ids.append(rid[0])
        self.assertNotEqual(ids[0], ids[1])

    def test_hop_by_hop_removed(self):
        c = self.client(self.port)
        r = c.get("/hop", [("Connection", "keep-alive, X-Secret-Hop"),
                           ("Keep-Alive", "timeout=5"), ("TE", "trailers"),
                           ("Proxy-Connection", "keep-alive"), ("X-Secret-Hop", "1"),
                           ("X-End-To-End", "kept")])
        self.assertEqual(r.status, 200)
        log = [e for e in self.be.log() if e["target"] == "/hop"]
        self.assertEqual(len(log), 1)
        names = {k.lower() for k, _ in log[0]["headers"]}
        for hop in HOP_BY_HOP:
            self.assertNotIn(hop, names, "hop-by-hop header %s forwarded" % hop)
        self.assertIn("x-end-to-end", names)
        # Still keep-alive towards the client.
        self.assertEqual(c.get("/after").status, 200)

    def test_keepalive_reuses_upstream_connections(self):
        c = self.client(self.port)
        conns = set()
        for i in range(20):
            r = c.get("/ka/%d" % i)
            self.assertEqual(r.status, 200)
            conns.add(r.header("X-Backend-Conn"))
        self.assertLessEqual(len(conns), 2, "upstream connections used: %s" % sorted(conns))

    def test_backend_connection_close_not_reused(self):
        # The backend answers with Connection: close and closes: keel must not send the next
        # request on that dead upstream connection; the client connection stays open.
        c = self.client(self.port)
        for i in range(10):
            path = "/cc/%d?close=%d" % (i, i % 2)
            r = c.exchange("POST", path, [], b"payload %d" % i)
            self.assertEqual(r.status, 200, "request %d: %r" % (i, r))
            self.assertEqual(r.json()["target"], path)

    def test_upstream_idle_close_is_survived(self):
        # Real servers close idle keep-alive connections; the next request (GET or POST)
        # must still succeed, not fail with 502 on the stale pooled connection.
        be = self.start_backend("idle", args=["--idle-timeout", "0.3"])
        port = self.free_port()
        self.start_keel(keel_yaml([http_listener(port, [{"cluster": "app"}])],
                                  [cluster("app", [be.addr])], self.free_port()), name="keel2")
        c = self.client(port)
        conns = set()
        for i, method in enumerate(["GET", "GET", "POST", "POST", "GET"]):
            r = c.exchange(method, "/idle/%d" % i, [], b"body" if method == "POST" else b"")
            self.assertEqual(r.status, 200, "%s after idle close: %r" % (method, r))
            conns.add(r.header("X-Backend-Conn"))
            time.sleep(0.8)
        self.assertEqual(len(conns), 5, "the backend did not idle-close (test setup)")

    def test_http10_client(self):
        c = self.client(self.port)
        c.send(b"GET /old HTTP/1.0\r\n\r\n")
        r = c.read_response()
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json()["target"], "/old")
        self.assertTrue(c.wait_closed(3), "HTTP/1.0 without keep-alive left open")

    def test_chunked_request_and_response(self):
        c = self.client(self.port)
        rnd = os.urandom(300000)
        pieces = [rnd[:1], rnd[1:5000], rnd[5000:70000], rnd[70000:]]
        body = chunked_body(pieces)
        # Send from a thread: /echo streams back while the body is still arriving.
        c.request("POST", "/echo", [("Transfer-Encoding", "chunked")])
        t = threading.Thread(target=c.send, args=(body,), daemon=True)
        t.start()
        r = c.read_response("POST")
        t.join(10)
        self.assertEqual(r.status, 200)
        self.assertTrue(r.chunked, "response to a chunked echo is not chunked: %s" % r.headers)
        self.assertIsNone(r.header("Content-Length"))
        self.assertEqual(sha256(r.body), sha256(rnd))

        # The backend sees a chunked request with exactly these bytes.
        r = c.exchange("POST", "/sink", [("Transfer-Encoding", "chunked")],
                       chunked_body([b"abc", b"defgh" * 1000]))
        j = r.json()
        self.assertTrue(j["chunked"])
        self.assertEqual(j["body_len"], 3 + 5000)
        self.assertEqual(j["body_sha256"], sha256(b"abc" + b"defgh" * 1000))

        # A chunked response from the backend reaches the client chunked and exact.
        r = c.get("/bytes?n=1000003&chunked=1")
        self.assertEqual(r.status, 200)
        self.assertTrue(r.chunked)
        self.assertEqual(sha256(r.body), pattern_sha256(1000003))
        # Connection still in sync.
        self.assertEqual(c.get("/x").status, 200)

    def test_bodies_are_streamed(self):
        # The echo of the first chunk comes back before the client has sent the rest: keel
        # neither waits for the whole request body nor for the whole response body.
        c = self.client(self.port, timeout=5)

        def read_chunk_data(n):
            """Reads chunks (any sizes keel chooses) until n data bytes arrived."""
            out = b""
            while len(out) < n:
                size = int(c.read_until(b"\r\n").split(b";")[0], 16)
                self.assertGreater(size, 0, "response ended early")
                out += c.read_exact(size)
                self.assertEqual(c.read_exact(2), b"\r\n")
            return out

        c.request("POST", "/echo", [("Transfer-Encoding", "chunked")])
        c.send(b"5\r\nfirst\r\n")
        head = c.read_until(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 200"), head)
        self.assertIn(b"transfer-encoding: chunked", head.lower())
        self.assertEqual(read_chunk_data(5), b"first")
        c.send(b"6\r\nsecond\r\n")
        self.assertEqual(read_chunk_data(6), b"second")
        c.send(b"0\r\n\r\n")
        self.assertEqual(c.read_until(b"\r\n"), b"0\r\n")
        self.assertEqual(c.read_until(b"\r\n"), b"\r\n")
        self.assertEqual(c.get("/next").status, 200)

    def test_content_length_echo(self):
        c = self.client(self.port)
        rnd = os.urandom(200000)
        c.request("POST", "/echo", [("Content-Length", str(len(rnd)))])
        t = threading.Thread(target=c.send, args=(rnd,), daemon=True)
        t.start()
        r = c.read_response("POST")
        t.join(10)
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("Content-Length"), str(len(rnd)))
        self.assertEqual(sha256(r.body), sha256(rnd))

    def test_head_204_304_have_no_body(self):
        c = self.client(self.port)
        r = c.exchange("HEAD", "/head")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body, b"")
        r = c.exchange("HEAD", "/bytes?n=5000&chunked=1")
        self.assertEqual(r.status, 200)
        r = c.get("/status?code=204")
        self.assertEqual(r.status, 204)
        r = c.get("/status?code=304")
        self.assertEqual(r.status, 304)
        # If keel had sent any body bytes, this response would not parse or would mismatch.
        r = c.get("/after-empty")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json()["target"], "/after-empty")
        c.settimeout(0.5)
        with self.assertRaises(OSError):  # nothing extra pending on the connection
            c.sock.recv(1)

    def test_pipelining(self):
        c = self.client(self.port)
        c.send(build_request("GET", "/sleep?ms=300", [("Host", "a")]) +
               build_request("POST", "/p2", [("Host", "a"), ("Content-Length", "5")], b"hello") +
               build_request("GET", "/p3", [("Host", "a")]))
        r1 = c.read_response()
        r2 = c.read_response("POST")
        r3 = c.read_response()
        self.assertEqual((r1.status, r1.body), (200, b"slept 300\n"))
        self.assertEqual(r2.json()["target"], "/p2")
        self.assertEqual(r2.json()["body_sha256"], sha256(b"hello"))
        self.assertEqual(r3.json()["target"], "/p3")

    def test_expect_100_continue(self):
        c = self.client(self.port)
        body = os.urandom(50000)
        c.request("POST", "/upload", [("Expect", "100-continue"),
                                      ("Content-Length", str(len(body)))])
        c.settimeout(5)
        interim = c.read_response("POST", skip_1xx=False)
        self.assertEqual(interim.status, 100, "expected 100 Continue before sending the body")
        c.send(body)
        r = c.read_response("POST")
        self.assertEqual(r.status, 200)
        j = r.json()
        self.assertEqual(j["body_sha256"], sha256(body))
        self.assertEqual(self.hvals(j["headers"], "Expect"), ["100-continue"])

    def test_100mb_upload(self):
        n = 100 * 1024 * 1024
        c = self.client(self.port, timeout=60)
        c.request("POST", "/big-upload", [("Content-Length", str(n))])
        for piece in pattern_chunks(n, chunk=1 << 20):
            c.send(piece)
        r = c.read_response("POST")
        self.assertEqual(r.status, 200)
        j = r.json()
        self.assertEqual(j["body_len"], n)
        self.assertEqual(j["body_sha256"], pattern_sha256(n))
        self.assert_bounded_memory()

    def test_100mb_download(self):
        n = 100 * 1024 * 1024
        c = self.client(self.port, timeout=60)
        h = hashlib.sha256()
        r = c.get("/bytes?n=%d" % n, sink=h.update)
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body_len, n)
        self.assertEqual(h.hexdigest(), pattern_sha256(n))
        h = hashlib.sha256()
        n2 = 20 * 1024 * 1024 + 7
        r = c.get("/bytes?n=%d&chunked=1" % n2, sink=h.update)
        self.assertEqual(r.status, 200)
        self.assertEqual(h.hexdigest(), pattern_sha256(n2))
        self.assert_bounded_memory()

    def assert_bounded_memory(self):
        """keel streams: its peak RSS stays far below the 100 MB that went through."""
        if keel_is_sanitized():
            return
        with open("/proc/%d/status" % self.keel.proc.pid) as f:
            m = re.search(r"VmHWM:\s+(\d+) kB", f.read())
        self.assertLess(int(m.group(1)), 64 * 1024, "keel peak RSS %s kB" % m.group(1))


if __name__ == "__main__":
    unittest.main()
