"""Where the dev tooling keeps things, and which versions the local cluster runs (one home)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def _versions() -> dict[str, str]:
    out: dict[str, str] = {}
    for line in (HERE / "versions.env").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key] = value
    return out


VERSIONS = _versions()
KUBERNETES_VERSION = VERSIONS["KUBERNETES_VERSION"]
PAUSE_IMAGE = VERSIONS["PAUSE_IMAGE"]

# The node's address lives on a dummy interface the tool creates, so the
# cluster never depends on (or advertises) the machine's real addresses.
NODE_IFACE = "tornado0"
NODE_IP = "10.223.0.1"
NODE_NAME = "tornado-control-plane"
POD_CIDR = "10.88.0.0/16"
SERVICE_CIDR = "10.96.0.0/16"
DNS_IP = "10.96.0.10"
BRIDGE = "tornado-cni0"
API_PORT = 6443


@dataclass(frozen=True)
class Paths:
    cache: Path  # built binaries and images, keyed by version: survives `down`
    state: Path  # certificates, containerd's images: survive `down`; etcd data is reset
    run: Path  # sockets and pid files: removed by `down`

    @property
    def bin(self) -> Path:
        return self.cache / f"k8s-{KUBERNETES_VERSION}" / "bin"

    @property
    def pki(self) -> Path:
        return self.state / "pki"

    @property
    def logs(self) -> Path:
        return self.state / "logs"

    @property
    def kubeconfig(self) -> Path:
        return self.state / "admin.conf"

    @property
    def containerd_sock(self) -> Path:
        return self.run / "containerd" / "containerd.sock"

    @property
    def kubelet_root(self) -> Path:
        return self.state / "kubelet"

    @property
    def cni_conf(self) -> Path:
        return self.state / "cni" / "net.d"


def paths() -> Paths:
    cache = Path(
        os.environ.get("TORNADO_OPERATOR_CACHE", Path.home() / ".cache" / "tornado-operator")
    )
    state = Path(os.environ.get("TORNADO_OPERATOR_STATE", "/var/lib/tornado-operator"))
    run = Path(os.environ.get("TORNADO_OPERATOR_RUN", "/run/tornado-operator"))
    return Paths(cache=cache, state=state, run=run)
