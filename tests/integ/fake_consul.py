#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Fake Consul HTTP API (agent, health, catalog, blocking queries, ACL, faults) for tests.

Usage as a process:
    fake_consul.py --port P [--host 127.0.0.1] [--acl-token T] [--datacenter dc1]
                   [--verbose]
prints "ready <port>" on stdout once listening (--port 0 picks a free port) and stops
cleanly on SIGTERM/SIGINT (waiting blocking queries are answered, hung ones closed).

Usage as a module:
    fc = FakeConsul(acl_token=None).start()      # own thread, fc.port
    c = fc.client()                               # ConsulClient over HTTP (agent + control)
    fc.fault("500", path="/v1/health/service/web", count=2); fc.stop()

Consul API modelled (one datacenter, several nodes, state in memory, one raft-like index
bumped once per write that changes something; idempotent writes bump nothing):
  PUT /v1/agent/service/register[?node=N&node_address=IP]   (node params: fake-only)
  PUT /v1/agent/service/deregister/<id>
  PUT /v1/agent/check/pass|warn|fail/<check-id>?note=     PUT /v1/agent/check/update/<id>
  PUT /v1/agent/service/maintenance/<id>?enable=&reason=  PUT /v1/agent/maintenance?enable=
  GET /v1/agent/services, /v1/agent/checks, /v1/status/leader
  GET /v1/health/service/<name>?passing&tag=..&dc=&ns=&partition=&index=&wait=&stale|consistent
  GET /v1/catalog/services, /v1/catalog/service/<name>     (blocking the same way)
Agent endpoints act on node "node1" unless ?node= names another node (fake-only); a check
or service ID that exists on exactly one node is found without ?node=.

Control API (fake-only, never needs a token):
  GET  /_fake/state                       JSON dump (nodes, services, checks, indexes, faults)
  GET  /_fake/requests[?path=P&since=SEQ] request log (seq, t, method, path, query, params,
                                          headers, conn, fault, status, index, duration)
  DELETE /_fake/requests                  clear the log (PUT /_fake/requests/clear too)
  PUT  /_fake/fault?mode=M[&path=P][&count=N][&ms=MS][&status=S]
         M: 500 | hang | garbage | wrongtype | index_backwards | reset | slow_ms
         path: URL-path prefix (default: every /v1/ request); count: next N matching
         requests (default: until cleared); ms: for slow_ms; status: for 500 (default 500)
  GET  /_fake/fault                       active faults
  DELETE /_fake/fault[?path=P]            clear faults (all, or those with that path)
  PUT  /_fake/serf/<node>?status=critical|passing
  PUT  /_fake/check/<check-id>?status=S[&output=O][&node=N]   any check, any type
  PUT  /_fake/patch/<service-id>[?node=N] JSON {"Service": {...}, "Node": {...},
         "Checks": [...]}: merged into that entry's rendered JSON (null deletes a key);
         bumps the index. DELETE removes the patch.
  PUT  /_fake/rebase?by=N                 every reported index drops by N (min 1), like a
                                          Consul restored from an old snapshot
  PUT  /_fake/reset                       back to the boot state (log and faults cleared)
  GET  /_fake/index/<service>             {"index": current X-Consul-Index of that view}
