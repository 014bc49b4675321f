"""Fake nodes for scale tests: kwok in binary mode against the local cluster's real control plane.

`python -m hack.cluster up --fake-nodes N` starts one `kwok` host process (built from the Go module
proxy by `hack/build-binaries.sh`, pinned in `versions.env`) and makes sure Node objects
`kwok-node-0` .. `kwok-node-N-1` exist. kwok keeps those nodes Ready and plays the lifecycle of the
pods bound to them (Running and Ready at once, deleted at once), so thousands of real Pod objects
cost no containers. The API server, etcd, scheduler and controllers are the real ones.

Only pods that ask for the fake nodes land there: the nodes carry the taint
`kwok.x-k8s.io/node=fake:NoSchedule` and the label `type=kwok`, so a pod needs both
`FAKE_NODE_TOLERATIONS` and `FAKE_NODE_SELECTOR`. Everything else stays on the real node.

Pinned to kwok v0.7: from v0.8 the binary ships no default stages, and pods on its nodes never
become Ready without a stage configuration. Fake pods get addresses from `FAKE_POD_CIDR` (a /16,
not kwok's default /24, which would stop at 254 pods); a blackhole route for it keeps any packet
sent to one of them on this machine. The nodes report the address `FAKE_NODE_IP` (on loopback, with
nothing listening), so whoever tries to reach their kubelet (metrics-server) is refused at once.

`down` stops kwok and removes the route; the nodes live in etcd, which every `down` removes.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable
from typing import Any

from hack import procs
from hack.kubetools import kubectl
from hack.paths import VERSIONS, Paths

NAME = "kwok"  # the component's pid file and log under the cluster's run and logs directories
KWOK_VERSION = VERSIONS.get("KWOK_VERSION", "")
NODE_PREFIX = "kwok-node-"
FAKE_POD_CIDR = "10.90.0.0/16"
FAKE_NODE_IP = "127.0.0.2"
HEALTH_ADDRESS = "127.0.0.1:10247"
PODS_PER_NODE = 250
FAKE_NODE_LABELS = {"type": "kwok"}
FAKE_NODE_SELECTOR = dict(FAKE_NODE_LABELS)
FAKE_NODE_TAINT = {"key": "kwok.x-k8s.io/node", "value": "fake", "effect": "NoSchedule"}
FAKE_NODE_TOLERATIONS = [
    {"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"}
]
ANNOTATION = {"kwok.x-k8s.io/node": "fake"}
MAX_NODES = 200


class FakeNodesError(RuntimeError):
    """kwok is missing or did not come up; the message says what to do."""


def node_manifest(i: int) -> dict[str, Any]:
    name = f"{NODE_PREFIX}{i}"
    resources = {"cpu": "32", "memory": "256Gi", "pods": str(PODS_PER_NODE)}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {"node.alpha.kubernetes.io/ttl": "0", **ANNOTATION},
            "labels": {
                **FAKE_NODE_LABELS,
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "kubernetes.io/role": "agent",
                "node-role.kubernetes.io/agent": "",
            },
        },
        "spec": {"taints": [FAKE_NODE_TAINT]},
        "status": {"allocatable": resources, "capacity": resources},
    }


def argv(p: Paths) -> list[str]:
    return [
        str(p.bin / "kwok"),
        f"--kubeconfig={p.kubeconfig}",
        "--manage-all-nodes=false",
        "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
        f"--cidr={FAKE_POD_CIDR.replace('.0/', '.1/', 1)}",
        f"--node-ip={FAKE_NODE_IP}",
        f"--server-address={HEALTH_ADDRESS}",
        "--node-lease-duration-seconds=40",
        "--v=WARN",  # INFO is a line per pod and node status patch
    ]


def pid(p: Paths) -> int | None:
    return procs.pid_of(p, NAME)


def _healthy() -> bool:
    with urllib.request.urlopen(f"http://{HEALTH_ADDRESS}/healthz", timeout=2) as r:
        return bool(r.status == 200)


def _route(action: str) -> None:
    procs.run(["ip", "route", action, "blackhole", FAKE_POD_CIDR], check=False)


def start(p: Paths) -> None:
    """Start kwok (when it is not running) and wait for its health endpoint."""
    binary = p.bin / "kwok"
    if not binary.exists():
        raise FakeNodesError(
            f"kwok {KWOK_VERSION} is not built in {p.bin}: run "
            f"`bash hack/build-binaries.sh {p.cache} kwok` (or `make prereqs`)."
        )
    blackholes = procs.run(["ip", "route", "show", "type", "blackhole"], check=False).stdout
    if FAKE_POD_CIDR not in blackholes.split():
        _route("add")
    procs.start(p, NAME, argv(p))
    procs.wait_until(p, NAME, _healthy, 30, "/healthz")


def fake_nodes(p: Paths) -> dict[str, bool]:
    """Fake node name -> Ready, for the nodes that exist."""
    r = kubectl(
        "get", "nodes", "-l", ",".join(f"{k}={v}" for k, v in FAKE_NODE_LABELS.items()),
        "-o", "json", kubeconfig=p.kubeconfig, timeout=30,
    )  # fmt: skip
    out: dict[str, bool] = {}
    for node in json.loads(r.stdout)["items"]:
        conds = {c["type"]: c["status"] for c in node.get("status", {}).get("conditions") or []}
        out[node["metadata"]["name"]] = conds.get("Ready") == "True"
    return out


def ensure(p: Paths, n: int, log: Callable[[str], None] = print, timeout: float = 60) -> None:
    """kwok running and fake nodes kwok-node-0..n-1 Ready (nodes beyond n are left alone)."""
    if not 1 <= n <= MAX_NODES:
        raise FakeNodesError(f"--fake-nodes must be 1..{MAX_NODES}, got {n}")
    start(p)
    existing = fake_nodes(p)
    missing = [i for i in range(n) if f"{NODE_PREFIX}{i}" not in existing]
    if missing:
        nodes = {"apiVersion": "v1", "kind": "List", "items": [node_manifest(i) for i in missing]}
        kubectl("create", "-f", "-", input=json.dumps(nodes), kubeconfig=p.kubeconfig, timeout=60)
    wanted = {f"{NODE_PREFIX}{i}" for i in range(n)}
    deadline = time.monotonic() + timeout
    while True:
        ready = {name for name, ok in fake_nodes(p).items() if ok}
        if wanted <= ready:
            break
        if time.monotonic() > deadline:
            raise FakeNodesError(
                f"fake nodes not Ready after {timeout:.0f}s: {', '.join(sorted(wanted - ready))}. "
                f"kwok log tail:\n{procs.log_tail(p, NAME)}"
            )
        if pid(p) is None:
            raise FakeNodesError(f"kwok exited. Log tail:\n{procs.log_tail(p, NAME)}")
        time.sleep(0.5)
    total = len(fake_nodes(p))
    log(
        f"{total} fake node(s) Ready ({len(missing)} created), kwok {KWOK_VERSION} pid {pid(p)}; "
        f"pods need nodeSelector {FAKE_NODE_SELECTOR} and the toleration for "
        f"{FAKE_NODE_TAINT['key']}"
    )


def stop(p: Paths) -> bool:
    """Stop kwok and remove the route; whether kwok was running."""
    was = procs.stop(p, NAME, grace=10)
    for _ in range(5):  # one route, added once; a few tries cover a repeated `up`
        if procs.run(["ip", "route", "del", "blackhole", FAKE_POD_CIDR], check=False).returncode:
            break
    return was
