"""From the TornadoService spec to the autoscaler's parameters, and the operator's copy of the
CRD's CEL rules on spec.autoscaling (checked against the shared invalid-spec corpus)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from tornado_operator import crd, validation
from tornado_operator.autoscaling import config
from tornado_operator.autoscaling.algorithm import Params, ScalingPolicy, ScalingRules

from tests.invalid_corpus import CORPUS, HELLO, ROOT, merged

CONCURRENCY = {"enabled": True, "metric": "concurrency", "targetConcurrency": 8}


def spec(**autoscaling: Any) -> dict[str, Any]:
    return validation.validated_spec({"autoscaling": autoscaling})


def test_default_metric_is_cpu_and_nothing_changes_for_existing_specs() -> None:
    assert validation.validated_spec({})["autoscaling"] == {
        "enabled": False,
        "metric": "cpu",
        "minReplicas": 2,
        "maxReplicas": 5,
        "targetCPUUtilizationPercentage": 80,
    }
    assert not config.uses_concurrency(spec(enabled=True))
    assert config.metric(spec(enabled=True)) == "cpu"


@pytest.mark.parametrize("path", sorted((ROOT / "examples").glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_but_two_still_means_cpu(path: Path) -> None:
    # examples/concurrency.yaml is the one written for metric concurrency, consumer.yaml for lag.
    own = {"concurrency.yaml": "concurrency", "consumer.yaml": "lag"}
    for doc in yaml.safe_load_all(path.read_text()):
        defaulted = validation.validated_spec(doc.get("spec"))
        assert config.spec_problems(defaulted) == []
        assert config.uses_concurrency(defaulted) is (path.name == "concurrency.yaml")
        assert config.uses_lag(defaulted) is (path.name == "consumer.yaml")
        assert defaulted["autoscaling"]["metric"] == own.get(path.name, "cpu")


def test_params_from_a_concurrency_spec() -> None:
    defaulted = spec(**CONCURRENCY, minReplicas=1, maxReplicas=30)
    assert config.uses_concurrency(defaulted)
    assert config.spec_problems(defaulted) == []
    assert config.params_from_spec(defaulted) == Params(
        target=8.0,
        min_replicas=1,
        max_replicas=30,
        scale_up=ScalingRules(0),
        scale_down=ScalingRules(300),
    )


def test_params_take_the_hpa_behavior() -> None:
    behavior = {
        "scaleUp": {
            "selectPolicy": "Min",
            "policies": [{"type": "Percent", "value": 50, "periodSeconds": 20}],
        },
        "scaleDown": {
            "stabilizationWindowSeconds": 120,
            "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}],
        },
    }
    params = config.params_from_spec(spec(**CONCURRENCY, behavior=behavior))
    assert params.scale_up == ScalingRules(0, "Min", (ScalingPolicy("Percent", 50, 20),))
    assert params.scale_down == ScalingRules(120, "Max", (ScalingPolicy("Pods", 1, 60),))
    assert params.target == 8.0 and (params.min_replicas, params.max_replicas) == (2, 5)


def test_fractional_target() -> None:
    assert config.params_from_spec(spec(**{**CONCURRENCY, "targetConcurrency": 0.5})).target == 0.5


def test_params_refuse_specs_without_concurrency() -> None:
    with pytest.raises(ValueError, match="does not enable metric concurrency"):
        config.params_from_spec(spec(enabled=True))
    with pytest.raises(ValueError, match="does not enable metric concurrency"):
        config.params_from_spec(spec(metric="concurrency", targetConcurrency=3))


AUTOSCALING_CEL_CASES = [
    c for c in CORPUS if c["layer"] == "cel" and c["field"].startswith("spec.autoscaling.")
]


def test_corpus_has_the_concurrency_rules() -> None:
    ids = {c["id"] for c in CORPUS}
    assert {
        "autoscaling-target-concurrency-with-cpu",
        "autoscaling-concurrency-without-target",
        "autoscaling-target-concurrency-zero",
        "autoscaling-target-concurrency-negative",
        "autoscaling-metric-unknown",
        "autoscaling-concurrency-with-memory-target",
        "autoscaling-concurrency-with-cpu-target",
    } <= ids
    assert len(AUTOSCALING_CEL_CASES) >= 4


@pytest.mark.parametrize("case", AUTOSCALING_CEL_CASES, ids=lambda c: str(c["id"]))
def test_operator_applies_the_cel_rules_the_api_server_applies(case: dict[str, Any]) -> None:
    given = merged(HELLO["spec"], case["spec"])
    defaulted = validation.apply_defaults(given, crd.spec_schema())
    assert validation.problems(defaulted) == []  # the schema alone lets it through
    found = config.spec_problems(defaulted)
    assert found, case["id"]
    assert any(field == case["field"] and case["field"] in message for field, message in found)
    # The operator's messages are the CRD's, word for word.
    crd_messages = {
        rule["message"]
        for node in (
            crd.spec_schema(),  # the spec-level rules tying the metric to spec.consumer
            crd.spec_schema()["properties"]["autoscaling"],
            crd.spec_schema()["properties"]["autoscaling"]["properties"]["targetConcurrency"],
        )
        for rule in node.get("x-kubernetes-validations", [])
    }
    assert {message for _, message in found} <= crd_messages


def test_explicit_default_cpu_target_is_harmless_with_concurrency() -> None:
    # Indistinguishable from the schema default, so it must be accepted.
    assert config.spec_problems(spec(**CONCURRENCY, targetCPUUtilizationPercentage=80)) == []


@pytest.mark.parametrize("case", AUTOSCALING_CEL_CASES, ids=lambda c: str(c["id"]))
def test_validation_refuses_what_the_cel_rules_refuse(case: dict[str, Any]) -> None:
    # A cluster with an older CRD (no CEL rules) hands such a spec over: InvalidSpec, not a
    # half-honoured autoscaler.
    with pytest.raises(validation.InvalidSpecError) as info:
        validation.validated_spec(merged(HELLO["spec"], case["spec"]))
    assert [p.field for p in info.value.problems] == [case["field"]]
    text = str(info.value)
    assert text.startswith(f"{case['field']}: ") and text.count(case["field"]) == 1, text
