"""The concurrency autoscaler's own metrics, served on the operator's /metrics.

Registered on prometheus_client's default registry, like tornado_operator.metrics. No label
names a TornadoService: the operator's series stay few however many services it runs.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from tornado_operator import consumer
from tornado_operator.autoscaling.scrape import ERROR_REASONS

SCRAPES = Counter(
    "tornado_operator_autoscaler_scrapes_total",
    "Scrapes of pod /metrics by the concurrency autoscaler, by result (ok or error).",
    ["result"],
)
SCRAPE_ERRORS = Counter(
    "tornado_operator_autoscaler_scrape_errors_total",
    "Failed scrapes of pod /metrics, by reason: timeout, connection, http_status, too_large, "
    "parse, no_gauge, no_address.",
    ["reason"],
)
SCRAPE_DURATION = Histogram(
    "tornado_operator_autoscaler_scrape_duration_seconds",
    "Time of one pod scrape, answered or not.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
DECISIONS = Counter(
    "tornado_operator_autoscaler_decisions_total",
    "Decisions of the concurrency autoscaler, by direction (up, down, none) and whether "
    "panic mode was on.",
    ["direction", "panic"],
)
PANICKING = Gauge(
    "tornado_operator_autoscaler_panic_services",
    "TornadoServices whose concurrency autoscaler is in panic mode now.",
)
SERVICES = Gauge(
    "tornado_operator_autoscaler_services",
    "TornadoServices this operator process autoscales on concurrency now.",
)
BROKER_READS = Counter(
    "tornado_operator_autoscaler_broker_reads_total",
    "Reads of consumer groups (XINFO GROUPS) by the operator, by outcome: StreamFound, "
    "StreamNotFound, GroupNotFound, NotAStream, BrokerUnreachable, BrokerError.",
    ["reason"],
)
LAG_DECISIONS = Counter(
    "tornado_operator_autoscaler_lag_decisions_total",
    "Decisions of the lag autoscaler, by direction (up, down, none).",
    ["direction"],
)

# Every label value exists from the start, so rates work from the first scrape.
SCRAPES.labels(result="ok")
SCRAPES.labels(result="error")
for _reason in ERROR_REASONS:
    SCRAPE_ERRORS.labels(reason=_reason)
for _direction in ("up", "down", "none"):
    for _panic in ("true", "false"):
        DECISIONS.labels(direction=_direction, panic=_panic)
for _reason in consumer.READ_REASONS:
    BROKER_READS.labels(reason=_reason)
for _direction in ("up", "down", "none"):
    LAG_DECISIONS.labels(direction=_direction)
