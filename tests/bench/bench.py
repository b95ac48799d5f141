# SPDX-License-Identifier: MIT
"""bench.py: keel vs HAProxy vs nginx side by side on loopback (run through tests/bench/run.sh).

Starts one backend nginx (fixed small body, a 100 MB file) and one iperf3 server, then keel,
HAProxy and nginx as equivalent proxies in front of them, and measures every workload on each
proxy in turn, alternating, for several rounds. Writes a Markdown table (stdout and
results/latest.md) and JSON (results/latest.json) with keel/HAProxy and keel/nginx ratios.

Every process it starts is stopped by PID at the end, also on Ctrl-C or an error; every child
also gets PR_SET_PDEATHSIG so that none outlives the script if it is killed.
"""

import argparse
import ctypes
import datetime
import http.client
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
RESULTS = os.path.join(HERE, "results")

BODY = "keel-bench backend ok: 0123456789abcdef0123456789abcdef\n"
BIG_NAME = "big.bin"
BIG_SIZE = 100 * 1000 * 1000

PROXIES = ["keel", "haproxy", "nginx"]
LABEL = {"keel": "keel", "haproxy": "HAProxy", "nginx": "nginx", "direct": "direct"}

# HTTP/2 workloads (h2load): clients x concurrent streams per connection.
H2_CLIENTS = 8
H2_STREAMS = 32
# gRPC-like request body: one length-prefixed message (flag 0, 4-byte length, 64 bytes).
GRPC_BODY = b"\x00\x00\x00\x00\x40" + b"k" * 64

# Workloads in table order. kind: wrk | tcp | large | h2 | h2large | unsupported.
WORKLOADS = [
    ("memory", "memory", "memory: fresh process at rest, then with 1000 idle keep-alive clients"),
    ("http1_keepalive_50", "wrk", "HTTP/1.1 keep-alive, 50 connections"),
    ("http1_keepalive_1000", "wrk", "HTTP/1.1 keep-alive, 1000 connections"),
    ("http1_close_50", "wrk", "HTTP/1.1 connection per request (Connection: close), 50 conns"),
    ("tcp_iperf3", "tcp", "raw TCP throughput (iperf3, 1 stream)"),
    ("large_body_100MB", "large", "100 MB download (curl, sequential)"),
    ("http2_h2load", "h2", "HTTP/2 h2c (h2load, %d conns x %d streams) to HTTP/1.1 backend" % (
        H2_CLIENTS, H2_STREAMS)),
    ("grpc_h2", "h2", "gRPC-like h2c POST to h2c backend (h2load, %d conns x %d streams)" % (
        H2_CLIENTS, H2_STREAMS)),
    ("large_body_h2", "h2large", "100 MB download over h2c (curl, sequential)"),
]

# metric id -> (label, unit format, direction). direction: "up" higher is better.
METRICS = {
    "rps": ("requests/s", "{:.0f}", "up"),
    "p50_ms": ("p50 latency ms", "{:.3f}", "down"),
    "p99_ms": ("p99 latency ms", "{:.3f}", "down"),
    "cpu_us_per_req": ("proxy CPU us/request", "{:.2f}", "down"),
    "proxy_busy_pct": ("proxy CPU busy % of one core", "{:.0f}", "info"),
    "backend_cpu_us_per_req": ("backend CPU us/request", "{:.2f}", "info"),
    "wrk_cpu_us_per_req": ("wrk CPU us/request", "{:.2f}", "info"),
    "socket_errors": ("wrk socket errors", "{:.0f}", "down"),
    "http_errors": ("responses >= 400", "{:.0f}", "down"),
    "rss_peak_kb": ("proxy RSS KiB under load", "{:.0f}", "down"),
    "gbps": ("Gbit/s", "{:.2f}", "up"),
    "pct_of_direct": ("% of direct (no proxy) Gbit/s", "{:.1f}", "up"),
    "cpu_s_per_gb": ("proxy CPU s/GB", "{:.3f}", "down"),
    "mb_per_s": ("MB/s", "{:.0f}", "up"),
    "failures": ("failed runs", "{:.0f}", "down"),
    "rss_rest_kb": ("proxy RSS KiB at rest (after start and one request)", "{:.0f}", "down"),
    "rss_idle_1000_kb": ("proxy RSS KiB with 1000 idle keep-alive clients", "{:.0f}", "down"),
    "kb_per_idle_conn": ("KiB per idle keep-alive client", "{:.2f}", "down"),
}

