"""Kubernetes API errors mapped to temporary (retried with backoff) or permanent failures.

409 (conflict), 429 (throttled), 5xx and connection failures pass by themselves: retry them,
later each time. 400 and 422 mean the request itself is wrong: retrying sends the same bad
request again, so they wait for the next spec change instead (no retry storm). 403 and 404
usually mean the environment is not ready (RBAC, a namespace being created or deleted, a CRD
not installed): retried, but slowly.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

BACKOFF_BASE_SECONDS = 2.0
BACKOFF_CAP_SECONDS = 300.0
SLOW_RETRY_SECONDS = 60.0

TEMPORARY_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
PERMANENT_STATUSES = frozenset({400, 405, 406, 410, 413, 415, 422})
SLOW_STATUSES = frozenset({401, 403, 404})


@dataclasses.dataclass(frozen=True)
class Failure:
    """A classified failure of one API call."""

    permanent: bool
    status: int  # HTTP status, 0 when the server never answered
    reason: str  # CamelCase, suitable for a condition reason
    message: str
    min_delay: float = 0.0

    def delay(self, retry: int) -> float:
        """Seconds before the n-th retry (0-based)."""
        return max(self.min_delay, backoff(retry))


def backoff(retry: int) -> float:
    """Exponential backoff for the n-th retry (0-based), capped."""
    return float(min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** min(max(0, retry), 16)))


def api_message(exc: ApiException) -> str:
    """The Status message the API server sent, else the HTTP reason."""
    body: Any = exc.body
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if isinstance(body, str) and body:
        try:
            status = json.loads(body)
        except ValueError:
            return body[:2000]
        if isinstance(status, dict) and status.get("message"):
            return str(status["message"])
    return str(exc.reason or "unknown error")


def classify(exc: BaseException, action: str) -> Failure:
    """Map an exception raised by a Kubernetes API call to a Failure."""
    if isinstance(exc, ApiException):
        status = int(exc.status or 0)
        message = f"{action}: HTTP {status}: {api_message(exc)}"
        if status in PERMANENT_STATUSES:
            return Failure(True, status, "ApplyRejected", message)
        if status in SLOW_STATUSES:
            reason = (
                "Forbidden" if status == 403 else ("Unauthorized" if status == 401 else "NotFound")
            )
            return Failure(False, status, reason, message, min_delay=SLOW_RETRY_SECONDS)
        if status in TEMPORARY_STATUSES or status >= 500 or status == 0:
            return Failure(
                False, status, "ApiUnavailable" if status != 409 else "Conflict", message
            )
        return Failure(True, status, "ApplyRejected", message)
    if isinstance(exc, HTTPError | OSError | TimeoutError):
        return Failure(False, 0, "ApiUnavailable", f"{action}: {type(exc).__name__}: {exc}")
    raise exc
