# SPDX-License-Identifier: MIT
"""HTTP/1.1 edge cases: odd-but-legal clients (HTTP/1.0, absolute-form, pipelining) and
hostile ones (Connection-named headers, stalls, aborts, huge heads, slow readers, floods)."""

import hashlib
import re
import socket
import threading
import time
import unittest

from keeltest import (KeelTestCase, Client, Closed, build_request, chunked_body, cluster,
                      http_listener, keel_is_sanitized, keel_yaml, pattern_chunks,
                      pattern_sha256, sha256, wait_for)


def hvals(headers, name):
    return [v for k, v in headers if k.lower() == name.lower()]


def vm_rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        m = re.search(r"VmRSS:\s+(\d+) kB", f.read())
    return int(m.group(1))


def pattern_bytes(n):
    return b"".join(pattern_chunks(n))


class EarlyBackend:
    """A backend that answers 403 as soon as it has the request head, without reading the
    body, then closes its socket. fake_backend.py always reads the whole body first."""

    RESPONSE = (b"HTTP/1.1 403 Forbidden\r\nX-Backend-Id: early\r\nContent-Type: text/plain\r\n"
                b"Content-Length: 7\r\n\r\ndenied\n")

    def __init__(self):
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(16)
        self.port = self.lsock.getsockname()[1]
        self.heads = []
        self.lock = threading.Lock()
        self.stopped = False
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while not self.stopped:
            try:
                s, _ = self.lsock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(s,), daemon=True).start()

    def _one(self, s):
        try:
            s.settimeout(5)
            buf = b""
            while b"\r\n\r\n" not in buf:
                d = s.recv(65536)
                if not d:
                    return
                buf += d
            with self.lock:
                self.heads.append(buf.split(b"\r\n\r\n", 1)[0].decode("latin-1"))
            s.sendall(self.RESPONSE)
        except OSError:
            pass
        finally:
            s.close()

    def stop(self):
        self.stopped = True
        self.lsock.close()


