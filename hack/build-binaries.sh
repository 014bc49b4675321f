#!/usr/bin/env bash
# Builds the local cluster's binaries from the Go module proxy into a cache
# keyed by version, so a warm run rebuilds nothing. Nothing lands in the repo.
#
#   build-binaries.sh CACHE_DIR [COMPONENT...]   # default: all of COMPONENTS below
#   build-binaries.sh --components               # lists them
#
# One line per component; the go tool's output goes to CACHE_DIR/logs/build-COMPONENT.log.
# Versions are pinned in versions.env, next to this script (hack/paths.py reads it too).
set -euo pipefail

CACHE=${1:?usage: build-binaries.sh CACHE_DIR [COMPONENT...]}
shift
COMPONENTS=(pause etcd helm metrics-server kubernetes coredns kwok kube-router)
# Built only when named: kind and the runc wrapper its node image and engine use (hack/kind_node).
OPTIONAL=(kind)
[ "$CACHE" != --components ] || { echo "${COMPONENTS[*]}"; exit 0; }  # prereqs counts its steps from this
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=hack/versions.env
. "$here/versions.env"
STEP_LOGS=${STEP_LOGS:-$CACHE/logs}
# shellcheck source=hack/steps.sh
. "$here/steps.sh"

BIN="$CACHE/k8s-$KUBERNETES_VERSION/bin"
mkdir -p "$BIN"
export GOFLAGS="-buildvcs=false -p=2" CGO_ENABLED=0 GOTOOLCHAIN=local

# Version checks capture the output and match it: `cmd | grep -q` or `| head` stop reading early,
# and under pipefail the writer's SIGPIPE (exit 141) would read as "not cached" or fail the step.
reports() { local out; out=$("${@:2}" 2>&1) && [[ $out == *"$1"* ]]; }

# Each component X (in COMPONENTS, "-" read as "_"): what_X (the step's line), cold_X (how long
# it takes on a fresh machine), cached_X (true when the cached binary is the right one), build_X.

