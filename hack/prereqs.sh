#!/usr/bin/env bash
# Host prerequisites for the tests and the demo: Debian packages, then the
# cluster binaries built from the Go module proxy (cached, so a warm run is quick).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${TORNADO_OPERATOR_CACHE:-$HOME/.cache/tornado-operator}

[ "$(uname -s)" = Linux ] || { echo "prereqs: the local cluster needs Linux (this is $(uname -s))." >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "prereqs: needs root to install packages and run the local cluster (try sudo make ...)." >&2; exit 2; }

pkgs=(docker.io containerd runc containernetworking-plugins debootstrap iptables conntrack wrk make)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "prereqs: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v go >/dev/null || { echo "prereqs: Go is needed to build Kubernetes from the Go module proxy (https://go.dev/doc/install)." >&2; exit 2; }
# Containers must not be started by the packages' own service scripts here:
# the cluster tool runs its own containerd, and dockerd is started on demand.
bash "$here/build-binaries.sh" "$cache"