WRK_LUA = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCHJSON {\"requests\":%.0f,\"duration_us\":%.0f,\"bytes\":%.0f,\"connect\":%.0f," ..
    "\"read\":%.0f,\"write\":%.0f,\"status\":%.0f,\"timeout\":%.0f,\"p50_us\":%.0f," ..
    "\"p99_us\":%.0f,\"mean_us\":%.1f,\"max_us\":%.0f}\n",
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(99), latency.mean, latency.max))
end
"""


class BenchError(Exception):
    pass


class Interrupted(Exception):
    pass


def log(msg):
    print("[bench %s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


# ---------------------------------------------------------------- processes


_libc = ctypes.CDLL(None, use_errno=True)


def _child_setup():
    # PR_SET_PDEATHSIG = 1: the child gets SIGKILL if this script dies without cleaning up.
    _libc.prctl(1, signal.SIGKILL, 0, 0, 0)


class Procs:
    """Every long-running process this script started, stopped by PID in reverse order."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.items = []  # dicts: name, popen, log, extra_pids

    def start(self, name, argv, cpu=None):
        if cpu is not None:
            argv = ["taskset", "-c", str(cpu)] + argv
        logpath = os.path.join(self.tmp, name + ".log")
        f = open(logpath, "ab")
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                             preexec_fn=_child_setup, cwd=self.tmp)
        f.close()
        item = {"name": name, "popen": p, "log": logpath, "extra_pids": set()}
        self.items.append(item)
        return item

    def log_tail(self, item, n=30):
        try:
            with open(item["log"], "rb") as f:
                lines = f.read().decode("utf-8", "replace").splitlines()
            return "\n".join(lines[-n:])
        except OSError:
            return ""

    def stop(self, item, timeout=5.0):
        p = item["popen"]
        # Remember children (nginx workers) before the master goes away.
        item["extra_pids"].update(children_of(p.pid))
        if p.poll() is None:
            try:
                p.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        deadline = time.time() + timeout
        for pid in sorted(item["extra_pids"]):
            while pid_alive(pid) and time.time() < deadline:
                time.sleep(0.05)
            if pid_alive(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if item in self.items:
            self.items.remove(item)

    def stop_all(self):
        for item in list(reversed(self.items)):
            try:
                self.stop(item)
            except Exception as e:  # keep stopping the others
                log("stopping %s: %s" % (item["name"], e))


def pid_alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except (OSError, IndexError):
        return False


def children_of(pid):
    out = set()
    try:
        for tid in os.listdir("/proc/%d/task" % pid):
            try:
                with open("/proc/%d/task/%s/children" % (pid, tid)) as f:
                    out.update(int(x) for x in f.read().split())
            except OSError:
                pass
    except OSError:
        pass
    return out


def proc_pids(item):
    """PID of the process itself plus its direct children (nginx master + workers)."""
    pid = item["popen"].pid
    kids = children_of(pid)
    item["extra_pids"].update(kids)
    return [pid] + sorted(kids)


def cpu_seconds(pids):
    """utime+stime of all threads of the given processes, in seconds."""
    tck = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            with open("/proc/%d/stat" % pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total / tck


def rss_kb(pids):
    total = 0
    for pid in pids:
        try:
            with open("/proc/%d/status" % pid) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except (OSError, ValueError):
            pass
    return total


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, item, procs, timeout=10.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if item["popen"].poll() is not None:
            raise BenchError("%s exited with status %s while starting:\n%s" %
                             (item["name"], item["popen"].returncode, procs.log_tail(item)))
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise BenchError("%s: port %d not listening after %.0fs:\n%s" %
                     (item["name"], port, timeout, procs.log_tail(item)))


def run(argv, timeout, cpu=None):
    if cpu is not None:
        argv = ["taskset", "-c", str(cpu)] + argv
    try:
        r = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=timeout, preexec_fn=_child_setup)
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode("utf-8", "replace")
        return 124, out + "\n(timed out after %ss)" % timeout
    return r.returncode, r.stdout.decode("utf-8", "replace")


# ---------------------------------------------------------------- configs


def nginx_stream_support():
    """Return (load_module line or "", None) or (None, reason)."""
    rc, out = run(["nginx", "-V"], 10)
    if "--with-stream=dynamic" in out:
        for d in ("/usr/lib/nginx/modules", "/usr/share/nginx/modules"):
            so = os.path.join(d, "ngx_stream_module.so")
            if os.path.exists(so):
                return "load_module %s;" % so, None
        return None, "nginx stream module not installed (Debian: libnginx-mod-stream)"
    if re.search(r"--with-stream(\s|$)", out):
        return "", None
    return None, "nginx built without the stream module"


def nginx_common(tmp, name):
    user = "user root;" if os.geteuid() == 0 else ""
    temps = "\n".join("    %s_temp_path %s/%s-%s;" % (k, tmp, name, k)
                      for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return user, temps


def backend_conf(tmp, port, nofile):
    user, temps = nginx_common(tmp, "backend")
    return """# backend: fixed small body on /, a %d-byte file on /%s
%s
worker_processes 1;
pid %s/backend.pid;
error_log %s/backend-error.log warn;
events { worker_connections 10000; }
worker_rlimit_nofile %d;
http {
    access_log off;
%s
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    sendfile on;
    tcp_nopush on;
    server {
        listen 127.0.0.1:%d backlog=4096;
        location = /%s { root %s/www; default_type application/octet-stream; }
        location / { default_type text/plain; return 200 "%s"; }
    }
}
""" % (BIG_SIZE, BIG_NAME, user, tmp, tmp, nofile, temps, port, BIG_NAME, tmp,
       BODY.replace("\n", "\\n"))


def keel_conf(ports):
    return """# keel: one worker, no access log, same backends as HAProxy and nginx
workers: 1
log_level: warn
access_log: false
drain_timeout: 1s
admin:
  address: 127.0.0.1:%d
listeners:
  - name: http
    address: 127.0.0.1:%d
    protocol: http
    routes:
      - cluster: backend
    limits:
      max_connections: 20000
  - name: tcp
    address: 127.0.0.1:%d
    protocol: tcp
    cluster: iperf
    limits:
      max_connections: 20000
  # HTTP/2 clients use the http listener above (h2c prior knowledge); this one sends them
  # on to the h2c backend.
  - name: grpc
    address: 127.0.0.1:%d
    protocol: http
    routes:
      - cluster: backend_h2
    limits:
      max_connections: 20000
clusters:
  - name: backend
    endpoints: [127.0.0.1:%d]
    max_idle_per_endpoint: 1024
  - name: backend_h2
    protocol: h2
    endpoints: [127.0.0.1:%d]
  - name: iperf
    endpoints: [127.0.0.1:%d]
""" % (ports["keel_admin"], ports["keel_http"], ports["keel_tcp"], ports["keel_grpc"],
       ports["backend"], ports["backend_h2"], ports["iperf"])


def haproxy_conf(ports, nofile):
    return """# HAProxy: one thread, http mode, keep-alive and connection reuse to the backend, no log
global
    nbthread 1
    maxconn %d

defaults
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 60s
    backlog 4096

frontend http_in
    mode http
    option http-keep-alive
    option forwardfor
    bind 127.0.0.1:%d
    default_backend http_be

backend http_be
    mode http
    http-reuse always
    server b1 127.0.0.1:%d pool-max-conn 1024

listen tcp_in
    mode tcp
    timeout client 1h
    timeout server 1h
    bind 127.0.0.1:%d
    server t1 127.0.0.1:%d

frontend h2_in
    mode http
    option http-keep-alive
    option forwardfor
    bind 127.0.0.1:%d proto h2
    default_backend http_be

frontend grpc_in
    mode http
    option http-keep-alive
    option forwardfor
    bind 127.0.0.1:%d proto h2
    default_backend h2_be

backend h2_be
    mode http
    http-reuse always
    server b2 127.0.0.1:%d proto h2 pool-max-conn 1024
""" % (min(20000, (nofile - 200) // 2), ports["haproxy_http"], ports["backend"],
       ports["haproxy_tcp"], ports["iperf"], ports["haproxy_h2"], ports["haproxy_grpc"],
       ports["backend_h2"])


def nginx_proxy_conf(tmp, ports, stream_line, nofile):
    user, temps = nginx_common(tmp, "nginx")
    stream = ""
    if stream_line is not None:
        stream = """stream {
    server {
        listen 127.0.0.1:%d backlog=4096;
        proxy_pass 127.0.0.1:%d;
        proxy_timeout 1h;
    }
}
""" % (ports["nginx_tcp"], ports["iperf"])
    return """# nginx: one worker, upstream keepalive, no access log
%s
%s
worker_processes 1;
pid %s/nginx-proxy.pid;
error_log %s/nginx-error.log warn;
events { worker_connections 10000; }
worker_rlimit_nofile %d;
http {
    access_log off;
%s
    keepalive_requests 100000000;
    keepalive_timeout 60s;
    upstream http_be {
        server 127.0.0.1:%d;
        keepalive 1024;
        keepalive_requests 100000000;
        keepalive_timeout 60s;
    }
    server {
        listen 127.0.0.1:%d backlog=4096;
        location / {
            proxy_pass http://http_be;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_max_temp_file_size 0;
        }
    }
    # h2c clients (prior knowledge) to the HTTP/1.1 backend
    server {
        listen 127.0.0.1:%d backlog=4096 http2;
        http2_max_concurrent_streams 1024;
        location / {
            proxy_pass http://http_be;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_max_temp_file_size 0;
        }
    }
    # h2c clients to the h2c backend (nginx speaks HTTP/2 upstream only as grpc_pass)
    upstream h2_be {
        server 127.0.0.1:%d;
        keepalive 1024;
        keepalive_requests 100000000;
        keepalive_timeout 60s;
    }
    server {
        listen 127.0.0.1:%d backlog=4096 http2;
        http2_max_concurrent_streams 1024;
        location / {
            grpc_pass grpc://h2_be;
            grpc_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        }
    }
}
%s""" % (stream_line or "", user, tmp, tmp, nofile, temps, ports["backend"],
          ports["nginx_http"], ports["nginx_h2"], ports["backend_h2"], ports["nginx_grpc"],
          stream)


# ---------------------------------------------------------------- measurements


def http_get(port, path="/", timeout=5.0):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def run_wrk(port, conns, duration, close, cpu, threads, proxy_item, lua, backend_item):
    argv = ["wrk", "-t%d" % min(threads, conns), "-c%d" % conns, "-d%ds" % duration,
            "--timeout", "5s", "--latency", "-s", lua]
    if close:
        argv += ["-H", "Connection: close"]
    argv.append("http://127.0.0.1:%d/" % port)
    if cpu is not None:
        argv = ["taskset", "-c", str(cpu)] + argv
    pids = proc_pids(proxy_item)
    bpids = proc_pids(backend_item)
    cpu0 = cpu_seconds(pids)
    bcpu0 = cpu_seconds(bpids)
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.time()
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, preexec_fn=_child_setup)
    peak = 0
    try:
        deadline = time.time() + duration + 30
        while p.poll() is None and time.time() < deadline:
            peak = max(peak, rss_kb(pids))
            time.sleep(0.2)
        if p.poll() is None:
            p.kill()
        out = p.communicate(timeout=10)[0].decode("utf-8", "replace")
    finally:
        if p.poll() is None:  # interrupted: do not leave wrk behind
            p.kill()
            p.wait(5)
    cpu1 = cpu_seconds(pids)
    bcpu1 = cpu_seconds(bpids)
    wall = time.time() - t0
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    wcpu = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
    m = re.search(r"BENCHJSON (\{.*\})", out)
    if p.returncode != 0 or not m:
        return None, out
    d = json.loads(m.group(1))
    req = d["requests"]
    secs = d["duration_us"] / 1e6
    res = {
        "rps": req / secs if secs > 0 else 0.0,
        "p50_ms": d["p50_us"] / 1000.0,
        "p99_ms": d["p99_us"] / 1000.0,
        "cpu_us_per_req": (cpu1 - cpu0) * 1e6 / req if req else None,
        "proxy_busy_pct": 100.0 * (cpu1 - cpu0) / wall,
        "backend_cpu_us_per_req": (bcpu1 - bcpu0) * 1e6 / req if req else None,
        "wrk_cpu_us_per_req": wcpu * 1e6 / req if req else None,
        "socket_errors": d["connect"] + d["read"] + d["write"] + d["timeout"],
        "http_errors": d["status"],
        "rss_peak_kb": peak,
        "_raw": d,
    }
    return res, out


def idle_conns_rss(port, n, proxy_item):
    """Open n keep-alive client connections, one request each, and keep them idle.

    Returns (RSS KiB before, RSS KiB with the n idle connections open)."""
    pids = proc_pids(proxy_item)
    before = rss_kb(pids)
    req = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
    want = BODY.encode()
    socks = []
    try:
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", port), 5)
            socks.append(s)
            s.sendall(req)
            data = b""
            deadline = time.time() + 5
            while not data.endswith(want) and time.time() < deadline:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            if not data.endswith(want):
                raise BenchError("idle-connection test: bad answer %r" % data[:200])
        time.sleep(0.3)
        during = rss_kb(pids)
    finally:
        for s in socks:
            s.close()
    time.sleep(0.3)
    return before, during


def run_iperf3(port, duration, cpu, proxy_item=None, nbytes=None):
    argv = ["iperf3", "-c", "127.0.0.1", "-p", str(port), "-J", "--connect-timeout", "3000"]
    argv += ["-n", nbytes] if nbytes else ["-t", str(duration)]
    pids = proc_pids(proxy_item) if proxy_item else []
    cpu0 = cpu_seconds(pids)
    rc, out = run(argv, (duration or 5) + 30, cpu)
    cpu1 = cpu_seconds(pids)
    try:
        d = json.loads(out)
    except ValueError:
        return None, out
    if rc != 0 or "error" in d:
        return None, d.get("error", out)
    s = d["end"]["sum_received"]
    gb = s["bytes"] / 1e9
    return {
        "gbps": s["bits_per_second"] / 1e9,
        "bytes": s["bytes"],
        "cpu_s_per_gb": (cpu1 - cpu0) / gb if gb > 0 else None,
    }, ""


def run_large(port, count, cpu, proxy_item):
    pids = proc_pids(proxy_item)
    cpu0 = cpu_seconds(pids)
    total_bytes = 0
    total_time = 0.0
    for _ in range(count):
        rc, out = run(["curl", "-s", "-o", "/dev/null", "--max-time", "60", "-w",
                       "%{http_code} %{size_download} %{time_total}",
                       "http://127.0.0.1:%d/%s" % (port, BIG_NAME)], 70, cpu)
        parts = out.split()
        if rc != 0 or len(parts) != 3 or parts[0] != "200" or int(parts[1]) != BIG_SIZE:
            return None, "curl rc=%d: %s" % (rc, out.strip())
        total_bytes += int(parts[1])
        total_time += float(parts[2])
    cpu1 = cpu_seconds(pids)
    gb = total_bytes / 1e9
    return {
        "mb_per_s": total_bytes / 1e6 / total_time,
        "cpu_s_per_gb": (cpu1 - cpu0) / gb,
    }, ""


def run_h2load(port, duration, cpu, proxy_item, backend_item, tmp, grpc):
    """h2load over h2c (prior knowledge): H2_CLIENTS connections, H2_STREAMS streams each."""
    logf = os.path.join(tmp, "h2load-latency.log")
    argv = ["h2load", "-c%d" % H2_CLIENTS, "-m%d" % H2_STREAMS, "-t1", "-D", str(duration),
            "--warm-up-time=1", "--log-file=" + logf]
    if grpc:
        body = os.path.join(tmp, "grpc-body.bin")
        with open(body, "wb") as f:
            f.write(GRPC_BODY)
        argv += ["-d", body, "-H", "content-type: application/grpc", "-H", "te: trailers"]
    argv.append("http://127.0.0.1:%d/" % port)
    pids = proc_pids(proxy_item)
    bpids = proc_pids(backend_item)
    cpu0 = cpu_seconds(pids)
    bcpu0 = cpu_seconds(bpids)
    t0 = time.time()
    rc, out = run(argv, duration + 30, cpu)
    wall = time.time() - t0
    cpu1 = cpu_seconds(pids)
    bcpu1 = cpu_seconds(bpids)
    m = re.search(r"finished in ([0-9.]+)(m?s), ([0-9.]+) req/s", out)
    r = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                  r"(\d+) failed, (\d+) errored, (\d+) timeout", out)
    st = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    if rc != 0 or not m or not r or not st:
        return None, out
    ok = int(r.group(4))
    lat = []
    try:
        with open(logf) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3 and parts[1].startswith("2"):
                    lat.append(int(parts[2]))
    except OSError:
        pass
    finally:
        try:
            os.unlink(logf)
        except OSError:
            pass
    lat.sort()

    def pct(q):
        return lat[min(len(lat) - 1, int(q * len(lat)))] / 1000.0 if lat else None
    # h2load's CPU time window includes its warm-up second: count requests over the wall
    # time of the whole run for CPU per request (every request of the run went through).
    done = int(r.group(3))
    return {
        "rps": float(m.group(3)),
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "cpu_us_per_req": (cpu1 - cpu0) * 1e6 / done if done else None,
        "proxy_busy_pct": 100.0 * (cpu1 - cpu0) / wall,
        "backend_cpu_us_per_req": (bcpu1 - bcpu0) * 1e6 / done if done else None,
        "socket_errors": int(r.group(5)) + int(r.group(6)) + int(r.group(7)),
        "http_errors": int(st.group(3)) + int(st.group(4)),
        "_ok": ok,
    }, out


def check_h2(port, grpc):
    """One request over h2c through a proxy; None if it returned the backend's exact body,
    else a short reason."""
    argv = ["curl", "-s", "-S", "--http2-prior-knowledge", "--max-time", "10", "-o", "-",
            "-w", "\n%{http_code} %{http_version}"]
    if grpc:
        argv += ["-H", "content-type: application/grpc", "-H", "te: trailers",
                 "--data-binary", "@-"]
    argv.append("http://127.0.0.1:%d/" % port)
    try:
        r = subprocess.run(argv, input=GRPC_BODY if grpc else b"", stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=20, preexec_fn=_child_setup)
    except subprocess.TimeoutExpired:
        return "no answer over h2c within 20 s"
    out = r.stdout
    err = r.stderr.decode("utf-8", "replace").strip()
    if r.returncode != 0:
        return "h2c request failed: %s" % (err.splitlines()[-1] if err else "curl rc %d" %
                                            r.returncode)
    body, _, tail = out.rpartition(b"\n")
    code = tail.decode("utf-8", "replace").split()
    if len(code) != 2 or code[1] != "2":
        return "answered over HTTP/%s, not HTTP/2" % (code[1] if len(code) == 2 else "?")
    if code[0] != "200":
        return "h2c request got status %s" % code[0]
    if body.decode("utf-8", "replace") != BODY:
        return "h2c request got body %r, want the backend's" % body[:80]
    return None


def run_h2large(port, count, cpu, proxy_item):
    pids = proc_pids(proxy_item)
    cpu0 = cpu_seconds(pids)
    total_bytes = 0
    total_time = 0.0
    for _ in range(count):
        rc, out = run(["curl", "-s", "--http2-prior-knowledge", "-o", "/dev/null",
                       "--max-time", "60", "-w", "%{http_code} %{size_download} %{time_total}",
                       "http://127.0.0.1:%d/%s" % (port, BIG_NAME)], 70, cpu)
        parts = out.split()
        if rc != 0 or len(parts) != 3 or parts[0] != "200" or int(parts[1]) != BIG_SIZE:
            return None, "curl rc=%d: %s" % (rc, out.strip())
        total_bytes += int(parts[1])
        total_time += float(parts[2])
    cpu1 = cpu_seconds(pids)
    gb = total_bytes / 1e9
    return {
        "mb_per_s": total_bytes / 1e6 / total_time,
        "cpu_s_per_gb": (cpu1 - cpu0) / gb,
    }, ""


# ---------------------------------------------------------------- reporting


def summarize(values):
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals),
            "values": values}


