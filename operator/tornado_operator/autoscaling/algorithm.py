"""The concurrency autoscaler's decision, in the style of Knative's pod autoscaler (KPA).

Pure: no I/O and no clock. Time is passed in (seconds on any monotonic scale), so the same
series of samples always gives the same decisions; the unit tests replay recorded series.

One `Decider` per TornadoService. Each tick (every `TICK_SECONDS`) the operator scrapes the
service's Ready pods, builds one `Sample` and calls `Decider.step`, which returns a
`Decision`. The steps, in order:

1. Windows. Each sample's total concurrency is the sum of the answering pods' in-flight
   gauges, extrapolated to all ready pods (a pod that did not answer is assumed to carry the
   average of those that did, as KPA assumes for pods it did not sample). `stable` is the mean
   total over the last `stable_window` seconds (60), `panic` over the last `panic_window` (6).
2. Recommendation: ceil(stable / target) replicas.
3. Panic mode (KPA). It starts when ceil(panic / target) / ready >= `panic_threshold` (2),
   i.e. the last 6 s need at least twice the pods that are ready (counted as at least 1).
   Each tick over the threshold extends it; it ends at the first tick more than one stable
   window after the last crossing. In panic the larger of the two windows' recommendations
   counts, and it only ratchets up from the replicas at panic start: never a scale-down.
4. Fail static. While any ready pod's metrics are missing, and during the first stable window
   after the decider starts (an operator restart loses the history), the recommendation is
   at least the current replicas: missing data never scales down (as the HPA does). With no
   data at all the decider holds.
5. Stabilization (HPA `behavior`). Scale-down goes to the highest recommendation of the last
   scaleDown.stabilizationWindowSeconds (default 300), scale-up to the lowest of the last
   scaleUp.stabilizationWindowSeconds (default 0). The decider is seeded with the current
   replicas at start, so its first scale-down comes at least one window after it starts.
6. Rate limits. KPA's: one decision goes to at most `max_scale_up_rate` (10) times the ready
   pods and keeps at least 1/`max_scale_down_rate` (half) of them. Then the HPA `behavior`
   policies, only when given: Pods/Percent per periodSeconds chosen by selectPolicy (Max,
   Min, or Disabled to stop scaling in that direction), counted from the replica changes the
   decider observed within each period.
7. Bounds: minReplicas..maxReplicas. spec.replicas 0 is a pause: the decider keeps 0.
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Literal, Protocol

# Knative's defaults (config-autoscaler): stable-window 60s, panic-window-percentage 10,
# panic-threshold-percentage 200, max-scale-down-rate 2, tick-interval 2s. Knative's
# max-scale-up-rate is 1000; 10 per decision (every 2 s) reaches any size within seconds while
# a single absurd gauge value cannot jump straight to maxReplicas of a large service.
TICK_SECONDS = 2.0
STABLE_WINDOW_SECONDS = 60.0
PANIC_WINDOW_PERCENTAGE = 10.0
PANIC_WINDOW_SECONDS = STABLE_WINDOW_SECONDS * PANIC_WINDOW_PERCENTAGE / 100
PANIC_THRESHOLD = 2.0
MAX_SCALE_UP_RATE = 10.0
MAX_SCALE_DOWN_RATE = 2.0
# The HPA's own defaults for behavior (k8s pkg/apis/autoscaling/v2/defaults.go and the
# controller's --horizontal-pod-autoscaler-downscale-stabilization).
DEFAULT_SCALE_UP_STABILIZATION_SECONDS = 0
DEFAULT_SCALE_DOWN_STABILIZATION_SECONDS = 300

# ceil() of a quotient that should be a whole number must not round up a float error.
_EPSILON = 1e-9

SelectPolicy = Literal["Max", "Min", "Disabled"]
PolicyType = Literal["Pods", "Percent"]
Direction = Literal["up", "down", "none"]


@dataclasses.dataclass(frozen=True)
class ScalingPolicy:
    """One HPAScalingPolicy: change by at most `value` pods or percent per `period_seconds`."""

    type: PolicyType
    value: int
    period_seconds: int


@dataclasses.dataclass(frozen=True)
class ScalingRules:
    """One direction of the HPA behavior (HPAScalingRules)."""

    stabilization_seconds: float
    select_policy: SelectPolicy = "Max"
    policies: tuple[ScalingPolicy, ...] = ()


@dataclasses.dataclass(frozen=True)
class Params:
    """What one TornadoService asks of its autoscaler."""

    target: float  # requests in flight per ready pod
    min_replicas: int
    max_replicas: int
    scale_up: ScalingRules = ScalingRules(DEFAULT_SCALE_UP_STABILIZATION_SECONDS)
    scale_down: ScalingRules = ScalingRules(DEFAULT_SCALE_DOWN_STABILIZATION_SECONDS)
    stable_window: float = STABLE_WINDOW_SECONDS
    panic_window: float = PANIC_WINDOW_SECONDS
    panic_threshold: float = PANIC_THRESHOLD
    max_scale_up_rate: float = MAX_SCALE_UP_RATE
    max_scale_down_rate: float = MAX_SCALE_DOWN_RATE

    def __post_init__(self) -> None:
        if not self.target > 0:
            raise ValueError(f"target must be greater than 0, not {self.target}")
        if not 1 <= self.min_replicas <= self.max_replicas:
            raise ValueError(
                f"need 1 <= min_replicas <= max_replicas, got {self.min_replicas}, "
                f"{self.max_replicas}"
            )
        if not 0 < self.panic_window <= self.stable_window:
            raise ValueError("need 0 < panic_window <= stable_window")
        if self.max_scale_up_rate <= 1 or self.max_scale_down_rate <= 1:
            raise ValueError("the maximum scale rates must be greater than 1")


@dataclasses.dataclass(frozen=True)
class Sample:
    """One scrape of all ready pods at `time`.

    `in_flight` has one value per pod that answered (the scrape itself already subtracted);
    `missing` counts the ready pods that did not. `request_rate` is requests per second summed
    over the answering pods that had a previous scrape, None when unknown.
    """

    time: float
    in_flight: tuple[float, ...]
    missing: int = 0
    request_rate: float | None = None
    rate_pods: int = 0  # how many answering pods `request_rate` covers

    @property
    def scraped(self) -> int:
        return len(self.in_flight)

    @property
    def ready(self) -> int:
        return self.scraped + self.missing

    @property
    def total(self) -> float:
        """Total concurrency of all ready pods: answering pods' mean times ready pods."""
        if not self.in_flight:
            raise ValueError("a sample without answers has no total")
        return sum(self.in_flight) / self.scraped * self.ready

    @property
    def total_rate(self) -> float | None:
        if self.request_rate is None or self.rate_pods <= 0:
            return None
        return self.request_rate / self.rate_pods * self.ready


