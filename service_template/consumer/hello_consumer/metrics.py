"""Prometheus metrics: the consumer is watched by its outcomes and by how far behind it is."""

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

_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# Why the consumer is not ready; exactly one is 1 while it is not.
PROBLEMS = ("starting", "broker_unreachable", "stream_missing", "group_missing", "draining")


class Metrics:
    def __init__(self) -> None:
        # A registry of our own, so two instances (as in tests) never collide.
        self.registry = CollectorRegistry()
        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            self.registry.register(collector)
        r = self.registry
        self.processed = Counter(
            "consumer_messages_processed_total",
            "Messages handled successfully and acknowledged.",
            registry=r,
        )
        self.failed = Counter(
            "consumer_messages_failed_total",
            "Handler calls that raised or timed out (each delivery counts once).",
            registry=r,
        )
        self.dead_lettered = Counter(
            "consumer_messages_dead_lettered_total",
            "Messages moved to the dead-letter stream after MAX_DELIVERIES deliveries.",
            registry=r,
        )
        self.reclaimed = Counter(
            "consumer_messages_reclaimed_total",
            "Messages taken over from idle consumers (XAUTOCLAIM), such as a killed pod.",
            registry=r,
        )
        self.retried = Counter(
            "consumer_messages_retried_total",
            "Failed messages claimed again by this consumer after their backoff.",
            registry=r,
        )
        self.broker_errors = Counter(
            "consumer_broker_errors_total",
            "Broker commands that failed (connection lost, timeout, error reply).",
            registry=r,
        )
        self.duration = Histogram(
            "consumer_processing_duration_seconds",
            "Duration of handler calls, successful or not.",
            buckets=_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge(
            "consumer_messages_in_flight", "Handler calls running now.", registry=r
        )
        self.lag = Gauge(
            "consumer_group_lag",
            "Entries of the stream not yet delivered to the group (XINFO GROUPS lag), "
            "NaN when the broker cannot tell.",
            registry=r,
        )
        self.pending = Gauge(
            "consumer_group_pending",
            "Entries delivered to the group and not yet acknowledged, in any consumer.",
            registry=r,
        )
        self.backlog = Gauge(
            "consumer_group_backlog",
            "consumer_group_lag + consumer_group_pending: the work left, as this consumer sees it.",
            registry=r,
        )
        self.ready = Gauge(
            "consumer_ready", "1 when the broker answers and the group exists.", registry=r
        )
        self.problem = Gauge(
            "consumer_not_ready_reason",
            "1 for the reason the consumer is not ready, 0 for the others.",
            ["reason"],
            registry=r,
        )
        self.log_lines_dropped = Counter(
            "log_lines_dropped_total",
            "Log lines dropped because stdout could not keep up.",
            registry=r,
        )
        self.set_problem("starting")

    def set_problem(self, problem: str | None) -> None:
        self.ready.set(0 if problem else 1)
        for reason in PROBLEMS:
            self.problem.labels(reason).set(1 if reason == problem else 0)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
