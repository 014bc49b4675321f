"""The operator's own jsonschema check against the CRD schema, and defaulting."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from tornado_operator import validation

from tests.invalid_corpus import CORPUS, HELLO, ROOT, merged


def test_corpus_is_large_and_unique() -> None:
    assert len(CORPUS) >= 30
    assert len({case["id"] for case in CORPUS}) == len(CORPUS)


@pytest.mark.parametrize(
    "case", [c for c in CORPUS if c["layer"] == "schema"], ids=lambda c: str(c["id"])
)
def test_invalid_spec_rejected_naming_the_field(case: dict[str, Any]) -> None:
    spec = merged(HELLO["spec"], case["spec"])
    with pytest.raises(validation.InvalidSpecError) as info:
        validation.validated_spec(spec)
    fields = [p.field for p in info.value.problems]
    assert any(f.startswith(case["field"]) for f in fields), (case["field"], fields)
    assert case["field"] in str(info.value)


def test_messages_are_specific() -> None:
    problems = validation.problems(
        validation.apply_defaults(
            {"replicas": -1, "colour": "red", "env": [{}]}, validation.crd.spec_schema()
        )
    )
    text = [str(p) for p in problems]
    assert "spec.colour: unknown field" in text
    assert "spec.env[0].name: required field is missing" in text
    assert "spec.replicas: -1 is less than the minimum of 0" in text


def test_non_object_spec() -> None:
    with pytest.raises(validation.InvalidSpecError, match="spec: must be an object"):
        validation.validated_spec(["not", "an", "object"])


def test_missing_spec_gets_every_default() -> None:
    assert validation.validated_spec(None) == validation.validated_spec({})


def test_defaults_fill_nested_objects_without_overwriting() -> None:
    spec = validation.validated_spec({"probes": {"readiness": {"periodSeconds": 7}}})
    assert spec["probes"]["readiness"] == {
        "enabled": True,
        "path": "/readyz",
        "initialDelaySeconds": 0,
        "periodSeconds": 7,
        "timeoutSeconds": 2,
        "successThreshold": 1,
        "failureThreshold": 2,
    }
    assert spec["probes"]["liveness"]["path"] == "/livez"


def test_defaults_do_not_touch_given_values_or_the_input() -> None:
    given = {"resources": {"requests": {"cpu": "1"}}, "autoscaling": {"enabled": True}}
    before = copy.deepcopy(given)
    spec = validation.validated_spec(given)
    assert given == before
    assert spec["resources"] == {"requests": {"cpu": "1"}}  # no default merged into given maps
    assert spec["autoscaling"]["minReplicas"] == 2


def test_preserved_fields_accept_anything() -> None:
    affinity = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"x": 1}}}
    assert validation.validated_spec({"affinity": affinity})["affinity"] == affinity


def test_int_or_string() -> None:
    assert validation.validated_spec({"rollout": {"maxSurge": 1}})["rollout"]["maxSurge"] == 1
    assert (
        validation.validated_spec({"rollout": {"maxSurge": "50%"}})["rollout"]["maxSurge"] == "50%"
    )
    with pytest.raises(validation.InvalidSpecError, match=r"spec\.rollout\.maxSurge"):
        validation.validated_spec({"rollout": {"maxSurge": [1]}})


@pytest.mark.parametrize("path", sorted((ROOT / "examples").glob("*.yaml")), ids=lambda p: p.name)
def test_examples_are_valid(path: Path) -> None:
    for doc in yaml.safe_load_all(path.read_text()):
        assert (
            doc["apiVersion"] == "tornado-operator.dev/v1alpha1" and doc["kind"] == "TornadoService"
        )
        validation.validated_spec(doc.get("spec"))
