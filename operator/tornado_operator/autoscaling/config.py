"""From a validated, defaulted TornadoService spec to the operator's autoscalers' parameters
(metric concurrency, and metric lag for consumers).

Also the operator's own copy of the CRD's CEL rules on spec.autoscaling (and of the spec-level
ones that tie spec.autoscaling.metric to spec.consumer): jsonschema does not
evaluate CEL, and a cluster with an older CRD (without these rules, or without the fields at
all) must not hand the operator a spec it cannot honour.
"""

from __future__ import annotations

from typing import Any, cast

from tornado_operator import consumer
from tornado_operator.autoscaling.algorithm import (
    DEFAULT_SCALE_DOWN_STABILIZATION_SECONDS,
    DEFAULT_SCALE_UP_STABILIZATION_SECONDS,
    Params,
    PolicyType,
    ScalingPolicy,
    ScalingRules,
    SelectPolicy,
)
from tornado_operator.autoscaling.lag import LagParams

JSONDict = dict[str, Any]

CPU = "cpu"
CONCURRENCY = "concurrency"
LAG = "lag"
# The metrics the operator's own autoscaler serves (no HPA exists with them).
OWN_METRICS = frozenset({CONCURRENCY, LAG})
# targetCPUUtilizationPercentage has a schema default, so "not set" cannot be told apart from
# this value: with metric concurrency it must stay at it.
DEFAULT_CPU_TARGET = 80


def metric(spec: JSONDict) -> str:
    """The autoscaling metric of a spec (cpu when absent, as the CRD defaults it)."""
    auto = spec.get("autoscaling") or {}
    return str(auto.get("metric") or CPU)


def uses_concurrency(spec: JSONDict) -> bool:
    """Whether the operator's own autoscaler runs for this spec (and no HPA may exist)."""
    auto = spec.get("autoscaling") or {}
    return bool(auto.get("enabled")) and metric(spec) == CONCURRENCY


def uses_lag(spec: JSONDict) -> bool:
    """Whether the operator scales this consumer on its stream's backlog."""
    auto = spec.get("autoscaling") or {}
    return bool(auto.get("enabled")) and metric(spec) == LAG


def uses_own_autoscaler(spec: JSONDict) -> bool:
    """Whether the operator itself writes spec.replicas (so no HPA may exist)."""
    auto = spec.get("autoscaling") or {}
    return bool(auto.get("enabled")) and metric(spec) in OWN_METRICS


def _lag_problems(spec: JSONDict) -> list[tuple[str, str]]:
    auto = spec.get("autoscaling") or {}
    found: list[tuple[str, str]] = []
    lag = metric(spec) == LAG
    field = "spec.autoscaling.targetLagPerReplica"
    if "targetLagPerReplica" in auto and not lag:
        found.append((field, f"{field} may only be set with spec.autoscaling.metric lag"))
    if lag and "targetLagPerReplica" not in auto:
        found.append((field, f"{field} is required with spec.autoscaling.metric lag"))
    if lag and "targetMemoryUtilizationPercentage" in auto:
        memory = "spec.autoscaling.targetMemoryUtilizationPercentage"
        found.append(
            (
                memory,
                f"{memory} applies only to spec.autoscaling.metric cpu; remove it with metric lag",
            )
        )
    if lag and auto.get("targetCPUUtilizationPercentage", DEFAULT_CPU_TARGET) != (
        DEFAULT_CPU_TARGET
    ):
        cpu = "spec.autoscaling.targetCPUUtilizationPercentage"
        found.append(
            (
                cpu,
                f"{cpu} applies only to spec.autoscaling.metric cpu; leave it out "
                f"(at its default, {DEFAULT_CPU_TARGET}) with metric lag",
            )
        )
    return found


def _metric_problems(spec: JSONDict) -> list[tuple[str, str]]:
    """The spec-level rules: metric concurrency never on a consumer, metric lag only on one."""
    field = "spec.autoscaling.metric"
    if consumer.is_consumer(spec) and metric(spec) == CONCURRENCY:
        return [
            (
                field,
                f"{field} concurrency does not apply to a consumer (spec.consumer), which "
                "serves no requests: use metric lag or cpu",
            )
        ]
    if not consumer.is_consumer(spec) and metric(spec) == LAG:
        return [
            (
                field,
                f"{field} lag needs spec.consumer: only a consumer has a stream to lag behind",
            )
        ]
    return []


