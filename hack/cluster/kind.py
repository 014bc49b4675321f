"""The kind provider: a kind cluster from kind-config.yaml.

Two ways, chosen by `up`:

- the pinned upstream node image (kind-config.yaml's `kindest/node`) when the machine's Docker
  has it or can pull it: the machine's Docker, kind's own image, nothing of ours;
- otherwise the project's node image (hack/kind_node/image.py, assembled offline) on the
  project's own Docker engine (hack/kind_node/engine.py), with kind v0.30.0 built from the Go
  module proxy. `down` deletes the cluster and stops that engine. That node runs kube-router's
  firewall as the local cluster does (hack/kind_node/files/kube-router-firewall): `up` waits
  for its first sync and for the node's hermetic chain ahead of it (`enforcer_problems`).
  Its pod and Service subnets are the image's (`project_config`: kind-config.yaml with
  networking.podSubnet and serviceSubnet set), and `up` routes both from the host to the node
  over kind's bridge on that engine (`ROUTED`, `ensure_routes`), so the host reaches pod and
  Service IPs as it does the local cluster's; `down` deletes the routes.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import yaml

from hack import procs
from hack.cluster import addons, netpol
from hack.kind_node import engine, kind_bin
from hack.kind_node import image as node_image_builder
from hack.kubetools import kubectl
from hack.paths import REPO, paths

KIND_CLUSTER = "tornado-operator"
NODE = f"{KIND_CLUSTER}-control-plane"  # the node's container (one node)
# Set while the project's engine runs a node that made the machine's (missing) /lib/modules:
# docker creates a bind mount's missing source, and `down` removes it again if still empty.
_LIB_MODULES_MARK = engine.RUN / "created-lib-modules"


def node_image() -> str:
    for line in (REPO / "kind-config.yaml").read_text().splitlines():
        line = line.strip()
        if line.startswith("image:"):
            return line.split(":", 1)[1].strip().strip("\"'")
    raise RuntimeError("kind-config.yaml names no node image")


def project_config() -> str:
    """kind-config.yaml for the project's node image: its pod and Service subnets set (kind's
    defaults stay in the user-facing file; the image's Service range is not kind's 10.96.0.0/16,
    which the local cluster uses too). kubeadm takes both, kube-proxy its clusterCIDR."""
    cfg = yaml.safe_load((REPO / "kind-config.yaml").read_text())
    networking = cfg.setdefault("networking", {})
    networking["podSubnet"] = node_image_builder.POD_SUBNET
    networking["serviceSubnet"] = node_image_builder.SERVICE_SUBNET
    text: str = yaml.safe_dump(cfg, sort_keys=False)
    return "# Made by hack/cluster/kind.py from kind-config.yaml; do not edit.\n" + text


# The node's subnets the host routes to the node (its address on kind's network), on kind's
# bridge of the project's engine only: nothing else on the machine routes them.
ROUTED = (node_image_builder.POD_SUBNET, node_image_builder.SERVICE_SUBNET)


def route_commands(node_ip: str) -> list[list[str]]:
    """`ip route replace` for each of ROUTED via `node_ip` (replace: `up` may run again)."""
    return [
        ["ip", "route", "replace", subnet, "via", node_ip, "dev", engine.KIND_BRIDGE]
        for subnet in ROUTED
    ]


def unroute_commands() -> list[list[str]]:
    """`ip route del` for each of ROUTED on kind's bridge (a route elsewhere is not ours)."""
    return [["ip", "route", "del", subnet, "dev", engine.KIND_BRIDGE] for subnet in ROUTED]


def node_ip() -> str:
    """The project's node's address on kind's network."""
    r = engine.docker(
        "inspect", "--format",
        f'{{{{(index .NetworkSettings.Networks "{engine.KIND_NETWORK}").IPAddress}}}}', NODE,
        timeout=60,
    )  # fmt: skip
    ip = r.stdout.strip()
    if not ip:
        raise RuntimeError(f"{NODE} has no address on the {engine.KIND_NETWORK!r} network")
    return ip


def routes() -> dict[str, str]:
    """The host's routes on kind's bridge for ROUTED, by subnet: the gateway each goes via."""
    r = subprocess.run(
        ["ip", "-4", "route", "show", "dev", engine.KIND_BRIDGE],
        capture_output=True, text=True, check=False, timeout=30,
    )  # fmt: skip
    out: dict[str, str] = {}
    for line in r.stdout.splitlines():
        words = line.split()
        if words and words[0] in ROUTED and "via" in words:
            out[words[0]] = words[words.index("via") + 1]
    return out


