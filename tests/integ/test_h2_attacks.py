# SPDX-License-Identifier: MIT
"""HTTP/2 attack probes against keel's h2c listener, with hand-built frames: rapid reset
(CVE-2023-44487), MadeYouReset, CONTINUATION floods, HPACK bombs, SETTINGS and PING floods
without reading, zero-window holds. For each: the attacking connection ends (GOAWAY and/or EOF)
within a bounded time, HTTP/1.1 and h2 clients running beside it see no failure, keel's memory
stays bounded, and keel serves afterwards."""

import select
import socket
import struct
import threading
import time
import unittest

import hpack

from keeltest import (H2Client, KeelTestCase, cluster, http_listener, keel_is_sanitized,
                      keel_yaml, one_request, proc_rss_kb)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# Frame types and flags (RFC 9113).
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, \
    CONTINUATION = range(10)
END_STREAM, ACK, END_HEADERS = 0x1, 0x1, 0x4

NO_ERROR, PROTOCOL_ERROR, CANCEL, ENHANCE_YOUR_CALM = 0x0, 0x1, 0x8, 0xb
SETTINGS_INITIAL_WINDOW_SIZE = 0x4

# Bounds of every attack (count and time); the connection must end well before them.
ATTACK_SECONDS = 15.0
END_SECONDS = 10.0
RSS_GROWTH_MB = 100


def frame(ftype, flags, sid, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + \
        struct.pack(">I", sid & 0x7FFFFFFF) + payload


def settings_frame(pairs=(), ack=False):
    return frame(SETTINGS, ACK if ack else 0, 0,
                 b"".join(struct.pack(">HI", k, v) for k, v in pairs))


def request_block(enc, path="/", authority="attack.local", method="GET"):
    """A request's header block that leaves the dynamic table alone (never-indexed literals,
    static-table hits), so hand-made table operations stay in sync with keel's decoder."""
    return enc.encode([(":method", method, True), (":scheme", "http", True),
                       (":authority", authority, True), (":path", path, True)])


class Attacker:
    """A raw h2c connection: sends frames, reads (when asked) and records a GOAWAY / EOF."""

    def __init__(self, port, settings=()):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.enc = hpack.Encoder()
        self.buf = bytearray()
        self.goaway = None   # (last_stream_id, error_code)
        self.eof = False     # EOF or reset from keel
        self.send_failed = None
        self.sent_frames = 0
        self.start = time.monotonic()
        self.ended_at = None
        self.send(PREFACE + settings_frame(settings))

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, data, frames=1):
        """Sends; False once keel has closed (or stopped reading for the socket timeout)."""
        if self.eof or self.send_failed:
            return False
        try:
            self.sock.sendall(data)
        except socket.timeout:
            self.send_failed = "send blocked for 5 s (keel stopped reading)"
            return False
        except OSError as e:
            self.send_failed = repr(e)
            self._ended()
            return False
        self.sent_frames += frames
        return True

    def _ended(self):
        self.eof = True
        if self.ended_at is None:
            self.ended_at = time.monotonic()

    def _parse(self):
        while len(self.buf) >= 9:
            n = int.from_bytes(self.buf[:3], "big")
            if len(self.buf) < 9 + n:
                return
            ftype = self.buf[3]
            payload = bytes(self.buf[9:9 + n])
            del self.buf[:9 + n]
            if ftype == GOAWAY and len(payload) >= 8 and self.goaway is None:
                self.goaway = (struct.unpack(">I", payload[:4])[0] & 0x7FFFFFFF,
                               struct.unpack(">I", payload[4:8])[0])

    def read_available(self, wait=0.0):
        """Reads what is there (waiting up to wait for the first bytes)."""
        deadline = time.monotonic() + wait
        while not self.eof:
            r, _, _ = select.select([self.sock], [], [], max(0.0, deadline - time.monotonic()))
            if not r:
                return
            try:
                d = self.sock.recv(1 << 20)
            except (ConnectionResetError, BrokenPipeError):
                d = b""
            except socket.timeout:
                return
            if not d:
                self._ended()
                return
            self.buf += d
            self._parse()

    def wait_end(self, timeout=END_SECONDS):
        """Reads until EOF or timeout; True when keel closed the connection."""
        deadline = time.monotonic() + timeout
        while not self.eof and time.monotonic() < deadline:
            self.read_available(min(0.5, max(0.0, deadline - time.monotonic())))
        return self.eof


