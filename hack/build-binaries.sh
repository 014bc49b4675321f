#!/usr/bin/env bash
# Builds the local cluster's binaries from the Go module proxy into a cache
# keyed by version, so a warm run rebuilds nothing. Nothing lands in the repo.
#
#   build-binaries.sh CACHE_DIR
#
# Versions are pinned in versions.env, next to this script (hack/paths.py reads it too).
set -euo pipefail

CACHE=${1:?usage: build-binaries.sh CACHE_DIR}
# shellcheck source=hack/versions.env
. "$(dirname "$0")/versions.env"

BIN="$CACHE/k8s-$KUBERNETES_VERSION/bin"
mkdir -p "$BIN"
export GOFLAGS="-buildvcs=false -p=2" CGO_ENABLED=0 GOTOOLCHAIN=local

stamp_ok() { [ -x "$1" ] && "$@" >/dev/null 2>&1; }
# `grep -c` and `sed -n 1p` read all their input: `grep -q`/`head` stop early, and under
# pipefail the writer's SIGPIPE (exit 141) would fail the step or read as "not cached".

build_kubernetes() {
  if stamp_ok "$BIN/kube-apiserver" --version && "$BIN/kube-apiserver" --version | grep -c "v$KUBERNETES_VERSION" >/dev/null \
     && [ -x "$BIN/kubelet" ] && [ -x "$BIN/kubectl" ] && [ -x "$BIN/kubeadm" ] && [ -x "$BIN/kube-proxy" ] \
     && [ -x "$BIN/kube-controller-manager" ] && [ -x "$BIN/kube-scheduler" ]; then
    echo "kubernetes v$KUBERNETES_VERSION: cached"; return; fi
  local K=$KUBERNETES_VERSION MIN S W
  MIN=$(echo "$K" | cut -d. -f2); S=v0.${K#1.}; W="$CACHE/build/k8s-$K"
  rm -rf "$W"; mkdir -p "$W"; cd "$W"
  # A wrapper module: k8s.io/kubernetes's own replace lines only apply when it
  # is the main module, so we pin every staging module to its published tag.
  printf 'module local/k8sbuild\n\ngo 1.24.0\n\ngodebug default=go1.24\n' > go.mod
  local gomod
  gomod=$(go mod download -json "k8s.io/kubernetes@v$K" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  for m in $(sed -n 's|^[[:space:]]*\(k8s.io/[^ ]*\) => \./staging/.*|\1|p' "$gomod"); do
    go mod edit -replace="$m=$m@$S"; done
  local P="kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl kubeadm"
  # shellcheck disable=SC2046
  go get -tool $(for c in $P; do echo "k8s.io/kubernetes/cmd/$c@v$K"; done)
  local LDF="-s -w" v
  for v in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    LDF="$LDF -X $v.gitVersion=v$K -X $v.gitMajor=1 -X $v.gitMinor=$MIN -X $v.gitTreeState=clean -X $v.buildDate=1970-01-01T00:00:00Z"; done
  # shellcheck disable=SC2046
  go build -trimpath -tags selinux,notest,grpcnotrace -ldflags "$LDF" -o "$BIN/" \
    $(for c in $P; do echo "k8s.io/kubernetes/cmd/$c"; done)
  "$BIN/kube-apiserver" --version
}

build_etcd() {
  if [ -x "$BIN/etcd" ] && "$BIN/etcd" --version | grep -c "etcd Version: $ETCD_VERSION" >/dev/null; then
    echo "etcd $ETCD_VERSION: cached"; return; fi
  local W="$CACHE/build/etcd-$ETCD_VERSION"
  rm -rf "$W"; mkdir -p "$W"; cd "$W"
  # etcd's go.mod has replace lines, so `go install` refuses it; a wrapper
  # module ignores a dependency's replaces.
  printf 'module local/etcdbuild\n\ngo 1.25.0\n' > go.mod
  go get -tool "go.etcd.io/etcd/server/v3@v$ETCD_VERSION"
  go build -trimpath -ldflags "-s -w" -o "$BIN/etcd" go.etcd.io/etcd/server/v3
  "$BIN/etcd" --version | sed -n 1p
}

build_helm() {
  if [ -x "$BIN/helm" ] && "$BIN/helm" version --short | grep -c "v$HELM_VERSION" >/dev/null; then
    echo "helm $HELM_VERSION: cached"; return; fi
  local W="$CACHE/build/helm-$HELM_VERSION"
  rm -rf "$W"; mkdir -p "$W"; cd "$W"
  printf 'module local/helmbuild\n\ngo 1.25.0\n' > go.mod
  go get -tool "helm.sh/helm/v3/cmd/helm@v$HELM_VERSION"
  go build -trimpath -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=v$HELM_VERSION" \
    -o "$BIN/helm" helm.sh/helm/v3/cmd/helm
  "$BIN/helm" version --short
}

build_metrics_server() {
  if [ -x "$BIN/metrics-server" ] && "$BIN/metrics-server" --version 2>/dev/null | grep -c "v$METRICS_SERVER_VERSION" >/dev/null; then
    echo "metrics-server $METRICS_SERVER_VERSION: cached"; return; fi
  local W="$CACHE/build/metrics-server-$METRICS_SERVER_VERSION" K=$KUBERNETES_VERSION
  rm -rf "$W"; mkdir -p "$W"; cd "$W"
  printf 'module local/msbuild\n\ngo 1.24.0\n' > go.mod
  go get -tool "sigs.k8s.io/metrics-server/cmd/metrics-server@v$METRICS_SERVER_VERSION"
  go build -trimpath -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=v$METRICS_SERVER_VERSION -X k8s.io/client-go/pkg/version.gitVersion=v$METRICS_SERVER_VERSION" \
    -o "$BIN/metrics-server" sigs.k8s.io/metrics-server/cmd/metrics-server
}

build_coredns() {
  if [ -x "$BIN/coredns" ] && "$BIN/coredns" -version | grep -c "CoreDNS-$COREDNS_VERSION" >/dev/null; then
    echo "coredns $COREDNS_VERSION: cached"; return; fi
  local W="$CACHE/build/coredns-$COREDNS_VERSION"
  rm -rf "$W"; mkdir -p "$W"; cd "$W"
  printf 'module local/corednsbuild\n\ngo 1.25.0\n' > go.mod
  go get -tool "github.com/coredns/coredns@v$COREDNS_VERSION"
  go build -trimpath -ldflags "-s -w" -o "$BIN/coredns" github.com/coredns/coredns
  "$BIN/coredns" -version | sed -n 1p
}

build_pause() {
  [ -x "$BIN/pause" ] && { echo "pause: cached"; return; }
  local W="$CACHE/build/pause"
  rm -rf "$W"; mkdir -p "$W"; cd "$W"
  printf 'module local/pause\n\ngo 1.24\n' > go.mod
  cat > main.go <<'GO'
// pause holds a pod's namespaces open and exits on SIGTERM/SIGINT.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		ch := make(chan os.Signal, 8)
		signal.Notify(ch, syscall.SIGCHLD)
		for range ch {
			for {
				var ws syscall.WaitStatus
				pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
				if pid <= 0 || err != nil {
					break
				}
			}
		}
	}()
	<-c
}
GO
  go build -trimpath -ldflags "-s -w" -o "$BIN/pause" .
}

what=${2:-all}
case $what in
  all) build_pause; build_etcd; build_helm; build_metrics_server; build_kubernetes; build_coredns ;;
  *) "build_$what" ;;
esac
echo "binaries in $BIN"
