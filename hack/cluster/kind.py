"""The kind provider: a kind cluster from kind-config.yaml, where kind and its node image work."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from hack import procs
from hack.paths import REPO, paths

KIND_CLUSTER = "tornado-operator"


def node_image() -> str:
    for line in (REPO / "kind-config.yaml").read_text().splitlines():
        line = line.strip()
        if line.startswith("image:"):
            return line.split(":", 1)[1].strip().strip("\"'")
    raise RuntimeError("kind-config.yaml names no node image")


def usable() -> bool:
    """kind is present and Docker has, or can pull, the pinned node image."""
    if not shutil.which("kind") or not shutil.which("docker"):
        return False
    image = node_image()
    run = procs.run
    if run(["docker", "image", "inspect", image], check=False).returncode == 0:
        return True
    return run(["docker", "pull", image], check=False, timeout=600).returncode == 0


def kubeconfig() -> Path:
    return paths().cache / "kind.kubeconfig"


def running() -> bool:
    if not shutil.which("kind"):
        return False
    return KIND_CLUSTER in procs.run(["kind", "get", "clusters"], check=False).stdout.split()


def up() -> Path:
    kc = kubeconfig()
    kc.parent.mkdir(parents=True, exist_ok=True)
    if not running():
        subprocess.run(
            [
                "kind",
                "create",
                "cluster",
                "--name",
                KIND_CLUSTER,
                "--config",
                str(REPO / "kind-config.yaml"),
                "--kubeconfig",
                str(kc),
                "--wait",
                "120s",
            ],
            check=True,
        )
    else:
        kc.write_text(procs.run(["kind", "get", "kubeconfig", "--name", KIND_CLUSTER]).stdout)
    return kc


def down() -> None:
    subprocess.run(["kind", "delete", "cluster", "--name", KIND_CLUSTER], check=False)


def load(ref: str) -> None:
    subprocess.run(["kind", "load", "docker-image", ref, "--name", KIND_CLUSTER], check=True)
