"""Admission: the CRD's schema and CEL rules reject bad TornadoServices with the field named."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.operator_support import (
    EXAMPLES,
    kubectl,
)
from tests.invalid_corpus import CORPUS, HELLO, merged

pytest_plugins = ["tests.e2e.operator_fixtures"]


def dry_run(manifest: dict[str, Any], namespace: str) -> Any:
    return kubectl(
        "apply",
        "--dry-run=server",
        "-n",
        namespace,
        "-f",
        "-",
        input=yaml.safe_dump(manifest),
        check=False,
    )


def test_corpus_size() -> None:
    assert len(CORPUS) >= 30


@pytest.mark.parametrize("case", CORPUS, ids=lambda c: str(c["id"]))
def test_invalid_manifest_rejected_naming_the_field(
    case: dict[str, Any], module_namespace: str
) -> None:
    manifest = copy.deepcopy(HELLO)
    manifest["spec"] = merged(HELLO["spec"], case["spec"])
    if "name" in case:
        manifest["metadata"]["name"] = case["name"]
    proc = dry_run(manifest, module_namespace)
    assert proc.returncode != 0, f"{case['id']} was accepted: {proc.stdout}"
    assert case["field"] in proc.stderr, f"{case['id']}: {proc.stderr}"


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_examples_pass_admission(path: Path, module_namespace: str) -> None:
    for doc in yaml.safe_load_all(path.read_text()):
        proc = dry_run(doc, module_namespace)
        assert proc.returncode == 0, proc.stderr


def test_server_applies_schema_defaults(module_namespace: str) -> None:
    proc = kubectl(
        "apply",
        "--dry-run=server",
        "-n",
        module_namespace,
        "-o",
        "yaml",
        "-f",
        "-",
        input=yaml.safe_dump(
            {
                "apiVersion": "tornado-operator.dev/v1alpha1",
                "kind": "TornadoService",
                "metadata": {"name": "bare"},
            }
        ),
    )
    spec = yaml.safe_load(proc.stdout)["spec"]
    from tornado_operator import validation

    # The API server's defaulting and the operator's agree.
    assert spec == validation.validated_spec({})


def test_short_name_and_category(module_namespace: str) -> None:
    resources = kubectl("api-resources", "--api-group=tornado-operator.dev", "-o", "wide").stdout
    assert "tsvc" in resources and "all" in resources
    kubectl("get", "tsvc", "-n", module_namespace)
    kubectl("get", "all", "-n", module_namespace)
