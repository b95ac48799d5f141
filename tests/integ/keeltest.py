# SPDX-License-Identifier: MIT
"""Harness for keel's integration tests: processes, configs and raw HTTP on loopback.

A test case derives from KeelTestCase and uses:
    be = self.start_backend("b1")                 # fake_backend.py, .port/.addr/.log()
    port, admin = self.free_port(), self.free_port()
    keel = self.start_keel(keel_yaml(...))        # waits for GET /ready == 200 (10 s)
    c = self.client(port); r = c.get("/x")        # raw-socket HTTP/1.1 client
Every process the test starts is stopped by PID in a cleanup (also on failure); when a
test fails, the tail of keel's stderr is printed. keel must exit 0 on the final SIGTERM
and its log must hold no sanitizer report, or the test errors.
"""

import base64
import hashlib
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
FAKE_BACKEND = os.path.join(HERE, "fake_backend.py")
PYTHON = sys.executable or "/usr/bin/python3"
sys.path.insert(0, HERE)
import fake_backend  # noqa: E402  (pattern helpers shared with the backend)
import fake_consul  # noqa: E402  (ConsulClient for start_consul)

FAKE_CONSUL = os.path.join(HERE, "fake_consul.py")
H2_BACKEND = os.path.join(HERE, "h2_backend.py")

pattern_chunks = fake_backend.pattern_chunks
pattern_sha256 = fake_backend.pattern_sha256


def keel_bin():
    path = os.environ.get("KEEL_BIN")
    if not path:
        path = os.path.join(HERE, "..", "..", "build", "keel")
    return os.path.abspath(path)


def free_port(host="127.0.0.1"):
    """A port that was free a moment ago (bind to port 0, then release it)."""
    s = socket.socket()
    try:
        s.bind((host, 0))
        return s.getsockname()[1]
    finally:
        s.close()


