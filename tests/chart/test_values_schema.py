"""values.schema.json descriptions are the values.yaml comments, and the two files have one shape.

Offline and fast: no helm, no cluster. The generator is hack/chart_schema.py; regenerate with
`python hack/chart_schema.py`.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
GENERATOR = REPO / "hack" / "chart_schema.py"
VALUES = REPO / "charts" / "tornado-operator" / "values.yaml"
SCHEMA = REPO / "charts" / "tornado-operator" / "values.schema.json"


def _load_generator() -> ModuleType:
    # By path: hack/ holds standalone scripts, not necessarily a package.
    spec = importlib.util.spec_from_file_location("_hack_chart_schema", GENERATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


gen = _load_generator()


def _schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(SCHEMA.read_text())
    return schema


def _first_difference(values_text: str, schema_text: str) -> str | None:
    """What differs first between a committed schema and the generator's output; None if nothing."""
    committed = json.loads(schema_text)
    problems = gen.problems(gen.read_values(values_text), committed)
    if problems:  # regenerating would not help: the generator refuses these
        return "values.yaml and values.schema.json disagree in shape:\n" + "\n".join(problems)
    differing = gen.description_differences(values_text, committed)
    if differing:
        key, have, want = differing[0]
        return (
            f"values.schema.json description of {key} differs from its values.yaml comment "
            f"({len(differing)} key(s) differ):\n  schema:      {have!r}\n  values.yaml: {want!r}"
        )
    if gen.render(gen.generate(values_text, committed)) != schema_text:
        return "values.schema.json differs from the generator's output in formatting or order"
    return None


def test_every_values_key_has_a_comment_and_a_schema_property_and_back() -> None:
    problems = gen.problems(gen.read_values(VALUES.read_text()), _schema())
    assert not problems, "values.yaml and values.schema.json disagree:\n" + "\n".join(problems)


def test_schema_descriptions_are_the_values_comments() -> None:
    difference = _first_difference(VALUES.read_text(), SCHEMA.read_text())
    assert difference is None, f"{difference}\nthen regenerate the schema: {gen.COMMAND}"


def test_values_file_is_valid_against_its_schema() -> None:
    # Covers the passthrough objects' fields too (Kubernetes', checked through the definitions).
    schema = _schema()
    jsonschema.Draft7Validator.check_schema(schema)
    jsonschema.validate(yaml.safe_load(VALUES.read_text()), schema)


def test_comment_block_convention() -> None:
    text = (
        "# File header, not a description.\n"
        "\n"
        "# -- First line\n"
        "#    continued.\n"
        "a: 1\n"
        "# A note above the marker is not part of it.\n"
        "# -- Section.\n"
        "s:\n"
        "  # -- Inner.\n"
        "  x: {}\n"
        "  # not a description\n"
        "  y: 2\n"
        "# --\n"
        "empty: 0\n"
    )
    got = {v.name: v.description for v in gen.read_values(text)}
    assert got == {
        "a": "First line continued.",
        "s": "Section.",
        "s.x": "Inner.",
        "s.y": None,
        "empty": "",
    }


# The checks must be able to fail: each edit below breaks the committed pair in one way.
def _replace_once(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, old
    return text.replace(old, new)


def test_a_changed_comment_is_reported_naming_the_key() -> None:
    values = _replace_once(
        VALUES.read_text(),
        "# -- Seconds before one readiness check times out.",
        "# -- Seconds before a readiness check gives up.",
    )
    difference = _first_difference(values, SCHEMA.read_text())
    assert difference is not None
    assert "probes.readiness.timeoutSeconds" in difference
    assert "Seconds before a readiness check gives up." in difference


def test_shape_drift_is_reported_both_ways() -> None:
    values = _replace_once(
        VALUES.read_text(), "  keep: true\n", "  keep: true\n  # -- New.\n  x: 1\n"
    )
    values = _replace_once(values, "    # -- Tag of the default service image.\n", "")
    schema = _schema()
    del schema["properties"]["rbac"]["properties"]["create"]
    schema["properties"]["probes"]["properties"]["startup"] = {"$ref": "#/definitions/probe"}
    problems = "\n".join(gen.problems(gen.read_values(values), schema))
    assert "no property for values.yaml key crds.x" in problems
    assert "no property for values.yaml key rbac.create" in problems
    assert "operator.defaultServiceImage.tag has no comment" in problems
    assert "probes.startup has keys documented one by one" in problems
    schema = _schema()
    schema["properties"]["tests"]["properties"]["extra"] = {"type": "string"}
    problems = "\n".join(gen.problems(gen.read_values(VALUES.read_text()), schema))
    assert "no key for values.schema.json property tests.extra" in problems


def test_check_command(tmp_path: Path) -> None:
    # Against a schema generated here, so that only the test_schema_descriptions_... test fails
    # when the committed pair is out of date.
    values, schema = tmp_path / "values.yaml", tmp_path / "values.schema.json"
    values.write_text(VALUES.read_text())
    schema.write_text(gen.render(gen.generate(values.read_text(), _schema())))

    def check() -> subprocess.CompletedProcess[str]:
        args = ["--check", "--values", str(values), "--schema", str(schema)]
        return subprocess.run(
            [sys.executable, str(GENERATOR), *args], capture_output=True, text=True, check=False
        )

    assert check().returncode == 0
    values.write_text(
        _replace_once(values.read_text(), "# -- Service port.", "# -- The Service's port.")
    )
    proc = check()
    assert proc.returncode == 1, proc
    assert "metrics.service.port" in proc.stderr
    assert f"run: {gen.COMMAND}" in proc.stderr


@pytest.mark.parametrize("key", sorted(gen.PASSTHROUGH))
def test_passthrough_keys_exist(key: str) -> None:
    # A stale PASSTHROUGH entry would exempt from the checks whatever later takes its name.
    node: Any = yaml.safe_load(VALUES.read_text())
    for part in key.split("."):
        node = node[part]
    assert isinstance(node, dict) and node, key
