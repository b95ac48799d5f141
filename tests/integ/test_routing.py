# SPDX-License-Identifier: MIT
"""Route matching: host, path prefix, exact path, header, cookie, order, default, 404."""

import unittest

from keeltest import KeelTestCase, cluster, http_listener, keel_yaml

ROUTES = [
    {"match": {"host": "static.example.com"}, "cluster": "static"},
    {"match": {"path": "/exact"}, "cluster": "exact"},
    {"match": {"path_prefix": "/api/"}, "cluster": "api"},
    {"match": {"path_prefix": "/x", "headers": [{"name": "X-Canary", "value": "1"}],
               "cookies": [{"name": "grp", "value": "b"}]}, "cluster": "canary"},
    {"match": {"headers": [{"name": "X-Tenant", "value": "blue"}]}, "cluster": "blue"},
    {"match": {"cookies": [{"name": "grp", "value": "c"}]}, "cluster": "cookie"},
    {"match": {"path_prefix": "/api"}, "cluster": "shadowed"},
]
NAMES = ["static", "exact", "api", "canary", "blue", "cookie", "shadowed", "default"]


class RoutingTest(KeelTestCase):
    def setUp(self):
        super().setUp()
        self.be = self.start_backends(NAMES)
        self.port = self.free_port()
        self.admin = self.free_port()
        self.start_keel(keel_yaml(
            [http_listener(self.port, ROUTES + [{"cluster": "default"}])],
            [cluster(n, [self.be[n].addr]) for n in NAMES], self.admin))
        self.c = self.client(self.port)

    def route(self, path, headers=None, host="app.local"):
        r = self.c.get(path, headers, host=host)
        self.assertEqual(r.status, 200, "%s -> %r" % (path, r))
        if r.header("X-Backend-Id") is not None:
            self.assertEqual(r.json()["target"], path)
        return r.header("X-Backend-Id")

    def test_host(self):
        self.assertEqual(self.route("/", host="static.example.com"), "static")
        self.assertEqual(self.route("/", host="STATIC.Example.COM"), "static")
        self.assertEqual(self.route("/", host="static.example.com:8080"), "static")
        self.assertEqual(self.route("/", host="static.example.com.evil"), "default")
        self.assertEqual(self.route("/", host="xstatic.example.com"), "default")

    def test_path_prefix(self):
        self.assertEqual(self.route("/api/users"), "api")
        self.assertEqual(self.route("/api/"), "api")
        self.assertEqual(self.route("/api/v1/x?q=/other"), "api")
        self.assertEqual(self.route("/apix"), "shadowed")   # only the later /api prefix
        self.assertEqual(self.route("/other/api/"), "default")

    def test_exact_path(self):
        self.assertEqual(self.route("/exact"), "exact")
        self.assertEqual(self.route("/exact?q=1"), "exact")
        self.assertEqual(self.route("/exact/more"), "default")
        self.assertEqual(self.route("/exactly"), "default")

    def test_header(self):
        self.assertEqual(self.route("/h", [("X-Tenant", "blue")]), "blue")
        self.assertEqual(self.route("/h", [("x-tenant", "blue")]), "blue")
        self.assertEqual(self.route("/h", [("X-Tenant", "red")]), "default")
        self.assertEqual(self.route("/h", [("X-Tenant-Other", "blue")]), "default")

    def test_cookie(self):
        self.assertEqual(self.route("/c", [("Cookie", "grp=c")]), "cookie")
        self.assertEqual(self.route("/c", [("Cookie", "a=1; grp=c; z=9")]), "cookie")
        self.assertEqual(self.route("/c", [("Cookie", "grp=cc")]), "default")
        self.assertEqual(self.route("/c", [("Cookie", "xgrp=c")]), "default")
        self.assertEqual(self.route("/c", [("Cookie", "other=grp=c")]), "default")

    def test_all_conditions_of_a_route(self):
        both = [("X-Canary", "1"), ("Cookie", "grp=b")]
        self.assertEqual(self.route("/x/1", both), "canary")
        self.assertEqual(self.route("/x/1", both[:1]), "default")
        self.assertEqual(self.route("/x/1", both[1:]), "default")
        self.assertEqual(self.route("/y/1", both), "default")
        self.assertEqual(self.route("/x/1", [("X-Canary", "2"), ("Cookie", "grp=b")]), "default")

    def test_first_match_wins(self):
        # Matches static (host), exact, api, blue and cookie: the first listed wins.
        hdrs = [("X-Tenant", "blue"), ("Cookie", "grp=c")]
        self.assertEqual(self.route("/api/x", hdrs, host="static.example.com"), "static")
        self.assertEqual(self.route("/api/x", hdrs), "api")
        self.assertEqual(self.route("/exact", hdrs), "exact")
        self.assertEqual(self.route("/z", hdrs), "blue")

    def test_default_route(self):
        self.assertEqual(self.route("/anything/else"), "default")
        self.assertEqual(self.route("/"), "default")

    def test_no_match_is_404(self):
        port = self.free_port()
        self.c.close()
        self.keel.stop()
        self.start_keel(keel_yaml(
            [http_listener(port, [{"match": {"path_prefix": "/api/"}, "cluster": "api"}])],
            [cluster("api", [self.be["api"].addr])], self.free_port()), name="keel2")
        c = self.client(port)
        r = c.get("/api/ok")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("X-Backend-Id"), "api")
        r = c.get("/other")
        self.assertEqual(r.status, 404)
        self.assertIsNone(r.header("X-Backend-Id"))
        for be in self.be.values():
            targets = [e["target"] for e in be.log()]
            self.assertNotIn("/other", targets)


if __name__ == "__main__":
    unittest.main()
