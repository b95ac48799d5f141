#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""HTTP/2 cleartext (prior knowledge) test backend built on python3-h2.

Usage:
    h2_backend.py --id NAME [--port P] [--max-streams N] [--tls-cert PEM --tls-key PEM]

With --tls-cert/--tls-key it speaks TLS and offers ALPN "h2" only.

Prints one line once listening:  ready 127.0.0.1:PORT 127.0.0.1:CONTROL_PORT

Every response carries x-backend-id: NAME, x-backend-conn: <connection number, from 1> and
x-backend-stream: <stream id>. Paths (the query string selects options):
  (default)            200 JSON: method, path, authority, scheme, headers (list of pairs),
                       body_len, body_sha256, backend, conn, stream
  /echo                the request body back; content-length unless ?nocl=1; the request
                       header named in ?h=NAME is copied to x-echo-NAME
  /bytes?n=N           N bytes of fake_backend.pattern_chunks(N), with content-length unless
                       ?nocl=1
  /trailers            body "hello" without content-length, then trailers
                       x-trailer-one: 1, x-trailer-two: two
  /sleep?ms=N          200 JSON after N milliseconds (other streams go on meanwhile)
  /status?code=N       that status, small body (none for 204/304)
  /refuse              RST_STREAM REFUSED_STREAM
  /rst                 RST_STREAM INTERNAL_ERROR
  /goaway              GOAWAY with last_stream_id = this stream - 2 (so this stream and any
                       later one were not processed), then the connection closes in 0.5 s
Control (HTTP/1.1 on the second port):
  GET /stats           JSON: connections, streams, pings, max_concurrent, requests (list of
                       {method, path, conn, stream, headers})
  GET /mode?refuse=N   the next N requests, whatever their path, get REFUSED_STREAM
  GET /mode?goaway=N   the next N requests each get the /goaway treatment
  GET /reset           clears counters, requests and modes
