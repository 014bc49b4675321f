"""Data-stream consumers (spec.consumer): the env contract, the spec rules, what a broker read says.

Pure: no I/O. The broker is read by autoscaling.broker; this module only holds the shape of
what it found (`Reading`) and what that means for status (`condition`, `problem`).

The env contract is written only here (`ENV`): the operator sets these variables on a consumer's
container from spec.consumer, and the consumer template reads them. A consumer's health port is
spec.port (env PORT, port name `http`): /livez, /readyz, /startupz and /metrics.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

from tornado_operator.conditions import Condition

JSONDict = dict[str, Any]

# spec.consumer field -> the container's environment variable.
ENV: dict[str, str] = {
    "broker": "REDIS_URL",
    "stream": "STREAM",
    "group": "GROUP",
    "deadLetterStream": "DEAD_LETTER_STREAM",
}
# The consumer's name in its group: the pod's name, unique and stable for the pod's life (the
# template's default, the hostname, is the pod name truncated to 63 characters).
CONSUMER_NAME_ENV = "CONSUMER_NAME"
RESERVED_ENV = (*ENV.values(), CONSUMER_NAME_ENV)

# The template's BLOCK_MS default: one XREADGROUP waits at most this long, also on SIGTERM.
BLOCK_MS_ENV = "BLOCK_MS"
DEFAULT_BLOCK_MS = 1000
# redis://HOST[:PORT][/DB], as the CRD's pattern for spec.consumer.broker allows it.
DEFAULT_BROKER_PORT = 6379
_BROKER = re.compile(r"^redis://[^:/]+(?::(?P<port>[0-9]{1,5}))?(?:/[0-9]*)?$")

STREAM_AVAILABLE = "StreamAvailable"

# Reasons of a broker read (status.consumer.reason and the StreamAvailable condition).
STREAM_FOUND = "StreamFound"
STREAM_NOT_FOUND = "StreamNotFound"
GROUP_NOT_FOUND = "GroupNotFound"
NOT_A_STREAM = "NotAStream"
BROKER_UNREACHABLE = "BrokerUnreachable"
BROKER_ERROR = "BrokerError"
NOT_READ_YET = "BrokerNotReadYet"
READ_REASONS = (
    STREAM_FOUND,
    STREAM_NOT_FOUND,
    GROUP_NOT_FOUND,
    NOT_A_STREAM,
    BROKER_UNREACHABLE,
    BROKER_ERROR,
)
# Wrong until someone creates the stream or the group: polled slowly, never fast.
PERMANENT_REASONS = frozenset({STREAM_NOT_FOUND, GROUP_NOT_FOUND, NOT_A_STREAM})


def is_consumer(spec: JSONDict) -> bool:
    return isinstance(spec.get("consumer"), dict)


def env(spec: JSONDict) -> list[JSONDict]:
    """The variables the operator sets on a consumer's container, in ENV order, then
    CONSUMER_NAME from the pod's name (the downward API)."""
    block = spec["consumer"]
    found: list[JSONDict] = [
        {"name": var, "value": str(block[key])} for key, var in ENV.items() if key in block
    ]
    found.append(
        {
            "name": CONSUMER_NAME_ENV,
            "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}},
        }
    )
    return found


def broker_port(spec: JSONDict) -> int:
    """The TCP port of spec.consumer.broker (6379 when the URL names none)."""
    found = _BROKER.match(str(spec["consumer"]["broker"]))
    port = found.group("port") if found else None
    return int(port) if port else DEFAULT_BROKER_PORT


def block_seconds(spec: JSONDict) -> int:
    """How long the consumer's fetch in progress may still block after SIGTERM, in whole
    seconds: BLOCK_MS from spec.env when it is a plain number, else the template's default."""
    block_ms = DEFAULT_BLOCK_MS
    for item in spec.get("env") or []:
        if item.get("name") == BLOCK_MS_ENV and str(item.get("value", "")).strip().isdigit():
            block_ms = int(str(item["value"]).strip())
    return math.ceil(block_ms / 1000)


def spec_problems(spec: JSONDict) -> list[tuple[str, str]]:
    """(field, message) for every consumer CEL rule the spec breaks, in CRD order (jsonschema
    does not run CEL; a cluster with an older CRD does not either). The rules that tie
    spec.autoscaling.metric to spec.consumer are autoscaling.config's."""
    found: list[tuple[str, str]] = []
    consumer = is_consumer(spec)
    if consumer:
        svc = spec.get("service") or {}
        if (
            svc.get("type", "ClusterIP") != "ClusterIP"
            or svc.get("port", 80) != 80
            or "nodePort" in svc
            or "annotations" in svc
        ):
            found.append(
                (
                    "spec.service",
                    "spec.service does not apply to a consumer (spec.consumer): a consumer has "
                    "no Service; leave spec.service out",
                )
            )
    if consumer and any(e.get("name") in RESERVED_ENV for e in spec.get("env") or []):
        found.append(
            (
                "spec.env[].name",
                "spec.env[].name must not be REDIS_URL, STREAM, GROUP, DEAD_LETTER_STREAM or "
                "CONSUMER_NAME in a consumer: the operator sets them from spec.consumer and the "
                "pod's name",
            )
        )
    block = spec.get("consumer") or {}
    if (
        consumer
        and "deadLetterStream" in block
        and block["deadLetterStream"] == block.get("stream")
    ):
        found.append(
            (
                "spec.consumer.deadLetterStream",
                "spec.consumer.deadLetterStream must differ from spec.consumer.stream",
            )
        )
    return found


@dataclasses.dataclass(frozen=True)
class Reading:
    """One read of a consumer group (XINFO GROUPS), or why it failed.

    `reason` is STREAM_FOUND when the group was found; then `pending` is known and `lag` is
    None only when Redis cannot compute it. `time` is on the reader's monotonic clock.
    """

    reason: str
    message: str
    time: float
    lag: int | None = None
    pending: int | None = None
    entries_read: int | None = None

    @property
    def ok(self) -> bool:
        return self.reason == STREAM_FOUND

    @property
    def permanent(self) -> bool:
        """Wrong until the stream or the group is created (not a broker outage)."""
        return self.reason in PERMANENT_REASONS

    @property
    def backlog(self) -> int | None:
        """lag + pending: the entries the group still has to process; None when unknown."""
        if not self.ok or self.lag is None or self.pending is None:
            return None
        return self.lag + self.pending

    @property
    def acked(self) -> int | None:
        """Entries of the group's reads that are acknowledged (a counter, for the rate)."""
        if self.entries_read is None or self.pending is None:
            return None
        return self.entries_read - self.pending


def condition(reading: Reading | None) -> Condition:
    """The StreamAvailable condition for the last read (None: not read yet)."""
    if reading is None:
        return Condition(
            STREAM_AVAILABLE, False, NOT_READ_YET, "the operator has not read the broker yet"
        )
    return Condition(STREAM_AVAILABLE, reading.ok, reading.reason, reading.message)
