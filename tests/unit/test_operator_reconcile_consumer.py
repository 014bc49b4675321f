"""One reconcile of a consumer against a fake API and fake watches: the Service of an API that
became a consumer is deleted, only the Deployment is applied, and the daemon's broker read
becomes the StreamAvailable condition, Degraded and one Warning Event."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from tornado_operator import DEFAULT_IMAGE
from tornado_operator.consumer import Reading
from tornado_operator.observed import Observed
from tornado_operator.reconcile import Reconciler

NS, NAME, UID = "apps", "billing", "u-1"
CONSUMER = {"broker": "redis://redis.broker.svc", "stream": "orders", "group": "billing"}


def parent(status: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "tornado-operator.dev/v1alpha1",
        "kind": "TornadoService",
        "metadata": {
            "name": NAME,
            "namespace": NS,
            "uid": UID,
            "generation": 2,
            "resourceVersion": "5",
            "creationTimestamp": "2026-01-01T00:00:00Z",
        },
        "spec": {"replicas": 1, "consumer": dict(CONSUMER)},
        "status": status or {},
    }


def owned(kind: str) -> dict[str, Any]:
    return {
        "kind": kind,
        "metadata": {
            "name": NAME,
            "namespace": NS,
            "uid": f"{kind}-uid",
            "resourceVersion": "3",
            "ownerReferences": [{"uid": UID, "controller": True}],
        },
    }


class FakeKube:
    def __init__(self) -> None:
        self.applied: list[str] = []
        self.deleted: list[str] = []
        self.statuses: list[dict[str, Any]] = []
        self.events: list[tuple[str, str]] = []

    async def get(self, child: Any, namespace: str, name: str) -> None:
        return None

    async def apply(self, child: Any, manifest: dict[str, Any]) -> dict[str, Any]:
        self.applied.append(manifest["kind"])
        return {**manifest, "metadata": {**manifest["metadata"], "resourceVersion": "9"}}

    async def delete_owned(self, child: Any, namespace: str, name: str, uid: str) -> bool:
        self.deleted.append(child.kind)
        return True

    async def patch_status(
        self, namespace: str, name: str, status: dict[str, Any]
    ) -> dict[str, Any]:
        self.statuses.append(status)
        return {}

    async def post_event(self, involved: Any, *, type: str, reason: str, message: str) -> None:
        self.events.append((type, reason))


def reconcile(
    objects: dict[str, dict[str, Any]], reading: Reading | None
) -> tuple[FakeKube, dict[str, Any]]:
    kube = FakeKube()

    def lookup(kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return objects.get(kind)

    rec = Reconciler(
        kube,  # type: ignore[arg-type]
        DEFAULT_IMAGE,
        Observed(lookup, lambda namespace, instance: []),
        stream_of=lambda namespace, name: reading,
        first_status_grace=0,  # status at once: these tests read it
    )

    async def main() -> None:
        outcome = await rec.reconcile(NS, NAME, trigger="broker")
        assert outcome.problem is None
        await asyncio.sleep(0)  # the Events are posted in the background
        await asyncio.sleep(0)

    asyncio.run(main())
    conds = {c["type"]: c for c in kube.statuses[-1]["conditions"]}
    return kube, conds


def test_an_api_turned_consumer_loses_its_service() -> None:
    objects = {"TornadoService": parent(), "Service": owned("Service")}
    kube, conds = reconcile(objects, Reading("StreamFound", "ok", 0.0, 0, 0, 0))
    assert kube.applied == ["Deployment", "NetworkPolicy"]
    assert kube.deleted == ["Service"]
    assert conds["StreamAvailable"]["status"] == "True"
    assert conds["StreamAvailable"]["observedGeneration"] == 2
    assert kube.statuses[-1]["url"] is None


@pytest.mark.parametrize(
    ("reason", "message"),
    [
        ("StreamNotFound", "stream orders does not exist on redis://redis.broker.svc"),
        ("BrokerUnreachable", "cannot reach the broker redis://redis.broker.svc (temporary)"),
    ],
)
def test_broker_trouble_is_a_condition_and_one_warning(reason: str, message: str) -> None:
    kube, conds = reconcile({"TornadoService": parent()}, Reading(reason, message, 0.0))
    assert (conds["StreamAvailable"]["status"], conds["StreamAvailable"]["reason"]) == (
        "False",
        reason,
    )
    assert conds["StreamAvailable"]["message"] == message
    assert (conds["Degraded"]["status"], conds["Degraded"]["reason"]) == ("True", reason)
    assert ("Warning", reason) in kube.events


def test_startup_wires_the_daemons_reads_into_the_reconciler(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import kopf
    from tornado_operator import settings as settings_mod

    from tests.unit.test_operator_handlers import run_configure

    memo = kopf.Memo(settings=settings_mod.Settings(metrics_port=0))
    run_configure(memo, monkeypatch)
    runtime, rec = memo["autoscaling"], memo["reconciler"]
    reading = Reading("StreamFound", "ok", 0.0, 1, 2, 3)
    runtime.streams[(NS, NAME)] = reading
    assert rec.stream_of(NS, NAME) is reading
    assert rec.stream_of(NS, "other") is None
    assert runtime.on_stream_change is not None