class Background:
    """Normal HTTP/1.1 and h2 clients plus an RSS sampler, running during an attack."""

    def __init__(self, tc, port, pid):
        self.tc, self.port, self.pid = tc, port, pid
        self.stop = threading.Event()
        self.failures = []
        self.ok = {"h1": 0, "h2": 0}
        self.base_rss = proc_rss_kb(pid)
        self.peak_rss = self.base_rss
        self.threads = [threading.Thread(target=f, daemon=True)
                        for f in (self._h1, self._h2, self._rss)]

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(20)

    def _h1(self):
        i = 0
        while not self.stop.is_set():
            i += 1
            try:
                r = one_request(self.port, "GET", "/normal/h1/%d" % i, timeout=10)
                if r.status != 200 or r.json()["target"] != "/normal/h1/%d" % i:
                    self.failures.append(("h1", i, r))
                else:
                    self.ok["h1"] += 1
            except Exception as e:  # noqa: BLE001 - every failure is reported
                self.failures.append(("h1", i, repr(e)))
            time.sleep(0.02)

    def _h2(self):
        c = None
        i = 0
        try:
            c = H2Client(self.port, timeout=10)
            while not self.stop.is_set():
                i += 1
                st = c.get("/normal/h2/%d" % i, timeout=10)
                if st.status != 200 or st.json()["target"] != "/normal/h2/%d" % i:
                    self.failures.append(("h2", i, st))
                else:
                    self.ok["h2"] += 1
                time.sleep(0.02)
            if c.goaway is not None:
                self.failures.append(("h2", i, "GOAWAY %r" % (c.goaway,)))
        except Exception as e:  # noqa: BLE001 - every failure is reported
            self.failures.append(("h2", i, repr(e)))
        finally:
            if c:
                c.close()

    def _rss(self):
        while not self.stop.is_set():
            self.peak_rss = max(self.peak_rss, proc_rss_kb(self.pid))
            time.sleep(0.05)


