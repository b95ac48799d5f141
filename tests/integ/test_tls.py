# SPDX-License-Identifier: MIT
"""TLS in keel: termination (SNI, ALPN, client certificates, min_version, SIGHUP reload) and
TLS to upstreams (verification, SNI, bodies). Certificates are made with the openssl CLI."""

import hashlib
import http.server
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import unittest

from keeltest import (Client, Closed, KeelTestCase, ThreadedServer, cluster, http_listener,
                      keel_bin, keel_yaml, pattern_sha256, wait_for)

OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"


def run(cmd, **kw):
    return subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=60, **kw)


class Pki:
    """A CA, server certificates for a.test / b.test (+ *.wild.test) / backend.test, a client
    certificate signed by the CA, a self-signed client certificate and a second, unrelated
    CA. EC P-256 keys (quick to make)."""

    def __init__(self, d):
        self.d = d
        self.ca, self.ca_key = self._ca("ca", "keel test CA")
        self.other_ca, self.other_ca_key = self._ca("other-ca", "unrelated CA")
        self.a = self._leaf("a", "a.test", ["a.test"], server=True)
        self.b = self._leaf("b", "b.test", ["b.test", "*.wild.test"], server=True)
        self.backend = self._leaf("backend", "backend.test", ["backend.test"], server=True)
        self.client = self._leaf("client", "client one", None, server=False)
        self.selfsigned = self._selfsigned("selfsigned", "self signed client")

    def path(self, name):
        return os.path.join(self.d, name)

    def _openssl(self, *args):
        r = run([OPENSSL] + list(args))
        if r.returncode != 0:
            raise AssertionError("openssl %s failed: %s" % (args[0], r.stderr.decode()))

    def _key(self, name):
        key = self.path(name + ".key")
        self._openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                      "-out", key)
        return key

    def _ca(self, name, cn):
        key = self._key(name)
        pem = self.path(name + ".pem")
        self._openssl("req", "-x509", "-new", "-key", key, "-out", pem, "-days", "30",
                      "-subj", "/CN=" + cn)
        return pem, key

    def _leaf(self, name, cn, dns, server):
        key = self._key(name)
        csr, pem, ext = self.path(name + ".csr"), self.path(name + ".pem"), self.path(name + ".ext")
        with open(ext, "w") as f:
            f.write("basicConstraints=CA:FALSE\n")
            f.write("keyUsage=digitalSignature\n")
            f.write("extendedKeyUsage=%s\n" % ("serverAuth" if server else "clientAuth"))
            f.write("subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n")
            if dns:
                f.write("subjectAltName=" + ",".join("DNS:" + n for n in dns) + "\n")
        self._openssl("req", "-new", "-key", key, "-out", csr, "-subj", "/CN=" + cn)
        self._openssl("x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey", self.ca_key,
                      "-CAcreateserial", "-out", pem, "-days", "30", "-extfile", ext)
        return pem, key

    def _selfsigned(self, name, cn):
        key = self._key(name)
        pem = self.path(name + ".pem")
        self._openssl("req", "-x509", "-new", "-key", key, "-out", pem, "-days", "30",
                      "-subj", "/CN=" + cn)
        return pem, key


def s_client(port, servername=None, alpn=None, extra=()):
    """Runs `openssl s_client` (stdin closed: handshake, print, quit); returns its stdout."""
    cmd = [OPENSSL, "s_client", "-connect", "127.0.0.1:%d" % port]
    cmd += ["-servername", servername] if servername else ["-noservername"]
    if alpn:
        cmd += ["-alpn", alpn]
    cmd += list(extra)
    r = run(cmd)
    return r.stdout.decode("utf-8", "replace") + r.stderr.decode("utf-8", "replace")


def server_cn(out):
    m = re.search(r"^subject=.*?CN\s*=\s*([^,\n/]+)", out, re.M)
    return m.group(1).strip() if m else None


