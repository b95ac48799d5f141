#!/bin/sh
# SPDX-License-Identifier: MIT
# run.sh: install the tools, build keel (Release) and run the keel/HAProxy/nginx benchmark.
#
#   tests/bench/run.sh --short     # under 2 minutes: pinned mode, 2 rounds, 2 s runs
#   tests/bench/run.sh             # full: pinned and unpinned, 3 rounds, 8 s runs (~12 min)
#
# Other options are passed to bench.py (--rounds N, --duration S, --modes pinned,unpinned,
# --keep, --note TEXT, --keel PATH). Environment: KEEL_BENCH_NO_BUILD=1 skips the build.
# Everything runs on 127.0.0.1; results go to tests/bench/results/latest.{md,json}.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build="$root/build-bench"
blog="$build/bench-build.log"

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo -n "$@"; fi
}

# ---- tools (Debian packages); nothing already installed is touched or removed
need=""
for pair in haproxy:haproxy nginx:nginx wrk:wrk iperf3:iperf3 curl:curl taskset:util-linux \
    h2load:nghttp2-client nghttpd:nghttp2-server; do
    cmd=${pair%%:*}
    pkg=${pair#*:}
    command -v "$cmd" >/dev/null 2>&1 || need="$need $pkg"
done
if command -v nginx >/dev/null 2>&1 && nginx -V 2>&1 | grep -q -- '--with-stream=dynamic' &&
    [ ! -e /usr/lib/nginx/modules/ngx_stream_module.so ]; then
    need="$need libnginx-mod-stream"
elif ! command -v nginx >/dev/null 2>&1; then
    need="$need libnginx-mod-stream"
fi
if [ -n "$need" ]; then
    echo "run.sh: installing:$need" >&2
    # shellcheck disable=SC2086
    apt-cache policy $need >&2
    # The haproxy and nginx packages start their system service on install (nginx on port 80
    # of every address). Forbid that with a temporary policy-rc.d, unless one already exists;
    # the benchmark runs its own instances on loopback.
    policy=/usr/sbin/policy-rc.d
    made_policy=0
    if [ ! -e "$policy" ]; then
        as_root sh -c "printf '#!/bin/sh\nexit 101\n' > $policy && chmod 755 $policy"
        made_policy=1
    fi
    # shellcheck disable=SC2086
    if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y \
        --no-install-recommends $need; then
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update
        # shellcheck disable=SC2086
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y \
            --no-install-recommends $need
    fi
    if [ "$made_policy" = 1 ]; then as_root rm -f "$policy"; fi
fi

# ---- keel, Release build in its own directory
if [ "${KEEL_BENCH_NO_BUILD:-0}" != 1 ]; then
    mkdir -p "$build"
    echo "run.sh: building keel (Release) in $build" >&2
    if ! { cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DKEEL_WERROR=ON \
        >"$blog" 2>&1 && cmake --build "$build" -j2 --target keel >>"$blog" 2>&1; }; then
        # -O3 can raise warnings (e.g. -Wmaybe-uninitialized) that -O2 does not; measure
        # anyway, and say so in the report.
        grep -E 'error|warning' "$blog" | head -20 >&2 || true
        echo "run.sh: Release build failed with -Werror; retrying with -DKEEL_WERROR=OFF" >&2
        cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DKEEL_WERROR=OFF \
            >>"$blog" 2>&1
        cmake --build "$build" -j2 --target keel >>"$blog" 2>&1
        set -- --note "keel Release build needed -DKEEL_WERROR=OFF (see $blog)" "$@"
    fi
fi

exec /usr/bin/python3 "$here/bench.py" "$@"
