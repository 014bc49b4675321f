"""Ownership checks and child-to-parent mapping used before any write."""

from __future__ import annotations

from prometheus_client import REGISTRY
from tornado_operator import metrics
from tornado_operator.children import CHILD_KINDS
from tornado_operator.reconcile import instance_of, owned_by, parent_of

UID = "6f1c0d4e-0000-4000-8000-000000000001"


def child(*refs: dict[str, object], labels: dict[str, str] | None = None) -> dict[str, object]:
    return {"metadata": {"ownerReferences": list(refs), "labels": labels or {}}}


def ref(**over: object) -> dict[str, object]:
    base: dict[str, object] = {
        "apiVersion": "tornado-operator.dev/v1alpha1",
        "kind": "TornadoService",
        "name": "web",
        "uid": UID,
        "controller": True,
    }
    return {**base, **over}


def test_owned_only_with_our_controller_reference() -> None:
    assert owned_by(child(ref()), UID)
    assert not owned_by(child(ref(controller=False)), UID)
    assert not owned_by(child(ref(uid="someone-else")), UID)  # same name, recreated parent
    assert not owned_by(child(), UID)
    assert not owned_by({"metadata": {}}, UID)


def test_parent_of() -> None:
    assert parent_of(child(ref())) == "web"
    assert parent_of(child(ref(kind="ReplicaSet"))) is None
    assert parent_of(child(ref(apiVersion="tornado-operator.dev/v2"))) is None
    assert parent_of(child(ref(controller=False))) is None


def test_instance_of_pods() -> None:
    assert instance_of(child(labels={"app.kubernetes.io/instance": "web"})) == "web"
    assert instance_of(child()) is None


def test_managed_objects_gauge() -> None:
    managed = metrics.ManagedObjects("TornadoService", [c.kind for c in CHILD_KINDS])

    def value(kind: str) -> float | None:
        return REGISTRY.get_sample_value("tornado_operator_managed_objects", {"kind": kind})

    assert value("PodDisruptionBudget") == 0  # every kind is reported from the start
    managed.set(("ns", "a"), frozenset({"Deployment", "Service", "HorizontalPodAutoscaler"}))
    managed.set(("ns", "b"), frozenset({"Deployment", "Service"}))
    assert value("TornadoService") == 2 and value("Deployment") == 2
    assert value("HorizontalPodAutoscaler") == 1 and value("PodDisruptionBudget") == 0
    managed.set(("ns", "a"), None)
    assert value("TornadoService") == 1 and value("HorizontalPodAutoscaler") == 0
    managed.set(("ns", "a"), None)  # gone twice: still counted once
    assert value("TornadoService") == 1


def test_managed_objects_gauge_follows_changes() -> None:
    managed = metrics.ManagedObjects("TornadoService", [c.kind for c in CHILD_KINDS])

    def value(kind: str) -> float | None:
        return REGISTRY.get_sample_value("tornado_operator_managed_objects", {"kind": kind})

    both = frozenset({"Deployment", "Service", "PodDisruptionBudget"})
    for _ in range(3):  # the same answer again changes nothing
        managed.set(("ns", "a"), both)
    assert value("TornadoService") == 1 and value("PodDisruptionBudget") == 1
    managed.set(("ns", "a"), frozenset({"Deployment", "Service", "HorizontalPodAutoscaler"}))
    assert value("PodDisruptionBudget") == 0 and value("HorizontalPodAutoscaler") == 1
    managed.set(("ns", "b"), frozenset({"Deployment", "NotAChild"}))
    assert value("Deployment") == 2 and value("NotAChild") is None
