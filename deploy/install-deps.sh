#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Installs keel's build and test dependencies from Debian 12 packages (idempotent).
set -euo pipefail

PKGS=(build-essential cmake pkg-config clang clang-format libclang-rt-14-dev
      libev-dev libcurl4-openssl-dev libjansson-dev libssl-dev libnghttp2-dev
      libc-ares-dev libyaml-dev python3 curl prometheus dnsmasq-base
      nghttp2-client nghttp2-server python3-h2 python3-grpcio openssl)

missing=()
for p in "${PKGS[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "install-deps: all ${#PKGS[@]} packages present"
    exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
    SUDO=sudo
fi
echo "install-deps: installing ${missing[*]}"
$SUDO apt-get update -q
# prometheus is only needed for promtool; keep its daemon from starting where that is possible.
DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 $SUDO apt-get install -y -q --no-install-recommends \
    "${missing[@]}"
