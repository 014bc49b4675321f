"""Derive the chart's values.schema.json descriptions from the values.yaml comments.

values.yaml is the one place a value is described: the `# --` comment block right above a key
(helm-docs' and cert-manager's convention). This script writes that text, normalized, into the
"description" of the key's property in values.schema.json and leaves everything else in the schema
(types, enums, patterns, additionalProperties, definitions, if/then) as it is.

    python hack/chart_schema.py          # rewrite the descriptions in values.schema.json
    python hack/chart_schema.py --check  # exit 1, naming the keys, when the file is not up to date

Mapping rules:

- A key's description is its comment block: the contiguous `#` lines directly above the key, at the
  key's indentation, starting at the nearest line that begins with `# --`. Each line loses its `#`
  (and the first one its `--`); the lines are joined with single spaces.
- A mapping is a section: each of its keys is a value of its own, with its own comment and its own
  property under the section's inline "properties" (never behind a "$ref", whose definition is
  shared). The keys of values.yaml and the properties of the schema must be the same set.
- Except the PASSTHROUGH mappings: Kubernetes objects handed to the templates as they are. Only the
  key itself is described; its fields are Kubernetes' (checked by the schema, documented upstream).
- `global` belongs to Helm (it hands it to every chart); the schema allows it, values.yaml does not
  set it, and its description is HELM_OWNED's.

Standalone on purpose: PyYAML (a project dependency) parses values.yaml into nodes that carry their
line numbers, and the comment block is read from the lines above each key. Comment-keeping parsers
(ruamel.yaml) attach a comment to whatever token precedes it, often the last leaf of the previous
section, so finding "the comment above this key" there is no simpler.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "charts" / "tornado-operator"
VALUES = CHART / "values.yaml"
SCHEMA = CHART / "values.schema.json"
COMMAND = "python hack/chart_schema.py"

# Kubernetes objects passed through as-is; their fields are Kubernetes', documented there.
PASSTHROUGH = frozenset(
    {
        "updateStrategy",
        "podSecurityContext",
        "securityContext",
        "resources",
        "tests.resources",
    }
)
# Top-level properties Helm itself provides: not in values.yaml, described here.
HELM_OWNED = {"global": "Helm's global values (passed down to subcharts; unused here)."}

MARKER = "--"


class ChartSchemaError(Exception):
    """values.yaml and values.schema.json disagree in shape, or a key has no usable comment."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Value:
    """One documented key of values.yaml."""

    path: tuple[str, ...]
    line: int  # 1-based, for messages
    description: str | None  # None: no `# --` comment block above the key
    children: tuple[str, ...] | None  # the keys of a section; None for a leaf or a passthrough

    @property
    def name(self) -> str:
        return ".".join(self.path)


def normalize(text: str) -> str:
    """Whitespace-insensitive form of a description: single spaces, no padding."""
    return " ".join(text.split())


def comment_above(lines: list[str], line: int, column: int) -> str | None:
    """The `# --` comment block directly above lines[line] at `column`, normalized; None if none."""
    block: list[str] = []
    i = line - 1
    while i >= 0:
        raw = lines[i]
        stripped = raw.lstrip(" ")
        if not stripped.startswith("#") or len(raw) - len(stripped) != column:
            return None  # a blank line, a value, or a comment at another level ends the block
        text = stripped[1:].strip()
        if text == MARKER or text.startswith(MARKER + " "):
            block.insert(0, text[len(MARKER) :])
            return normalize(" ".join(block))
        block.insert(0, text)
        i -= 1
    return None


def read_values(text: str) -> list[Value]:
    """Every documented key of a values.yaml text, in file order (a section before its keys)."""
    root = yaml.compose(text)
    if not isinstance(root, yaml.MappingNode):
        raise ChartSchemaError(["values.yaml: the document is not a mapping"])
    lines = text.splitlines()
    found: list[Value] = []

    def walk(node: yaml.MappingNode, parent: tuple[str, ...]) -> None:
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise ChartSchemaError([f"values.yaml:{key_node.start_mark.line + 1}: complex key"])
            path = (*parent, str(key_node.value))
            mark = key_node.start_mark
            section = (
                value_node
                if isinstance(value_node, yaml.MappingNode)
                and value_node.value
                and ".".join(path) not in PASSTHROUGH
                else None
            )
            children = tuple(str(k.value) for k, _ in section.value) if section else None
            description = comment_above(lines, mark.line, mark.column)
            found.append(Value(path, mark.line + 1, description, children))
            if section:
                walk(section, path)

    walk(root, ())
    return found


