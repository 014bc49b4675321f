"""Kubernetes API errors map to temporary (backoff) or permanent (no retry) failures."""

from __future__ import annotations

import itertools
import json

import pytest
from kubernetes.client.exceptions import ApiException
from tornado_operator import errors
from urllib3.exceptions import MaxRetryError, ProtocolError


def api_error(status: int, message: str = "boom") -> ApiException:
    return ApiException(
        status=status, reason="Reason", body=json.dumps({"kind": "Status", "message": message})
    )


@pytest.mark.parametrize("status", [409, 429, 500, 502, 503, 504])
def test_temporary(status: int) -> None:
    failure = errors.classify(api_error(status), "applying")
    assert not failure.permanent and failure.status == status


@pytest.mark.parametrize("status", [400, 422])
def test_permanent(status: int) -> None:
    failure = errors.classify(api_error(status, "spec.x: Invalid value"), "applying Deployment")
    assert failure.permanent
    assert failure.reason == "ApplyRejected"
    assert failure.message == f"applying Deployment: HTTP {status}: spec.x: Invalid value"


@pytest.mark.parametrize("status", [401, 403, 404])
def test_environment_problems_retry_slowly(status: int) -> None:
    failure = errors.classify(api_error(status), "x")
    assert not failure.permanent
    assert failure.delay(0) == errors.SLOW_RETRY_SECONDS


@pytest.mark.parametrize(
    "exc", [ProtocolError("reset"), MaxRetryError(None, "/x"), ConnectionRefusedError()]
)
def test_connection_failures_are_temporary(exc: Exception) -> None:
    assert not errors.classify(exc, "x").permanent


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
    exc = ApiException(status=500, reason="Internal", body="not json")
    assert errors.api_message(exc) == "not json"
    assert errors.api_message(ApiException(status=500, reason="Internal")) == "Internal"
