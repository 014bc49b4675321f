"""While etcd and kube-apiserver restart (`restart-control-plane`), `up` waits instead of tearing
the cluster down; a mark left by a process that died does not hold it up."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from hack.cluster import local
from hack.paths import Paths


def _paths(tmp_path: Path) -> Paths:
    (tmp_path / "run").mkdir()
    return Paths(cache=tmp_path / "cache", state=tmp_path / "state", run=tmp_path / "run")


def test_a_live_restart_is_waited_for(tmp_path: Path) -> None:
    p = _paths(tmp_path)
    assert not local._restarting(p)
    (p.run / "control-plane-restart.pid").write_text(str(os.getpid()))
    assert local._restarting(p)
    said: list[str] = []
    t0 = time.monotonic()
    local._wait_for_restart(p, said.append, patience=1)
    assert time.monotonic() - t0 >= 1
    assert said == ["etcd and kube-apiserver are restarting; waiting for them"]


def test_a_dead_restarters_mark_is_ignored(tmp_path: Path) -> None:
    p = _paths(tmp_path)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    (p.run / "control-plane-restart.pid").write_text(dead)
    assert not local._restarting(p)
    said: list[str] = []
    local._wait_for_restart(p, said.append, patience=30)
    assert not said
