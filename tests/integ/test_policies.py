# SPDX-License-Identifier: MIT
"""Latency- and key-aware policies: least_response_time and hash (header, cookie, client IP)."""

import collections
import http.server
import threading
import unittest

from keeltest import KeelTestCase, cluster, http_listener, keel_yaml, wait_for


class _SlowHandler(http.server.BaseHTTPRequestHandler):
    """Answers every request after 50 ms, with keep-alive, as backend "slow"."""

    protocol_version = "HTTP/1.1"

    def do_GET(self):  # noqa: N802 - http.server's naming
        threading.Event().wait(0.05)
        body = b"slow\n"
        self.send_response(200)
        self.send_header("X-Backend-Id", "slow")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class PoliciesTest(KeelTestCase):
    def start_slow_backend(self):
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _SlowHandler)
        srv.daemon_threads = True
        t = threading.Thread(target=srv.serve_forever, daemon=True)
        t.start()

        def stop():
            srv.shutdown()
            srv.server_close()
            t.join(5)
        self.addCleanup(stop)
        return "127.0.0.1:%d" % srv.server_address[1]

    def start_hash(self, addrs, hash_on=None):
        """A keel with one `lb: hash` cluster over addrs; returns (listener port, keel)."""
        port = self.free_port()
        cl = cluster("api", addrs, lb="hash")
        if hash_on:
            cl["hash_on"] = hash_on
        keel = self.start_keel(keel_yaml([http_listener(port, [{"cluster": "api"}])], [cl],
                                         self.free_port()))
        return port, keel

    @staticmethod
    def in_flight(keel):
        return sum(e["active"] for cl in keel.admin("/v1/clusters").json()["clusters"]
                   for e in cl["endpoints"])

    def backend_for(self, target, headers=(), source=None):
        """Which backend answers one request on a new connection; target is (port, keel).
        Waits until keel has nothing in flight first: the bounded-load rule moves a key off
        an endpoint that holds even one request when the total is that small (bound
        ceil(1.25 x 2 / 3) = 1), and the previous request, answered already, may still be
        counted for a few microseconds on the other worker."""
        port, keel = target
        wait_for(lambda: self.in_flight(keel) == 0, timeout=5, what="no request in flight")
        c = self.client(port, source=source)
        r = c.get("/", headers=list(headers))
        c.close()
        self.assertEqual(r.status, 200, r)
        return r.header("X-Backend-Id")

    def test_least_response_time_prefers_fast(self):
        fast = self.start_backend("fast")
        slow = self.start_slow_backend()
        port = self.free_port()
        self.start_keel(keel_yaml(
            [http_listener(port, [{"cluster": "api"}])],
            [cluster("api", [fast.addr, slow], lb="least_response_time")],
            self.free_port()))
        c = self.client(port)
        seen = collections.Counter()
        for _ in range(100):
            r = c.get("/")
            self.assertEqual(r.status, 200, r)
            seen[r.header("X-Backend-Id")] += 1
        self.assertEqual(seen["fast"] + seen["slow"], 100, seen)
        # Both were measured (a new endpoint scores as the best known one, so it is tried),
        # then the 50 ms one loses every comparison until its estimate is forgiven.
        self.assertGreater(seen["fast"], 70, seen)
        self.assertGreaterEqual(seen["slow"], 1, seen)
        # The admin API shows the estimates the choice was made on.
        eps = {e["address"]: e for cl in self.keel.admin("/v1/clusters").json()["clusters"]
               for e in cl["endpoints"]}
        self.assertGreaterEqual(eps[slow]["latency_ewma_ms"], 40, eps[slow])
        # The fast one's own figure depends on how busy the machine is; it must be the lower.
        self.assertLess(eps[fast.addr]["latency_ewma_ms"], eps[slow]["latency_ewma_ms"], eps)

    def test_hash_header_sticks_and_spreads(self):
        bes = self.start_backends(["h1", "h2", "h3"])
        target = self.start_hash([b.addr for b in bes.values()], {"header": "X-User"})
        home = {}
        for u in range(30):
            got = set()
            # Each user from three different client addresses, new connections each time:
            # the header decides, not the address.
            for src in ("127.0.0.1", "127.0.0.2", "127.0.0.3"):
                got.add(self.backend_for(target, [("X-User", "user-%d" % u)], source=src))
            self.assertEqual(len(got), 1, "user-%d reached %s" % (u, got))
            home[u] = got.pop()
        self.assertEqual(set(home.values()), {"h1", "h2", "h3"}, home)
        # Header names are case-insensitive; the value is the key.
        self.assertEqual(self.backend_for(target, [("x-user", "user-7")]), home[7])
        # Without the header the client address is hashed instead: the same address sticks,
        # and addresses spread.
        by_src = {}
        for i in range(2, 26):
            src = "127.0.0.%d" % i
            ids = {self.backend_for(target, source=src) for _ in range(3)}
            self.assertEqual(len(ids), 1, "%s without X-User reached %s" % (src, ids))
            by_src[src] = ids.pop()
        self.assertGreaterEqual(len(set(by_src.values())), 2, by_src)

    def test_hash_cookie_sticks_and_spreads(self):
        bes = self.start_backends(["c1", "c2", "c3"])
        target = self.start_hash([b.addr for b in bes.values()], {"cookie": "sid"})
        home = {}
        for u in range(30):
            got = set()
            for i, src in enumerate(("127.0.0.1", "127.0.0.2")):
                # Other cookies around it, in a different order, change nothing.
                cookie = "a=1; sid=s%d; b=2" % u if i == 0 else "sid=\"s%d\"; theme=dark" % u
                got.add(self.backend_for(target, [("Cookie", cookie)], source=src))
            self.assertEqual(len(got), 1, "sid s%d reached %s" % (u, got))
            home[u] = got.pop()
        self.assertEqual(set(home.values()), {"c1", "c2", "c3"}, home)
        # A cookie with the same value but another name is not the key: those requests hash
        # the client address, so from one address they all go to one backend.
        ids = {self.backend_for(target, [("Cookie", "xsid=s%d" % u)], source="127.0.0.9")
               for u in range(10)}
        self.assertEqual(len(ids), 1, ids)

    def test_hash_adding_endpoint_moves_few_keys(self):
        """Rendezvous order depends only on key and endpoint identity, so two keels with four
        and with five endpoints agree on every key that the fifth does not win."""
        bes = self.start_backends(["k1", "k2", "k3", "k4", "k5"])
        addrs = [bes["k%d" % i].addr for i in range(1, 6)]
        keel4 = self.start_hash(addrs[:4], {"header": "X-User"})
        keel5 = self.start_hash(addrs, {"header": "X-User"})
        moved = elsewhere = 0
        n = 200
        for u in range(n):
            h = [("X-User", "key-%d" % u)]
            before, after = self.backend_for(keel4, h), self.backend_for(keel5, h)
            if before != after:
                moved += 1
                if after != "k5":
                    elsewhere += 1
        # Ideal 1/5 = 40 of 200; +-20 is more than 3.5 standard deviations (sd ~5.7).
        self.assertTrue(20 <= moved <= 60, "moved %d of %d" % (moved, n))
        self.assertEqual(elsewhere, 0, "%d keys moved between the old endpoints" % elsewhere)


if __name__ == "__main__":
    unittest.main()