"""

import argparse
import copy
import http.client
import json
import random
import re
import signal
import socket
import struct
import sys
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DEFAULT_NODE = "node1"
DEFAULT_ADDRESS = "127.0.0.1"
MAX_WAIT = 600.0       # Consul caps wait at 10 minutes
DEFAULT_WAIT = 300.0   # and defaults to 5 minutes
JITTER_FRACTION = 16   # random extra wait in [0, wait/16)
FAULT_MODES = ("500", "hang", "garbage", "wrongtype", "index_backwards", "reset", "slow_ms")
MAINT_SERVICE_PREFIX = "_service_maintenance:"
MAINT_NODE = "_node_maintenance"
SERF = "serfHealth"
_UNITS = {"ns": 1e-9, "us": 1e-6, "\u00b5s": 1e-6, "\u03bcs": 1e-6, "ms": 1e-3, "s": 1.0,
          "m": 60.0, "h": 3600.0}
_DUR_RX = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)")


class ApiError(Exception):
    """An answer other than 200: status and text body (as Consul's text/plain errors)."""

    def __init__(self, status, text):
        super().__init__(text)
        self.status = status
        self.text = text


def parse_duration(s):
    """Go time.ParseDuration: '10s', '1m30s', '250ms', '0'. Returns seconds; ValueError."""
    if not isinstance(s, str) or not s:
        raise ValueError("empty duration")
    sign = 1.0
    if s[0] in "+-":
        sign = -1.0 if s[0] == "-" else 1.0
        s = s[1:]
    if s == "0":
        return 0.0
    total, pos = 0.0, 0
    while pos < len(s):
        m = _DUR_RX.match(s, pos)
        if not m:
            raise ValueError("invalid duration %r" % s)
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos == 0:
        raise ValueError("invalid duration")
    return sign * total


def blocking_timeout(wait_s):
    """Consul's hold time for a blocking query: wait (<= 0: 5m, capped at 10m) plus a
    random stagger in [0, wait/16)."""
    if wait_s <= 0:
        wait_s = DEFAULT_WAIT
    wait_s = min(wait_s, MAX_WAIT)
    return wait_s + random.random() * (wait_s / JITTER_FRACTION)


def bool_param(params, name):
    """Consul's getBoolQueryParam: absent False, '' True, else strconv.ParseBool."""
    if name not in params:
        return False
    v = params[name][-1]
    if v == "":
        return True
    if v in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if v in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise ApiError(400, "Invalid value for ?%s" % name)


def _norm_keys(d):
    """Case-insensitive field lookup like Go's encoding/json: {'lower': (Key, value)}."""
    return {k.lower().replace("_", ""): v for k, v in d.items()} if isinstance(d, dict) else {}


def _same(a, b):
    """Equal ignoring CreateIndex/ModifyIndex and private keys."""
    def strip(x):
        return {k: v for k, v in x.items()
                if k not in ("CreateIndex", "ModifyIndex") and not k.startswith("_")}
    return strip(a) == strip(b)


def _merge(target, patch):
    for k, v in patch.items():
        if v is None:
            target.pop(k, None)
        else:
            target[k] = v


class ConsulState:
    """The catalog, health checks, indexes, faults and request log, behind one lock."""

    def __init__(self, datacenter="dc1", acl_token=None):
        self.datacenter = datacenter
        self.acl_token = acl_token
        self.cond = threading.Condition(threading.RLock())
        self.stopping = False
        self.in_flight = 0  # API requests between their log entry and their answer
        self.requests = []
        self.req_seq = 0
        self.t0 = time.monotonic()
        self._boot()

    # -- boot / index bookkeeping ---------------------------------------------------------
    def _boot(self):
        with self.cond:
            self.index = 4              # real servers start at a small non-zero index
            self.nodes = {}             # name -> Node JSON
            self.services = {}          # (node, id) -> NodeService JSON (+ "_node")
            self.checks = {}            # (node, check id) -> HealthCheck JSON (+ "_ttl")
            self.ttl_deadline = {}      # (node, check id) -> monotonic deadline
            self.svc_index = {}         # service name -> index of its health view
            self.services_index = 1     # catalog "services" table index
            self.faults = []
            self.fault_seq = 0
            self.patches = {}           # (node, id) -> patch dict
            self.offset = 0             # /_fake/rebase
            self.last_reported = {}     # view -> last index reported
            idx = self._bump()
            self._ensure_node(DEFAULT_NODE, DEFAULT_ADDRESS, idx)
            self.services[(DEFAULT_NODE, "consul")] = self._service_json(
                {"ID": "consul", "Service": "consul", "Port": 8300}, idx)
            self.services[(DEFAULT_NODE, "consul")]["_node"] = DEFAULT_NODE
            self.svc_index["consul"] = idx
            self.services_index = idx
            self.cond.notify_all()

    def _bump(self):
        self.index += 1
        return self.index

    def _changed(self, idx, names=(), services_table=False):
        for n in names:
            self.svc_index[n] = idx
        if services_table:
            self.services_index = idx
        self.cond.notify_all()

    def _report(self, raw):
        return max(1, raw - self.offset)

    def view_index(self, view):
        """Current (reported) index of a view: ('health', name) or ('catalog', None)."""
        kind, name = view
        if kind == "catalog":
            raw = self.services_index
        else:
            raw = self.svc_index.get(name, self.services_index)
        return self._report(raw)

    def _names_on_node(self, node):
        return {s["Service"] for (n, _), s in self.services.items() if n == node}

    # -- nodes --------------------------------------------------------------------------
    def _ensure_node(self, name, address, idx):
        """Creates the node (with serfHealth) or updates its address; returns True if
        anything changed."""
        node = self.nodes.get(name)
        if node is not None:
            if address is None or node["Address"] == address:
                return False
            node["Address"] = address
            node["TaggedAddresses"] = self._tagged(address)
            node["ModifyIndex"] = idx
            return True
        self.nodes[name] = {
            "ID": str(uuid.uuid5(uuid.NAMESPACE_DNS, "fake-consul-" + name)),
            "Node": name, "Address": address or DEFAULT_ADDRESS,
            "Datacenter": self.datacenter,
            "TaggedAddresses": self._tagged(address or DEFAULT_ADDRESS),
            "Meta": {"consul-network-segment": ""},
            "CreateIndex": idx, "ModifyIndex": idx}
        self.checks[(name, SERF)] = self._check_json(
            name, SERF, "Serf Health Status", "passing", output="Agent alive and reachable",
            idx=idx)
        return True

    @staticmethod
    def _tagged(addr):
        return {"lan": addr, "lan_ipv4": addr, "wan": addr, "wan_ipv4": addr}

    def _check_json(self, node, cid, name, status, notes="", output="", svc=None, ctype="",
                    interval="", timeout="", idx=0):
        return {"Node": node, "CheckID": cid, "Name": name, "Status": status,
                "Notes": notes, "Output": output,
                "ServiceID": svc["ID"] if svc else "",
                "ServiceName": svc["Service"] if svc else "",
                "ServiceTags": list(svc["Tags"]) if svc else [],
                "Type": ctype, "Interval": interval, "Timeout": timeout, "ExposedPort": 0,
                "Definition": {}, "CreateIndex": idx, "ModifyIndex": idx}

    def _service_json(self, f, idx):
        return {"ID": f["ID"], "Service": f["Service"], "Tags": f.get("Tags") or [],
                "Address": f.get("Address", ""), "TaggedAddresses": f.get("TaggedAddresses"),
                "Meta": f.get("Meta") or {}, "Port": f.get("Port", 0),
                "Weights": f.get("Weights") or {"Passing": 1, "Warning": 1},
                "EnableTagOverride": bool(f.get("EnableTagOverride", False)),
                "Proxy": {"Mode": "", "MeshGateway": {}, "Expose": {}}, "Connect": {},
                "CreateIndex": idx, "ModifyIndex": idx}

    def _resolve(self, table, key_id, node):
        """(node, id) for an agent call: explicit node, else node1, else the only match."""
        if node:
            return (node, key_id) if (node, key_id) in table else None
        if (DEFAULT_NODE, key_id) in table:
            return (DEFAULT_NODE, key_id)
        hits = [k for k in table if k[1] == key_id]
        return hits[0] if len(hits) == 1 else None

    # -- agent: register / deregister ------------------------------------------------------
    def register(self, body, node=None, node_address=None):
        if not isinstance(body, dict):
            raise ApiError(400, "Request decode failed: body must be a JSON object")
        f = _norm_keys(body)
        name = f.get("name")
        if not isinstance(name, str) or not name:
            raise ApiError(400, "Missing service name")
        sid = f.get("id") or name
        if not isinstance(sid, str):
            raise ApiError(400, "Request decode failed: ID must be a string")
        port = f.get("port", 0)
        if not isinstance(port, int) or isinstance(port, bool):
            raise ApiError(400, "Request decode failed: Port must be a number")
        tags = f.get("tags") or []
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise ApiError(400, "Request decode failed: Tags must be a list of strings")
        meta = f.get("meta") or {}
        if not isinstance(meta, dict):
            raise ApiError(400, "Request decode failed: Meta must be an object")
        address = f.get("address") or ""
        weights = None
        if f.get("weights") is not None:
            w = _norm_keys(f["weights"])
            weights = {"Passing": w.get("passing", 0), "Warning": w.get("warning", 0)}
            if not all(isinstance(v, int) for v in weights.values()):
                raise ApiError(400, "Request decode failed: Weights must be numbers")
            if weights["Passing"] < 1:
                raise ApiError(400, "Invalid Weights: Passing must be greater than 0")
            if weights["Warning"] < 0:
                raise ApiError(400, "Invalid Weights: Warning must be greater or equal than 0")
        checkdefs = []
        if f.get("check"):
            checkdefs.append(f["check"])
        if f.get("checks"):
            if not isinstance(f["checks"], list):
                raise ApiError(400, "Request decode failed: Checks must be a list")
            checkdefs += f["checks"]
        node = node or DEFAULT_NODE
        with self.cond:
            idx = self.index + 1
            changed_node = self._ensure_node(node, node_address, idx)
            svc = self._service_json({"ID": sid, "Service": name, "Tags": tags,
                                      "Address": address, "Meta": meta, "Port": port,
                                      "Weights": weights,
                                      "EnableTagOverride": f.get("enabletagoverride")}, idx)
            svc["_node"] = node
            new_checks = {}
            multi = len(checkdefs) > 1
            for i, cd in enumerate(checkdefs, 1):
                ck = self._check_from_def(node, svc, cd, i if multi else 0, idx)
                new_checks[(node, ck["CheckID"])] = ck
            old = self.services.get((node, sid))
            changed = changed_node
            if old is None or not _same(old, svc):
                if old is not None:
                    svc["CreateIndex"] = old["CreateIndex"]
                    if old["Service"] != name:
                        self.svc_index[old["Service"]] = idx
                self.services[(node, sid)] = svc
                changed = True
            else:
                svc = old
            # checks of this service not in the new definition are removed (agent does)
            for key in [k for k, c in self.checks.items()
                        if k[0] == node and c["ServiceID"] == sid and k not in new_checks
                        and not k[1].startswith(MAINT_SERVICE_PREFIX)]:
                del self.checks[key]
                self.ttl_deadline.pop(key, None)
                changed = True
            for key, ck in new_checks.items():
                prev = self.checks.get(key)
                if prev is not None and not ck.pop("_status_given"):
                    ck["Status"], ck["Output"] = prev["Status"], prev["Output"]
                ck.pop("_status_given", None)
                if prev is None or not _same(prev, ck):
                    if prev is not None:
                        ck["CreateIndex"] = prev["CreateIndex"]
                    self.checks[key] = ck
                    changed = True
                if ck.get("_ttl") and key not in self.ttl_deadline:
                    self.ttl_deadline[key] = time.monotonic() + ck["_ttl"]
            for key, ck in self.checks.items():  # tags shown on checks follow the service
                if key[0] == node and ck["ServiceID"] == sid and ck["ServiceTags"] != svc["Tags"]:
                    ck["ServiceTags"] = list(svc["Tags"])
                    ck["ModifyIndex"] = idx
                    changed = True
            if changed:
                self._bump()
                names = {name} | (self._names_on_node(node) if changed_node else set())
                self._changed(idx, names, services_table=True)
        return None

    def _check_from_def(self, node, svc, cd, n, idx):
        if not isinstance(cd, dict):
            raise ApiError(400, "Request decode failed: check must be an object")
        c = _norm_keys(cd)
        cid = c.get("checkid") or c.get("id")
        if not cid:
            cid = "service:%s" % svc["ID"] + (":%d" % n if n else "")
        name = c.get("name") or "Service '%s' check" % svc["Service"]
        ttl = 0.0
        ctype = ""
        try:
            if c.get("ttl"):
                ttl = parse_duration(c["ttl"])
                ctype = "ttl"
            interval = parse_duration(c["interval"]) if c.get("interval") else 0.0
        except ValueError as e:
            raise ApiError(400, "Request decode failed: %s" % e)
        if not ctype:
            for k, t in (("http", "http"), ("tcp", "tcp"), ("grpc", "grpc"), ("udp", "udp"),
                         ("args", "script"), ("scriptargs", "script"), ("h2ping", "h2ping"),
                         ("aliasservice", "alias"), ("dockercontainerid", "docker")):
                if c.get(k):
                    ctype = t
                    break
        if ctype == "ttl" and ttl <= 0:
            raise ApiError(400, "Invalid check: TTL must be > 0 for TTL checks")
        if not ctype:
            raise ApiError(400, "Invalid check: TTL must be > 0 for TTL checks")
        if ctype not in ("ttl", "alias") and interval <= 0:
            raise ApiError(400, "Invalid check: Interval must be > 0 for Script, HTTP, H2PING,"
                                " TCP or UDP checks")
        status = c.get("status") or "critical"
        if status not in ("passing", "warning", "critical"):
            raise ApiError(400, "Invalid check status: %r" % status)
        ck = self._check_json(node, cid, name, status, notes=c.get("notes") or "", svc=svc,
                              ctype=ctype, interval=c.get("interval") or "",
                              timeout=c.get("timeout") or "", idx=idx)
        ck["_status_given"] = bool(c.get("status"))
        if ttl:
            ck["_ttl"] = ttl
        return ck

    def deregister(self, sid, node=None):
        with self.cond:
            key = self._resolve(self.services, sid, node)
            if key is None:
                raise ApiError(404, 'Unknown service ID "%s". Ensure that the service ID is '
                                    'passed, not the service name.' % sid)
            svc = self.services.pop(key)
            for k in [k for k, c in self.checks.items()
                      if k[0] == key[0] and c["ServiceID"] == sid]:
                del self.checks[k]
                self.ttl_deadline.pop(k, None)
            self.patches.pop(key, None)
            self._changed(self._bump(), [svc["Service"]], services_table=True)

    # -- checks -------------------------------------------------------------------------
    def update_check(self, cid, status, output, node=None, ttl_only=True):
        if status not in ("passing", "warning", "critical"):
            raise ApiError(400, "Invalid check status: %r" % status)
        with self.cond:
            key = self._resolve(self.checks, cid, node)
            if key is None:
                raise ApiError(404, 'Unknown check ID "%s". Ensure that the check ID is passed,'
                                    ' not the check name.' % cid)
            ck = self.checks[key]
            if ttl_only and not ck.get("_ttl"):
                raise ApiError(500, 'CheckID "%s" does not have associated TTL' % cid)
            if ck.get("_ttl"):
                self.ttl_deadline[key] = time.monotonic() + ck["_ttl"]
            self._set_check(key, status, output)

    def _set_check(self, key, status, output):
        ck = self.checks[key]
        if ck["Status"] == status and ck["Output"] == output:
            return  # idempotent: no write, no new index
        idx = self._bump()
        ck["Status"], ck["Output"], ck["ModifyIndex"] = status, output, idx
        if ck["ServiceName"]:
            names = [ck["ServiceName"]]
        else:
            names = self._names_on_node(key[0])
        self._changed(idx, names)

    def expire_ttls(self):
        """Turns TTL checks whose deadline passed critical ('TTL expired'); returns the
        seconds until the next deadline (or None)."""
        with self.cond:
            now = time.monotonic()
            nxt = None
            for key, dl in list(self.ttl_deadline.items()):
                if key not in self.checks:
                    del self.ttl_deadline[key]
                elif dl <= now:
                    del self.ttl_deadline[key]
                    out = self.checks[key]["Output"]
                    self._set_check(key, "critical",
                                    "TTL expired (last output before timeout follows): " + out
                                    if out else "TTL expired")
                else:
                    nxt = dl - now if nxt is None else min(nxt, dl - now)
            return nxt

    def service_maintenance(self, sid, enable, reason="", node=None):
        with self.cond:
            key = self._resolve(self.services, sid, node)
            if key is None:
                raise ApiError(404, 'Unknown service ID "%s". Ensure that the service ID is '
                                    'passed, not the service name.' % sid)
            svc = self.services[key]
            ckey = (key[0], MAINT_SERVICE_PREFIX + sid)
            if enable:
                if ckey in self.checks:
                    return
                idx = self._bump()
                self.checks[ckey] = self._check_json(
                    key[0], ckey[1], "Service Maintenance Mode", "critical",
                    notes=reason or "Maintenance mode is enabled for this service, but no "
                                    "reason was provided. This is a default message.",
                    svc=svc, ctype="maintenance", idx=idx)
            else:
                if ckey not in self.checks:
                    return
                del self.checks[ckey]
                idx = self._bump()
            self._changed(idx, [svc["Service"]])

    def node_maintenance(self, enable, reason="", node=None):
        node = node or DEFAULT_NODE
        with self.cond:
            if node not in self.nodes:
                raise ApiError(404, 'Unknown node "%s"' % node)
            ckey = (node, MAINT_NODE)
            if enable:
                if ckey in self.checks:
                    return
                idx = self._bump()
                self.checks[ckey] = self._check_json(
                    node, MAINT_NODE, "Node Maintenance Mode", "critical",
                    notes=reason or "Maintenance mode is enabled for this node, but no reason "
                                    "was provided. This is a default message.",
                    ctype="maintenance", idx=idx)
            else:
                if ckey not in self.checks:
                    return
                del self.checks[ckey]
                idx = self._bump()
            self._changed(idx, self._names_on_node(node))

    def set_serf(self, node, status):
        if status not in ("passing", "critical"):
            raise ApiError(400, "status must be passing or critical")
        with self.cond:
            if (node, SERF) not in self.checks:
                raise ApiError(404, 'Unknown node "%s"' % node)
            self._set_check((node, SERF), status, "Agent alive and reachable"
                            if status == "passing" else "Agent not live or unreachable")

    def set_check(self, cid, status, output="", node=None):
        self.update_check(cid, status, output, node, ttl_only=False)

    # -- fake-only state tweaks -----------------------------------------------------------
    def patch(self, sid, patch, node=None):
        if patch is not None and not isinstance(patch, dict):
            raise ApiError(400, "patch must be a JSON object")
        with self.cond:
            key = self._resolve(self.services, sid, node)
            if key is None:
                raise ApiError(404, 'Unknown service ID "%s"' % sid)
            if patch is None:
                self.patches.pop(key, None)
            else:
                self.patches[key] = patch
            self._changed(self._bump(), [self.services[key]["Service"]], services_table=True)

    def rebase(self, by):
        with self.cond:
            self.offset += int(by)
            self.cond.notify_all()

    def reset(self):
        with self.cond:
            self._boot()
            self.requests = []

    # -- faults ---------------------------------------------------------------------------
    def add_fault(self, mode, path=None, count=None, ms=None, status=None):
        if mode not in FAULT_MODES:
            raise ApiError(400, "unknown fault mode %r (one of %s)"
                           % (mode, ", ".join(FAULT_MODES)))
        if mode == "slow_ms" and (ms is None or int(ms) < 0):
            raise ApiError(400, "slow_ms needs ms=")
        with self.cond:
            self.fault_seq += 1
            f = {"id": self.fault_seq, "mode": mode, "path": path or None,
                 "count": None if count is None else int(count),
                 "ms": None if ms is None else int(ms),
                 "status": int(status) if status else (500 if mode == "500" else None),
                 "hits": 0}
            self.faults.append(f)
            return dict(f)

    def clear_faults(self, path=None):
        with self.cond:
            if path:
                self.faults = [f for f in self.faults if f["path"] != path]
            else:
                self.faults = []
            self.cond.notify_all()  # releases hung requests' wait loops

    def take_fault(self, path):
        """The fault that applies to this request (path-specific first), counted."""
        with self.cond:
            cands = [f for f in self.faults if f["path"] and path.startswith(f["path"])]
            cands += [f for f in self.faults if not f["path"]]
            for f in cands:
                if f["count"] is not None and f["count"] <= 0:
                    continue
                f["hits"] += 1
                if f["count"] is not None:
                    f["count"] -= 1
                    if f["count"] <= 0:
                        self.faults.remove(f)
                return dict(f)
            return None

    # -- request log ----------------------------------------------------------------------
    def log_request(self, entry):
        with self.cond:
            self.req_seq += 1
            entry["seq"] = self.req_seq
            entry["t"] = round(time.monotonic() - self.t0, 4)
            entry["time"] = time.time()
            self.requests.append(entry)
            if len(self.requests) > 20000:
                del self.requests[:5000]
            return entry

    def get_requests(self, path=None, since=0):
        with self.cond:
            return [dict(e) for e in self.requests
                    if e["seq"] > since and (not path or e["path"].startswith(path))]

    def clear_requests(self):
        with self.cond:
            self.requests = []

    # -- reads ----------------------------------------------------------------------------
    def _entry(self, key):
        svc = self.services[key]
        node = copy.deepcopy(self.nodes[key[0]])
        s = {k: copy.deepcopy(v) for k, v in svc.items() if not k.startswith("_")}
        if s.get("TaggedAddresses") is None:
            s.pop("TaggedAddresses", None)
        ncs = sorted((c for (n, _), c in self.checks.items() if n == key[0] and not c["ServiceID"]),
                     key=lambda c: c["CheckID"])
        scs = sorted((c for (n, _), c in self.checks.items()
                      if n == key[0] and c["ServiceID"] == key[1]), key=lambda c: c["CheckID"])
        checks = [{k: copy.deepcopy(v) for k, v in c.items() if not k.startswith("_")}
                  for c in ncs + scs]
        e = {"Node": node, "Service": s, "Checks": checks}
        p = self.patches.get(key)
        if p:
            for part in ("Node", "Service"):
                if isinstance(p.get(part), dict):
                    _merge(e[part], p[part])
            for k, v in p.items():
                if k not in ("Node", "Service"):
                    if v is None:
                        e.pop(k, None)
                    else:
                        e[k] = v
        return e

    def health_service(self, name, params):
        passing = bool_param(params, "passing")
        tags = [t.lower() for t in params.get("tag", [])]
        out = []
        for key in sorted(k for k, s in self.services.items() if s["Service"] == name):
            stags = {t.lower() for t in self.services[key]["Tags"]}
            if any(t not in stags for t in tags):
                continue
            e = self._entry(key)
            if passing and any(isinstance(c, dict) and c.get("Status") != "passing"
                               for c in (e.get("Checks") or [])):
                continue
            out.append(e)
        return out

    def catalog_services(self):
        out = {}
        for s in self.services.values():
            out.setdefault(s["Service"], set()).update(s["Tags"])
        return {k: sorted(v) for k, v in sorted(out.items())}

    def catalog_service(self, name, params):
        tags = [t.lower() for t in params.get("tag", [])]
        out = []
        for key in sorted(k for k, s in self.services.items() if s["Service"] == name):
            stags = {t.lower() for t in self.services[key]["Tags"]}
            if any(t not in stags for t in tags):
                continue
            e = self._entry(key)
            n, s = e["Node"], e["Service"]
            out.append({
                "ID": n.get("ID"), "Node": n.get("Node"), "Address": n.get("Address"),
                "Datacenter": n.get("Datacenter"), "TaggedAddresses": n.get("TaggedAddresses"),
                "NodeMeta": n.get("Meta"), "ServiceKind": "", "ServiceID": s.get("ID"),
                "ServiceName": s.get("Service"), "ServiceTags": s.get("Tags"),
                "ServiceAddress": s.get("Address"), "ServiceWeights": s.get("Weights"),
                "ServiceMeta": s.get("Meta"), "ServicePort": s.get("Port"),
                "ServiceEnableTagOverride": s.get("EnableTagOverride"),
                "ServiceProxy": s.get("Proxy"), "ServiceConnect": s.get("Connect"),
                "CreateIndex": s.get("CreateIndex"), "ModifyIndex": s.get("ModifyIndex")})
        return out

    def agent_services(self, node=None):
        node = node or DEFAULT_NODE
        out = {}
        for (n, sid), s in sorted(self.services.items()):
            if n == node and sid != "consul":
                out[sid] = {"ID": sid, "Service": s["Service"], "Tags": s["Tags"],
                            "Meta": s["Meta"], "Port": s["Port"], "Address": s["Address"],
                            "Weights": s["Weights"], "EnableTagOverride": s["EnableTagOverride"],
                            "Datacenter": self.datacenter}
        return out

    def agent_checks(self, node=None):
        node = node or DEFAULT_NODE
        return {cid: {k: v for k, v in c.items() if not k.startswith("_")}
                for (n, cid), c in sorted(self.checks.items()) if n == node and cid != SERF}

    def dump(self):
        with self.cond:
            def pub(d):
                return {k: v for k, v in d.items() if not k.startswith("_")}
            return {
                "index": self.index, "offset": self.offset, "services_index": self.services_index,
                "service_index": dict(self.svc_index), "datacenter": self.datacenter,
                "acl": self.acl_token is not None,
                "nodes": copy.deepcopy(self.nodes),
                "services": [dict(pub(s), Node=n) for (n, _), s in sorted(self.services.items())],
                "checks": [pub(c) for _, c in sorted(self.checks.items())],
                "patches": [{"node": n, "service_id": i, "patch": p}
                            for (n, i), p in self.patches.items()],
                "faults": [dict(f) for f in self.faults]}


# ---------------------------------------------------------------------------------------
# HTTP server
# ---------------------------------------------------------------------------------------

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-consul"
    conn_counter = [0]
    conn_lock = threading.Lock()

    def setup(self):
        super().setup()
        with Handler.conn_lock:
            Handler.conn_counter[0] += 1
            self.conn_id = Handler.conn_counter[0]

    def log_message(self, fmt, *args):
        if self.server.verbose:
            sys.stderr.write("fake_consul: " + (fmt % args) + "\n")

    @property
    def st(self):
        return self.server.state

    # -- plumbing -------------------------------------------------------------------------
    def _body(self):
        te = self.headers.get("Transfer-Encoding", "")
        if "chunked" in te.lower():
            parts = []
            while True:
                line = self.rfile.readline(65537)
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline(3)
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def _reply(self, status, body=b"", ctype="text/plain; charset=utf-8", headers=()):
        if isinstance(body, str):
            body = body.encode()
        self.send_response_only(status)
        self.send_header("Date", self.date_time_string())
        for k, v in headers:
            self.send_header(k, v)
        if body or status != 200 or ctype.startswith("application/json"):
            self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        # Log before the client can see the answer: a client that reads the log right after
        # its response must find the status (set after the write, it raced under load).
        if self._entry is not None:
            self._entry["status"] = status
            self._entry["duration"] = round(time.monotonic() - self._start, 4)
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def _json(self, obj, params, headers=()):
        body = json.dumps(obj, indent=4 if "pretty" in params else None) + "\n"
        self._reply(200, body, "application/json", headers)

    def do_GET(self):
        self._dispatch("GET")

    def do_PUT(self):
        self._dispatch("PUT")

    def do_POST(self):
        self._dispatch("POST")

    def do_DELETE(self):
        self._dispatch("DELETE")

    def _dispatch(self, method):
        # Counted while being answered, so that stop() can let a woken blocking query write
        # its answer before the process exits (daemon handler threads die with it).
        with self.st.cond:
            self.st.in_flight += 1
        try:
            self._dispatch_counted(method)
        finally:
            with self.st.cond:
                self.st.in_flight -= 1
                self.st.cond.notify_all()

    def _dispatch_counted(self, method):
        self._start = time.monotonic()
        self._entry = None
        u = urllib.parse.urlsplit(self.path)
        path = urllib.parse.unquote(u.path)
        params = urllib.parse.parse_qs(u.query, keep_blank_values=True)
        try:
            body = self._body()
        except (ValueError, OSError):
            self.close_connection = True
            return
        try:
            if path.startswith("/_fake/") or path == "/_fake":
                self._control(method, path, params, body)
                return
            self._entry = self.st.log_request({
                "method": method, "path": path, "query": u.query, "params": params,
                "headers": [[k, v] for k, v in self.headers.items()], "conn": self.conn_id,
                "fault": None, "status": None, "index": None, "duration": None})
            fault = self.st.take_fault(path)
            if fault:
                self._entry["fault"] = fault["mode"]
                if self._apply_fault(fault, path, params):
                    return
            self._check_acl(params, path)
            self._api(method, path, params, body, fault)
        except ApiError as e:
            self._reply(e.status, e.text)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as e:  # noqa: BLE001 - the fake must answer something
            import traceback
            traceback.print_exc()
            self._reply(500, "fake_consul internal error: %r" % e)

    # -- faults ---------------------------------------------------------------------------
    def _apply_fault(self, fault, path, params):
        """Returns True when the request was fully handled by the fault."""
        mode = fault["mode"]
        if mode == "slow_ms":
            time.sleep(fault["ms"] / 1000.0)
            return False
        if mode == "500":
            self._reply(fault["status"], "rpc error making call: No cluster leader")
            return True
        if mode == "hang":
            self._hang()
            return True
        if mode == "reset":
            self._entry["status"] = "reset"
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
            self.connection.close()
            self.close_connection = True
            return True
        if mode in ("garbage", "wrongtype"):
            view = self._view_of(path)
            with self.st.cond:
                idx = self.st.view_index(view) if view else self.st._report(self.st.index)
            self._entry["index"] = idx
            body = (b'[{"Node": {"ID": "0b6c-", "Node": "node1", "Addr' if mode == "garbage"
                    else b'{"Node": 7, "Service": ["not", "an", "object"], "Checks": "none"}\n')
            self._reply(200, body, "application/json",
                        [("X-Consul-Index", str(idx)), ("X-Consul-KnownLeader", "true"),
                         ("X-Consul-LastContact", "0")])
            return True
        return False  # index_backwards: handled while answering

    def _hang(self):
        """Never answers; returns when the client closes or the server stops."""
        self._entry["status"] = "hang"
        sock = self.connection
        while not self.st.stopping:
            try:
                sock.settimeout(0.2)
                data = sock.recv(65536, socket.MSG_PEEK)
                if not data:
                    break
                time.sleep(0.2)  # client sent more (pipelined): still no answer
            except socket.timeout:
                continue
            except OSError:
                break
        self.close_connection = True

    # -- ACL ------------------------------------------------------------------------------
    def _check_acl(self, params, path):
        want = self.st.acl_token
        if want is None:
            return
        tok = None
        if params.get("token"):
            tok = params["token"][-1]
        elif self.headers.get("X-Consul-Token"):
            tok = self.headers.get("X-Consul-Token")
        else:
            auth = self.headers.get("Authorization", "")
            if auth[:7].lower() == "bearer ":
                tok = auth[7:].strip()
        if tok is None or tok == "":
            raise ApiError(403, "Permission denied: anonymous token lacks permission")
        if tok != want:
            raise ApiError(403, "ACL not found")

    # -- API ------------------------------------------------------------------------------
    @staticmethod
    def _view_of(path):
        if path.startswith("/v1/health/service/"):
            return ("health", path[len("/v1/health/service/"):])
        if path.startswith("/v1/catalog/service/"):
            return ("health", path[len("/v1/catalog/service/"):])
        if path == "/v1/catalog/services":
            return ("catalog", None)
        return None

    def _api(self, method, path, params, body, fault):
        st = self.st
        node = (params.get("node") or [None])[-1] or None
        if path.startswith("/v1/agent/"):
            self._agent(method, path, params, body, node)
            return
        if path == "/v1/status/leader":
            self._need(method, "GET")
            self._json("127.0.0.1:8300", params)
            return
        view = self._view_of(path)
        if view is None or (view[0] == "health" and not view[1]):
            raise ApiError(404, "404 page not found")
        self._need(method, "GET")
        dc = (params.get("dc") or [""])[-1]
        if dc and dc != st.datacenter:
            raise ApiError(500, "No path to datacenter")
        if "filter" in params:
            raise ApiError(400, "fake_consul: ?filter is not supported by the fake")
        stale = "stale" in params
        consistent = "consistent" in params
        if stale and consistent:
            raise ApiError(400, "Cannot specify ?stale with ?consistent, conflicting semantics.")
        try:
            req_index = int((params.get("index") or ["0"])[-1] or "0")
            if req_index < 0:
                raise ValueError
        except ValueError:
            raise ApiError(400, "Invalid index")
        try:
            wait = parse_duration(params["wait"][-1]) if params.get("wait", [""])[-1] else 0.0
        except ValueError:
            raise ApiError(400, "Invalid wait time")
        backwards = fault is not None and fault["mode"] == "index_backwards"
        with st.cond:
            if req_index > 0 and not backwards:
                deadline = time.monotonic() + blocking_timeout(wait)
                while not st.stopping and st.view_index(view) <= req_index:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    st.cond.wait(left)
            idx = st.view_index(view)
            if view[0] == "catalog":
                data = st.catalog_services()
            elif path.startswith("/v1/catalog/"):
                data = st.catalog_service(view[1], params)
            else:
                data = st.health_service(view[1], params)
            if backwards:
                prev = st.last_reported.get(view, idx)
                base = min(idx, prev, req_index if req_index > 0 else idx)
                idx = max(1, base // 2)
            else:
                st.last_reported[view] = idx
        self._entry["index"] = idx
        mode = "stale" if stale else ("consistent" if consistent else "leader")
        self._json(data, params, [("X-Consul-Index", str(idx)),
                                  ("X-Consul-KnownLeader", "true"),
                                  ("X-Consul-LastContact", "0"),
                                  ("X-Consul-Effective-Consistency", mode),
                                  ("X-Consul-Query-Backend", "blocking-query")])

    @staticmethod
    def _need(method, want):
        if method != want:
            raise ApiError(405, "method %s not allowed" % method)

    def _agent(self, method, path, params, body, node):
        st = self.st
        rest = path[len("/v1/agent/"):]

        def one(name):
            return (params.get(name) or [""])[-1]

        if rest == "services":
            self._need(method, "GET")
            with st.cond:
                self._json(st.agent_services(node), params)
            return
        if rest == "checks":
            self._need(method, "GET")
            with st.cond:
                self._json(st.agent_checks(node), params)
            return
        if rest == "service/register":
            self._need(method, "PUT")
            try:
                obj = json.loads(body.decode() or "null")
            except ValueError as e:
                raise ApiError(400, "Request decode failed: %s" % e)
            st.register(obj, node=node, node_address=one("node_address") or None)
            self._reply(200)
            return
        m = re.fullmatch(r"service/deregister/(.+)", rest)
        if m:
            self._need(method, "PUT")
            st.deregister(m.group(1), node)
            self._reply(200)
            return
        m = re.fullmatch(r"check/(pass|warn|fail)/(.+)", rest)
        if m:
            self._need(method, "PUT")
            status = {"pass": "passing", "warn": "warning", "fail": "critical"}[m.group(1)]
            st.update_check(m.group(2), status, one("note"), node)
            self._reply(200)
            return
        m = re.fullmatch(r"check/update/(.+)", rest)
        if m:
            self._need(method, "PUT")
            try:
                obj = _norm_keys(json.loads(body.decode() or "{}"))
            except ValueError as e:
                raise ApiError(400, "Request decode failed: %s" % e)
            st.update_check(m.group(1), obj.get("status", ""), obj.get("output", ""), node)
            self._reply(200)
            return
        m = re.fullmatch(r"service/maintenance/(.+)", rest)
        if m or rest == "maintenance":
            self._need(method, "PUT")
            if "enable" not in params or params["enable"][-1] == "":
                raise ApiError(400, "Missing value for enable")
            v = params["enable"][-1]
            if v not in ("true", "false", "1", "0", "t", "f", "True", "False", "TRUE", "FALSE"):
                raise ApiError(400, "Invalid value for enable: %r" % v)
            enable = v in ("true", "1", "t", "True", "TRUE")
            if m:
                st.service_maintenance(m.group(1), enable, one("reason"), node)
            else:
                st.node_maintenance(enable, one("reason"), node)
            self._reply(200)
            return
        raise ApiError(404, "404 page not found")

    # -- control --------------------------------------------------------------------------
    def _control(self, method, path, params, body):
        st = self.st
        rest = path[len("/_fake/"):] if path.startswith("/_fake/") else ""

        def one(name, default=None):
            v = params.get(name)
            return v[-1] if v else default

        if rest == "state":
            self._json(st.dump(), params)
        elif rest in ("requests", "requests/clear"):
            if method == "DELETE" or rest == "requests/clear":
                st.clear_requests()
                self._json({"ok": True}, params)
            else:
                self._json(st.get_requests(one("path"), int(one("since", "0"))), params)
        elif rest in ("fault", "fault/clear", "faults"):
            if method == "DELETE" or rest == "fault/clear":
                st.clear_faults(one("path"))
                self._json({"ok": True}, params)
            elif method == "GET":
                with st.cond:
                    self._json([dict(f) for f in st.faults], params)
            else:
                self._json(st.add_fault(one("mode"), one("path"), one("count"), one("ms"),
                                        one("status")), params)
        elif rest.startswith("serf/"):
            st.set_serf(rest[5:], one("status", "critical"))
            self._json({"ok": True}, params)
        elif rest.startswith("check/"):
            st.set_check(rest[6:], one("status", ""), one("output", ""), one("node"))
            self._json({"ok": True}, params)
        elif rest.startswith("patch/"):
            try:
                patch = None if method == "DELETE" else json.loads(body.decode() or "{}")
            except ValueError as e:
                raise ApiError(400, "bad JSON: %s" % e)
            st.patch(rest[6:], patch, one("node"))
            self._json({"ok": True}, params)
        elif rest == "rebase":
            st.rebase(int(one("by", "0")))
            self._json({"ok": True}, params)
        elif rest == "reset":
            st.reset()
            self._json({"ok": True}, params)
        elif rest.startswith("index/"):
            with st.cond:
                self._json({"index": st.view_index(("health", rest[6:]))}, params)
        else:
            raise ApiError(404, "unknown control path %s" % path)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, addr, state, verbose=False):
        self.state = state
        self.verbose = verbose
        super().__init__(addr, Handler)

    def handle_error(self, request, client_address):
        if self.verbose:
            super().handle_error(request, client_address)


class FakeConsul:
    """In-process fake: start() runs the server and the TTL reaper in threads."""

    def __init__(self, host="127.0.0.1", port=0, acl_token=None, datacenter="dc1",
                 verbose=False):
        self.state = ConsulState(datacenter, acl_token)
        self.server = Server((host, port), self.state, verbose)
        self.host = host
        self.port = self.server.server_address[1]
        self.addr = "%s:%d" % (host, self.port)
        self._threads = []

    def start(self):
        t = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1},
                             daemon=True)
        r = threading.Thread(target=self._reaper, daemon=True)
        self._threads = [t, r]
        t.start()
        r.start()
        return self

    def _reaper(self):
        st = self.state
        while True:
            nxt = st.expire_ttls()
            with st.cond:
                if st.stopping:
                    return
                st.cond.wait(0.2 if nxt is None else min(0.2, max(0.005, nxt)))

    def stop(self, drain_timeout=5.0):
        """Stops serving: waiting blocking queries are answered (and hung ones closed)
        before the listener closes; waits at most drain_timeout for them."""
        st = self.state
        with st.cond:
            st.stopping = True
            st.cond.notify_all()
            deadline = time.monotonic() + drain_timeout
            while st.in_flight > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                st.cond.wait(left)
        self.server.shutdown()
        self.server.server_close()
        for t in self._threads:
            t.join(5)

    def client(self, token=None):
        return ConsulClient(self.port, self.host, token)

    # direct control (same effect as the /_fake/ API)
    def fault(self, mode, path=None, count=None, ms=None, status=None):
        return self.state.add_fault(mode, path, count, ms, status)

    def clear_faults(self, path=None):
        self.state.clear_faults(path)

    def requests(self, path=None, since=0):
        return self.state.get_requests(path, since)

    def clear_requests(self):
        self.state.clear_requests()

    def dump(self):
        return self.state.dump()

    def serf(self, node, status):
        self.state.set_serf(node, status)

    def set_check(self, cid, status, output="", node=None):
        self.state.set_check(cid, status, output, node)

    def register(self, body, node=None, node_address=None):
        self.state.register(body, node, node_address)

    def deregister(self, sid, node=None):
        self.state.deregister(sid, node)

    def check_pass(self, cid, note="", node=None):
        self.state.update_check(cid, "passing", note or "", node)

    def check_warn(self, cid, note="", node=None):
        self.state.update_check(cid, "warning", note or "", node)

    def check_fail(self, cid, note="", node=None):
        self.state.update_check(cid, "critical", note or "", node)

    def service_maintenance(self, sid, enable, reason="", node=None):
        self.state.service_maintenance(sid, enable, reason, node)

    def node_maintenance(self, enable, reason="", node=None):
        self.state.node_maintenance(enable, reason, node)

    def patch(self, sid, patch, node=None):
        self.state.patch(sid, patch, node)

    def rebase(self, by):
        self.state.rebase(by)

    def reset(self):
        self.state.reset()

    def index(self, service):
        with self.state.cond:
            return self.state.view_index(("health", service))


