"""The project's helm knows which Kubernetes it targets without a cluster (no --kube-version)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from hack.kubetools import CHART, binary, helm
from hack.paths import KUBERNETES_VERSION, paths


def test_helm_template_accepts_the_chart_without_kube_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["kubeVersion"], "the chart declares the Kubernetes versions it supports"
    r = helm("template", "t", str(CHART), check=False)
    assert r.returncode == 0, r.stderr
    assert "kind: Deployment" in r.stdout


def test_the_projects_helm_assumes_the_projects_kubernetes_minor(tmp_path: Path) -> None:
    if binary("helm") != str(paths().bin / "helm"):
        pytest.skip("helm is not the project's build (make prereqs)")
    (tmp_path / "templates").mkdir()
    (tmp_path / "Chart.yaml").write_text("apiVersion: v2\nname: stamp\nversion: 0.1.0\n")
    (tmp_path / "templates" / "v.yaml").write_text("# {{ .Capabilities.KubeVersion.Version }}\n")
    out = helm("template", "stamp", str(tmp_path)).stdout
    minor = ".".join(KUBERNETES_VERSION.split(".")[:2])
    assert f"# v{minor}.0" in out, out
