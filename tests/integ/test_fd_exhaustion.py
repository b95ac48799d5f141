# SPDX-License-Identifier: MIT
"""Running out of file descriptors: keel pauses accepting instead of spinning, and serves again
once descriptors are free."""

import os
import socket
import stat
import time
import unittest

from keeltest import KeelTestCase, cluster, http_listener, keel_bin, keel_yaml, wait_for


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class FdExhaustionTest(KeelTestCase):
    def test_emfile_pauses_accept_then_recovers(self):
        be = self.start_backend("b1")
        port, admin = self.free_port(), self.free_port()
        # keel under a small descriptor limit: a wrapper execs it (same PID) through prlimit.
        wrapper = os.path.join(self.tmp, "keel-lowfd")
        with open(wrapper, "w") as f:
            f.write("#!/bin/sh\nexec prlimit --nofile=40:40 -- %s \"$@\"\n" % keel_bin())
        os.chmod(wrapper, os.stat(wrapper).st_mode | stat.S_IEXEC)
        old = os.environ.get("KEEL_BIN")
        os.environ["KEEL_BIN"] = wrapper
        try:
            k = self.start_keel(keel_yaml([http_listener(port, [{"cluster": "c"}])],
                                          [cluster("c", [be.addr])], admin, workers=1))
        finally:
            if old is None:
                del os.environ["KEEL_BIN"]
            else:
                os.environ["KEEL_BIN"] = old
        self.assertEqual(self.client(port).get("/before").status, 200)

        socks = []
        for _ in range(60):  # more than the 40 descriptors keel may hold
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            socks.append(s)
        k.wait_log(r"pausing accepts", timeout=10)
        # Paused, not spinning: over one second keel uses well under half a CPU second.
        t0 = cpu_seconds(k.proc.pid)
        time.sleep(1.0)
        used = cpu_seconds(k.proc.pid) - t0
        self.assertLess(used, 0.5, "keel burned %.2fs of CPU in 1s while out of fds" % used)
        for s in socks:
            s.close()
        # Descriptors come back as keel notices the closes; new clients are served again.
        def ok():
            try:
                return self.client(port, timeout=3).get("/after").status == 200
            except Exception:
                return False
        wait_for(ok, timeout=20, what="a request to succeed after the descriptors were freed")
        k.wait_log(r"accepting again", timeout=5)
        # One warning per episode (descriptors freed by closing clients can end an episode
        # and the queued connections start another), not one per 100 ms retry: the pause
        # above lasted over a second, which would have logged ten or more.
        self.assertLess(k.log_text().count("pausing accepts"), 5)
        self.assertIsNone(k.proc.poll(), "keel exited")


if __name__ == "__main__":
    unittest.main()
