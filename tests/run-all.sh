#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The test command: formatting, then every ctest label (unit, integ, fuzzreplay) on a
# warnings-as-errors build and again on an ASan+UBSan build.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

deploy/install-deps.sh

echo "== clang-format check"
mapfile -t SOURCES < <(git ls-files '*.c' '*.h' 2>/dev/null || find include proto sidecar discovery tests -name '*.[ch]')
clang-format --dry-run --Werror "${SOURCES[@]}"
echo "formatting ok (${#SOURCES[@]} files)"

JOBS=$(nproc)
run_suite() {
    local dir=$1
    shift
    echo "== build $dir ($*)"
    cmake -S "$ROOT" -B "$ROOT/$dir" -DKEEL_WERROR=ON "$@" >/dev/null
    cmake --build "$ROOT/$dir" -j"$JOBS"
    echo "== ctest $dir"
    (cd "$ROOT/$dir" && ctest --output-on-failure -j"$JOBS" --timeout 900)
}

run_suite build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKEEL_SANITIZE=OFF
# detect_leaks stays on: every test binary and keel itself must free what they allocate.
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
run_suite build-asan -DCMAKE_BUILD_TYPE=Debug -DKEEL_SANITIZE=ON
echo "all test suites passed"
