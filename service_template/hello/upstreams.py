"""Concurrent calls to upstreams, bounded in time, with one retry and a breaker each.

The composition request has a deadline. Each call gets its own timeout, but never
more than the time left. A failed idempotent call is retried once, after a
jittered backoff, only if the deadline still leaves room. Whatever happens, every
upstream gets an answer in the result, green or red; the caller gets a partial
answer rather than an error.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tornado.httpclient import HTTPClientError, HTTPRequest, HTTPResponse
from tornado.iostream import StreamClosedError
from tornado.simple_httpclient import HTTPStreamClosedError, HTTPTimeoutError, SimpleAsyncHTTPClient

from hello.breaker import CircuitBreaker, State
from hello.config import Config, Upstream
from hello.metrics import Metrics
from hello.resolver import CachingResolver

# Upstream answers worth one more try: the upstream or a proxy in front of it was
# briefly unable to answer. Anything else 4xx/5xx would fail the same way again.
_RETRYABLE_CODES = frozenset({502, 503, 504})
_IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
_MAX_TEXT_BODY = 4096
# Cancelling stragglers is a backstop: each call is already bounded by its timeout.
_DEADLINE_GRACE = 0.05


@dataclass(frozen=True)
class CallResult:
    name: str
    outcome: str  # ok, http_error, timeout, connection_error, error, circuit_open, deadline
    attempts: int
    duration: float
    code: int | None = None
    body: Any = None
    error: str | None = None

    @property
    def green(self) -> bool:
        return self.outcome == "ok"

    def as_json(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "status": "green" if self.green else "red",
            "outcome": self.outcome,
            "attempts": self.attempts,
            "duration_ms": round(self.duration * 1000, 1),
        }
        if self.code is not None:
            entry["code"] = self.code
        if self.green:
            entry["body"] = self.body
        if self.error is not None:
            entry["error"] = self.error
        return entry


@dataclass(frozen=True)
class _Attempt:
    outcome: str
    code: int | None = None
    body: Any = None
    error: str | None = None

    @property
    def retryable(self) -> bool:
        if self.outcome in ("timeout", "connection_error"):
            return True
        return self.outcome == "http_error" and self.code in _RETRYABLE_CODES

    @property
    def upstream_failed(self) -> bool:
        # A 4xx means our request was wrong; the upstream itself is healthy.
        if self.outcome == "http_error":
            return self.code is None or self.code >= 500
        return self.outcome != "ok"


class UpstreamClient:
    def __init__(
        self,
        config: Config,
        metrics: Metrics,
        *,
        clock: Callable[[], float] = time.monotonic,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._config = config
        self._metrics = metrics
        self._clock = clock
        self._jitter = jitter
        self._http = SimpleAsyncHTTPClient(
            force_instance=True,
            max_clients=config.upstream_max_clients,
            max_body_size=config.upstream_max_body_bytes,
            resolver=CachingResolver(config.dns_cache_ttl),
        )
        self.breakers: dict[str, CircuitBreaker] = {}
        for upstream in config.upstreams:
            gauge = metrics.breaker_state.labels(upstream.name)
            gauge.set(State.CLOSED)
            self.breakers[upstream.name] = CircuitBreaker(
                config.breaker_failure_threshold,
                config.breaker_reset,
                clock=clock,
                on_change=gauge.set,
            )

    def close(self) -> None:
        self._http.close()

    async def fan_out(self, request_id: str) -> list[CallResult]:
        """Call every configured upstream at once; return one result each, within the deadline."""
        deadline = self._clock() + self._config.compose_deadline
        upstreams = self._config.upstreams
        tasks = [asyncio.ensure_future(self.call(u, deadline, request_id)) for u in upstreams]
        if not tasks:
            return []
        await asyncio.wait(tasks, timeout=max(0.0, deadline - self._clock()) + _DEADLINE_GRACE)
        results = []
        for upstream, task in zip(upstreams, tasks, strict=True):
            if task.done() and not task.cancelled():
                results.append(task.result())
            else:
                task.cancel()
                self._count(upstream.name, "deadline")
                results.append(
                    CallResult(
                        upstream.name,
                        "deadline",
                        attempts=0,
                        duration=self._config.compose_deadline,
                        error="no answer within the request deadline",
                    )
                )
        return results

    async def call(
        self, upstream: Upstream, deadline: float, request_id: str, method: str = "GET"
    ) -> CallResult:
        breaker = self.breakers[upstream.name]
        # Per-upstream settings (UPSTREAMS options) win over the service-wide ones.
        timeout = self._config.upstream_timeout if upstream.timeout is None else upstream.timeout
        retries = self._config.upstream_retries if upstream.retries is None else upstream.retries
        start = self._clock()
        attempts = 0
        last: _Attempt | None = None
        while True:
            remaining = deadline - self._clock()
            if remaining <= 0:
                if last is None:
                    self._count(upstream.name, "deadline")
                    last = _Attempt("deadline", error="no time left before the request deadline")
                break
            if not breaker.allow():
                if last is None:
                    self._count(upstream.name, "circuit_open")
                    last = _Attempt("circuit_open", error="circuit breaker is open")
                break
            attempts += 1
            last = await self._attempt(
                upstream, breaker, method, min(timeout, remaining), request_id
            )
            if last.outcome == "ok":
                break
            if attempts > retries or method not in _IDEMPOTENT_METHODS or not last.retryable:
                break
            # Jitter spreads the retries of many callers so they do not arrive together.
            backoff = self._config.retry_backoff * (0.5 + self._jitter())
            if self._clock() + backoff >= deadline:
                break
            await asyncio.sleep(backoff)
        return CallResult(
            upstream.name,
            last.outcome,
            attempts=attempts,
            duration=self._clock() - start,
            code=last.code,
            body=last.body,
            error=last.error,
        )

    async def _attempt(
        self,
        upstream: Upstream,
        breaker: CircuitBreaker,
        method: str,
        budget: float,
        request_id: str,
    ) -> _Attempt:
        request = HTTPRequest(
            upstream.url,
            method=method,
            headers={"X-Request-Id": request_id, "Accept": "application/json"},
            # Tornado enforces the budget on the connection and on the whole exchange.
            connect_timeout=budget,
            request_timeout=budget,
            follow_redirects=False,
        )
        in_flight = self._metrics.upstream_in_flight.labels(upstream.name)
        in_flight.inc()
        start = self._clock()
        result: _Attempt | None = None
        try:
            response = await self._http.fetch(request, raise_error=False)
            result = _from_response(response)
        except HTTPTimeoutError as exc:
            result = _Attempt("timeout", error=str(exc))
        except (HTTPStreamClosedError, StreamClosedError, OSError) as exc:
            result = _Attempt("connection_error", error=_describe(exc))
        except HTTPClientError as exc:
            result = _Attempt("error", error=str(exc))
        except Exception as exc:  # e.g. an answer over the size limit, a malformed answer
            result = _Attempt("error", error=_describe(exc))
        finally:
            in_flight.dec()
            if result is None:  # cancelled: the request's deadline passed
                breaker.record_abandoned()
            else:
                self._metrics.upstream_duration.labels(upstream.name).observe(self._clock() - start)
                self._count(upstream.name, result.outcome)
                if result.upstream_failed:
                    breaker.record_failure()
                else:
                    breaker.record_success()
        return result

    def _count(self, name: str, outcome: str) -> None:
        self._metrics.upstream_calls.labels(name, outcome).inc()


def _from_response(response: HTTPResponse) -> _Attempt:
    if 200 <= response.code < 300:
        return _Attempt("ok", code=response.code, body=_decode(response))
    return _Attempt(
        "http_error",
        code=response.code,
        error=f"upstream answered {response.code} {response.reason}",
    )


def _decode(response: HTTPResponse) -> Any:
    body = response.body or b""
    content_type = response.headers.get("Content-Type", "")
    if content_type.split(";")[0].strip().lower() == "application/json":
        try:
            return json.loads(body)
        except ValueError:
            pass
    return body[:_MAX_TEXT_BODY].decode("utf-8", "replace")


def _describe(exc: BaseException) -> str:
    real = getattr(exc, "real_error", None)
    if real is not None:
        exc = real
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
