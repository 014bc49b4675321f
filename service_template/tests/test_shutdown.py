"""Graceful shutdown on SIGTERM: readiness first, then drain, then exit 0 with nothing lost."""

from __future__ import annotations

import http.client
import signal
import socket
import threading
import time
from collections.abc import Callable

from hello import SERVICE_NAME

from support import FakeUpstreams, Response, Service


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def refuses_connections(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def test_sigterm_with_requests_in_flight(
    start_service: Callable[..., Service], upstreams: FakeUpstreams
) -> None:
    svc = start_service(
        {
            "UPSTREAMS": f"slow={upstreams.url('/slow?delay=2')}",
            "UPSTREAM_TIMEOUT_SECONDS": "5",
            "COMPOSE_DEADLINE_SECONDS": "6",
            "DRAIN_DELAY_SECONDS": "1",
            "SHUTDOWN_TIMEOUT_SECONDS": "8",
        }
    )
    answers: list[Response | BaseException] = []

    def call() -> None:
        try:
            answers.append(svc.get("/compose", timeout=15))
        except Exception as exc:
            answers.append(exc)

    callers = [threading.Thread(target=call) for _ in range(5)]
    for caller in callers:
        caller.start()
    wait_until(lambda: upstreams.in_progress == 5, 5, "five requests in flight")

    svc.proc.send_signal(signal.SIGTERM)
    # 1. Readiness flips first...
    wait_until(lambda: svc.get("/readyz").status == 503, 0.5, "readiness to turn 503")
    assert svc.get("/readyz").body == b"draining\n"
    # 2. ...while requests are still served, and liveness stays green.
    during_drain = svc.get("/")
    assert during_drain.status == 200
    assert during_drain.headers.get("connection") == "close"
    assert svc.get("/livez").status == 200
    assert svc.proc.poll() is None

    # 3. After the drain delay the listener closes, with the slow requests still running.
    wait_until(lambda: refuses_connections(svc.port), 3, "the listener to close")
    assert upstreams.in_progress > 0, "the slow requests ended before the listener closed"

    # 4-6. In-flight requests finish, then the process exits 0.
    assert svc.proc.wait(15) == 0
    for caller in callers:
        caller.join(5)
    assert len(answers) == 5
    for answer in answers:
        assert isinstance(answer, Response), f"a request in flight failed: {answer!r}"
        assert answer.status == 200
        assert answer.json()["upstreams"]["slow"]["status"] == "green"

    messages = [e.get("msg") for e in svc.log_entries() if e.get("logger") == SERVICE_NAME]
    assert messages == ["started", "draining", "listener closed", "stopped"]
    closed = svc.wait_for_log(lambda e: e.get("msg") == "listener closed")
    assert closed["in_flight"] == 5


def test_requests_beyond_the_shutdown_timeout_are_abandoned(
    start_service: Callable[..., Service], upstreams: FakeUpstreams
) -> None:
    svc = start_service(
        {
            "UPSTREAMS": f"stuck={upstreams.url('/slow?delay=20')}",
            "UPSTREAM_TIMEOUT_SECONDS": "30",
            "COMPOSE_DEADLINE_SECONDS": "30",
            "DRAIN_DELAY_SECONDS": "0",
            "SHUTDOWN_TIMEOUT_SECONDS": "0.5",
        }
    )
    errors: list[BaseException] = []

    def call() -> None:
        try:
            svc.get("/compose", timeout=30)
        except (OSError, http.client.HTTPException) as exc:
            errors.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    wait_until(lambda: upstreams.in_progress == 1, 5, "the request to be in flight")
    start = time.monotonic()
    svc.proc.send_signal(signal.SIGTERM)
    assert svc.proc.wait(10) == 0
    assert time.monotonic() - start < 3
    caller.join(5)
    assert errors, "the abandoned request should have seen its connection close"
    svc.wait_for_log(lambda e: e.get("msg", "").startswith("shutdown timeout"))


def test_idle_service_stops_promptly(start_service: Callable[..., Service]) -> None:
    svc = start_service({"DRAIN_DELAY_SECONDS": "0.2"})
    # An idle keep-alive connection must not hold the shutdown up.
    conn = http.client.HTTPConnection("127.0.0.1", svc.port, timeout=5)
    conn.request("GET", "/")
    conn.getresponse().read()
    start = time.monotonic()
    assert svc.terminate(10) == 0
    assert time.monotonic() - start < 2
    conn.close()
