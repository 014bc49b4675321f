"""The TornadoService field reference, generated from the CRD schema.

`python -m tornado_operator.reference > docs/tornadoservice-reference.md` writes it; a unit test
fails when the committed file differs from what the CRD says.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import Any

from tornado_operator import API_VERSION, KIND, crd

JSONDict = dict[str, Any]


def _type(schema: JSONDict) -> str:
    if schema.get("x-kubernetes-int-or-string"):
        return "integer or string"
    kind = str(schema.get("type", "any"))
    if kind == "array":
        return f"array of {_type(schema.get('items', {}))}"
    if (
        kind == "object"
        and "properties" not in schema
        and isinstance(schema.get("additionalProperties"), dict)
    ):
        return f"map of {_type(schema['additionalProperties'])}"
    return kind


def _constraints(schema: JSONDict) -> str:
    parts: list[str] = []
    for key, label in (
        ("minimum", "min"),
        ("maximum", "max"),
        ("minLength", "min length"),
        ("maxLength", "max length"),
        ("maxItems", "max items"),
        ("maxProperties", "max entries"),
    ):
        if key in schema:
            parts.append(f"{label} {schema[key]}")
    if "enum" in schema:
        parts.append("one of " + ", ".join(f"`{v}`" for v in schema["enum"]))
    if "pattern" in schema:
        parts.append(f"pattern `{schema['pattern']}`")
    for rule in schema.get("x-kubernetes-validations", []):
        parts.append(f"rule: {rule['message']}")
    return "; ".join(parts)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _rows(schema: JSONDict, path: str) -> Iterator[tuple[str, JSONDict]]:
    for name, sub in schema.get("properties", {}).items():
        here = f"{path}.{name}"
        yield here, sub
        if "properties" in sub:
            yield from _rows(sub, here)
        items = sub.get("items", {})
        if "properties" in items:
            yield from _rows(items, here + "[]")


def render() -> str:
    schema = crd.openapi_schema()
    lines = [
        f"# {KIND} reference ({API_VERSION})",
        "",
        "<!-- Generated from charts/tornado-operator/files/crds/"
        "tornadoservices.tornado-operator.dev.yaml by "
        "`python -m tornado_operator.reference`. Do not edit by hand. -->",
        "",
        "Short name `tsvc`, category `all`. Subresources: `status`, and `scale` "
        "(`kubectl scale tsvc/NAME --replicas=N`; the autoscaler uses it too).",
        "",
        "Rules on the whole object: "
        + "; ".join(r["message"] for r in schema.get("x-kubernetes-validations", [])),
        "",
    ]
    for section in ("spec", "status"):
        lines += [
            f"## {section}",
            "",
            "| Field | Type | Default | Description | Constraints |",
            "|---|---|---|---|---|",
        ]
        for path, sub in _rows(schema["properties"][section], section):
            default = f"`{json.dumps(sub['default'])}`" if "default" in sub else ""
            lines.append(
                f"| `{path}` | {_type(sub)} | {_cell(default)} | "
                f"{_cell(str(sub.get('description', '')))} | {_cell(_constraints(sub))} |"
            )
        lines.append("")
    return "\n".join(lines)


def main() -> int:
    sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
