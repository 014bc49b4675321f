"""What went wrong: the API errors kubeapi raises, and the one Problem type everything else uses.

`APIError` is the operator's own error type for a failed Kubernetes API call, whatever client
library kubeapi runs on (the way kopf keeps its `_cogs/clients/errors.py` apart from aiohttp):
kubeapi turns every error of its client into one of these, so nothing else ever sees or catches a
client library's exceptions.

`classify` maps an APIError to a Problem. 409 (conflict), 429 (throttled), 5xx and connection
failures pass by themselves: retry them, later each time. 400 and 422 mean the request itself is
wrong: retrying sends the same bad request again, so they wait for the next spec change instead
(no retry storm). 403 and 404 usually mean the environment is not ready (RBAC, a namespace being
created or deleted, a CRD not installed): retried, but slowly.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

BACKOFF_BASE_SECONDS = 2.0
BACKOFF_CAP_SECONDS = 300.0
SLOW_RETRY_SECONDS = 60.0

TEMPORARY_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
PERMANENT_STATUSES = frozenset({400, 405, 406, 410, 413, 415, 422})
SLOW_STATUSES = frozenset({401, 403, 404})

# How much of a body that is not a JSON Status goes into a message.
TEXT_BODY_LIMIT = 2000


class APIError(Exception):
    """A Kubernetes API request failed.

    `status` is the HTTP status (0 when no HTTP status came back), `reason` the machine-readable
    reason of the API's Status answer (NotFound, Conflict, AlreadyExists, Forbidden, Invalid...;
    "" when the answer was not a Status), `message` the Status message, else the body's text,
    else the HTTP reason phrase, and `details` the Status details, if any.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int,
        reason: str = "",
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.reason = reason
        self.details = dict(details) if details else None

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.message!r}, status={self.status}, reason={self.reason!r})"
        )

    @classmethod
    def from_response(
        cls, status: int, body: bytes | str | None, http_reason: str | None = None
    ) -> APIError:
        """The error for an answer with this status, body and HTTP reason phrase."""
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        payload: Any = None
        message = ""
        if text:
            try:
                payload = json.loads(text)
            except ValueError:
                message = text[:TEXT_BODY_LIMIT]
        if not isinstance(payload, dict):
            payload = {}
        if not message:
            message = str(payload.get("message") or http_reason or "unknown error")
        reason = payload.get("reason")
        details = payload.get("details")
        return cls(
            message,
            status=status,
            reason=reason if isinstance(reason, str) else "",
            details=details if isinstance(details, dict) else None,
        )


class APIConnectionError(APIError):
    """No answer: the connection failed, was reset, timed out, or TLS failed. `message` names the
    underlying error's type and text."""

    def __init__(self, message: str) -> None:
        super().__init__(message, status=0)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Problem:
    """Something that keeps a TornadoService from its desired state.

    `reason` is CamelCase, usable as a condition reason; `message` is for people. A `permanent`
    problem waits for the next spec change; any other is retried with backoff, and never sooner
    than `retry_after` seconds.
    """

    reason: str
    message: str
    permanent: bool = False
    retry_after: float = 0.0

    def delay(self, retry: int) -> float:
        """Seconds before the n-th retry (0-based)."""
        return max(self.retry_after, backoff(retry))


def backoff(retry: int) -> float:
    """Exponential backoff for the n-th retry (0-based), capped."""
    return float(min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** min(max(0, retry), 16)))


_SLOW_REASONS = {401: "Unauthorized", 403: "Forbidden", 404: "NotFound"}


def classify(exc: BaseException, action: str) -> Problem:
    """The Problem an APIError means; any other exception is re-raised (it is a bug)."""
    if isinstance(exc, APIConnectionError):
        return Problem(reason="ApiUnavailable", message=f"{action}: {exc.message}")
    if not isinstance(exc, APIError):
        raise exc
    status = exc.status
    message = f"{action}: HTTP {status}: {exc.message}"
    if status in PERMANENT_STATUSES:
        return Problem(reason="ApplyRejected", message=message, permanent=True)
    if status in SLOW_STATUSES:
        return Problem(
            reason=_SLOW_REASONS[status], message=message, retry_after=SLOW_RETRY_SECONDS
        )
    if status in TEMPORARY_STATUSES or status >= 500 or status == 0:
        return Problem(reason="Conflict" if status == 409 else "ApiUnavailable", message=message)
    return Problem(reason="ApplyRejected", message=message, permanent=True)


def namespace_terminating(exc: APIError) -> bool:
    """Whether the API refused new content because the namespace is being deleted.

    That 403 is not a failure to retry: the namespace and everything in it are going away, so
    the objects it refused are as good as gone.
    """
    if exc.status != 403:
        return False
    causes = (exc.details or {}).get("causes") or []
    if any(isinstance(c, dict) and c.get("reason") == "NamespaceTerminating" for c in causes):
        return True
    return "because it is being terminated" in exc.message