@dataclasses.dataclass(frozen=True)
class Decision:
    """What the autoscaler wants now, and why (fit for status, an Event and a log line)."""

    time: float
    current_replicas: int
    desired_replicas: int
    reason: str
    panic: bool = False
    observed_concurrency: float | None = None  # per ready pod, stable-window mean
    stable_concurrency: float | None = None  # total, stable-window mean
    panic_concurrency: float | None = None  # total, panic-window mean
    ready_pods: int = 0
    scraped_pods: int = 0
    missing_pods: int = 0
    request_rate: float | None = None  # req/s, all ready pods, stable-window mean
    # What held the recommendation back, if anything: no-data, paused, panic,
    # missing-metrics, warming-up, stabilization, rate, policy, min-replicas, max-replicas.
    limited_by: tuple[str, ...] = ()

    @property
    def scale(self) -> bool:
        return self.desired_replicas != self.current_replicas

    @property
    def direction(self) -> Direction:
        if self.desired_replicas > self.current_replicas:
            return "up"
        if self.desired_replicas < self.current_replicas:
            return "down"
        return "none"


def ceil_div(value: float, target: float) -> int:
    return max(0, math.ceil(value / target - _EPSILON))


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def _fmt(value: float) -> str:
    return f"{value:.1f}"


def _seconds(value: float) -> str:
    return f"{value:g}s"