class H2AttackTest(KeelTestCase):
    def setUp(self):
        super().setUp()
        self.bs = self.start_backends(["b1", "b2"])
        self.port, self.admin = self.free_port(), self.free_port()
        self.k = self.start_keel(keel_yaml(
            [http_listener(self.port, [{"cluster": "app"}], timeouts={"idle": "2s"})],
            [cluster("app", [b.addr for b in self.bs.values()], lb="round_robin")],
            self.admin, workers=2))
        self.attackers = []

    def attacker(self, settings=()):
        a = Attacker(self.port, settings)
        self.attackers.append(a)
        self.addCleanup(a.close)
        return a

    def run_attack(self, attack, expect_codes=(ENHANCE_YOUR_CALM, PROTOCOL_ERROR),
                   n_attackers=1, settings=()):
        """Runs attack(attacker) for each attacker, with normal clients beside; checks the
        outcome; returns the attackers."""
        with Background(self, self.port, self.k.proc.pid) as bg:
            time.sleep(0.2)  # normal traffic is flowing before the attack
            atts = [self.attacker(settings) for _ in range(n_attackers)]
            ts = [threading.Thread(target=attack, args=(a,), daemon=True) for a in atts]
            for t in ts:
                t.start()
            for t in ts:
                t.join(ATTACK_SECONDS + 5)
            self.assertFalse(any(t.is_alive() for t in ts), "attack thread still running")
            ended = [a.wait_end(END_SECONDS) for a in atts]
            time.sleep(0.3)  # normal traffic continues after the attack
        for a, e in zip(atts, ended):
            self.assertTrue(e, "the attacking connection was not closed within %.0f s after "
                            "the attack (goaway %r, %d frames sent, send: %s)"
                            % (END_SECONDS, a.goaway, a.sent_frames, a.send_failed))
            if a.goaway is not None:
                self.assertIn(a.goaway[1], expect_codes, "GOAWAY error code")
        self.assertEqual(bg.failures, [], "normal clients failed during the attack")
        self.assertGreater(bg.ok["h1"], 0)
        self.assertGreater(bg.ok["h2"], 0)
        if not keel_is_sanitized():
            growth = (bg.peak_rss - bg.base_rss) / 1024.0
            self.assertLess(growth, RSS_GROWTH_MB, "keel RSS grew by %.0f MB" % growth)
        # keel still serves, both protocols.
        self.assertEqual(one_request(self.port, "GET", "/after").status, 200)
        c = H2Client(self.port)
        try:
            self.assertEqual(c.get("/after-h2").status, 200)
        finally:
            c.close()
        self.assertIsNone(self.k.proc.poll(), "keel exited")
        return atts

    def total_backend_requests(self):
        return sum(len(b.log()) for b in self.bs.values())

    # -- rapid reset ---------------------------------------------------------------------
    def test_rapid_reset(self):
        total = 20000

        def attack(a):
            sid = 1
            deadline = time.monotonic() + ATTACK_SECONDS
            while sid < 2 * total and time.monotonic() < deadline:
                batch = []
                for _ in range(100):
                    batch.append(frame(HEADERS, END_HEADERS | END_STREAM, sid,
                                       request_block(a.enc, "/rr/%d" % sid)))
                    batch.append(frame(RST_STREAM, 0, sid, struct.pack(">I", CANCEL)))
                    sid += 2
                if not a.send(b"".join(batch), 200):
                    return
                a.read_available()
                if a.goaway or a.eof:
                    return

        (a,) = self.run_attack(attack)
        self.assertIsNotNone(a.goaway, "no GOAWAY for a rapid reset")
        self.assertEqual(a.goaway[1], ENHANCE_YOUR_CALM)
        # The attack was cut short: far fewer requests reached the backends than were opened.
        self.assertLess(a.sent_frames // 2, total, "keel accepted the whole rapid-reset run")
        self.assertLess(self.total_backend_requests(), 5000)

    def test_made_you_reset(self):
        # Each stream is made to be reset by keel: WINDOW_UPDATE with increment 0 on a stream
        # is a stream error (PROTOCOL_ERROR) the server answers with RST_STREAM.
        def attack(a):
            sid = 1
            deadline = time.monotonic() + ATTACK_SECONDS
            while sid < 40000 and time.monotonic() < deadline:
                batch = []
                for _ in range(100):
                    batch.append(frame(HEADERS, END_HEADERS, sid,
                                       request_block(a.enc, "/myr/%d" % sid, method="POST")))
                    batch.append(frame(WINDOW_UPDATE, 0, sid, struct.pack(">I", 0)))
                    sid += 2
                if not a.send(b"".join(batch), 200):
                    return
                a.read_available()
                if a.goaway or a.eof:
                    return

        (a,) = self.run_attack(attack)
        self.assertIsNotNone(a.goaway, "no GOAWAY for MadeYouReset")
        self.assertLess(a.sent_frames // 2, 20000, "keel accepted the whole run")

    # -- CONTINUATION floods -------------------------------------------------------------
    def test_continuation_flood(self):
        def attack(a):
            block = request_block(a.enc, "/cont")
            a.send(frame(HEADERS, 0, 1, block))
            deadline = time.monotonic() + ATTACK_SECONDS
            i = 0
            while time.monotonic() < deadline and i < 200000:
                # Each CONTINUATION carries one more small literal header field.
                piece = b"".join(b"\x40\x05x-pad\x04" + b"%04d" % ((i + j) % 10000)
                                 for j in range(10))
                if not a.send(b"".join(frame(CONTINUATION, 0, 1, piece) for _ in range(50)),
                              50):
                    return
                i += 50
                a.read_available()
                if a.goaway or a.eof:
                    return

        (a,) = self.run_attack(attack)
        self.assertLess(a.sent_frames, 200000)
        # The attacker reads between its writes: keel's GOAWAY must be there.
        self.assertIsNotNone(a.goaway, "CONTINUATION flood: connection closed without GOAWAY")

    def test_empty_continuation_flood(self):
        def attack(a):
            a.send(frame(HEADERS, 0, 1, request_block(a.enc, "/cont0")))
            deadline = time.monotonic() + ATTACK_SECONDS
            i = 0
            while time.monotonic() < deadline and i < 500000:
                if not a.send(frame(CONTINUATION, 0, 1) * 500, 500):
                    return
                i += 500
                a.read_available()
                if a.goaway or a.eof:
                    return

        (a,) = self.run_attack(attack)
        self.assertLess(a.sent_frames, 500000)
        self.assertIsNotNone(a.goaway, "CONTINUATION flood: connection closed without GOAWAY")

    # -- HPACK bomb ----------------------------------------------------------------------
    def test_hpack_bomb(self):
        def attack(a):
            # Stream 1 puts a 4000-byte field into the dynamic table (literal with
            # incremental indexing, new name), then later streams reference it (index 62)
            # thousands of times: 16000 one-byte references decode to 64 MB.
            big_value = b"v" * 4000
            lit = b"\x40" + b"\x06" + b"x-bomb" + b"\x7f" + _hpack_int(4000 - 127) + big_value
            base = request_block(a.enc, "/bomb")
            a.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, base + lit))
            sid = 3
            deadline = time.monotonic() + ATTACK_SECONDS
            while time.monotonic() < deadline and sid < 400:
                block = request_block(a.enc, "/bomb/%d" % sid) + b"\xbe" * 16000
                if not a.send(frame(HEADERS, END_HEADERS | END_STREAM, sid, block)):
                    return
                sid += 2
                a.read_available(0.01)
                if a.goaway or a.eof:
                    return

        (a,) = self.run_attack(attack)
        self.assertIsNotNone(a.goaway, "no GOAWAY for an HPACK bomb")
        # None of the bomb streams reached a backend with its 64 MB of fields.
        for b in self.bs.values():
            for e in b.log():
                self.assertFalse(e["target"].startswith("/bomb/"), e["target"])

    # -- control frame floods, not reading ------------------------------------------------
    def _flood(self, one, count=1000000):
        def attack(a):
            deadline = time.monotonic() + ATTACK_SECONDS
            i = 0
            batch = one * 1000
            while time.monotonic() < deadline and i < count:
                if not a.send(batch, 1000):
                    return
                i += 1000
            # Never read during the flood.
        return attack

    def test_settings_flood(self):
        (a,) = self.run_attack(self._flood(settings_frame([(SETTINGS_INITIAL_WINDOW_SIZE,
                                                            65535)])))
        self.assertLess(a.sent_frames, 1000000)

    def test_ping_flood(self):
        (a,) = self.run_attack(self._flood(frame(PING, 0, 0, b"12345678")))
        self.assertLess(a.sent_frames, 1000000)

    # -- zero-window hold ------------------------------------------------------------------
    def test_zero_window_hold(self):
        n = 20 * 1024 * 1024

        def attack(a):
            a.send(frame(HEADERS, END_HEADERS | END_STREAM, 1,
                         request_block(a.enc, "/bytes?n=%d" % n)))
            a.send(settings_frame(ack=True))
            # Never a WINDOW_UPDATE; read what comes (SETTINGS, HEADERS), hold the window.

        atts = self.run_attack(attack, expect_codes=(ENHANCE_YOUR_CALM,), n_attackers=8,
                               settings=[(SETTINGS_INITIAL_WINDOW_SIZE, 0)])
        for a in atts:
            self.assertIsNotNone(a.goaway, "zero-window hold ended without GOAWAY")
            self.assertEqual(a.goaway[1], ENHANCE_YOUR_CALM)
            # The idle timeout (2 s) ended it, not something in the first instant.
            self.assertGreaterEqual(a.ended_at - a.start, 1.5)
        self.assertIn("window held at zero", self.k.log_text())


def _hpack_int(n):
    """HPACK integer continuation bytes (after a saturated 7-bit prefix)."""
    out = bytearray()
    while n >= 128:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


if __name__ == "__main__":
    unittest.main()
