"""What a caller sees of its upstreams: windows over its own metrics, states, status and condition.

Pure: the monitor feeds `Window` with each scrape of a caller's Ready pods; `Window.report` sums
over the pods what changed in the last `WINDOW_SECONDS` (counters and histogram buckets by delta,
a counter that went down counts from zero: the container restarted), and the reconcile turns the
report, the spec's entries and which TornadoServices exist into status.upstreams
(`status_items`), the UpstreamsHealthy condition (`condition`) and the Events for what changed
(`transition_events`).

An upstream is Failing when a pod's breaker is open or half-open at the last scrape, or when at
least MIN_FAILED calls, and FAILING_RATIO of all calls, failed in the window; Idle with no calls;
Unknown with no metrics (no Ready pod answered); NotFound when its TornadoService does not exist
or is a consumer (spec.consumer), which has no Service to call.
UpstreamsHealthy is False when one is NotFound (reason UpstreamNotFound, which wins) or Failing
(UpstreamsFailing), True otherwise. It never changes Ready: a failing dependency must not take its
callers out of their Services.
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from tornado_operator.assessment import Event
from tornado_operator.composition.spec import Entry, Resolution
from tornado_operator.conditions import Condition

JSONDict = dict[str, Any]

CONDITION = "UpstreamsHealthy"
WINDOW_SECONDS = 30.0
SCRAPE_INTERVAL_SECONDS = 10.0
MIN_FAILED = 3
FAILING_RATIO = 0.25
OK = "ok"

HEALTHY = "Healthy"
FAILING = "Failing"
IDLE = "Idle"
UNKNOWN = "Unknown"
NOT_FOUND = "NotFound"

REASON_HEALTHY = "UpstreamsHealthy"
REASON_FAILING = "UpstreamsFailing"
REASON_NOT_FOUND = "UpstreamNotFound"

BREAKER_STATES = {0: "closed", 1: "half-open", 2: "open"}


@dataclasses.dataclass(frozen=True)
class UpstreamSample:
    """One pod's cumulative numbers for one upstream at one scrape."""

    outcomes: Mapping[str, float]  # calls by outcome, cumulative
    buckets: tuple[tuple[float, float], ...] = ()  # (le, cumulative count), by le, +Inf last
    breaker: int | None = None  # 0 closed, 1 half-open, 2 open


# upstream name -> its sample, for one pod at one scrape.
PodSample = Mapping[str, UpstreamSample]


@dataclasses.dataclass(frozen=True)
class Seen:
    """One upstream over the window, summed over the pods."""

    outcomes: Mapping[str, int]
    buckets: tuple[tuple[float, float], ...]  # deltas, cumulative by le
    breaker: int | None  # the worst state among the pods at their last scrape

    @property
    def calls(self) -> int:
        return sum(self.outcomes.values())

    @property
    def failed(self) -> int:
        return self.calls - self.outcomes.get(OK, 0)


@dataclasses.dataclass(frozen=True)
class Report:
    """What one caller's Ready pods said at the last scrape, over the window."""

    ready_pods: int
    scraped_pods: int
    upstreams: Mapping[str, Seen]
    window_seconds: float = WINDOW_SECONDS


def _delta(new: float, old: float) -> float:
    return new - old if new >= old else new  # went down: restarted, counts from zero


def _sample_delta(new: UpstreamSample, old: UpstreamSample | None) -> UpstreamSample:
    if old is None:
        return UpstreamSample({}, (), new.breaker)
    outcomes = {k: _delta(v, old.outcomes.get(k, 0.0)) for k, v in new.outcomes.items()}
    before = dict(old.buckets)
    reset = any(v < before.get(le, 0.0) for le, v in new.buckets)
    buckets = tuple((le, v if reset else v - before.get(le, 0.0)) for le, v in new.buckets)
    return UpstreamSample(outcomes, buckets, new.breaker)


