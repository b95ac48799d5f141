#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Writes the seed corpus of fuzz_grpc_health: what a gRPC server sends back to the health
check (its SETTINGS, ACK, and an answer to stream 1), made with python3-h2."""
import os

import h2.config
import h2.connection
import h2.errors

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "grpc_health")
H200 = [(":status", "200"), ("content-type", "application/grpc")]


def server():
    """A server that has read the check's request on stream 1."""
    c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    c.initiate_connection()
    c.send_headers(1, [(":method", "POST"), (":scheme", "http"), (":authority", "a.test"),
                       (":path", "/grpc.health.v1.Health/Check"),
                       ("content-type", "application/grpc"), ("te", "trailers")])
    c.send_data(1, b"\0\0\0\0\x05\x0a\x03svc", end_stream=True)
    s = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    s.initiate_connection()
    s.receive_data(c.data_to_send())
    return s


def answer(msg, trailers=(("grpc-status", "0"),), headers=H200):
    s = server()
    s.send_headers(1, list(headers))
    if msg is not None:
        s.send_data(1, msg)
    s.send_headers(1, list(trailers), end_stream=True)
    return s.data_to_send()


def trailers_only(code, message=None):
    s = server()
    hs = H200 + [("grpc-status", str(code))]
    if message:
        hs.append(("grpc-message", message))
    s.send_headers(1, hs, end_stream=True)
    return s.data_to_send()


def main():
    os.makedirs(OUT, exist_ok=True)
    seeds = {
        "serving": answer(b"\0\0\0\0\x02\x08\x01"),
        "not_serving": answer(b"\0\0\0\0\x02\x08\x02"),
        "service_unknown": answer(b"\0\0\0\0\x02\x08\x03"),
        "empty_message": answer(b"\0\0\0\0\0"),
        "unknown_field": answer(b"\0\0\0\0\x04\x10\x05\x08\x01"),
        "two_messages": answer(b"\0\0\0\0\x02\x08\x01\0\0\0\0\x02\x08\x01"),
        "compressed": answer(b"\x01\0\0\0\x02\x08\x01"),
        "no_message": answer(None),
        "no_grpc_status": answer(b"\0\0\0\0\x02\x08\x01", trailers=(("x-other", "1"),)),
        "http_503": answer(None, headers=[(":status", "503")]),
        "unimplemented": trailers_only(12, "Method not found!"),
        "not_found": trailers_only(5, "unknown service"),
        "http1": b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n",
    }
    s = server()
    s.reset_stream(1, h2.errors.ErrorCodes.INTERNAL_ERROR)
    seeds["reset"] = s.data_to_send()
    s = server()
    s.close_connection(h2.errors.ErrorCodes.ENHANCE_YOUR_CALM, last_stream_id=0)
    seeds["goaway"] = s.data_to_send()
    s = server()
    s.ping(b"12345678")
    seeds["ping_then_nothing"] = s.data_to_send()
    for name, data in seeds.items():
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)
    print("%d seeds in %s" % (len(seeds), OUT))


if __name__ == "__main__":
    main()
