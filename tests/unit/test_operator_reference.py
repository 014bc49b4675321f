"""docs/tornadoservice-reference.md is generated from the CRD; fail when it drifts."""

from __future__ import annotations

from pathlib import Path

from tornado_operator import crd, reference

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs/tornadoservice-reference.md"


def test_reference_is_current() -> None:
    assert DOC.read_text(encoding="utf-8") == reference.render(), (
        "docs/tornadoservice-reference.md is stale: run "
        "`.venv/bin/python -m tornado_operator.reference > docs/tornadoservice-reference.md`"
    )


def test_reference_lists_every_spec_field() -> None:
    text = reference.render()

    def walk(schema: dict, path: str) -> list[str]:  # type: ignore[type-arg]
        out = []
        for name, sub in schema.get("properties", {}).items():
            out.append(f"{path}.{name}")
            out += walk(sub, f"{path}.{name}")
            if "properties" in sub.get("items", {}):
                out += walk(sub["items"], f"{path}.{name}[]")
        return out

    fields = walk(crd.spec_schema(), "spec")
    assert len(fields) > 60
    for field in fields:
        assert f"| `{field}` |" in text, field
