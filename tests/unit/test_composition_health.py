"""Upstream health from the callers' own metrics: windows, quantiles, states, status, condition."""

from __future__ import annotations

import math
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from tornado_operator.composition import exposition, health
from tornado_operator.composition import spec as composition
from tornado_operator.composition.health import Report, Seen, UpstreamSample, Window
from tornado_operator.composition.topology import Topology

BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0)


class FakePod:
    """The template's upstream metrics (hello/metrics.py), the same names and labels."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.calls = Counter(
            "upstream_calls_total", "", ["upstream", "outcome"], registry=self.registry
        )
        self.duration = Histogram(
            "upstream_call_duration_seconds",
            "",
            ["upstream"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.breaker = Gauge(
            "upstream_circuit_breaker_state", "", ["upstream"], registry=self.registry
        )
        Counter("http_requests_total", "", ["handler"], registry=self.registry).labels("x").inc()

    def call(self, upstream: str, outcome: str, seconds: float | None = 0.003, n: int = 1) -> None:
        for _ in range(n):
            self.calls.labels(upstream, outcome).inc()
            if seconds is not None:
                self.duration.labels(upstream).observe(seconds)

    def text(self) -> str:
        return generate_latest(self.registry).decode()


def test_exposition_reads_the_template_metrics() -> None:
    pod = FakePod()
    pod.call("b", "ok", 0.003, n=3)
    pod.call("b", "timeout", 0.8)
    pod.call("b", "circuit_open", None)
    pod.breaker.labels("b").set(2)
    pod.breaker.labels("idle").set(0)
    found = exposition.parse(pod.text())
    assert set(found) == {"b", "idle"}
    b = found["b"]
    assert b.outcomes == {"ok": 3.0, "timeout": 1.0, "circuit_open": 1.0}
    assert b.breaker == 2
    assert dict(b.buckets)[0.005] == 3.0 and dict(b.buckets)[math.inf] == 4.0
    assert found["idle"].outcomes == {} and found["idle"].breaker == 0


def test_exposition_that_is_not_one() -> None:
    with pytest.raises(exposition.ExpositionError):
        exposition.parse('upstream_calls_total{upstream="b" 1\n')


def sample(ok: float, failed: float = 0.0, breaker: int = 0) -> dict[str, UpstreamSample]:
    outcomes = {"ok": ok, "connection_error": failed} if failed else {"ok": ok}
    total = ok + failed
    buckets = ((0.005, ok), (1.0, total), (math.inf, total))
    return {"b": UpstreamSample(outcomes, buckets, breaker)}


def test_window_sums_deltas_over_pods_and_counts_restarts_from_zero() -> None:
    window = Window(30)
    first = window.add(0, {"p1": sample(100), "p2": sample(50)}, ready_pods=2)
    # One sample per pod: nothing is known about the window yet.
    assert first.upstreams["b"].calls == 0 and first.scraped_pods == 2
    report = window.add(10, {"p1": sample(110, 5), "p2": sample(3)}, ready_pods=2)
    seen = report.upstreams["b"]
    # p1: 10 ok and 5 failed more; p2 went down from 50 to 3: restarted, 3 since then.
    assert seen.outcomes == {"ok": 13, "connection_error": 5}
    assert (seen.calls, seen.failed) == (18, 5)


def test_window_keeps_about_its_length_and_forgets_pods_that_went() -> None:
    window = Window(30)
    for t in range(0, 70, 10):
        report = window.add(t, {"p1": sample(t)}, ready_pods=1)
    # At t=60 the window starts at t=30: 30 calls.
    assert report.upstreams["b"].calls == 30
    report = window.add(70, {}, ready_pods=1)
    assert report.scraped_pods == 0 and report.upstreams == {}


def test_quantiles_interpolate_like_prometheus() -> None:
    buckets = ((0.01, 50.0), (0.1, 90.0), (1.0, 100.0), (math.inf, 100.0))
    assert health.quantile(0.5, buckets) == pytest.approx(0.01)
    assert health.quantile(0.7, buckets) == pytest.approx(0.01 + 0.09 * 0.5)
    assert health.quantile(0.99, buckets) == pytest.approx(0.1 + 0.9 * 0.9)
    # Beyond the last finite bucket: its bound.
    assert health.quantile(0.99, ((0.5, 1.0), (math.inf, 10.0))) == 0.5
    assert health.quantile(0.5, ()) is None
    assert health.quantile(0.5, ((1.0, 0.0), (math.inf, 0.0))) is None


ENTRIES = composition.entries(
    {
        "upstreams": [
            {"name": "b", "service": "b"},
            {"name": "gone", "service": "gone"},
            {"name": "ext", "url": "http://ext.example/"},
        ]
    },
    "shop",
)
RESOLUTION = composition.Resolution(
    urls=(
        ("b", "http://b.shop.svc"),
        ("gone", "http://gone.shop.svc"),
        ("ext", "http://ext.example/"),
    ),
    missing=(ENTRIES[1],),
)


def report(**upstreams: Seen) -> Report:
    return Report(ready_pods=2, scraped_pods=2, upstreams=upstreams)


def seen(ok: int = 0, failed: int = 0, breaker: int | None = 0) -> Seen:
    outcomes = {k: v for k, v in (("ok", ok), ("connection_error", failed)) if v}
    total = ok + failed
    return Seen(
        outcomes, ((0.002, float(ok)), (1.0, float(total)), (math.inf, float(total))), breaker
    )


def items(r: Report | None, previous: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    return health.status_items(ENTRIES, RESOLUTION, r, previous or [])


def test_status_items_in_spec_order_with_states() -> None:
    b, gone, ext = items(report(b=seen(ok=40, failed=2), ext=seen()))
    assert b["name"] == "b" and (b["namespace"], b["service"]) == ("shop", "b")
    assert b["url"] == "http://b.shop.svc"
    assert b["state"] == "Healthy"
    assert b["calls"] == 42 and b["errorRatio"] == pytest.approx(2 / 42, abs=1e-4)
    assert b["outcomes"] == {"ok": 40, "connection_error": 2}
    assert b["breaker"] == "closed" and b["pods"] == 2
    assert 0 < b["latencyP50Milliseconds"] <= 2.0 < b["latencyP99Milliseconds"]
    assert gone["state"] == "NotFound"
    assert gone["message"] == "TornadoService shop/gone does not exist"
    assert ext["state"] == "Idle" and ext["calls"] == 0 and "url" in ext


@pytest.mark.parametrize(
    ("observed", "state"),
    [
        (seen(ok=10, failed=10), "Failing"),
        (seen(ok=100, failed=2), "Healthy"),  # fewer than MIN_FAILED failures
        (seen(ok=1, failed=2), "Healthy"),
        (seen(ok=30, failed=10), "Failing"),  # 25%
        (seen(ok=1000, failed=10), "Healthy"),
        (seen(ok=50, breaker=2), "Failing"),  # the breaker is open in a pod
        (seen(ok=0, failed=0, breaker=1), "Failing"),
        (seen(), "Idle"),
    ],
)
def test_states(observed: Seen, state: str) -> None:
    assert health.state_of(observed) == state


def test_no_metrics_is_unknown_not_failing() -> None:
    b, _gone, _ext = items(Report(ready_pods=2, scraped_pods=0, upstreams={}))
    assert b["state"] == "Unknown" and "none of 2 Ready pods answered" in b["message"]
    b, _gone, _ext = items(Report(ready_pods=0, scraped_pods=0, upstreams={}))
    assert b["message"] == "no Ready pods"


def test_without_a_report_the_previous_measurements_stay() -> None:
    before = items(report(b=seen(ok=40)))
    # The operator restarted: no report yet. Nothing changes, so nothing is written.
    assert items(None, before) == before
    fresh = items(None)
    assert fresh[0]["state"] == "Unknown" and fresh[0]["message"] == "not measured yet"


def test_condition_names_the_failing_and_missing_upstreams() -> None:
    all_items = items(report(b=seen(ok=1, failed=20, breaker=2)))
    cond = health.condition(all_items)
    assert (cond.type, cond.status, cond.reason) == ("UpstreamsHealthy", False, "UpstreamNotFound")
    assert "gone: TornadoService shop/gone does not exist" in cond.message
    assert "b: circuit breaker open" in cond.message
    failing = health.condition([i for i in all_items if i["name"] != "gone"])
    assert (failing.status, failing.reason) == (False, "UpstreamsFailing")
    assert failing.message.startswith("b: ")
    healthy = health.condition([i for i in items(report(b=seen(ok=5))) if i["name"] != "gone"])
    assert (healthy.status, healthy.reason) == (True, "UpstreamsHealthy")
    assert healthy.message == "no upstream is failing (b healthy, ext idle)"


def test_events_for_what_just_became_so() -> None:
    before = [{"name": "b", "state": "Healthy"}, {"name": "gone", "state": "Healthy"}]
    now = items(report(b=seen(ok=1, failed=20)))
    cond = health.condition(now)
    events = health.transition_events(before, now, {"status": "True"}, cond)
    assert [(e.type, e.reason) for e in events] == [
        ("Warning", "UpstreamFailing"),
        ("Warning", "UpstreamNotFound"),
    ]
    assert events[1].message == "upstream gone: TornadoService shop/gone does not exist"
    # The same again: no news.
    assert health.transition_events(now, now, {"status": "False"}, cond) == []
    # Healthy again: one Normal event.
    ok = [{"name": "b", "state": "Healthy"}]
    back = health.condition(ok)
    events = health.transition_events(now, ok, {"status": "False"}, back)
    assert [(e.type, e.reason) for e in events] == [("Normal", "UpstreamsHealthy")]


def callers_from(index: dict[tuple[str, str], set[tuple[str, str]]]):  # type: ignore[no-untyped-def]
    return lambda ns, name: index.get((ns, name), set())


def tsvc(name: str, *targets: str, url: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "metadata": {"name": name, "namespace": "ns"},
        "spec": {"upstreams": [{"name": t, "service": t} for t in targets]},
    }
    if url:
        body["status"] = {"url": url}
    return body


def test_topology_reconciles_targets_added_and_removed() -> None:
    topo = Topology()
    none = callers_from({})
    assert topo.observe(("ns", "a"), tsvc("a", "b"), none, listing=True) == set()
    assert topo.observe(("ns", "a"), tsvc("a", "b", "c"), none) == {("ns", "c")}
    assert topo.observe(("ns", "a"), tsvc("a", "c"), none) == {("ns", "b")}
    # Its own status write (same targets, same URL): nothing.
    assert topo.observe(("ns", "a"), tsvc("a", "c"), none) == set()
    # Deleted: what it called loses a caller.
    assert topo.observe(("ns", "a"), None, none) == {("ns", "c")}
    assert topo.services_with_upstreams() == []


def test_topology_reconciles_callers_when_a_service_appears_goes_or_moves() -> None:
    topo = Topology()
    callers = callers_from({("ns", "b"): {("ns", "a"), ("ns", "b")}})
    assert topo.observe(("ns", "b"), tsvc("b"), callers) == {("ns", "a")}  # appeared
    assert topo.observe(("ns", "b"), tsvc("b", url="http://b.ns.svc"), callers) == {("ns", "a")}
    assert topo.observe(("ns", "b"), tsvc("b", url="http://b.ns.svc"), callers) == set()
    gone = tsvc("b", url="http://b.ns.svc")
    gone["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert topo.observe(("ns", "b"), gone, callers) == {("ns", "a")}
    assert topo.observe(("ns", "b"), None, callers) == set()


def test_a_cycle_settles() -> None:
    # A calls B, B calls A: each one's reconcile writes its status once; the echoes change
    # neither targets nor URLs, so they trigger nothing.
    topo = Topology()
    index = {("ns", "a"): {("ns", "b")}, ("ns", "b"): {("ns", "a")}}
    callers = callers_from(index)
    assert topo.observe(("ns", "a"), tsvc("a", "b"), callers) == {("ns", "b")}
    assert topo.observe(("ns", "b"), tsvc("b", "a"), callers) == {("ns", "a")}
    a = tsvc("a", "b", url="http://a.ns.svc")
    b = tsvc("b", "a", url="http://b.ns.svc")
    assert topo.observe(("ns", "a"), a, callers) == {("ns", "b")}
    assert topo.observe(("ns", "b"), b, callers) == {("ns", "a")}
    for _ in range(3):
        assert topo.observe(("ns", "a"), a, callers) == set()
        assert topo.observe(("ns", "b"), b, callers) == set()
    assert topo.services_with_upstreams() == [("ns", "a"), ("ns", "b")]
