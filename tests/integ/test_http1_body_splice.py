# SPDX-License-Identifier: MIT
"""Large HTTP/1.1 Content-Length response bodies (>= 64 KiB, plain sockets on both sides, which
keel may relay with splice() through a pipe): every byte arrives, the framing of both
connections survives (keep-alive, pipelining, HEAD, short and over-long upstream bodies), a slow
reader stalls nobody else, the access log counts the bytes and no pipe leaks."""

import hashlib
import os
import re
import socket
import threading
import time
import unittest
import urllib.parse

from keeltest import (Client, Closed, KeelTestCase, ThreadedServer, cluster, http_listener,
                      keel_yaml, pipe_fds, wait_for)

KIB = 1024
MIB = 1024 * 1024

# What an upstream writes after a complete 100 KiB body on /over: bytes that look like a
# second response. They belong to no request; a proxy must never hand them to a client.
JUNK = (b"HTTP/1.1 200 OK\r\nX-Junk: 1\r\nContent-Length: 8\r\n\r\nSMUGGLED"
        b"HTTP/1.1 200 OK\r\nX-Junk: 2\r\nContent-Length: 8\r\n\r\nSMUGGLED")


def pipe_count(pid):
    return sum(pipe_fds(pid).values())


class BodyBackend(ThreadedServer):
    """An in-process HTTP/1.1 keep-alive backend serving random bodies with Content-Length.

    Every response carries X-Conn (number of the accepted connection, from 1) and X-Path
    (the request target). Paths:
      /blob/NAME[?pause=1]  200 with self.bodies[NAME] (pause=1: head, 50 ms, then body);
                            HEAD gets the head only (same Content-Length)
      /small                200 with b"small:" + target
      /short?declare=N      head declaring N bytes, then self.bodies["short"] (fewer), close
      /over                 head declaring len(self.bodies["over"]), that body + JUNK in one
                            write, then the connection stays open for the next request
    `accepts` counts accepted connections, `requests` lists (conn, method, target)."""

    def __init__(self):
        self.bodies = {}
        self.accepts = 0
        self.requests = []
        self.lock = threading.Lock()
        self._listen(64, conn_timeout=60)
        self.port = int(self.addr.rsplit(":", 1)[1])

    def add(self, name, size):
        self.bodies[name] = os.urandom(size)
        return self.bodies[name]

    def _conn(self, c):
        with self.lock:
            self.accepts += 1
            num = self.accepts
        buf = b""
        try:
            with c:
                while True:
                    while b"\r\n\r\n" not in buf:
                        d = c.recv(65536)
                        if not d:
                            return
                        buf += d
                    head, buf = buf.split(b"\r\n\r\n", 1)
                    lines = head.decode("latin-1").split("\r\n")
                    method, target = lines[0].split(" ")[:2]
                    hdrs = {}
                    for line in lines[1:]:
                        k, _, v = line.partition(":")
                        hdrs[k.strip().lower()] = v.strip()
                    n = int(hdrs.get("content-length", "0") or "0")
                    while len(buf) < n:
                        d = c.recv(65536)
                        if not d:
                            return
                        buf += d
                    buf = buf[n:]
                    with self.lock:
                        self.requests.append((num, method, target))
                    if not self._answer(c, num, method, target):
                        return
                    if hdrs.get("connection", "").lower() == "close":
                        return
        except OSError:
            return

    @staticmethod
    def _head(num, target, length, extra=b""):
        return (b"HTTP/1.1 200 OK\r\nX-Conn: %d\r\nX-Path: %s\r\n%s"
                b"Content-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n"
                % (num, target.encode("latin-1"), extra, length))

    def _answer(self, c, num, method, target):
        path, _, query = target.partition("?")
        q = dict(urllib.parse.parse_qsl(query))
        if path.startswith("/blob/"):
            body = self.bodies[path[len("/blob/"):]]
            head = self._head(num, target, len(body))
            if method == "HEAD":
                c.sendall(head)
            elif q.get("pause") == "1":
                c.sendall(head)
                time.sleep(0.05)
                c.sendall(body)
            else:
                c.sendall(head)
                c.sendall(body)
            return True
        if path == "/short":
            c.sendall(self._head(num, target, int(q["declare"])) + self.bodies["short"])
            c.shutdown(socket.SHUT_WR)
            return False
        if path == "/over":
            body = self.bodies["over"]
            c.sendall(self._head(num, target, len(body)) + body + JUNK)
            return True
        body = b"small:" + target.encode("latin-1")
        c.sendall(self._head(num, target, len(body)) + body)
        return True


