"""The project's own Docker engine for kind: a second dockerd, never the machine's.

Some sandboxes run with a capability bounding set that lacks CAP_SYS_RESOURCE. kind starts every
node with `docker run --privileged`, which asks runc for all capabilities, and runc fails with
"unable to apply caps: operation not permitted". This engine's default runtime is
runc-nosysresource (hack/kind_node/runc-nosysresource), which removes from each container's spec
the capabilities the bounding set lacks and then runs runc. The machine's own engine, its
configuration and its socket are left alone.

Everything is its own: socket, pid file and exec root under RUN (not the local cluster's run
directory, which its `down` removes), data root under the cache (node images survive `stop`),
cgroup parent, its default bridge BRIDGE, and kind's network (ensure_kind_network).
The bridge is created here before dockerd starts and deleted by `stop`: a dockerd with
`bridge: none` deletes the host's docker0 at startup (libnetwork's removeDefaultBridgeInterface),
which would take the machine engine's default network away, and one with no `bridge` setting
would share docker0 with it.

Networking: `iptables: false`, so this engine adds no rule to the machine's ruleset and touches
no policy (the machine's engine owns the FORWARD policy). Without it there is no NAT: containers
reach each other on their bridge and the host reaches them directly, which is all a kind cluster
needs here (no registry, nothing outside). Published ports (kind's API server port, the
NodePort mapping of kind-config.yaml) work through docker-proxy, which listens on 127.0.0.1.
`ip-forward: false`: the engine leaves net.ipv4.ip_forward as it finds it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from hack import procs
from hack.kind_node import kind_bin
from hack.paths import Paths, paths

RUN = Path(os.environ.get("TORNADO_OPERATOR_KIND_RUN", "/run/tornado-operator-kind"))
SOCKET = RUN / "docker.sock"
DOCKER_HOST = f"unix://{SOCKET}"
NAME = "kind-dockerd"
RUNTIME = "runc-nosysresource"
# kind's network ("kind"), made here with its own subnet and bridge name before kind looks for it:
# not the machine engine's 172.17-31 and 192.168 pools, nor the local cluster's 10.88/10.96/10.223.
# Not `default-address-pools`: a dockerd restarted with pools set deletes the host's docker0
# (daemon_unix.go, "Clear stale bridge network" -> removeDefaultBridgeInterface).
KIND_NETWORK = "kind"
KIND_SUBNET = "10.231.0.0/24"
KIND_BRIDGE = "tornado-kind1"
# The engine's default bridge (containers started without --net); kind's nodes are not on it.
BRIDGE = "tornado-kind0"
BRIDGE_ADDRESS = "10.232.0.1/24"
CGROUP_PARENT = "tornado-kind"


def engine_paths(p: Paths | None = None) -> Paths:
    p = p or paths()
    return Paths(cache=p.cache, state=p.cache / "kind-engine", run=RUN)


def runtime_binary(p: Paths | None = None) -> Path:
    return kind_bin(p) / RUNTIME


def env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for docker and kind: DOCKER_HOST is this engine."""
    return {**os.environ, "DOCKER_HOST": DOCKER_HOST, **(extra or {})}


def docker(
    *args: str, check: bool = True, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", *args],
        env=env(),
        capture_output=True,
        text=True,
        check=check,
        timeout=timeout,
    )


def answers() -> bool:
    try:
        return docker("info", "--format", "{{.ID}}", check=False, timeout=20).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def config(p: Paths | None = None) -> dict[str, object]:
    e = engine_paths(p)
    return {
        "hosts": [DOCKER_HOST],
        "data-root": str(e.state / "docker"),
        "exec-root": str(RUN / "exec"),
        "pidfile": str(RUN / "dockerd.pid"),
        "bridge": BRIDGE,
        "iptables": False,
        "ip6tables": False,
        "ip-masq": False,
        "ip-forward": False,
        "userland-proxy": True,
        "cgroup-parent": CGROUP_PARENT,
        "storage-driver": "overlay2",
        "log-driver": "json-file",
        "runtimes": {RUNTIME: {"path": str(runtime_binary(p))}},
        "default-runtime": RUNTIME,
        "features": {"buildkit": False},
    }


def start(p: Paths | None = None) -> None:
    """Start the engine unless it answers; idempotent."""
    e = engine_paths(p)
    if answers():
        return
    if not shutil.which("dockerd"):
        raise RuntimeError(
            "dockerd is not installed: run `make prereqs` (apt-get install docker.io)"
        )
    if not runtime_binary(p).exists():
        raise RuntimeError(
            f"{runtime_binary(p)} is missing: run `bash hack/build-binaries.sh CACHE kind`"
        )
    RUN.mkdir(parents=True, exist_ok=True)
    e.state.mkdir(parents=True, exist_ok=True)
    _ensure_bridge()
    cfg = RUN / "daemon.json"
    cfg.write_text(json.dumps(config(p), indent=2) + "\n")
    before = _links()
    procs.start(e, NAME, ["dockerd", "--config-file", str(cfg)])
    procs.wait_until(e, NAME, answers, 60, "docker info on " + DOCKER_HOST)
    # The host's interfaces are not ours to change (a dockerd with `bridge: none` deletes docker0).
    gone = before - _links()
    if gone:
        raise RuntimeError(f"the host lost {sorted(gone)} while the project's dockerd started")


def stop(p: Paths | None = None) -> bool:
    """Stop the engine (its containers stop with it; images and volumes stay in the cache)."""
    e = engine_paths(p)
    if answers():
        # User-defined networks (kind's) keep their bridge on the host after dockerd stops.
        docker("network", "prune", "-f", check=False)
        # A node's /var is an anonymous volume holding a copy of its images: none outlive it.
        docker("volume", "prune", "-f", check=False)
    stopped = procs.stop(e, NAME, grace=30)
    subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True, check=False)
    shutil.rmtree(RUN, ignore_errors=True)
    return stopped


def ensure_kind_network() -> None:
    """kind's network, our subnet and bridge name (kind takes a network named "kind" as it is)."""
    if docker("network", "inspect", KIND_NETWORK, check=False).returncode == 0:
        return
    docker(
        "network", "create", "--driver", "bridge", "--subnet", KIND_SUBNET,
        "--opt", f"com.docker.network.bridge.name={KIND_BRIDGE}",
        "--opt", "com.docker.network.driver.mtu=1500", KIND_NETWORK,
    )  # fmt: skip


def _links() -> set[str]:
    out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=False).stdout
    names = {line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if ":" in line}
    return {n for n in names if not n.startswith("veth")}


def _ensure_bridge() -> None:
    """BRIDGE with its address, up (dockerd wants a non-default bridge to exist already)."""

    def ip(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", *args], capture_output=True, text=True, check=False)

    if ip("link", "show", BRIDGE).returncode != 0:
        r = ip("link", "add", BRIDGE, "type", "bridge")
        if r.returncode != 0:
            raise RuntimeError(f"ip link add {BRIDGE} type bridge: {r.stderr.strip()}")
    if BRIDGE_ADDRESS not in ip("-4", "addr", "show", "dev", BRIDGE).stdout:
        ip("addr", "add", BRIDGE_ADDRESS, "dev", BRIDGE)
    ip("link", "set", BRIDGE, "up")