def alpn_of(out):
    if "No ALPN negotiated" in out:
        return None
    m = re.search(r"^ALPN protocol: (\S+)", out, re.M)
    if not m:
        raise AssertionError("no ALPN line in s_client output:\n" + out[-2000:])
    return m.group(1)


class TlsClient(Client):
    """keeltest.Client over TLS (Python ssl); rcvbuf: a small receive buffer (set before
    connecting, so the TCP window stays small too)."""

    def __init__(self, port, ctx, server_hostname, timeout=10.0, rcvbuf=None):
        self.port = port
        self.buf = bytearray()
        self.eof = False
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            if rcvbuf:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            self.sock.settimeout(timeout)
            self.sock.connect(("127.0.0.1", port))
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.sock = ctx.wrap_socket(self.sock, server_hostname=server_hostname)
        except BaseException:
            self.close()
            raise


class SlowBackend(ThreadedServer):
    """HTTP/1.1 backend answering every request with `size` bytes of a fixed pattern, sent in
    pieces of `piece` bytes with `delay` seconds between them (a long download)."""

    def __init__(self, size, piece=65536, delay=0.1):
        self.size, self.piece, self.delay = size, piece, delay
        self.body = hashlib.sha256(b"slow").digest() * (size // 32 + 1)
        self.body = self.body[:size]
        self._listen(16)

    def _conn(self, c):
        buf = b""
        with c:
            try:
                while b"\r\n\r\n" not in buf:
                    d = c.recv(65536)
                    if not d:
                        return
                    buf += d
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % self.size)
                for i in range(0, self.size, self.piece):
                    c.sendall(self.body[i:i + self.piece])
                    time.sleep(self.delay)
                c.recv(1)
            except OSError:
                return



class TlsBackend:
    """A Python HTTPS backend (http.server + ssl): GET answers JSON (path, headers, the SNI
    name it was asked for), POST echoes the body."""

    def __init__(self, cert, key, ident="tls-be"):
        self.snis = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _send(self, body, ctype):
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("X-Backend-Id", ident)
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                body = json.dumps({"path": self.path, "headers": list(self.headers.items()),
                                   "snis": outer.snis}).encode()
                self._send(body, "application/json")

            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                data = self.rfile.read(n)
                self._send(data, "application/octet-stream")

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)

        def on_sni(sock, name, c):
            outer.snis.append(name)

        ctx.sni_callback = on_sni
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.addr = "127.0.0.1:%d" % self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class TlsBase(KeelTestCase):
    @classmethod
    def setUpClass(cls):
        cls.pki_dir = tempfile.mkdtemp(prefix="keel-tls-pki-")
        cls.pki = Pki(cls.pki_dir)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.pki_dir, ignore_errors=True)

    def ctx(self, cert=None, tls_max=None):
        c = ssl.create_default_context(cafile=self.pki.ca)
        if cert:
            c.load_cert_chain(*cert)
        if tls_max:
            c.maximum_version = tls_max
        return c

    def tls_client(self, port, name="a.test", cert=None, tls_max=None, rcvbuf=None):
        c = TlsClient(port, self.ctx(cert, tls_max), name, rcvbuf=rcvbuf)
        self._clients.append(c)
        return c

    @staticmethod
    def tls_cfg(*pairs, **kw):
        if len(pairs) == 1:
            t = {"cert": pairs[0][0], "key": pairs[0][1]}
        else:
            t = {"certificates": [{"cert": c, "key": k} for c, k in pairs]}
        t.update(kw)
        return t

    def start_tls_keel(self, listeners, clusters):
        self.admin_port = self.free_port()
        return self.start_keel(keel_yaml(listeners, clusters, self.admin_port))


