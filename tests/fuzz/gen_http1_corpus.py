#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# Writes the seed corpora for the fuzz_http1_* targets (valid messages, smuggling cases, edges).
# Files named found_* in the corpora were added from libFuzzer runs (-merge=1) and are kept.
import os

HERE = os.path.dirname(os.path.abspath(__file__))

REQUESTS = {
    "get_min": b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n",
    "get_lf_only": b"GET /a?b=c HTTP/1.1\nHost: h\n\n",
    "leading_crlf": b"\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n",
    "http10_nohost": b"GET /x HTTP/1.0\r\n\r\n",
    "post_cl": b"POST /upload HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello",
    "post_cl_list": b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 5\r\n\r\nhello",
    "post_cl_dup_same": b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 7\r\ncontent-length: 7\r\n\r\n",
    "post_chunked": b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    "websocket": b"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, keep-alive\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    "expect": b"PUT /f HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc",
    "absolute": b"GET http://example.com/x?y HTTP/1.1\r\nHost: example.com\r\n\r\n",
    "connect": b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
    "connect_v6": b"CONNECT [::1]:8443 HTTP/1.1\r\nHost: [::1]:8443\r\n\r\n",
    "options_star": b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",
    "pipelined": b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n",
    "browser": b"GET /index.html HTTP/1.1\r\nHost: www.example.com\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64)\r\nAccept: text/html,application/xhtml+xml;q=0.9,*/*;q=0.8\r\nAccept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate, br\r\nCookie: a=1; b=2\r\nConnection: keep-alive\r\n\r\n",
    "obs_text": b"GET / HTTP/1.1\r\nHost: h\r\nX-Bin: caf\xc3\xa9 \xff\r\n\r\n",
    "empty_values": b"GET / HTTP/1.1\r\nX-Empty:\r\nHost: h\r\nX-Blank: \t \r\n\r\n",
    # smuggling and malformed cases
    "cl_te": b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "te_cl": b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n",
    "te_twice": b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
    "te_chunked_gzip": b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
    "te_gzip_chunked": b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
    "te_xchunked": b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: xchunked\r\n\r\n",
    "te_http10": b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
    "te_space_colon": b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding : chunked\r\n\r\n",
    "te_vtab": b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\x0bchunked\r\n\r\n",
    "te_folded": b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\r\n chunked\r\n\r\n",
    "cl_differ": b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
    "cl_list_differ": b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 6\r\n\r\n",
    "cl_sign": b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +5\r\n\r\n",
    "cl_hex": b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0x5\r\n\r\n",
    "cl_overflow": b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999999\r\n\r\n",
    "cl_max": b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4611686018427387904\r\n\r\n",
    "obs_fold": b"GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n",
    "bare_cr_value": b"GET / HTTP/1.1\r\nHost: h\r\nX: a\rb\r\n\r\n",
    "bare_cr_line": b"GET / HTTP/1.1\rHost: h\r\n\r\n",
    "nul_value": b"GET / HTTP/1.1\r\nHost: h\r\nX: a\x00b\r\n\r\n",
    "no_host": b"GET / HTTP/1.1\r\n\r\n",
    "two_hosts": b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    "host_at": b"GET / HTTP/1.1\r\nHost: user@h\r\n\r\n",
    "target_space": b"GET /a b HTTP/1.1\r\nHost: h\r\n\r\n",
    "target_8bit": b"GET /a\x80 HTTP/1.1\r\nHost: h\r\n\r\n",
    "target_del": b"GET /a\x7f HTTP/1.1\r\nHost: h\r\n\r\n",
    "http20": b"GET / HTTP/2.0\r\nHost: h\r\n\r\n",
    "http110": b"GET / HTTP/1.10\r\nHost: h\r\n\r\n",
    "star_get": b"GET * HTTP/1.1\r\nHost: h\r\n\r\n",
    "connect_origin": b"CONNECT / HTTP/1.1\r\nHost: h\r\n\r\n",
    "long_line": b"GET /" + b"a" * 200 + b" HTTP/1.1\r\nHost: h\r\n\r\n",
    "many_headers": b"GET / HTTP/1.1\r\nHost: h\r\n" + b"".join(b"X%d: v\r\n" % i for i in range(120)) + b"\r\n",
    "double_sp": b"GET  / HTTP/1.1\r\nHost: h\r\n\r\n",
}

