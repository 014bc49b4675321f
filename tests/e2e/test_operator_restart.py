"""The operator restarts in the middle of a batch of changes; everything converges, with no
duplicate and no orphaned children of any kind.

The first run is a real operator process, SIGKILLed while work is provably still pending: right
after the first child appears, with most of a batch of services not yet reconciled (the test
checks that, after the kill, some services still lack children or status). A graceful stop would
not do: kopf lets the handlers already running finish, and they cover the whole batch. Then
changes land while it is down; then a second, short run; then a third that must bring every
service to exactly the children the operator's own rendering wants: Deployment, Service,
HorizontalPodAutoscaler and PodDisruptionBudget, each present or absent as the spec says, owned
by the right TornadoService.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from tornado_operator import rendering, validation
from tornado_operator.children import CHILD_KINDS, render_children

from tests.e2e.operator_process import OperatorProcess
from tests.e2e.operator_support import (
    TEMPLATE_IMAGE,
    TEMPLATE_IMAGE_ALIAS,
    kubectl,
    owned_children,
    patch,
    running_operator,
    tornadoservice,
    wait_for,
    wait_ready,
)

pytest_plugins = ["tests.e2e.operator_fixtures"]

# Autoscaled but paused (replicas 0): all four child kinds, and no pod on the 2-core node.
AUTO = {"replicas": 0, "autoscaling": {"enabled": True, "minReplicas": 2, "maxReplicas": 3}}
N_AUTO = 24
MANAGED = "app.kubernetes.io/managed-by=tornado-operator"


def _services(ns: str) -> dict[str, dict[str, Any]]:
    items = json.loads(kubectl("get", "tsvc", "-n", ns, "-o", "json").stdout)["items"]
    return {s["metadata"]["name"]: s for s in items}


def _desired(ns: str, obj: dict[str, Any]) -> dict[str, dict[str, Any] | None]:
    """The children the operator's own rendering wants for this object, by kind."""
    meta = obj["metadata"]
    parent = rendering.Parent(name=meta["name"], namespace=ns, uid=meta["uid"])
    spec = validation.validated_spec(obj.get("spec"))
    return dict(render_children(parent, spec, TEMPLATE_IMAGE))


def _live_children(ns: str) -> dict[str, list[dict[str, Any]]]:
    """The operator's children in the namespace, by kind, for every kind the operator has."""
    out = {}
    for child in CHILD_KINDS:
        resource = f"{child.plural}.{child.group}" if child.group else child.plural
        data = kubectl("get", resource, "-n", ns, "-l", MANAGED, "-o", "json").stdout
        out[child.kind] = list(json.loads(data)["items"])
    return out


def _mismatches(ns: str) -> list[tuple[str, str]]:
    """(service name, what differs) for everything not converged; empty when converged."""
    services = _services(ns)
    children = _live_children(ns)
    found: list[tuple[str, str]] = []
    for kind, live in children.items():
        by_name: dict[str, list[dict[str, Any]]] = {}
        for child in live:
            by_name.setdefault(child["metadata"]["name"], []).append(child)
        for name, obj in services.items():
            want = _desired(ns, obj)[kind]
            have = by_name.pop(name, [])
            if want is None:
                if have:
                    found.append((name, f"{kind} exists but is not wanted"))
                continue
            if len(have) != 1:
                found.append((name, f"{kind}: {len(have)} objects"))
                continue
            [ref] = have[0]["metadata"]["ownerReferences"]
            if ref["uid"] != obj["metadata"]["uid"]:
                found.append((name, f"{kind} owned by {ref['uid']}"))
            if kind == "Deployment":
                spec, wspec = have[0]["spec"], want["spec"]
                if spec["replicas"] != wspec["replicas"]:
                    found.append((name, f"{kind} replicas {spec['replicas']}"))
                image = spec["template"]["spec"]["containers"][0]["image"]
                if image != wspec["template"]["spec"]["containers"][0]["image"]:
                    found.append((name, f"{kind} image {image}"))
        found += [(n, f"orphaned {kind}") for n in by_name]  # no TornadoService of that name
    for name, obj in services.items():
        status = obj.get("status") or {}
        if status.get("observedGeneration") != obj["metadata"]["generation"]:
            found.append((name, f"status not at generation {obj['metadata']['generation']}"))
    return found