class TlsTerminationTest(TlsBase):
    def setUp(self):
        super().setUp()
        self.be = self.start_backend("b1")
        self.port, self.port_noh2 = self.free_port(), self.free_port()
        l1 = http_listener(self.port, [{"cluster": "app"}], name="tls")
        l1["tls"] = self.tls_cfg(self.pki.a, self.pki.b)
        l2 = http_listener(self.port_noh2, [{"cluster": "app"}], name="noh2")
        l2["tls"] = self.tls_cfg(self.pki.a)
        l2["http2"] = {"enabled": False}
        self.start_tls_keel([l1, l2], [cluster("app", [self.be.addr])])

    def test_alpn_selection(self):
        out = s_client(self.port, "a.test", "h2,http/1.1")
        self.assertEqual(alpn_of(out), "h2", out[-1500:])
        self.assertEqual(alpn_of(s_client(self.port, "a.test", "http/1.1")), "http/1.1")
        # A listener without HTTP/2 never selects h2.
        self.assertEqual(alpn_of(s_client(self.port_noh2, "a.test", "h2,http/1.1")), "http/1.1")
        # A client offering neither gets no ALPN (and HTTP/1.1 on the wire).
        self.assertIsNone(alpn_of(s_client(self.port, "a.test", "spdy/3")))
        self.assertIsNone(alpn_of(s_client(self.port, "a.test")))

    def test_alpn_h2_bad_preface_is_a_connection_error(self):
        # After ALPN h2 there is no HTTP/1.1 fallback: bytes that are not the HTTP/2 preface
        # end the connection with GOAWAY(PROTOCOL_ERROR) (RFC 9113 3.4; h2spec http2/3.5/2),
        # not an HTTP/1.1 400. A client that negotiated http/1.1 still gets HTTP/1.1.
        def attempt(alpn):
            ctx = self.ctx()
            ctx.set_alpn_protocols([alpn])
            with socket.create_connection(("127.0.0.1", self.port), timeout=10) as raw:
                with ctx.wrap_socket(raw, server_hostname="a.test") as s:
                    self.assertEqual(s.selected_alpn_protocol(), alpn)
                    s.sendall(b"INVALID CONNECTION PREFACE\r\n\r\n")
                    data = b""
                    while len(data) < 65536:
                        try:
                            d = s.recv(65536)
                        except (ConnectionResetError, ssl.SSLError):
                            break
                        if not d:
                            break
                        data += d
                    return data

        data = attempt("h2")
        self.assertFalse(data.startswith(b"HTTP/1.1"), data[:200])
        frames, off = [], 0
        while off + 9 <= len(data):
            n = int.from_bytes(data[off:off + 3], "big")
            frames.append((data[off + 3], data[off + 9:off + 9 + n]))
            off += 9 + n
        goaways = [p for t, p in frames if t == 0x7]
        self.assertEqual(len(goaways), 1, frames)
        self.assertEqual(int.from_bytes(goaways[0][4:8], "big"), 0x1)  # PROTOCOL_ERROR
        self.assertTrue(attempt("http/1.1").startswith(b"HTTP/1.1 400 "))

    def test_plain_http_on_tls_port_gets_400(self):
        # Plain HTTP to a TLS listener: a readable 400 in plain text (as nginx answers), not a
        # silent close; nothing reaches the backend.
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as s:
            s.sendall(b"GET /plain HTTP/1.1\r\nHost: a.test\r\n\r\n")
            data = b""
            while True:
                d = s.recv(4096)
                if not d:
                    break
                data += d
        self.assertTrue(data.startswith(b"HTTP/1.1 400 "), data[:200])
        self.assertIn(b"plain HTTP request on a TLS port", data)
        self.assertFalse([e for e in self.be.log() if e["target"] == "/plain"])

    def test_sni_picks_the_certificate(self):
        self.assertEqual(server_cn(s_client(self.port, "a.test")), "a.test")
        self.assertEqual(server_cn(s_client(self.port, "b.test")), "b.test")
        self.assertEqual(server_cn(s_client(self.port, "B.Test")), "b.test")  # case-insensitive
        self.assertEqual(server_cn(s_client(self.port, "x.wild.test")), "b.test")  # *.wild.test
        # A wildcard covers one label only; unknown names and no SNI get the default (first).
        self.assertEqual(server_cn(s_client(self.port, "y.x.wild.test")), "a.test")
        self.assertEqual(server_cn(s_client(self.port, "unknown.test")), "a.test")
        self.assertEqual(server_cn(s_client(self.port, None)), "a.test")
        # Python's verification agrees (name and chain).
        for name in ("a.test", "b.test", "z.wild.test"):
            c = self.tls_client(self.port, name)
            r = c.get("/sni", host=name)
            self.assertEqual(r.status, 200)
            c.close()

    def test_request_keepalive_and_forwarded_proto(self):
        c = self.tls_client(self.port)
        conns = set()
        for i in range(5):
            r = c.get("/req/%d" % i)
            self.assertEqual(r.status, 200)
            self.assertEqual(r.header("X-Backend-Id"), "b1")
            j = r.json()
            self.assertEqual(j["target"], "/req/%d" % i)
            protos = [v for k, v in j["headers"] if k.lower() == "x-forwarded-proto"]
            self.assertEqual(protos, ["https"])
            conns.add(r.header("X-Backend-Conn"))
        self.assertEqual(c.sock.version(), "TLSv1.3")
        # Keep-alive on both sides: one TLS connection, one pooled upstream connection.
        self.assertEqual(len(conns), 1, conns)
        # Plain HTTP on the same listener gets no HTTP answer (it is TLS only), and keel
        # logs the failed handshake with the client address.
        p = self.client(self.port)
        p.send(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
        self.assertTrue(p.wait_closed(5))
        self.keel.wait_log(r"client 127\.0\.0\.1: TLS handshake failed")

    def test_curl_https(self):
        url = "https://a.test:%d/curl" % self.port
        r = run(["curl", "-sS", "--http1.1", "--cacert", self.pki.ca, "--resolve",
                 "a.test:%d:127.0.0.1" % self.port, "-D", "-", url])
        self.assertEqual(r.returncode, 0, r.stderr)
        out = r.stdout.decode()
        self.assertRegex(out, r"^HTTP/1.1 200")
        body = json.loads(out.split("\r\n\r\n", 1)[1])
        self.assertIn(["X-Forwarded-Proto", "https"], body["headers"])

    def test_large_bodies_both_ways(self):
        c = self.tls_client(self.port)
        up = os.urandom(1536 * 1024 + 7)
        r = c.exchange("POST", "/echo", [("Content-Type", "application/octet-stream")], up)
        self.assertEqual(r.status, 200)
        self.assertEqual(len(r.body), len(up))
        self.assertTrue(r.body == up, "echoed body differs")
        n = 3 * 1024 * 1024 + 11
        r = c.get("/bytes?n=%d" % n)
        self.assertEqual(r.status, 200)
        self.assertEqual(len(r.body), n)
        self.assertEqual(hashlib.sha256(r.body).hexdigest(), pattern_sha256(n))
        # Chunked too, and the connection is still good afterwards.
        r = c.get("/bytes?n=%d&chunked=1" % n)
        self.assertEqual(hashlib.sha256(r.body).hexdigest(), pattern_sha256(n))
        self.assertEqual(c.get("/after").status, 200)

    def test_slow_reader_gets_every_byte(self):
        # The client reads late and slowly: keel's TLS writes block (the record stays inside
        # OpenSSL and is repeated) and resume many times.
        c = self.tls_client(self.port, rcvbuf=4096)
        n = 12 * 1024 * 1024 + 3
        c.request("GET", "/bytes?n=%d" % n)
        time.sleep(1.0)
        h = hashlib.sha256()
        got = [0]

        def sink(d):
            h.update(d)
            got[0] += len(d)
            if got[0] < 256 * 1024:
                time.sleep(0.001)

        r = c.read_response("GET", sink=sink)
        self.assertEqual(r.status, 200)
        self.assertEqual(got[0], n)
        self.assertEqual(h.hexdigest(), pattern_sha256(n))


class TlsClientCertTest(TlsBase):
    def test_client_certificate_required(self):
        be = self.start_backend("b1")
        port = self.free_port()
        lst = http_listener(port, [{"cluster": "app"}])
        lst["tls"] = self.tls_cfg(self.pki.a, client_ca=self.pki.ca)
        self.start_tls_keel([lst], [cluster("app", [be.addr])])

        def attempt(cert):
            try:
                c = self.tls_client(port, cert=cert)
                r = c.get("/cc")
                return r.status
            except (ssl.SSLError, Closed, ConnectionResetError, BrokenPipeError) as e:
                return e

        ok = attempt(self.pki.client)
        self.assertEqual(ok, 200)
        for cert in (None, self.pki.selfsigned):
            res = attempt(cert)
            self.assertNotEqual(res, 200, "accepted %r" % (cert,))
            self.assertIsInstance(res, Exception)
        self.keel.wait_log(r"client 127\.0\.0\.1: TLS handshake failed: .*certificate")
        # openssl s_client agrees: the CA-signed certificate passes, the CA list is announced.
        out = s_client(port, "a.test", extra=["-cert", self.pki.client[0], "-key",
                                                self.pki.client[1]])
        self.assertIn("Acceptable client certificate CA names", out)
        self.assertIn("CN = keel test CA", out)
        self.assertEqual(len(be.log()), 1)  # only the accepted client's request arrived

    def test_min_version_13(self):
        be = self.start_backend("b1")
        port = self.free_port()
        lst = http_listener(port, [{"cluster": "app"}])
        lst["tls"] = self.tls_cfg(self.pki.a, min_version="1.3")
        self.start_tls_keel([lst], [cluster("app", [be.addr])])
        with self.assertRaises(ssl.SSLError):
            self.tls_client(port, tls_max=ssl.TLSVersion.TLSv1_2)
        c = self.tls_client(port)
        self.assertEqual(c.sock.version(), "TLSv1.3")
        self.assertEqual(c.get("/v13").status, 200)
        self.keel.wait_log(r"TLS handshake failed: .*(version|protocol)")

    def test_tls12_session_resumption(self):
        be = self.start_backend("b1")
        port = self.free_port()
        lst = http_listener(port, [{"cluster": "app"}])
        lst["tls"] = self.tls_cfg(self.pki.a)
        self.start_tls_keel([lst], [cluster("app", [be.addr])])
        ctx = self.ctx(tls_max=ssl.TLSVersion.TLSv1_2)
        c1 = TlsClient(port, ctx, "a.test")
        self._clients.append(c1)
        self.assertEqual(c1.get("/one").status, 200)
        sess = c1.sock.session
        c1.close()
        c2 = Client(port)
        self._clients.append(c2)
        c2.sock = ctx.wrap_socket(c2.sock, server_hostname="a.test", session=sess)
        self.assertTrue(c2.sock.session_reused)
        self.assertEqual(c2.get("/two").status, 200)


class TlsReloadTest(TlsBase):
    def test_sighup_reload_keeps_old_connections(self):
        slow = SlowBackend(2 * 1024 * 1024, piece=64 * 1024, delay=0.12)  # about 4 s
        self.addCleanup(slow.close)
        be = self.start_backend("b1")
        cert, key = os.path.join(self.tmp, "live.pem"), os.path.join(self.tmp, "live.key")
        shutil.copy(self.pki.a[0], cert)
        shutil.copy(self.pki.a[1], key)
        port = self.free_port()
        lst = http_listener(port, [{"match": {"path_prefix": "/slow"}, "cluster": "slow"},
                                   {"cluster": "app"}])
        lst["tls"] = self.tls_cfg((cert, key))
        k = self.start_tls_keel([lst], [cluster("slow", [slow.addr]), cluster("app", [be.addr])])
        self.assertEqual(server_cn(s_client(port, "a.test")), "a.test")

        # A long download over the old certificate.
        old = self.tls_client(port, "a.test")
        old.request("GET", "/slow/download")
        h = hashlib.sha256()
        got = [0]
        first = threading.Event()

        def sink(d):
            h.update(d)
            got[0] += len(d)
            first.set()

        result = {}

        def download():
            try:
                result["resp"] = old.read_response("GET", sink=sink)
            except BaseException as e:  # noqa: B902 - checked below
                result["err"] = e

        t = threading.Thread(target=download, daemon=True)
        t.start()
        self.assertTrue(first.wait(10), "download did not start")

        # New files (b.test), then SIGHUP: new connections see them at once.
        shutil.copy(self.pki.b[0], cert)
        shutil.copy(self.pki.b[1], key)
        k.proc.send_signal(signal.SIGHUP)
        k.wait_log(r"TLS reload: new certificates")
        self.assertEqual(server_cn(s_client(port, "b.test")), "b.test")
        c = self.tls_client(port, "b.test")
        self.assertEqual(c.get("/new").status, 200)
        self.assertLess(got[0], slow.size, "the download ended before the reload")

        # A broken file: the reload fails, logs why, and the current certificate stays.
        with open(cert, "w") as f:
            f.write("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
        k.proc.send_signal(signal.SIGHUP)
        k.wait_log(r"TLS reload failed: keeping the current certificates")
        self.assertRegex(k.log_text(),
                         r"keel\.yaml:\d+:\d+: listeners\[0\]\.tls \(listener web\): "
                         r"certificate file .*live\.pem")
        self.assertEqual(server_cn(s_client(port, "b.test")), "b.test")
        c2 = self.tls_client(port, "b.test")
        self.assertEqual(c2.get("/still").status, 200)

        t.join(30)
        self.assertFalse(t.is_alive(), "download still running")
        self.assertNotIn("err", result, result.get("err"))
        self.assertEqual(result["resp"].status, 200)
        self.assertEqual(got[0], slow.size)
        self.assertEqual(h.hexdigest(), hashlib.sha256(slow.body).hexdigest())
        # The old connection (old context) still carries requests.
        self.assertEqual(old.get("/again").status, 200)
        self.assertIsNone(k.proc.poll())


class TlsStartupErrorTest(TlsBase):
    def test_bad_key_fails_start_and_check(self):
        port, admin = self.free_port(), self.free_port()
        lst = http_listener(port, [{"cluster": "app"}], name="edge")
        lst["tls"] = self.tls_cfg((self.pki.a[0], self.pki.b[1]))  # key of another cert
        cfg = os.path.join(self.tmp, "bad.yaml")
        with open(cfg, "w") as f:
            f.write(keel_yaml([lst], [cluster("app", ["127.0.0.1:9"])], admin))
        for mode in ("--check", "-c"):
            r = subprocess.run([keel_bin(), mode, cfg], stdin=subprocess.DEVNULL,
                               capture_output=True, timeout=30)
            err = r.stderr.decode()
            self.assertNotEqual(r.returncode, 0, err)
            # Like every config error: the file, line and column of the tls block first.
            self.assertRegex(err, re.escape(cfg) + r":\d+:\d+: listeners\[0\]\.tls ")
            self.assertIn("(listener edge): key file %s does not match certificate %s"
                          % (self.pki.b[1], self.pki.a[0]), err)
        garbage = os.path.join(self.tmp, "garbage.pem")
        with open(garbage, "w") as f:
            f.write("hello\n")
        lst["tls"] = self.tls_cfg((garbage, self.pki.a[1]))
        with open(cfg, "w") as f:
            f.write(keel_yaml([lst], [cluster("app", ["127.0.0.1:9"])], admin))
        r = subprocess.run([keel_bin(), "--check", cfg], stdin=subprocess.DEVNULL,
                           capture_output=True, timeout=30)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("(listener edge): certificate file %s: no PEM certificate" % garbage,
                      r.stderr.decode())


class TcpListenerTlsTest(TlsBase):
    def test_tls_terminated_on_a_tcp_listener(self):
        # A tcp listener with tls: keel terminates TLS and relays the plain bytes (no ALPN is
        # chosen: the protocol inside is the client's business), byte-exact both ways, with
        # half-close; a plain-text client is refused.
        echo = self.start_backend("e1", mode="tcp-echo")
        port = self.free_port()
        lst = {"name": "tcps", "address": "127.0.0.1:%d" % port, "protocol": "tcp",
               "cluster": "echo", "tls": self.tls_cfg(self.pki.a)}
        self.start_tls_keel([lst], [cluster("echo", [echo.addr])])
        payload = os.urandom(3 * 1024 * 1024 + 7)
        ctx = self.ctx()
        ctx.set_alpn_protocols(["h2", "http/1.1"])
        with socket.create_connection(("127.0.0.1", port), timeout=15) as raw:
            with ctx.wrap_socket(raw, server_hostname="a.test") as s:
                self.assertIsNone(s.selected_alpn_protocol())
                got = bytearray()
                # One thread (an SSL object is not for two): send a piece, read what echoed.
                s.settimeout(0.02)
                off, deadline = 0, time.monotonic() + 30
                while len(got) < len(payload) and time.monotonic() < deadline:
                    if off < len(payload):
                        off += s.send(payload[off:off + 65536])
                    try:
                        d = s.recv(262144)
                        if not d:
                            break
                        got.extend(d)
                    except (socket.timeout, ssl.SSLWantReadError):
                        pass
                self.assertEqual(len(got), len(payload))
                self.assertEqual(hashlib.sha256(bytes(got)).digest(),
                                 hashlib.sha256(payload).digest())
        # Plain text on the TLS port: no echo, the connection ends.
        with socket.create_connection(("127.0.0.1", port), timeout=10) as p:
            p.sendall(b"hello in the clear\r\n")
            try:
                data = p.recv(100)
            except ConnectionResetError:
                data = b""
            self.assertNotIn(b"hello", data)


class UpstreamTlsTest(TlsBase):
    def setUp(self):
        super().setUp()
        self.tbe = TlsBackend(*self.pki.backend)
        self.addCleanup(self.tbe.close)
        self.port = self.free_port()
        routes = [{"match": {"path_prefix": "/wrongname"}, "cluster": "wrongname"},
                  {"match": {"path_prefix": "/untrusted"}, "cluster": "untrusted"},
                  {"cluster": "secure"}]
        secure = cluster("secure", [self.tbe.addr])
        secure["tls"] = {"ca_file": self.pki.ca, "sni": "backend.test"}
        wrong = cluster("wrongname", [self.tbe.addr])
        wrong["tls"] = {"ca_file": self.pki.ca, "sni": "other.test"}
        untrusted = cluster("untrusted", [self.tbe.addr])
        untrusted["tls"] = {"ca_file": self.pki.other_ca, "sni": "backend.test"}
        self.start_tls_keel([http_listener(self.port, routes)], [secure, wrong, untrusted])

    def test_verified_upstream(self):
        c = self.client(self.port)
        r = c.get("/hello")
        self.assertEqual(r.status, 200, r)
        j = r.json()
        self.assertEqual(j["path"], "/hello")
        self.assertIn("backend.test", j["snis"])
        body = os.urandom(1200 * 1024 + 5)
        r = c.exchange("POST", "/echo", [("Content-Type", "application/octet-stream")], body)
        self.assertEqual(r.status, 200)
        self.assertTrue(r.body == body, "body through upstream TLS differs")
        # The TLS upstream connection is pooled: later requests need no new handshake.
        n_before = len(self.tbe.snis)
        for i in range(3):
            self.assertEqual(c.get("/again/%d" % i).status, 200)
        self.assertEqual(len(self.tbe.snis), n_before)

    def test_wrong_name_is_refused(self):
        r = self.client(self.port).get("/wrongname/x")
        self.assertEqual(r.status, 502)
        self.keel.wait_log(r"upstream 127\.0\.0\.1:\d+: TLS handshake failed: certificate "
                           r"verify failed \(certificate: hostname mismatch\)")

    def test_untrusted_ca_is_refused(self):
        r = self.client(self.port).get("/untrusted/x")
        self.assertEqual(r.status, 502)
        self.keel.wait_log(r"upstream 127\.0\.0\.1:\d+: TLS handshake failed: certificate "
                           r"verify failed \(certificate: unable to get local issuer")


if __name__ == "__main__":
    unittest.main()