Stops on SIGTERM/SIGINT.
"""

import argparse
import hashlib
import http.server
import json
import os
import select
import signal
import socket
import ssl
import sys
import threading
import time
import urllib.parse

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fake_backend  # noqa: E402  (the deterministic /bytes pattern)


class State:
    def __init__(self):
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        self.connections = 0
        self.streams = 0
        self.pings = 0
        self.max_concurrent = 0
        self.requests = []
        self.refuse = 0
        self.goaway = 0


STATE = State()
TLS_CTX = None


class Conn:
    def __init__(self, sock, ident, num, max_streams):
        self.sock = sock
        self.ident = ident
        self.num = num
        cfg = h2.config.H2Configuration(client_side=False, header_encoding=None,
                                        validate_inbound_headers=False)
        self.h2 = h2.connection.H2Connection(config=cfg)
        if max_streams:
            self.h2.local_settings = h2.settings.Settings(
                client=False, initial_values={h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS:
                                              max_streams})
        self.reqs = {}      # stream id -> {"headers": [...], "body": bytearray}
        self.pending = {}   # stream id -> [bytearray data, trailers or None, end]
        self.timers = []    # (deadline, stream id, request)
        self.open = 0
        self.close_at = None

    def send_out(self):
        data = self.h2.data_to_send()
        if data:
            self.sock.sendall(data)

    def run(self):
        if TLS_CTX is not None:
            try:
                self.sock = TLS_CTX.wrap_socket(self.sock, server_side=True)
            except (OSError, ssl.SSLError):
                self.sock.close()
                return
        self.h2.initiate_connection()
        self.send_out()
        try:
            while True:
                timeout = None
                now = time.monotonic()
                deadlines = [t[0] for t in self.timers]
                if self.close_at:
                    deadlines.append(self.close_at)
                if deadlines:
                    timeout = max(0.0, min(deadlines) - now)
                pending = TLS_CTX is not None and self.sock.pending()
                r = [self.sock] if pending else select.select([self.sock], [], [], timeout)[0]
                if r:
                    data = self.sock.recv(65536)
                    if not data:
                        return
                    try:
                        events = self.h2.receive_data(data)
                    except h2.exceptions.ProtocolError:
                        self.send_out()
                        return
                    for ev in events:
                        self.on_event(ev)
                now = time.monotonic()
                due = [t for t in self.timers if t[0] <= now]
                self.timers = [t for t in self.timers if t[0] > now]
                for _, sid, req in due:
                    self.answer_json(sid, req)
                self.flush()
                self.send_out()
                if self.close_at and time.monotonic() >= self.close_at:
                    return
        except OSError:
            return
        finally:
            try:
                self.sock.close()
            except OSError:
                pass

    def on_event(self, ev):
        if isinstance(ev, h2.events.RequestReceived):
            self.reqs[ev.stream_id] = {"headers": ev.headers, "body": bytearray()}
            self.open += 1
            with STATE.lock:
                STATE.streams += 1
                STATE.max_concurrent = max(STATE.max_concurrent, self.open)
            if ev.stream_ended:
                self.on_request(ev.stream_id)
        elif isinstance(ev, h2.events.DataReceived):
            r = self.reqs.get(ev.stream_id)
            if r is not None:
                r["body"] += ev.data
            self.h2.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
        elif isinstance(ev, h2.events.TrailersReceived):
            r = self.reqs.get(ev.stream_id)
            if r is not None:
                r["trailers"] = ev.headers
        elif isinstance(ev, h2.events.StreamEnded):
            r = self.reqs.get(ev.stream_id)
            if r is not None and not r.get("handled"):
                self.on_request(ev.stream_id)
        elif isinstance(ev, h2.events.StreamReset):
            self.done(ev.stream_id)
        elif isinstance(ev, h2.events.PingReceived):
            with STATE.lock:
                STATE.pings += 1
        elif isinstance(ev, h2.events.WindowUpdated):
            pass

    def done(self, sid):
        if self.reqs.pop(sid, None) is not None:
            self.open -= 1
        self.pending.pop(sid, None)

    def base_headers(self, sid, status=200):
        return [(b":status", str(status).encode()), (b"x-backend-id", self.ident.encode()),
                (b"x-backend-conn", str(self.num).encode()),
                (b"x-backend-stream", str(sid).encode())]

    def respond(self, sid, headers, body=b"", trailers=None, cl=True):
        if cl and trailers is None:
            headers = headers + [(b"content-length", str(len(body)).encode())]
        end = not body and trailers is None
        self.h2.send_headers(sid, headers, end_stream=end)
        if end:
            self.done(sid)
            return
        self.pending[sid] = [bytearray(body), trailers]
        self.flush()

    def flush(self):
        for sid in list(self.pending):
            item = self.pending[sid]
            data, trailers = item
            while data:
                try:
                    win = min(self.h2.local_flow_control_window(sid),
                              self.h2.max_outbound_frame_size)
                except (h2.exceptions.StreamClosedError, KeyError):
                    self.done(sid)
                    break
                if win <= 0:
                    break
                chunk = bytes(data[:win])
                del data[:win]
                self.h2.send_data(sid, chunk, end_stream=(not data and trailers is None))
            if sid in self.pending and not data:
                if trailers is not None:
                    self.h2.send_headers(sid, trailers, end_stream=True)
                self.done(sid)

    def request_info(self, sid):
        r = self.reqs[sid]
        hs = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in r["headers"]]
        pseudo = {k: v for k, v in hs if k.startswith(":")}
        return r, hs, pseudo

    def on_request(self, sid):
        r, hs, pseudo = self.request_info(sid)
        r["handled"] = True
        path = pseudo.get(":path", "")
        u = urllib.parse.urlsplit(path)
        q = dict(urllib.parse.parse_qsl(u.query))
        last = u.path.rstrip("/").rsplit("/", 1)[-1]
        with STATE.lock:
            STATE.requests.append({"method": pseudo.get(":method"), "path": path,
                                   "conn": self.num, "stream": sid,
                                   "headers": [[k, v] for k, v in hs if not k.startswith(":")],
                                   "trailers": [[k.decode(), v.decode()]
                                                for k, v in r.get("trailers", [])]})
            forced = None
            if STATE.refuse > 0:
                STATE.refuse -= 1
                forced = "refuse"
            elif STATE.goaway > 0:
                STATE.goaway -= 1
                forced = "goaway"
        if forced == "refuse" or last == "refuse":
            self.h2.reset_stream(sid, h2.errors.ErrorCodes.REFUSED_STREAM)
            self.done(sid)
            return
        if forced == "goaway" or last == "goaway":
            self.h2.close_connection(error_code=h2.errors.ErrorCodes.NO_ERROR,
                                     last_stream_id=max(0, sid - 2))
            self.close_at = time.monotonic() + 0.5
            return
        if last == "rst":
            self.h2.reset_stream(sid, h2.errors.ErrorCodes.INTERNAL_ERROR)
            self.done(sid)
            return
        if last == "echo":
            hdrs = self.base_headers(sid)
            name = q.get("h")
            if name:
                for k, v in hs:
                    if k == name.lower():
                        hdrs.append((("x-echo-" + k).encode(), v.encode("latin-1")))
            self.respond(sid, hdrs, bytes(r["body"]), cl=q.get("nocl") != "1")
            return
        if last == "bytes":
            n = int(q.get("n", "0"))
            body = b"".join(fake_backend.pattern_chunks(n))
            self.respond(sid, self.base_headers(sid), body, cl=q.get("nocl") != "1")
            return
        if last == "trailers":
            self.respond(sid, self.base_headers(sid), b"hello",
                         trailers=[(b"x-trailer-one", b"1"), (b"x-trailer-two", b"two")])
            return
        if last == "status":
            code = int(q.get("code", "200"))
            body = b"" if code in (204, 304) else b"status %d\n" % code
            self.respond(sid, self.base_headers(sid, code), body, cl=code not in (204, 304))
            return
        if last == "sleep":
            self.timers.append((time.monotonic() + int(q.get("ms", "100")) / 1000.0, sid, None))
            return
        self.answer_json(sid, None)

    def answer_json(self, sid, _req):
        if sid not in self.reqs:
            return
        r, hs, pseudo = self.request_info(sid)
        body = bytes(r["body"])
        doc = {"method": pseudo.get(":method"), "path": pseudo.get(":path"),
               "authority": pseudo.get(":authority"), "scheme": pseudo.get(":scheme"),
               "headers": [[k, v] for k, v in hs if not k.startswith(":")],
               "body_len": len(body), "body_sha256": hashlib.sha256(body).hexdigest(),
               "backend": self.ident, "conn": self.num, "stream": sid}
        out = json.dumps(doc).encode()
        self.respond(sid, self.base_headers(sid) + [(b"content-type", b"application/json")], out)


class Control(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def do_GET(self):
        u = urllib.parse.urlsplit(self.path)
        q = dict(urllib.parse.parse_qsl(u.query))
        with STATE.lock:
            if u.path == "/stats":
                doc = {"connections": STATE.connections, "streams": STATE.streams,
                       "pings": STATE.pings, "max_concurrent": STATE.max_concurrent,
                       "requests": list(STATE.requests)}
            elif u.path == "/mode":
                STATE.refuse += int(q.get("refuse", "0"))
                STATE.goaway += int(q.get("goaway", "0"))
                doc = {"ok": True}
            elif u.path == "/reset":
                STATE.reset()
                doc = {"ok": True}
            else:
                doc = {"error": "unknown"}
        body = json.dumps(doc).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--id", required=True)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--max-streams", type=int, default=0)
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    a = ap.parse_args()
    if a.tls_cert:
        global TLS_CTX
        TLS_CTX = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        TLS_CTX.load_cert_chain(a.tls_cert, a.tls_key)
        TLS_CTX.set_alpn_protocols(["h2"])
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    signal.signal(signal.SIGINT, lambda *_: os._exit(0))
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((a.host, a.port))
    ls.listen(128)
    ctl = http.server.ThreadingHTTPServer((a.host, 0), Control)
    threading.Thread(target=ctl.serve_forever, daemon=True).start()
    print("ready %s:%d %s:%d" % (a.host, ls.getsockname()[1], a.host, ctl.server_address[1]),
          flush=True)
    while True:
        s, _ = ls.accept()
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with STATE.lock:
            STATE.connections += 1
            num = STATE.connections
        c = Conn(s, a.id, num, a.max_streams)
        threading.Thread(target=c.run, daemon=True).start()


if __name__ == "__main__":
    main()
