# SPDX-License-Identifier: MIT
"""Active gRPC health checks (health_check: {type: grpc}) against grpcio servers: keel calls
grpc.health.v1.Health/Check on every endpoint of a `protocol: grpc` cluster; SERVING keeps an
endpoint in rotation, NOT_SERVING takes it out (with the reason in /v1/clusters) until it says
SERVING again, an unknown `service` name and a server without the health service fail, and the
request carries the configured service name and the check timeout as grpc-timeout. States are
read from the admin API (/v1/clusters); routing gRPC calls through keel is test_grpc.py's job.

The health service is written here by hand (generic handler, raw protobuf bytes): Debian has no
grpc_health module for Python."""

import threading
import unittest
from concurrent import futures

import grpc

from keeltest import KeelTestCase, http_listener, keel_yaml, wait_for

INTERVAL = "200ms"
SERVING, NOT_SERVING = 1, 2


def ident(x):
    return x


def decode_request(b):
    """HealthCheckRequest bytes -> service name (field 1, string); ValueError if malformed."""
    if not b:
        return ""
    if b[0] != 0x0A:
        raise ValueError("unexpected tag %#x" % b[0])
    n, shift, i = 0, 0, 1
    while True:
        c = b[i]
        i += 1
        n |= (c & 0x7F) << shift
        shift += 7
        if not c & 0x80:
            break
    if i + n != len(b):
        raise ValueError("length %d does not match %d bytes" % (n, len(b) - i))
    return b[i:i + n].decode()


class HealthServer:
    """A grpcio server on 127.0.0.1: grpc.health.v1.Health/Check answering from `statuses`
    (service name -> ServingStatus; a name not in it gets NOT_FOUND, as grpc's own health
    servicer does), unless with_health is False (then the call is UNIMPLEMENTED: the server
    only has keel.test.Who/Id)."""

    def __init__(self, name, statuses=None, with_health=True):
        self.name = name
        self.statuses = dict(statuses if statuses is not None else {"": SERVING})
        self.lock = threading.Lock()
        self.checks = []  # (service, seconds left of the call's deadline or None)
        self.errors = []
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=8),
                                  options=[("grpc.so_reuseport", 0)])
        handlers = [grpc.method_handlers_generic_handler("keel.test.Who", {
            "Id": grpc.unary_unary_rpc_method_handler(self.who, ident, ident)})]
        if with_health:
            handlers.append(grpc.method_handlers_generic_handler("grpc.health.v1.Health", {
                "Check": grpc.unary_unary_rpc_method_handler(self.check, ident, ident)}))
        self.server.add_generic_rpc_handlers(handlers)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.addr = "127.0.0.1:%d" % self.port
        self.server.start()

    def stop(self):
        self.server.stop(0).wait(5)

    def set(self, service, status):
        with self.lock:
            self.statuses[service] = status

    def n_checks(self):
        with self.lock:
            return len(self.checks)

    def check(self, req, ctx):
        try:
            service = decode_request(req)
        except (ValueError, IndexError, UnicodeDecodeError) as e:
            with self.lock:
                self.errors.append("%r: %s" % (req, e))
            ctx.abort(grpc.StatusCode.INVALID_ARGUMENT, "bad HealthCheckRequest")
        with self.lock:
            self.checks.append((service, ctx.time_remaining()))
            status = self.statuses.get(service)
        if status is None:
            ctx.abort(grpc.StatusCode.NOT_FOUND, "unknown service")
        return bytes([0x08, status])

    def who(self, req, ctx):
        return self.name.encode()


class GrpcHealthCase(KeelTestCase):

    def servers(self, *specs):
        """HealthServer(name, ...) for each spec (a name or a (name, kwargs) pair)."""
        out = []
        for s in specs:
            name, kw = (s, {}) if isinstance(s, str) else s
            hs = HealthServer(name, **kw)
            self.addCleanup(hs.stop)
            out.append(hs)
        return out

    def start(self, clusters):
        """keel with one http listener routing to the first cluster; clusters are
        (name, [HealthServer], health_check) triples, all `protocol: grpc`."""
        self.port = self.free_port()
        cls = [{"name": n, "lb": "round_robin", "protocol": "grpc",
                "endpoints": [{"address": s.addr} for s in srv], "health_check": hc}
               for n, srv, hc in clusters]
        return self.start_keel(keel_yaml([http_listener(self.port, [{"cluster": cls[0]["name"]}])],
                                         cls, self.free_port(),
                                         extra={"discovery_debounce": "50ms"}))

    def eps(self, name):
        r = self.keel.admin("/v1/clusters")
        self.assertEqual(r.status, 200, r)
        for c in r.json()["clusters"]:
            if c["name"] == name:
                return {e["address"]: e for e in c["endpoints"]}
        raise AssertionError("no cluster %s" % name)

    def wait_state(self, cluster, addr, state, reason=None, timeout=6.0):
        """Waits until addr in cluster has state (and, when given, reason in its reason)."""
        box = {}

        def check():
            box["eps"] = self.eps(cluster)
            e = box["eps"].get(addr)
            if e and e["state"] == state and (reason is None or reason in (e["reason"] or "")):
                return e
            return None
        try:
            return wait_for(check, timeout, what="%s %s %s" % (cluster, addr, state))
        except AssertionError as e:
            raise AssertionError("%s; endpoints: %s" % (e, {a: (v["state"], v["reason"])
                                                            for a, v in box["eps"].items()}))

    def assert_out(self, cluster, addr, reason):
        """addr is out of cluster's rotation because of its active check, for reason."""
        e = self.wait_state(cluster, addr, "unhealthy", reason)
        self.assertEqual(e["source"], "active_check")
        self.assertIn("active health check failing: ", e["reason"])
        return e