def wait_for(pred, timeout=10.0, interval=0.05, what="condition"):
    """Polls pred() until it returns a true value (returned) or timeout (AssertionError)."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(interval)


# ---------------------------------------------------------------------------
# YAML emitter (block style) for generated configs
# ---------------------------------------------------------------------------

_PLAIN = re.compile(r"[A-Za-z0-9_/.][A-Za-z0-9_./:-]*\Z")
_RESERVED = {"true", "false", "yes", "no", "on", "off", "null", "y", "n", "~"}


def _scalar(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    s = str(v)
    if _PLAIN.match(s) and not re.fullmatch(r"[0-9.]+", s) and s.lower() not in _RESERVED:
        return s
    return json.dumps(s)


def to_yaml(obj, indent=0):
    """Block-style YAML for dicts/lists/scalars (enough for keel.yaml)."""
    pad = " " * indent
    out = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(v, (dict, list)) and v:
                out.append("%s%s:" % (pad, k))
                out.append(to_yaml(v, indent + 2))
            elif isinstance(v, (dict, list)):
                out.append("%s%s: %s" % (pad, k, "{}" if isinstance(v, dict) else "[]"))
            else:
                out.append("%s%s: %s" % (pad, k, _scalar(v)))
    elif isinstance(obj, list):
        for item in obj:
            if isinstance(item, (dict, list)) and item:
                sub = to_yaml(item, indent + 2).split("\n")
                sub[0] = pad + "- " + sub[0][indent + 2:]
                out.append("\n".join(sub))
            else:
                out.append("%s- %s" % (pad, _scalar(item)))
    else:
        out.append(pad + _scalar(obj))
    return "\n".join(out)


def keel_yaml(listeners, clusters, admin_port, workers=2, drain_timeout="10s", extra=None):
    cfg = {"workers": workers, "drain_timeout": drain_timeout,
           "admin": {"address": "127.0.0.1:%d" % admin_port},
           "listeners": listeners, "clusters": clusters}
    if extra:
        cfg.update(extra)
    return to_yaml(cfg) + "\n"


def cluster(name, addrs, lb=None, weights=None, timeouts=None):
    """A cluster dict; addrs are 'host:port' strings or ints (ports on 127.0.0.1)."""
    eps = []
    for i, a in enumerate(addrs):
        ep = {"address": a if isinstance(a, str) else "127.0.0.1:%d" % a}
        if weights is not None:
            ep["weight"] = weights[i]
        eps.append(ep)
    c = {"name": name}
    if lb:
        c["lb"] = lb
    c["endpoints"] = eps
    if timeouts:
        c["timeouts"] = timeouts
    return c


def http_listener(port, routes, name="web", limits=None, timeouts=None):
    lst = {"name": name, "address": "127.0.0.1:%d" % port, "protocol": "http", "routes": routes}
    if limits:
        lst["limits"] = limits
    if timeouts:
        lst["timeouts"] = timeouts
    return lst


# ---------------------------------------------------------------------------
# Raw HTTP/1.1 client
# ---------------------------------------------------------------------------

class Closed(Exception):
    """The peer closed the connection (EOF or reset)."""


class Response:
    def __init__(self, version, status, reason, headers, body, raw_head, chunked=False):
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers  # list of (name, value) in order
        self.body = body        # bytes, or None when streamed into a sink
        self.raw_head = raw_head
        self.chunked = chunked
        self.body_len = 0

    def header(self, name, default=None):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return default

    def header_all(self, name):
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def json(self):
        return json.loads(self.body.decode())

    def __repr__(self):
        return "<Response %s %s %r>" % (self.status, self.reason, (self.body or b"")[:200])


class Client:
    """One client TCP connection with a receive buffer and HTTP/1.1 helpers."""

    def __init__(self, port, host="127.0.0.1", source=None, timeout=10.0):
        self.port = port
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            self.sock.settimeout(timeout)
            if source:
                self.sock.bind((source, 0))
            self.sock.connect((host, port))
        except OSError:
            self.sock.close()
            raise
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.eof = False

    def settimeout(self, t):
        self.sock.settimeout(t)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, data):
        self.sock.sendall(data)

    # -- low-level reads --
    def _fill(self):
        if self.eof:
            raise Closed("connection closed by peer")
        try:
            data = self.sock.recv(262144)
        except ConnectionResetError:
            self.eof = True
            raise Closed("connection reset by peer")
        if not data:
            self.eof = True
            raise Closed("connection closed by peer")
        self.buf += data

    def read_until(self, delim, limit=1 << 20):
        while True:
            i = self.buf.find(delim)
            if i >= 0:
                out = bytes(self.buf[:i + len(delim)])
                del self.buf[:i + len(delim)]
                return out
            if len(self.buf) > limit:
                raise AssertionError("no %r within %d bytes" % (delim, limit))
            self._fill()

    def read_exact(self, n):
        while len(self.buf) < n:
            self._fill()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_some(self, maxn):
        if not self.buf:
            self._fill()
        n = min(maxn, len(self.buf))
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_to_close(self, limit=1 << 26):
        while True:
            try:
                self._fill()
            except Closed:
                break
            if len(self.buf) > limit:
                raise AssertionError("more than %d bytes before close" % limit)
        out = bytes(self.buf)
        self.buf.clear()
        return out

    def wait_closed(self, timeout=5.0):
        """True if the peer closes within timeout (any unread data is discarded)."""
        deadline = time.monotonic() + timeout
        self.buf.clear()
        while time.monotonic() < deadline:
            if self.eof:
                return True
            r, _, _ = select.select([self.sock], [], [], max(0.0, deadline - time.monotonic()))
            if not r:
                return False
            try:
                data = self.sock.recv(65536)
            except (ConnectionResetError, BrokenPipeError):
                self.eof = True
                return True
            if not data:
                self.eof = True
                return True
        return self.eof

    # -- HTTP --
    def request(self, method, target, headers=None, body=b"", host="test.local", version="HTTP/1.1"):
        """Sends one request. headers: list of (name, value); Host and Content-Length added
        unless present (Host omitted when host is None)."""
        headers = list(headers or [])
        names = {k.lower() for k, _ in headers}
        if host is not None and "host" not in names:
            headers.insert(0, ("Host", host))
        if body and "content-length" not in names and "transfer-encoding" not in names:
            headers.append(("Content-Length", str(len(body))))
        self.send(build_request(method, target, headers, body, version))

    def read_response(self, method="GET", sink=None, skip_1xx=True):
        """Reads one response. HEAD/1xx/204/304: no body. sink(bytes) receives the body
        instead of Response.body when given."""
        while True:
            head = self.read_until(b"\r\n\r\n")
            resp = parse_response_head(head)
            if 100 <= resp.status < 200 and resp.status != 101 and skip_1xx:
                continue
            break
        if method == "HEAD" or 100 <= resp.status < 200 or resp.status in (204, 304):
            resp.body = b"" if sink is None else None
            return resp
        parts = [] if sink is None else None
        total = 0

        def put(data):
            nonlocal total
            total += len(data)
            if sink is None:
                parts.append(data)
            else:
                sink(data)

        te = resp.header("Transfer-Encoding")
        cl = resp.header("Content-Length")
        if te is not None and te.lower().split(",")[-1].strip() == "chunked":
            resp.chunked = True
            while True:
                line = self.read_until(b"\r\n", limit=4096)
                size = int(line.split(b";")[0].strip(), 16)
                if size == 0:
                    while self.read_until(b"\r\n", limit=65536) != b"\r\n":
                        pass
                    break
                left = size
                while left:
                    d = self.read_some(min(left, 262144))
                    left -= len(d)
                    put(d)
                if self.read_exact(2) != b"\r\n":
                    raise AssertionError("chunk not followed by CRLF")
        elif cl is not None:
            left = int(cl)
            while left:
                try:
                    d = self.read_some(min(left, 262144))
                except Closed:
                    raise Closed("closed with %d of %s body bytes missing" % (left, cl))
                left -= len(d)
                put(d)
        else:
            while True:
                try:
                    d = self.read_some(262144)
                except Closed:
                    break
                put(d)
        resp.body_len = total
        if sink is None:
            resp.body = b"".join(parts)
        return resp

    def exchange(self, method, target, headers=None, body=b"", **kw):
        self.request(method, target, headers, body, **{k: v for k, v in kw.items()
                                                       if k in ("host", "version")})
        return self.read_response(method, **{k: v for k, v in kw.items()
                                             if k in ("sink", "skip_1xx")})

    def get(self, target, headers=None, **kw):
        return self.exchange("GET", target, headers, **kw)


def build_request(method, target, headers, body=b"", version="HTTP/1.1"):
    lines = ["%s %s %s" % (method, target, version)]
    lines += ["%s: %s" % (k, v) for k, v in headers]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head + (body or b"")


def parse_response_head(head):
    text = head.decode("latin-1")
    lines = text[:-4].split("\r\n")
    m = re.match(r"(HTTP/\d\.\d) (\d{3})(?: (.*))?$", lines[0])
    if not m:
        raise AssertionError("bad status line: %r" % lines[0])
    headers = []
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers.append((k, v.strip(" \t")))
    return Response(m.group(1), int(m.group(2)), m.group(3) or "", headers, None, head)


def chunked_body(pieces, trailers=b""):
    out = b"".join(b"%x\r\n" % len(p) + p + b"\r\n" for p in pieces if p)
    return out + b"0\r\n" + trailers + b"\r\n"


# ---------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------

class H2Proc:
    """An h2_backend.py process: .addr, .port, stats(), mode(), reset(), kill()."""

    def __init__(self, ident, proc, addr, control):
        self.ident = ident
        self.proc = proc
        self.addr = addr
        self.port = int(addr.rsplit(":", 1)[1])
        self.control = int(control.rsplit(":", 1)[1])

    def _get(self, path):
        c = Client(self.control, timeout=5)
        try:
            return c.get(path, [("Connection", "close")], host="127.0.0.1").json()
        finally:
            c.close()

    def stats(self):
        return self._get("/stats")

    def mode(self, **kw):
        return self._get("/mode?" + "&".join("%s=%d" % kv for kv in kw.items()))

    def reset(self):
        return self._get("/reset")

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


class BackendProc:
    def __init__(self, ident, proc, addrs):
        self.ident = ident
        self.proc = proc
        self.addrs = addrs
        self.ports = [int(a.rsplit(":", 1)[1]) for a in addrs]
        self.port = self.ports[0]
        self.addr = addrs[0]

    def _admin(self, path):
        c = Client(self.port, timeout=5)
        try:
            return c.get(path, [("Connection", "close")])
        finally:
            c.close()

    def log(self):
        """Request heads this backend received (not counting /__backend/*)."""
        return self._admin("/__backend/log").json()

    def reset(self):
        self._admin("/__backend/reset")

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


class ConsulProc(fake_consul.ConsulClient):
    """A fake_consul.py process: .port, .addr ("127.0.0.1:PORT"), .token, .proc, and the
    ConsulClient methods (register, check_pass/warn/fail, service_maintenance, serf, fault,
    requests, health, index, ...; see fake_consul.py)."""

    def __init__(self, proc, port, token=None):
        super().__init__(port, "127.0.0.1", token)
        self.proc = proc
        self.addr = "127.0.0.1:%d" % port

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


class KeelProc:
    def __init__(self, proc, cfg_path, log_path, admin_port):
        self.proc = proc
        self.cfg_path = cfg_path
        self.log_path = log_path
        self.admin_port = admin_port
        self.stopped_by_test = False

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def wait_log(self, regex, timeout=10.0):
        rx = re.compile(regex)
        return wait_for(lambda: rx.search(self.log_text()), timeout, what="log /%s/" % regex)

    def admin(self, path, method="GET"):
        c = Client(self.admin_port, timeout=5)
        try:
            return c.exchange(method, path, [("Connection", "close")], host="127.0.0.1")
        finally:
            c.close()

    def stop(self, sig=signal.SIGTERM, timeout=15.0):
        """Sends sig (None: none, just wait) and waits; returns the exit code (negative:
        killed by a signal)."""
        self.stopped_by_test = True
        if sig is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError("keel did not exit within %.1fs (signal %s)" % (timeout, sig))


SANITIZER_RX = re.compile(r"ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:|"
                          r"SUMMARY: (Address|Undefined)")


class KeelTestCase(unittest.TestCase):
    """Base class: temp dir, process cleanup, failure diagnostics."""

    maxDiff = 4000

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="keel-integ-")
        self._procs = []
        self._clients = []
        self.keel = None
        self._keels = []
        self.addCleanup(self._final_cleanup)

    # -- cleanup ----------------------------------------------------------------
    def _final_cleanup(self):
        for c in self._clients:
            c.close()
        problems = []
        for k in self._keels:
            if k.proc.poll() is None:
                try:
                    rc = k.stop(signal.SIGTERM, timeout=15)
                except AssertionError as e:
                    problems.append("keel: %s" % e)
                else:
                    if rc != 0:
                        problems.append("keel exited %d on the final SIGTERM" % rc)
            elif not k.stopped_by_test and k.proc.returncode != 0:
                problems.append("keel died during the test with exit status %d"
                                % k.proc.returncode)
        for p in self._procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(5)
            if p.stdout:
                p.stdout.close()
        for k in self._keels:
            m = SANITIZER_RX.search(k.log_text())
            if m:
                problems.append("sanitizer report in keel's log: %s" % m.group(0))
        failed = self._test_failed()
        if (failed or problems) and self._keels:
            for k in self._keels:
                lines = k.log_text().splitlines()
                sys.stderr.write("\n----- keel stderr (last 60 of %d lines, %s) -----\n"
                                 % (len(lines), k.log_path))
                sys.stderr.write("\n".join(lines[-60:]) + "\n----- end keel stderr -----\n")
        if not failed and not problems:
            shutil.rmtree(self.tmp, ignore_errors=True)
        if problems:
            raise AssertionError("; ".join(problems))

    def _test_failed(self):
        """True if this test has failed or errored so far (unittest internals, 3.4+)."""
        outcome = getattr(self, "_outcome", None)
        if outcome is None:
            return False
        if not getattr(outcome, "success", True):
            return True
        for _, exc in getattr(outcome, "errors", []) or []:  # Python <= 3.10
            if exc is not None:
                return True
        result = getattr(outcome, "result", None)
        for t, _ in (getattr(result, "failures", []) or []) + (getattr(result, "errors", []) or []):
            if t is self or getattr(t, "test_case", None) is self:
                return True
        return False

    # -- helpers ------------------------------------------------------------------
    def free_port(self):
        return free_port()

    def client(self, port, source=None, timeout=10.0):
        c = Client(port, source=source, timeout=timeout)
        self._clients.append(c)
        return c

    def start_backend(self, ident, mode="http", greet=False, nports=1, args=()):
        """Starts fake_backend.py (extra CLI args) and waits for its 'ready' line (10 s)."""
        return self._await_backend(self._spawn_backend(ident, mode, greet, nports, args))

    def start_backends(self, idents, mode="http", greet=False):
        """Starts several backends in parallel; returns {ident: BackendProc}."""
        spawned = [self._spawn_backend(i, mode, greet, 1) for i in idents]
        return {sp[0]: self._await_backend(sp) for sp in spawned}

    def spawn_helper(self, cmd, logname, log_mode="wb"):
        """Starts a helper process (stopped in the cleanup), its stderr in <tmp>/logname."""
        errf = open(os.path.join(self.tmp, logname), log_mode)
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errf, stdin=subprocess.DEVNULL)
        errf.close()
        self._procs.append(p)
        return p

    @staticmethod
    def await_ready(p, what, timeout=10.0):
        """Waits for a helper's 'ready ADDR...' line; returns the fields after 'ready'."""
        r, _, _ = select.select([p.stdout], [], [], timeout)
        line = p.stdout.readline().decode() if r else ""
        if not line.startswith("ready "):
            p.kill()
            raise AssertionError("%s did not start: %r" % (what, line))
        return line.split()[1:]

    def _spawn_backend(self, ident, mode, greet, nports, args=()):
        cmd = [PYTHON, FAKE_BACKEND, "--id", ident, "--mode", mode] + list(args)
        for _ in range(nports):
            cmd += ["--port", "0"]
        if greet:
            cmd.append("--greet")
        return ident, self.spawn_helper(cmd, "backend-%s.log" % ident)

    def _await_backend(self, spawned):
        ident, p = spawned
        return BackendProc(ident, p, self.await_ready(p, "fake backend %s" % ident))

    def start_h2(self, ident, max_streams=0, tls=None):
        """Starts h2_backend.py (an HTTP/2 server; TLS with ALPN h2 when tls = (cert, key))
        and waits for its 'ready' line; returns an H2Proc."""
        cmd = [PYTHON, H2_BACKEND, "--id", ident, "--port", "0"]
        if tls:
            cmd += ["--tls-cert", tls[0], "--tls-key", tls[1]]
        if max_streams:
            cmd += ["--max-streams", str(max_streams)]
        p = self.spawn_helper(cmd, "h2-%s.log" % ident)
        addr, control = self.await_ready(p, "h2 backend %s" % ident)[:2]
        return H2Proc(ident, p, addr, control)

    def start_consul(self, acl_token=None, port=0, args=()):
        """Starts fake_consul.py (port 0: a free one) and waits for 'ready' (10 s); the
        returned ConsulProc sends acl_token with its agent calls. Stopped by SIGTERM in
        the cleanup; its stderr is in <tmp>/consul.log."""
        cmd = [PYTHON, FAKE_CONSUL, "--port", str(port)] + list(args)
        if acl_token is not None:
            cmd += ["--acl-token", acl_token]
        p = self.spawn_helper(cmd, "consul.log", "ab")
        return ConsulProc(p, int(self.await_ready(p, "fake consul")[0]), acl_token)

    def start_keel(self, config_text, name="keel", wait_ready=True, admin_port=None):
        """Writes the config and starts keel; waits until GET /ready returns 200 (10 s)."""
        cfg = os.path.join(self.tmp, name + ".yaml")
        with open(cfg, "w") as f:
            f.write(config_text)
        if admin_port is None:
            m = re.search(r"admin:\s*\n?\s*\{?\s*address:\s*\"?[0-9.]+:(\d+)", config_text)
            admin_port = int(m.group(1)) if m else None
        log_path = os.path.join(self.tmp, name + ".log")
        logf = open(log_path, "wb")
        binary = keel_bin()
        if not os.access(binary, os.X_OK):
            raise unittest.SkipTest("keel binary not found at %s (set KEEL_BIN)" % binary)
        p = subprocess.Popen([binary, "-c", cfg], stdout=logf, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL)
        logf.close()
        k = KeelProc(p, cfg, log_path, admin_port)
        self._keels.append(k)
        self.keel = k
        if wait_ready:
            self.wait_ready(k)
        return k

    def wait_ready(self, k, timeout=10.0):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if k.proc.poll() is not None:
                raise AssertionError("keel exited with %d during start-up:\n%s"
                                     % (k.proc.returncode, k.log_text()[-3000:]))
            try:
                r = k.admin("/ready")
                if r.status == 200:
                    return
                last = "status %d" % r.status
            except (OSError, Closed, AssertionError) as e:
                last = repr(e)
            time.sleep(0.05)
        raise AssertionError("keel not ready within %.0fs (last: %s)" % (timeout, last))

    def run_threads(self, fn, args_list, timeout=60.0):
        """Runs fn(*args) in parallel threads; returns results in order; re-raises errors."""
        results = [None] * len(args_list)
        errors = []

        def work(i, args):
            try:
                results[i] = fn(*args)
            except BaseException as e:  # noqa: B902 - reported below
                errors.append((i, e))

        ts = [threading.Thread(target=work, args=(i, a), daemon=True)
              for i, a in enumerate(args_list)]
        for t in ts:
            t.start()
        deadline = time.monotonic() + timeout
        for t in ts:
            t.join(max(0.0, deadline - time.monotonic()))
        if any(t.is_alive() for t in ts):
            raise AssertionError("threads still running after %.0fs" % timeout)
        if errors:
            raise errors[0][1]
        return results


def one_request(port, method, target, headers=None, body=b"", source=None, timeout=10.0, **kw):
    """A fresh connection, one request with Connection: close, the response (or Closed)."""
    c = Client(port, source=source, timeout=timeout)
    try:
        hdrs = list(headers or []) + [("Connection", "close")]
        return c.exchange(method, target, hdrs, body, **kw)
    finally:
        c.close()


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def pipe_fds(pid):
    """The pipes a process holds: {inode text: number of its descriptors on that pipe}."""
    out = {}
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            link = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        if link.startswith("pipe:"):
            out[link] = out.get(link, 0) + 1
    return out


def keel_is_sanitized():
    """True when the keel binary was built with ASan (memory numbers are meaningless)."""
    try:
        with open(keel_bin(), "rb") as f:
            return b"__asan_init" in f.read()
    except OSError:
        return False


# ---------------------------------------------------------------------------
# WebSocket (RFC 6455) client helpers
# ---------------------------------------------------------------------------

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def ws_accept(key):
    return base64.b64encode(hashlib.sha1(key.encode() + WS_GUID).digest()).decode()


def ws_handshake(client, path="/ws", host="test.local", extra=None):
    """Sends the upgrade request; returns (response, key)."""
    key = base64.b64encode(os.urandom(16)).decode()
    hdrs = [("Upgrade", "websocket"), ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", key), ("Sec-WebSocket-Version", "13")] + list(extra or [])
    client.request("GET", path, hdrs, host=host)
    return client.read_response("GET"), key


def ws_send(client, opcode, payload, fin=True):
    """Sends one masked client frame."""
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        ln = bytes([0x80 | n])
    elif n < 65536:
        ln = bytes([0x80 | 126]) + n.to_bytes(2, "big")
    else:
        ln = bytes([0x80 | 127]) + n.to_bytes(8, "big")
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    client.send(bytes([(0x80 if fin else 0) | opcode]) + ln + mask + masked)


def ws_recv(client):
    """Reads one frame; returns (fin, opcode, payload). Server frames must be unmasked."""
    b0, b1 = client.read_exact(2)
    if b1 & 0x80:
        raise AssertionError("server frame is masked")
    n = b1 & 0x7F
    if n == 126:
        n = int.from_bytes(client.read_exact(2), "big")
    elif n == 127:
        n = int.from_bytes(client.read_exact(8), "big")
    return bool(b0 & 0x80), b0 & 0x0F, client.read_exact(n)


class ThreadedServer:
    """A loopback TCP server for tests: every accepted connection is handed to self._conn(sock)
    in its own thread. Subclasses call self._listen() at the end of __init__; close() stops
    accepting."""

    def _listen(self, backlog=16, conn_timeout=None):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(backlog)
        self.addr = "127.0.0.1:%d" % self.sock.getsockname()[1]
        self._conn_timeout = conn_timeout
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            if self._conn_timeout is not None:
                c.settimeout(self._conn_timeout)
            threading.Thread(target=self._conn, args=(c,), daemon=True).start()

    def _conn(self, c):
        raise NotImplementedError

    def close(self):
        self.sock.close()


class ScriptedBackend(ThreadedServer):
    """A tiny in-process HTTP/1.1 backend that misbehaves on purpose (keep-alive). Each request
    head is counted (`count`) and its X-Request-Id recorded (`ids`); then, by mode:
    "500" answers 500, "503" answers 503, "503-raN" answers 503 with Retry-After: N,
    "reset" closes the connection with a RST, "slow" answers 200 after 2 s. Every answer
    carries X-Backend-Id: ident. Call close() (e.g. with addCleanup)."""

    def __init__(self, mode, ident="scripted"):
        self.mode = mode
        self.ident = ident
        self.count = 0
        self.ids = []
        self._listen(64)

    def _answer(self, c, status, body, extra=b""):
        c.sendall(b"HTTP/1.1 " + status + b"\r\nX-Backend-Id: " + self.ident.encode()
                  + b"\r\n" + extra + b"Content-Length: %d\r\n\r\n" % len(body) + body)

    def _conn(self, c):
        buf = b""
        with c:
            while True:
                try:
                    d = c.recv(65536)
                except OSError:
                    return
                if not d:
                    return
                buf += d
                while b"\r\n\r\n" in buf:
                    head, buf = buf.split(b"\r\n\r\n", 1)
                    self.count += 1
                    for line in head.split(b"\r\n"):
                        if line.lower().startswith(b"x-request-id:"):
                            self.ids.append(line.split(b":", 1)[1].strip().decode())
                    if self.mode == "reset":
                        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
                        return
                    if self.mode == "slow":
                        time.sleep(2)
                        self._answer(c, b"200 OK", b"ok\n")
                    elif self.mode == "500":
                        self._answer(c, b"500 Internal Server Error", b"broken\n")
                    else:
                        extra = b""
                        if self.mode.startswith("503-ra"):
                            extra = b"Retry-After: " + self.mode[6:].encode() + b"\r\n"
                        self._answer(c, b"503 Service Unavailable", b"busy\n", extra)



# ---------------------------------------------------------------------------
# HTTP/2 (h2c, prior knowledge) client on python3-h2, gRPC backends, process memory
# ---------------------------------------------------------------------------

GRPC_BACKEND = os.path.join(HERE, "grpc_backend.py")


class H2Stream:
    """What arrived on one HTTP/2 stream of an H2Client."""

    def __init__(self, sid):
        self.id = sid
        self.headers = None       # list of (name, value) str of the final response head
        self.informational = []   # heads of 1xx responses
        self.data = bytearray()
        self.trailers = None      # list of (name, value) or None
        self.ended = False        # END_STREAM received
        self.reset = None         # RST_STREAM error code from the peer, or None

    @property
    def status(self):
        v = self.header(":status")
        return int(v) if v is not None else None

    def header(self, name, default=None):
        for k, v in self.headers or []:
            if k.lower() == name.lower():
                return v
        return default

    def trailer(self, name, default=None):
        for k, v in self.trailers or []:
            if k.lower() == name.lower():
                return v
        return default

    @property
    def done(self):
        return self.ended or self.reset is not None

    def json(self):
        return json.loads(bytes(self.data).decode())

    def __repr__(self):
        return "<H2Stream %d status=%s ended=%s reset=%s %r>" % (
            self.id, self.status, self.ended, self.reset, bytes(self.data[:200]))


class H2Client:
    """One h2c connection (prior knowledge) driven by python3-h2. Received DATA is handed
    back to the flow-control windows at once unless auto_ack is False (then call ack()).
    settings: dict of h2.settings.SettingCodes -> value sent in the first SETTINGS.
    conn_window: extra connection-level window granted at start (0: keep 65535)."""

    def __init__(self, port, host="127.0.0.1", timeout=10.0, settings=None, auto_ack=True,
                 conn_window=0):
        import h2.config
        import h2.connection
        import h2.settings
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.timeout = timeout
        cfg = h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        self.conn = h2.connection.H2Connection(cfg)
        self.conn.local_settings = h2.settings.Settings(client=True,
                                                        initial_values=settings or {})
        self.conn.initiate_connection()
        self._keep_open_on_graceful_goaway()
        if conn_window:
            self.conn.increment_flow_control_window(conn_window)
        self.streams = {}
        self.auto_ack = auto_ack
        self.goaway = None         # (error_code, last_stream_id) once GOAWAY arrived
        self.eof = False
        self.remote_settings = {}
        self.flush()

    def _keep_open_on_graceful_goaway(self):
        """python3-h2 closes its state machine on any GOAWAY, so frames of streams that a
        graceful GOAWAY (NO_ERROR) lets finish would raise; reopen it right after such a
        GOAWAY frame is processed (frames that follow in the same read included)."""
        import h2.connection
        import hyperframe.frame
        table = self.conn._frame_dispatch_table
        orig = table[hyperframe.frame.GoAwayFrame]

        def on_goaway(frame):
            out = orig(frame)
            if frame.error_code == 0:
                self.conn.state_machine.state = h2.connection.ConnectionState.CLIENT_OPEN
            return out
        table[hyperframe.frame.GoAwayFrame] = on_goaway

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def flush(self):
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def _event(self, ev):
        import h2.events as E
        st = self.streams.get(getattr(ev, "stream_id", None) or 0)
        if isinstance(ev, E.ResponseReceived):
            st.headers = list(ev.headers)
        elif isinstance(ev, E.InformationalResponseReceived):
            st.informational.append(list(ev.headers))
        elif isinstance(ev, E.DataReceived):
            if st is not None:
                st.data += ev.data
            if self.auto_ack and ev.flow_controlled_length:
                self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
        elif isinstance(ev, E.TrailersReceived):
            st.trailers = list(ev.headers)
        elif isinstance(ev, E.StreamEnded):
            st.ended = True
        elif isinstance(ev, E.StreamReset):
            if st is not None:
                st.reset = ev.error_code
        elif isinstance(ev, E.ConnectionTerminated):
            self.goaway = (int(ev.error_code), ev.last_stream_id)
        elif isinstance(ev, E.RemoteSettingsChanged):
            for k, v in ev.changed_settings.items():
                self.remote_settings[k] = v.new_value

    def pump(self, timeout=None):
        """Reads once (waiting up to timeout, default the socket timeout) and handles the
        events. @return False when nothing came (timeout) or the peer closed."""
        if self.eof:
            return False
        r, _, _ = select.select([self.sock], [], [], self.timeout if timeout is None else timeout)
        if not r:
            return False
        try:
            data = self.sock.recv(262144)
        except (ConnectionResetError, BrokenPipeError):
            data = b""
        if not data:
            self.eof = True
            return False
        for ev in self.conn.receive_data(data):
            self._event(ev)
        self.flush()
        return True

    def ack(self, sid, n):
        """Hands n consumed bytes of stream sid back to the peer (auto_ack False)."""
        self.conn.acknowledge_received_data(n, sid)
        self.flush()

    def wait_until(self, pred, timeout=None, what="condition"):
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not pred():
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("h2: timed out waiting for %s" % what)
            if not self.pump(left) and self.eof and not pred():
                raise Closed("h2: connection closed while waiting for %s (goaway %s)"
                             % (what, self.goaway))
        return True

    def request(self, method, path, headers=(), body=None, authority="test.local",
                end_stream=True, content_length=True, scheme="http"):
        """Opens a stream; body (bytes) sent respecting flow control. content_length False:
        no content-length field. end_stream False: the stream stays open for send_body().
        @return the stream id."""
        sid = self.conn.get_next_available_stream_id()
        hdrs = [(":method", method), (":scheme", scheme)]
        if authority is not None:  # None: no :authority (a host field may stand in)
            hdrs.append((":authority", authority))
        hdrs += [(":path", path)] + list(headers)
        if body and content_length and not any(k.lower() == "content-length" for k, _ in headers):
            hdrs.append(("content-length", str(len(body))))
        self.streams[sid] = H2Stream(sid)
        self.conn.send_headers(sid, hdrs, end_stream=end_stream and not body)
        self.flush()
        if body:
            self.send_body(sid, body, end_stream)
        return sid

    def send_body(self, sid, body, end_stream=True, trailers=None):
        """Sends body on sid as the windows allow (reading meanwhile), then trailers (list of
        (name, value)) or END_STREAM."""
        import h2.exceptions
        view = memoryview(body)
        off = 0
        deadline = time.monotonic() + max(self.timeout, 30.0)
        while off < len(body):
            try:
                w = min(self.conn.local_flow_control_window(sid),
                        self.conn.max_outbound_frame_size, len(body) - off)
            except h2.exceptions.StreamClosedError:
                return False
            if w <= 0:
                if time.monotonic() > deadline:
                    raise AssertionError("h2: send window of stream %d stayed closed" % sid)
                if not self.pump(1.0) and self.eof:
                    raise Closed("h2: closed while sending the body of stream %d" % sid)
                if self.streams[sid].reset is not None:
                    return False
                continue
            self.conn.send_data(sid, bytes(view[off:off + w]))
            off += w
            self.flush()
        if trailers:
            self.conn.send_headers(sid, list(trailers), end_stream=True)
        elif end_stream:
            self.conn.end_stream(sid)
        self.flush()
        return True

    def response(self, sid, timeout=None):
        """Waits for stream sid to end (or be reset); returns its H2Stream."""
        st = self.streams[sid]
        self.wait_until(lambda: st.done, timeout, "stream %d to end" % sid)
        return st

    def get(self, path, headers=(), timeout=None, **kw):
        return self.response(self.request("GET", path, headers, **kw), timeout)

    def reset_stream(self, sid, code=8):
        self.conn.reset_stream(sid, code)
        self.flush()


def proc_rss_kb(pid):
    """VmRSS of a process in KiB (from /proc/<pid>/status); 0 when gone."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def start_grpc_backend(tc, ident, nports=1, timeout=15.0):
    """Starts grpc_backend.py for test case tc (stopped in tc's cleanup) and waits for its
    'ready' line; returns a BackendProc (.addr, .port, .kill())."""
    cmd = [PYTHON, GRPC_BACKEND, "--id", ident] + ["--port", "0"] * nports
    p = tc.spawn_helper(cmd, "grpc-backend-%s.log" % ident)
    return BackendProc(ident, p, tc.await_ready(p, "grpc backend %s" % ident, timeout))