def ratio(a, b):
    if a is None or b is None or b["median"] == 0:
        return None
    return a["median"] / b["median"]


def fmt(metric, s):
    if s is None:
        return "n/a"
    f = METRICS[metric][1]
    if s["min"] == s["max"]:
        return f.format(s["median"])
    return "%s (%s–%s)" % (f.format(s["median"]), f.format(s["min"]), f.format(s["max"]))


def machine_info():
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            mem = f.readline().split(":", 1)[1].strip()
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu_model": model, "kernel": platform.release(),
            "memory": mem, "hostname": socket.gethostname()}


def git_head():
    """Commit of the checkout, read from .git files (no git command)."""
    g = os.path.join(ROOT, ".git")
    try:
        with open(os.path.join(g, "HEAD")) as f:
            head = f.read().strip()
        if not head.startswith("ref: "):
            return head
        ref = head[5:]
        p = os.path.join(g, ref)
        if os.path.exists(p):
            with open(p) as f:
                return f.read().strip()
        with open(os.path.join(g, "packed-refs")) as f:
            for line in f:
                if line.strip().endswith(" " + ref):
                    return line.split()[0]
    except OSError:
        pass
    return "unknown"


def versions(keel):
    def first(argv):
        rc, out = run(argv, 10)
        lines = [l for l in out.splitlines() if l.strip()]
        return lines[0].strip() if lines else "unknown"
    return {
        "keel": "%s (commit %s, %s)" % (first([keel, "--version"]), git_head()[:12], keel),
        "haproxy": first(["haproxy", "-v"]),
        "nginx": first(["nginx", "-v"]),
        "wrk": first(["wrk", "-v"]),
        "iperf3": first(["iperf3", "-v"]),
        "curl": " ".join(first(["curl", "--version"]).split()[:2]),
        "h2load": first(["h2load", "--version"]),
    }


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "unknown"


