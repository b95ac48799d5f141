#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Quickstart: install dependencies, build keel, start demo backends and keel in front of them
# (deploy/quickstart.yaml), send a few requests through it. In a terminal it keeps serving
# until Ctrl-C; without one it stops everything it started and exits.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

deploy/install-deps.sh
cmake -S "$ROOT" -B "$ROOT/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$ROOT/build" -j"$(nproc)" --target keel

RUN=$(mktemp -d /tmp/keel-quickstart.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do
        kill "$p" 2>/dev/null || true
    done
    for p in "${PIDS[@]}"; do
        wait "$p" 2>/dev/null || true
    done
    rm -rf "$RUN"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for port in 8080 8081 9901 9001 9002 9003 9004 9005; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        echo "quickstart: port $port on 127.0.0.1 is in use; stop what uses it and retry" >&2
        exit 1
    fi
done

start_backend() { # id port mode [--greet]
    /usr/bin/python3 tests/integ/fake_backend.py --id "$1" --port "$2" --mode "$3" ${4:-} \
        >"$RUN/$1.out" 2>"$RUN/$1.err" &
    PIDS+=($!)
}
start_backend api-1 9001 http
start_backend api-2 9002 http
start_backend static-1 9003 http
start_backend tcp-1 9004 tcp-echo --greet
start_backend tcp-2 9005 tcp-echo --greet
for id in api-1 api-2 static-1 tcp-1 tcp-2; do
    for _ in $(seq 50); do
        grep -q ready "$RUN/$id.out" 2>/dev/null && break
        sleep 0.1
    done
done

build/keel --check deploy/quickstart.yaml
build/keel -c deploy/quickstart.yaml 2>"$RUN/keel.log" &
KEEL_PID=$!
PIDS+=($KEEL_PID)
for _ in $(seq 100); do
    curl -fs http://127.0.0.1:9901/ready >/dev/null 2>&1 && break
    sleep 0.1
done

echo
echo "== requests through keel (http://127.0.0.1:8080)"
for i in 1 2 3 4 5 6 7 8; do
    # Eight slow requests at once: weighted least-connections keeps the in-flight counts in
    # proportion to the weights (1:3), so api-2 takes about three times as many.
    curl -s -o /dev/null -D - "http://127.0.0.1:8080/api/sleep?ms=500&i=$i" \
        | tr -d '\r' | awk -v i="$i" '/^HTTP/{s=$2} /^X-Backend-Id/{b=$2} END{printf "GET /api/sleep?ms=500 #%s -> %s from %s\n", i, s, b}' &
done
wait_for_curls() { for j in $(jobs -p); do case " ${PIDS[*]} " in *" $j "*) ;; *) wait "$j" || true;; esac; done; }
wait_for_curls
for path in /static/logo.png /admin/; do
    curl -s -o /dev/null -D - "http://127.0.0.1:8080$path" \
        | tr -d '\r' | awk -v p="$path" '/^HTTP/{s=$2} /^X-Backend-Id/{b=$2} END{printf "GET %s -> %s from %s\n", p, s, (b==""?"keel (no route)":b)}'
done
echo "== HTTP/2 on the same port (h2c prior knowledge): 4 requests on one connection"
# One multiplexed connection (nghttp, from nghttp2-client), each stream balanced on its own.
nghttp -nv "http://127.0.0.1:8080/api/h2?i=1" "http://127.0.0.1:8080/api/h2?i=2" \
    "http://127.0.0.1:8080/api/h2?i=3" "http://127.0.0.1:8080/api/h2?i=4" 2>&1 \
    | awk '/recv \(stream_id=[0-9]+\) (:status|x-backend-id):/ {s=$4; gsub(/[^0-9]/,"",s);
           if ($5==":status:") st[s]=$6; else printf "HTTP/2 stream %s -> %s from %s\n", s, st[s], $6}'
echo "== tcp through keel (127.0.0.1:8081, echo backends)"
for i in 1 2; do
    reply=$(/usr/bin/python3 -c '
import socket, sys
s = socket.create_connection(("127.0.0.1", 8081), timeout=5)
s.sendall(b"ping %s\n" % sys.argv[1].encode())
s.shutdown(socket.SHUT_WR)
data = b""
while True:
    d = s.recv(100)
    if not d:
        break
    data += d
greet, _, echo = data.decode().partition("\n")
print("%s from %s" % (echo.strip(), greet))' "$i")
    echo "tcp connection #$i echoed: $reply"
done
echo
echo "== endpoints as keel sees them (http://127.0.0.1:9901/v1/clusters)"
curl -s http://127.0.0.1:9901/v1/clusters | /usr/bin/python3 -c '
import json, sys
for c in json.load(sys.stdin)["clusters"]:
    for e in c["endpoints"]:
        n = sum(e["requests"].values())
        print("%-9s %-16s weight=%s state=%s requests=%d"
              % (c["name"], e["address"], e["weight"], e["state"], n))'

if [ -t 0 ] && [ -t 1 ]; then
    echo
    echo "keel is serving: curl http://127.0.0.1:8080/api/hello"
    echo "admin: http://127.0.0.1:9901/v1/clusters  http://127.0.0.1:9901/metrics"
    echo "log: $RUN/keel.log   (Ctrl-C stops keel and the demo backends)"
    wait "$KEEL_PID" || true
else
    kill -TERM "$KEEL_PID"
    wait "$KEEL_PID" && echo "keel drained and exited 0"
fi