class Decider:
    """The autoscaler state of one TornadoService: samples, recommendations, panic, changes."""

    def __init__(self, params: Params, *, now: float, current_replicas: int) -> None:
        self.params = params
        self.started = now
        self._samples: deque[Sample] = deque()
        self._history = History(now, current_replicas)
        self._panic_since: float | None = None  # last time the panic threshold was crossed
        self._max_panic_pods = 0

    @property
    def panicking(self) -> bool:
        return self._panic_since is not None

    def update(self, params: Params) -> None:
        """A spec change: new target, bounds or behavior; the history stays."""
        self.params = params

    def _hold(self, sample: Sample, current: int, why: str, limit: str) -> Decision:
        desired, reason, limits = held(self.params, current, why, limit)
        return Decision(
            time=sample.time,
            current_replicas=current,
            desired_replicas=desired,
            reason=reason,
            panic=self.panicking,
            ready_pods=sample.ready,
            scraped_pods=sample.scraped,
            missing_pods=sample.missing,
            limited_by=limits,
        )

    # -- the decision ------------------------------------------------------------------------

    def step(self, sample: Sample, current_replicas: int) -> Decision:
        """Record one tick's sample and decide. `current_replicas` is spec.replicas now."""
        p = self.params
        now = sample.time
        current = current_replicas
        self._history.observe(p, now, current)
        if sample.scraped:
            self._samples.append(sample)
        while self._samples and self._samples[0].time <= now - p.stable_window:
            self._samples.popleft()

        if current == 0:
            return self._hold(
                sample,
                0,
                "spec.replicas is 0: autoscaling is paused until it is scaled up",
                "paused",
            )
        if sample.ready == 0:
            return self._hold(
                sample, current, f"no ready pods yet: keeping {current} replicas", "no-data"
            )
        if not sample.scraped:
            return self._hold(
                sample,
                current,
                f"no metrics from any of the {sample.ready} ready pods: keeping {current} replicas",
                "no-data",
            )

        stable_samples = list(self._samples)
        panic_samples = [s for s in stable_samples if s.time > now - p.panic_window]
        stable_total = _mean([s.total for s in stable_samples])
        panic_total = _mean([s.total for s in panic_samples])
        per_pod = _mean([s.total / s.ready for s in stable_samples])
        rates = [r for r in (s.total_rate for s in stable_samples) if r is not None]
        request_rate = _mean(rates) if rates else None

        ready = max(1, sample.ready)
        want_stable = ceil_div(stable_total, p.target)
        want_panic = ceil_div(panic_total, p.target)

        window = _seconds(p.stable_window)
        reason = (
            f"average concurrency {_fmt(stable_total)} over {window} "
            f"({_fmt(per_pod)} per pod, target {p.target:g}) → {want_stable} replicas"
        )
        limits: list[str] = []

        over = want_panic / ready >= p.panic_threshold
        if over:
            if self._panic_since is None:
                self._max_panic_pods = current
            self._panic_since = now
        elif self._panic_since is not None and self._panic_since + p.stable_window < now:
            self._panic_since = None
            self._max_panic_pods = 0

        recommendation = want_stable
        if self._panic_since is not None:
            if over:
                reason = (
                    f"panic: concurrency {_fmt(panic_total)} over the last "
                    f"{_seconds(p.panic_window)} needs {want_panic} pods, "
                    f"{want_panic / ready:.1f} times the {sample.ready} ready "
                    f"(target {p.target:g} per pod) → {want_panic} replicas"
                )
            else:
                reason = f"panic mode (a burst less than {window} ago): {reason}"
                if want_panic > want_stable:
                    # The larger window counts in panic: say which one decided.
                    reason += (
                        f"; the last {_seconds(p.panic_window)}: concurrency "
                        f"{_fmt(panic_total)} → {want_panic} replicas"
                    )
            recommendation = max(want_stable, want_panic)
            if recommendation < self._max_panic_pods:
                limits.append("panic")
                reason += f"; panic mode: not scaling down from {self._max_panic_pods}"
            self._max_panic_pods = max(self._max_panic_pods, recommendation)
            recommendation = self._max_panic_pods

        if sample.missing and recommendation < current:
            recommendation = current
            limits.append("missing-metrics")
            reason += (
                f"; metrics missing from {sample.missing} of {sample.ready} ready pods: "
                "not scaling down"
            )
        if now - self.started < p.stable_window and recommendation < current:
            recommendation = current
            limits.append("warming-up")
            reason += f"; collecting {window} of data after start: not scaling down yet"

        stabilized, note = self._history.stabilize(p, now, current, recommendation)
        if note:
            limits.append("stabilization")
            reason += note

        # KPA's rate limits, relative to the ready pods, on the stabilized count (applied
        # before stabilization they would be remembered as recommendations and slow the next
        # window down).
        max_up = math.ceil(p.max_scale_up_rate * ready)
        max_down = math.floor(ready / p.max_scale_down_rate)
        if stabilized > current and stabilized > max_up and max_up < p.max_replicas:
            stabilized = max(current, max_up)
            limits.append("rate")
            reason += (
                f"; one step goes to at most {p.max_scale_up_rate:g} times the "
                f"{sample.ready} ready pods: {stabilized}"
            )
        elif stabilized < current and stabilized < max_down and max_down > p.min_replicas:
            stabilized = min(current, max_down)
            limits.append("rate")
            reason += (
                f"; one step keeps at least 1/{p.max_scale_down_rate:g} of the "
                f"{sample.ready} ready pods: {stabilized}"
            )

        limited, note = self._history.rate_limit(p, now, current, stabilized)
        if note:
            limits.append("policy")
            reason += note

        desired, note, limit = bounded(p, limited)
        if limit:
            limits.append(limit)
            reason += note

        return Decision(
            time=now,
            current_replicas=current,
            desired_replicas=desired,
            reason=reason,
            panic=self._panic_since is not None,
            observed_concurrency=per_pod,
            stable_concurrency=stable_total,
            panic_concurrency=panic_total,
            ready_pods=sample.ready,
            scraped_pods=sample.scraped,
            missing_pods=sample.missing,
            request_rate=request_rate,
            limited_by=tuple(limits),
        )


