"""What a reconcile sends, and when: its requests together, a bounded number of reconciles at
once, and a new TornadoService's first status held until its first rollout is done."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from tornado_operator import metrics, reconcile
from tornado_operator.errors import APIError
from tornado_operator.observed import Observed
from tornado_operator.reconcile import Reconciler

NS = "shop"
JSONDict = dict[str, Any]


def tornadoservice(name: str, status: JSONDict | None = None) -> JSONDict:
    return {
        "apiVersion": "tornado-operator.dev/v1alpha1",
        "kind": "TornadoService",
        "metadata": {"name": name, "namespace": NS, "uid": f"uid-{name}", "generation": 1},
        "spec": {"replicas": 2},
        "status": status or {},
    }


def available(deployment: JSONDict) -> JSONDict:
    """`deployment` as its controller reports it once both pods are available."""
    return {
        **deployment,
        "metadata": {**deployment["metadata"], "generation": 1},
        "status": {
            "observedGeneration": 1,
            "replicas": 2,
            "readyReplicas": 2,
            "updatedReplicas": 2,
            "availableReplicas": 2,
        },
    }


class Cluster:
    """A fake API server: what is applied exists, and the watches see it at once. Each request
    waits for `gate` (when set) and records how many were in flight."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], JSONDict] = {}
        self.pods: list[JSONDict] = []
        self.statuses: list[JSONDict] = []
        self.events: list[tuple[str, str]] = []
        self.requests: list[tuple[str, str]] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self.gate: asyncio.Event | None = None
        self.fail: dict[tuple[str, str], APIError] = {}
        self.version = 0
        self.terminating = False

    async def _request(self, verb: str, kind: str) -> None:
        self.requests.append((verb, kind))
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0)
            if self.gate is not None:
                await self.gate.wait()
            if (verb, kind) in self.fail:
                raise self.fail[(verb, kind)]
        finally:
            self.in_flight -= 1

    async def get(self, resource: Any, namespace: str, name: str) -> JSONDict | None:
        await self._request("get", resource.kind)
        return None

    async def apply(self, resource: Any, manifest: JSONDict) -> JSONDict:
        await self._request("apply", resource.kind)
        self.version += 1
        obj = {
            **manifest,
            "metadata": {**manifest["metadata"], "resourceVersion": str(self.version)},
        }
        self.objects[(manifest["kind"], manifest["metadata"]["name"])] = obj
        return obj

    async def patch_status(self, namespace: str, name: str, status: JSONDict) -> JSONDict:
        await self._request("patch-status", "TornadoService")
        self.statuses.append(status)
        parent = self.objects[("TornadoService", name)]
        self.version += 1
        parent["status"] = status
        parent["metadata"] = {**parent["metadata"], "resourceVersion": str(self.version)}
        return parent

    async def post_event(self, involved: Any, *, type: str, reason: str, message: str) -> None:
        self.events.append((type, reason))

    async def namespace_terminating(self, involved: JSONDict) -> bool:
        await self._request("probe", "Event")
        return self.terminating

    def observed(self) -> Observed:
        return Observed(
            lambda kind, ns, name: self.objects.get((kind, name)),
            lambda ns, instance: list(self.pods),
        )


def reconciler(cluster: Cluster, *, grace: float = 0) -> Reconciler:
    return Reconciler(
        cluster,  # type: ignore[arg-type]
        "img:1",
        cluster.observed(),
        first_status_grace=grace,
    )


async def test_a_reconciles_requests_go_out_together() -> None:
    cluster = Cluster()
    cluster.objects[("TornadoService", "a")] = tornadoservice("a")
    rec = reconciler(cluster)
    cluster.gate = asyncio.Event()
    task = asyncio.create_task(rec.reconcile(NS, "a", trigger="parent"))
    for _ in range(20):
        await asyncio.sleep(0)
    # Deployment, Service, PodDisruptionBudget, NetworkPolicy: four GETs at once.
    assert cluster.in_flight == 4
    assert [verb for verb, _ in cluster.requests] == ["get"] * 4
    cluster.gate.set()
    outcome = await task
    assert outcome.problem is None
    assert set(outcome.changed) == {
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "NetworkPolicy",
    }
    # ... then its four applies at once, then the status.
    assert [verb for verb, _ in cluster.requests[4:8]] == ["apply"] * 4
    assert cluster.requests[8:] == [("patch-status", "TornadoService")]


