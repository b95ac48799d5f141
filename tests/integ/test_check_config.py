# SPDX-License-Identifier: MIT
"""keel --check: exit codes and file:line:column: path: message diagnostics."""

import os
import re
import subprocess
import unittest

from keeltest import KeelTestCase, keel_bin

GOOD = """\
workers: 2
drain_timeout: 10s
admin: {address: 127.0.0.1:19901}
listeners:
  - name: web
    address: 127.0.0.1:18080
    protocol: http
    routes:
      - match: {path_prefix: /api/}
        cluster: api
      - match: {host: static.example.com}
        cluster: static
      - match: {path_prefix: /x, headers: [{name: X-Canary, value: "1"}], cookies: [{name: grp, value: b}]}
        cluster: api
      - cluster: static
    limits: {max_request_line: 8KiB, max_header_size: 64KiB, max_headers: 100, max_body_size: 1GiB}
    timeouts: {header: 10s, keepalive: 60s, idle: 60s}
  - name: db
    address: 127.0.0.1:15432
    protocol: tcp
    cluster: static
    timeouts: {idle: 1h}
clusters:
  - name: api
    lb: weighted_least_conn
    endpoints:
      - {address: 127.0.0.1:18081, weight: 1}
      - {address: 127.0.0.1:18082, weight: 3}
    timeouts: {connect: 5s, response: 60s, idle: 60s}
  - name: static
    lb: round_robin
    endpoints:
      - address: 127.0.0.1:18083
"""


def line_of(text, needle, nth=0):
    """1-based line number of the nth line containing needle."""
    hits = [i + 1 for i, ln in enumerate(text.splitlines()) if needle in ln]
    return hits[nth]


def col_of(text, line, needle):
    """1-based column of needle on that line."""
    return text.splitlines()[line - 1].index(needle) + 1


class CheckConfigTest(KeelTestCase):
    def write(self, name, text):
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def check(self, path):
        if not os.access(keel_bin(), os.X_OK):
            self.skipTest("keel binary not found at %s" % keel_bin())
        p = subprocess.run([keel_bin(), "--check", path], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=20)
        return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")

    def diagnostics(self, path, err):
        """Parses 'file:line:column: path: message' lines from stderr."""
        rx = re.compile(r"^%s:(\d+):(\d+): (.*)$" % re.escape(path), re.M)
        return [(int(m.group(1)), int(m.group(2)), m.group(3)) for m in rx.finditer(err)]

    def assert_error(self, text, needle, path_words, msg_words=(), cols=None, nth=0):
        """--check fails and reports the error at the line holding needle."""
        path = self.write("bad.yaml", text)
        rc, out, err = self.check(path)
        self.assertEqual(rc, 1, "exit status; stderr: %s" % err)
        diags = self.diagnostics(path, err)
        self.assertTrue(diags, "no file:line:column diagnostic in stderr: %r" % err)
        want_line = line_of(text, needle, nth)
        at_line = [d for d in diags if d[0] == want_line]
        self.assertTrue(at_line, "no diagnostic at line %d: %r" % (want_line, diags))
        line, col, rest = at_line[0]
        if cols is not None:
            self.assertIn(col, cols, "column of %r" % rest)
        else:
            self.assertGreaterEqual(col, 1)
        field, _, message = rest.partition(": ")
        for w in path_words:
            self.assertIn(w, field, "field path of %r" % rest)
        for w in msg_words:
            self.assertIn(w.lower(), rest.lower(), "message of %r" % rest)
        self.assertNotIn(": ok", out)
        return diags

    def test_good_file(self):
        path = self.write("good.yaml", GOOD)
        rc, out, err = self.check(path)
        self.assertEqual(rc, 0, "stderr: %s" % err)
        self.assertIn("%s: ok" % path, out)

    def test_unknown_key(self):
        text = GOOD.replace("    protocol: http\n", "    protocol: http\n    adress: 1.2.3.4:80\n")
        line = line_of(text, "adress:")
        self.assert_error(text, "adress:", ["listeners", "adress"],
                          cols={col_of(text, line, "adress"), col_of(text, line, "1.2.3.4")})

    def test_bad_lb_policy(self):
        text = GOOD.replace("lb: round_robin", "lb: fastest_please")
        line = line_of(text, "fastest_please")
        self.assert_error(text, "fastest_please", ["clusters", "lb"], ["fastest_please"],
                          cols={col_of(text, line, "lb"), col_of(text, line, "fastest_please")})

    def test_unknown_cluster_in_route(self):
        text = GOOD.replace("      - cluster: static\n", "      - cluster: nosuchcluster\n")
        line = line_of(text, "nosuchcluster")
        self.assert_error(text, "nosuchcluster", ["routes", "cluster"], ["nosuchcluster"],
                          cols={col_of(text, line, "cluster"), col_of(text, line, "nosuchcluster")})

    def test_bad_duration(self):
        text = GOOD.replace("{connect: 5s,", "{connect: 5parsecs,")
        line = line_of(text, "5parsecs")
        self.assert_error(text, "5parsecs", ["clusters", "connect"], ["5parsecs"],
                          cols={col_of(text, line, "connect"), col_of(text, line, "5parsecs")})

    def test_yaml_syntax_error(self):
        text = GOOD.replace("    protocol: tcp\n", "    protocol: tcp: oops\n")
        path = self.write("bad.yaml", text)
        rc, out, err = self.check(path)
        self.assertEqual(rc, 1, err)
        diags = self.diagnostics(path, err)
        want = line_of(text, "tcp: oops")
        self.assertTrue(any(d[0] == want for d in diags),
                        "YAML error not reported at line %d: %r" % (want, err))

    def test_every_error_reported(self):
        text = GOOD.replace("lb: round_robin", "lb: fastest_please").replace(
            "      - cluster: static\n", "      - cluster: nosuchcluster\n")
        diags = self.assert_error(text, "fastest_please", ["lb"])
        self.assertIn(line_of(text, "nosuchcluster"), [d[0] for d in diags], diags)

    def test_missing_file(self):
        rc, out, err = self.check(os.path.join(self.tmp, "does-not-exist.yaml"))
        self.assertEqual(rc, 1)
        self.assertIn("does-not-exist.yaml", err)

    def test_run_with_bad_config_fails_fast(self):
        text = GOOD.replace("lb: round_robin", "lb: fastest_please")
        path = self.write("bad.yaml", text)
        if not os.access(keel_bin(), os.X_OK):
            self.skipTest("keel binary not found")
        p = subprocess.run([keel_bin(), "-c", path], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=20)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("%s:%d:" % (path, line_of(text, "fastest_please")), p.stderr.decode())


if __name__ == "__main__":
    unittest.main()
