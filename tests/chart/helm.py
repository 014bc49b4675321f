"""Running helm against the chart: render it offline, or install it into the test cluster."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml

from tests.cluster.config import REPO
from tests.cluster.kube import binary

CHART = REPO / "charts" / "tornado-operator"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
CRD_FILES = sorted((CHART / "files" / "crds").glob("*.yaml"))
# The Kubernetes minor the project pins (the local cluster and kind-config.yaml run 1.34).
KUBE_VERSION = "1.34.0"
CRD_GROUP = "tornado-operator.dev"
CRD_NAME = f"tornadoservices.{CRD_GROUP}"
PEERING_CRDS = ("clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev")


def helm(
    *args: str, check: bool = True, timeout: float = 600, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the project's helm (the cache build, else PATH) against $KUBECONFIG."""
    proc = subprocess.run(
        [binary("helm"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input,
        env=dict(os.environ),
        check=False,
    )
    if check and proc.returncode != 0:
        raise RuntimeError(
            f"helm {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


def value_args(values_files: Iterable[Path] = (), set_values: Iterable[str] = ()) -> list[str]:
    args: list[str] = []
    for f in values_files:
        args += ["-f", str(f)]
    for s in set_values:
        args += ["--set", s]
    return args


def render(
    values_files: Sequence[Path] = (),
    set_values: Sequence[str] = (),
    *,
    release: str = "t",
    namespace: str = "tornado-system",
    api_versions: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """`helm template` (hooks included) parsed into objects; raises when helm refuses."""
    args = ["template", release, str(CHART), "-n", namespace, "--kube-version", KUBE_VERSION]
    for api in api_versions:
        args += ["--api-versions", api]
    out = helm(*args, *value_args(values_files, set_values)).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def render_error(set_values: Sequence[str]) -> str:
    """The message of a render that must fail (AssertionError if it succeeds)."""
    args = ["template", "t", str(CHART), "--kube-version", KUBE_VERSION]
    proc = helm(*args, *value_args((), set_values), check=False)
    assert proc.returncode != 0, f"helm accepted {set_values}"
    return proc.stderr


def by_kind(objs: Iterable[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objs if o.get("kind") == kind]


def pod_specs(objs: Iterable[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """(name, PodSpec) of every pod the objects would run."""
    out: list[tuple[str, dict[str, Any]]] = []
    for o in objs:
        if o["kind"] == "Pod":
            out.append((o["metadata"]["name"], o["spec"]))
        elif o["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            out.append((o["metadata"]["name"], o["spec"]["template"]["spec"]))
    return out
