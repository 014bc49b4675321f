"""The spec fuzzer's generator (tests/fuzz_specs.py): reproducible, valid by the CRD's schema, and
its invalid specs break the field they name."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

from tornado_operator import crd, validation

from tests import fuzz_specs

ROOT = Path(__file__).resolve().parents[2]
COUNT = 40


def test_same_seed_same_specs_in_another_process() -> None:
    here = fuzz_specs.digest(fuzz_specs.valid_specs(fuzz_specs.SEED, 0, COUNT))
    assert here == fuzz_specs.digest(fuzz_specs.valid_specs(fuzz_specs.SEED, 0, COUNT))
    code = f"from tests import fuzz_specs as f; print(f.digest(f.valid_specs(f.SEED, 0, {COUNT})))"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    there = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert there == here
    assert fuzz_specs.digest(fuzz_specs.valid_specs(fuzz_specs.SEED, 1, COUNT)) != here


def test_specs_match_the_crd_schema_and_brokers_are_on_loopback() -> None:
    specs = fuzz_specs.valid_specs(fuzz_specs.SEED, 0, COUNT)
    assert len(specs) == COUNT
    for spec in specs:
        assert validation.problems(spec) == [], spec
        broker = (spec.get("consumer") or {}).get("broker")
        if broker is not None:
            assert urlsplit(broker).hostname in ("127.0.0.1", "localhost", "127.3.2.1"), broker


def test_invalid_specs_break_the_field_they_name() -> None:
    bases = []
    for spec in fuzz_specs.valid_specs(fuzz_specs.SEED, 0, COUNT):
        try:
            validation.validated_spec(spec)
        except validation.InvalidSpecError:
            continue
        bases.append(spec)
    assert len(bases) >= COUNT // 2
    layers = set()
    for i in range(60):
        layer, rule, spec, field = fuzz_specs.invalid_spec(
            fuzz_specs.SEED, i, bases[i % len(bases)]
        )
        assert fuzz_specs.invalid_spec(fuzz_specs.SEED, i, bases[i % len(bases)])[2] == spec
        layers.add(layer)
        if layer == "schema":
            # The operator's own jsonschema check sees it too, at that field.
            found = validation.problems(validation.apply_defaults(spec, crd.spec_schema()))
            assert any(p.field.startswith(field) for p in found), (rule, field, found)
    assert layers == {"schema", "cel"}


def test_named() -> None:
    assert fuzz_specs.named("spec.env[3]: Duplicate value", "spec.env[3]")
    assert fuzz_specs.named(
        "spec.env[].value and spec.env[].valueFrom are", "spec.env[2].valueFrom"
    )
    assert not fuzz_specs.named("spec.env[0].name: Required value", "spec.envFrom[0]")
