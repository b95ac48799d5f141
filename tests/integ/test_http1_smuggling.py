# SPDX-License-Identifier: MIT
"""Request smuggling and malformed requests: rejected by keel, never seen by the backend."""

import unittest

from keeltest import KeelTestCase, Closed, cluster, http_listener, keel_yaml

SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"

# (name, raw bytes, accepted statuses). Every head here is malformed, so keel must
# answer before contacting the backend.
HEAD_CASES = [
    ("cl_and_te",
     b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"0\r\n\r\n" + SMUGGLED, (400,)),
    ("te_and_cl",
     b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n"
     b"0\r\n\r\n" + SMUGGLED, (400,)),
    ("duplicate_differing_cl",
     b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 41\r\n\r\nhello"
     + SMUGGLED, (400,)),
    ("cl_list_differing",
     b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 41\r\n\r\nhello" + SMUGGLED, (400,)),
    ("cl_not_a_number",
     b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\nhello", (400,)),
    ("cl_negative",
     b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", (400,)),
    ("obs_fold",
     b"GET / HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n  b\r\n\r\n", (400,)),
    ("obs_fold_te",
     b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n", (400,)),
    ("bare_cr_in_value",
     b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\rX-B: b\r\n\r\n", (400,)),
    ("bare_cr_line_end",
     b"GET / HTTP/1.1\rHost: x\r\n\r\n", (400,)),
    ("nul_in_value",
     b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n", (400,)),
    ("invalid_header_name",
     b"GET / HTTP/1.1\r\nHost: x\r\nBad[Name]: x\r\n\r\n", (400,)),
    ("header_name_with_space",
     b"GET / HTTP/1.1\r\nHost: x\r\nX Bad: x\r\n\r\n", (400,)),
    ("empty_header_name",
     b"GET / HTTP/1.1\r\nHost: x\r\n: x\r\n\r\n", (400,)),
    ("space_before_colon",
     b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length : 5\r\n\r\nhello", (400,)),
    ("space_before_colon_te",
     b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n", (400,)),
    ("space_in_target",
     b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n", (400,)),
    ("control_char_in_target",
     b"GET /a\x01b HTTP/1.1\r\nHost: x\r\n\r\n", (400,)),
    ("del_in_target",
     b"GET /a\x7fb HTTP/1.1\r\nHost: x\r\n\r\n", (400,)),
    ("missing_host_http11",
     b"GET / HTTP/1.1\r\nX-A: b\r\n\r\n", (400,)),
    ("two_hosts",
     b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", (400,)),
    ("unknown_transfer_coding",
     b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: bogus, chunked\r\n\r\n0\r\n\r\n", (501,)),
    ("chunked_not_last",
     b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, bogus\r\n\r\n0\r\n\r\n",
     (400, 501)),
    ("http2_version",
     b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", (505,)),
]

# Malformed bodies: the head is fine, so keel may already have passed it upstream, but the
# smuggled request behind the bad chunk must never reach the backend.
BODY_CASES = [
    ("bad_chunk_size",
     b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"
     + SMUGGLED),
    ("chunk_size_overflow",
     b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"10000000000000000000000000001\r\nA\r\n0\r\n\r\n" + SMUGGLED),
    ("negative_chunk_size",
     b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\nA\r\n0\r\n\r\n"
     + SMUGGLED),
    ("chunk_without_crlf",
     b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n"
     + SMUGGLED),
]


class SmugglingTest(KeelTestCase):
    def setUp(self):
        super().setUp()
        self.victim = self.start_backend("victim")   # gets anything malformed
        self.normal = self.start_backend("normal")   # serves the well-behaved client
        self.port = self.free_port()
        self.start_keel(keel_yaml(
            [http_listener(self.port, [{"match": {"path_prefix": "/normal/"}, "cluster": "ok"},
                                       {"cluster": "victim"}],
                           timeouts={"header": "3s"})],
            [cluster("victim", [self.victim.addr]), cluster("ok", [self.normal.addr])],
            self.free_port()))
        self.good = self.client(self.port)
        self.assertEqual(self.good.get("/normal/start").status, 200)

    def send_bad(self, data):
        """Sends data on a fresh connection; returns (status or None if closed, closed?)."""
        c = self.client(self.port, timeout=5)
        c.send(data)
        try:
            r = c.read_response("POST")
        except Closed:
            return None, True
        return r, c.wait_closed(3)

    def check_good_client(self, name):
        r = self.good.get("/normal/after-" + name)
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("X-Backend-Id"), "normal")

    def test_malformed_heads_rejected(self):
        for name, data, statuses in HEAD_CASES:
            with self.subTest(case=name):
                self.victim.reset()
                r, closed = self.send_bad(data)
                self.assertIsNotNone(r, "connection closed without a response")
                self.assertIn(r.status, statuses, "%s: %r" % (name, r))
                self.assertIsNone(r.header("X-Backend-Id"), "answered by the backend")
                self.assertTrue(closed, "connection left open after %d" % r.status)
                self.assertEqual(self.victim.log(), [], "the backend saw the request")
                self.check_good_client(name)

    def test_malformed_bodies_rejected(self):
        for name, data in BODY_CASES:
            with self.subTest(case=name):
                self.victim.reset()
                r, closed = self.send_bad(data)
                self.assertIsNotNone(r, "connection closed without a response")
                self.assertEqual(r.status, 400, "%s: %r" % (name, r))
                self.assertIsNone(r.header("X-Backend-Id"), "answered by the backend")
                self.assertTrue(closed, "connection left open after 400")
                targets = [e["target"] for e in self.victim.log()]
                self.assertNotIn("/smuggled", targets, "smuggled request reached the backend")
                self.assertLessEqual(len(targets), 1, targets)
                self.check_good_client(name)

    def test_pipelined_smuggle_after_valid_request(self):
        # A valid request followed by a malformed one on the same connection: the first is
        # answered, the second rejected, nothing after it reaches the backend.
        self.victim.reset()
        c = self.client(self.port, timeout=5)
        c.send(b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n"
               b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 40\r\n\r\n"
               b"abc" + SMUGGLED)
        r1 = c.read_response()
        self.assertEqual(r1.status, 200)
        self.assertEqual(r1.json()["target"], "/first")
        r2 = c.read_response("POST")
        self.assertEqual(r2.status, 400)
        self.assertTrue(c.wait_closed(3))
        self.assertEqual([e["target"] for e in self.victim.log()], ["/first"])
        self.check_good_client("pipelined")


if __name__ == "__main__":
    unittest.main()
