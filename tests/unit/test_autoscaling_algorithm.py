"""The concurrency autoscaler's decision on recorded sample series.

Two kinds of series: literal samples as the scraper records them (per-pod in-flight values,
missing pods), and recorded *demand* (total requests in flight over time) replayed through a
small loop in which the service's ready pods follow the decided replicas and share the demand.
Every test asserts exact replica counts or times, so a change to the algorithm shows.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence

import pytest
from tornado_operator.autoscaling.algorithm import (
    PANIC_WINDOW_SECONDS,
    STABLE_WINDOW_SECONDS,
    TICK_SECONDS,
    Decider,
    Decision,
    Params,
    Sample,
    ScalingPolicy,
    ScalingRules,
    ceil_div,
)

TICK = TICK_SECONDS


def params(
    target: float = 10,
    min_replicas: int = 1,
    max_replicas: int = 20,
    *,
    down: float = 300,
    up: float = 0,
    down_policies: tuple[ScalingPolicy, ...] = (),
    up_policies: tuple[ScalingPolicy, ...] = (),
    down_select: str = "Max",
    up_select: str = "Max",
) -> Params:
    return Params(
        target=target,
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        scale_up=ScalingRules(up, up_select, up_policies),  # type: ignore[arg-type]
        scale_down=ScalingRules(down, down_select, down_policies),  # type: ignore[arg-type]
    )


def replay(
    p: Params,
    demand: Callable[[float], float],
    *,
    start: int,
    until: float,
    t0: float = 0.0,
) -> list[Decision]:
    """Ticks from t0 to `until`: the ready pods are the replicas decided before, each
    carrying an equal share of the demand (what a Service's load balancing gives)."""
    decider = Decider(p, now=t0, current_replicas=start)
    current = start
    out: list[Decision] = []
    t = t0
    while t <= until + 1e-9:
        share = demand(t) / current
        decision = decider.step(Sample(t, (share,) * current), current)
        out.append(decision)
        current = decision.desired_replicas
        t += TICK
    return out


def changes(decisions: Sequence[Decision]) -> list[tuple[float, int, int]]:
    """(time, from, to) for every decision that changes the replicas."""
    return [(d.time, d.current_replicas, d.desired_replicas) for d in decisions if d.scale]


def at(decisions: Sequence[Decision], t: float) -> Decision:
    [found] = [d for d in decisions if math.isclose(d.time, t)]
    return found


# -- constants and small pieces ---------------------------------------------------------------


def test_knative_style_constants() -> None:
    assert STABLE_WINDOW_SECONDS == 60
    assert PANIC_WINDOW_SECONDS == 6
    assert TICK_SECONDS == 2
    p = params()
    assert (p.panic_threshold, p.max_scale_up_rate, p.max_scale_down_rate) == (2.0, 10.0, 2.0)
    assert p.scale_down.stabilization_seconds == 300 and p.scale_up.stabilization_seconds == 0


def test_ceil_div_ignores_float_noise() -> None:
    assert ceil_div(0.1 * 3, 0.1) == 3
    assert ceil_div(30.000001, 10) == 4
    assert ceil_div(0, 10) == 0


def test_sample_extrapolates_missing_pods_at_the_answering_mean() -> None:
    sample = Sample(0, (10.0, 20.0), missing=2, request_rate=30.0, rate_pods=2)
    assert (sample.scraped, sample.ready, sample.total, sample.total_rate) == (2, 4, 60.0, 60.0)


@pytest.mark.parametrize(
    "kwargs",
    [{"target": 0}, {"target": -1}, {"min_replicas": 0}, {"min_replicas": 5, "max_replicas": 4}],
)
def test_params_refuse_nonsense(kwargs: dict[str, float]) -> None:
    base: dict[str, float] = {"target": 10, "min_replicas": 1, "max_replicas": 5}
    with pytest.raises(ValueError):
        Params(**{**base, **kwargs})  # type: ignore[arg-type]


# -- steady load ------------------------------------------------------------------------------


def test_steady_load_recorded_samples_keep_the_replicas() -> None:
    # Recorded: three pods answering 9, 10 and 11 requests in flight, every 2 s for 3 minutes.
    decider = Decider(params(target=10), now=0, current_replicas=3)
    decisions = [decider.step(Sample(t * TICK, (9.0, 10.0, 11.0)), 3) for t in range(0, 91)]
    assert {d.desired_replicas for d in decisions} == {3}
    last = decisions[-1]
    assert (last.observed_concurrency, last.stable_concurrency, last.panic) == (10.0, 30.0, False)
    assert last.reason == "average concurrency 30.0 over 60s (10.0 per pod, target 10) → 3 replicas"
    assert last.limited_by == ()


def test_steady_load_scales_once_to_ceil_of_total_over_target() -> None:
    # 47 requests in flight in total, target 5 per pod: ceil(47 / 5) = 10 pods, from 6.
    decisions = replay(params(target=5), lambda t: 47.0, start=6, until=600)
    assert changes(decisions) == [(0.0, 6, 10)]
    assert all(d.desired_replicas == 10 for d in decisions)
    assert at(decisions, 600).observed_concurrency == pytest.approx(4.7)
    assert not any(d.panic for d in decisions)  # 10 / 6 < 2: no panic


# -- a burst: the panic window ----------------------------------------------------------------


def burst(t: float) -> float:
    """20 in flight, a burst of 100 from t=100 to t=130, then 20 again."""
    return 100.0 if 100 <= t < 130 else 20.0


def test_burst_enters_panic_and_scales_up_at_once() -> None:
    decisions = replay(params(target=10), burst, start=2, until=700)
    before = at(decisions, 98)
    assert (before.desired_replicas, before.panic) == (2, False)
    first = at(decisions, 100)
    # Panic window (94, 100]: samples 20, 20, 100 -> 46.7 needs 5 pods, 2.5x the 2 ready.
    assert first.panic is True
    assert first.desired_replicas == 5
    assert first.reason.startswith(
        "panic: concurrency 46.7 over the last 6s needs 5 pods, 2.5 times the 2 ready"
    )
    second = at(decisions, 102)
    # (96, 102]: 20, 100, 100 -> 73.3 needs 8 pods; 8 / 5 ready < 2, but panic lasts.
    assert (second.desired_replicas, second.panic) == (8, True)
    third = at(decisions, 104)
    assert third.desired_replicas == 10  # 100 / 10: the whole burst covered in 4 seconds
    # Over the threshold no more (10 / 8 ready), still in panic: the reason names the window
    # that decided, and the number it gave (what the ScaledUp Event says).
    assert not third.reason.startswith("panic:")
    assert third.reason.startswith("panic mode (a burst less than 60s ago): average concurrency")
    assert third.reason.endswith("; the last 6s: concurrency 100.0 → 10 replicas"), third.reason
    # Stable window alone would still say ceil((47 * 20 + 3 * 100) / 50 / 10) = 3 at t=104.
    assert third.stable_concurrency is not None
    assert ceil_div(third.stable_concurrency, 10) == 3


def test_no_scale_down_in_panic_and_panic_ends_a_stable_window_after_the_burst() -> None:
    decisions = replay(params(target=10), burst, start=2, until=700)
    panicking = [d for d in decisions if d.panic]
    # The threshold was last crossed at t=100 (t=102: 8 / 5 < 2); panic ends once 60 s have
    # passed without a crossing: the first tick after t=160.
    assert (panicking[0].time, panicking[-1].time) == (100.0, 160.0)
    assert not at(decisions, 162).panic
    for before, after in itertools.pairwise(decisions):
        if after.panic:
            assert after.desired_replicas >= before.desired_replicas
    # Panic kept recommending 10 until t=160. Then the 60 s average decays (54.7 at t=162,
    # 49.3 at 166, 38.7 at 174, 28.0 at 182, 20.0 at 188) and each recommendation is
    # followed 300 s later (the scale-down stabilization window): down to 2 pods at 486.
    assert [c for c in changes(decisions) if c[2] < c[1]] == [
        (460.0, 10, 6),
        (464.0, 6, 5),
        (472.0, 5, 4),
        (480.0, 4, 3),
        (486.0, 3, 2),
    ]
    assert at(decisions, 700).desired_replicas == 2


def test_stable_window_only_would_be_slow() -> None:
    # The same burst without panic (threshold out of reach): 10 pods only after ~40 s.
    slow = Params(
        target=10,
        min_replicas=1,
        max_replicas=20,
        panic_threshold=1000,
    )
    decisions = replay(slow, burst, start=2, until=200)
    assert not any(d.panic for d in decisions)
    assert at(decisions, 104).desired_replicas == 3
    # The window is half burst at its end (t=128: 15 samples of 100, 15 of 20 -> 60): the
    # 30 s burst never gets the 10 pods it needs.
    assert max(d.desired_replicas for d in decisions) == 6


# -- missing pods: fail static ----------------------------------------------------------------


def test_missing_pod_blocks_scale_down_and_is_reported() -> None:
    p = params(target=10, down=0)  # no stabilization: only the missing data holds
    decider = Decider(p, now=0, current_replicas=3)
    # Recorded: load has dropped to 1 in flight per pod; pod c times out until t=100.
    decisions = [decider.step(Sample(t, (1.0, 1.0), missing=1), 3) for t in range(0, 100, 2)]
    assert {d.desired_replicas for d in decisions} == {3}
    late = decisions[-1]
    assert (late.ready_pods, late.scraped_pods, late.missing_pods) == (3, 2, 1)
    assert late.limited_by == ("missing-metrics",)
    assert late.reason == (
        "average concurrency 3.0 over 60s (1.0 per pod, target 10) → 1 replicas; "
        "metrics missing from 1 of 3 ready pods: not scaling down"
    )
    back = decider.step(Sample(100, (1.0, 1.0, 1.0)), 3)
    # All three answer again: ceil(3 / 10) = 1, but one step at most halves: floor(3/2) = 1.
    assert (back.desired_replicas, back.missing_pods, back.limited_by) == (1, 0, ())


def test_missing_pod_still_allows_scale_up() -> None:
    decider = Decider(params(target=10), now=0, current_replicas=3)
    # Two pods answer 20 each, the third does not: assumed at the same 20, total 60.
    decision = decider.step(Sample(0, (20.0, 20.0), missing=1), 3)
    assert decision.desired_replicas == 6
    assert decision.missing_pods == 1 and decision.limited_by == ()


def test_no_data_at_all_holds() -> None:
    decider = Decider(params(target=10, down=0), now=0, current_replicas=4)
    for t in range(0, 200, 2):
        decision = decider.step(Sample(t, (), missing=4), 4)
        assert decision.desired_replicas == 4
    assert decision.reason == "no metrics from any of the 4 ready pods: keeping 4 replicas"
    assert decision.limited_by == ("no-data",)
    assert decision.observed_concurrency is None
    none_ready = decider.step(Sample(200, ()), 4)
    assert (none_ready.desired_replicas, none_ready.reason) == (
        4,
        "no ready pods yet: keeping 4 replicas",
    )


def test_no_data_still_enforces_the_bounds() -> None:
    decider = Decider(params(target=10, min_replicas=2, max_replicas=5), now=0, current_replicas=8)
    assert decider.step(Sample(0, (), missing=8), 8).desired_replicas == 5
    assert decider.step(Sample(2, (), missing=1), 1).desired_replicas == 2


# -- flapping input ---------------------------------------------------------------------------


def flapping(t: float) -> float:
    """30 in flight for two minutes, then 50 and 10 by turns, 14 s each: the 60 s average
    swings around 30 (up to 31.3, down to 28.7) because 60 s is not a whole number of turns."""
    if t < 120:
        return 30.0
    return 50.0 if ((t - 120) // 14) % 2 == 0 else 10.0


def test_flapping_input_does_not_oscillate() -> None:
    decisions = replay(params(target=10), flapping, start=3, until=900)
    # The first swing above 30 (t=120: 29 samples of 30 and one of 50) asks for 4 pods; the
    # 300 s scale-down window then always holds a recent 4: one change in 13 minutes.
    assert changes(decisions) == [(120.0, 3, 4)]
    assert not any(d.panic for d in decisions)


def test_flapping_input_would_oscillate_without_stabilization() -> None:
    decisions = replay(params(target=10, down=0), flapping, start=3, until=900)
    flips = changes(decisions)
    assert len(flips) >= 40  # up and down with every turn: what stabilization prevents
    assert {c[2] for c in flips} == {3, 4}


# -- bounds, the end of load, warm-up, pause --------------------------------------------------


def test_max_replicas_clamps_and_says_so() -> None:
    decider = Decider(params(target=10, max_replicas=8), now=0, current_replicas=4)
    decision = decider.step(Sample(0, (50.0,) * 4), 4)  # 200 in flight: 20 pods wanted
    assert decision.desired_replicas == 8
    assert "max-replicas" in decision.limited_by
    assert decision.reason.endswith("; limited to maxReplicas 8")


def test_one_step_scales_up_at_most_tenfold() -> None:
    decider = Decider(params(target=1, max_replicas=1000), now=0, current_replicas=1)
    decision = decider.step(Sample(0, (500.0,)), 1)
    assert decision.desired_replicas == 10
    assert decision.reason == (
        "panic: concurrency 500.0 over the last 6s needs 500 pods, 500.0 times the 1 ready "
        "(target 1 per pod) → 500 replicas; one step goes to at most 10 times the 1 ready "
        "pods: 10"
    )
    assert decision.limited_by == ("rate",)


def test_load_stops_scale_to_min_only_after_the_stabilization_window() -> None:
    def load(t: float) -> float:
        return 60.0 if t < 120 else 0.0

    decisions = replay(params(target=10, min_replicas=2), load, start=6, until=700)
    # The 60 s average after the load stops at t=120: 58 at 120, 52 at 126, 50 at 128, 42 at
    # 136, 32 at 146, 22 at 156, 20 at 158. The last recommendation of 6 is at t=126: the
    # first scale-down follows 300 s later, and so on down to minReplicas.
    assert all(d.desired_replicas == 6 for d in decisions if d.time < 126 + 300)
    assert [c for c in changes(decisions) if c[2] < c[1]] == [
        (426.0, 6, 5),
        (436.0, 5, 4),
        (446.0, 4, 3),
        (456.0, 3, 2),
    ]
    final = at(decisions, 700)
    assert final.desired_replicas == 2
    assert final.limited_by == ("min-replicas",)
    assert final.reason == (
        "average concurrency 0.0 over 60s (0.0 per pod, target 10) → 0 replicas; "
        "raised to minReplicas 2"
    )


def test_fresh_decider_does_not_scale_down_for_a_stable_window() -> None:
    # An operator restart: no history, five pods, no load, and no stabilization configured.
    decisions = replay(params(target=10, down=0), lambda t: 0.0, start=5, until=80)
    assert all(d.desired_replicas == 5 for d in decisions if d.time < 60)
    assert "warming-up" in at(decisions, 58).limited_by
    assert at(decisions, 60).desired_replicas == 2  # half of 5 in one step, then 1
    assert at(decisions, 62).desired_replicas == 1


def test_zero_replicas_is_a_pause() -> None:
    decider = Decider(params(target=10), now=0, current_replicas=0)
    decision = decider.step(Sample(0, ()), 0)
    assert decision.desired_replicas == 0 and decision.limited_by == ("paused",)


# -- behavior: stabilization and policies -----------------------------------------------------


def test_scale_up_stabilization_takes_the_lowest_recent_recommendation() -> None:
    decider = Decider(params(target=10, up=10), now=0, current_replicas=2)
    first = decider.step(Sample(0, (20.0, 20.0)), 2)  # 40 -> 4, but the seed says 2
    assert first.desired_replicas == 2 and "stabilization" in first.limited_by
    assert decider.step(Sample(8, (20.0, 20.0)), 2).desired_replicas == 2
    assert decider.step(Sample(10, (20.0, 20.0)), 2).desired_replicas == 4  # seed aged out


def test_scale_up_policy_limits_the_rate_per_period() -> None:
    p = params(target=10, up_policies=(ScalingPolicy("Pods", 2, 30),))
    decisions = replay(p, lambda t: 100.0, start=2, until=120)
    assert changes(decisions) == [(0.0, 2, 4), (32.0, 4, 6), (64.0, 6, 8), (96.0, 8, 10)]
    assert "; limited to 4 by the scaleUp policies" in at(decisions, 0).reason


def test_scale_down_policy_and_select_policy() -> None:
    def load(t: float) -> float:
        return 0.0

    one_per_minute = params(target=10, down=0, down_policies=(ScalingPolicy("Pods", 1, 60),))
    decisions = replay(one_per_minute, load, start=6, until=300)
    assert changes(decisions) == [
        (60.0, 6, 5),
        (122.0, 5, 4),
        (184.0, 4, 3),
        (246.0, 3, 2),
    ]
    disabled = params(target=10, down=0, down_select="Disabled")
    decisions = replay(disabled, load, start=6, until=300)
    assert changes(decisions) == []
    assert "scaleDown is disabled (selectPolicy Disabled)" in decisions[-1].reason


def test_params_update_keeps_history() -> None:
    decider = Decider(params(target=10), now=0, current_replicas=2)
    assert decider.step(Sample(0, (10.0, 10.0)), 2).desired_replicas == 2
    decider.update(params(target=5))
    assert decider.step(Sample(2, (10.0, 10.0)), 2).desired_replicas == 4