def build_report(meta, raw, modes):
    """raw[mode][workload][metric][proxy] = list of per-round values."""
    out = {}
    for mode in modes:
        out[mode] = {}
        for wid, kind, desc in WORKLOADS:
            if kind == "unsupported":
                out[mode][wid] = {"description": desc, "status": "not supported yet",
                                  "reason": "keel has no HTTP/2 yet (nor TLS)"}
                continue
            w = {"description": desc, "status": "ok", "metrics": {}}
            for metric, per in raw[mode].get(wid, {}).items():
                m = {}
                for p in PROXIES + ["direct"]:
                    if p in per:
                        m[p] = summarize(per[p])
                m["ratio_keel_haproxy"] = ratio(m.get("keel"), m.get("haproxy"))
                m["ratio_keel_nginx"] = ratio(m.get("keel"), m.get("nginx"))
                w["metrics"][metric] = m
            if wid in meta.get("unavailable", {}).get(mode, {}):
                w["unavailable"] = meta["unavailable"][mode][wid]
            out[mode][wid] = w
    return out


def markdown(meta, report, modes):
    L = []
    L.append("# keel vs HAProxy vs nginx (loopback)")
    L.append("")
    L.append("- date: %s" % meta["date"])
    mi = meta["machine"]
    L.append("- machine: %s, %d CPUs, kernel %s, %s RAM" % (mi["cpu_model"], mi["nproc"],
                                                            mi["kernel"], mi["memory"]))
    L.append("- versions: " + "; ".join("%s" % v for v in meta["versions"].values()))
    c = meta["config"]
    L.append("- run: %s mode, %d round(s), wrk %ss per run, iperf3 %ss, %d x 100 MB per "
             "large-body run; figures are median (min–max) over rounds; ratios are "
             "median/median" % ("short" if c["short"] else "full", c["rounds"],
                                c["duration"], c["tcp_duration"], c["large_count"]))
    L.append("- load average (1/5/15 min) before, at each round, after: %s; %s; %s" % (
        meta["loadavg_before"], "; ".join(meta.get("loadavg_rounds", [])),
        meta.get("loadavg_after", "?")))
    for n in meta["notes"]:
        L.append("- note: %s" % n)
    for mode in modes:
        L.append("")
        if mode == "pinned":
            L.append("## pinned: proxy on CPU 0, load generator and backends on CPU 1")
        else:
            L.append("## unpinned: no CPU affinity")
        L.append("")
        L.append("| workload | figure | keel | HAProxy | nginx | keel/HAProxy | keel/nginx |")
        L.append("|---|---|---|---|---|---|---|")
        for wid, kind, desc in WORKLOADS:
            w = report[mode][wid]
            if w["status"] != "ok":
                L.append("| %s | %s | %s | | | | |" % (desc, w["status"], w["reason"]))
                continue
            errs = {}
            for metric, m in w["metrics"].items():
                if metric in ("socket_errors", "http_errors"):
                    for p in PROXIES:
                        if m.get(p):
                            errs.setdefault(p, {})[metric] = sum(
                                v for v in m[p]["values"] if v is not None)
                    continue
                if metric == "failures" and not any(
                        s and s["max"] for s in (m.get(p) for p in PROXIES)):
                    continue  # no failed run: keep the table short (the JSON has the zeros)
                label, _, direction = METRICS[metric]
                arrow = {"up": "↑", "down": "↓"}.get(direction, "(diagnostic)")
                r1 = m["ratio_keel_haproxy"]
                r2 = m["ratio_keel_nginx"]
                extra = ""
                if "direct" in m:
                    extra = " (direct: %s)" % fmt(metric, m["direct"])
                L.append("| %s | %s %s%s | %s | %s | %s | %s | %s |" % (
                    desc, label, arrow, extra, fmt(metric, m.get("keel")),
                    fmt(metric, m.get("haproxy")), fmt(metric, m.get("nginx")),
                    "%.2f" % r1 if r1 is not None else "–",
                    "%.2f" % r2 if r2 is not None else "–"))
            if errs:
                tool = "h2load" if kind == "h2" else "wrk"
                L.append("| %s | %s errors: socket / responses >= 400, sum over rounds ↓ | %s |"
                         " – | – |" % (desc, tool, " | ".join(
                             "%d / %d" % (errs[p]["socket_errors"], errs[p]["http_errors"])
                             if p in errs else "n/a" for p in PROXIES)))
            una = w.get("unavailable", {})
            if una:
                L.append("| %s | not measured | %s | – | – |" % (desc, " | ".join(
                    "n/a (%s)" % una[p].replace("|", "/") if p in una else ""
                    for p in PROXIES)))
    L.append("")
    L.append("↑ higher is better, ↓ lower is better. CPU is utime+stime of all proxy threads "
             "and processes (nginx master+worker) from /proc/<pid>/stat over the run; RSS is "
             "VmRSS summed over the proxy's processes.")
    return "\n".join(L) + "\n"


