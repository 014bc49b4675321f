"""etcd and kube-apiserver restart under a running operator (issue 13, item 2).

The operator is the real command with peering on (one replica, as the chart runs it), so the
restart hits its watches, its API calls and its peering keep-alive. A change made just before the
stop and changes made as soon as the API is back all converge, the process never exits, and its
log has no failed task or traceback.

Only on the project's local cluster (its control plane runs on this host); it restarts the
control plane that everyone using the cluster shares, so it holds the lock that the chart's tests
and the scale benchmark take, and always leaves the API server answering /readyz.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hack.cluster import local
from hack.kubetools import operator_lock
from hack.paths import REPO, Paths, paths
from tests.e2e.operator_process import OperatorProcess, create_peering, peers
from tests.e2e.operator_support import (
    apply,
    get,
    kubectl,
    patch,
    tornadoservice,
    wait_for,
)

pytest_plugins = ["tests.e2e.operator_fixtures"]

PEERING = "tornado-operator-restart"
EDIT = "RESTART_EDIT"
# Convergence after the API is back: kopf retries a failed request after 1, 1, 2, 3, 5, 8, 13
# and 21 s, so a watch may sleep up to 21 s into the restored API before it lists again; plus a
# reconcile.
RECOVERY_BOUND = 30.0


def _edit(ns: str, name: str, value: str) -> None:
    patch("tornadoservice", name, ns, {"spec": {"env": [{"name": EDIT, "value": value}]}})


def _converged(ns: str, name: str, value: str) -> bool:
    obj, dep = get("tornadoservice", name, ns), get("deployment", name, ns)
    if not obj or not dep:
        return False
    if (obj.get("status") or {}).get("observedGeneration") != obj["metadata"]["generation"]:
        return False
    env = dep["spec"]["template"]["spec"]["containers"][0].get("env") or []
    return {"name": EDIT, "value": value} in env


@pytest.fixture
def local_control_plane(kubeconfig: Path) -> Iterator[Paths]:
    p = paths()
    if Path(os.environ.get("KUBECONFIG", "")) != p.kubeconfig or not local.is_up(p):
        pytest.skip(
            "restarts etcd and kube-apiserver as host processes: only the project's local "
            "cluster runs them here"
        )
    with operator_lock():
        yield p
        if not local.api_healthy(p):  # never leave the shared cluster without its API
            pytest.fail("the API server did not answer /readyz after the test")


def test_operator_recovers_from_a_control_plane_restart(
    local_control_plane: Paths,
    namespace: str,
    operator_crds: None,
    template_image: str,
    tmp_path: Path,
) -> None:
    p, ns = local_control_plane, namespace
    create_peering(ns, PEERING)
    op = OperatorProcess(ns, PEERING, tmp_path / "operator.log")
    try:
        wait_for("operator healthy", op.healthy, 60)
        wait_for("operator active", op.is_active, 30)
        for name in ("before", "after", "child"):
            apply(tornadoservice(name, replicas=0, env=[{"name": EDIT, "value": "0"}]), ns)
        for name in ("before", "after", "child"):
            wait_for(f"{name} converged", lambda n=name: _converged(ns, n, "0"), 60, 0.5)

        # A change just before the stop: the operator may or may not see it before the API goes.
        _edit(ns, "before", "1")
        components = local.running_components(p)
        t0 = time.monotonic()
        argv = local.stop_control_plane(p)
        other: subprocess.Popen[str] | None = None
        try:
            stopped = time.monotonic() - t0
            assert op.proc.poll() is None, "the operator exited while the API was gone"
            assert op.healthy()  # kopf's liveness does not depend on the API server
            # A test session starting now runs `up`: it must wait, not start an empty cluster.
            other = subprocess.Popen(
                [sys.executable, "-m", "hack.cluster", "up", "--provider", "local"],
                cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            )  # fmt: skip
        finally:
            back = local.start_control_plane(p, argv)
        api_back = time.monotonic()
        gone = api_back - t0
        assert other is not None
        try:
            said = other.communicate(timeout=120)[0]
        finally:
            other.kill()
        assert "restarting; waiting" in said and "already up" in said, said
        after = local.running_components(p)
        assert {k: v for k, v in after.items() if k not in local.RESTARTED} == {
            k: v for k, v in components.items() if k not in local.RESTARTED
        }, "something else than etcd and kube-apiserver was restarted"

        # Changes as soon as the API is back: an edit, a new object, a deleted child (its watch).
        _edit(ns, "after", "1")
        apply(tornadoservice("new", replicas=0, env=[{"name": EDIT, "value": "1"}]), ns)
        kubectl("delete", "deployment", "child", "-n", ns)
        pending = {"before": "1", "after": "1", "new": "1", "child": "0"}
        converged: dict[str, float] = {}

        def all_converged() -> bool:
            for name, value in pending.items():
                if name not in converged and _converged(ns, name, value):
                    converged[name] = time.monotonic() - api_back
            return len(converged) == len(pending)

        wait_for(f"every change converged ({pending})", all_converged, 120, 0.5)
        recovery = max(converged.values())
        # kopf deletes records it finds expired, its own too, until its next keep-alive.
        lastseen = (peers(ns, PEERING).get(op.identity) or {}).get("lastseen")
        print(
            f"control-plane restart: stopped in {stopped:.1f}s, etcd+apiserver /readyz in "
            f"{back:.1f}s, API gone {gone:.1f}s; converged after the API was back: "
            + ", ".join(f"{k} +{v:.1f}s" for k, v in sorted(converged.items()))
        )
        assert recovery <= RECOVERY_BOUND, converged

        # The process lived through it, with no failed task, and its peering keep-alive still runs.
        assert op.proc.poll() is None
        text = op.text()
        assert "Traceback" not in text and "has failed" not in text, text[-3000:]
        wait_for(
            "a keep-alive after the restart",
            lambda: (r := peers(ns, PEERING).get(op.identity)) and r["lastseen"] != lastseen,
            15,
            0.5,
        )
        assert op.is_active()
    finally:
        op.stop()
        print(f"--- operator log (exit {op.proc.returncode}) ---\n{op.text()[-6000:]}")
