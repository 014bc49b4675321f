"""Bad requests get a 4xx, never a 500 or a hang; the service keeps serving after them."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from support import Service, launch, read_until_close, stop

LIMITS = {
    "MAX_BODY_BYTES": "1024",
    "MAX_HEADER_BYTES": "4096",
    "BODY_TIMEOUT_SECONDS": "0.5",
    "IDLE_CONNECTION_TIMEOUT_SECONDS": "1",
}


@pytest.fixture(scope="module")
def limited() -> Iterator[Service]:
    svc = launch(LIMITS)
    yield svc
    assert svc.get("/").status == 200, "the service stopped answering after bad requests"
    assert 'code="5' not in svc.get("/metrics").body.decode(), "a bad request caused a 5xx"
    stop(svc)


def status_of(raw: bytes) -> int:
    assert raw.startswith(b"HTTP/1.1 "), raw[:200]
    return int(raw.split(b" ", 2)[1])


@pytest.mark.parametrize(
    "request_bytes",
    [
        pytest.param(b"THIS IS NOT HTTP\r\n\r\n", id="malformed-request-line"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n", id="malformed-header"),
        pytest.param(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: ten\r\n\r\n", id="bad-content-length"
        ),
        pytest.param(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2048\r\n\r\n" + b"x" * 2048,
            id="body-over-limit",
        ),
        pytest.param(
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"800\r\n"
            + b"x" * 2048
            + b"\r\n0\r\n\r\n",
            id="chunked-body-over-limit",
        ),
        pytest.param(
            b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
            id="unsupported-transfer-encoding",
        ),
    ],
)
def test_malformed_or_oversized_request_is_400(limited: Service, request_bytes: bytes) -> None:
    assert status_of(limited.raw(request_bytes)) == 400


def test_oversized_headers_are_431(limited: Service) -> None:
    request = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 8192 + b"\r\n\r\n"
    answer = limited.raw(request)
    assert status_of(answer) == 431
    assert b"Connection: close" in answer


def test_unknown_method_is_405(limited: Service) -> None:
    answer = limited.raw(b"BREW / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert status_of(answer) == 405


def test_a_body_that_never_arrives_is_cut_off(limited: Service) -> None:
    with socket.create_connection(("127.0.0.1", limited.port), timeout=5) as s:
        s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
        start = time.monotonic()
        answer = read_until_close(s, timeout=5)
        waited = time.monotonic() - start
    assert not answer.startswith(b"HTTP/1.1 5"), answer[:100]
    assert waited < 3, f"the connection was held {waited:.1f}s with a body timeout of 0.5s"


def test_an_idle_connection_is_closed(limited: Service) -> None:
    with socket.create_connection(("127.0.0.1", limited.port), timeout=5) as s:
        start = time.monotonic()
        assert read_until_close(s, timeout=5) == b""
        waited = time.monotonic() - start
    assert waited < 3, f"an idle connection stayed open {waited:.1f}s with a 1s timeout"


def test_body_within_limit_is_accepted(limited: Service) -> None:
    # GET ignores a body, but one within the limit must not be refused.
    resp = limited.request("GET", "/", body=b"x" * 1000)
    assert resp.status == 200
