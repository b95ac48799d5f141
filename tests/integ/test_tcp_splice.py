# SPDX-License-Identifier: MIT
"""TCP tunnels between plain sockets relay with splice() through pipes: the pipes exist, a
stalled reader still gets every byte, the idle timeout and the byte counters still work."""

import hashlib
import os
import re
import socket
import threading
import time
import unittest

from keeltest import KeelTestCase, cluster, keel_yaml, pipe_fds


def tcp_listener(port, cluster_name, idle="1h"):
    return {"name": "db", "address": "127.0.0.1:%d" % port, "protocol": "tcp",
            "cluster": cluster_name, "timeouts": {"idle": idle}}


def new_pipes(before, after):
    return sorted(k for k in after if k not in before)


class TcpSpliceTest(KeelTestCase):
    def start(self, idle="1h", workers=2):
        self.be = self.start_backend("t1", mode="tcp-echo")
        self.port = self.free_port()
        self.keel = self.start_keel(keel_yaml([tcp_listener(self.port, "tcpc", idle)],
                                              [cluster("tcpc", [self.be.addr])],
                                              self.free_port(), workers=workers))

    def echo(self, c, data):
        t = threading.Thread(target=c.send, args=(data,), daemon=True)
        t.start()
        got = c.read_exact(len(data))
        t.join(10)
        return got

    def test_tunnel_takes_two_pipes(self):
        self.start(workers=1)  # the pipe cache is per worker thread
        before = pipe_fds(self.keel.proc.pid)
        c = self.client(self.port, timeout=20)
        data = os.urandom(1 << 20)
        self.assertEqual(self.echo(c, data), data)
        # One pipe (both ends held) per direction, taken when the tunnel starts.
        during = pipe_fds(self.keel.proc.pid)
        made = new_pipes(before, during)
        self.assertEqual(len(made), 2, (before, during))
        self.assertEqual([during[k] for k in made], [2, 2])
        c.sock.shutdown(socket.SHUT_WR)
        self.assertEqual(c.read_to_close(), b"")
        self.keel.wait_log(r'"TCP -"')  # logged when keel has closed the tunnel
        c.close()
        # Empty pipes are kept for the next tunnel, not created again.
        c2 = self.client(self.port, timeout=20)
        self.assertEqual(self.echo(c2, b"again"), b"again")
        self.assertEqual(new_pipes(during, pipe_fds(self.keel.proc.pid)), [])

    def test_stalled_reader_gets_every_byte(self):
        # One worker: the tunnel whose pipes are full and the second connection below share
        # its loop, which must keep serving (no spin on a full pipe, no blocking).
        self.start(workers=1)
        c = self.client(self.port, timeout=60)
        data = os.urandom(48 << 20)
        sent = threading.Event()

        def send_all():
            c.send(data)
            sent.set()

        t = threading.Thread(target=send_all, daemon=True)
        t.start()
        # Nobody reads: the buffers on the way fill (sockets, both pipes, the echo backend;
        # loopback socket buffers can grow to several MB each, hence 48 MB).
        sent.wait(1.0)
        other = self.client(self.port, timeout=10)
        self.assertEqual(self.echo(other, b"still serving"), b"still serving")
        other.close()
        got = hashlib.sha256()
        n = 0
        while n < len(data):
            d = c.read_some(1 << 20)
            got.update(d)
            n += len(d)
        t.join(30)
        self.assertTrue(sent.is_set())
        self.assertEqual(n, len(data))
        self.assertEqual(got.hexdigest(), hashlib.sha256(data).hexdigest())

    def test_byte_counters_and_half_close(self):
        self.start()
        c = self.client(self.port, timeout=20)
        data = os.urandom(3 << 20)
        t = threading.Thread(target=lambda: (c.send(data), c.sock.shutdown(socket.SHUT_WR)),
                             daemon=True)
        t.start()
        got = c.read_to_close(limit=len(data) + 1)
        t.join(10)
        self.assertEqual(got, data)
        line = self.keel.wait_log(r'"TCP -".*bytes_in=\d+ bytes_out=\d+')
        self.assertTrue(line)
        m = re.search(r'"TCP -".*bytes_in=(\d+) bytes_out=(\d+)', self.keel.log_text())
        self.assertEqual((int(m.group(1)), int(m.group(2))), (len(data), len(data)))

    def test_idle_timeout_closes_spliced_tunnel(self):
        self.start(idle="1s")
        c = self.client(self.port, timeout=20)
        data = os.urandom(1 << 20)
        self.assertEqual(self.echo(c, data), data)
        # No more traffic: keel closes the tunnel after the idle timeout (bounded wait).
        t0 = time.monotonic()
        self.assertTrue(c.wait_closed(timeout=15))
        self.assertGreaterEqual(time.monotonic() - t0, 0.5)


if __name__ == "__main__":
    unittest.main()