async def test_one_failed_apply_keeps_what_the_others_did() -> None:
    cluster = Cluster()
    cluster.objects[("TornadoService", "a")] = tornadoservice("a")
    cluster.fail[("apply", "Service")] = APIError(
        "etcdserver: request timed out", status=500, reason="InternalError"
    )
    rec = reconciler(cluster)
    outcome = await rec.reconcile(NS, "a", trigger="parent")
    assert outcome.problem is not None and not outcome.problem.permanent
    assert "applying children" in outcome.problem.message
    assert set(outcome.changed) == {"Deployment", "PodDisruptionBudget", "NetworkPolicy"}
    assert ("Service", "a") not in cluster.objects
    # Retried later: the next reconcile applies only what is missing.
    del cluster.fail[("apply", "Service")]
    cluster.requests.clear()
    outcome = await rec.reconcile(NS, "a", trigger="parent", retry=1)
    assert outcome.problem is None and outcome.changed == ("Service",)
    assert [r for r in cluster.requests if r[0] == "apply"] == [("apply", "Service")]


async def test_reconciles_in_flight_are_bounded() -> None:
    cluster = Cluster()
    names = [f"s{i}" for i in range(reconcile.RECONCILES_IN_FLIGHT * 3)]
    for name in names:
        cluster.objects[("TornadoService", name)] = tornadoservice(name)
    rec = reconciler(cluster)
    cluster.gate = asyncio.Event()
    tasks = [asyncio.create_task(rec.reconcile(NS, n, trigger="parent")) for n in names]
    for _ in range(50):
        await asyncio.sleep(0)
    assert cluster.in_flight == 4 * reconcile.RECONCILES_IN_FLIGHT
    cluster.gate.set()
    outcomes = await asyncio.gather(*tasks)
    assert all(o.problem is None for o in outcomes)
    assert cluster.most_in_flight == 4 * reconcile.RECONCILES_IN_FLIGHT
    assert [verb for verb, _ in cluster.requests].count("patch-status") == len(names)


async def test_a_new_services_first_status_waits_for_its_rollout() -> None:
    cluster = Cluster()
    cluster.objects[("TornadoService", "a")] = tornadoservice("a")
    rec = reconciler(cluster, grace=30)
    await rec.reconcile(NS, "a", trigger="parent")
    assert ("Deployment", "a") in cluster.objects
    assert cluster.statuses == []  # Progressing: nothing worth a write yet
    await rec.reconcile(NS, "a", trigger="pod")
    assert cluster.statuses == []
    cluster.objects[("Deployment", "a")] = available(cluster.objects[("Deployment", "a")])
    await rec.reconcile(NS, "a", trigger="pod")
    [status] = cluster.statuses
    ready = {c["type"]: c for c in status["conditions"]}["Ready"]
    assert ready["status"] == "True" and status["observedGeneration"] == 1
    await asyncio.sleep(0)
    assert ("Normal", "Ready") not in cluster.events  # the first status says it
    # The hold is over for good: a later change is written at once.
    cluster.objects[("Deployment", "a")]["status"]["availableReplicas"] = 1
    cluster.objects[("Deployment", "a")]["status"]["readyReplicas"] = 1
    await rec.reconcile(NS, "a", trigger="pod")
    assert len(cluster.statuses) == 2
    await asyncio.sleep(0)
    assert ("Normal", "NotReady") in cluster.events
    rec.first_status_grace = 0
    for task in list(rec._tasks):
        task.cancel()


async def test_the_first_status_is_written_when_the_wait_is_over() -> None:
    cluster = Cluster()
    cluster.objects[("TornadoService", "a")] = tornadoservice("a")
    rec = reconciler(cluster, grace=0.05)
    await rec.reconcile(NS, "a", trigger="parent")
    assert cluster.statuses == []
    await asyncio.sleep(0.2)  # the reconcile the hold scheduled
    [status] = cluster.statuses
    conds = {c["type"]: c for c in status["conditions"]}
    assert conds["Ready"]["status"] == "False"
    assert conds["Progressing"]["status"] == "True"


async def test_a_problem_is_written_at_once() -> None:
    cluster = Cluster()
    cluster.objects[("TornadoService", "a")] = tornadoservice("a")
    rec = reconciler(cluster, grace=30)
    await rec.reconcile(NS, "a", trigger="parent")
    cluster.pods.append(
        {
            "metadata": {"name": "a-1"},
            "status": {
                "containerStatuses": [
                    {"name": "app", "state": {"waiting": {"reason": "ImagePullBackOff"}}}
                ]
            },
        }
    )
    await rec.reconcile(NS, "a", trigger="pod")
    [status] = cluster.statuses
    degraded = {c["type"]: c for c in status["conditions"]}["Degraded"]
    assert (degraded["status"], degraded["reason"]) == ("True", "ImagePullFailed")
    for task in list(rec._tasks):
        task.cancel()


