"""Prometheus metrics: the service is watched by its outcomes.

RED per handler (rate, errors by status code, duration) and, per upstream, call
outcomes, latency, calls in flight and the circuit breaker's state.
"""

from __future__ import annotations

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

# The `_created` series double the output and no dashboard uses them.
disable_created_metrics()  # type: ignore[no-untyped-call]

_REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class Metrics:
    def __init__(self) -> None:
        # A registry of our own, so two instances (as in tests) never collide.
        self.registry = CollectorRegistry()
        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            self.registry.register(collector)
        self.requests = Counter(
            "http_requests_total",
            "HTTP requests answered, by handler, method and status code.",
            ["handler", "method", "code"],
            registry=self.registry,
        )
        self.request_duration = Histogram(
            "http_request_duration_seconds",
            "Time from request received to response finished, by handler and method.",
            ["handler", "method"],
            buckets=_REQUEST_BUCKETS,
            registry=self.registry,
        )
        self.requests_in_flight = Gauge(
            "http_requests_in_flight",
            "HTTP requests being handled.",
            registry=self.registry,
        )
        self.upstream_calls = Counter(
            "upstream_calls_total",
            "Calls to upstreams by outcome: ok, http_error, timeout, connection_error, "
            "error, circuit_open (not attempted) and deadline (no time left to attempt).",
            ["upstream", "outcome"],
            registry=self.registry,
        )
        self.upstream_duration = Histogram(
            "upstream_call_duration_seconds",
            "Duration of attempted upstream calls.",
            ["upstream"],
            buckets=_REQUEST_BUCKETS,
            registry=self.registry,
        )
        self.upstream_in_flight = Gauge(
            "upstream_calls_in_flight",
            "Upstream calls waiting for an answer.",
            ["upstream"],
            registry=self.registry,
        )
        self.breaker_state = Gauge(
            "upstream_circuit_breaker_state",
            "Circuit breaker per upstream: 0 closed, 1 half-open, 2 open.",
            ["upstream"],
            registry=self.registry,
        )
        self.log_lines_dropped = Counter(
            "log_lines_dropped_total",
            "Log lines dropped because stdout could not keep up.",
            registry=self.registry,
        )
        # Label lookups take a lock; the few (handler, method, code) children are cached.
        self._children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    def observe_request(self, handler: str, method: str, code: int, seconds: float) -> None:
        key = (handler, method, code)
        children = self._children.get(key)
        if children is None:
            # Methods come from clients: an unknown one must not create a new time series.
            label = method if method in _KNOWN_METHODS else "other"
            children = (
                self.requests.labels(handler, label, str(code)),
                self.request_duration.labels(handler, label),
            )
            if method in _KNOWN_METHODS:
                self._children[key] = children
        counter, histogram = children
        counter.inc()
        histogram.observe(seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
