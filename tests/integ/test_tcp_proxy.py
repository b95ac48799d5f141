# SPDX-License-Identifier: MIT
"""TCP listeners: byte-exact relay, half-close, connections balanced over endpoints."""

import hashlib
import os
import socket
import threading
import time
import unittest

from keeltest import KeelTestCase, cluster, keel_yaml


def tcp_listener(port, cluster_name):
    return {"name": "db", "address": "127.0.0.1:%d" % port, "protocol": "tcp",
            "cluster": cluster_name, "timeouts": {"idle": "1h"}}


class TcpProxyTest(KeelTestCase):
    def start(self, backends, lb=None):
        self.port = self.free_port()
        self.start_keel(keel_yaml([tcp_listener(self.port, "tcpc")],
                                  [cluster("tcpc", [b.addr for b in backends], lb=lb)],
                                  self.free_port()))

    def test_5mb_echo_byte_exact(self):
        be = self.start_backend("t1", mode="tcp-echo")
        self.start([be])
        data = os.urandom(5 * 1024 * 1024)
        c = self.client(self.port, timeout=20)
        t = threading.Thread(target=c.send, args=(data,), daemon=True)
        t.start()
        got = hashlib.sha256()
        n = 0
        while n < len(data):
            d = c.read_some(1 << 20)
            got.update(d)
            n += len(d)
        t.join(10)
        self.assertEqual(n, len(data))
        self.assertEqual(got.hexdigest(), hashlib.sha256(data).hexdigest())
        # Still a working tunnel afterwards.
        c.send(b"tail")
        self.assertEqual(c.read_exact(4), b"tail")

    def test_half_close(self):
        be = self.start_backend("t1", mode="tcp-echo")
        self.start([be])
        c = self.client(self.port, timeout=20)
        data = os.urandom(2 * 1024 * 1024)
        # Send everything, then shut down our write side at once: most of the echo is
        # still on its way and must arrive after our FIN, followed by the close.
        t = threading.Thread(target=lambda: (c.send(data), c.sock.shutdown(socket.SHUT_WR)),
                             daemon=True)
        t.start()
        got = c.read_to_close(limit=len(data) + 1)
        t.join(10)
        self.assertEqual(len(got), len(data))
        self.assertEqual(got, data)

        # Small request: write, FIN, then the reply.
        c2 = self.client(self.port, timeout=10)
        c2.send(b"hello, half-closed world")
        c2.sock.shutdown(socket.SHUT_WR)
        t0 = time.monotonic()
        self.assertEqual(c2.read_to_close(), b"hello, half-closed world")
        self.assertLess(time.monotonic() - t0, 5)

    def test_connections_balanced(self):
        b1 = self.start_backend("t1", mode="tcp-echo", greet=True)
        b2 = self.start_backend("t2", mode="tcp-echo", greet=True)
        self.start([b1, b2], lb="round_robin")
        counts = {"t1": 0, "t2": 0}
        for _ in range(20):
            c = self.client(self.port, timeout=5)
            who = c.read_until(b"\n").strip().decode()
            counts[who] += 1
            c.send(b"x")
            self.assertEqual(c.read_exact(1), b"x")
            c.close()
        self.assertGreaterEqual(counts["t1"], 7, counts)
        self.assertGreaterEqual(counts["t2"], 7, counts)

    def test_concurrent_connections_least_conn(self):
        b1 = self.start_backend("t1", mode="tcp-echo", greet=True)
        b2 = self.start_backend("t2", mode="tcp-echo", greet=True)
        self.start([b1, b2])  # default: weighted_least_conn
        counts = {"t1": 0, "t2": 0}
        held = []
        for _ in range(10):
            c = self.client(self.port, timeout=5)
            counts[c.read_until(b"\n").strip().decode()] += 1
            held.append(c)
        self.assertGreaterEqual(counts["t1"], 4, counts)
        self.assertGreaterEqual(counts["t2"], 4, counts)
        for i, c in enumerate(held):
            msg = b"conn %d" % i
            c.send(msg)
            self.assertEqual(c.read_exact(len(msg)), msg)


if __name__ == "__main__":
    unittest.main()
