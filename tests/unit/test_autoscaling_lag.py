"""The lag autoscaler's decision (autoscaling.lag): backlog per replica, bounds, fail static,
stabilization and the behavior policies, replayed on a made-up clock."""

from __future__ import annotations

import pytest
from tornado_operator import validation
from tornado_operator.autoscaling import config
from tornado_operator.autoscaling.algorithm import ScalingPolicy, ScalingRules
from tornado_operator.autoscaling.lag import LagDecider, LagParams
from tornado_operator.consumer import Reading


def params(
    target: int = 100, low: int = 1, high: int = 10, down: float = 60, up: float = 0
) -> LagParams:
    return LagParams(
        target=target,
        min_replicas=low,
        max_replicas=high,
        scale_up=ScalingRules(up),
        scale_down=ScalingRules(down),
    )


def found(lag: int | None, pending: int = 0, at: float = 0.0) -> Reading:
    return Reading("StreamFound", "ok", at, lag=lag, pending=pending, entries_read=0)


def test_backlog_is_lag_plus_pending_over_the_target() -> None:
    decider = LagDecider(params(), now=0, current_replicas=1)
    decision = decider.step(found(250, pending=100), 1, now=2)
    assert decision.desired_replicas == 4  # ceil(350 / 100)
    assert decision.backlog == 350 and decision.direction == "up"
    assert "lag 250 + pending 100" in decision.reason


def test_exact_multiple_does_not_round_up() -> None:
    decider = LagDecider(params(), now=0, current_replicas=1)
    assert decider.step(found(300), 1, now=2).desired_replicas == 3


def test_respects_the_maximum() -> None:
    decider = LagDecider(params(high=5), now=0, current_replicas=1)
    decision = decider.step(found(100_000), 1, now=2)
    assert decision.desired_replicas == 5 and "max-replicas" in decision.limited_by


def test_drained_goes_to_the_minimum_after_the_window() -> None:
    decider = LagDecider(params(low=2, down=60), now=0, current_replicas=2)
    assert decider.step(found(800), 2, now=2).desired_replicas == 8
    # Drained: held at 8 while the last minute still recommended 8 (no flapping)...
    held = decider.step(found(0), 8, now=30)
    assert held.desired_replicas == 8 and "stabilization" in held.limited_by
    # ...then straight to minReplicas once the window has passed.
    down = decider.step(found(0), 8, now=63)
    assert down.desired_replicas == 2 and "min-replicas" in down.limited_by


def test_scale_down_is_stabilized_against_a_bursty_stream() -> None:
    decider = LagDecider(params(down=60), now=-1000, current_replicas=4)
    replicas = 4
    seen = []
    for t, backlog in enumerate([400, 0, 400, 0, 400, 0]):
        decision = decider.step(found(backlog), replicas, now=t * 10)
        replicas = decision.desired_replicas
        seen.append(replicas)
    assert seen == [4] * 6


def test_a_fresh_decider_does_not_scale_down_for_a_window() -> None:
    # An operator restart loses the history: the window is seeded with the current replicas.
    decider = LagDecider(params(down=60), now=0, current_replicas=6)
    decision = decider.step(found(0), 6, now=2)
    assert decision.desired_replicas == 6 and "stabilization" in decision.limited_by
    assert decider.step(found(0), 6, now=61).desired_replicas == 1


def test_scale_up_is_immediate_by_default() -> None:
    decider = LagDecider(params(), now=0, current_replicas=1)
    assert decider.step(found(950), 1, now=2).desired_replicas == 10


@pytest.mark.parametrize(
    ("reading", "why"),
    [
        (None, "not read yet"),
        (Reading("BrokerUnreachable", "cannot reach the broker redis://b", 0), "cannot reach"),
        (Reading("StreamNotFound", "stream orders does not exist", 0), "does not exist"),
        (Reading("GroupNotFound", "no consumer group billing", 0), "no consumer group"),
        (found(None, pending=3), "does not know the group's lag"),
    ],
)
def test_fails_static_on_missing_data(reading: Reading | None, why: str) -> None:
    decider = LagDecider(params(), now=-1000, current_replicas=4)
    decision = decider.step(reading, 4, now=0)
    assert decision.desired_replicas == 4 and not decision.scale
    assert decision.limited_by == ("no-data",)
    assert why in decision.reason and "keeping 4 replicas" in decision.reason


def test_missing_data_still_respects_the_bounds() -> None:
    decider = LagDecider(params(low=2, high=5), now=0, current_replicas=9)
    assert decider.step(None, 9, now=1).desired_replicas == 5
    assert decider.step(None, 1, now=2).desired_replicas == 2


def test_zero_replicas_is_a_pause() -> None:
    decider = LagDecider(params(), now=0, current_replicas=0)
    decision = decider.step(found(10_000), 0, now=2)
    assert decision.desired_replicas == 0 and decision.limited_by == ("paused",)


def test_policies_limit_the_rate() -> None:
    p = LagParams(
        target=10,
        min_replicas=1,
        max_replicas=50,
        scale_up=ScalingRules(0, "Max", (ScalingPolicy("Pods", 2, 60),)),
        scale_down=ScalingRules(0),
    )
    decider = LagDecider(p, now=-1000, current_replicas=1)
    first = decider.step(found(1000), 1, now=0)
    assert first.desired_replicas == 3 and "policy" in first.limited_by
    # The change just made counts within the period: no more this minute.
    assert decider.step(found(1000), 3, now=10).desired_replicas == 3
    assert decider.step(found(1000), 3, now=70).desired_replicas == 5


def test_disabled_scale_down() -> None:
    p = LagParams(1, 1, 10, ScalingRules(0), ScalingRules(0, "Disabled"))
    decider = LagDecider(p, now=-1000, current_replicas=5)
    assert decider.step(found(0), 5, now=0).desired_replicas == 5


def test_params_from_the_spec() -> None:
    spec = validation.validated_spec(
        {
            "consumer": {"broker": "redis://r", "stream": "s", "group": "g"},
            "autoscaling": {
                "enabled": True,
                "metric": "lag",
                "targetLagPerReplica": 250,
                "minReplicas": 1,
                "maxReplicas": 12,
                "behavior": {"scaleDown": {"stabilizationWindowSeconds": 45}},
            },
        }
    )
    assert config.uses_lag(spec) and config.uses_own_autoscaler(spec)
    assert not config.uses_concurrency(spec)
    assert config.lag_params_from_spec(spec) == LagParams(
        250, 1, 12, ScalingRules(0), ScalingRules(45)
    )
    with pytest.raises(ValueError, match="does not enable metric lag"):
        config.lag_params_from_spec(validation.validated_spec({}))


def test_params_refuse_nonsense() -> None:
    with pytest.raises(ValueError):
        params(target=0)
    with pytest.raises(ValueError):
        params(low=5, high=2)
