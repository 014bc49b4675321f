"""The e2e lock in hack.kubetools: re-entrant within a process, exclusive across processes."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from hack import kubetools

HOLD = """
import fcntl, sys, time
with open(sys.argv[1], "w") as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


@pytest.fixture
def lock_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "e2e.lock"
    monkeypatch.setattr(kubetools, "E2E_LOCK", path)
    return path


def test_reentrant_within_a_process(lock_file: Path) -> None:
    with kubetools.operator_lock(timeout=1):
        with kubetools.operator_lock(timeout=0):  # would time out if it waited for itself
            assert kubetools._held == 2
        assert kubetools._held == 1
    assert kubetools._held == 0


def test_another_process_holding_it_makes_us_wait_then_give_up(lock_file: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(lock_file), "30"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        t0 = time.monotonic()
        with pytest.raises(kubetools.LockTimeout), kubetools.operator_lock(timeout=1):
            pass
        assert time.monotonic() - t0 >= 1
        assert kubetools._held == 0
    finally:
        holder.kill()
        holder.wait(10)
    with kubetools.operator_lock(timeout=5):  # free again once the holder is gone
        assert kubetools._held == 1
