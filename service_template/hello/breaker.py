"""A circuit breaker per upstream.

After `failure_threshold` failures in a row the breaker opens: calls fail at once,
without load on an upstream that is already in trouble. After `reset_timeout` one
trial call is let through (half-open); its success closes the breaker, its failure
opens it again.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable


class State(enum.IntEnum):
    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


class CircuitBreaker:
    def __init__(
        self,
        failure_threshold: int,
        reset_timeout: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[State], None] | None = None,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        if reset_timeout <= 0:
            raise ValueError("reset_timeout must be positive")
        self._threshold = failure_threshold
        self._reset_timeout = reset_timeout
        self._clock = clock
        self._on_change = on_change
        self._state = State.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._trial_in_flight = False

    @property
    def state(self) -> State:
        # An open breaker whose time is up reports half-open, even before the next call.
        if self._state is State.OPEN and self._clock() - self._opened_at >= self._reset_timeout:
            return State.HALF_OPEN
        return self._state

    def allow(self) -> bool:
        """May a call go out now? In half-open, only one trial at a time."""
        if self._state is State.OPEN:
            if self._clock() - self._opened_at < self._reset_timeout:
                return False
            self._set(State.HALF_OPEN)
            self._trial_in_flight = False
        if self._state is State.HALF_OPEN:
            if self._trial_in_flight:
                return False
            self._trial_in_flight = True
        return True

    def record_success(self) -> None:
        self._failures = 0
        self._trial_in_flight = False
        if self._state is not State.CLOSED:
            self._set(State.CLOSED)

    def record_failure(self) -> None:
        self._trial_in_flight = False
        if self._state is State.HALF_OPEN:
            self._open()
            return
        self._failures += 1
        if self._state is State.CLOSED and self._failures >= self._threshold:
            self._open()

    def record_abandoned(self) -> None:
        """A call ended without an answer either way (it was cancelled).

        A half-open trial must not stay "in flight" forever; it counts as failed,
        the cautious choice. In the closed state nothing is learned.
        """
        if self._state is State.HALF_OPEN and self._trial_in_flight:
            self._trial_in_flight = False
            self._open()

    def _open(self) -> None:
        self._opened_at = self._clock()
        self._failures = 0
        self._set(State.OPEN)

    def _set(self, state: State) -> None:
        if state is not self._state:
            self._state = state
            if self._on_change is not None:
                self._on_change(state)