class Http1EdgeTest(KeelTestCase):
    def setUp(self):
        super().setUp()
        self.b1 = self.start_backend("b1")
        self.b2 = self.start_backend("b2")
        self.early = EarlyBackend()
        self.addCleanup(self.early.stop)
        self.port = self.free_port()
        routes = [
            {"match": {"host": "example.com"}, "cluster": "abs"},
            {"match": {"host": "early.local"}, "cluster": "early"},
            {"match": {"host": "test.local"}, "cluster": "app"},
        ]
        self.start_keel(keel_yaml(
            [http_listener(self.port, routes, timeouts={"idle": "1s"})],
            [cluster("app", [self.b1.addr]), cluster("abs", [self.b2.addr]),
             cluster("early", [self.early.port])],
            self.free_port()))

    # -- helpers --------------------------------------------------------------------------
    def assert_alive(self):
        self.assertIsNone(self.keel.proc.poll(), "keel exited")
        r = Client(self.port, timeout=5)
        try:
            resp = r.get("/alive", [("Connection", "close")])
        finally:
            r.close()
        self.assertEqual(resp.status, 200)
        self.assertEqual(resp.header("X-Backend-Id"), "b1")

    def endpoint_active(self, cname, addr):
        doc = self.keel.admin("/v1/clusters").json()
        cl = [c for c in doc["clusters"] if c["name"] == cname][0]
        return [e for e in cl["endpoints"] if e["address"] == addr][0]["active"]

    def active_connections(self):
        text = self.keel.admin("/metrics").body.decode()
        m = re.search(r'^keel_listener_active_connections\{listener="web"\} (\d+)$', text, re.M)
        self.assertIsNotNone(m, "gauge missing from /metrics")
        return int(m.group(1))

    # -- HTTP/1.0 clients -------------------------------------------------------------------
    def test_http10_without_keepalive_is_closed(self):
        c = self.client(self.port)
        r = c.get("/ten", version="HTTP/1.0")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("X-Backend-Id"), "b1")
        self.assertEqual((r.header("Connection") or "").lower(), "close")
        self.assertTrue(c.wait_closed(3), "HTTP/1.0 connection without keep-alive left open")
        # Upstream it went as HTTP/1.1 with the client's hop-by-hop fields gone.
        j = r.json()
        self.assertEqual(j["target"], "/ten")
        self.assertEqual(self.b1.log()[-1]["version"], "HTTP/1.1")

    def test_http10_keepalive_stays_open(self):
        c = self.client(self.port)
        for i in range(3):
            r = c.get("/ka%d" % i, [("Connection", "keep-alive")], version="HTTP/1.0")
            self.assertEqual(r.status, 200)
            self.assertEqual(r.json()["target"], "/ka%d" % i)
            self.assertEqual((r.header("Connection") or "").lower(), "keep-alive", r.headers)
            self.assertEqual(hvals(r.json()["headers"], "Connection"), [])
        self.assertFalse(c.wait_closed(0.5), "HTTP/1.0 keep-alive connection was closed")

    def test_http10_chunked_response_is_dechunked(self):
        n = 100000
        for hdrs in ([], [("Connection", "keep-alive")]):
            c = self.client(self.port)
            c.request("GET", "/bytes?n=%d&chunked=1" % n, hdrs, version="HTTP/1.0")
            r = c.read_response()  # no framing headers: reads until close
            self.assertEqual(r.status, 200)
            self.assertIsNone(r.header("Transfer-Encoding"), r.headers)
            self.assertIsNone(r.header("Content-Length"), r.headers)
            self.assertEqual((r.header("Connection") or "").lower(), "close", r.headers)
            self.assertEqual(len(r.body), n)
            self.assertEqual(r.body, pattern_bytes(n))
            self.assertTrue(c.eof, "body was not delimited by close")

    # -- Connection-named headers --------------------------------------------------------------
    def test_connection_tokens(self):
        c = self.client(self.port)
        r = c.get("/sec", [("Connection", "close, X-Secret"), ("X-Secret", "1"),
                           ("X-Kept", "2")])
        self.assertEqual(r.status, 200)
        h = r.json()["headers"]
        self.assertEqual(hvals(h, "X-Secret"), [], "a field named in Connection was forwarded")
        self.assertEqual(hvals(h, "X-Kept"), ["2"])
        self.assertTrue(c.wait_closed(3))

        # Content-Length / Transfer-Encoding / Host named in Connection stay: the body still
        # arrives intact and the connection stays usable.
        c = self.client(self.port)
        body = bytes(range(256)) * 4
        r = c.exchange("POST", "/cl", [("Connection", "Content-Length"),
                                       ("Content-Length", str(len(body)))], body)
        self.assertEqual(r.status, 200)
        j = r.json()
        self.assertEqual((j["body_len"], j["body_sha256"]), (len(body), sha256(body)))
        self.assertEqual(hvals(j["headers"], "Content-Length"), [str(len(body))])
        r = c.exchange("POST", "/te", [("Connection", "transfer-encoding"),
                                       ("Transfer-Encoding", "chunked")],
                       chunked_body([b"abc", b"defg"]))
        self.assertEqual(r.status, 200)
        j = r.json()
        self.assertEqual((j["body_len"], j["chunked"]), (7, True))
        self.assertEqual(j["body_sha256"], sha256(b"abcdefg"))
        r = c.get("/host", [("Connection", "Host")])
        self.assertEqual(r.status, 200)
        self.assertEqual(hvals(r.json()["headers"], "Host"), ["test.local"])

    # -- absolute-form and forwarding headers --------------------------------------------------
    def test_absolute_form(self):
        c = self.client(self.port)
        c.send(b"GET http://example.com/x?y=1 HTTP/1.1\r\nHost: test.local\r\n\r\n")
        r = c.read_response()
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("X-Backend-Id"), "b2", "routed by Host instead of authority")
        j = r.json()
        self.assertEqual(j["target"], "/x?y=1")
        self.assertEqual(hvals(j["headers"], "Host"), ["example.com"])
        # Authority only (RFC 9112 3.2.2: an empty path is sent as "/"), with a query, and
        # with an upper-case scheme: still origin-form upstream, Host from the authority.
        for target, want in ((b"HTTP://example.com/u", "/u"), (b"http://example.com", "/"),
                             (b"http://example.com?q=2", "/?q=2")):
            c.send(b"GET " + target + b" HTTP/1.1\r\nHost: test.local\r\n\r\n")
            r = c.read_response()
            self.assertEqual(r.header("X-Backend-Id"), "b2", target)
            j = r.json()
            self.assertEqual((j["target"], hvals(j["headers"], "Host")), (want, ["example.com"]),
                             "request-target %r forwarded wrongly" % target)
        self.assertEqual(len(self.b2.log()), 4)
        self.assertEqual(self.b1.log(), [])

    def test_forwarded_for_and_proto(self):
        c = self.client(self.port)
        r = c.get("/xff", [("X-Forwarded-For", "1.2.3.4"), ("X-Forwarded-Proto", "https")])
        h = r.json()["headers"]
        self.assertEqual(", ".join(hvals(h, "X-Forwarded-For")), "1.2.3.4, 127.0.0.1")
        self.assertEqual(hvals(h, "X-Forwarded-Proto"), ["http"])
        # Two XFF fields keep their order; a lower-case spoofed proto is replaced too.
        r = c.get("/xff2", [("X-Forwarded-For", "1.2.3.4"), ("x-forwarded-for", "5.6.7.8"),
                            ("x-forwarded-proto", "https")])
        h = r.json()["headers"]
        xff = ", ".join(hvals(h, "X-Forwarded-For"))
        self.assertEqual(re.sub(r"\s+", "", xff), "1.2.3.4,5.6.7.8,127.0.0.1")
        self.assertEqual(hvals(h, "X-Forwarded-Proto"), ["http"])

    # -- stalls and aborts ------------------------------------------------------------------
    def test_request_body_stall_408(self):
        c = self.client(self.port, timeout=8)
        t0 = time.monotonic()
        c.send(b"POST /stall HTTP/1.1\r\nHost: test.local\r\nContent-Length: 100\r\n\r\n"
               + b"0123456789")
        r = c.read_response("POST")
        elapsed = time.monotonic() - t0
        self.assertEqual(r.status, 408, r)
        self.assertIsNone(r.header("X-Backend-Id"))
        self.assertGreater(elapsed, 0.7)
        self.assertLess(elapsed, 6.0)  # idle timeout 1 s (+ slack), not the client's 8 s
        self.assertTrue(c.wait_closed(3), "connection not closed after 408")
        self.assert_alive()

    def test_client_closes_mid_body(self):
        c = self.client(self.port)
        c.send(b"POST /abort HTTP/1.1\r\nHost: test.local\r\nContent-Length: 100000\r\n\r\n"
               + b"x" * 5000)
        wait_for(lambda: any(e["target"] == "/abort" for e in self.b1.log()), 10,
                 what="request head at the backend")
        c.close()
        wait_for(lambda: self.endpoint_active("app", self.b1.addr) == 0, 10,
                 what="active back to 0")
        self.assert_alive()

    def test_client_closes_during_slow_response(self):
        c = self.client(self.port)
        # Long enough to be surely in flight when /v1/clusters is read on a busy machine.
        # keel notices the close only when the response comes (it does not read a client
        # whose request is complete), so the wait below must outlast the sleep.
        c.request("GET", "/sleep?ms=3000")
        wait_for(lambda: any(e["target"] == "/sleep?ms=3000" for e in self.b1.log()), 10,
                 what="request at the backend")
        self.assertEqual(self.endpoint_active("app", self.b1.addr), 1)
        c.close()
        wait_for(lambda: self.endpoint_active("app", self.b1.addr) == 0, 10,
                 what="active back to 0")
        self.assertIsNone(self.keel.proc.poll())
        self.assert_alive()

    def test_backend_answers_before_reading_body(self):
        c = self.client(self.port)
        c.send(b"POST /upload HTTP/1.1\r\nHost: early.local\r\nContent-Length: 1000000\r\n\r\n"
               + b"y" * 1000)
        r = c.read_response("POST")
        self.assertEqual((r.status, r.body), (403, b"denied\n"))
        self.assertEqual(r.header("X-Backend-Id"), "early")
        # The rest of the body cannot be told apart from a next request: keel must close.
        self.assertTrue(c.wait_closed(3), "connection left open with an unfinished body")
        self.assertEqual(len(self.early.heads), 1)
        self.assertTrue(self.early.heads[0].startswith("POST /upload HTTP/1.1"))
        # A complete small POST is answered the same way, and keel is fine afterwards.
        c = self.client(self.port)
        r = c.exchange("POST", "/again", [], b"z" * 10, host="early.local")
        self.assertEqual((r.status, r.body), (403, b"denied\n"))
        self.assert_alive()

    # -- pipelining after keel-generated errors ----------------------------------------------
    def test_pipelined_after_404(self):
        c = self.client(self.port)
        c.send(build_request("GET", "/nf1", [("Host", "nowhere.invalid")]) +
               build_request("GET", "/p2", [("Host", "test.local")]) +
               build_request("HEAD", "/nf3", [("Host", "nowhere.invalid")]) +
               build_request("GET", "/p4", [("Host", "test.local")]))
        r1 = c.read_response()
        r2 = c.read_response()
        r3 = c.read_response("HEAD")
        r4 = c.read_response()
        self.assertEqual(r1.status, 404)
        self.assertIsNone(r1.header("X-Backend-Id"))
        self.assertEqual((r2.status, r2.json()["target"]), (200, "/p2"))
        self.assertEqual(r3.status, 404)
        self.assertEqual((r4.status, r4.json()["target"]), (200, "/p4"))
        self.assertEqual([e["target"] for e in self.b1.log()], ["/p2", "/p4"])
        self.assertFalse(c.wait_closed(0.3))

    def test_404_with_body_does_not_smuggle(self):
        # The body of an unrouted POST looks like a request; it must never reach a backend.
        smuggled = build_request("GET", "/smuggled", [("Host", "test.local")])
        c = self.client(self.port)
        c.send(build_request("POST", "/nf", [("Host", "nowhere.invalid"),
                                             ("Content-Length", str(len(smuggled)))], smuggled))
        r = c.read_response("POST")
        self.assertEqual(r.status, 404)
        try:
            c.settimeout(2)
            follow = c.read_response()
        except (Closed, OSError):
            follow = None
        if follow is not None:
            self.assertNotEqual(follow.status, 200, "body of a 404 request was served")
        self.assertEqual(self.b1.log(), [], "body of an unrouted request was forwarded")

    # -- oversized head -------------------------------------------------------------------
    def test_1mb_header_431(self):
        other = self.client(self.port)
        self.assertEqual(other.get("/before").status, 200)
        c = self.client(self.port, timeout=8)
        head = (b"GET /huge HTTP/1.1\r\nHost: test.local\r\nX-Huge: " + b"h" * (1 << 20) +
                b"\r\n\r\n")

        def send():
            try:
                c.sock.sendall(head)
            except OSError:
                pass  # keel stops reading and closes: a reset here is expected
        t = threading.Thread(target=send, daemon=True)
        t.start()
        r = c.read_response()
        self.assertEqual(r.status, 431, r)
        self.assertIsNone(r.header("X-Backend-Id"))
        self.assertTrue(c.wait_closed(5), "connection not closed after 431")
        t.join(5)
        r = other.get("/after")
        self.assertEqual((r.status, r.json()["target"]), (200, "/after"))
        self.assertEqual([e["target"] for e in self.b1.log()], ["/before", "/after"])

    # -- many connections -------------------------------------------------------------------
    def test_200_concurrent_keepalive_connections(self):
        n_conn, n_req = 200, 5
        opened = threading.Barrier(n_conn + 1, timeout=30)
        finished = threading.Barrier(n_conn + 1, timeout=30)
        release = threading.Event()

        def worker(i):
            c = Client(self.port, timeout=20)
            try:
                opened.wait()
                out = []
                for k in range(n_req):
                    r = c.get("/c/%d/%d" % (i, k))
                    out.append((r.status, r.json()["target"], r.header("Connection")))
                finished.wait()
                release.wait(30)  # keep the connection until the gauge was read
                return out
            except threading.BrokenBarrierError:
                return None
            finally:
                c.close()

        results = [None] * n_conn
        errors = []

        def run(i):
            try:
                results[i] = worker(i)
            except BaseException as e:  # noqa: B902 - reported below
                errors.append(e)
                opened.abort()
                finished.abort()

        ts = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(n_conn)]
        t0 = time.monotonic()
        for t in ts:
            t.start()
        try:
            opened.wait()
            finished.wait()
        except threading.BrokenBarrierError:
            pass
        try:
            self.assertFalse(errors, errors[:3])
            # While every client still holds its connection the gauge counts them all.
            self.assertEqual(self.active_connections(), n_conn)
        finally:
            release.set()
        for t in ts:
            t.join(30)
        elapsed = time.monotonic() - t0
        self.assertFalse(any(t.is_alive() for t in ts), "client threads still running")
        ok = sum(1 for i, res in enumerate(results) if res is not None
                 for k, (st, target, conn) in enumerate(res)
                 if st == 200 and target == "/c/%d/%d" % (i, k) and conn is None)
        self.assertEqual(ok, n_conn * n_req)
        self.assertLess(elapsed, 40)
        wait_for(lambda: self.active_connections() == 0, 10,
                 what="keel_listener_active_connections back to 0")

    # -- slow reader ----------------------------------------------------------------------
    def test_slow_reader_backpressure(self):
        n = 20000000
        warm = self.client(self.port)
        self.assertEqual(warm.get("/bytes?n=300000").body_len, 300000)
        warm.close()
        pid = self.keel.proc.pid
        base = vm_rss_kb(pid)

        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        s.settimeout(10)
        s.connect(("127.0.0.1", self.port))
        self.addCleanup(s.close)
        s.sendall(build_request("GET", "/bytes?n=%d" % n, [("Host", "test.local")]))
        buf = b""
        while b"\r\n\r\n" not in buf:
            d = s.recv(65536)
            self.assertTrue(d, "closed before the response head")
            buf += d
        head, rest = buf.split(b"\r\n\r\n", 1)
        self.assertTrue(head.startswith(b"HTTP/1.1 200"), head[:100])
        self.assertIn(b"\r\nContent-Length: %d" % n, head)
        h = hashlib.sha256(rest)
        got = len(rest)
        peak = base
        t_end = time.monotonic() + 2.0
        while time.monotonic() < t_end:
            d = s.recv(16384)
            self.assertTrue(d, "closed during the slow read")
            h.update(d)
            got += len(d)
            peak = max(peak, vm_rss_kb(pid))
            time.sleep(0.02)
        slow_got = got
        while got < n:
            d = s.recv(1 << 20)
            self.assertTrue(d, "closed with %d of %d bytes" % (got, n))
            h.update(d)
            got += len(d)
        self.assertEqual(got, n)
        self.assertEqual(h.hexdigest(), pattern_sha256(n))
        self.assertLess(slow_got, n // 2, "the slow phase was not slow")
        if not keel_is_sanitized():
            self.assertLess(peak - base, 16 * 1024,
                            "keel RSS grew by %d kB during a slow read" % (peak - base))


if __name__ == "__main__":
    unittest.main()