class Rules(Protocol):
    """What stabilization, the behavior policies and the bounds read of a decider's parameters
    (the concurrency autoscaler's `Params`, the lag autoscaler's `LagParams`)."""

    @property
    def scale_up(self) -> ScalingRules: ...

    @property
    def scale_down(self) -> ScalingRules: ...

    @property
    def min_replicas(self) -> int: ...

    @property
    def max_replicas(self) -> int: ...


class History:
    """What stabilization and the behavior policies remember of one autoscaled object, for
    either decider: its recent recommendations and the replica changes seen between steps."""

    def __init__(self, now: float, current_replicas: int) -> None:
        # (time, recommendation before stabilization); seeded with the current replicas so
        # that a fresh decider (an operator restart) does not scale down before a full window.
        self.recommendations: deque[tuple[float, int]] = deque([(now, current_replicas)])
        # (time, change in replicas) as observed between steps, for the rate policies.
        self.changes: deque[tuple[float, int]] = deque()
        self._last_current = current_replicas

    def observe(self, rules: Rules, now: float, current: int) -> None:
        """Note a change of the replicas since the last step; forget what no window needs."""
        if current != self._last_current:
            self.changes.append((now, current - self._last_current))
            self._last_current = current
        keep = max(rules.scale_up.stabilization_seconds, rules.scale_down.stabilization_seconds)
        while len(self.recommendations) > 1 and self.recommendations[0][0] <= now - keep:
            self.recommendations.popleft()
        longest = max(
            [p.period_seconds for p in (*rules.scale_up.policies, *rules.scale_down.policies)],
            default=0,
        )
        while self.changes and self.changes[0][0] <= now - longest:
            self.changes.popleft()

    def stabilize(
        self, rules: Rules, now: float, current: int, recommendation: int
    ) -> tuple[int, str]:
        """The stabilized count and, when it differs from the recommendation, why (a reason
        suffix); the recommendation is remembered."""
        result = stabilize(rules, self.recommendations, now, current, recommendation)
        self.recommendations.append((now, recommendation))
        if result > recommendation:
            return result, (
                f"; scale-down stabilized: the highest recommendation of the last "
                f"{_seconds(rules.scale_down.stabilization_seconds)} is {result}"
            )
        if result < recommendation:
            return result, (
                f"; scale-up stabilized: the lowest recommendation of the last "
                f"{_seconds(rules.scale_up.stabilization_seconds)} is {result}"
            )
        return result, ""

    def rate_limit(self, rules: Rules, now: float, current: int, desired: int) -> tuple[int, str]:
        """The count the behavior policies allow and, when it differs from `desired`, why."""
        limited = rate_limit(rules, self.changes, now, current, desired)
        if limited == desired:
            return limited, ""
        direction = "scaleUp" if desired > current else "scaleDown"
        direction_rules = rules.scale_up if desired > current else rules.scale_down
        if direction_rules.select_policy == "Disabled":
            return limited, f"; {direction} is disabled (selectPolicy Disabled)"
        return limited, f"; limited to {limited} by the {direction} policies"