def _unconverged(ns: str) -> list[str]:
    """Services without every wanted child or without a current status."""
    return sorted({name for name, _ in _mismatches(ns)})


def _create(ns: str, specs: dict[str, dict[str, Any]]) -> None:
    docs = [tornadoservice(name, **spec) for name, spec in specs.items()]
    kubectl(
        "apply", "-n", ns, "-f", "-",
        input=json.dumps({"apiVersion": "v1", "kind": "List", "items": docs}),
    )  # fmt: skip


def test_restart_in_the_middle_of_a_batch(
    namespace: str, operator_crds: None, template_image: str, tmp_path: Path
) -> None:
    ns = namespace
    batch: dict[str, dict[str, Any]] = {
        "batch-0": {"replicas": 1},
        "batch-1": {"replicas": 2},  # with a PodDisruptionBudget
        "batch-2": {"replicas": 1},
        "batch-3": {"replicas": 1},
        **{f"auto-{i:02d}": AUTO for i in range(N_AUTO)},
    }
    first = OperatorProcess(
        ns, None, tmp_path / "killed.log", env={"TORNADO_OPERATOR_DEFAULT_IMAGE": TEMPLATE_IMAGE}
    )
    try:
        wait_for("the operator's liveness endpoint", first.healthy, 60, 0.2)
        _create(ns, batch)
        wait_for("the first Deployment", lambda: owned_children(ns)["deployment"], 60, 0.05)
        first.kill()  # while it is still working through the batch
    finally:
        first.stop()
        print(f"--- the killed run (exit {first.proc.returncode}) ---\n{first.text()[-4000:]}")
    pending = _unconverged(ns)
    print(f"unconverged when the operator was killed: {len(pending)} of {len(batch)}")
    assert pending, "everything had converged before the kill: no work was pending"

    # Changes while it is down: an edit, a scale-to-zero (its PDB must go), autoscaling off
    # (HPA and PDB must go), a delete, new objects.
    patch("tornadoservice", "batch-0", ns, {"spec": {"image": TEMPLATE_IMAGE_ALIAS}})
    patch("tornadoservice", "batch-1", ns, {"spec": {"replicas": 0}})
    patch("tornadoservice", "auto-00", ns, {"spec": {"autoscaling": {"enabled": False}}})
    kubectl("delete", "tsvc", "batch-2", "-n", ns)
    _create(ns, {"batch-4": {"replicas": 1}, "batch-5": {"replicas": 1}})

    with running_operator(ns):
        patch("tornadoservice", "batch-3", ns, {"spec": {"replicas": 2}})
        time.sleep(1)

    with running_operator(ns):
        wait_for("every child of every kind to converge", lambda: not _mismatches(ns), 240, 2)
        for name in ("batch-0", "batch-3", "batch-4", "batch-5"):
            obj = wait_ready(name, ns)
            assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"]
        assert _mismatches(ns) == []
    names = {k: sorted(c["metadata"]["name"] for c in v) for k, v in _live_children(ns).items()}
    print(f"children after the restarts: { {k: len(v) for k, v in names.items()} }")
    assert "batch-2" not in names["Deployment"]
    assert "batch-1" not in names["PodDisruptionBudget"]
    assert "auto-00" not in names["HorizontalPodAutoscaler"] + names["PodDisruptionBudget"]
    assert len(names["HorizontalPodAutoscaler"]) == N_AUTO - 1
    assert len(names["PodDisruptionBudget"]) == N_AUTO - 1 + 1  # the autoscaled, and batch-3
