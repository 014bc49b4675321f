"""Which cluster to use: $KUBECONFIG's when it answers, else kind where it works, else local."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

from hack import images
from hack.cluster import kind, local
from hack.kubetools import binary
from hack.paths import paths


def answers(kubeconfig: str) -> bool:
    try:
        r = subprocess.run(
            [
                binary("kubectl"),
                "--kubeconfig",
                kubeconfig,
                "--request-timeout=5s",
                "get",
                "--raw",
                "/readyz",
            ],
            capture_output=True,
            text=True,
            timeout=15,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0


def ensure_cluster(provider: str = "auto", log: Callable[[str], None] = print) -> Path:
    """A kubeconfig for a cluster that answers: $KUBECONFIG's, else kind, else the local one."""
    env = os.environ.get("KUBECONFIG")
    if provider == "auto" and env and Path(env).exists() and answers(env):
        return Path(env)
    p = paths()
    if provider == "kind" or (provider == "auto" and not local.is_up(p) and kind.running()):
        return kind.up()
    if provider == "auto" and not local.is_up(p) and kind.usable():
        return kind.up()
    local.up(p, log=log)
    return p.kubeconfig


def kubeconfig_in_use() -> Path | None:
    """The kubeconfig of the project's cluster that is up (local first, then kind), if any."""
    p = paths()
    if local.is_up(p):
        return p.kubeconfig
    if kind.running():
        return kind.up()
    return None


def targets_local() -> bool:
    """The local cluster is up and is the one meant: $KUBECONFIG names it, or is unset.

    Both clusters can be up at once; then $KUBECONFIG decides, never the order of a probe."""
    p = paths()
    env = os.environ.get("KUBECONFIG")
    return local.is_up(p) and (not env or Path(env) == p.kubeconfig)


def load_images(refs: list[str], log: Callable[[str], None] = print) -> None:
    """Load into the cluster in use: $KUBECONFIG's when set, else the local one, else kind."""
    p = paths()
    use_local = targets_local()
    for ref in refs:
        if use_local:
            images.load(ref, p)
        elif kind.running():
            kind.load(ref)
        else:
            raise RuntimeError(
                f"cannot load {ref}: neither the local cluster nor the kind cluster "
                f"{kind.KIND_CLUSTER!r} is in use; load it into your cluster's node yourself"
            )
        log(f"loaded {ref}")


def build_images(which: list[str]) -> list[str]:
    builders = {
        "template": images.build_template_image,
        "operator": images.build_operator_image,
        "consumer": images.build_consumer_template_image,
        "broker": images.build_broker_image,
    }
    return [builders[w]() for w in which]
