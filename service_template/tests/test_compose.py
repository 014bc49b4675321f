"""The composition endpoint against real fake upstreams: slow, failing, refusing, flaky."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from support import FakeUpstreams, Service


def compose(svc: Service, request_id: str | None = None) -> tuple[dict[str, Any], float]:
    headers = {"X-Request-Id": request_id} if request_id else {}
    start = time.monotonic()
    resp = svc.get("/compose", headers=headers)
    elapsed = time.monotonic() - start
    assert resp.status == 200, resp.body
    body: dict[str, Any] = resp.json()
    return body, elapsed


def test_partial_answer_arrives_within_the_deadline(
    start_service: Callable[..., Service], upstreams: FakeUpstreams
) -> None:
    svc = start_service(
        {
            "UPSTREAMS": ",".join(
                [
                    f"ok={upstreams.url('/ok')}",
                    f"slow={upstreams.url('/slow?delay=5')}",
                    f"failing={upstreams.url('/status/500')}",
                    f"refusing={upstreams.refusing_url}",
                ]
            ),
            "UPSTREAM_TIMEOUT_SECONDS": "0.4",
            "COMPOSE_DEADLINE_SECONDS": "1",
            "UPSTREAM_RETRY_BACKOFF_SECONDS": "0.02",
        }
    )
    body, elapsed = compose(svc, request_id="fan-out-1")

    assert elapsed < 1.5, f"answer took {elapsed:.2f}s with a 1s deadline"
    result = body["upstreams"]
    assert (body["green"], body["red"]) == (1, 3)
    assert result["ok"]["status"] == "green"
    assert result["ok"]["body"] == {"path": "/ok", "status": 200}
    assert result["slow"]["status"] == "red"
    assert result["slow"]["outcome"] == "timeout"
    assert result["failing"] == {
        "status": "red",
        "outcome": "http_error",
        "code": 500,
        "attempts": 1,  # a 500 is not worth a retry
        "duration_ms": result["failing"]["duration_ms"],
        "error": "upstream answered 500 Internal Server Error",
    }
    assert result["refusing"]["outcome"] == "connection_error"
    assert result["refusing"]["attempts"] == 2  # one retry
    # The request id travels to the upstreams.
    assert any(h.get("x-request-id") == "fan-out-1" for p, h in upstreams.hits if p == "/ok")


def test_calls_run_concurrently(
    start_service: Callable[..., Service], upstreams: FakeUpstreams
) -> None:
    slow = upstreams.url("/slow?delay=0.3")
    svc = start_service({"UPSTREAMS": f"a={slow},b={slow},c={slow},d={slow}"})
    body, elapsed = compose(svc)
    assert body["green"] == 4
    assert elapsed < 0.9, f"four 0.3s calls took {elapsed:.2f}s: they did not run together"


def test_each_call_gets_at_most_the_time_that_remains(
    start_service: Callable[..., Service], upstreams: FakeUpstreams
) -> None:
    svc = start_service(
        {
            "UPSTREAMS": f"slow={upstreams.url('/slow?delay=5')}",
            "UPSTREAM_TIMEOUT_SECONDS": "10",
            "COMPOSE_DEADLINE_SECONDS": "0.5",
        }
    )
    body, elapsed = compose(svc)
    assert body["upstreams"]["slow"]["outcome"] == "timeout"
    assert elapsed < 1.0, f"a 10s call timeout was not cut to the 0.5s deadline ({elapsed:.2f}s)"


def test_a_transient_failure_is_retried_once(
    start_service: Callable[..., Service], upstreams: FakeUpstreams
) -> None:
    svc = start_service({"UPSTREAMS": f"flaky={upstreams.url('/flaky/one')}"})
    body, _ = compose(svc)
    assert body["upstreams"]["flaky"]["status"] == "green"
    assert body["upstreams"]["flaky"]["attempts"] == 2
    assert upstreams.count("/flaky/one") == 2
    assert svc.metric("upstream_calls_total", upstream="flaky", outcome="http_error") == 1
    assert svc.metric("upstream_calls_total", upstream="flaky", outcome="ok") == 1


def test_retries_can_be_turned_off(
    start_service: Callable[..., Service], upstreams: FakeUpstreams
) -> None:
    svc = start_service(
        {"UPSTREAMS": f"flaky={upstreams.url('/flaky/two')}", "UPSTREAM_RETRIES": "0"}
    )
    body, _ = compose(svc)
    assert body["upstreams"]["flaky"]["code"] == 503
    assert upstreams.count("/flaky/two") == 1


def test_per_upstream_timeout_and_retries_win_over_the_service_wide_ones(
    start_service: Callable[..., Service], upstreams: FakeUpstreams
) -> None:
    # The options after each URL (the operator renders them from spec.upstreams[]): `quick` gives
    # up after 0.2 s although UPSTREAM_TIMEOUT_SECONDS is 5, and `once` is not retried although
    # UPSTREAM_RETRIES is 1; `patient` keeps the service-wide timeout.
    svc = start_service(
        {
            "UPSTREAMS": ",".join(
                [
                    f"quick={upstreams.url('/slow?delay=3')} timeout=0.2 retries=0",
                    f"once={upstreams.url('/flaky/three')} retries=0",
                    f"patient={upstreams.url('/slow?delay=0.5')}",
                ]
            ),
            "UPSTREAM_TIMEOUT_SECONDS": "5",
            "UPSTREAM_RETRIES": "1",
            "COMPOSE_DEADLINE_SECONDS": "3",
        }
    )
    body, elapsed = compose(svc)
    result = body["upstreams"]
    assert result["quick"]["outcome"] == "timeout"
    assert result["quick"]["attempts"] == 1
    assert result["quick"]["duration_ms"] < 1000
    assert result["once"]["code"] == 503
    assert upstreams.count("/flaky/three") == 1
    assert result["patient"]["status"] == "green"
    assert elapsed < 2.5


def test_client_errors_do_not_open_the_breaker(
    start_service: Callable[..., Service], upstreams: FakeUpstreams
) -> None:
    svc = start_service(
        {"UPSTREAMS": f"picky={upstreams.url('/status/404')}", "BREAKER_FAILURE_THRESHOLD": "1"}
    )
    for _ in range(3):
        body, _ = compose(svc)
        assert body["upstreams"]["picky"]["code"] == 404
    assert upstreams.count("/status/404") == 3
    assert svc.metric("upstream_circuit_breaker_state", upstream="picky") == 0


def test_circuit_breaker_opens_and_closes(
    start_service: Callable[..., Service], upstreams: FakeUpstreams
) -> None:
    upstreams.set_switch("b", healthy=False)
    svc = start_service(
        {
            "UPSTREAMS": f"flip={upstreams.url('/switch/b')}",
            "UPSTREAM_RETRIES": "0",
            "BREAKER_FAILURE_THRESHOLD": "2",
            "BREAKER_RESET_SECONDS": "0.6",
        }
    )

    def outcome() -> str:
        return str(compose(svc)[0]["upstreams"]["flip"]["outcome"])

    # Two failures in a row open the breaker; then calls fail fast, without reaching the upstream.
    assert [outcome(), outcome()] == ["http_error", "http_error"]
    assert svc.metric("upstream_circuit_breaker_state", upstream="flip") == 2
    assert outcome() == "circuit_open"
    assert upstreams.count("/switch/b") == 2
    assert svc.metric("upstream_calls_total", upstream="flip", outcome="circuit_open") == 1

    # After the reset time one trial goes through; it fails, so the breaker opens again.
    time.sleep(0.7)
    assert outcome() == "http_error"
    assert upstreams.count("/switch/b") == 3
    assert outcome() == "circuit_open"

    # The upstream recovers: the next trial succeeds and closes the breaker.
    upstreams.set_switch("b", healthy=True)
    time.sleep(0.7)
    assert outcome() == "ok"
    assert svc.metric("upstream_circuit_breaker_state", upstream="flip") == 0
    assert [outcome(), outcome()] == ["ok", "ok"]
    assert upstreams.count("/switch/b") == 6
