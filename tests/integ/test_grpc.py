# SPDX-License-Identifier: MIT
"""gRPC through keel: a grpcio client (insecure channel, one HTTP/2 connection) to an http
listener, a `protocol: grpc` cluster of grpc_backend.py endpoints. Calls spread over the
endpoints, streaming both ways byte-exact, statuses and trailing metadata unchanged, deadlines
propagated and honoured by keel, keel's own failures as gRPC statuses (UNAVAILABLE,
RESOURCE_EXHAUSTED, UNIMPLEMENTED, DEADLINE_EXCEEDED)."""

import json
import os
import queue
import threading
import time
import unittest

import grpc

from keeltest import (H2Client, KeelTestCase, cluster, free_port, http_listener, keel_yaml,
                      start_grpc_backend)

SVC = "/keel.test.Echo/"
OPTS = [("grpc.enable_http_proxy", 0), ("grpc.max_receive_message_length", 16 << 20),
        ("grpc.max_send_message_length", 16 << 20)]


def ident(x):
    return x


class GrpcTest(KeelTestCase):
    def setUp(self):
        super().setUp()
        self.gs = [start_grpc_backend(self, "g%d" % i) for i in (1, 2, 3)]
        self.cb_backend = start_grpc_backend(self, "cb")
        self.port, self.admin = self.free_port(), self.free_port()
        grpc_c = cluster("echo", [g.addr for g in self.gs], lb="round_robin")
        grpc_c["protocol"] = "grpc"
        down = cluster("down", [free_port(), free_port()])
        down["protocol"] = "grpc"
        down["timeouts"] = {"connect": "1s"}
        cb = cluster("cb", [self.cb_backend.addr])
        cb["protocol"] = "grpc"
        cb["circuit_breaker"] = {"max_requests": 1}
        routes = [
            {"match": {"headers": [{"name": "x-cluster", "value": "cb"}]}, "cluster": "cb"},
            {"match": {"headers": [{"name": "x-cluster", "value": "down"}]}, "cluster": "down"},
            {"match": {"path_prefix": SVC}, "cluster": "echo"},
        ]
        self.k = self.start_keel(keel_yaml([http_listener(self.port, routes)],
                                           [grpc_c, down, cb], self.admin, workers=2))
        self.ch = grpc.insecure_channel("127.0.0.1:%d" % self.port, options=OPTS)
        self.addCleanup(self.ch.close)
        grpc.channel_ready_future(self.ch).result(timeout=10)

    def unary(self, method, req, timeout=10, md=None):
        return self.ch.unary_unary(SVC + method, request_serializer=ident,
                                   response_deserializer=ident)(req, timeout=timeout,
                                                                metadata=md)

    def unary_with_call(self, method, req, timeout=10, md=None):
        return self.ch.unary_unary(SVC + method, request_serializer=ident,
                                   response_deserializer=ident).with_call(
                                       req, timeout=timeout, metadata=md)

    def code_of(self, fn):
        """Runs fn; returns (status code, details, trailing metadata, seconds taken)."""
        t0 = time.monotonic()
        try:
            fn()
            return grpc.StatusCode.OK, "", (), time.monotonic() - t0
        except grpc.RpcError as e:
            return e.code(), e.details(), tuple(e.trailing_metadata() or ()), \
                time.monotonic() - t0

    # -- happy paths ---------------------------------------------------------------------
    def test_unary_spread_over_endpoints(self):
        seen = {}
        for i in range(30):
            payload = os.urandom(100 + i * 37)
            resp, call = self.unary_with_call("Unary", payload)
            who, _, echoed = resp.partition(b"|")
            self.assertEqual(echoed, payload)
            # The trailing metadata of the backend arrives unchanged.
            tmd = dict(call.trailing_metadata())
            self.assertEqual(tmd.get("x-backend-id"), who.decode())
            self.assertEqual(call.code(), grpc.StatusCode.OK)
            seen[who] = seen.get(who, 0) + 1
        self.assertEqual(set(seen), {b"g1", b"g2", b"g3"}, seen)
        # Concurrent calls on the same channel (one connection) spread too.
        futs = [self.ch.unary_unary(SVC + "Unary", request_serializer=ident,
                                    response_deserializer=ident).future(b"c%d" % i, timeout=10)
                for i in range(30)]
        whos = {f.result().split(b"|")[0] for f in futs}
        self.assertEqual(whos, {b"g1", b"g2", b"g3"})

    def test_large_unary_exact(self):
        payload = os.urandom(3 * 1024 * 1024 + 5)
        resp = self.unary("Unary", payload, timeout=30)
        self.assertEqual(resp.split(b"|", 1)[1], payload)

    def test_bidi_streaming_interleaved(self):
        sizes = [1, 5, 1000, 16384, 65537, 300000, 1048576, 7]
        msgs = [os.urandom(n) for n in sizes]
        q = queue.Queue()

        def requests():
            # Each message goes out only after the echo of the previous one came back: keel
            # must stream both ways without waiting for the end of either side.
            for m in msgs:
                yield m
                if q.get(timeout=10) is None:
                    return

        call = self.ch.stream_stream(SVC + "BidiEcho", request_serializer=ident,
                                     response_deserializer=ident)(requests(), timeout=30)
        got = []
        for r in call:
            got.append(r)
            q.put(True)
        self.assertEqual(len(got), len(msgs))
        for a, b in zip(got, msgs):
            self.assertEqual(a, b)
        self.assertEqual(call.code(), grpc.StatusCode.OK)
        md = dict(call.initial_metadata())
        self.assertIn(md.get("x-backend-id"), ("g1", "g2", "g3"))

        # Many messages sent at once, read after.
        many = [os.urandom(i * 101 % 5000 + 1) for i in range(200)]
        call = self.ch.stream_stream(SVC + "BidiEcho", request_serializer=ident,
                                     response_deserializer=ident)(iter(many), timeout=30)
        self.assertEqual(list(call), many)

    def test_server_streaming(self):
        call = self.ch.unary_stream(SVC + "ServerStream", request_serializer=ident,
                                    response_deserializer=ident)(b"60:5000", timeout=30)
        got = list(call)
        self.assertEqual(len(got), 60)
        who = got[0].split(b"|")[0]
        self.assertIn(who, (b"g1", b"g2", b"g3"))
        for i, m in enumerate(got):
            self.assertEqual(m, who + b"|%d|" % i + bytes([i % 251]) * 5000)
        self.assertEqual(call.code(), grpc.StatusCode.OK)

    def test_statuses_and_trailers_unchanged(self):
        cases = [(grpc.StatusCode.FAILED_PRECONDITION, "not ready: 50% done"),
                 (grpc.StatusCode.NOT_FOUND, "no such thing"),
                 (grpc.StatusCode.PERMISSION_DENIED, "go away"),
                 (grpc.StatusCode.INTERNAL, "backend bug"),
                 (grpc.StatusCode.UNAVAILABLE, "backend says unavailable"),
                 (grpc.StatusCode.RESOURCE_EXHAUSTED, "backend quota")]
        for code, msg in cases:
            spec = {"code": code.value[0], "message": msg,
                    "trailers": {"x-detail": "d-%s" % code.name.lower(), "x-two": "2"}}
            got, details, tmd, _ = self.code_of(
                lambda: self.unary("Fail", json.dumps(spec).encode()))
            self.assertEqual(got, code, msg)
            self.assertEqual(details, msg)
            tmd = dict(tmd)
            self.assertEqual(tmd.get("x-detail"), "d-%s" % code.name.lower())
            self.assertEqual(tmd.get("x-two"), "2")
            self.assertIn(tmd.get("x-backend-id"), (None, "g1", "g2", "g3"))

    # -- deadlines -----------------------------------------------------------------------
    def test_deadline_propagates(self):
        # The backend sees the client's deadline (grpc-timeout forwarded).
        info = json.loads(self.unary("Info", b"", timeout=7))
        self.assertIsNotNone(info["time_remaining"], info)
        # gRPC rounds grpc-timeout up to a coarser unit when encoding it: a few ms over.
        self.assertLessEqual(info["time_remaining"], 7.1)
        self.assertGreater(info["time_remaining"], 3.0)
        # A slow call with a 300 ms deadline ends quickly with DEADLINE_EXCEEDED.
        code, _, _, took = self.code_of(lambda: self.unary("Slow", b"5000", timeout=0.3))
        self.assertEqual(code, grpc.StatusCode.DEADLINE_EXCEEDED)
        self.assertLess(took, 3.0)
        # The channel is fine afterwards.
        self.assertTrue(self.unary("Unary", b"after").endswith(b"|after"))

    def test_keel_honours_grpc_timeout(self):
        # A raw h2 client sends grpc-timeout: 300m and never gives up on its own: keel must
        # end the call with DEADLINE_EXCEEDED itself, long before its 60 s response timeout.
        c = H2Client(self.port, timeout=20)
        self.addCleanup(c.close)
        body = b"\x00" + len(b"8000").to_bytes(4, "big") + b"8000"
        t0 = time.monotonic()
        sid = c.request("POST", SVC + "Slow", headers=[("content-type", "application/grpc"),
                                                       ("te", "trailers"),
                                                       ("grpc-timeout", "300m")], body=body)
        st = c.response(sid, timeout=20)
        took = time.monotonic() - t0
        self.assertLess(took, 6.0, "keel waited %.1f s on a 300 ms grpc-timeout" % took)
        self.assertEqual(st.status, 200, st)
        status = st.trailer("grpc-status") or st.header("grpc-status")
        self.assertEqual(status, "4", (st.headers, st.trailers))
        self.assertIsNone(c.goaway)

    # -- keel's own failures -------------------------------------------------------------
    def test_killed_backend_unavailable_not_hang(self):
        self.assertEqual(len({self.unary("Unary", b"x").split(b"|")[0] for _ in range(6)}), 3)
        # Calls in flight on the backend that dies.
        results = []

        def slow(i):
            results.append(self.code_of(lambda: self.unary("Slow", b"1500", timeout=8)))

        ts = [threading.Thread(target=slow, args=(i,), daemon=True) for i in range(6)]
        for t in ts:
            t.start()
        time.sleep(0.5)
        self.gs[1].kill()
        for t in ts:
            t.join(15)
        self.assertEqual(len(results), 6)
        for code, details, _, took in results:
            self.assertIn(code, (grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE),
                          "%s %s" % (code, details))
            self.assertLess(took, 7.5, "a call waited for its deadline (%s)" % code)
        self.assertGreaterEqual(len([r for r in results if r[0] == grpc.StatusCode.OK]), 4)
        # New calls: served by the survivors or UNAVAILABLE, never a hang.
        ok = 0
        for i in range(30):
            code, details, _, took = self.code_of(lambda: self.unary("Unary", b"k%d" % i,
                                                                     timeout=5))
            self.assertIn(code, (grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE),
                          "%s %s" % (code, details))
            self.assertLess(took, 4.5)
            ok += code == grpc.StatusCode.OK
        self.assertGreaterEqual(ok, 15)
        whos = {self.unary("Unary", b"z", timeout=5).split(b"|")[0] for _ in range(4)}
        self.assertTrue(whos <= {b"g1", b"g3"}, whos)

    def test_all_backends_down_unavailable(self):
        for _ in range(3):
            code, details, _, took = self.code_of(
                lambda: self.unary("Unary", b"x", timeout=8, md=[("x-cluster", "down")]))
            self.assertEqual(code, grpc.StatusCode.UNAVAILABLE, details)
            self.assertLess(took, 7.5)
        # The channel still works for the healthy cluster.
        self.assertTrue(self.unary("Unary", b"ok").endswith(b"|ok"))

    def test_circuit_breaker_resource_exhausted(self):
        results = []
        lock = threading.Lock()

        def call(i):
            r = self.code_of(lambda: self.unary("Slow", b"800", timeout=10,
                                                md=[("x-cluster", "cb")]))
            with lock:
                results.append(r)

        ts = [threading.Thread(target=call, args=(i,), daemon=True) for i in range(6)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(15)
        codes = [r[0] for r in results]
        self.assertEqual(len(codes), 6)
        self.assertIn(grpc.StatusCode.RESOURCE_EXHAUSTED, codes, results)
        self.assertIn(grpc.StatusCode.OK, codes, results)
        self.assertTrue(set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED},
                        results)
        # Under the limit again: served.
        self.assertEqual(self.unary("Slow", b"0", md=[("x-cluster", "cb")]), b"cb|slept")

    def test_no_route_unimplemented(self):
        code, details, _, took = self.code_of(
            lambda: self.ch.unary_unary("/nope.Service/Method", request_serializer=ident,
                                        response_deserializer=ident)(b"x", timeout=5))
        self.assertEqual(code, grpc.StatusCode.UNIMPLEMENTED, details)
        self.assertTrue(self.unary("Unary", b"still").endswith(b"|still"))


if __name__ == "__main__":
    unittest.main()
