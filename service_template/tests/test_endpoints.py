"""Every endpoint, answered by the real process."""

from __future__ import annotations

import re
from collections.abc import Callable

from hello import SERVICE_NAME

from support import Service


def test_hello(service: Service) -> None:
    resp = service.get("/")
    assert resp.status == 200
    assert resp.headers["content-type"].startswith("application/json")
    assert resp.json() == {"service": SERVICE_NAME, "message": "Hello, world!"}


def test_liveness(service: Service) -> None:
    resp = service.get("/livez")
    assert (resp.status, resp.body) == (200, b"ok\n")


def test_readiness(service: Service) -> None:
    resp = service.get("/readyz")
    assert (resp.status, resp.body) == (200, b"ready\n")


def test_startup(service: Service) -> None:
    resp = service.get("/startupz")
    assert (resp.status, resp.body) == (200, b"started\n")


def test_metrics_exposition(service: Service) -> None:
    service.get("/")
    resp = service.get("/metrics")
    assert resp.status == 200
    assert resp.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = resp.body.decode()
    assert "# TYPE http_requests_total counter" in text
    assert "# TYPE http_request_duration_seconds histogram" in text
    assert 'http_requests_total{code="200",handler="root",method="GET"}' in text
    assert "process_resident_memory_bytes" in text


def test_compose_without_upstreams_is_an_empty_answer(service: Service) -> None:
    resp = service.get("/compose")
    assert resp.status == 200
    body = resp.json()
    assert (body["green"], body["red"], body["upstreams"]) == (0, 0, {})


def test_unknown_path_is_404_with_request_id(service: Service) -> None:
    resp = service.get("/no/such/path")
    assert resp.status == 404
    assert resp.json() == {
        "error": "Not Found",
        "status": 404,
        "request_id": resp.headers["x-request-id"],
    }


def test_wrong_method_is_405(service: Service) -> None:
    resp = service.request("POST", "/", body=b"{}")
    assert resp.status == 405
    assert resp.json()["error"] == "Method Not Allowed"


def test_request_id_is_made_echoed_and_logged(service: Service) -> None:
    made = service.get("/").headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", made)

    given = service.get("/", headers={"X-Request-Id": "req-abc.123"})
    assert given.headers["x-request-id"] == "req-abc.123"
    entry = service.wait_for_log(lambda e: e.get("request_id") == "req-abc.123")
    assert entry["msg"] == "request"
    assert (entry["method"], entry["path"], entry["status"]) == ("GET", "/", 200)
    assert isinstance(entry["duration_ms"], float | int) and entry["duration_ms"] >= 0
    assert entry["service"] == SERVICE_NAME

    # An id that could break a log line or a header is replaced, not echoed.
    unsafe = service.get("/", headers={"X-Request-Id": "a b<script>"})
    assert re.fullmatch(r"[0-9a-f]{32}", unsafe.headers["x-request-id"])


def test_odd_paths_still_make_valid_log_lines(service: Service) -> None:
    answer = service.raw(
        b'GET /a"b\\c\xe2\x98\x83 HTTP/1.1\r\nHost: x\r\nX-Request-Id: odd-path\r\n'
        b"Connection: close\r\n\r\n"
    )
    assert answer.startswith(b"HTTP/1.1 404 ")
    entry = service.wait_for_log(lambda e: e.get("request_id") == "odd-path")
    # Tornado reads the request line as Latin-1; what matters is that the line is JSON.
    assert entry["path"] == '/a"b\\c' + b"\xe2\x98\x83".decode("latin-1")


def test_every_log_line_is_json(service: Service) -> None:
    service.get("/", headers={"X-Request-Id": "json-check"})
    service.wait_for_log(lambda e: e.get("request_id") == "json-check")
    lines = [line for line in service.stdout if line.strip()]
    assert lines
    assert len(service.log_entries()) == len(lines)


def test_probe_and_metrics_requests_are_quiet(service: Service) -> None:
    for path in ("/livez", "/readyz", "/startupz", "/metrics"):
        service.get(path, headers={"X-Request-Id": f"quiet{path.replace('/', '-')}"})
    # Lines are written in order: once this one is out, any probe line would be too.
    service.get("/", headers={"X-Request-Id": "after-probes"})
    service.wait_for_log(lambda e: e.get("request_id") == "after-probes")
    logged = {e.get("request_id") for e in service.log_entries()}
    assert not {i for i in logged if isinstance(i, str) and i.startswith("quiet")}


def test_probe_logging_can_be_enabled(start_service: Callable[..., Service]) -> None:
    svc = start_service({"LOG_PROBES": "true"})
    svc.get("/livez", headers={"X-Request-Id": "probe-logged"})
    entry = svc.wait_for_log(lambda e: e.get("request_id") == "probe-logged")
    assert entry["path"] == "/livez"


def test_start_is_logged_as_json(service: Service) -> None:
    entry = service.wait_for_log(lambda e: e.get("msg") == "started")
    assert entry["port"] == service.port
    assert entry["level"] == "info"