def properties_of(schema: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any] | None:
    """The inline "properties" of the schema node for `path` (() is the root), or None."""
    node: Any = schema
    for key in path:
        props = node.get("properties") if isinstance(node, dict) else None
        if not isinstance(props, dict) or key not in props:
            return None
        node = props[key]
    props = node.get("properties") if isinstance(node, dict) else None
    return props if isinstance(props, dict) else None


def problems(values: list[Value], schema: dict[str, Any]) -> list[str]:
    """Why descriptions cannot be derived: missing comments, or keys and properties that differ."""
    found: list[str] = []
    sections: list[tuple[tuple[str, ...], tuple[str, ...]]] = [
        ((), tuple(v.path[0] for v in values if len(v.path) == 1))
    ]
    sections += [(v.path, v.children) for v in values if v.children is not None]
    for v in values:
        if not v.description:
            found.append(
                f"values.yaml:{v.line}: {v.name} has no comment: "
                "put a '# -- ...' line right above it"
            )
    for path, keys in sections:
        where = ".".join(path) or "the top level"
        if path and path[-1] not in (properties_of(schema, path[:-1]) or {}):
            continue  # reported with its parent section
        props = properties_of(schema, path)
        if props is None:
            found.append(
                f"values.schema.json: {where} has keys documented one by one in values.yaml, "
                "so its schema needs inline 'properties' (not a $ref to a shared definition)"
            )
            continue
        allowed = set(keys) | (set(HELM_OWNED) if not path else set())
        for key in keys:
            if key not in props:
                name = ".".join((*path, key))
                found.append(f"values.schema.json: no property for values.yaml key {name}")
        for key in props:
            if key not in allowed:
                name = ".".join((*path, key))
                found.append(f"values.yaml: no key for values.schema.json property {name}")
    return found


def with_description(node: dict[str, Any], description: str) -> dict[str, Any]:
    """`node` with its description set: right after "type" (else "$ref"), else first."""
    rest = {k: v for k, v in node.items() if k != "description"}
    anchor = next((k for k in ("type", "$ref") if k in rest), None)
    out: dict[str, Any] = {} if anchor else {"description": description}
    for k, v in rest.items():
        out[k] = v
        if k == anchor:
            out["description"] = description
    return out


def expected_descriptions(values: list[Value]) -> dict[tuple[str, ...], str]:
    """Property path -> description, in values.yaml order (Helm's own keys last)."""
    wanted = {v.path: v.description or "" for v in values}
    wanted.update({(key,): text for key, text in HELM_OWNED.items()})
    return wanted


def generate(values_text: str, schema: dict[str, Any]) -> dict[str, Any]:
    """A copy of `schema` whose value descriptions are the values.yaml comments."""
    values = read_values(values_text)
    found = problems(values, schema)
    if found:
        raise ChartSchemaError(found)
    out: dict[str, Any] = json.loads(json.dumps(schema))
    for path, text in expected_descriptions(values).items():
        props = properties_of(out, path[:-1])
        assert props is not None  # problems() checked every section
        props[path[-1]] = with_description(props[path[-1]], text)
    return out


def render(schema: dict[str, Any]) -> str:
    """The file text of a schema, formatted as committed."""
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def description_differences(
    values_text: str, committed: dict[str, Any]
) -> list[tuple[str, str | None, str]]:
    """(key, committed description, values.yaml comment) for each key whose texts differ."""
    found: list[tuple[str, str | None, str]] = []
    for path, text in expected_descriptions(read_values(values_text)).items():
        props = properties_of(committed, path[:-1]) or {}
        node = props.get(path[-1])
        have = node.get("description") if isinstance(node, dict) else None
        if have is None or normalize(str(have)) != text:
            found.append((".".join(path), have, text))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Derive values.schema.json descriptions from the values.yaml comments."
    )
    parser.add_argument(
        "--check", action="store_true", help="only report whether the file is up to date"
    )
    parser.add_argument("--values", type=Path, default=VALUES, help=argparse.SUPPRESS)
    parser.add_argument("--schema", type=Path, default=SCHEMA, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    values_text = args.values.read_text()
    schema_text = args.schema.read_text()
    committed = json.loads(schema_text)
    try:
        wanted = render(generate(values_text, committed))
    except ChartSchemaError as e:
        for p in e.problems:
            print(p, file=sys.stderr)
        return 2
    if wanted == schema_text:
        return 0
    if not args.check:
        args.schema.write_text(wanted)
        print(f"wrote {args.schema}")
        return 0
    differing = description_differences(values_text, committed)
    for key, have, want in differing:
        print(f"{key}: schema says {have!r}, values.yaml says {want!r}", file=sys.stderr)
    if not differing:
        print(f"{args.schema}: formatting or description placement differs", file=sys.stderr)
    print(f"values.schema.json is out of date; run: {COMMAND}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
