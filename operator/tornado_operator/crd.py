"""The TornadoService CRD as shipped by the chart, and its schema as JSON Schema.

The CRD file is packaged next to this module (crd.yaml, a link to the chart's copy in the source
tree, a real file in the wheel), so the operator validates against exactly what the cluster got.
"""

from __future__ import annotations

import copy
import functools
from importlib import resources
from typing import Any

import yaml

from tornado_operator import GROUP, KIND, PLURAL, VERSION

JSONDict = dict[str, Any]


_ANNOTATION_KEYS = frozenset({"default", "description", "format", "nullable"})


@functools.cache
def crd_text() -> str:
    return resources.files("tornado_operator").joinpath("crd.yaml").read_text(encoding="utf-8")


@functools.cache
def _crd() -> JSONDict:
    doc = yaml.safe_load(crd_text())
    if not isinstance(doc, dict) or doc.get("kind") != "CustomResourceDefinition":
        raise RuntimeError("tornado_operator/crd.yaml is not a CustomResourceDefinition")
    spec = doc["spec"]
    if spec["group"] != GROUP or spec["names"]["kind"] != KIND or spec["names"]["plural"] != PLURAL:
        raise RuntimeError("tornado_operator/crd.yaml does not define the TornadoService API")
    return dict(doc)


def crd() -> JSONDict:
    """A fresh copy of the CRD document (callers may mutate it)."""
    return copy.deepcopy(_crd())


def _version() -> JSONDict:
    for version in _crd()["spec"]["versions"]:
        if version["name"] == VERSION:
            return version  # type: ignore[no-any-return]
    raise RuntimeError(f"tornado_operator/crd.yaml has no version {VERSION}")


def openapi_schema() -> JSONDict:
    """The openAPIV3Schema of the served version (a fresh copy)."""
    return copy.deepcopy(_version()["schema"]["openAPIV3Schema"])


def spec_schema() -> JSONDict:
    """The schema of `.spec` (a fresh copy)."""
    return openapi_schema()["properties"]["spec"]  # type: ignore[no-any-return]


def to_json_schema(schema: JSONDict) -> JSONDict:
    """Translate a Kubernetes structural schema into plain JSON Schema (draft 2020-12).

    The API server prunes unknown fields; jsonschema would silently accept them, so objects
    with declared properties get `additionalProperties: false` unless they preserve unknown
    fields. CEL rules are not translated: only the API server evaluates them.
    """
    out: JSONDict = {}
    for key, value in schema.items():
        if key == "properties":
            out[key] = {name: to_json_schema(sub) for name, sub in value.items()}
        elif key == "items" or (key == "additionalProperties" and isinstance(value, dict)):
            out[key] = to_json_schema(value)
        elif key in ("anyOf", "allOf", "oneOf"):
            out[key] = [to_json_schema(sub) for sub in value]
        elif key == "not":
            out[key] = to_json_schema(value)
        elif key.startswith("x-kubernetes-") or key in _ANNOTATION_KEYS:
            continue
        else:
            out[key] = copy.deepcopy(value)
    if schema.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    preserve = schema.get("x-kubernetes-preserve-unknown-fields") is True
    if out.get("type") == "object" and "properties" in out and not preserve:
        out.setdefault("additionalProperties", False)
    return out


@functools.cache
def _spec_json_schema() -> JSONDict:
    return to_json_schema(spec_schema())


def spec_json_schema() -> JSONDict:
    return copy.deepcopy(_spec_json_schema())
