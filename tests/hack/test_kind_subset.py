"""`make test`'s kind subset without a cluster: what it runs; it removes only what it made."""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from hack import kind_subset
from hack.paths import REPO


def test_the_subset_is_the_issues_list_and_exists() -> None:
    names = {Path(t).name for t in kind_subset.SUBSET}
    # Issue 14: chart install, operator lifecycle, drift, smoke; and the enforcer's proof.
    assert names == {
        "test_install.py",
        "test_operator_lifecycle.py",
        "test_operator_drift.py",
        "test_cluster_smoke.py",
        "test_composition_policy.py",
    }
    assert all((REPO / t).is_file() for t in kind_subset.SUBSET)


def test_make_test_runs_the_subset_after_the_suite_whatever_its_result() -> None:
    text = (REPO / "Makefile").read_text()
    recipe = re.search(r"^test:.*\n\t(.*)\n", text, re.MULTILINE)
    assert recipe is not None
    line = recipe.group(1)
    assert line.index("-m pytest") < line.index("-m hack.kind_subset")
    assert "-m pytest;" in line  # `;`, not `&&`: a failing suite still gets the kind run


def test_the_kind_tests_lock_is_not_the_local_clusters(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)
    assert kind_subset.kind_tmpdir() == tmp_path / "tornado-operator-kind"


def test_two_runs_take_turns(tmp_path: Path) -> None:
    lock = tmp_path / "lock"
    with kind_subset.machine_lock(lock):
        # Another process cannot take it meanwhile (flock is per open file: a second open
        # in this process would block too, so ask a child).
        code = (
            "import fcntl, sys; f = open(sys.argv[1], 'w')\n"
            "try: fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
            "except BlockingIOError: sys.exit(3)\n"
        )
        r = subprocess.run([sys.executable, "-c", code, str(lock)], check=False, timeout=30)
        assert r.returncode == 3
    with kind_subset.machine_lock(lock, timeout=1):
        pass


class FakeKind:
    def __init__(self, running: bool, engine: bool, up_fails: bool = False) -> None:
        self._running, self._engine, self.up_fails = running, engine, up_fails
        self.downs: list[bool] = []

    def running(self) -> bool:
        return self._running

    def engine_running(self) -> bool:
        return self._engine

    def up(self, pull: bool = True) -> Path:
        assert pull is False  # the subset never asks a registry
        if self.up_fails:
            raise RuntimeError("kind create failed")
        return Path("/nonexistent/kind.kubeconfig")

    def down(self, stop_engine: bool = True) -> None:
        self.downs.append(stop_engine)


def _run(tmp_path: Path, monkeypatch: Any, fake: FakeKind, tests_exit: int = 0) -> int:
    monkeypatch.setenv("TORNADO_OPERATOR_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(kind_subset, "kind_tmpdir", lambda: tmp_path)
    monkeypatch.setattr(kind_subset, "_build_kind", lambda: None)
    monkeypatch.setattr(kind_subset.image, "ensure", lambda: "node:image")
    monkeypatch.setattr(kind_subset, "kind", fake)
    seen: dict[str, Any] = {}

    def fake_run(argv: list[str], cwd: Path, env: dict[str, str]) -> Any:
        seen.update(argv=argv, env=env)
        return subprocess.CompletedProcess(argv, tests_exit)

    monkeypatch.setattr(kind_subset.subprocess, "run", fake_run)
    status = kind_subset.run(["-x"])
    if seen:
        assert seen["argv"][-1] == "-x" and seen["env"]["TMPDIR"] == str(tmp_path)
        assert seen["env"]["KUBECONFIG"] == "/nonexistent/kind.kubeconfig"
    return status


def test_a_cluster_it_made_is_deleted_and_the_engine_stopped(
    tmp_path: Path, monkeypatch: Any
) -> None:
    fake = FakeKind(running=False, engine=False)
    assert _run(tmp_path, monkeypatch, fake, tests_exit=1) == 1
    assert fake.downs == [True]


def test_an_engine_that_ran_before_is_left_running(tmp_path: Path, monkeypatch: Any) -> None:
    fake = FakeKind(running=False, engine=True)
    assert _run(tmp_path, monkeypatch, fake) == 0
    assert fake.downs == [False]


def test_a_cluster_that_was_up_is_kept(tmp_path: Path, monkeypatch: Any) -> None:
    fake = FakeKind(running=True, engine=True)
    assert _run(tmp_path, monkeypatch, fake) == 0
    assert fake.downs == []


def test_a_failed_create_still_deletes(tmp_path: Path, monkeypatch: Any) -> None:
    fake = FakeKind(running=False, engine=False, up_fails=True)
    with pytest.raises(SystemExit):
        _run(tmp_path, monkeypatch, fake)
    assert fake.downs == [True]