# ---------------------------------------------------------------- main


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--keel", default=os.path.join(ROOT, "build-bench", "keel"))
    ap.add_argument("--short", action="store_true", help="under 2 minutes: pinned, 2 rounds")
    ap.add_argument("--rounds", type=int)
    ap.add_argument("--duration", type=int, help="seconds per wrk run")
    ap.add_argument("--modes", help="comma list of pinned,unpinned")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("--note", action="append", default=[], help="add a note to the report")
    ap.add_argument("--out", default=RESULTS, help="directory for latest.md / latest.json")
    ap.add_argument("--workloads", help="comma list of workload ids to run (default: all): " +
                    ",".join(w[0] for w in WORKLOADS))
    a = ap.parse_args()
    if a.workloads:
        known = [w[0] for w in WORKLOADS]
        bad = [w for w in a.workloads.split(",") if w not in known]
        if bad:
            ap.error("unknown workload(s) %s; known: %s" % (",".join(bad), ",".join(known)))
        WORKLOADS[:] = [w for w in WORKLOADS if w[0] in a.workloads.split(",")]

    short = a.short
    rounds = a.rounds or (2 if short else 3)
    duration = a.duration or (2 if short else 8)
    tcp_duration = 2 if short else 5
    large_count = 3 if short else 5
    modes = (a.modes or ("pinned" if short else "pinned,unpinned")).split(",")
    for m in modes:
        if m not in ("pinned", "unpinned"):
            ap.error("unknown mode %r" % m)
    if not (1 <= rounds <= 20 and 1 <= duration <= 120):
        ap.error("rounds must be 1..20 and duration 1..120")
    if (os.cpu_count() or 1) < 2 and "pinned" in modes:
        ap.error("pinned mode needs at least 2 CPUs")
    for tool in ("haproxy", "nginx", "wrk", "iperf3", "curl", "taskset", "h2load", "nghttpd"):
        if not shutil.which(tool):
            raise BenchError("%s not found: run tests/bench/run.sh, which installs it" % tool)
    if not os.access(a.keel, os.X_OK):
        raise BenchError("keel binary %s not found: run tests/bench/run.sh" % a.keel)

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 45000 if hard == resource.RLIM_INFINITY else min(hard, 45000)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    if want < 5000:
        raise BenchError("open-file limit %d too low for 1000 connections" % want)

    tmp = tempfile.mkdtemp(prefix="keel-bench-")
    procs = Procs(tmp)

    def on_signal(signum, frame):
        raise Interrupted("signal %d" % signum)

    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, on_signal)

    meta = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": machine_info(),
        "versions": versions(a.keel),
        "config": {"short": short, "rounds": rounds, "duration": duration,
                   "tcp_duration": tcp_duration, "large_count": large_count, "modes": modes,
                   "wrk_threads": {"pinned": 1, "unpinned": 2}},
        "loadavg_before": loadavg(),
        "notes": list(a.note),
        "unavailable": {},
    }
    t_start = time.time()
    try:
        raw = bench(a, meta, procs, tmp, modes, rounds, duration, tcp_duration, large_count)
    except Interrupted as e:
        log("interrupted (%s), stopping everything" % e)
        procs.stop_all()
        return 130
    except BenchError as e:
        procs.stop_all()
        log("FAILED: %s" % e)
        log("logs kept in %s" % tmp)
        return 1
    finally:
        procs.stop_all()
    meta["loadavg_after"] = loadavg()
    meta["elapsed_s"] = round(time.time() - t_start, 1)
    report = build_report(meta, raw, modes)
    md = markdown(meta, report, modes)
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "latest.md"), "w") as f:
        f.write(md)
    with open(os.path.join(a.out, "latest.json"), "w") as f:
        json.dump({"meta": meta, "results": report}, f, indent=2, sort_keys=False)
        f.write("\n")
    print(md)
    log("done in %.0fs; wrote %s/latest.md and latest.json" % (meta["elapsed_s"], a.out))
    if not a.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        log("temporary files kept in %s" % tmp)
    return 0


