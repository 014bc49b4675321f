"""Thin helpers to run the cluster's own command-line tools (kubectl, helm)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from tests.cluster.config import paths


def binary(name: str) -> str:
    """The project's build of `name` when it exists, else the one on PATH."""
    built = paths().bin / name
    if built.is_file() and os.access(built, os.X_OK):
        return str(built)
    found = shutil.which(name)
    if not found:
        raise FileNotFoundError(
            f"{name} not found: run `make prereqs` to build it into {paths().bin}, or install it"
        )
    return found


def kubectl(
    *args: str,
    check: bool = True,
    input: str | None = None,
    timeout: float = 120,
    kubeconfig: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run kubectl against $KUBECONFIG (or `kubeconfig`); raise with its stderr on failure."""
    env = dict(os.environ)
    if kubeconfig is not None:
        env["KUBECONFIG"] = str(kubeconfig)
    proc = subprocess.run(
        [binary("kubectl"), *args],
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )
    if check and proc.returncode != 0:
        raise RuntimeError(
            f"kubectl {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}"
        )
    return proc


def kubectl_json(*args: str, **kwargs: Any) -> Any:
    return json.loads(kubectl(*args, "-o", "json", **kwargs).stdout)
