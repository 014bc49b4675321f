"""A consumer's daemon (autoscaling.daemon.consumer_tick) against the fake API of the concurrency
daemon's tests and a scripted broker: what it reads, writes and asks the reconciler for, how it
backs off, and how metric lag scales through the scale subresource."""

from __future__ import annotations

import asyncio
from typing import Any

from prometheus_client import REGISTRY
from tornado_operator.autoscaling import daemon
from tornado_operator.consumer import Reading

from tests.unit.test_autoscaling_daemon import NAME, NS, WHY, Clock, FakeKube, Script, StopFlag

BLOCK = {"broker": "redis://redis.broker.svc:6379/0", "stream": "orders", "group": "billing"}


def body(autoscaling: dict[str, Any] | None = None, replicas: int = 1) -> dict[str, Any]:
    spec: dict[str, Any] = {"replicas": replicas, "consumer": dict(BLOCK)}
    if autoscaling is not None:
        spec["autoscaling"] = autoscaling
    return {
        "apiVersion": "tornado-operator.dev/v1alpha1",
        "kind": "TornadoService",
        "metadata": {"name": NAME, "namespace": NS, "uid": "u-1", "resourceVersion": "10"},
        "spec": spec,
        "status": {},
    }


LAG = {
    "enabled": True,
    "metric": "lag",
    "targetLagPerReplica": 100,
    "minReplicas": 1,
    "maxReplicas": 10,
    "behavior": {"scaleDown": {"stabilizationWindowSeconds": 10}},
}


class Broker:
    """Answers each read from a list of (reason, lag, pending, entries-read); the last repeats."""

    def __init__(self, clock: Clock, answers: list[tuple[str, int | None, int, int]]) -> None:
        self.clock = clock
        self.answers = answers
        self.reads: list[tuple[str, str, str]] = []
        self.forgotten: list[str] = []
        self.closed = False

    async def read(self, broker: str, stream: str, group: str) -> Reading:
        await asyncio.sleep(0)  # let the reconcile requests it caused run, as a real read would
        self.reads.append((broker, stream, group))
        reason, lag, pending, read = (
            self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        )
        if reason != "StreamFound":
            return Reading(reason, f"{reason} for {stream}", self.clock())
        return Reading("StreamFound", "ok", self.clock(), lag, pending, read)

    async def forget(self, broker: str) -> None:
        self.forgotten.append(broker)

    async def close(self) -> None:
        self.closed = True


def run(
    obj: dict[str, Any],
    kube: FakeKube,
    answers: list[tuple[str, int | None, int, int]],
    ticks: int,
    reason: Any = WHY.OPERATOR_EXITING,
) -> tuple[daemon.Runtime, Broker, StopFlag, list[Any], list[tuple[str, str]]]:
    clock = Clock()
    posted: list[Any] = []
    changed: list[tuple[str, str]] = []

    async def stream_changed(namespace: str, name: str) -> None:
        changed.append((namespace, name))

    broker = Broker(clock, answers)
    rt = daemon.Runtime(
        kube,
        Script([{}]),
        post_event=lambda parent, event: posted.append(event),
        broker=broker,
        on_stream_change=stream_changed,
        clock=clock,
        wall=lambda: "2026-03-01T10:00:00Z",
    )
    stopped = StopFlag(ticks, clock, reason)

    async def main() -> None:
        await daemon.run(NS, NAME, obj, stopped, rt, lambda ns, name: [])
        await asyncio.sleep(0)

    asyncio.run(main())
    return rt, broker, stopped, posted, changed


def status_patches(kube: FakeKube) -> list[dict[str, Any]]:
    return [b["status"] for path, b in kube.writes() if path == "/status"]


def test_the_daemon_runs_for_every_consumer() -> None:
    assert daemon.wanted(body()["spec"])
    assert daemon.wanted(body(LAG)["spec"])
    assert not daemon.wanted({"autoscaling": {"enabled": True}})


def test_a_consumer_without_autoscaling_reports_its_group() -> None:
    kube = FakeKube(replicas=2)
    answers = [("StreamFound", 40, 5, 100), ("StreamFound", 20, 5, 120)]
    rt, broker, stopped, posted, changed = run(body(replicas=2), kube, answers, 2)
    assert broker.reads == [(BLOCK["broker"], "orders", "billing")] * 2
    assert not [w for w in kube.writes() if w[0] == "/scale"]  # nothing scales it
    first = status_patches(kube)[0]
    assert set(first) == {"consumer"}
    assert first["consumer"] == {
        "stream": "orders",
        "group": "billing",
        "reason": "StreamFound",
        "message": "ok",
        "lag": 40,
        "pending": 5,
        "backlog": 45,
        "consumptionRate": None,  # one read: no rate yet
        "lastReadTime": "2026-03-01T10:00:00Z",
    }
    # One state, one reconcile request; the numbers are not news for the reconciler.
    assert changed == [(NS, NAME)]
    assert stopped.waits == [2.0, 2.0] and posted == []
    assert (NS, NAME) not in rt.streams  # forgotten when the daemon stops
    assert broker.forgotten == [BLOCK["broker"]]  # and its client: nobody else reads there


def test_a_broker_is_forgotten_only_when_its_last_consumer_goes() -> None:
    clock = Clock()
    broker = Broker(clock, [("StreamFound", 0, 0, 0)])
    rt = daemon.Runtime(FakeKube(), Script([{}]), post_event=lambda p, e: None, broker=broker)

    async def main() -> None:
        await rt.use_broker(("a", "one"), "redis://x")
        await rt.use_broker(("a", "two"), "redis://x")
        await rt.use_broker(("a", "one"), "redis://y")  # its spec changed
        assert broker.forgotten == []
        await rt.use_broker(("a", "two"), None)
        assert broker.forgotten == ["redis://x"]
        await rt.use_broker(("a", "one"), None)
        assert broker.forgotten == ["redis://x", "redis://y"]

    asyncio.run(main())


