#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Builds h2spec (HTTP/2 conformance tester) from source with Debian's Go and Go library packages.
#
# Usage: tests/h2spec/build.sh [H2SPEC_SOURCE]
#   H2SPEC_SOURCE: an h2spec checkout or git repository; default $H2SPEC_SRC, else
#   /work/.mirror/summerwind+h2spec/repo when present. Output: <repo>/build-h2spec/h2spec
#   (override the directory with $H2SPEC_OUT). Patches tests/h2spec/*.patch are applied in order.
#
# No network except apt-get: GOPATH mode (GO111MODULE=off) against /usr/share/gocode/src, where
# the golang-*-dev packages put their sources; GOPROXY=off so nothing is fetched.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
src="${1:-${H2SPEC_SRC:-}}"
if [ -z "$src" ] && [ -d /work/.mirror/summerwind+h2spec/repo ]; then
    src=/work/.mirror/summerwind+h2spec/repo
fi
if [ -z "$src" ] || [ ! -d "$src" ]; then
    echo "build.sh: no h2spec source; pass a directory as \$1 or set H2SPEC_SRC" >&2
    exit 2
fi
out="${H2SPEC_OUT:-$root/build-h2spec}"

# 1. Debian packages (idempotent: apt-get only runs when something is missing).
PKGS=(golang-go git patch
      golang-github-fatih-color-dev golang-github-spf13-cobra-dev golang-github-spf13-pflag-dev
      golang-golang-x-net-dev golang-golang-x-sys-dev golang-golang-x-text-dev
      golang-github-mattn-go-colorable-dev golang-github-mattn-go-isatty-dev
      golang-github-inconshreveable-mousetrap-dev)
missing=()
for p in "${PKGS[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done
if [ ${#missing[@]} -gt 0 ]; then
    SUDO=""
    if [ "$(id -u)" != 0 ]; then
        SUDO=sudo
    fi
    echo "build.sh: installing ${missing[*]}"
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends \
        "${missing[@]}"
fi

# 2. A private GOPATH holding the source as github.com/summerwind/h2spec.
work="$out/gopath"
pkg="$work/src/github.com/summerwind/h2spec"
rm -rf "$work"
mkdir -p "$pkg"
commit=unknown
if [ -e "$src/.git" ] ||
    [ "$(git -C "$src" rev-parse --is-bare-repository 2>/dev/null || true)" = true ]; then
    # A repository (bare or not): export the committed tree.
    commit="$(git -C "$src" rev-parse --verify HEAD)"
    git -C "$src" archive --format=tar HEAD | tar -x -C "$pkg"
else
    cp -a "$src"/. "$pkg"/
fi
shopt -s nullglob
for p in "$here"/*.patch; do
    echo "build.sh: applying $(basename "$p")"
    patch -d "$pkg" -p1 --forward --batch <"$p"
done
shopt -u nullglob

# 3. Build. Debian's library versions are newer than go.mod pins; GOPATH mode ignores go.mod.
version="$(sed -n 's/^VERSION=//p' "$pkg/Makefile" 2>/dev/null || true)"
mkdir -p "$out"
(
    cd "$pkg"
    export GO111MODULE=off GOPROXY=off GOFLAGS='' GOTOOLCHAIN=local
    export GOPATH="$work:/usr/share/gocode" GOCACHE="$out/gocache"
    timeout 600 go build -o "$out/h2spec" \
        -ldflags "-X main.VERSION=${version:-dev} -X main.COMMIT=$commit" ./cmd/h2spec
)
echo "build.sh: built $out/h2spec ($("$out/h2spec" --version 2>&1 | head -1))"
