"""From a validated, defaulted TornadoService spec to the concurrency autoscaler's parameters.

Also the operator's own copy of the CRD's CEL rules on spec.autoscaling: jsonschema does not
evaluate CEL, and a cluster with an older CRD (without these rules, or without the fields at
all) must not hand the operator a spec it cannot honour.
"""

from __future__ import annotations

from typing import Any, cast

from tornado_operator.autoscaling.algorithm import (
    DEFAULT_SCALE_DOWN_STABILIZATION_SECONDS,
    DEFAULT_SCALE_UP_STABILIZATION_SECONDS,
    Params,
    PolicyType,
    ScalingPolicy,
    ScalingRules,
    SelectPolicy,
)

JSONDict = dict[str, Any]

CPU = "cpu"
CONCURRENCY = "concurrency"
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


def spec_problems(spec: JSONDict) -> list[tuple[str, str]]:
    """(field, message) for every spec.autoscaling CEL rule the spec breaks, in CRD order."""
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
    return found


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


def params_from_spec(spec: JSONDict) -> Params:
    """The decider's parameters. Raises ValueError when the spec does not use concurrency
    autoscaling or breaks one of the rules above."""
    if not uses_concurrency(spec):
        raise ValueError("spec.autoscaling does not enable metric concurrency")
    problems = spec_problems(spec)
    if problems:
        raise ValueError("; ".join(message for _, message in problems))
    auto = spec["autoscaling"]
    behavior = auto.get("behavior") or {}
    return Params(
        target=float(auto["targetConcurrency"]),
        min_replicas=int(auto["minReplicas"]),
        max_replicas=int(auto["maxReplicas"]),
        scale_up=_rules(behavior.get("scaleUp"), DEFAULT_SCALE_UP_STABILIZATION_SECONDS),
        scale_down=_rules(behavior.get("scaleDown"), DEFAULT_SCALE_DOWN_STABILIZATION_SECONDS),
    )