def ensure_routes() -> dict[str, str]:
    """Route ROUTED from the host to the project's node (idempotent); the routes, by subnet."""
    ip = node_ip()
    for cmd in route_commands(ip):
        r = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=30)
        if r.returncode != 0:
            raise RuntimeError(f"{shlex.join(cmd)}: {r.stderr.strip()}")
    found = routes()
    if found != dict.fromkeys(ROUTED, ip):
        raise RuntimeError(f"routes to {NODE} not in place: {found}")
    return found


def remove_routes() -> None:
    """Delete the routes `ensure_routes` added; nothing happens if they (or the bridge) are gone."""
    for cmd in unroute_commands():
        subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=30)


def kind_binary() -> str | None:
    """The project's kind (build-binaries.sh kind) if built, else kind from PATH."""
    built = kind_bin() / "kind"
    if built.exists():
        return str(built)
    return shutil.which("kind")


def _kind(*args: str, project_engine: bool, check: bool = True) -> subprocess.CompletedProcess[str]:
    kind = kind_binary()
    if kind is None:
        raise RuntimeError("kind is not installed: run `bash hack/build-binaries.sh CACHE kind`")
    env = engine.env() if project_engine else dict(os.environ)
    return subprocess.run(
        [kind, *args], env=env, capture_output=True, text=True, check=check, timeout=900
    )


def usable(pull: bool = True) -> bool:
    """kind is present and Docker has (or, with `pull`, can pull) the pinned node image."""
    if not kind_binary() or not shutil.which("docker"):
        return False
    image = node_image()
    run = procs.run
    if run(["docker", "image", "inspect", image], check=False).returncode == 0:
        return True
    return pull and run(["docker", "pull", image], check=False, timeout=600).returncode == 0


def kubeconfig() -> Path:
    return paths().cache / "kind.kubeconfig"


def _clusters(project_engine: bool) -> list[str]:
    if kind_binary() is None:
        return []
    if project_engine and not engine.answers():
        return []
    r = _kind("get", "clusters", project_engine=project_engine, check=False)
    return r.stdout.split() if r.returncode == 0 else []


def on_project_engine() -> bool:
    """The kind cluster runs on the project's engine (not the machine's Docker)."""
    return KIND_CLUSTER in _clusters(project_engine=True)


def engine_running() -> bool:
    """The project's engine answers (it may hold no cluster)."""
    return engine.answers()


def running() -> bool:
    return on_project_engine() or KIND_CLUSTER in _clusters(project_engine=False)