RESPONSES = {
    "ok_cl": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
    "no_content": b"HTTP/1.1 204 No Content\r\n\r\n",
    "not_modified": b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\nETag: \"x\"\r\n\r\n",
    "continue_then_ok": b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    "switching": b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
    "no_reason_no_sp": b"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n",
    "empty_reason": b"HTTP/1.1 200 \r\n\r\n",
    "http10_close": b"HTTP/1.0 200 OK\r\nConnection: close\r\n\r\nbody",
    "chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    "gzip_chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
    "gzip_only": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
    "reason_obs_text": b"HTTP/1.1 404 Not \t Found \xe2\x9c\x97\r\nContent-Length: 2, 2\r\n\r\nno",
    "lf_only": b"HTTP/1.1 999 Whatever\nX: y\n\n",
    "cookies": b"HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nContent-Length: 3\r\n\r\nabc",
    "early_hints": b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n",
    "typical": b"HTTP/1.1 200 OK\r\nDate: Mon, 27 Jul 2009 12:28:53 GMT\r\nServer: Apache\r\nLast-Modified: Wed, 22 Jul 2009 19:15:56 GMT\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nhi",
    "cl_te": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
    "te_twice": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
    "chunked_gzip": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
    "te_http10": b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
    "cl_differ": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
    "cl_bad": b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n",
    "obs_fold": b"HTTP/1.1 200 OK\r\nX: a\r\n folded\r\n\r\n",
    "space_colon": b"HTTP/1.1 200 OK\r\nX : a\r\n\r\n",
    "bare_cr": b"HTTP/1.1 200 O\rK\r\n\r\n",
    "status_low": b"HTTP/1.1 099 Low\r\n\r\n",
    "status_4digit": b"HTTP/1.1 2000 Long\r\n\r\n",
    "http2": b"HTTP/2.0 200 OK\r\n\r\n",
    "nul": b"HTTP/1.1 200 OK\r\nX: a\x00\r\n\r\n",
    "many_headers": b"HTTP/1.1 200 OK\r\n" + b"".join(b"X%d: v\r\n" % i for i in range(120)) + b"\r\n",
}

CHUNKED = {
    "simple": b"5\r\nhello\r\n0\r\n\r\n",
    "multi": b"3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n",
    "hex_case": b"A\r\n0123456789\r\na\r\nabcdefghij\r\n0\r\n\r\n",
    "ext": b"5;name=value\r\nhello\r\n0;last\r\n\r\n",
    "ext_bws": b"5 ;x\r\nhello\r\n0\t; y = \"q\\\"x\" \r\n\r\n",
    "trailers": b"0\r\nX-Trailer: yes\r\nY: z\r\n\r\n",
    "lf_only": b"5\nhello\r\n0\n\n",
    "next_message": b"0\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n",
    "leading_zeros": b"005\r\nhello\r\n0000\r\n\r\n",
    "fifteen_digits": b"000000000000005\r\nhello\r\n0\r\n\r\n",
    "empty": b"0\r\n\r\n",
    "crlf_in_data": b"b\r\n0\r\n\r\n0\r\n\r\nX\r\n0\r\n\r\n",
    "binary": b"4\r\n\x00\r\n\xff\r\n3\r\n\n\n\n\r\n0\r\n\r\n",
    "big_size": b"fffffffffffffff\r\nabcd",
    "non_hex": b"g\r\nhello\r\n0\r\n\r\n",
    "empty_size": b"\r\nhello\r\n0\r\n\r\n",
    "neg": b"-1\r\n",
    "0x": b"0x10\r\n",
    "overflow": b"1000000000000000\r\nx\r\n",
    "size_trailing_sp": b"5 \r\nhello\r\n0\r\n\r\n",
    "bare_cr_size": b"5\rX",
    "ext_ctl": b"5;a\x01\r\nhello\r\n",
    "data_overrun": b"5\r\nhelloX\r\n0\r\n\r\n",
    "no_crlf_after_data": b"5\r\nhello0\r\n\r\n",
    "lf_after_data": b"5\r\nhello\n0\r\n\r\n",
    "short_size": b"3\r\nhello\r\n0\r\n\r\n",
    "trailer_fold": b"0\r\nX: a\r\n b\r\n\r\n",
    "trailer_no_colon": b"0\r\nXY\r\n\r\n",
    "trailer_space_colon": b"0\r\nX : a\r\n\r\n",
    "trailer_nul": b"0\r\nX: a\x00\r\n\r\n",
    "final_bare_cr": b"0\r\n\r\r\n",
    "long_ext": b"1;" + b"e" * 4100 + b"\r\nx\r\n0\r\n\r\n",
    "smuggle_te_cl": b"0\r\n\r\nGET /admin HTTP/1.1\r\nHost: h\r\n\r\n",
}


def write(name, cases, prefix=b""):
    d = os.path.join(HERE, "corpus", name)
    os.makedirs(d, exist_ok=True)
    for i, (k, v) in enumerate(sorted(cases.items())):
        with open(os.path.join(d, "seed_" + k), "wb") as f:
            # the chunked target takes its split points from the first two bytes
            f.write((bytes([i * 7 % 256, i * 13 % 256]) if prefix else b"") + v)


write("http1_request", REQUESTS)
write("http1_response", RESPONSES)
write("http1_chunked", CHUNKED, prefix=b"x")
