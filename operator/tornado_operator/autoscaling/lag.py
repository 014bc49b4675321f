"""The lag autoscaler's decision: replicas from a consumer group's backlog (metric lag).

Pure: no I/O and no clock; time is passed in. One `LagDecider` per consumer. Each tick the
operator reads the group (autoscaling.broker) and calls `LagDecider.step`:

1. Fail static. No reading, a failed one (broker unreachable, stream or group missing) or one
   without a lag (Redis cannot always compute it): keep the current replicas, within the bounds.
2. Recommendation: ceil(backlog / target), backlog = lag + pending. A drained stream gives 0,
   which the bounds raise to minReplicas.
3. Stabilization and behavior policies, exactly as the concurrency autoscaler applies them
   (algorithm.History, shared with it): scale-down goes to the highest recommendation of
   the last scaleDown.stabilizationWindowSeconds, so a stream drained in bursts does not flap.
   The window is seeded with the current replicas when the decider starts, so after an operator
   restart (which loses the history) the first scale-down waits one full window.
4. Bounds: minReplicas..maxReplicas. spec.replicas 0 is a pause: the decider keeps 0.

No panic mode and no KPA rate limits: the backlog is an exact count of the work waiting, not a
noisy sample, and its recommendation is what the stream needs now.
"""

from __future__ import annotations

import dataclasses

from tornado_operator.autoscaling.algorithm import (
    Direction,
    History,
    ScalingRules,
    bounded,
    ceil_div,
    held,
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
        self._history = History(now, current_replicas)

    def update(self, params: LagParams) -> None:
        """A spec change: new target, bounds or behavior; the history stays."""
        self.params = params

    def _hold(self, now: float, current: int, why: str, limit: str) -> LagDecision:
        desired, reason, limits = held(self.params, current, why, limit)
        return LagDecision(now, current, desired, reason, limited_by=limits)

    def step(self, reading: Reading | None, current_replicas: int, now: float) -> LagDecision:
        """Decide on the latest reading. `current_replicas` is spec.replicas now."""
        p = self.params
        current = current_replicas
        self._history.observe(p, now, current)

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
        stabilized, note = self._history.stabilize(p, now, current, want)
        if note:
            limits.append("stabilization")
            reason += note
        limited, note = self._history.rate_limit(p, now, current, stabilized)
        if note:
            limits.append("policy")
            reason += note
        desired, note, limit = bounded(p, limited)
        if limit:
            limits.append(limit)
            reason += note
        return LagDecision(now, current, desired, reason, backlog, tuple(limits))
