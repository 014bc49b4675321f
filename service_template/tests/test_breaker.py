"""The circuit breaker's state machine, as a pure unit with a fake clock."""

from __future__ import annotations

import pytest

from hello.breaker import CircuitBreaker, State


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def state_of(breaker: CircuitBreaker) -> State:
    # A function call, so the type checker does not carry one answer over to the next.
    return breaker.state


def make(threshold: int = 3, reset: float = 10.0) -> tuple[CircuitBreaker, Clock, list[State]]:
    clock = Clock()
    changes: list[State] = []
    breaker = CircuitBreaker(threshold, reset, clock=clock, on_change=changes.append)
    return breaker, clock, changes


def test_opens_after_threshold_consecutive_failures() -> None:
    breaker, _, changes = make(threshold=3)
    for _ in range(2):
        assert breaker.allow()
        breaker.record_failure()
    assert state_of(breaker) is State.CLOSED
    breaker.record_success()  # a success resets the count
    for _ in range(3):
        assert breaker.allow()
        breaker.record_failure()
    assert state_of(breaker) is State.OPEN
    assert not breaker.allow()
    assert changes == [State.OPEN]


def test_half_open_lets_one_trial_through_and_closes_on_success() -> None:
    breaker, clock, changes = make(threshold=1, reset=10)
    breaker.allow()
    breaker.record_failure()
    clock.now += 9.9
    assert not breaker.allow()
    clock.now += 0.1
    assert state_of(breaker) is State.HALF_OPEN
    assert breaker.allow()
    assert not breaker.allow(), "only one trial at a time"
    breaker.record_success()
    assert state_of(breaker) is State.CLOSED
    assert breaker.allow() and breaker.allow()
    assert changes == [State.OPEN, State.HALF_OPEN, State.CLOSED]


def test_failed_trial_opens_again_for_a_full_period() -> None:
    breaker, clock, _ = make(threshold=1, reset=10)
    breaker.allow()
    breaker.record_failure()
    clock.now += 10
    assert breaker.allow()
    breaker.record_failure()
    assert state_of(breaker) is State.OPEN
    clock.now += 9
    assert not breaker.allow()


def test_abandoned_trial_does_not_block_the_breaker_forever() -> None:
    breaker, clock, _ = make(threshold=1, reset=10)
    breaker.allow()
    breaker.record_failure()
    clock.now += 10
    assert breaker.allow()
    breaker.record_abandoned()
    assert state_of(breaker) is State.OPEN
    clock.now += 10
    assert breaker.allow()


def test_abandoned_call_while_closed_changes_nothing() -> None:
    breaker, _, changes = make(threshold=1)
    assert breaker.allow()
    breaker.record_abandoned()
    assert state_of(breaker) is State.CLOSED
    assert changes == []


@pytest.mark.parametrize(("threshold", "reset"), [(0, 1.0), (1, 0.0)])
def test_nonsense_settings_are_refused(threshold: int, reset: float) -> None:
    with pytest.raises(ValueError):
        CircuitBreaker(threshold, reset)
