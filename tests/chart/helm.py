"""Rendering the chart offline with the project's helm (hack.kubetools runs helm itself)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml

from hack.kubetools import CHART, helm, value_args

CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
# The Kubernetes minor the project pins (the local cluster and kind-config.yaml run 1.34).
KUBE_VERSION = "1.34.0"
CRD_GROUP = "tornado-operator.dev"
CRD_NAME = f"tornadoservices.{CRD_GROUP}"
PEERING_CRDS = ("clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev")


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
