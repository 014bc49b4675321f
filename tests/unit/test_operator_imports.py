"""The operator package's import contract (.importlinter): nothing imports upward.

CLI -> kopf wiring (handlers) -> reconcile -> pure modules -> API layer and constants; pure
modules do no I/O, and only kubeapi imports the Kubernetes client library.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / ".importlinter"
PACKAGE = ROOT / "operator/tornado_operator"


def lint_imports(package_parent: Path) -> subprocess.CompletedProcess[str]:
    """lint-imports against the package found in `package_parent`."""
    code = (
        "import sys; from importlinter.cli import lint_imports; "
        f"sys.exit(lint_imports(config_filename={str(CONFIG)!r}, no_cache=True, no_logo=True))"
    )
    env = {**os.environ, "PYTHONPATH": str(package_parent)}
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=package_parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_contract_is_kept() -> None:
    result = lint_imports(PACKAGE.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("rendering", "from tornado_operator import reconcile", "CLI -> kopf wiring"),
        ("kubeapi", "from tornado_operator import children", "CLI -> kopf wiring"),
        ("assessment", "import kopf", "Pure modules do no I/O"),
        ("reconcile", "from kubernetes.client.exceptions import ApiException", "Only kubeapi"),
        ("autoscaling/config", "import kopf", "Pure modules do no I/O"),
        ("autoscaling/algorithm", "from tornado_operator.autoscaling import report", "Autoscaling"),
    ],
)
def test_the_contract_catches_a_wrong_import(
    tmp_path: Path, module: str, line: str, contract: str
) -> None:
    # A copy of the package with one import added: the check must fail, naming the contract.
    copy = tmp_path / "tornado_operator"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__", "*.yaml"))
    source = copy / f"{module}.py"
    source.write_text(source.read_text(encoding="utf-8") + f"\n{line}\n", encoding="utf-8")
    result = lint_imports(tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    broken = [ln for ln in result.stdout.splitlines() if ln.endswith("BROKEN")]
    assert any(name.startswith(contract) for name in broken), result.stdout
