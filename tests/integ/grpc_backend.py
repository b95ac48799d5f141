#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""A gRPC test backend (grpcio, generic handlers, raw bytes: no protoc needed).

Usage:
    grpc_backend.py --id NAME [--port P ...] [--host 127.0.0.1]

Each --port (0: a free one) is one listening address of the same server. Once it serves,
one line is printed on stdout:  ready HOST:PORT[ HOST:PORT ...]

Service "keel.test.Echo", every message is raw bytes (identity serializers):
  Unary(req)        -> b"<id>|" + req; trailing metadata x-backend-id: <id>
  ServerStream(req) -> req is b"<count>:<size>"; count messages, message i is
                       b"<id>|<i>|" followed by size bytes of pattern (chr(i % 251) repeated)
  BidiEcho(stream)  -> every request message echoed back as it arrives, unchanged
  Slow(req)         -> req is the delay in milliseconds (ascii); answers b"<id>|slept"
                       after it (or returns early when the client cancels)
  Fail(req)         -> req is JSON {"code": N, "message": "...", "trailers": {k: v}};
                       aborts with that status code, details and trailing metadata
  Info(req)         -> JSON: backend id, invocation metadata seen by the server, req_len and
                       time_remaining (seconds left of the call's deadline, None: none)
Every call also sends initial metadata x-backend-id: <id>.
"""

import argparse
import json
import signal
import sys
import threading
import time
from concurrent import futures

import grpc

SERVICE = "keel.test.Echo"


def _ident(x):
    return x


def method_path(name):
    return "/%s/%s" % (SERVICE, name)


class Handlers:
    def __init__(self, ident):
        self.ident = ident
        self.idb = ident.encode()

    def _hello(self, ctx):
        try:
            ctx.send_initial_metadata((("x-backend-id", self.ident),))
        except Exception:  # noqa: BLE001 - already sent / call gone
            pass

    def unary(self, req, ctx):
        self._hello(ctx)
        ctx.set_trailing_metadata((("x-backend-id", self.ident),))
        return self.idb + b"|" + req

    def server_stream(self, req, ctx):
        self._hello(ctx)
        count, size = (int(x) for x in req.decode().split(":"))
        for i in range(count):
            if not ctx.is_active():
                return
            yield self.idb + b"|%d|" % i + bytes([i % 251]) * size

    def bidi(self, it, ctx):
        self._hello(ctx)
        for msg in it:
            yield msg

    def slow(self, req, ctx):
        self._hello(ctx)
        deadline = time.monotonic() + int(req.decode() or "0") / 1000.0
        while time.monotonic() < deadline:
            if not ctx.is_active():
                return b""
            time.sleep(0.02)
        return self.idb + b"|slept"

    def fail(self, req, ctx):
        self._hello(ctx)
        spec = json.loads(req.decode())
        trailers = tuple((k, v) for k, v in spec.get("trailers", {}).items())
        if trailers:
            ctx.set_trailing_metadata(trailers)
        ctx.abort(grpc.StatusCode(_code_tuple(spec["code"])), spec.get("message", ""))

    def info(self, req, ctx):
        self._hello(ctx)
        md = [[k, v if isinstance(v, str) else v.hex()] for k, v in ctx.invocation_metadata()]
        return json.dumps({"backend": self.ident, "metadata": md, "req_len": len(req),
                           "time_remaining": ctx.time_remaining()}).encode()


def _code_tuple(n):
    for c in grpc.StatusCode:
        if c.value[0] == n:
            return c.value
    raise ValueError("unknown status code %d" % n)


def make_server(ident, host, ports, workers=32):
    h = Handlers(ident)
    rpcs = {
        "Unary": grpc.unary_unary_rpc_method_handler(h.unary, _ident, _ident),
        "ServerStream": grpc.unary_stream_rpc_method_handler(h.server_stream, _ident, _ident),
        "BidiEcho": grpc.stream_stream_rpc_method_handler(h.bidi, _ident, _ident),
        "Slow": grpc.unary_unary_rpc_method_handler(h.slow, _ident, _ident),
        "Fail": grpc.unary_unary_rpc_method_handler(h.fail, _ident, _ident),
        "Info": grpc.unary_unary_rpc_method_handler(h.info, _ident, _ident),
    }
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers),
                         options=[("grpc.so_reuseport", 0)])
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, rpcs),))
    bound = []
    for p in ports:
        got = server.add_insecure_port("%s:%d" % (host, p))
        if not got:
            raise SystemExit("cannot bind %s:%d" % (host, p))
        bound.append("%s:%d" % (host, got))
    return server, bound


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--id", required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, action="append")
    a = ap.parse_args()
    server, bound = make_server(a.id, a.host, a.port or [0])
    server.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    sys.stdout.write("ready %s\n" % " ".join(bound))
    sys.stdout.flush()
    while not stop.wait(0.5):
        pass
    server.stop(0.5).wait(2)


if __name__ == "__main__":
    main()
