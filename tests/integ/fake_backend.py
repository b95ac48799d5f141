#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Fake backend servers for keel's integration tests and the quickstart demo.

Usage:
    fake_backend.py --id NAME --port P [--port P2 ...] [--host 127.0.0.1]
                    [--mode http|tcp-echo] [--greet] [--idle-timeout SECONDS]

Each --port is one listening socket (port 0 picks a free one). Once every socket
listens, one line is printed on stdout:  ready HOST:PORT[ HOST:PORT ...]

http mode: a small HTTP/1.1 server (sockets + one thread per connection) with
keep-alive, pipelining, chunked request bodies and Expect: 100-continue. Every
response carries X-Backend-Id: NAME and X-Backend-Conn: <connection number in this
process, from 1>. Paths (the query string selects options):
  (default)              200 JSON: method, target, path, headers, body_len,
                         body_sha256, backend, conn
  /echo[?chunked=1]      the request body streamed back (Content-Length, or chunked
                         when the request was chunked or chunked=1)
  /bytes?n=N[&chunked=1] N bytes of pattern_chunks(N) (deterministic)
  /status?code=N         that status; small text body unless 1xx/204/304/HEAD
  /sleep?ms=N            200 after N milliseconds
  /close                 closes the connection without answering
  /garbage               writes non-HTTP bytes, then closes
  /half                  head with Content-Length: 100, 10 body bytes, then closes
  any path with ?close=1  answered with Connection: close, then the connection closes
  /ws                    WebSocket (RFC 6455) echo of text and binary frames
  /__backend/log         JSON list of every request head received (method, target,
                         version, headers), not counting /__backend/* requests
  /__backend/reset       clears that list
  /__backend/health?status=N  makes /health answer N from now on (default 200)
  /health                the status set above (exact path; logged like any request)
Behaviour paths match on the last path segment, so /app/sleep?ms=5 works like
/sleep?ms=5 (keel does not strip route prefixes). A malformed request gets 400 and the connection is closed (it is still logged when
its head could be split into lines).

tcp-echo mode: echoes every byte; on client EOF it finishes echoing, then shuts
down its write side and closes. With --greet it first sends "NAME\\n" on every
connection (lets a test see which backend a connection reached).

Stops on SIGTERM/SIGINT.
"""

import argparse
import base64
import hashlib
import json
import signal
import socket
import sys
import threading
import time
import urllib.parse

PATTERN_PERIOD = 65521  # prime, so pattern and chunk boundaries do not line up
_PATTERN = None


def _pattern_block():
    global _PATTERN
    if _PATTERN is None:
        out = bytearray()
        h = b"keel-pattern"
        while len(out) < PATTERN_PERIOD:
            h = hashlib.sha256(h).digest()
            out += h
        _PATTERN = bytes(out[:PATTERN_PERIOD])
    return _PATTERN


def pattern_chunks(n, chunk=PATTERN_PERIOD):
    """Yields the n-byte deterministic pattern served by /bytes, in pieces."""
    block = _pattern_block()
    off = 0
    while off < n:
        start = off % PATTERN_PERIOD
        take = min(n - off, PATTERN_PERIOD - start, chunk)
        yield block[start:start + take]
        off += take


def pattern_sha256(n):
    """sha256 hex digest of the first n bytes of the pattern."""
    h = hashlib.sha256()
    for piece in pattern_chunks(n):
        h.update(piece)
    return h.hexdigest()


class BadRequest(Exception):
    pass


class ConnClosed(Exception):
    pass


class Reader:
    """Buffered reads from a socket."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray()

    def fill(self):
        data = self.sock.recv(262144)
        if not data:
            raise ConnClosed()
        self.buf += data

    def read_head(self, limit=1 << 20):
        while True:
            i = self.buf.find(b"\r\n\r\n")
            if i >= 0:
                head = bytes(self.buf[:i + 4])
                del self.buf[:i + 4]
                return head
            if len(self.buf) > limit:
                raise BadRequest("head too large")
            self.fill()

    def read_line(self, limit=65536):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line = bytes(self.buf[:i])
                del self.buf[:i + 2]
                return line
            if len(self.buf) > limit:
                raise BadRequest("line too long")
            self.fill()

    def read_some(self, maxn):
        if not self.buf:
            self.fill()
        n = min(maxn, len(self.buf))
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    def read_exact(self, n):
        while len(self.buf) < n:
            self.fill()
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data


class Backend:
    def __init__(self, ident, mode, greet, idle_timeout=None):
        self.ident = ident
        self.idle_timeout = idle_timeout
        self.mode = mode
        self.greet = greet
        self.lock = threading.Lock()
        self.conn_count = 0
        self.log = []
        self.health_status = 200  # what /health answers (set by /__backend/health)

    # ---- plumbing -------------------------------------------------------

    def serve(self, lsock):
        while True:
            try:
                csock, addr = lsock.accept()
            except OSError:
                return
            # Head and body go out in separate writes: without TCP_NODELAY, Nagle holds the
            # body until the peer's delayed ACK (40 ms per response on a reused connection).
            try:
                csock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
            with self.lock:
                self.conn_count += 1
                num = self.conn_count
            target = self.handle_tcp if self.mode == "tcp-echo" else self.handle_http
            t = threading.Thread(target=self._run, args=(target, csock, num), daemon=True)
            t.start()

    def _run(self, target, csock, num):
        try:
            target(csock, num)
        except (OSError, ConnClosed):
            pass
        finally:
            try:
                csock.close()
            except OSError:
                pass

    # ---- tcp-echo ---------------------------------------------------------

    def handle_tcp(self, sock, num):
        if self.greet:
            sock.sendall(self.ident.encode() + b"\n")
        while True:
            data = sock.recv(262144)
            if not data:
                break
            sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        # Give the peer a moment to read before close (no RST on unread data).
        sock.settimeout(5)
        try:
            while sock.recv(65536):
                pass
        except OSError:
            pass

    # ---- http ---------------------------------------------------------------

    def handle_http(self, sock, num):
        rd = Reader(sock)
        while True:
            try:
                if self.idle_timeout and not rd.buf:
                    sock.settimeout(self.idle_timeout)  # keep-alive idle limit
                    try:
                        rd.fill()
                    except socket.timeout:
                        return  # close the idle connection, like real servers do
                    sock.settimeout(None)
                head = rd.read_head()
            except ConnClosed:
                return
            except BadRequest:
                self.send_simple(sock, num, 400, b"bad request\n", close=True)
                return
            keep = self.handle_one(sock, rd, head, num)
            if not keep:
                try:
                    sock.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                return

    def base_headers(self, num):
        return [("X-Backend-Id", self.ident), ("X-Backend-Conn", str(num))]

    def send_head(self, sock, num, status, headers, reason=None):
        reason = reason or REASONS.get(status, "Status")
        lines = ["HTTP/1.1 %d %s" % (status, reason)]
        for k, v in self.base_headers(num) + headers:
            lines.append("%s: %s" % (k, v))
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))

    def send_simple(self, sock, num, status, body, close=False, head_only=False, ctype="text/plain"):
        hdrs = [("Content-Type", ctype), ("Content-Length", str(len(body)))]
        if close:
            hdrs.append(("Connection", "close"))
        self.send_head(sock, num, status, hdrs)
        if body and not head_only:
            sock.sendall(body)

    def parse_head(self, head):
        text = head.decode("latin-1")
        lines = text[:-4].split("\r\n")
        parts = lines[0].split(" ")
        entry = {"method": parts[0] if parts else "", "target": parts[1] if len(parts) > 1 else "",
                 "version": parts[2] if len(parts) > 2 else "", "headers": [],
                 "raw": text}
        ok = len(parts) == 3 and parts[2].startswith("HTTP/1.")
        for line in lines[1:]:
            if ":" not in line:
                ok = False
                continue
            k, v = line.split(":", 1)
            if k != k.strip() or not k:
                ok = False
            entry["headers"].append([k, v.strip(" \t")])
        return entry, ok

    @staticmethod
    def hget(entry, name):
        vals = [v for k, v in entry["headers"] if k.lower() == name.lower()]
        return vals

    def read_body(self, rd, entry, sink):
        """Reads the request body, calling sink(bytes) per piece. Returns (len, chunked)."""
        te = self.hget(entry, "Transfer-Encoding")
        cl = self.hget(entry, "Content-Length")
        total = 0
        if te:
            if te[-1].strip().lower().split(",")[-1].strip() != "chunked":
                raise BadRequest("bad transfer-encoding")
            while True:
                line = rd.read_line()
                size_txt = line.split(b";", 1)[0].strip()
                try:
                    size = int(size_txt, 16)
                except ValueError:
                    raise BadRequest("bad chunk size")
                if size == 0:
                    while rd.read_line() != b"":  # trailers
                        pass
                    return total, True
                left = size
                while left:
                    data = rd.read_some(min(left, 262144))
                    left -= len(data)
                    total += len(data)
                    sink(data)
                if rd.read_exact(2) != b"\r\n":
                    raise BadRequest("bad chunk end")
        if cl:
            if len(set(cl)) != 1 or not cl[0].isdigit():
                raise BadRequest("bad content-length")
            left = int(cl[0])
            while left:
                data = rd.read_some(min(left, 262144))
                left -= len(data)
                total += len(data)
                sink(data)
        return total, False

    def handle_one(self, sock, rd, head, num):
        entry, ok = self.parse_head(head)
        target = entry["target"]
        url = urllib.parse.urlsplit(target)
        path = full_path = url.path
        query = dict(urllib.parse.parse_qsl(url.query))
        if not path.startswith("/__backend/"):
            with self.lock:
                self.log.append({k: entry[k] for k in ("method", "target", "version", "headers")})
        if not ok:
            self.send_simple(sock, num, 400, b"bad request\n", close=True)
            return False
        method = entry["method"]
        is_head = method == "HEAD"
        version = entry["version"]
        conn_tokens = ",".join(self.hget(entry, "Connection")).lower()
        keep = ("close" not in conn_tokens) if version == "HTTP/1.1" else ("keep-alive" in conn_tokens)
        if any(v.lower() == "100-continue" for v in self.hget(entry, "Expect")):
            sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        if query.get("close") == "1":
            keep = False  # ?close=1 on any path: answer with Connection: close, then close
        extra = [] if keep else [("Connection", "close")]

        if path == "/__backend/log":
            self.read_body(rd, entry, lambda d: None)
            with self.lock:
                body = json.dumps(self.log).encode()
            self.send_simple(sock, num, 200, body, close=not keep, ctype="application/json")
            return keep
        if path == "/__backend/reset":
            self.read_body(rd, entry, lambda d: None)
            with self.lock:
                self.log = []
            self.send_simple(sock, num, 200, b"reset\n", close=not keep)
            return keep
        if path == "/__backend/health":
            self.read_body(rd, entry, lambda d: None)
            with self.lock:
                self.health_status = int(query.get("status", "200"))
            self.send_simple(sock, num, 200, b"health %d\n" % self.health_status, close=not keep)
            return keep
        if path == "/health":
            self.read_body(rd, entry, lambda d: None)
            with self.lock:
                code = self.health_status
            self.send_simple(sock, num, code, b"health %d\n" % code, close=not keep,
                             head_only=is_head)
            return keep
        # Behaviour paths match on the last segment: /any/prefix/sleep works like /sleep.
        path = "/" + path.rsplit("/", 1)[-1]
        if path == "/ws":
            return self.handle_ws(sock, rd, entry, num)
        if path == "/echo":
            return self.handle_echo(sock, rd, entry, num, query, keep, is_head)

        try:
            h = hashlib.sha256()
            blen, chunked = self.read_body(rd, entry, h.update)
        except BadRequest:
            self.send_simple(sock, num, 400, b"bad request body\n", close=True)
            return False

        if path == "/close":
            return False
        if path == "/garbage":
            sock.sendall(b"\x00\x01garbage that is not HTTP at all\xff\xfe\r\n\r\n")
            return False
        if path == "/half":
            self.send_head(sock, num, 200, [("Content-Type", "text/plain"), ("Content-Length", "100")])
            sock.sendall(b"0123456789")
            return False
        if path == "/bytes":
            n = int(query.get("n", "0"))
            if query.get("chunked") == "1":
                self.send_head(sock, num, 200, [("Content-Type", "application/octet-stream"),
                                                ("Transfer-Encoding", "chunked")] + extra)
                if not is_head:
                    for piece in pattern_chunks(n, chunk=16384):
                        sock.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n")
                    sock.sendall(b"0\r\n\r\n")
            else:
                self.send_head(sock, num, 200, [("Content-Type", "application/octet-stream"),
                                                ("Content-Length", str(n))] + extra)
                if not is_head:
                    batch = []
                    size = 0
                    for piece in pattern_chunks(n):
                        batch.append(piece)
                        size += len(piece)
                        if size >= 262144:
                            sock.sendall(b"".join(batch))
                            batch, size = [], 0
                    if batch:
                        sock.sendall(b"".join(batch))
            return keep
        if path == "/status":
            code = int(query.get("code", "200"))
            if code < 200 or code in (204, 304):
                self.send_head(sock, num, code, extra)
            else:
                body = b"status %d\n" % code
                self.send_simple(sock, num, code, body, close=not keep, head_only=is_head)
            return keep
        if path == "/sleep":
            time.sleep(int(query.get("ms", "0")) / 1000.0)
            body = b"slept %s\n" % query.get("ms", "0").encode()
            self.send_simple(sock, num, 200, body, close=not keep, head_only=is_head)
            return keep

        body = json.dumps({
            "method": method, "target": target, "path": full_path, "headers": entry["headers"],
            "body_len": blen, "body_sha256": h.hexdigest(), "chunked": chunked,
            "backend": self.ident, "conn": num}).encode()
        self.send_simple(sock, num, 200, body, close=not keep, head_only=is_head,
                         ctype="application/json")
        return keep

    def handle_echo(self, sock, rd, entry, num, query, keep, is_head):
        extra = [] if keep else [("Connection", "close")]
        req_chunked = bool(self.hget(entry, "Transfer-Encoding"))
        cl = self.hget(entry, "Content-Length")
        if req_chunked or query.get("chunked") == "1":
            self.send_head(sock, num, 200, [("Content-Type", "application/octet-stream"),
                                            ("Transfer-Encoding", "chunked")] + extra)

            def sink(d):
                if d and not is_head:
                    sock.sendall(b"%x\r\n" % len(d) + d + b"\r\n")
            try:
                self.read_body(rd, entry, sink)
            except BadRequest:
                return False
            if not is_head:
                sock.sendall(b"0\r\n\r\n")
            return keep
        n = int(cl[0]) if cl and cl[0].isdigit() else 0
        self.send_head(sock, num, 200, [("Content-Type", "application/octet-stream"),
                                        ("Content-Length", str(n))] + extra)

        def sink_cl(d):
            if not is_head:
                sock.sendall(d)
        try:
            self.read_body(rd, entry, sink_cl)
        except BadRequest:
            return False
        return keep

    # ---- websocket ----------------------------------------------------------

    def handle_ws(self, sock, rd, entry, num):
        key = self.hget(entry, "Sec-WebSocket-Key")
        upgrade = ",".join(self.hget(entry, "Upgrade")).lower()
        if not key or "websocket" not in upgrade:
            self.send_simple(sock, num, 400, b"not a websocket request\n", close=True)
            return False
        accept = base64.b64encode(hashlib.sha1(
            key[0].encode() + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest()).decode()
        self.send_head(sock, num, 101, [("Upgrade", "websocket"), ("Connection", "Upgrade"),
                                        ("Sec-WebSocket-Accept", accept)],
                       reason="Switching Protocols")
        while True:
            b0, b1 = rd.read_exact(2)
            opcode = b0 & 0x0F
            masked = b1 & 0x80
            ln = b1 & 0x7F
            if ln == 126:
                ln = int.from_bytes(rd.read_exact(2), "big")
            elif ln == 127:
                ln = int.from_bytes(rd.read_exact(8), "big")
            mask = rd.read_exact(4) if masked else b"\0\0\0\0"
            payload = bytearray(rd.read_exact(ln))
            for i in range(len(payload)):
                payload[i] ^= mask[i % 4]
            if not masked:  # RFC 6455 5.1: server must close on unmasked client frame
                sock.sendall(ws_frame(8, (1002).to_bytes(2, "big")))
                return False
            if opcode == 8:
                sock.sendall(ws_frame(8, bytes(payload[:2])))
                return False
            if opcode == 9:
                sock.sendall(ws_frame(10, bytes(payload)))
                continue
            if opcode in (0, 1, 2):
                sock.sendall(bytes([0x80 | opcode]) + ws_len(len(payload)) + bytes(payload))


def ws_len(n, mask_bit=0):
    if n < 126:
        return bytes([mask_bit | n])
    if n < 65536:
        return bytes([mask_bit | 126]) + n.to_bytes(2, "big")
    return bytes([mask_bit | 127]) + n.to_bytes(8, "big")


def ws_frame(opcode, payload):
    """An unmasked (server) frame with FIN set."""
    return bytes([0x80 | opcode]) + ws_len(len(payload)) + payload


REASONS = {100: "Continue", 101: "Switching Protocols", 200: "OK", 201: "Created",
           204: "No Content", 301: "Moved Permanently", 302: "Found", 304: "Not Modified",
           400: "Bad Request", 404: "Not Found", 418: "I'm a teapot",
           500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", 2)[2],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--id", required=True, help="backend name, sent as X-Backend-Id")
    ap.add_argument("--port", type=int, action="append", required=True,
                    help="port to listen on (repeatable; 0 = any free port)")
    ap.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    ap.add_argument("--mode", choices=("http", "tcp-echo"), default="http")
    ap.add_argument("--idle-timeout", type=float, default=None, metavar="SECONDS",
                    help="http: close keep-alive connections idle this long")
    ap.add_argument("--greet", action="store_true",
                    help="tcp-echo: send 'ID\\n' first on every connection")
    args = ap.parse_args(argv)

    backend = Backend(args.id, args.mode, args.greet, args.idle_timeout)
    socks = []
    for port in args.port:
        s = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((args.host, port))
        s.listen(512)
        socks.append(s)
    for s in socks:
        threading.Thread(target=backend.serve, args=(s,), daemon=True).start()

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    signal.signal(signal.SIGINT, lambda *a: stop.set())
    addrs = " ".join("%s:%d" % (args.host, s.getsockname()[1]) for s in socks)
    print("ready " + addrs, flush=True)
    while not stop.wait(3600):
        pass
    for s in socks:
        s.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
