"""Shared helpers and fixtures for the operator's cluster tests (tests/e2e/test_operator_*.py).

The operator runs in-process through kopf's KopfRunner (the same handlers module the real
command loads), against the real cluster, with real pods of the template image.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from kopf.testing import KopfRunner
from tornado_operator import children, metrics

from hack import images
from hack.kubetools import kubectl

ROOT = Path(__file__).resolve().parents[2]
CRD_DIR = ROOT / "charts/tornado-operator/files/crds"
EXAMPLES = ROOT / "examples"
TEMPLATE_IMAGE = images.TEMPLATE_IMAGE
# The same image under a different reference: changing spec.image to it is a real image edit
# (new pod template, rolling update) that needs no second image in the node.
TEMPLATE_IMAGE_ALIAS = f"docker.io/{TEMPLATE_IMAGE}"
MANAGED_SELECTOR = "app.kubernetes.io/managed-by=tornado-operator"
CHILD_KINDS = ("deployment", "service", "horizontalpodautoscaler", "poddisruptionbudget")
# Small pods: the node has 2 CPUs and several tests' pods may still be terminating.
SMALL = {"requests": {"cpu": "20m", "memory": "48Mi"}, "limits": {"memory": "128Mi"}}

T = TypeVar("T")


def get(kind: str, name: str, namespace: str) -> dict[str, Any] | None:
    proc = kubectl(
        "get",
        kind,
        name,
        "-n",
        namespace,
        "-o",
        "json",
        "--ignore-not-found",
        "--show-managed-fields",
        check=True,
    )
    return json.loads(proc.stdout) if proc.stdout.strip() else None


def apply(manifest: dict[str, Any] | str, namespace: str) -> None:
    text = manifest if isinstance(manifest, str) else yaml.safe_dump(manifest)
    kubectl("apply", "-n", namespace, "-f", "-", input=text)


def patch(
    kind: str, name: str, namespace: str, body: dict[str, Any], kind_of_patch: str = "merge"
) -> None:
    kubectl("patch", kind, name, "-n", namespace, "--type", kind_of_patch, "-p", json.dumps(body))


def wait_for(
    what: str, probe: Callable[[], T | None], timeout: float = 180, interval: float = 1.0
) -> T:
    """Poll until `probe` returns something truthy; fail naming `what` and the last value."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = probe()
        except (RuntimeError, OSError, json.JSONDecodeError) as exc:  # not yet: try again
            last = exc
        else:
            if last:
                return last
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}"[:4000])
        time.sleep(interval)


def tornadoservice(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "tornado-operator.dev/v1alpha1",
        "kind": "TornadoService",
        "metadata": {"name": name},
        "spec": {"resources": copy.deepcopy(SMALL), **spec},
    }