def spec_problems(spec: JSONDict) -> list[tuple[str, str]]:
    """(field, message) for every CEL rule on spec.autoscaling the spec breaks, in CRD order
    (the spec-level rules on spec.autoscaling.metric first, as the CRD has them)."""
    auto = spec.get("autoscaling") or {}
    found: list[tuple[str, str]] = []
    low, high = auto.get("minReplicas"), auto.get("maxReplicas")
    if isinstance(low, int) and isinstance(high, int) and low > high:
        field = "spec.autoscaling.minReplicas"
        found.append((field, f"{field} must be less than or equal to spec.autoscaling.maxReplicas"))
    concurrency = metric(spec) == CONCURRENCY
    target = auto.get("targetConcurrency")
    field = "spec.autoscaling.targetConcurrency"
    if target is not None and not concurrency:
        found.append((field, f"{field} may only be set with spec.autoscaling.metric concurrency"))
    if concurrency and target is None:
        found.append((field, f"{field} is required with spec.autoscaling.metric concurrency"))
    if concurrency and "targetMemoryUtilizationPercentage" in auto:
        memory = "spec.autoscaling.targetMemoryUtilizationPercentage"
        found.append(
            (
                memory,
                f"{memory} applies only to spec.autoscaling.metric cpu; "
                "remove it with metric concurrency",
            )
        )
    if concurrency and auto.get("targetCPUUtilizationPercentage", DEFAULT_CPU_TARGET) != (
        DEFAULT_CPU_TARGET
    ):
        cpu = "spec.autoscaling.targetCPUUtilizationPercentage"
        found.append(
            (
                cpu,
                f"{cpu} applies only to spec.autoscaling.metric cpu; leave it out "
                f"(at its default, {DEFAULT_CPU_TARGET}) with metric concurrency",
            )
        )
    if isinstance(target, int | float) and not isinstance(target, bool) and not target > 0:
        found.append((field, f"{field} must be greater than 0"))
    return _metric_problems(spec) + found + _lag_problems(spec)


def _rules(raw: JSONDict | None, default_stabilization: int) -> ScalingRules:
    raw = raw or {}
    policies = tuple(
        ScalingPolicy(
            type=cast(PolicyType, str(pol["type"])),
            value=int(pol["value"]),
            period_seconds=int(pol["periodSeconds"]),
        )
        for pol in raw.get("policies") or ()
    )
    return ScalingRules(
        stabilization_seconds=float(raw.get("stabilizationWindowSeconds", default_stabilization)),
        select_policy=cast(SelectPolicy, str(raw.get("selectPolicy", "Max"))),
        policies=policies,
    )


def _checked_autoscaling(spec: JSONDict, uses: bool, metric_name: str) -> JSONDict:
    """spec.autoscaling of a spec that uses `metric_name` and breaks none of the rules above;
    ValueError naming the broken rules otherwise."""
    if not uses:
        raise ValueError(f"spec.autoscaling does not enable metric {metric_name}")
    problems = spec_problems(spec)
    if problems:
        raise ValueError("; ".join(message for _, message in problems))
    return cast(JSONDict, spec["autoscaling"])


def _bounds_and_behavior(auto: JSONDict) -> dict[str, Any]:
    """What both deciders take from spec.autoscaling besides their target."""
    behavior = auto.get("behavior") or {}
    return {
        "min_replicas": int(auto["minReplicas"]),
        "max_replicas": int(auto["maxReplicas"]),
        "scale_up": _rules(behavior.get("scaleUp"), DEFAULT_SCALE_UP_STABILIZATION_SECONDS),
        "scale_down": _rules(behavior.get("scaleDown"), DEFAULT_SCALE_DOWN_STABILIZATION_SECONDS),
    }


def params_from_spec(spec: JSONDict) -> Params:
    """The concurrency decider's parameters. Raises ValueError when the spec does not use
    concurrency autoscaling or breaks one of the rules above."""
    auto = _checked_autoscaling(spec, uses_concurrency(spec), CONCURRENCY)
    return Params(target=float(auto["targetConcurrency"]), **_bounds_and_behavior(auto))


def lag_params_from_spec(spec: JSONDict) -> LagParams:
    """The lag decider's parameters. Raises ValueError when the spec does not use lag
    autoscaling or breaks one of the rules above."""
    auto = _checked_autoscaling(spec, uses_lag(spec), LAG)
    return LagParams(target=int(auto["targetLagPerReplica"]), **_bounds_and_behavior(auto))
