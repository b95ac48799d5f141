#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Runs h2spec (HTTP/2 conformance) against keel: h2c prior knowledge, then h2 over TLS (ALPN).
#
# Usage: tests/h2spec/run.sh [H2SPEC_ARGS...]   e.g. run.sh http2/6.5 (only that section)
# Environment:
#   KEEL_BIN        keel binary (default: build/keel of this tree)
#   H2SPEC          h2spec binary (default: build-h2spec/h2spec, made by tests/h2spec/build.sh)
#   H2SPEC_OUT      directory for configs, logs and JUnit reports (default: a new /tmp dir)
#   H2SPEC_TIMEOUT  seconds per case (-o, default 5)
#   H2SPEC_STRICT=1 also run h2spec's strict cases (-S)
#   H2SPEC_MODES    "h2c tls" (default), or one of them
#   H2SPEC_EXPECTED_FAIL  failures to accept, space-separated MODE:CASE, e.g.
#                   "h2c:http2/3.5/2" (CASE = section/number as in h2spec's output); each is
#                   still reported, and one that passes is reported too. Default:
#                   "h2c:http2/3.5/2" (an http listener also serves HTTP/1.1, so a bad preface
#                   is answered as HTTP/1.1: by design); set it empty to accept nothing.
# Prints each run's summary and failures; the last line is "h2spec: N passed, N failed, N
# skipped" over every run. Exits 0 when no case failed (other than expected ones), 1 when one
# did, 2 on a setup error.
# Everything it starts (fake backend, keel) is stopped by PID on exit. Loopback only.
set -uo pipefail
H2SPEC_EXPECTED_FAIL=${H2SPEC_EXPECTED_FAIL-h2c:http2/3.5/2}

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
keel="${KEEL_BIN:-$root/build/keel}"
h2spec="${H2SPEC:-$root/build-h2spec/h2spec}"
timeout_s="${H2SPEC_TIMEOUT:-5}"
modes="${H2SPEC_MODES:-h2c tls}"
py=/usr/bin/python3

die() {
    echo "run.sh: $*" >&2
    exit 2
}
[ -x "$keel" ] || die "no keel binary at $keel (build it, or set KEEL_BIN)"
[ -x "$h2spec" ] || die "no h2spec at $h2spec (run tests/h2spec/build.sh, or set H2SPEC)"
command -v openssl >/dev/null || die "openssl is needed for the throwaway certificate"
command -v curl >/dev/null || die "curl is needed to poll keel's /ready"

out="${H2SPEC_OUT:-$(mktemp -d /tmp/keel-h2spec.XXXXXX)}"
mkdir -p "$out"
pids=()
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
    local p
    for p in "${pids[@]}"; do
        kill -TERM "$p" 2>/dev/null
    done
    for p in "${pids[@]}"; do
        for _ in $(seq 1 50); do # up to 5 s each, then SIGKILL
            kill -0 "$p" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$p" 2>/dev/null
        wait "$p" 2>/dev/null
    done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Three free loopback ports (h2c listener, TLS listener, admin), held together while picked.
read -r port_h2c port_tls port_admin < <($py - <<'PY'
import socket
ss = [socket.socket() for _ in range(3)]
for s in ss:
    s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in ss])
PY
)
[ -n "$port_admin" ] || die "could not pick free ports"

# Throwaway self-signed certificate (h2spec -k does not verify it).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -keyout "$out/key.pem" -out "$out/cert.pem" >"$out/openssl.log" 2>&1 ||
    die "openssl failed: $(cat "$out/openssl.log")"

# The fake HTTP/1.1 backend on a free port; its first stdout line is "ready HOST:PORT".
$py "$root/tests/integ/fake_backend.py" --id b1 --port 0 >"$out/backend.out" \
    2>"$out/backend.err" </dev/null &
pids+=($!)
be=""
for _ in $(seq 1 100); do # 10 s
    be="$(sed -n 's/^ready \([^ ]*\).*/\1/p' "$out/backend.out")"
    [ -n "$be" ] && break
    kill -0 "${pids[-1]}" 2>/dev/null || break
    sleep 0.1
done
[ -n "$be" ] || die "fake backend did not start: $(cat "$out/backend.err")"

cat >"$out/keel.yaml" <<YAML
workers: 2
log_level: info
access_log: false
drain_timeout: 1s
admin:
  address: 127.0.0.1:$port_admin
