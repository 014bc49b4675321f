"""What a decision looks like to users: the status.autoscaling block and the scale Event, and
for a consumer the status.consumer block of the broker's last read."""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol

from tornado_operator.autoscaling.algorithm import Decision, Direction
from tornado_operator.autoscaling.lag import LagDecision
from tornado_operator.consumer import Reading

JSONDict = dict[str, Any]

MAX_TEXT = 1024
# Status fields that change with every sample; written at most every REFRESH_SECONDS unless
# something else changed, so a busy service does not patch its status every tick.
NOISY_FIELDS = frozenset(
    {
        "observedConcurrency",
        "requestRate",
        "message",
        # status.consumer
        "lag",
        "pending",
        "backlog",
        "consumptionRate",
        "lastReadTime",
    }
)
REFRESH_SECONDS = 30.0


@dataclasses.dataclass(frozen=True)
class ScaleEvent:
    type: str
    reason: str
    message: str


class Scaling(Protocol):
    """What the scale message and Event read of a decision (concurrency or lag)."""

    @property
    def current_replicas(self) -> int: ...

    @property
    def desired_replicas(self) -> int: ...

    @property
    def reason(self) -> str: ...

    @property
    def scale(self) -> bool: ...

    @property
    def direction(self) -> Direction: ...


def scale_message(decision: Scaling) -> str:
    text = (
        f"from {decision.current_replicas} to {decision.desired_replicas} replicas: "
        f"{decision.reason}"
    )
    return text[:MAX_TEXT]


def scale_event(decision: Scaling) -> ScaleEvent | None:
    """The Event for a decision that changes spec.replicas (None when it does not)."""
    if not decision.scale:
        return None
    reason = "ScaledUp" if decision.direction == "up" else "ScaledDown"
    return ScaleEvent("Normal", reason, scale_message(decision))


def status_block(
    decision: Decision, previous: JSONDict | None, *, scaled_at: str | None = None
) -> JSONDict:
    """status.autoscaling after `decision`, for a JSON merge patch: a None value removes
    the field. `scaled_at` (RFC 3339) is given when the decision was written to spec.replicas;
    otherwise the last scale time and reason carry over."""

    def rounded(value: float | None) -> float | None:
        return None if value is None else round(value, 2)

    old = previous or {}
    return {
        "metric": "concurrency",
        "observedConcurrency": rounded(decision.observed_concurrency),
        "panicMode": decision.panic,
        "desiredReplicas": decision.desired_replicas,
        "readyPods": decision.ready_pods,
        "scrapedPods": decision.scraped_pods,
        "missingPods": decision.missing_pods,
        "requestRate": rounded(decision.request_rate),
        "lastScaleTime": scaled_at if scaled_at is not None else old.get("lastScaleTime"),
        "lastScaleReason": (
            scale_message(decision) if scaled_at is not None else old.get("lastScaleReason")
        ),
        "message": decision.reason[:MAX_TEXT],
    }


def needs_write(old: JSONDict | None, new: JSONDict, seconds_since_write: float) -> bool:
    """Whether status.autoscaling is worth a PATCH now."""
    if not old:
        return True
    for key in set(old) | set(new):
        if key not in NOISY_FIELDS and old.get(key) != new.get(key):
            return True
    return old != new and seconds_since_write >= REFRESH_SECONDS


def lag_status_block(
    decision: LagDecision, previous: JSONDict | None, *, scaled_at: str | None = None
) -> JSONDict:
    """status.autoscaling of a consumer scaled on lag (the backlog itself is status.consumer's).
    The concurrency-only fields are None: a merge patch removes them."""
    old = previous or {}
    return {
        "metric": "lag",
        "observedConcurrency": None,
        "panicMode": None,
        "readyPods": None,
        "scrapedPods": None,
        "missingPods": None,
        "requestRate": None,
        "desiredReplicas": decision.desired_replicas,
        "lastScaleTime": scaled_at if scaled_at is not None else old.get("lastScaleTime"),
        "lastScaleReason": (
            scale_message(decision) if scaled_at is not None else old.get("lastScaleReason")
        ),
        "message": decision.reason[:MAX_TEXT],
    }


def consumer_block(
    reading: Reading,
    previous: JSONDict | None,
    *,
    stream: str,
    group: str,
    rate: float | None,
    read_at: str,
) -> JSONDict:
    """status.consumer after one read of the broker. A failed read keeps the last numbers
    (they are what was last known) and says why in reason and message."""
    old = previous or {}
    block: JSONDict = {
        "stream": stream,
        "group": group,
        "reason": reading.reason,
        "message": reading.message[:MAX_TEXT],
    }
    if reading.ok:
        block.update(
            lag=reading.lag,
            pending=reading.pending,
            backlog=reading.backlog,
            consumptionRate=None if rate is None else round(rate, 2),
            lastReadTime=read_at,
        )
    else:
        # The last known numbers, if they are of this stream and group.
        same = old.get("stream") == stream and old.get("group") == group
        for key in ("lag", "pending", "backlog", "consumptionRate", "lastReadTime"):
            block[key] = old.get(key) if same else None
    return block