K8S_BINARIES="kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl kubeadm"
what_kubernetes="Kubernetes $KUBERNETES_VERSION (control plane, kubelet, kube-proxy, kubectl, kubeadm) from the Go module proxy"
cold_kubernetes="about 12 min cold"
cached_kubernetes() {
  local b
  for b in $K8S_BINARIES; do [ -x "$BIN/$b" ] || return 1; done
  reports "v$KUBERNETES_VERSION" "$BIN/kube-apiserver" --version
}
build_kubernetes() {
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
  local P=$K8S_BINARIES
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

what_etcd="etcd $ETCD_VERSION from the Go module proxy"
cold_etcd="about 2 min cold"
cached_etcd() { [ -x "$BIN/etcd" ] && reports "etcd Version: $ETCD_VERSION" "$BIN/etcd" --version; }
build_etcd() {
  local W="$CACHE/build/etcd-$ETCD_VERSION"
  rm -rf "$W"; mkdir -p "$W"; cd "$W"
  # etcd's go.mod has replace lines, so `go install` refuses it; a wrapper
  # module ignores a dependency's replaces.
  printf 'module local/etcdbuild\n\ngo 1.25.0\n' > go.mod
  go get -tool "go.etcd.io/etcd/server/v3@v$ETCD_VERSION"
  go build -trimpath -ldflags "-s -w" -o "$BIN/etcd" go.etcd.io/etcd/server/v3
  "$BIN/etcd" --version
}

what_helm="helm $HELM_VERSION from the Go module proxy, stamped with Kubernetes ${KUBERNETES_VERSION%.*}"
cold_helm="about 3 min cold"
# helm's offline Kubernetes version (what `helm template` and `helm lint` assume without a cluster)
# is set at link time, as helm's own Makefile does; unstamped it is v1.20.0, and `helm template`
# refuses a chart with `kubeVersion: >=1.29`. So the cache check asks helm what it assumes.
HELM_KUBE_VERSION="v${KUBERNETES_VERSION%.*}.0"
helm_assumes() {
  local chart out
  chart=$(mktemp -d)
  mkdir "$chart/templates"
  printf 'apiVersion: v2\nname: stamp\nversion: 0.1.0\n' >"$chart/Chart.yaml"
  printf '# kube {{ .Capabilities.KubeVersion.Version }}\n' >"$chart/templates/v.yaml"
  out=$("$BIN/helm" template stamp "$chart" 2>&1) || true
  rm -rf "$chart"
  [[ $out == *"# kube $1"* ]]
}
cached_helm() {
  [ -x "$BIN/helm" ] && reports "v$HELM_VERSION" "$BIN/helm" version --short \
    && helm_assumes "$HELM_KUBE_VERSION"
}
build_helm() {
  local W="$CACHE/build/helm-$HELM_VERSION" K=$KUBERNETES_VERSION LDF="-s -w" v
  rm -rf "$W"; mkdir -p "$W"; cd "$W"
  printf 'module local/helmbuild\n\ngo 1.25.0\n' > go.mod
  go get -tool "helm.sh/helm/v3/cmd/helm@v$HELM_VERSION"
  LDF="$LDF -X helm.sh/helm/v3/internal/version.version=v$HELM_VERSION"
  for v in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
    LDF="$LDF -X $v.k8sVersionMajor=${K%%.*} -X $v.k8sVersionMinor=$(echo "$K" | cut -d. -f2)"; done
  go build -trimpath -ldflags "$LDF" -o "$BIN/helm" helm.sh/helm/v3/cmd/helm
  "$BIN/helm" version --short
  helm_assumes "$HELM_KUBE_VERSION" || { echo "helm does not assume Kubernetes $HELM_KUBE_VERSION" >&2; exit 1; }
}

what_metrics_server="metrics-server $METRICS_SERVER_VERSION from the Go module proxy"
cold_metrics_server="about 6 min cold"
cached_metrics_server() {
  [ -x "$BIN/metrics-server" ] && reports "v$METRICS_SERVER_VERSION" "$BIN/metrics-server" --version
}
build_metrics_server() {
  local W="$CACHE/build/metrics-server-$METRICS_SERVER_VERSION" K=$KUBERNETES_VERSION
  rm -rf "$W"; mkdir -p "$W"; cd "$W"
  printf 'module local/msbuild\n\ngo 1.24.0\n' > go.mod
  go get -tool "sigs.k8s.io/metrics-server/cmd/metrics-server@v$METRICS_SERVER_VERSION"
  go build -trimpath -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=v$METRICS_SERVER_VERSION -X k8s.io/client-go/pkg/version.gitVersion=v$METRICS_SERVER_VERSION" \
    -o "$BIN/metrics-server" sigs.k8s.io/metrics-server/cmd/metrics-server
}

what_coredns="CoreDNS $COREDNS_VERSION from the Go module proxy"
cold_coredns="about 4 min cold"
cached_coredns() { [ -x "$BIN/coredns" ] && reports "CoreDNS-$COREDNS_VERSION" "$BIN/coredns" -version; }
build_coredns() {
  local W="$CACHE/build/coredns-$COREDNS_VERSION"
  rm -rf "$W"; mkdir -p "$W"; cd "$W"
  printf 'module local/corednsbuild\n\ngo 1.25.0\n' > go.mod
  go get -tool "github.com/coredns/coredns@v$COREDNS_VERSION"
  go build -trimpath -ldflags "-s -w" -o "$BIN/coredns" github.com/coredns/coredns
  "$BIN/coredns" -version
}

what_kwok="kwok $KWOK_VERSION (fake nodes for scale tests: up --fake-nodes N) from the Go module proxy"
cold_kwok="about 5 min cold"
cached_kwok() { [ -x "$BIN/kwok" ] && reports "v$KWOK_VERSION" "$BIN/kwok" --version; }
build_kwok() {
  local W="$CACHE/build/kwok-$KWOK_VERSION"
  rm -rf "$W"; mkdir -p "$W"; cd "$W"
  # Pinned to v0.7: v0.8 and later ship no default stages in the binary, so pods on its nodes never
  # become Ready without a stage configuration. A wrapper module, like the others.
  printf 'module local/kwokbuild\n\ngo 1.24.0\n' > go.mod
  go get -tool "sigs.k8s.io/kwok/cmd/kwok@v$KWOK_VERSION"
  go build -trimpath -ldflags "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=v$KWOK_VERSION" \
    -o "$BIN/kwok" sigs.k8s.io/kwok/cmd/kwok
  "$BIN/kwok" --version
}

what_kube_router="kube-router $KUBE_ROUTER_VERSION (the NetworkPolicy enforcer, firewall only) from the Go module proxy"
cold_kube_router="about 6 min cold"
cached_kube_router() { [ -x "$BIN/kube-router" ] && reports "v$KUBE_ROUTER_VERSION" "$BIN/kube-router" --version; }
build_kube_router() {
  local W="$CACHE/build/kube-router-$KUBE_ROUTER_VERSION"
  rm -rf "$W"; mkdir -p "$W"; cd "$W"
  # Only its network policy controller runs (hack/cluster/netpol.py): iptables and ipset, which this
  # kernel has, where kube-network-policies needs nftables' queue expression (CONFIG_NFT_QUEUE).
  printf 'module local/kuberouterbuild\n\ngo 1.24.0\n' > go.mod
  go get -tool "github.com/cloudnativelabs/kube-router/v2/cmd/kube-router@v$KUBE_ROUTER_VERSION"
  go build -trimpath \
    -ldflags "-s -w -X github.com/cloudnativelabs/kube-router/v2/pkg/version.Version=v$KUBE_ROUTER_VERSION" \
    -o "$BIN/kube-router" github.com/cloudnativelabs/kube-router/v2/cmd/kube-router
  "$BIN/kube-router" --version
}

what_pause="pause (the pod sandbox), a tiny Go program"
cold_pause="about 10 s cold"
cached_pause() { [ -x "$BIN/pause" ]; }
build_pause() {
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

what_kind="kind $KIND_VERSION and runc-nosysresource (hack/kind_node) from the Go module proxy"
cold_kind="about 1 min cold"
KIND_BIN="$CACHE/kind-$KIND_VERSION/bin"
cached_kind() {
  [ -x "$KIND_BIN/kind" ] && reports "kind v$KIND_VERSION " "$KIND_BIN/kind" version \
    && [ -x "$KIND_BIN/runc-nosysresource" ] \
    && [ "$KIND_BIN/runc-nosysresource" -nt "$here/kind_node/runc-nosysresource/main.go" ]
}
build_kind() {
  mkdir -p "$KIND_BIN"
  # kind's go.mod has no replace lines, so `go install` works; v0.30.0 is the release whose
  # default node image is Kubernetes 1.34 (kindest/node:v1.34.0), the minor version we pin.
  GOBIN="$KIND_BIN" go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kind@v$KIND_VERSION"
  (cd "$here/kind_node/runc-nosysresource" && go build -trimpath -ldflags "-s -w" -o "$KIND_BIN/runc-nosysresource" .)
  "$KIND_BIN/kind" version
}

want=("$@")
[ ${#want[@]} -gt 0 ] && [ "${want[0]}" != all ] || want=("${COMPONENTS[@]}")
for c in "${want[@]}"; do
  c=${c//-/_}
  declare -F "build_$c" >/dev/null || { echo "build-binaries.sh: no component $c (${COMPONENTS[*]})" >&2; exit 2; }
done
[ -n "${STEP_TOTAL:-}" ] || step_total=${#want[@]}
for c in "${want[@]}"; do
  c=${c//-/_}
  what="what_$c" cold="cold_$c"
  if "cached_$c"; then
    step_skip "${!what}" "cached"
  else
    step_run "build-${c//_/-}" "${!what}" "${!cold}" "build_$c"
  fi
done