listeners:
  - name: h2c
    address: 127.0.0.1:$port_h2c
    protocol: http
    routes:
      - cluster: app
  - name: tls
    address: 127.0.0.1:$port_tls
    protocol: http
    tls:
      cert: $out/cert.pem
      key: $out/key.pem
    routes:
      - cluster: app
clusters:
  - name: app
    endpoints:
      - $be
YAML

"$keel" -c "$out/keel.yaml" >"$out/keel.log" 2>&1 </dev/null &
pids+=($!)
ready=""
for _ in $(seq 1 100); do # 10 s
    if [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 \
        "http://127.0.0.1:$port_admin/ready")" = 200 ]; then
        ready=1
        break
    fi
    kill -0 "${pids[-1]}" 2>/dev/null || break
    sleep 0.1
done
[ -n "$ready" ] || die "keel not ready within 10 s; log: $(tail -20 "$out/keel.log")"

junit_ids='
import sys
import xml.etree.ElementTree as ET
for suite in ET.parse(sys.argv[1]).getroot().iter("testsuite"):
    for i, tc in enumerate(suite.iter("testcase"), 1):
        if tc.find("failure") is not None or tc.find("error") is not None:
            print("%s/%d" % (tc.get("package") or suite.get("package"), i))
'
extra=()
[ "${H2SPEC_STRICT:-0}" = 1 ] && extra+=(-S)
tot_p=0 tot_f=0 tot_s=0 status=0
for mode in $modes; do
    case "$mode" in
    h2c) args=(-h 127.0.0.1 -p "$port_h2c") ;;
    tls) args=(-h 127.0.0.1 -p "$port_tls" -t -k) ;;
    *) die "unknown mode $mode (h2c or tls)" ;;
    esac
    echo "== h2spec $mode: 127.0.0.1:${args[3]} (log $out/h2spec-$mode.log)"
    # h2spec's own run time is bounded by its per-case timeout; 20 min is a hard cap.
    timeout 1200 "$h2spec" "${args[@]}" -o "$timeout_s" -j "$out/junit-$mode.xml" \
        "${extra[@]}" "$@" >"$out/h2spec-$mode.log" 2>&1
    rc=$?
    summary="$(grep -E '^[0-9]+ tests, [0-9]+ passed, [0-9]+ skipped, [0-9]+ failed' \
        "$out/h2spec-$mode.log" | tail -1)"
    if [ -z "$summary" ]; then
        echo "run.sh: h2spec $mode exited $rc without a summary:" >&2
        tail -20 "$out/h2spec-$mode.log" >&2
        status=1
        continue
    fi
    # The failure report (from "Failures:" on), else just the summary.
    sed -n '/^Failures:/,$p' "$out/h2spec-$mode.log"
    read -r _ _ p _ s _ f _ <<<"${summary//,/}"
    echo "$mode: $summary"
    tot_p=$((tot_p + p)) tot_s=$((tot_s + s)) tot_f=$((tot_f + f))
    # Failing case ids from the JUnit report: package (section) + position in the section.
    ids="$($py -c "$junit_ids" "$out/junit-$mode.xml")" || ids="?"
    unexpected=0
    for id in $ids; do
        case " ${H2SPEC_EXPECTED_FAIL:-} " in
        *" $mode:$id "*) echo "$mode: $id failed (expected: listed in H2SPEC_EXPECTED_FAIL)" ;;
        *)
            echo "$mode: $id FAILED"
            unexpected=$((unexpected + 1))
            ;;
        esac
    done
    for x in ${H2SPEC_EXPECTED_FAIL:-}; do
        case "$x" in
        "$mode:"*)
            case " $ids " in
            *" ${x#*:} "*) ;;
            *) echo "$mode: ${x#*:} listed in H2SPEC_EXPECTED_FAIL but did not fail" ;;
            esac
            ;;
        esac
    done
    if [ "$unexpected" -gt 0 ] || { [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; }; then
        status=1
    fi
done
if ! kill -0 "${pids[-1]}" 2>/dev/null; then
    echo "run.sh: keel exited during the run; log: $out/keel.log" >&2
    status=1
fi
echo "reports: $out/junit-*.xml, keel log: $out/keel.log"
echo "h2spec: $tot_p passed, $tot_f failed, $tot_s skipped"
exit "$status"