def bench(a, meta, procs, tmp, modes, rounds, duration, tcp_duration, large_count):
    os.makedirs(os.path.join(tmp, "www"))
    with open(os.path.join(tmp, "www", BIG_NAME), "wb") as f:
        f.truncate(BIG_SIZE)
    lua = os.path.join(tmp, "report.lua")
    with open(lua, "w") as f:
        f.write(WRK_LUA)
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    stream_line, stream_why = nginx_stream_support()
    if stream_why:
        meta["notes"].append("nginx TCP not measured: " + stream_why)

    raw = {}
    for mode in modes:
        pinned = mode == "pinned"
        pcpu = 0 if pinned else None  # proxy
        lcpu = 1 if pinned else None  # load generators and backends
        threads = 1 if pinned else 2
        names = ("backend", "backend_h2", "iperf", "keel_admin", "keel_http", "keel_tcp",
                 "keel_grpc", "haproxy_http", "haproxy_tcp", "haproxy_h2", "haproxy_grpc",
                 "nginx_http", "nginx_tcp", "nginx_h2", "nginx_grpc")
        ports = {n: free_port() for n in names}
        log("mode %s: ports %s" % (mode, ports))

        # Backends.
        bconf = os.path.join(tmp, "backend-%s.conf" % mode)
        with open(bconf, "w") as f:
            f.write(backend_conf(tmp, ports["backend"], nofile))
        backend = procs.start("backend-" + mode, ["nginx", "-p", tmp, "-e",
                                                  os.path.join(tmp, "backend-error.log"),
                                                  "-c", bconf, "-g", "daemon off;"], lcpu)
        wait_port(ports["backend"], backend, procs)
        st, body = http_get(ports["backend"])
        if st != 200 or body.decode() != BODY:
            raise BenchError("backend answered %d %r" % (st, body[:100]))
        # h2c backend for the h2 -> h2 workload: nghttpd serves the same body for any method
        # and reads a request's body before it answers, as a gRPC server does (an nginx
        # "return 200" answers first, which nginx's own grpc_pass then reports as errors).
        h2www = os.path.join(tmp, "h2www")
        os.makedirs(h2www, exist_ok=True)
        with open(os.path.join(h2www, "index.html"), "w") as f:
            f.write(BODY)
        backend_h2 = None
        if any(w[0] == "grpc_h2" for w in WORKLOADS):
            backend_h2 = procs.start("backend-h2-" + mode, [
                "nghttpd", "--no-tls", "-a", "127.0.0.1", "-m", "1024", "-d", h2www,
                str(ports["backend_h2"])], lcpu)
            wait_port(ports["backend_h2"], backend_h2, procs)
        iperf = procs.start("iperf3-" + mode, ["iperf3", "-s", "-B", "127.0.0.1", "-p",
                                               str(ports["iperf"])], lcpu)
        wait_port(ports["iperf"], iperf, procs)
        time.sleep(0.3)  # the probe connection above must be gone before the first test

        # Proxies.
        kconf = os.path.join(tmp, "keel-%s.yaml" % mode)
        with open(kconf, "w") as f:
            f.write(keel_conf(ports))
        rc, out = run([a.keel, "--check", kconf], 10)
        if rc != 0:
            raise BenchError("keel --check failed:\n" + out)
        hconf = os.path.join(tmp, "haproxy-%s.cfg" % mode)
        with open(hconf, "w") as f:
            f.write(haproxy_conf(ports, nofile))
        rc, out = run(["haproxy", "-c", "-f", hconf], 10)
        if rc != 0:
            raise BenchError("haproxy -c failed:\n" + out)
        nconf = os.path.join(tmp, "nginx-%s.conf" % mode)
        with open(nconf, "w") as f:
            f.write(nginx_proxy_conf(tmp, ports, stream_line, nofile))
        nerr = os.path.join(tmp, "nginx-error.log")
        rc, out = run(["nginx", "-t", "-p", tmp, "-e", nerr, "-c", nconf], 10)
        if rc != 0:
            raise BenchError("nginx -t failed:\n" + out)

        items = {
            "keel": procs.start("keel-" + mode, [a.keel, "-c", kconf], pcpu),
            "haproxy": procs.start("haproxy-" + mode, ["haproxy", "-db", "-f", hconf], pcpu),
            "nginx": procs.start("nginx-" + mode, ["nginx", "-p", tmp, "-e", nerr, "-c", nconf,
                                                   "-g", "daemon off;"], pcpu),
        }
        http_port = {p: ports[p + "_http"] for p in PROXIES}
        tcp_port = {p: ports[p + "_tcp"] for p in PROXIES}
        has_tcp = {p: True for p in PROXIES}
        if stream_line is None:
            has_tcp["nginx"] = False
            meta["unavailable"].setdefault(mode, {}).setdefault("tcp_iperf3", {})["nginx"] = \
                stream_why
        for p in PROXIES:
            wait_port(http_port[p], items[p], procs)
            if has_tcp[p]:
                wait_port(tcp_port[p], items[p], procs)

        # Check that each proxy really proxies, before measuring anything.
        for p in PROXIES:
            try:
                st, body = http_get(http_port[p])
            except OSError as e:
                raise BenchError("%s does not proxy HTTP: %s\n%s" %
                                 (p, e, procs.log_tail(items[p])))
            if st != 200 or body.decode("utf-8", "replace") != BODY:
                raise BenchError("%s does not proxy HTTP: got %d %r, want 200 %r\n%s" %
                                 (p, st, body[:200], BODY, procs.log_tail(items[p])))
            if has_tcp[p]:
                # A test without error proves both directions: the iperf3 control connection
                # (cookie, parameters, results) and the data connection went through the
                # proxy. The received count of an -n test is not checked: iperf3 stops
                # counting when the sender is done, so bytes still in flight are missed (seen
                # as 0 with HAProxy as well as keel).
                r, err = run_iperf3(tcp_port[p], None, lcpu, None, nbytes="1M")
                if r is None:
                    raise BenchError("%s does not proxy TCP to iperf3: %s\n%s" %
                                     (p, err, procs.log_tail(items[p])))
        r, err = run_iperf3(ports["iperf"], None, lcpu, None, nbytes="1M")
        if r is None:
            raise BenchError("iperf3 direct check failed: %s" % err)
        log("mode %s: all three proxies return the backend's body and carry TCP" % mode)
        # HTTP/2: a proxy that does not pass this check is reported "n/a (reason)" for the
        # workload instead of stopping the benchmark (keel's HTTP/2 is still landing).
        h2_port = {"keel": ports["keel_http"], "haproxy": ports["haproxy_h2"],
                   "nginx": ports["nginx_h2"]}
        grpc_port = {"keel": ports["keel_grpc"], "haproxy": ports["haproxy_grpc"],
                     "nginx": ports["nginx_grpc"]}
        h2_kinds = [w for w in WORKLOADS if w[1] in ("h2", "h2large")]
        una = meta["unavailable"].setdefault(mode, {})
        for p in PROXIES if h2_kinds else []:
            for port in (h2_port[p], grpc_port[p]):
                wait_port(port, items[p], procs)
            why = check_h2(h2_port[p], False)
            why_grpc = check_h2(grpc_port[p], True)
            for wid, kind, _ in h2_kinds:
                w_why = why_grpc if wid == "grpc_h2" else why
                if w_why:
                    una.setdefault(wid, {})[p] = w_why
                    log("mode %s: %s not measured for %s: %s" % (mode, wid, p, w_why))

        R = raw[mode] = {}

        def add(wid, metric, proxy, value):
            R.setdefault(wid, {}).setdefault(metric, {}).setdefault(proxy, []).append(value)

        time.sleep(0.5)
        want_memory = any(w[0] == "memory" for w in WORKLOADS)
        for p in PROXIES if want_memory else []:
            add("memory", "rss_rest_kb", p, rss_kb(proc_pids(items[p])))
        # Idle connections on the fresh processes (later rounds would only reuse what the
        # allocator kept from the load runs).
        for p in PROXIES if want_memory else []:
            before, during = idle_conns_rss(http_port[p], 1000, items[p])
            add("memory", "rss_idle_1000_kb", p, during)
            add("memory", "kb_per_idle_conn", p, (during - before) / 1000.0)
            log("%s %s 1000 idle clients: RSS %d -> %d KiB" % (mode, p, before, during))

        # Warm-up (not recorded): a short keep-alive run through each proxy.
        for p in PROXIES:
            res, out = run_wrk(http_port[p], 50, 1, False, lcpu, threads, items[p], lua,
                               backend)
            if res is None:
                raise BenchError("%s: warm-up wrk failed:\n%s" % (p, out[-2000:]))

        for rnd in range(rounds):
            meta.setdefault("loadavg_rounds", []).append("%s round %d: %s" % (
                mode, rnd + 1, loadavg()))
            for wi, (wid, kind, desc) in enumerate(WORKLOADS):
                if kind == "unsupported":
                    continue
                if kind == "memory":
                    continue
                skip = meta["unavailable"].get(mode, {}).get(wid, {})
                k = (rnd + wi) % len(PROXIES)
                order = PROXIES[k:] + PROXIES[:k]
                if kind == "tcp":
                    r, err = run_iperf3(ports["iperf"], tcp_duration, lcpu)
                    direct = r["gbps"] if r else None
                    if r is None:
                        log("direct iperf3 failed: %s" % err)
                    add(wid, "gbps", "direct", direct)
                for p in order:
                    for it in PROXIES:  # a proxy that died is a finding, not a hang
                        if items[it]["popen"].poll() is not None:
                            raise BenchError("%s exited (status %s) during the run:\n%s" % (
                                it, items[it]["popen"].returncode, procs.log_tail(items[it])))
                    if kind == "wrk":
                        conns = 1000 if wid.endswith("_1000") else 50
                        close = "close" in wid
                        res, out = run_wrk(http_port[p], conns, duration, close, lcpu, threads,
                                           items[p], lua, backend)
                        if res is None:
                            log("%s %s round %d: wrk failed:\n%s" % (p, wid, rnd + 1,
                                                                     out[-1500:]))
                            add(wid, "failures", p, 1)
                            continue
                        add(wid, "failures", p, 0)
                        for metric in ("rps", "p50_ms", "p99_ms", "cpu_us_per_req",
                                       "proxy_busy_pct", "backend_cpu_us_per_req",
                                       "wrk_cpu_us_per_req", "socket_errors", "http_errors"):
                            add(wid, metric, p, res[metric])
                        if conns == 1000:
                            add(wid, "rss_peak_kb", p, res["rss_peak_kb"])
                        if res["socket_errors"] or res["http_errors"]:
                            log("%s %s round %d: %d socket errors, %d responses >= 400 (%s)" % (
                                p, wid, rnd + 1, res["socket_errors"], res["http_errors"],
                                {k2: res["_raw"][k2] for k2 in ("connect", "read", "write",
                                                                 "timeout", "status")}))
                        log("%s %s %s round %d: %.0f req/s p99 %.2f ms cpu %.1f us/req" % (
                            mode, p, wid, rnd + 1, res["rps"], res["p99_ms"],
                            res["cpu_us_per_req"] or 0))
                    elif kind == "tcp":
                        if not has_tcp[p]:
                            continue
                        r, err = run_iperf3(tcp_port[p], tcp_duration, lcpu, items[p])
                        if r is None:
                            log("%s tcp round %d: iperf3 failed: %s" % (p, rnd + 1, err))
                            add(wid, "failures", p, 1)
                            continue
                        add(wid, "failures", p, 0)
                        add(wid, "gbps", p, r["gbps"])
                        add(wid, "pct_of_direct", p,
                            100.0 * r["gbps"] / direct if direct else None)
                        add(wid, "cpu_s_per_gb", p, r["cpu_s_per_gb"])
                        log("%s %s tcp round %d: %.2f Gbit/s (direct %.2f) cpu %.3f s/GB" % (
                            mode, p, rnd + 1, r["gbps"], direct or 0, r["cpu_s_per_gb"] or 0))
                    elif kind == "h2":
                        if p in skip:
                            continue
                        port = (grpc_port if wid == "grpc_h2" else h2_port)[p]
                        res, out = run_h2load(port, duration, lcpu, items[p],
                                              backend_h2 if wid == "grpc_h2" else backend,
                                              tmp, wid == "grpc_h2")
                        if res is None or not res["_ok"]:
                            log("%s %s round %d: h2load failed:\n%s" % (p, wid, rnd + 1,
                                                                        out[-1500:]))
                            add(wid, "failures", p, 1)
                            continue
                        add(wid, "failures", p, 0)
                        for metric in ("rps", "p50_ms", "p99_ms", "cpu_us_per_req",
                                       "proxy_busy_pct", "backend_cpu_us_per_req",
                                       "socket_errors", "http_errors"):
                            add(wid, metric, p, res[metric])
                        log("%s %s %s round %d: %.0f req/s p99 %s ms cpu %.1f us/req" % (
                            mode, p, wid, rnd + 1, res["rps"],
                            "%.2f" % res["p99_ms"] if res["p99_ms"] is not None else "?",
                            res["cpu_us_per_req"] or 0))
                    elif kind == "h2large":
                        if p in skip:
                            continue
                        r, err = run_h2large(h2_port[p], large_count, lcpu, items[p])
                        if r is None:
                            log("%s h2 large body round %d: %s" % (p, rnd + 1, err))
                            add(wid, "failures", p, 1)
                            continue
                        add(wid, "failures", p, 0)
                        add(wid, "mb_per_s", p, r["mb_per_s"])
                        add(wid, "cpu_s_per_gb", p, r["cpu_s_per_gb"])
                        log("%s %s h2 large round %d: %.0f MB/s cpu %.3f s/GB" % (
                            mode, p, rnd + 1, r["mb_per_s"], r["cpu_s_per_gb"]))
                    elif kind == "large":
                        r, err = run_large(http_port[p], large_count, lcpu, items[p])
                        if r is None:
                            log("%s large body round %d: %s" % (p, rnd + 1, err))
                            add(wid, "failures", p, 1)
                            continue
                        add(wid, "failures", p, 0)
                        add(wid, "mb_per_s", p, r["mb_per_s"])
                        add(wid, "cpu_s_per_gb", p, r["cpu_s_per_gb"])
                        log("%s %s large round %d: %.0f MB/s cpu %.3f s/GB" % (
                            mode, p, rnd + 1, r["mb_per_s"], r["cpu_s_per_gb"]))
        # The memory row goes with the idle-connection figures, at the top of the table.

        for p in PROXIES:
            if items[p]["popen"].poll() is not None:
                raise BenchError("%s exited (status %s) during the run:\n%s" % (
                    p, items[p]["popen"].returncode, procs.log_tail(items[p])))
            procs.stop(items[p])
        procs.stop(iperf)
        procs.stop(backend)
        if backend_h2:
            procs.stop(backend_h2)
    return raw


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as e:
        log("FAILED: %s" % e)
        sys.exit(1)