class Window:
    """The scrapes of one caller's pods over the last `seconds`."""

    def __init__(self, seconds: float = WINDOW_SECONDS) -> None:
        self.seconds = seconds
        self._pods: dict[str, deque[tuple[float, PodSample]]] = {}

    def add(self, now: float, samples: Mapping[str, PodSample], ready_pods: int) -> Report:
        """Record one scrape (pod name -> its sample; pods that did not answer are absent) and
        report the window. Pods no longer among the answers are forgotten."""
        for pod in list(self._pods):
            if pod not in samples:
                del self._pods[pod]
        for pod, sample in samples.items():
            history = self._pods.setdefault(pod, deque())
            history.append((now, sample))
            # Keep the newest sample at least `seconds` old as the window's start.
            while len(history) > 2 and history[1][0] <= now - self.seconds:
                history.popleft()
        return self.report(ready_pods)

    def report(self, ready_pods: int) -> Report:
        sums: dict[str, dict[str, float]] = {}
        bucket_sums: dict[str, dict[float, float]] = {}
        breakers: dict[str, int] = {}
        names: set[str] = set()
        empty = UpstreamSample({})
        for history in self._pods.values():
            # One sample says nothing about the window yet. With two, an upstream or an outcome
            # the first did not have counts from zero: its series started in the window.
            start = history[0][1] if len(history) > 1 else None
            newest = history[-1][1]
            for name, sample in newest.items():
                names.add(name)
                delta = _sample_delta(sample, None if start is None else start.get(name, empty))
                by_outcome = sums.setdefault(name, {})
                for outcome, value in delta.outcomes.items():
                    by_outcome[outcome] = by_outcome.get(outcome, 0.0) + value
                by_le = bucket_sums.setdefault(name, {})
                for le, value in delta.buckets:
                    by_le[le] = by_le.get(le, 0.0) + value
                if sample.breaker is not None:
                    breakers[name] = max(breakers.get(name, 0), sample.breaker)
        seen = {
            name: Seen(
                outcomes={k: round(v) for k, v in sorted(sums.get(name, {}).items()) if v},
                buckets=tuple(sorted(bucket_sums.get(name, {}).items())),
                breaker=breakers.get(name),
            )
            for name in sorted(names)
        }
        return Report(ready_pods, len(self._pods), seen, self.seconds)


def quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """Prometheus' histogram_quantile over cumulative (le, count) buckets; None without data."""
    if not buckets:
        return None
    total = buckets[-1][1]
    if total <= 0:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if math.isinf(le):
                return lower  # beyond the last finite bucket: its bound, as Prometheus does
            if count == below:
                return le
            return lower + (le - lower) * (rank - below) / (count - below)
        lower, below = le, count
    return lower


def _percent(ratio: float) -> str:
    return f"{ratio * 100:.0f}%"


