"""One autoscaler tick for one service with a recorded scraper, the status block and the Event
it produces, and the autoscaler's own metrics."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from prometheus_client import REGISTRY
from tornado_operator import labels
from tornado_operator.autoscaling import report, scrape
from tornado_operator.autoscaling.algorithm import Decision, Params
from tornado_operator.autoscaling.controller import Autoscalers, ServiceAutoscaler
from tornado_operator.autoscaling.scrape import PodMetrics, ScrapeResult, Target


def pod(name: str, ip: str) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": "shop",
            "labels": {**labels.common_labels("web", "x:1"), "pod-template-hash": "7c"},
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": "web-7c",
                    "controller": True,
                }
            ],
        },
        "spec": {
            "containers": [{"name": "app", "ports": [{"name": "http", "containerPort": 8080}]}]
        },
        "status": {
            "phase": "Running",
            "podIP": ip,
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


class RecordedScraper:
    """Answers each tick from a script: pod -> (in flight, requests total) or an error."""

    def __init__(self, script: list[dict[str, tuple[float, float] | str]], clock: list[float]):
        self.script = script
        self.clock = clock
        self.asked: list[list[str]] = []

    async def scrape(self, targets: Sequence[Target]) -> list[ScrapeResult]:
        answers = self.script.pop(0)
        self.asked.append([t.url for t in targets])
        out = []
        for target in targets:
            answer = answers[target.pod]
            now = self.clock[0]
            if isinstance(answer, str):
                out.append(ScrapeResult(target.pod, now, 0.01, None, answer, "recorded failure"))
            else:
                out.append(ScrapeResult(target.pod, now, 0.01, PodMetrics(*answer)))
        return out


def sample_value(name: str, **labels: str) -> float:
    value = REGISTRY.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_tick_scrapes_only_our_ready_pods_and_decides() -> None:
    stranger = pod("intruder", "10.0.0.99")
    stranger["metadata"]["ownerReferences"] = []
    pods = [pod("web-a", "10.0.0.1"), pod("web-b", "10.0.0.2"), stranger]
    clock = [100.0]
    scraper = RecordedScraper(
        [
            {"web-a": (12.0, 1000.0), "web-b": (14.0, 2000.0)},
            {"web-a": (12.0, 1020.0), "web-b": scrape.TIMEOUT},
        ],
        clock,
    )
    auto = ServiceAutoscaler(
        "shop",
        "web",
        Params(target=5, min_replicas=1, max_replicas=10),
        now=100.0,
        current_replicas=2,
    )
    errors_before = sample_value(
        "tornado_operator_autoscaler_scrape_errors_total", reason="timeout"
    )
    ups_before = sample_value(
        "tornado_operator_autoscaler_decisions_total", direction="up", panic="false"
    )

    first = asyncio.run(auto.tick(scraper, pods, current_replicas=2, now=100.0))
    assert scraper.asked == [["http://10.0.0.1:8080/metrics", "http://10.0.0.2:8080/metrics"]]
    # 26 in flight, target 5: 6 pods, 3 times the 2 ready: a burst, so panic mode.
    assert first.decision.desired_replicas == 6
    assert first.decision.panic is True
    assert first.decision.request_rate is None  # no previous counter reading yet
    assert (
        sample_value("tornado_operator_autoscaler_decisions_total", direction="up", panic="true")
        >= 1
    )

    clock[0] = 102.0
    second = asyncio.run(auto.tick(scraper, pods, current_replicas=6, now=102.0))
    d = second.decision
    assert (d.ready_pods, d.scraped_pods, d.missing_pods) == (2, 1, 1)
    # web-a answered 10 req/s; extrapolated to both ready pods: 20 req/s.
    assert d.request_rate == 20.0
    assert second.failures == ["web-b: timeout: recorded failure"]
    assert d.desired_replicas == 6  # in panic and missing metrics: never down
    assert (
        sample_value("tornado_operator_autoscaler_scrape_errors_total", reason="timeout")
        == errors_before + 1
    )
    assert (
        sample_value("tornado_operator_autoscaler_decisions_total", direction="up", panic="false")
        == ups_before
    )


def test_tick_without_pods_holds_and_does_not_scrape() -> None:
    scraper = RecordedScraper([], [0.0])
    auto = ServiceAutoscaler(
        "shop",
        "web",
        Params(target=5, min_replicas=1, max_replicas=10),
        now=0.0,
        current_replicas=3,
    )
    tick = asyncio.run(auto.tick(scraper, [], current_replicas=3, now=0.0))
    assert scraper.asked == []
    assert tick.decision.desired_replicas == 3
    assert tick.decision.reason == "no ready pods yet: keeping 3 replicas"


def test_unreachable_ready_pod_counts_as_missing() -> None:
    no_ip = pod("web-c", "")
    scraper = RecordedScraper([{"web-a": (3.0, 0.0)}], [0.0])
    auto = ServiceAutoscaler(
        "shop",
        "web",
        Params(target=5, min_replicas=1, max_replicas=10),
        now=0.0,
        current_replicas=2,
    )
    tick = asyncio.run(
        auto.tick(scraper, [pod("web-a", "10.0.0.1"), no_ip], current_replicas=2, now=0.0)
    )
    assert (tick.decision.scraped_pods, tick.decision.missing_pods) == (1, 1)
    assert tick.failures == ["web-c: no_address"]


def test_autoscalers_registry_and_gauges() -> None:
    registry = Autoscalers()
    params = Params(target=5, min_replicas=1, max_replicas=10)
    first = registry.ensure(("shop", "web"), params, now=0.0, current_replicas=2)
    assert (
        registry.ensure(
            ("shop", "web"),
            Params(target=7, min_replicas=1, max_replicas=10),
            now=2.0,
            current_replicas=2,
        )
        is first
    )
    assert first.decider.params.target == 7
    registry.ensure(("shop", "api"), params, now=0.0, current_replicas=1)
    assert sample_value("tornado_operator_autoscaler_services") == 2
    assert sample_value("tornado_operator_autoscaler_panic_services") == 0
    registry.remove(("shop", "api"))
    assert ("shop", "api") not in registry and len(registry) == 1
    assert sample_value("tornado_operator_autoscaler_services") == 1


# -- status and Event -------------------------------------------------------------------------


def decision(**kwargs: Any) -> Decision:
    base: dict[str, Any] = {
        "time": 10.0,
        "current_replicas": 2,
        "desired_replicas": 6,
        "reason": "average concurrency 28.4 over 60s (14.2 per pod, target 5) → 6 replicas",
        "observed_concurrency": 14.2049,
        "ready_pods": 2,
        "scraped_pods": 2,
        "request_rate": 31.456,
    }
    return Decision(**{**base, **kwargs})


def test_scale_event_and_status_after_a_scale() -> None:
    d = decision()
    assert report.scale_event(d) == report.ScaleEvent(
        "Normal",
        "ScaledUp",
        "from 2 to 6 replicas: average concurrency 28.4 over 60s (14.2 per pod, target 5) "
        "→ 6 replicas",
    )
    block = report.status_block(d, None, scaled_at="2026-03-01T10:00:00Z")
    assert block == {
        "metric": "concurrency",
        "observedConcurrency": 14.2,
        "panicMode": False,
        "desiredReplicas": 6,
        "readyPods": 2,
        "scrapedPods": 2,
        "missingPods": 0,
        "requestRate": 31.46,
        "lastScaleTime": "2026-03-01T10:00:00Z",
        "lastScaleReason": report.scale_message(d),
        "message": d.reason,
    }
    down = decision(current_replicas=6, desired_replicas=3)
    event = report.scale_event(down)
    assert event is not None and event.reason == "ScaledDown"


def test_status_without_scale_keeps_the_last_scale_and_removes_unknowns() -> None:
    previous = {"lastScaleTime": "2026-03-01T10:00:00Z", "lastScaleReason": "from 2 to 6 ..."}
    held = decision(
        desired_replicas=2,
        observed_concurrency=None,
        request_rate=None,
        reason="no metrics from any of the 2 ready pods: keeping 2 replicas",
    )
    assert report.scale_event(held) is None
    block = report.status_block(held, previous)
    assert block["lastScaleTime"] == "2026-03-01T10:00:00Z"
    assert block["lastScaleReason"] == "from 2 to 6 ..."
    assert block["observedConcurrency"] is None and block["requestRate"] is None  # merge: delete


def test_needs_write_throttles_noise_only() -> None:
    old = report.status_block(decision(), None, scaled_at="t")
    noisy = {**old, "observedConcurrency": 14.3, "message": "other words"}
    assert not report.needs_write(old, noisy, 5)
    assert report.needs_write(old, noisy, 30)
    assert report.needs_write(old, {**old, "missingPods": 1}, 0)
    assert not report.needs_write(old, dict(old), 600)
    assert report.needs_write(None, old, 0)