def node_exec(node: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run a command in a node's container, on whichever engine holds the cluster."""
    if on_project_engine():
        return engine.docker("exec", node, *args, timeout=timeout)
    return subprocess.run(
        ["docker", "exec", node, *args], capture_output=True, text=True, check=True, timeout=timeout
    )


def _node_rules(chain: str) -> list[list[str]] | None:
    """`iptables -S chain` in the project's node as word lists (without `-A CHAIN`); None if
    the chain is missing."""
    r = engine.docker("exec", NODE, "iptables", "-w", "5", "-S", chain, check=False, timeout=60)
    if r.returncode != 0:
        return None
    return [shlex.split(line)[2:] for line in r.stdout.splitlines() if line.startswith("-A ")]


def enforcer_problems() -> list[str]:
    """What keeps NetworkPolicies from being enforced in the project's node, in words (empty
    when kube-router has synced and the node's hermetic chain comes first in its chains)."""
    r = engine.docker(
        "exec", NODE, "systemctl", "is-active", "kube-router.service", check=False, timeout=60
    )
    found = [] if r.stdout.strip() == "active" else [f"kube-router.service is {r.stdout.strip()}"]
    forward = _node_rules(netpol.FORWARD_CHAIN)
    if not netpol.synced_rules(forward or []):
        found.append(f"kube-router has not synced ({netpol.FORWARD_CHAIN}: {forward})")
    hook = list(node_image_builder.HERMETIC_HOOK)
    for chain in (netpol.FORWARD_CHAIN, netpol.OUTPUT_CHAIN):
        rules = _node_rules(chain) or []
        if not rules or rules[0] != hook:
            found.append(f"{node_image_builder.HERMETIC_CHAIN} is not first in {chain}")
    return found


def wait_for_enforcer(timeout: float = 120) -> None:
    """Until kube-router enforces NetworkPolicies in the project's node (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        found = enforcer_problems()
        if not found:
            return
        if time.monotonic() > deadline:
            log = engine.docker(
                "exec", NODE, "journalctl", "-u", "kube-router", "-n", "30", "--no-pager",
                check=False, timeout=60,
            ).stdout  # fmt: skip
            raise RuntimeError(
                f"NetworkPolicies not enforced in {NODE} after {timeout:.0f}s: "
                + "; ".join(found)
                + f"\nkube-router's last lines:\n{log}"
            )
        time.sleep(1)


def up(pull: bool = True) -> Path:
    """A kind cluster (the one that is up, or a new one); `pull=False`: the project's node image
    unless the machine's Docker already has the pinned kindest/node (no registry is asked)."""
    kc = kubeconfig()
    kc.parent.mkdir(parents=True, exist_ok=True)
    if running():
        project = on_project_engine()
        r = _kind("get", "kubeconfig", "--name", KIND_CLUSTER, project_engine=project)
        kc.write_text(r.stdout)
        if project:
            ensure_routes()
        return kc
    create = ["create", "cluster", "--name", KIND_CLUSTER, "--kubeconfig", str(kc)]
    create += ["--wait", "180s"]
    kind = kind_binary()
    if usable(pull):
        user_config = REPO / "kind-config.yaml"
        subprocess.run([str(kind), *create, "--config", str(user_config)], check=True)
        return kc
    # No pinned kindest/node here: the project's node image on the project's engine.
    if not (kind_bin() / "kind").exists():
        subprocess.run(
            ["bash", str(REPO / "hack/build-binaries.sh"), str(paths().cache), "kind"], check=True
        )
    ref = node_image_builder.ensure()
    engine.ensure_kind_network()
    if not Path("/lib/modules").exists():
        _LIB_MODULES_MARK.write_text("")
    config = engine.RUN / "kind-config.yaml"
    config.write_text(project_config())
    subprocess.run(
        [str(kind_bin() / "kind"), *create, "--config", str(config), "--image", ref],
        env=engine.env(),
        check=True,
    )
    ensure_routes()
    wait_for_enforcer()
    # metrics-server, as on the local cluster (its image is preloaded in the node).
    kubectl("apply", "-f", "-", input=addons.METRICS_SERVER, kubeconfig=kc)
    kubectl(
        "-n", "kube-system", "rollout", "status", "deployment/metrics-server", "--timeout=120s",
        kubeconfig=kc, timeout=130,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        r = kubectl(
            "get", "apiservice", "v1beta1.metrics.k8s.io",
            "-o", "jsonpath={.status.conditions[?(@.type=='Available')].status}",
            kubeconfig=kc, check=False,
        )  # fmt: skip
        if r.stdout.strip() == "True":
            return kc
        time.sleep(1)
    raise RuntimeError("metrics-server's APIService did not become Available on kind")


def down(stop_engine: bool = True) -> None:
    """Delete the kind cluster and the host's routes to it, and (`stop_engine`) stop the
    project's engine."""
    remove_routes()
    if on_project_engine():
        _kind("delete", "cluster", "--name", KIND_CLUSTER, project_engine=True, check=False)
    elif KIND_CLUSTER in _clusters(project_engine=False):
        _kind("delete", "cluster", "--name", KIND_CLUSTER, project_engine=False, check=False)
    if stop_engine and (engine.answers() or engine.RUN.exists()):
        if _LIB_MODULES_MARK.exists():
            with contextlib.suppress(OSError):
                Path("/lib/modules").rmdir()  # only if still empty
        engine.stop()


def load(ref: str) -> None:
    """`kind load docker-image`; on the project's engine, from the machine's Docker by archive."""
    if not on_project_engine():
        kind = kind_binary() or "kind"
        subprocess.run([kind, "load", "docker-image", ref, "--name", KIND_CLUSTER], check=True)
        return
    with tempfile.TemporaryDirectory(dir=paths().cache) as tmp:
        archive = Path(tmp) / "image.tar"
        # The project's images are built by the machine's Docker (hack/images.py).
        subprocess.run(["docker", "save", "-o", str(archive), ref], check=True)
        _kind("load", "image-archive", str(archive), "--name", KIND_CLUSTER, project_engine=True)
