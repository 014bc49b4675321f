"""Kubernetes API errors map to temporary (backoff) or permanent (no retry) problems."""

from __future__ import annotations

import itertools
import json

import pytest
from tornado_operator import errors


def api_error(status: int, message: str = "boom") -> errors.APIError:
    body = json.dumps({"kind": "Status", "message": message, "reason": "Whatever"})
    return errors.APIError.from_response(status, body, "Reason")


@pytest.mark.parametrize("status", [409, 429, 500, 502, 503, 504])
def test_temporary(status: int) -> None:
    problem = errors.classify(api_error(status), "applying")
    assert not problem.permanent
    assert problem.reason == ("Conflict" if status == 409 else "ApiUnavailable")
    assert problem.message == f"applying: HTTP {status}: boom"
    assert problem.delay(0) == errors.backoff(0)


@pytest.mark.parametrize("status", [400, 422])
def test_permanent(status: int) -> None:
    problem = errors.classify(api_error(status, "spec.x: Invalid value"), "applying Deployment")
    assert problem.permanent
    assert problem.reason == "ApplyRejected"
    assert problem.message == f"applying Deployment: HTTP {status}: spec.x: Invalid value"


@pytest.mark.parametrize(
    ("status", "reason"), [(401, "Unauthorized"), (403, "Forbidden"), (404, "NotFound")]
)
def test_environment_problems_retry_slowly(status: int, reason: str) -> None:
    problem = errors.classify(api_error(status), "x")
    assert not problem.permanent and problem.reason == reason
    assert problem.delay(0) == errors.SLOW_RETRY_SECONDS
    assert problem.delay(20) == errors.BACKOFF_CAP_SECONDS


def test_no_answer_is_temporary() -> None:
    problem = errors.classify(errors.APIConnectionError("ProtocolError: reset"), "x")
    assert not problem.permanent and problem.reason == "ApiUnavailable"
    assert problem.message == "x: ProtocolError: reset"
    # The client library reports TLS failures as status 0 with no body.
    tls = errors.classify(errors.APIError.from_response(0, None, "SSLError\nbad cert"), "y")
    assert not tls.permanent and tls.reason == "ApiUnavailable"
    assert tls.message == "y: HTTP 0: SSLError\nbad cert"


def test_unexpected_exceptions_propagate() -> None:
    with pytest.raises(KeyError):
        errors.classify(KeyError("bug"), "x")


def test_backoff_grows_and_is_capped() -> None:
    delays = [errors.backoff(n) for n in range(12)]
    assert delays[:4] == [2.0, 4.0, 8.0, 16.0]
    assert all(a <= b for a, b in itertools.pairwise(delays))
    assert max(delays) == errors.BACKOFF_CAP_SECONDS
    assert errors.backoff(10_000) == errors.BACKOFF_CAP_SECONDS


def test_message_from_plain_body() -> None:
    assert errors.APIError.from_response(500, "not json", "Internal").message == "not json"
    assert errors.APIError.from_response(500, b"x" * 5000, "Internal").message == "x" * 2000
    assert errors.APIError.from_response(500, None, "Internal").message == "Internal"
    assert errors.APIError.from_response(500, "", None).message == "unknown error"
    assert errors.APIError.from_response(500, '{"kind": "Status"}', "Internal").message == (
        "Internal"
    )


def test_status_reason_and_details() -> None:
    body = json.dumps(
        {
            "kind": "Status",
            "status": "Failure",
            "reason": "AlreadyExists",
            "message": 'deployments.apps "web" already exists',
            "details": {"name": "web", "group": "apps", "kind": "deployments"},
            "code": 409,
        }
    ).encode()
    exc = errors.APIError.from_response(409, body, "Conflict")
    assert (exc.status, exc.reason) == (409, "AlreadyExists")
    assert exc.message == str(exc) == 'deployments.apps "web" already exists'
    assert exc.details == {"name": "web", "group": "apps", "kind": "deployments"}
    plain = errors.APIError.from_response(502, "Bad Gateway", "Bad Gateway")
    assert (plain.reason, plain.details) == ("", None)


def test_problems_are_built_with_keywords() -> None:
    problem = errors.Problem(reason="ResourceConflict", message="m", retry_after=60)
    assert not problem.permanent and problem.delay(0) == 60
    with pytest.raises(TypeError):
        errors.Problem("ResourceConflict", "m")  # type: ignore[misc]
