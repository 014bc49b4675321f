"""`up` on a running local cluster says so and changes nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hack.cluster import local
from hack.paths import REPO, paths


def test_up_when_up_changes_nothing(kubeconfig: Path) -> None:
    p = paths()
    if kubeconfig != p.kubeconfig:
        pytest.skip("the cluster in use is not the project's local cluster")
    before = local.running_components(p)
    r = subprocess.run(
        [sys.executable, "-m", "hack.cluster", "up", "--provider", "local"],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "already up; nothing changed" in r.stdout
    assert r.stdout.strip().endswith(str(p.kubeconfig))
    assert local.running_components(p) == before


def test_status_lists_every_component(kubeconfig: Path) -> None:
    p = paths()
    if kubeconfig != p.kubeconfig:
        pytest.skip("the cluster in use is not the project's local cluster")
    r = subprocess.run(
        [sys.executable, "-m", "hack.cluster", "status"],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert r.returncode == 0
    for name in local.COMPONENTS:
        assert f"{name}" in r.stdout and "stopped" not in r.stdout
    assert "local cluster: up" in r.stdout
