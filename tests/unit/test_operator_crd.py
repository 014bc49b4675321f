"""The CRD file: the API shape others build against, and the packaged copy the operator uses."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from tornado_operator import crd

ROOT = Path(__file__).resolve().parents[2]
CHART_CRD = ROOT / "charts/tornado-operator/files/crds/tornadoservices.tornado-operator.dev.yaml"
PEERING_CRDS = ROOT / "charts/tornado-operator/files/crds/kopf-peering.yaml"


def test_packaged_crd_is_the_chart_file() -> None:
    assert crd.crd_text() == CHART_CRD.read_text(encoding="utf-8")


def test_names_scope_and_version() -> None:
    doc = crd.crd()
    spec = doc["spec"]
    assert doc["metadata"]["name"] == "tornadoservices.tornado-operator.dev"
    assert spec["group"] == "tornado-operator.dev"
    assert spec["scope"] == "Namespaced"
    assert spec["names"] == {
        "kind": "TornadoService",
        "listKind": "TornadoServiceList",
        "plural": "tornadoservices",
        "singular": "tornadoservice",
        "shortNames": ["tsvc"],
        "categories": ["all"],
    }
    [version] = spec["versions"]
    assert version["name"] == "v1alpha1" and version["served"] and version["storage"]


def test_status_and_scale_subresources() -> None:
    [version] = crd.crd()["spec"]["versions"]
    assert version["subresources"] == {
        "status": {},
        "scale": {
            "specReplicasPath": ".spec.replicas",
            "statusReplicasPath": ".status.replicas",
            "labelSelectorPath": ".status.selector",
        },
    }
    status = crd.openapi_schema()["properties"]["status"]["properties"]
    assert status["selector"]["type"] == "string"
    assert status["replicas"]["type"] == "integer"


def test_printer_columns() -> None:
    [version] = crd.crd()["spec"]["versions"]
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert list(columns) == [
        "Ready",
        "Replicas",
        "Concurrency",
        "Lag",
        "Pending",
        "Upstreams",
        "Image",
        "URL",
        "Age",
    ]
    assert columns["Ready"] == '.status.conditions[?(@.type=="Ready")].status'
    status = crd.openapi_schema()["properties"]["status"]["properties"]
    for name in ("Replicas", "Image", "URL"):
        field = columns[name].removeprefix(".status.")
        assert field in status, f"printer column {name} points at undeclared {columns[name]}"


def test_concurrency_printer_column_is_wide_only() -> None:
    [version] = crd.crd()["spec"]["versions"]
    [column] = [c for c in version["additionalPrinterColumns"] if c["name"] == "Concurrency"]
    assert column["jsonPath"] == ".status.autoscaling.observedConcurrency"
    assert (column["type"], column["priority"]) == ("number", 1)
    status = crd.openapi_schema()["properties"]["status"]["properties"]
    assert status["autoscaling"]["properties"]["observedConcurrency"]["type"] == "number"
    # Every other column but the consumers' and Upstreams (wide only too) stays in plain
    # `kubectl get`, as before.
    wide = {"Concurrency", "Lag", "Pending", "Upstreams"}
    assert all(
        c.get("priority", 0) == 0
        for c in version["additionalPrinterColumns"]
        if c["name"] not in wide
    )


def test_consumer_printer_columns_are_wide_only() -> None:
    [version] = crd.crd()["spec"]["versions"]
    columns = {c["name"]: c for c in version["additionalPrinterColumns"]}
    status = crd.openapi_schema()["properties"]["status"]["properties"]["consumer"]["properties"]
    for name, field in (("Lag", "lag"), ("Pending", "pending")):
        assert columns[name]["jsonPath"] == f".status.consumer.{field}"
        assert (columns[name]["type"], columns[name]["priority"]) == ("integer", 1)
        assert status[field]["type"] == "integer"


def test_consumer_shape() -> None:
    props = crd.spec_schema()["properties"]
    block = props["consumer"]
    assert block["required"] == ["broker", "stream", "group"]
    assert set(block["properties"]) == {"broker", "stream", "group", "deadLetterStream"}
    assert "default" not in block  # its presence is what makes a consumer
    target = props["autoscaling"]["properties"]["targetLagPerReplica"]
    assert (target["type"], target["minimum"]) == ("integer", 1) and "default" not in target
    status = crd.openapi_schema()["properties"]["status"]["properties"]["consumer"]
    assert {"lag", "pending", "backlog", "consumptionRate", "reason", "message"} <= set(
        status["properties"]
    )


def test_upstreams_printer_column_is_wide_only() -> None:
    [version] = crd.crd()["spec"]["versions"]
    [column] = [c for c in version["additionalPrinterColumns"] if c["name"] == "Upstreams"]
    assert column["jsonPath"] == '.status.conditions[?(@.type=="UpstreamsHealthy")].status'
    assert (column["type"], column["priority"]) == ("string", 1)


def test_autoscaling_metric_and_target_concurrency() -> None:
    auto = crd.spec_schema()["properties"]["autoscaling"]
    metric = auto["properties"]["metric"]
    assert (metric["type"], metric["enum"], metric["default"]) == (
        "string",
        ["cpu", "concurrency", "lag"],
        "cpu",
    )
    target = auto["properties"]["targetConcurrency"]
    assert target["type"] == "number" and "default" not in target
    assert [r["rule"] for r in target["x-kubernetes-validations"]] == ["self > 0.0"]
    messages = [r["message"] for r in auto["x-kubernetes-validations"]]
    assert any("targetConcurrency may only be set with" in m for m in messages)
    assert any("targetConcurrency is required with" in m for m in messages)
    assert any(m.startswith("spec.autoscaling.targetMemoryUtilizationPercentage") for m in messages)
    assert any(m.startswith("spec.autoscaling.targetCPUUtilizationPercentage") for m in messages)
    # The metric contract and the algorithm are documented where the reference renders them.
    assert "http_requests_in_flight" in metric["description"]
    assert (
        "panic" in target["description"] and "stabilizationWindowSeconds" in target["description"]
    )


def test_status_autoscaling_fields() -> None:
    status = crd.openapi_schema()["properties"]["status"]["properties"]["autoscaling"]
    types = {name: node["type"] for name, node in status["properties"].items()}
    assert types == {
        "metric": "string",
        "observedConcurrency": "number",
        "panicMode": "boolean",
        "desiredReplicas": "integer",
        "readyPods": "integer",
        "scrapedPods": "integer",
        "missingPods": "integer",
        "requestRate": "number",
        "lastScaleTime": "string",
        "lastScaleReason": "string",
        "message": "string",
    }
    assert status["properties"]["lastScaleTime"]["format"] == "date-time"
    assert all(node.get("description") for node in status["properties"].values())


def _walk(schema: dict[str, Any], path: str) -> list[tuple[str, dict[str, Any]]]:
    out = [(path, schema)]
    for name, sub in schema.get("properties", {}).items():
        out += _walk(sub, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        out += _walk(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        out += _walk(schema["additionalProperties"], f"{path}{{}}")
    return out


def test_schema_is_structural() -> None:
    # Every node has a type, except int-or-string nodes; properties and additionalProperties
    # never mix (both are API server rules for structural schemas).
    for path, node in _walk(crd.openapi_schema(), ""):
        if node.get("x-kubernetes-int-or-string"):
            assert node.get("anyOf") == [{"type": "integer"}, {"type": "string"}], path
            continue
        assert "type" in node, f"{path or '<root>'} has no type"
        assert not ("properties" in node and "additionalProperties" in node), path


def test_every_cel_rule_has_a_message_naming_a_field() -> None:
    rules = [
        (path, rule)
        for path, node in _walk(crd.openapi_schema(), "")
        for rule in node.get("x-kubernetes-validations", [])
    ]
    assert len(rules) >= 15
    for path, rule in rules:
        message = rule.get("message", "")
        assert re.search(r"\b(spec|metadata)\.[A-Za-z]", message), f"{path}: {message!r}"


def test_status_accepts_kopf_state() -> None:
    kopf_status = crd.openapi_schema()["properties"]["status"]["properties"]["kopf"]
    assert kopf_status["x-kubernetes-preserve-unknown-fields"] is True


def test_defaults_are_valid_against_the_schema() -> None:
    from tornado_operator import validation

    spec = validation.validated_spec({})
    assert spec["replicas"] == 1
    assert spec["probes"]["readiness"]["path"] == "/readyz"
    assert spec["rollout"]["maxUnavailable"] == 0
    assert spec["automountServiceAccountToken"] is False


def test_kopf_peering_crds() -> None:
    docs = list(yaml.safe_load_all(PEERING_CRDS.read_text(encoding="utf-8")))
    by_kind = {d["spec"]["names"]["kind"]: d for d in docs}
    assert set(by_kind) == {"ClusterKopfPeering", "KopfPeering"}
    assert by_kind["ClusterKopfPeering"]["spec"]["scope"] == "Cluster"
    assert by_kind["KopfPeering"]["spec"]["scope"] == "Namespaced"
    for doc in docs:
        assert doc["spec"]["group"] == "kopf.dev"
        schema = doc["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        assert schema["properties"]["status"]["x-kubernetes-preserve-unknown-fields"] is True


def test_wheel_ships_the_real_crd(tmp_path: Path) -> None:
    # The operator image is built from a wheel: the link must become the file's content.
    # Build from a copy (links kept as links) so the work tree gets no build/ or egg-info.
    src = tmp_path / "src"
    for rel in ("pyproject.toml", "README.md"):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, src / rel)
    shutil.copytree(
        ROOT / "operator/tornado_operator",
        src / "operator/tornado_operator",
        symlinks=True,
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    shutil.copytree(CHART_CRD.parent, src / CHART_CRD.parent.relative_to(ROOT))
    assert (src / "operator/tornado_operator/crd.yaml").is_symlink()
    out = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(src)],
        check=True,
        cwd=tmp_path,
    )
    [wheel] = out.glob("tornado_operator-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        assert "tornado_operator/py.typed" in names
        packaged = zf.read("tornado_operator/crd.yaml").decode("utf-8")
    assert packaged == CHART_CRD.read_text(encoding="utf-8")
    assert not any(n.startswith("operator/") or n == "__init__.py" for n in names)


@pytest.mark.parametrize("module", ["operator", "tornado_operator"])
def test_operator_directory_does_not_shadow_stdlib(module: str) -> None:
    assert not (ROOT / "operator" / "__init__.py").exists()
    out = subprocess.run(
        [sys.executable, "-c", f"import {module}; print({module}.__file__)"],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    ).stdout
    if module == "operator":
        assert "/operator/" not in out.replace(str(ROOT), "")