def _milliseconds(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def _measure(seen: Seen, window: float) -> tuple[str, JSONDict, str]:
    """State, measured fields and message of one upstream that exists and was scraped."""
    calls, failed = seen.calls, seen.failed
    fields: JSONDict = {"calls": calls, "errorRatio": round(failed / calls, 4) if calls else 0.0}
    if seen.outcomes:
        fields["outcomes"] = dict(seen.outcomes)
    p50, p99 = quantile(0.5, seen.buckets), quantile(0.99, seen.buckets)
    if p50 is not None:
        fields["latencyP50Milliseconds"] = _milliseconds(p50)
    if p99 is not None:
        fields["latencyP99Milliseconds"] = _milliseconds(p99)
    breaker = BREAKER_STATES.get(seen.breaker) if seen.breaker is not None else None
    if breaker is not None:
        fields["breaker"] = breaker
    span = f"{window:g}s"
    failures = ", ".join(f"{k} {v}" for k, v in seen.outcomes.items() if k != OK)
    if breaker in ("open", "half-open"):
        state = FAILING
        message = f"circuit breaker {breaker}"
        if calls:
            message += f"; {failed} of {calls} calls failed in {span}"
    elif failed >= MIN_FAILED and failed >= FAILING_RATIO * calls:
        state = FAILING
        message = f"{failed} of {calls} calls ({_percent(failed / calls)}) failed in {span}"
    elif calls == 0:
        state, message = IDLE, f"no calls in {span}"
    else:
        state = HEALTHY
        message = f"{calls} calls in {span}, {_percent(failed / calls)} failed"
    if failures and state == FAILING:
        message += f" ({failures})"
    if p99 is not None:
        message += f"; p50 {_milliseconds(p50)} ms, p99 {_milliseconds(p99)} ms"
    return state, fields, message


def state_of(seen: Seen, window: float = WINDOW_SECONDS) -> str:
    """The state of one upstream that exists, from what the pods said about it."""
    return _measure(seen, window)[0]


_MEASURED = (
    "calls",
    "errorRatio",
    "outcomes",
    "latencyP50Milliseconds",
    "latencyP99Milliseconds",
    "breaker",
    "pods",
)


def status_items(
    entries: Sequence[Entry],
    resolution: Resolution,
    report: Report | None,
    previous: Iterable[Mapping[str, Any]] = (),
) -> list[JSONDict]:
    """status.upstreams: one item per spec.upstreams entry, in spec order.

    Without a report (the operator has not scraped this service since it started) the measured
    fields and state of the previous status stay, so a restart rewrites nothing."""
    urls = resolution.url_of
    missing = {e.name for e in resolution.missing}
    consumers = {e.name for e in resolution.consumers}
    before = {str(item.get("name")): item for item in previous if isinstance(item, Mapping)}
    items: list[JSONDict] = []
    for entry in entries:
        item: JSONDict = {"name": entry.name}
        if entry.target is not None:
            item["namespace"], item["service"] = entry.target
        if entry.name in urls:
            item["url"] = urls[entry.name]
        if entry.name in missing:
            assert entry.target is not None
            item["state"] = NOT_FOUND
            item["message"] = f"TornadoService {entry.target[0]}/{entry.target[1]} does not exist"
        elif entry.name in consumers:
            assert entry.target is not None
            item["state"] = NOT_FOUND
            item["message"] = (
                f"TornadoService {entry.target[0]}/{entry.target[1]} is a consumer "
                "(spec.consumer): it has no Service to call"
            )
        elif report is None:
            old = before.get(entry.name) or {}
            if old.get("state") not in (None, NOT_FOUND):
                item.update({k: old[k] for k in _MEASURED if k in old})
                item["state"] = old["state"]
                if "message" in old:
                    item["message"] = old["message"]
            else:
                item["state"] = UNKNOWN
                item["message"] = "not measured yet"
        elif report.scraped_pods == 0:
            item["state"] = UNKNOWN
            item["pods"] = 0
            item["message"] = (
                f"no metrics: none of {report.ready_pods} Ready pods answered"
                if report.ready_pods
                else "no Ready pods"
            )
        else:
            seen = report.upstreams.get(entry.name) or Seen({}, (), None)
            state, fields, message = _measure(seen, report.window_seconds)
            item.update(fields)
            item["pods"] = report.scraped_pods
            item["state"] = state
            item["message"] = message[:1024]
        items.append(item)
    return items


def condition(items: Sequence[Mapping[str, Any]]) -> Condition:
    """UpstreamsHealthy from status.upstreams: the failing and missing upstreams by name."""
    missing = [i for i in items if i.get("state") == NOT_FOUND]
    failing = [i for i in items if i.get("state") == FAILING]
    parts = [f"{i['name']}: {i.get('message', '')}" for i in (*missing, *failing)]
    if missing:
        return Condition(CONDITION, False, REASON_NOT_FOUND, "; ".join(parts))
    if failing:
        return Condition(CONDITION, False, REASON_FAILING, "; ".join(parts))
    states = ", ".join(f"{i['name']} {str(i.get('state', UNKNOWN)).lower()}" for i in items)
    return Condition(CONDITION, True, REASON_HEALTHY, f"no upstream is failing ({states})")


def transition_events(
    previous: Iterable[Mapping[str, Any]],
    items: Sequence[Mapping[str, Any]],
    old_condition: Mapping[str, Any] | None,
    new: Condition,
) -> list[Event]:
    """Warning UpstreamNotFound / UpstreamFailing for each upstream that just became so, and
    Normal UpstreamsHealthy when the condition turns True again."""
    before = {str(i.get("name")): i.get("state") for i in previous if isinstance(i, Mapping)}
    events: list[Event] = []
    for item in items:
        state, was = item.get("state"), before.get(str(item.get("name")))
        if state == was:
            continue
        if state == NOT_FOUND:
            events.append(
                Event("Warning", REASON_NOT_FOUND, f"upstream {item['name']}: {item['message']}")
            )
        elif state == FAILING:
            events.append(
                Event("Warning", "UpstreamFailing", f"upstream {item['name']}: {item['message']}")
            )
    if new.status and old_condition is not None and old_condition.get("status") == "False":
        events.append(Event("Normal", REASON_HEALTHY, new.message))
    return events


def digest(items: Sequence[Mapping[str, Any]]) -> tuple[tuple[str, Any, Any], ...]:
    """What is worth a status write at once: each upstream's state and breaker."""
    return tuple((str(i.get("name")), i.get("state"), i.get("breaker")) for i in items)