def test_a_failed_read_is_written_at_once_and_keeps_the_last_numbers() -> None:
    kube = FakeKube(replicas=1)
    answers = [
        ("StreamFound", 40, 5, 100),
        ("StreamFound", 20, 5, 140),  # only noisy fields changed: no write yet
        ("StreamNotFound", 0, 0, 0),  # the reason changed: written at once
    ]
    run(body(), kube, answers, 3)
    blocks = [p["consumer"] for p in status_patches(kube)]
    assert [b["reason"] for b in blocks] == ["StreamFound", "StreamNotFound"]
    assert (blocks[-1]["lag"], blocks[-1]["pending"]) == (40, 5)  # last written, last known


def test_rate_helper() -> None:
    service = daemon._Service(NS, NAME, body(), daemon._Notes(daemon.logger), None)
    assert daemon._rate(service, Reading("StreamFound", "", 0.0, 0, 5, 100)) is None
    assert daemon._rate(service, Reading("StreamFound", "", 2.0, 0, 5, 140)) == 20.0
    assert daemon._rate(service, Reading("StreamFound", "", 4.0, 0, 0, 140)) == 11.25
    # The group was recreated: the counter went back, the rate starts over.
    assert daemon._rate(service, Reading("StreamFound", "", 6.0, 0, 0, 3)) is None
    assert daemon._rate(service, Reading("BrokerUnreachable", "", 8.0)) is None


def test_lag_scales_up_through_the_scale_subresource() -> None:
    kube = FakeKube(replicas=1)
    _, _, _, posted, _ = run(body(LAG), kube, [("StreamFound", 700, 100, 100)], 1)
    [scale] = [b for path, b in kube.writes() if path == "/scale"]
    assert scale == {"metadata": {"resourceVersion": "10"}, "spec": {"replicas": 8}}
    [event] = posted
    assert (event.type, event.reason) == ("Normal", "ScaledUp")
    assert event.message.startswith("from 1 to 8 replicas: backlog 800 (lag 700 + pending 100)")
    [patch] = status_patches(kube)
    assert patch["autoscaling"]["metric"] == "lag"
    assert patch["autoscaling"]["desiredReplicas"] == 8
    assert patch["autoscaling"]["lastScaleTime"] == "2026-03-01T10:00:00Z"
    assert patch["autoscaling"]["lastScaleReason"] == event.message
    assert patch["autoscaling"]["observedConcurrency"] is None
    assert patch["consumer"]["backlog"] == 800


def test_lag_scales_down_to_the_minimum_once_drained() -> None:
    kube = FakeKube(replicas=6)
    answers = [("StreamFound", 0, 0, 500)]
    run(body(LAG, replicas=6), kube, answers, 8)
    scales = [b["spec"]["replicas"] for path, b in kube.writes() if path == "/scale"]
    # Held for the 10 s window after start (seeded with 6), then straight to minReplicas.
    assert scales == [1]


def _reads(reason: str) -> float:
    value = REGISTRY.get_sample_value(
        "tornado_operator_autoscaler_broker_reads_total", {"reason": reason}
    )
    return value or 0.0


def test_a_missing_stream_backs_off_and_never_scales() -> None:
    before = _reads("StreamNotFound")
    kube = FakeKube(replicas=3)
    _, broker, stopped, posted, changed = run(
        body(LAG, replicas=3), kube, [("StreamNotFound", None, 0, 0)], 6
    )
    assert stopped.waits == [4.0, 8.0, 16.0, 30.0, 30.0, 30.0]  # bounded: never a storm
    assert len(broker.reads) == 6
    assert _reads("StreamNotFound") - before == 6
    assert not [w for w in kube.writes() if w[0] == "/scale"]  # fails static
    assert changed == [(NS, NAME)]  # one reconcile: the condition and its Warning Event
    assert posted == []
    first = status_patches(kube)[0]
    assert first["consumer"]["reason"] == "StreamNotFound"
    assert "keeping 3 replicas" in first["autoscaling"]["message"]


def test_recovery_resets_the_backoff_and_asks_for_a_reconcile() -> None:
    kube = FakeKube(replicas=1)
    answers = [
        ("BrokerUnreachable", None, 0, 0),
        ("BrokerUnreachable", None, 0, 0),
        ("StreamFound", 0, 0, 0),
    ]
    _, _, stopped, _, changed = run(body(), kube, answers, 4)
    assert stopped.waits == [4.0, 8.0, 2.0, 2.0]
    assert changed == [(NS, NAME), (NS, NAME)]  # unreachable, then found


def test_switching_off_removes_both_status_blocks() -> None:
    kube = FakeKube(replicas=1)
    run(body(LAG), kube, [("StreamFound", 0, 0, 0)], 1, reason=WHY.FILTERS_MISMATCH)
    assert status_patches(kube)[-1] == {"autoscaling": None, "consumer": None}


def test_a_deleted_consumer_stops_its_daemon() -> None:
    kube = FakeKube(replicas=1)
    kube.uid = "u-2"  # replaced by a same-named object: it has its own daemon
    _, broker, stopped, _, _ = run(body(), kube, [("StreamFound", 0, 0, 0)], 5)
    assert len(broker.reads) == 1 and stopped.waits == []
    assert status_patches(kube) == []
