"""Invalid TornadoService specs, shared by the unit (jsonschema) and e2e (admission) tests."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
CORPUS: list[dict[str, Any]] = yaml.safe_load(
    (ROOT / "tests/e2e/operator_data/invalid_tornadoservices.yaml").read_text()
)
HELLO: dict[str, Any] = yaml.safe_load((ROOT / "examples/hello.yaml").read_text())


def merged(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """`patch` laid over `base` recursively, neither modified."""
    out = copy.deepcopy(base)
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out