def bounded(rules: Rules, desired: int) -> tuple[int, str, str | None]:
    """`desired` within minReplicas..maxReplicas, the reason suffix, and the limit that applied."""
    if desired > rules.max_replicas:
        return rules.max_replicas, f"; limited to maxReplicas {rules.max_replicas}", "max-replicas"
    if desired < rules.min_replicas:
        return rules.min_replicas, f"; raised to minReplicas {rules.min_replicas}", "min-replicas"
    return desired, "", None


def held(rules: Rules, current: int, why: str, limit: str) -> tuple[int, str, tuple[str, ...]]:
    """Keeping `current` replicas (fail static, or a pause at 0), only brought within the bounds:
    the desired count, the reason and the limits that applied."""
    desired = current if current == 0 else max(rules.min_replicas, min(rules.max_replicas, current))
    if desired > current:
        return (
            desired,
            f"{why}; raised to minReplicas {rules.min_replicas}",
            (limit, "min-replicas"),
        )
    if desired < current:
        return (
            desired,
            f"{why}; lowered to maxReplicas {rules.max_replicas}",
            (limit, "max-replicas"),
        )
    return desired, why, (limit,)


def stabilize(
    rules: Rules,
    recommendations: Iterable[tuple[float, int]],
    now: float,
    current: int,
    recommendation: int,
) -> int:
    """The HPA's stabilization: scale up to the lowest recommendation of the scale-up
    window, down to the highest of the scale-down window (both include this one, which the
    caller then records)."""
    up_cutoff = now - rules.scale_up.stabilization_seconds
    down_cutoff = now - rules.scale_down.stabilization_seconds
    up = recommendation
    down = recommendation
    for when, value in recommendations:
        if when > up_cutoff:
            up = min(up, value)
        if when > down_cutoff:
            down = max(down, value)
    result = current
    if result < up:
        result = up
    if result > down:
        result = down
    return result


def _period_start(
    changes: Iterable[tuple[float, int]], now: float, current: int, period: int
) -> int:
    changed = sum(delta for when, delta in changes if when > now - period)
    return current - changed


def rate_limit(
    rules: Rules, changes: Sequence[tuple[float, int]], now: float, current: int, desired: int
) -> int:
    """The HPA's behavior policies, counted from the replica `changes` (time, delta) observed
    within each period; without policies only the selectPolicy Disabled switch applies."""
    if desired > current:
        up = rules.scale_up
        if up.select_policy == "Disabled":
            return current
        if not up.policies:
            return desired
        limits = []
        for pol in up.policies:
            start = _period_start(changes, now, current, pol.period_seconds)
            if pol.type == "Pods":
                limits.append(start + pol.value)
            else:
                limits.append(math.ceil(start * (1 + pol.value / 100) - _EPSILON))
        limit = max(limits) if up.select_policy == "Max" else min(limits)
        return min(desired, max(limit, current))
    if desired < current:
        down = rules.scale_down
        if down.select_policy == "Disabled":
            return current
        if not down.policies:
            return desired
        limits = []
        for pol in down.policies:
            start = _period_start(changes, now, current, pol.period_seconds)
            if pol.type == "Pods":
                limits.append(start - pol.value)
            else:
                limits.append(math.floor(start * (1 - pol.value / 100) + _EPSILON))
        # Max picks the policy that allows the biggest change: the lowest count.
        limit = min(limits) if down.select_policy == "Max" else max(limits)
        return max(desired, min(limit, current))
    return desired