class ConsulClient:
    """Small HTTP client for the fake (agent API + /_fake/ control); one connection per
    call. Methods raise ApiError on a non-2xx answer unless noted."""

    def __init__(self, port, host="127.0.0.1", token=None, timeout=10.0):
        self.port = port
        self.host = host
        self.token = token
        self.timeout = timeout

    def call(self, method, path, params=None, body=None, headers=None, timeout=None):
        """Returns (status, headers dict (lower-case names), body bytes); never raises on
        status."""
        if params:
            path += "?" + urllib.parse.urlencode(params, doseq=True)
        hdrs = dict(headers or {})
        if self.token and not path.startswith("/_fake"):
            hdrs.setdefault("X-Consul-Token", self.token)
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout or self.timeout)
        try:
            conn.request(method, path, body=data, headers=hdrs)
            r = conn.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            conn.close()

    def _ok(self, method, path, params=None, body=None):
        status, _, data = self.call(method, path, params, body)
        if status // 100 != 2:
            raise ApiError(status, data.decode("utf-8", "replace"))
        return json.loads(data) if data.strip() else None

    @staticmethod
    def _node(params, node, node_address=None):
        if node:
            params["node"] = node
        if node_address:
            params["node_address"] = node_address
        return params

    # agent API
    def register(self, svc, node=None, node_address=None):
        self._ok("PUT", "/v1/agent/service/register", self._node({}, node, node_address), svc)

    def deregister(self, sid, node=None):
        self._ok("PUT", "/v1/agent/service/deregister/" + urllib.parse.quote(sid),
                 self._node({}, node))

    def check(self, action, cid, note=None, node=None):
        p = self._node({}, node)
        if note is not None:
            p["note"] = note
        self._ok("PUT", "/v1/agent/check/%s/%s" % (action, urllib.parse.quote(cid)), p)

    def check_pass(self, cid, note=None, node=None):
        self.check("pass", cid, note, node)

    def check_warn(self, cid, note=None, node=None):
        self.check("warn", cid, note, node)

    def check_fail(self, cid, note=None, node=None):
        self.check("fail", cid, note, node)

    def service_maintenance(self, sid, enable, reason=None, node=None):
        p = self._node({"enable": "true" if enable else "false"}, node)
        if reason:
            p["reason"] = reason
        self._ok("PUT", "/v1/agent/service/maintenance/" + urllib.parse.quote(sid), p)

    def node_maintenance(self, enable, reason=None, node=None):
        p = self._node({"enable": "true" if enable else "false"}, node)
        if reason:
            p["reason"] = reason
        self._ok("PUT", "/v1/agent/maintenance", p)

    def health(self, name, timeout=None, **params):
        """GET /v1/health/service/<name>: (status, headers, parsed JSON or raw bytes)."""
        status, hdrs, data = self.call("GET", "/v1/health/service/" + name,
                                       params or None, timeout=timeout)
        try:
            data = json.loads(data)
        except ValueError:
            pass
        return status, hdrs, data

    # control API
    def state(self):
        return self._ok("GET", "/_fake/state")

    def requests(self, path=None, since=None):
        p = {}
        if path:
            p["path"] = path
        if since:
            p["since"] = since
        return self._ok("GET", "/_fake/requests", p)

    def clear_requests(self):
        self._ok("DELETE", "/_fake/requests")

    def fault(self, mode, path=None, count=None, ms=None, status=None):
        p = {"mode": mode}
        for k, v in (("path", path), ("count", count), ("ms", ms), ("status", status)):
            if v is not None:
                p[k] = v
        return self._ok("PUT", "/_fake/fault", p)

    def faults(self):
        return self._ok("GET", "/_fake/fault")

    def clear_faults(self, path=None):
        self._ok("DELETE", "/_fake/fault", {"path": path} if path else None)

    def serf(self, node, status):
        self._ok("PUT", "/_fake/serf/" + urllib.parse.quote(node), {"status": status})

    def set_check(self, cid, status, output="", node=None):
        self._ok("PUT", "/_fake/check/" + urllib.parse.quote(cid),
                 self._node({"status": status, "output": output}, node))

    def patch(self, sid, patch, node=None):
        if patch is None:
            self._ok("DELETE", "/_fake/patch/" + urllib.parse.quote(sid), self._node({}, node))
        else:
            self._ok("PUT", "/_fake/patch/" + urllib.parse.quote(sid), self._node({}, node),
                     patch)

    def rebase(self, by):
        self._ok("PUT", "/_fake/rebase", {"by": by})

    def reset(self):
        self._ok("PUT", "/_fake/reset")

    def index(self, service):
        return self._ok("GET", "/_fake/index/" + urllib.parse.quote(service))["index"]


def main(argv=None):
    ap = argparse.ArgumentParser(description="fake Consul HTTP API for tests")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--acl-token", default=None)
    ap.add_argument("--datacenter", default="dc1")
    ap.add_argument("--verbose", action="store_true")
    a = ap.parse_args(argv)
    fc = FakeConsul(a.host, a.port, a.acl_token, a.datacenter, a.verbose)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    fc.start()
    print("ready %d" % fc.port, flush=True)
    while not stop.wait(0.5):
        pass
    fc.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
