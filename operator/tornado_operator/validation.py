"""Spec validation and defaulting against the CRD's own openAPIV3Schema.

The API server already validates and defaults what it stores, but only with the CRD it has:
a cluster running an older CRD lets through specs this operator cannot honour, and lacks newer
defaults. Checking again here, with the schema this operator was built with, turns that into a
clear InvalidSpec condition instead of a half-applied Deployment. jsonschema does not evaluate
the CRD's CEL rules (x-kubernetes-validations); those on spec.autoscaling, which the autoscaler
depends on, have their own copy in autoscaling.config, those on consumers in consumer, and those
on spec.upstreams and spec.ingress (which UPSTREAMS and the NetworkPolicy depend on) in
composition.spec; all are checked here too.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import re
from collections.abc import Iterable, Sequence
from typing import Any, cast

import jsonschema

from tornado_operator import consumer, crd
from tornado_operator.autoscaling import config as autoscaling_config
from tornado_operator.composition import spec as composition

JSONDict = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Problem:
    """One reason a spec is invalid: where (a field path like spec.env[0].name) and what."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class InvalidSpecError(ValueError):
    """The spec does not match the CRD schema; `problems` names every offending field."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(str(p) for p in self.problems))


def field_path(parts: Iterable[str | int], root: str = "spec") -> str:
    out = root
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


_UNEXPECTED = re.compile(r"'([^']+)' (?:was|were) unexpected")


def _problems_for(error: jsonschema.ValidationError) -> list[Problem]:
    where = list(error.absolute_path)
    if error.validator == "additionalProperties":
        names = re.findall(r"'([^']+)'", error.message.split("(", 1)[-1])
        return [Problem(field_path([*where, n]), "unknown field") for n in names] or [
            Problem(field_path(where), error.message)
        ]
    if error.validator == "required":
        missing = re.match(r"'([^']+)'", error.message)
        name = missing.group(1) if missing else "?"
        return [Problem(field_path([*where, name]), "required field is missing")]
    if error.validator == "anyOf":
        return [Problem(field_path(where), "must be an integer or a string")]
    if error.validator == "type":
        return [Problem(field_path(where), f"must be of type {error.validator_value}")]
    if error.validator == "enum":
        allowed = ", ".join(str(v) for v in cast(list[Any], error.validator_value))
        return [Problem(field_path(where), f"{error.instance!r} is not one of: {allowed}")]
    return [Problem(field_path(where), error.message)]


@functools.cache
def _validator() -> jsonschema.protocols.Validator:
    schema = crd.spec_json_schema()
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    cls.check_schema(schema)
    return cls(schema)


def problems(spec: Any) -> list[Problem]:
    """Every schema violation in `spec`, ordered by field path."""
    found: list[Problem] = []
    for error in _validator().iter_errors(spec):
        found.extend(_problems_for(error))
    return sorted(set(found), key=lambda p: (p.field, p.message))


def apply_defaults(value: Any, schema: JSONDict) -> Any:
    """Fill in schema defaults the way the API server does (structural defaulting).

    Missing properties with a default get a copy of it, and defaulting continues inside the
    defaulted value, so `probes: default {}` picks up each probe's own defaults.
    """
    if isinstance(value, dict):
        result = dict(value)
        props: JSONDict = schema.get("properties", {})
        for name, sub in props.items():
            if name not in result and "default" in sub:
                result[name] = copy.deepcopy(sub["default"])
            if name in result:
                result[name] = apply_defaults(result[name], sub)
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for name in result:
                if name not in props:
                    result[name] = apply_defaults(result[name], extra)
        return result
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [apply_defaults(item, schema["items"]) for item in value]
    return value


def validated_spec(spec: Any) -> JSONDict:
    """The spec with defaults applied, or InvalidSpecError naming every bad field."""
    if spec is None:
        spec = {}
    if not isinstance(spec, dict):
        raise InvalidSpecError([Problem("spec", "must be an object")])
    defaulted = apply_defaults(spec, crd.spec_schema())
    found = problems(defaulted)
    if not found:
        # The CEL rules assume a spec of the right shape: only once the schema holds.
        found = [
            Problem(field, message.removeprefix(f"{field} "))
            for field, message in (
                *autoscaling_config.spec_problems(defaulted),
                *consumer.spec_problems(defaulted),
                *composition.spec_problems(defaulted),
            )
        ]
    if found:
        raise InvalidSpecError(found)
    return defaulted  # type: ignore[no-any-return]
