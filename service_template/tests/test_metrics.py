"""Metrics change as requests are made: RED per handler, and per-upstream call metrics."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from support import FakeUpstreams, Response, Service


def test_request_counts_and_latency_follow_requests(service: Service) -> None:
    hello = {"handler": "root", "method": "GET", "code": "200"}
    before = service.metric("http_requests_total", **hello)
    observed_before = service.metric(
        "http_request_duration_seconds_count", handler="root", method="GET"
    )
    missing_before = service.metric(
        "http_requests_total", handler="not_found", method="GET", code="404"
    )

    for _ in range(3):
        assert service.get("/").status == 200
    assert service.get("/missing").status == 404

    assert service.metric("http_requests_total", **hello) == before + 3
    assert (
        service.metric("http_request_duration_seconds_count", handler="root", method="GET")
        == observed_before + 3
    )
    assert (
        service.metric("http_requests_total", handler="not_found", method="GET", code="404")
        == missing_before + 1
    )


def test_unknown_methods_share_one_series(service: Service) -> None:
    for method in ("BREW", "WHEN"):
        assert service.request(method, "/").status == 405
    text = service.get("/metrics").body.decode()
    assert 'method="BREW"' not in text
    assert service.metric("http_requests_total", handler="root", method="other", code="405") == 2


def test_upstream_metrics_follow_calls(
    start_service: Callable[..., Service], upstreams: FakeUpstreams
) -> None:
    svc = start_service(
        {
            "UPSTREAMS": f"fast={upstreams.url('/ok')},slow={upstreams.url('/slow?delay=1')}",
            "UPSTREAM_TIMEOUT_SECONDS": "3",
            "COMPOSE_DEADLINE_SECONDS": "3",
        }
    )
    assert svc.metric("upstream_calls_total", upstream="fast", outcome="ok") == 0

    answers: list[Response] = []
    caller = threading.Thread(target=lambda: answers.append(svc.get("/compose")))
    caller.start()
    # While the slow upstream holds its answer, its call is in flight.
    deadline = time.monotonic() + 5
    while svc.metric("upstream_calls_in_flight", upstream="slow") != 1:
        assert time.monotonic() < deadline, "the slow call never showed as in flight"
        time.sleep(0.05)
    caller.join(10)

    assert answers and answers[0].status == 200
    assert svc.metric("upstream_calls_in_flight", upstream="slow") == 0
    assert svc.metric("upstream_calls_total", upstream="fast", outcome="ok") == 1
    assert svc.metric("upstream_calls_total", upstream="slow", outcome="ok") == 1
    assert svc.metric("upstream_call_duration_seconds_count", upstream="slow") == 1
    assert svc.metric("upstream_call_duration_seconds_sum", upstream="slow") >= 1.0
    assert svc.metric("upstream_circuit_breaker_state", upstream="fast") == 0
