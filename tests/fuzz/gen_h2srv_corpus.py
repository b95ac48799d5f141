#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Writes the seed corpus of fuzz_h2srv: HTTP/2 client byte streams (after the preface),
each prefixed with the target's two control bytes (answer mode, write step)."""
import os
import sys

import h2.config
import h2.connection
import hyperframe.frame as hf

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "h2srv")


def client():
    c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True,
                                                             header_encoding="utf-8"))
    c.initiate_connection()
    c.data_to_send()  # the preface is added by the target
    return c


def get(c, sid, path="/", extra=()):
    c.send_headers(sid, [(":method", "GET"), (":scheme", "http"), (":authority", "a.test"),
                         (":path", path)] + list(extra), end_stream=True)


def post(c, sid, body, trailers=None, cl=True):
    hs = [(":method", "POST"), (":scheme", "http"), (":authority", "a.test"), (":path", "/p"),
          ("content-type", "application/grpc"), ("te", "trailers"), ("grpc-timeout", "250m")]
    if cl:
        hs.append(("content-length", str(len(body))))
    c.send_headers(sid, hs)
    c.send_data(sid, body, end_stream=trailers is None)
    if trailers:
        c.send_headers(sid, trailers, end_stream=True)


def raw(frame):
    return frame.serialize()


def main():
    os.makedirs(OUT, exist_ok=True)
    seeds = {}
    c = client()
    get(c, 1, extra=[("cookie", "a=1"), ("cookie", "b=2")])
    seeds["get"] = c.data_to_send()
    c = client()
    post(c, 1, b"x" * 100)
    get(c, 3, "/two")
    seeds["post_get"] = c.data_to_send()
    c = client()
    post(c, 1, b"hello", trailers=[("x-t", "1")], cl=False)
    seeds["chunked_trailers"] = c.data_to_send()
    c = client()
    for sid in range(1, 40, 2):
        get(c, sid)
        c.reset_stream(sid)
    seeds["rapid_reset"] = c.data_to_send()
    c = client()
    get(c, 1)
    b = c.data_to_send()
    b += raw(hf.PingFrame(0, opaque_data=b"12345678")) * 20
    b += raw(hf.SettingsFrame(0, settings={hf.SettingsFrame.INITIAL_WINDOW_SIZE: 0}))
    b += raw(hf.WindowUpdateFrame(1, window_increment=10))
    seeds["ping_settings"] = b
    h = hf.HeadersFrame(1)
    h.flags.add("END_STREAM")
    h.data = b"\x82\x86\x84"  # :method GET, :scheme http, :path /
    b = raw(h)
    for _ in range(40):
        b += raw(hf.ContinuationFrame(1, data=b""))
    seeds["continuation"] = b
    seeds["garbage"] = b"\x00\x00\x04\x08\x00\x00\x00\x00\x00\xff\xff\xff\xff"
    for i, (name, data) in enumerate(sorted(seeds.items())):
        for mode in (0, 0x81, 0x42):
            with open(os.path.join(OUT, "%s_%02x" % (name, mode)), "wb") as f:
                f.write(bytes([mode + i % 6, 7]) + data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