class TestGrpcHealth(GrpcHealthCase):

    def test_not_serving_out_serving_back(self):
        a, b = self.servers("a", "b")
        self.start([("api", [a, b], {"type": "grpc", "interval": INTERVAL, "timeout": "150ms",
                                     "rise": 2, "fall": 2, "jitter": "0%"})])
        # Several checks pass: both stay in rotation.
        wait_for(lambda: a.n_checks() >= 3 and b.n_checks() >= 3, 5, what="checks of a and b")
        eps = self.eps("api")
        self.assertEqual((eps[a.addr]["state"], eps[b.addr]["state"]), ("healthy", "healthy"))
        # The request: the whole server (service ""), grpc-timeout = the check timeout.
        with a.lock:
            services = {s for s, _ in a.checks}
            left = [t for _, t in a.checks]
        self.assertEqual(services, {""})
        self.assertTrue(all(t is not None and 0 < t <= 0.15 for t in left), left)
        self.assertEqual(a.errors + b.errors, [])

        # b says NOT_SERVING: out after fall (2) checks, with the reason.
        b.set("", NOT_SERVING)
        e = self.assert_out("api", b.addr, "grpc NOT_SERVING")
        self.assertEqual(e["reason"], "active health check failing: grpc NOT_SERVING (2 in a row)")
        self.keel.wait_log(r"cluster api: endpoint %s \(%s\) is DOWN: grpc NOT_SERVING, 2 checks "
                           r"in a row" % (b.addr, b.addr))
        self.assertEqual(self.eps("api")[a.addr]["state"], "healthy")
        # Still checked while out, so it can come back.
        n = b.n_checks()
        wait_for(lambda: b.n_checks() >= n + 2, 3, what="checks of the down endpoint")

        b.set("", SERVING)
        self.wait_state("api", b.addr, "healthy")
        self.keel.wait_log(r"endpoint %s \(%s\) is UP: 2 checks passed in a row"
                           % (b.addr, b.addr))
        self.assertNotIn("health check", self.eps("api")[b.addr]["reason"])

    def test_service_name(self):
        # One server knows "api.Users" (SERVING) and "api.Admin" (NOT_SERVING) but not the
        # whole-server name "": each cluster asks about its own service.
        s, = self.servers(("s", {"statuses": {"api.Users": SERVING, "api.Admin": NOT_SERVING}}))
        hc = {"type": "grpc", "interval": INTERVAL, "rise": 1, "fall": 1}
        self.start([("users", [s], dict(hc, service="api.Users")),
                    ("admin", [s], dict(hc, service="api.Admin")),
                    ("nope", [s], dict(hc, service="api.Nope"))])
        self.assert_out("admin", s.addr, "grpc NOT_SERVING")
        # grpc's health servicer answers an unknown name with NOT_FOUND (5).
        self.assert_out("nope", s.addr, "grpc-status 5: unknown service")
        # Meanwhile users passed every check it made.
        wait_for(lambda: s.n_checks() >= 9, 3, what="three rounds of checks")
        self.assertEqual(self.eps("users")[s.addr]["state"], "healthy")
        with s.lock:
            asked = {x for x, _ in s.checks}
        self.assertEqual(asked, {"api.Users", "api.Admin", "api.Nope"})
        self.assertEqual(s.errors, [])

    def test_server_without_health_service(self):
        good, bare = self.servers("good", ("bare", {"with_health": False}))
        self.start([("api", [good, bare], {"type": "grpc", "interval": INTERVAL, "fall": 2})])
        self.assert_out("api", bare.addr, "grpc-status 12")
        self.keel.wait_log(r"endpoint %s \(%s\) is DOWN: grpc-status 12" % (bare.addr, bare.addr))
        # The good one passed checks all along.
        wait_for(lambda: good.n_checks() >= 3, 3, what="checks of good")
        self.assertEqual(self.eps("api")[good.addr]["state"], "healthy")

    def test_http1_server_and_closed_port(self):
        # An HTTP/1.1 server and a closed port are not gRPC servers: both leave the rotation.
        good, = self.servers("good")
        h1, = self.start_backends(["h1"]).values()
        closed = "127.0.0.1:%d" % self.free_port()
        self.port = self.free_port()
        cl = {"name": "api", "protocol": "grpc", "lb": "round_robin",
              "endpoints": [{"address": good.addr}, {"address": h1.addr}, {"address": closed}],
              "health_check": {"type": "grpc", "interval": INTERVAL, "fall": 1}}
        self.start_keel(keel_yaml([http_listener(self.port, [{"cluster": "api"}])], [cl],
                                  self.free_port(), extra={"discovery_debounce": "50ms"}))
        e = self.assert_out("api", h1.addr, "")
        self.assertRegex(e["reason"], r"not an HTTP/2 server|connection closed")
        self.assert_out("api", closed, "connect refused")
        self.assertEqual(self.eps("api")[good.addr]["state"], "healthy")


if __name__ == "__main__":
    unittest.main()