def condition(obj: dict[str, Any] | None, type_: str) -> dict[str, Any] | None:
    for cond in ((obj or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_:
            return cond  # type: ignore[no-any-return]
    return None


def wait_ready(name: str, namespace: str, timeout: float = 240) -> dict[str, Any]:
    """`kubectl wait --for=condition=Ready`, as a user would, then the fresh object."""
    proc = kubectl(
        "wait",
        "--for=condition=Ready",
        f"tornadoservice/{name}",
        "-n",
        namespace,
        f"--timeout={int(timeout)}s",
        check=False,
        timeout=timeout + 30,
    )
    if proc.returncode != 0:
        obj = get("tornadoservice", name, namespace)
        pods = kubectl("get", "pods", "-n", namespace, "-o", "wide", check=False).stdout
        events = kubectl(
            "get", "events", "-n", namespace, "--sort-by=.lastTimestamp", check=False
        ).stdout
        status = json.dumps((obj or {}).get("status"), indent=1)
        pytest.fail(
            f"{name} not Ready: {proc.stderr}\nstatus: {status}"
            f"\npods:\n{pods}\nevents:\n{events[-3000:]}"
        )
    obj = get("tornadoservice", name, namespace)
    assert obj is not None
    return obj


def wait_condition(
    name: str,
    namespace: str,
    type_: str,
    status: str,
    reason: str | None = None,
    timeout: float = 180,
) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        obj = get("tornadoservice", name, namespace)
        cond = condition(obj, type_)
        if cond and cond["status"] == status and (reason is None or cond["reason"] == reason):
            return cond
        return None

    return wait_for(f"{name} {type_}={status} reason={reason}", probe, timeout)


def events_for(name: str, namespace: str) -> list[dict[str, Any]]:
    data = json.loads(
        kubectl(
            "get",
            "events",
            "-n",
            namespace,
            "-o",
            "json",
            "--field-selector",
            f"involvedObject.kind=TornadoService,involvedObject.name={name}",
        ).stdout
    )
    return list(data.get("items") or [])


def wait_event(
    name: str, namespace: str, reason: str, type_: str | None = None, timeout: float = 60
) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        for ev in events_for(name, namespace):
            if ev.get("reason") == reason and (type_ is None or ev.get("type") == type_):
                return ev
        return None

    return wait_for(f"a {type_ or ''} Event {reason} on {name}", probe, timeout)


def http_get(namespace: str, service: str, path: str = "/") -> str:
    """GET through the API server's service proxy: reaches our own pods, needs no host routing."""
    return kubectl(
        "get", "--raw", f"/api/v1/namespaces/{namespace}/services/{service}:http/proxy{path}"
    ).stdout


def owned_children(namespace: str) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for kind in CHILD_KINDS:
        data = json.loads(
            kubectl("get", kind, "-n", namespace, "-l", MANAGED_SELECTOR, "-o", "json").stdout
        )
        out[kind] = list(data.get("items") or [])
    return out


# ---------------------------------------------------------------- the operator's own metrics
#
# The operator runs in this process, so its Prometheus registry is this process's: a retry, a
# write or a reconcile shows in these counters whether or not it changed a condition or posted
# an Event. Counters are process-wide: take a value before and compare after.

WRITE_VERBS = frozenset({"create", "apply", "patch", "patch-status", "update", "delete"})
CHILD_KIND_NAMES = frozenset(child.kind for child in children.CHILD_KINDS)


def api_requests(
    *, verbs: frozenset[str], kinds: frozenset[str] | None = None, ok: bool
) -> Counter[tuple[str, str, str]]:
    """API requests the operator made so far by (verb, kind, code); `ok`: answered 2xx only."""
    found: Counter[tuple[str, str, str]] = Counter()
    for family in metrics.API_REQUESTS.collect():
        for sample in family.samples:
            if not sample.name.endswith("_total"):
                continue
            labels = sample.labels
            if labels["verb"] not in verbs or (kinds is not None and labels["kind"] not in kinds):
                continue
            if ok and not labels["code"].startswith("2"):
                continue
            found[labels["verb"], labels["kind"], labels["code"]] += int(sample.value)
    return found


def reconciles(result: str | None = None) -> int:
    """Reconciles so far (every trigger, every attempt), of one result or all."""
    total = 0.0
    for family in metrics.RECONCILES.collect():
        for sample in family.samples:
            if sample.name.endswith("_total") and result in (None, sample.labels["result"]):
                total += sample.value
    return int(total)


@contextlib.contextmanager
def running_operator(*namespaces: str, default_image: str = TEMPLATE_IMAGE) -> Iterator[KopfRunner]:
    """The operator in this process, watching `namespaces`, until the block ends."""
    saved = {
        k: os.environ.get(k)
        for k in ("TORNADO_OPERATOR_DEFAULT_IMAGE", "TORNADO_OPERATOR_METRICS_PORT")
    }
    os.environ["TORNADO_OPERATOR_DEFAULT_IMAGE"] = default_image
    os.environ["TORNADO_OPERATOR_METRICS_PORT"] = "0"
    args = ["run", "--standalone", "--verbose", "-m", "tornado_operator.handlers"]
    for ns in namespaces:
        args += ["--namespace", ns]
    try:
        with KopfRunner(args, timeout=60) as runner:
            yield runner
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
