"""The lag autoscaler's decision: replicas from a consumer group's backlog (metric lag).

Pure: no I/O and no clock; time is passed in. One `LagDecider` per consumer. Each tick the
operator reads the group (autoscaling.broker) and calls `LagDecider.step`:

1. Fail static. No reading, a failed one (broker unreachable, stream or group missing) or one
   without a lag (Redis cannot always compute it): keep the current replicas, within the bounds.
2. Recommendation: ceil(backlog / target), backlog = lag + pending. A drained stream gives 0,
   which the bounds raise to minReplicas.
3. Stabilization and behavior policies, exactly as the concurrency autoscaler applies them
   (algorithm.stabilize, algorithm.rate_limit): scale-down goes to the highest recommendation of
   the last scaleDown.stabilizationWindowSeconds, so a stream drained in bursts does not flap.
   The window is seeded with the current replicas when the decider starts, so after an operator
   restart (which loses the history) the first scale-down waits one full window.
4. Bounds: minReplicas..maxReplicas. spec.replicas 0 is a pause: the decider keeps 0.

No panic mode and no KPA rate limits: the backlog is an exact count of the work waiting, not a
noisy sample, and its recommendation is what the stream needs now.
"""

from __future__ import annotations

import dataclasses
from collections import deque

from tornado_operator.autoscaling.algorithm import (
    Direction,
    ScalingRules,
    ceil_div,
    rate_limit,
    stabilize,
)
from tornado_operator.consumer import Reading


@dataclasses.dataclass(frozen=True)
class LagParams:
    """What one consumer asks of its autoscaler."""

    target: int  # backlog per replica
    min_replicas: int
    max_replicas: int
    scale_up: ScalingRules
    scale_down: ScalingRules

    def __post_init__(self) -> None:
        if not self.target >= 1:
            raise ValueError(f"target must be at least 1, not {self.target}")
        if not 1 <= self.min_replicas <= self.max_replicas:
            raise ValueError(
                f"need 1 <= min_replicas <= max_replicas, got {self.min_replicas}, "
                f"{self.max_replicas}"
            )


@dataclasses.dataclass(frozen=True)
class LagDecision:
    """What the lag autoscaler wants now, and why."""

    time: float
    current_replicas: int
    desired_replicas: int
    reason: str
    backlog: int | None = None
    # What held the recommendation back: no-data, paused, stabilization, policy,
    # min-replicas, max-replicas.
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


class LagDecider:
    """The lag autoscaler state of one consumer: recent recommendations and replica changes."""

    def __init__(self, params: LagParams, *, now: float, current_replicas: int) -> None:
        self.params = params
        self.started = now
        # Seeded with the current replicas: a fresh decider does not scale down for a window.
        self._recommendations: deque[tuple[float, int]] = deque([(now, current_replicas)])
        self._changes: deque[tuple[float, int]] = deque()
        self._last_current = current_replicas

    def update(self, params: LagParams) -> None:
        """A spec change: new target, bounds or behavior; the history stays."""
        self.params = params

    def _prune(self, now: float) -> None:
        p = self.params
        keep = max(p.scale_up.stabilization_seconds, p.scale_down.stabilization_seconds)
        while len(self._recommendations) > 1 and self._recommendations[0][0] <= now - keep:
            self._recommendations.popleft()
        longest = max(
            [pol.period_seconds for pol in (*p.scale_up.policies, *p.scale_down.policies)],
            default=0,
        )
        while self._changes and self._changes[0][0] <= now - longest:
            self._changes.popleft()

    def _hold(self, now: float, current: int, why: str, limit: str) -> LagDecision:
        p = self.params
        desired = current if current == 0 else max(p.min_replicas, min(p.max_replicas, current))
        limits = [limit]
        reason = why
        if desired > current:
            limits.append("min-replicas")
            reason += f"; raised to minReplicas {p.min_replicas}"
        elif desired < current:
            limits.append("max-replicas")
            reason += f"; lowered to maxReplicas {p.max_replicas}"
        return LagDecision(now, current, desired, reason, limited_by=tuple(limits))

    def step(self, reading: Reading | None, current_replicas: int, now: float) -> LagDecision:
        """Decide on the latest reading. `current_replicas` is spec.replicas now."""
        p = self.params
        current = current_replicas
        if current != self._last_current:
            self._changes.append((now, current - self._last_current))
            self._last_current = current
        self._prune(now)

        if current == 0:
            return self._hold(
                now, 0, "spec.replicas is 0: autoscaling is paused until it is scaled up", "paused"
            )
        if reading is None:
            return self._hold(
                now, current, f"the broker was not read yet: keeping {current} replicas", "no-data"
            )
        backlog = reading.backlog
        if backlog is None:
            why = (
                reading.message
                if not reading.ok
                else "Redis does not know the group's lag (entries deleted from the stream?)"
            )
            return self._hold(now, current, f"{why}: keeping {current} replicas", "no-data")

        want = ceil_div(backlog, p.target)
        reason = (
            f"backlog {backlog} (lag {reading.lag} + pending {reading.pending}), target "
            f"{p.target} per replica → {want} replicas"
        )
        limits: list[str] = []
        recommendation = want
        stabilized = stabilize(p, self._recommendations, now, current, recommendation)
        self._recommendations.append((now, recommendation))
        if stabilized != recommendation:
            limits.append("stabilization")
            if stabilized > recommendation:
                reason += (
                    f"; scale-down stabilized: the highest recommendation of the last "
                    f"{p.scale_down.stabilization_seconds:g}s is {stabilized}"
                )
            else:
                reason += (
                    f"; scale-up stabilized: the lowest recommendation of the last "
                    f"{p.scale_up.stabilization_seconds:g}s is {stabilized}"
                )

        limited = rate_limit(p, self._changes, now, current, stabilized)
        if limited != stabilized:
            limits.append("policy")
            direction = "scaleUp" if stabilized > current else "scaleDown"
            rules = p.scale_up if stabilized > current else p.scale_down
            if rules.select_policy == "Disabled":
                reason += f"; {direction} is disabled (selectPolicy Disabled)"
            else:
                reason += f"; limited to {limited} by the {direction} policies"

        desired = limited
        if desired > p.max_replicas:
            desired = p.max_replicas
            limits.append("max-replicas")
            reason += f"; limited to maxReplicas {p.max_replicas}"
        elif desired < p.min_replicas:
            desired = p.min_replicas
            limits.append("min-replicas")
            reason += f"; raised to minReplicas {p.min_replicas}"
        return LagDecision(now, current, desired, reason, backlog, tuple(limits))
