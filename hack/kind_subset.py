"""`python -m hack.kind_subset` (`make test-kind`, the last step of `make test`): a subset of the
cluster tests on kind, made and deleted around it.

The full e2e suite runs on the local cluster; on kind, CI runs what shows the project works on a
kind cluster too: the chart installed and serving, the operator's lifecycle and drift, the
cluster smoke tests and the composition NetworkPolicies (enforced by the node's kube-router).
Steps, one line each (their output in $TORNADO_OPERATOR_CACHE/logs/kind-*.log); on 2 CPUs the
first run takes about 12 minutes, a warm one about 9 (7.5 of them tests):

1. kind v0.30.0 and runc-nosysresource, built from the Go module proxy (cached);
2. the project's node image (hack/kind_node; cached by its recipe);
3. the kind cluster, from kind-config.yaml, on the project's engine: no registry is asked for
   the pinned kindest/node (it is used only if the machine's Docker already has it);
4. pytest on SUBSET with KUBECONFIG at kind's (its output inline);
5. the kind cluster deleted and the project's engine stopped, when this run made them: pass,
   fail, interrupt or SIGTERM.

A kind cluster that is already up is used and left up: only what this run made is removed. The
local cluster is not touched: the tests' session fixture takes the cluster $KUBECONFIG points to.
TMPDIR is a directory of kind's own, so the lock the operator tests take around a cluster-wide
operator (tests/chart/kube.py, in TMPDIR) is the kind cluster's, not the local cluster's; and
one more lock there makes two runs on one machine take turns.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

from hack import procs
from hack.cluster import kind
from hack.kind_node import image, kind_bin
from hack.paths import REPO, paths
from hack.steps import Steps, elapsed

SUBSET = (
    "tests/e2e/test_cluster_smoke.py",
    "tests/e2e/test_operator_lifecycle.py",
    "tests/e2e/test_operator_drift.py",
    "tests/e2e/test_composition_policy.py",
    "tests/chart/test_install.py",
)
LOCK_WAIT = 3600.0  # another run's subset on this machine, at most


def kind_tmpdir() -> Path:
    """TMPDIR for the tests on kind (made if missing)."""
    d = Path(tempfile.gettempdir()) / "tornado-operator-kind"
    d.mkdir(exist_ok=True)
    return d


@contextlib.contextmanager
def machine_lock(path: Path, timeout: float = LOCK_WAIT) -> Iterator[None]:
    """One kind subset at a time on this machine (they would share the kind cluster)."""
    with open(path, "w") as f:
        procs.take_flock(
            f,
            path,
            timeout,
            poll=5,
            waiting=lambda: print(
                f"waiting for another kind subset on this machine ({path})", flush=True
            ),
        )
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _build_kind() -> None:
    if not (kind_bin() / "kind").exists() or not (kind_bin() / "runc-nosysresource").exists():
        subprocess.run(
            ["bash", str(REPO / "hack/build-binaries.sh"), str(paths().cache), "kind"], check=True
        )


def _terminate_as_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_argv(extra: list[str]) -> list[str]:
    return [sys.executable, "-m", "pytest", *SUBSET, *extra]


def run(extra: list[str]) -> int:
    started = time.monotonic()
    tmp = kind_tmpdir()
    with machine_lock(tmp / "kind-subset.lock"):
        steps = Steps("kind", 5)
        steps.run("binaries", "kind and runc-nosysresource", "about 2 min cold", _build_kind)
        # What was there before this run stays: a kind cluster, the project's engine.
        made_cluster = not kind.running()
        engine_was_running = kind.engine_running()
        status = 1
        times: dict[str, float] = {}
        try:
            t0 = time.monotonic()
            ref = steps.run(
                "image", "the project's kind node image", "about 2 min cold", image.ensure
            )
            times["image"] = time.monotonic() - t0
            print(f"  node image: {ref}", flush=True)
            t0 = time.monotonic()
            what = "kind cluster from kind-config.yaml"
            what += ", with its NetworkPolicy enforcer" if made_cluster else " (up already: kept)"
            kc = steps.run("up", what, "about 1 min", lambda: kind.up(pull=False))
            times["up"] = time.monotonic() - t0
            argv = pytest_argv(extra)
            steps.done += 1
            print(f"[kind {steps.done}/5] {' '.join(argv[1:])} (KUBECONFIG={kc})", flush=True)
            t0 = time.monotonic()
            status = subprocess.run(
                argv, cwd=REPO, env={**os.environ, "KUBECONFIG": str(kc), "TMPDIR": str(tmp)}
            ).returncode
            times["tests"] = time.monotonic() - t0
            print(
                f"[kind {steps.done}/5] tests on kind: exit {status} in {elapsed(times['tests'])}"
            )
        finally:
            steps.done = 4
            t0 = time.monotonic()
            if made_cluster:
                what = "kind cluster deleted" + ("" if engine_was_running else ", engine stopped")
                steps.run(
                    "down",
                    what,
                    "about 10 s",
                    lambda: kind.down(stop_engine=not engine_was_running),
                )
            else:
                steps.run("down", "kind cluster kept: it was up before", "0 s", lambda: None)
            times["down"] = time.monotonic() - t0
            parts = ", ".join(f"{k} {elapsed(v)}" for k, v in times.items())
            print(f"kind subset: {parts}; {elapsed(time.monotonic() - started)} in all", flush=True)
    return status


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hack.kind_subset", description=__doc__)
    ap.add_argument("pytest_args", nargs="*", help="more pytest arguments (after --)")
    args = ap.parse_args(argv)
    # A CI timeout's SIGTERM still deletes the cluster (run's finally).
    previous = signal.signal(signal.SIGTERM, _terminate_as_interrupt)
    try:
        return run(args.pytest_args)
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