class SlowReader(Client):
    """Reads a raw socket in small pieces, pausing 10 ms every 32 KiB (a lagging client); the
    read helpers are keeltest.Client's."""

    def __init__(self, sock, deadline):  # pylint: disable=super-init-not-called
        self.sock = sock
        self.deadline = deadline
        self.buf = bytearray()
        self.eof = False
        self.since_sleep = 0

    def _fill(self):
        if time.monotonic() > self.deadline:
            raise AssertionError("slow read still going at its deadline (%d bytes buffered)"
                                 % len(self.buf))
        d = self.sock.recv(4096)
        if not d:
            raise Closed("closed by keel")
        self.buf += d
        self.since_sleep += len(d)
        if self.since_sleep >= 32 * KIB:
            self.since_sleep = 0
            time.sleep(0.01)


def sha(data):
    return hashlib.sha256(data).hexdigest()


class Http1BodySpliceTest(KeelTestCase):
    def start(self, workers=2):
        self.be = BodyBackend()
        self.addCleanup(self.be.close)
        self.port = self.free_port()
        self.start_keel(keel_yaml([http_listener(self.port, [{"cluster": "big"}])],
                                  [cluster("big", [self.be.addr])], self.free_port(),
                                  workers=workers))

    def get_hashed(self, c, target, method="GET", headers=None):
        """One request on c; the body is hashed as it arrives. @return (response, sha256)."""
        h = hashlib.sha256()
        r = c.exchange(method, target, headers, sink=h.update)
        return r, h.hexdigest()

    def assert_blob(self, c, name, target=None):
        body = self.be.bodies[name]
        r, digest = self.get_hashed(c, target or "/blob/" + name)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.header("Content-Length"), str(len(body)))
        self.assertEqual(r.header("X-Path"), target or "/blob/" + name)
        self.assertEqual(r.body_len, len(body), name)
        self.assertEqual(digest, sha(body), "body of %s differs" % name)
        return r

    def assert_small(self, c, target):
        r = c.get(target)
        self.assertEqual(r.status, 200, r)
        self.assertIsNone(r.header("X-Junk"), r.raw_head)
        self.assertEqual(r.header("X-Path"), target)
        self.assertEqual(r.body, b"small:" + target.encode())
        return r

    # 1 -----------------------------------------------------------------------------
    def test_large_bodies_byte_identical(self):
        self.start()
        sizes = [64 * KIB - 1, 64 * KIB, 64 * KIB + 1, MIB + 3, 20 * MIB]
        for s in sizes:
            self.be.add("s%d" % s, s)
        # All on one keep-alive connection (each body's end must be found exactly), then
        # each on a fresh connection, then one whose body comes 50 ms after its head.
        c = self.client(self.port, timeout=30)
        for s in sizes:
            self.assert_blob(c, "s%d" % s)
        for s in reversed(sizes):
            self.assert_blob(self.client(self.port, timeout=30), "s%d" % s)
        self.assert_blob(c, "s%d" % (MIB + 3), "/blob/s%d?pause=1" % (MIB + 3))
        self.assert_small(c, "/small/after-sizes")

    # 2 -----------------------------------------------------------------------------
    def test_keepalive_after_large_body(self):
        self.start(workers=1)
        self.be.add("a", 5 * MIB)
        self.be.add("b", 5 * MIB)
        c = self.client(self.port, timeout=30)
        r1 = self.assert_blob(c, "a")
        r2 = self.assert_small(c, "/small/between")
        r3 = self.assert_blob(c, "b")
        # The three requests went over one upstream connection: keel read neither more nor
        # less than each body, so the next response on that connection parsed cleanly.
        self.assertEqual([r.header("X-Conn") for r in (r1, r2, r3)], ["1", "1", "1"])
        self.assertEqual(self.be.accepts, 1, self.be.requests)
        self.assertEqual([t for _, _, t in self.be.requests],
                         ["/blob/a", "/small/between", "/blob/b"])

    def test_pipelined_requests_around_large_body(self):
        self.start(workers=1)
        self.be.add("p1", MIB + 7)
        self.be.add("p2", 256 * KIB)
        c = self.client(self.port, timeout=30)
        # Three requests in one write: the small response must not overtake or be mixed into
        # the large body before it.
        c.send(b"".join(b"GET %s HTTP/1.1\r\nHost: test.local\r\n\r\n" % t
                        for t in (b"/blob/p1", b"/small/mid", b"/blob/p2")))
        for want in ("p1", None, "p2"):
            h = hashlib.sha256()
            r = c.read_response("GET", sink=h.update)
            self.assertEqual(r.status, 200, r)
            if want is None:
                self.assertEqual(r.header("X-Path"), "/small/mid")
                self.assertEqual(r.body_len, len(b"small:/small/mid"))
                self.assertEqual(h.hexdigest(), sha(b"small:/small/mid"))
            else:
                self.assertEqual(r.header("X-Path"), "/blob/" + want)
                self.assertEqual(r.body_len, len(self.be.bodies[want]))
                self.assertEqual(h.hexdigest(), sha(self.be.bodies[want]))
        self.assert_small(c, "/small/after-pipeline")

    def test_pipelined_large_bodies_to_lagging_reader(self):
        # Eight pipelined large responses whose heads come 50 ms before their bodies
        # (pause=1), read slowly through a small receive buffer: each head must reach the
        # client before its body, and every response in order and complete.
        self.start(workers=1)
        names = []
        for i in range(8):
            names.append("q%d" % i)
            self.be.add(names[-1], 512 * KIB + i)
        s = socket.socket()
        self.addCleanup(s.close)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * KIB)
        s.settimeout(15)
        s.connect(("127.0.0.1", self.port))
        s.sendall(b"".join(b"GET /blob/%s?pause=1 HTTP/1.1\r\nHost: test.local\r\n\r\n"
                           % n.encode() for n in names))
        rd = SlowReader(s, deadline=time.monotonic() + 30)
        for n in names:
            head = rd.read_until(b"\r\n\r\n")
            self.assertTrue(head.startswith(b"HTTP/1.1 200"), (n, head[:300]))
            self.assertIn(b"\r\nX-Path: /blob/%s?pause=1\r\n" % n.encode(), head)
            m = re.search(rb"\r\nContent-Length: (\d+)\r\n", head)
            self.assertEqual(int(m.group(1)), len(self.be.bodies[n]), head)
            self.assertEqual(sha(rd.read_exact(int(m.group(1)))), sha(self.be.bodies[n]),
                             "body of %s" % n)
        self.assertEqual(bytes(rd.buf), b"")

    # 3 -----------------------------------------------------------------------------
    def test_slow_reader_gets_every_byte_and_blocks_nobody(self):
        # One worker: the stalled download and the other client share its event loop.
        self.start(workers=1)
        body = self.be.add("slow", 5 * MIB)
        c = self.client(self.port, timeout=20)
        c.request("GET", "/blob/slow")
        head = c.read_until(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 200"), head)
        self.assertIn(b"Content-Length: %d\r\n" % len(body), head)
        got = hashlib.sha256()
        got.update(bytes(c.buf))
        n = len(c.buf)
        c.buf.clear()
        deadline = time.monotonic() + 30
        other_done = False
        since_sleep = 0
        while n < len(body):
            self.assertLess(time.monotonic(), deadline, "slow read of %d/%d bytes" % (n, len(body)))
            d = c.sock.recv(min(8192, len(body) - n))
            if not d:
                self.fail("connection closed after %d of %d body bytes" % (n, len(body)))
            got.update(d)
            n += len(d)
            since_sleep += len(d)
            if since_sleep >= 64 * KIB:
                since_sleep = 0
                time.sleep(0.02)
            if not other_done and n >= 512 * KIB:
                # Stop reading for a while (every buffer on the way fills up), then another
                # client must still be served at once by the same worker.
                time.sleep(0.5)
                o = self.client(self.port, timeout=10)
                self.assert_small(o, "/small/other")
                o.close()
                other_done = True
        self.assertTrue(other_done)
        self.assertEqual(n, len(body))
        self.assertEqual(got.hexdigest(), sha(body))
        # The slow connection is still in step: its next response is the right one.
        self.assert_small(c, "/small/after-slow")

    # 4 -----------------------------------------------------------------------------
    def test_upstream_closes_before_content_length(self):
        self.start()
        sent = self.be.add("short", 300 * KIB)
        c = self.client(self.port, timeout=15)
        c.request("GET", "/short?declare=%d" % (2 * MIB))
        head = c.read_until(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 200"), head)
        self.assertIn(b"Content-Length: %d\r\n" % (2 * MIB), head)
        # keel cannot complete the body: it must forward what came and close the client
        # connection (EOF or reset), not hang waiting for bytes that never come.
        try:
            got = c.read_to_close(limit=4 * MIB)
        except socket.timeout:
            self.fail("keel kept the connection open after the upstream closed mid-body "
                      "(%d body bytes received)" % len(c.buf))
        self.assertLess(len(got), 2 * MIB)
        self.assertEqual(got, sent[:len(got)], "the short body is not what the upstream sent")
        self.assertEqual(len(got), len(sent), "bytes the upstream sent before closing were lost")
        # keel is still up and serves the next client.
        self.assert_small(self.client(self.port), "/small/next")
        self.assertIsNone(self.keel.proc.poll())

    def test_upstream_closes_early_while_client_lags(self):
        # The client reads slowly through a small receive buffer, so keel still holds body
        # bytes when it sees the upstream's EOF: they must reach the client before the close.
        self.start(workers=1)
        sent = self.be.add("short", 12 * MIB)  # more than the socket buffers on the way
        s = socket.socket()
        self.addCleanup(s.close)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * KIB)
        s.settimeout(15)
        s.connect(("127.0.0.1", self.port))
        s.sendall(b"GET /short?declare=%d HTTP/1.1\r\nHost: test.local\r\n\r\n" % (64 * MIB))
        time.sleep(0.3)  # everything on the way fills up before the first read
        data = bytearray()
        deadline = time.monotonic() + 30
        since_sleep = 0
        while True:
            self.assertLess(time.monotonic(), deadline, "still open after %d bytes" % len(data))
            try:
                d = s.recv(8192)
            except ConnectionResetError:
                break
            except socket.timeout:
                self.fail("keel kept the connection open after the upstream closed mid-body "
                          "(%d bytes received)" % len(data))
            if not d:
                break
            data += d
            since_sleep += len(d)
            if since_sleep >= 64 * KIB:
                since_sleep = 0
                time.sleep(0.01)
        head, sep, got = bytes(data).partition(b"\r\n\r\n")
        self.assertTrue(sep and head.startswith(b"HTTP/1.1 200"), head[:200])
        self.assertIn(b"Content-Length: %d\r\n" % (64 * MIB), head + sep)
        self.assertEqual(got, sent[:len(got)], "the short body is not what the upstream sent")
        self.assertEqual(len(got), len(sent), "bytes the upstream sent before closing were lost")
        self.assert_small(self.client(self.port), "/small/next")

    # 5 -----------------------------------------------------------------------------
    def test_upstream_sends_more_than_content_length(self):
        self.start(workers=1)
        # 100 KiB: the body's end is in keel's first reads; 1 MiB + 5: it comes long after
        # (relayed in bulk, maybe spliced, then the junk waits in the upstream socket).
        for size in (100 * KIB, MIB + 5):
            with self.subTest(size=size):
                self.check_over(size)

    def check_over(self, size):
        body = self.be.add("over", size)
        c = self.client(self.port, timeout=15)
        r, digest = self.get_hashed(c, "/over?size=%d" % size)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.header("Content-Length"), str(len(body)))
        self.assertEqual(r.body_len, len(body))
        self.assertEqual(digest, sha(body))
        # Nothing of the junk follows on the client connection: the next response on it (if
        # keel keeps it open) is the real answer to the next request, never "SMUGGLED".
        for i in range(3):
            try:
                r2 = c.get("/small/after-over-%d" % i)
            except Closed:
                break
            self.assertIsNone(r2.header("X-Junk"), r2.raw_head)
            self.assertEqual(r2.header("X-Path"), "/small/after-over-%d" % i, r2.raw_head)
            self.assertEqual(r2.body, b"small:/small/after-over-%d" % i)
        self.assertNotIn(b"SMUGGLED", bytes(c.buf))
        c.close()
        # And new clients get the real answers as well (the upstream connection that carried
        # the junk is not handed to them).
        for i in range(3):
            self.assert_small(self.client(self.port), "/small/new-client-%d" % i)

    # 6 -----------------------------------------------------------------------------
    def test_head_of_large_resource(self):
        self.start(workers=1)
        body = self.be.add("h", 3 * MIB)
        c = self.client(self.port, timeout=15)
        for _ in range(2):
            r = c.exchange("HEAD", "/blob/h")
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.header("Content-Length"), str(len(body)))
            self.assertEqual(r.body, b"")
            # No body bytes follow the head: the next response starts right away and is the
            # answer to the next request.
            self.assert_small(c, "/small/after-head")
        self.assertEqual(bytes(c.buf), b"")
        self.assert_blob(c, "h")
        self.assert_small(c, "/small/after-get")

    # 7 -----------------------------------------------------------------------------
    def test_access_log_counts_full_body(self):
        self.start()
        body = self.be.add("log", MIB)
        c = self.client(self.port, timeout=15)
        self.assert_blob(c, "log")
        c.close()  # the client saw the last byte; the line may be written just after
        self.assertEqual(self.be.requests[-1][2], "/blob/log")
        rid = "splice-log-%d" % os.getpid()
        c2 = self.client(self.port, timeout=15)
        r, digest = self.get_hashed(c2, "/blob/log", headers=[("X-Request-Id", rid)])
        self.assertEqual((r.status, digest), (200, sha(body)))
        m = self.keel.wait_log(r"access .*req_id=%s .*status=200 .*bytes_out=(\d+)"
                               % re.escape(rid))
        self.assertIn('"GET /blob/log"', m.group(0))
        self.assertGreaterEqual(int(m.group(1)), len(body), m.group(0))

    # 8 -----------------------------------------------------------------------------
    def test_no_pipe_leak_after_many_large_responses(self):
        self.start(workers=1)  # one worker: one per-thread pipe cache
        self.be.add("many", 512 * KIB + 1)
        pid = self.keel.proc.pid
        base = pipe_count(pid)
        for i in range(20):
            c = self.client(self.port, timeout=15)
            self.assert_blob(c, "many", "/blob/many?i=%d" % i)
            c.close()
        # Clients that leave in the middle of a body (keel's pipe may hold bytes then).
        for i in range(5):
            c = self.client(self.port, timeout=15)
            c.request("GET", "/blob/many?abort=%d" % i)
            c.read_until(b"\r\n\r\n")
            c.read_exact(100 * KIB)
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
            c.close()
        # Four concurrent downloads (each may hold a pipe at the same time).
        self.run_threads(lambda i: self.assert_blob(self.client(self.port, timeout=15),
                                                    "many", "/blob/many?par=%d" % i),
                         [(i,) for i in range(4)], timeout=30)
        # Still serving, and the pipes held are bounded: at most a small per-worker cache
        # (16 pipes, two descriptors each) over what keel held at start, however many bodies
        # went through.
        self.assert_small(self.client(self.port), "/small/after-many")
        wait_for(lambda: pipe_count(pid) <= base + 32, 10,
                 what="keel's pipes to drop to at most %d descriptors" % (base + 32))
        self.assertLessEqual(pipe_count(pid), 34, pipe_fds(pid))


if __name__ == "__main__":
    unittest.main()
