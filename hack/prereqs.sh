#!/usr/bin/env bash
# Host prerequisites for the tests and the demo: Debian packages, then the
# cluster binaries built from the Go module proxy (cached, so a warm run is quick).
# One line per step; apt's and go's output go to $TORNADO_OPERATOR_CACHE/logs/.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${TORNADO_OPERATOR_CACHE:-$HOME/.cache/tornado-operator}
export STEP_LOGS=${STEP_LOGS:-$cache/logs}

[ "$(uname -s)" = Linux ] || { echo "prereqs: the local cluster needs Linux (this is $(uname -s))." >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "prereqs: needs root to install packages and run the local cluster (try sudo make ...)." >&2; exit 2; }

# The packages, then build-binaries.sh's components, numbered as one phase.
components=$(bash "$here/build-binaries.sh" --components)
export STEP_PHASE=prereqs STEP_FIRST=1 STEP_TOTAL=$((1 + $(wc -w <<<"$components")))
# shellcheck source=hack/steps.sh
. "$here/steps.sh"

# ipset: kube-router, the local cluster's NetworkPolicy enforcer, keeps its address sets with it.
# redis-server: the broker the consumer template's tests and benchmarks/consumer_throughput.py start
# on loopback, each on a free port of its own (a packaged service on 6379 is never used); the unit
# tests of the lag autoscaler read a real one on loopback too.
pkgs=(docker.io containerd runc containernetworking-plugins debootstrap iptables ipset conntrack wrk make redis-server)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
install_packages() {
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
}
if [ ${#missing[@]} -gt 0 ]; then
  step_run prereqs-packages "installing Debian packages: ${missing[*]}" "about 2 min cold" install_packages
else
  step_skip "Debian packages" "installed"
fi
command -v go >/dev/null || { echo "prereqs: Go is needed to build Kubernetes from the Go module proxy (https://go.dev/doc/install)." >&2; exit 2; }
# Containers must not be started by the packages' own service scripts here:
# the cluster tool runs its own containerd, and dockerd is started on demand.
STEP_FIRST=2 bash "$here/build-binaries.sh" "$cache"