@pytest.mark.parametrize("status", [{"observedGeneration": 1}, None])
async def test_no_hold_without_a_create(status: JSONDict | None) -> None:
    """A TornadoService that has a status already (an operator restart), or whose children
    exist (another replica made them), has its status written at once."""
    cluster = Cluster()
    cluster.objects[("TornadoService", "a")] = tornadoservice("a", status)
    rec = reconciler(cluster, grace=30)
    if status is None:
        await reconciler(cluster).reconcile(NS, "a", trigger="parent")
        cluster.statuses.clear()
        cluster.objects[("TornadoService", "a")]["status"] = {}
        cluster.objects[("Deployment", "a")]["spec"]["replicas"] = 3  # drift: an update
    await rec.reconcile(NS, "a", trigger="parent")
    assert len(cluster.statuses) == 1
    assert not rec._tasks


@pytest.mark.parametrize("terminating", [True, False])
async def test_pods_going_away_ask_whether_the_namespace_goes(terminating: bool) -> None:
    cluster = Cluster()
    cluster.terminating = terminating
    cluster.objects[("TornadoService", "a")] = tornadoservice("a")
    cluster.objects[("TornadoService", "b")] = tornadoservice("b")
    rec = reconciler(cluster)
    for name in ("a", "b"):
        await rec.reconcile(NS, name, trigger="parent")
        cluster.objects[("Deployment", name)] = available(cluster.objects[("Deployment", name)])
        await rec.reconcile(NS, name, trigger="pod")
    assert len(cluster.statuses) == 4 and ("probe", "Event") not in cluster.requests
    # Both lose their pods (a namespace being deleted deletes them).
    for name in ("a", "b"):
        cluster.objects[("Deployment", name)]["status"].update(readyReplicas=0, availableReplicas=0)
        await rec.reconcile(NS, name, trigger="pod")
    # One question for the namespace, whatever the answer.
    assert cluster.requests.count(("probe", "Event")) == 1
    if terminating:
        assert len(cluster.statuses) == 4  # nothing written about a namespace that goes
        outcome = await rec.reconcile(NS, "a", trigger="pod")
        assert outcome.gone
    else:
        assert len(cluster.statuses) == 6


async def test_events_while_waiting_for_a_turn_make_one_reconcile() -> None:
    cluster = Cluster()
    busy = [f"busy{i}" for i in range(reconcile.RECONCILES_IN_FLIGHT)]
    for name in [*busy, "x"]:
        cluster.objects[("TornadoService", name)] = tornadoservice(name)
    rec = reconciler(cluster)
    cluster.gate = asyncio.Event()
    held = [asyncio.create_task(rec.reconcile(NS, n, trigger="parent")) for n in busy]
    for _ in range(20):
        await asyncio.sleep(0)
    waiting = [asyncio.create_task(rec.reconcile_soon(NS, "x", trigger="pod")) for _ in range(5)]
    for _ in range(20):
        await asyncio.sleep(0)
    before = metrics.RECONCILES.labels(trigger="pod", result="ok")._value.get()
    cluster.gate.set()
    await asyncio.gather(*held, *waiting)
    after = metrics.RECONCILES.labels(trigger="pod", result="ok")._value.get()
    assert after - before == 1  # one reconcile for the five events


async def test_pods_no_node_takes_are_written_at_once() -> None:
    cluster = Cluster()
    cluster.objects[("TornadoService", "a")] = tornadoservice("a")
    rec = reconciler(cluster, grace=30)
    await rec.reconcile(NS, "a", trigger="parent")
    await rec.reconcile(NS, "a", trigger="pod")
    assert cluster.statuses == []
    cluster.pods.append(
        {
            "metadata": {"name": "a-1"},
            "status": {
                "phase": "Pending",
                "conditions": [
                    {
                        "type": "PodScheduled",
                        "status": "False",
                        "reason": "Unschedulable",
                        "message": "0/1 nodes are available: 1 Insufficient memory.",
                    }
                ],
            },
        }
    )
    await rec.reconcile(NS, "a", trigger="pod")
    [status] = cluster.statuses
    progressing = {c["type"]: c for c in status["conditions"]}["Progressing"]
    assert progressing["reason"] == "PodsUnschedulable"
    for task in list(rec._tasks):
        task.cancel()
