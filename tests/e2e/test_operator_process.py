"""The real command: `tornado-operator run` with two replicas, one active and one standby,
its liveness endpoint, Prometheus metrics and JSON logs."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.operator_support import (
    apply,
    get,
    kubectl,
    tornadoservice,
    wait_for,
    wait_ready,
)

pytest_plugins = ["tests.e2e.operator_fixtures"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class OperatorProcess:
    def __init__(self, namespace: str, peering: str, log: Path) -> None:
        self.health = free_port()
        self.metrics = free_port()
        self.log = log
        env = {
            **os.environ,
            "TORNADO_OPERATOR_NAMESPACES": namespace,
            "TORNADO_OPERATOR_PEERING_WAIT": "3",
            "POD_ID": log.stem,
        }
        self._out = log.open("w")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tornado_operator",
                "run",
                "--peering",
                peering,
                "--health-port",
                str(self.health),
                "--metrics-port",
                str(self.metrics),
            ],
            stdout=self._out,
            stderr=subprocess.STDOUT,
            env=env,
        )

    def get(self, port: int, path: str) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as rsp:
            return rsp.read().decode()

    def text(self) -> str:
        return self.log.read_text()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._out.close()


@pytest.fixture
def peered(
    namespace: str, operator_crds: None, template_image: str, tmp_path: Path
) -> Iterator[tuple[str, list[OperatorProcess]]]:
    peering = "tornado-operator-test"
    kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input=json.dumps(
            {"apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": peering}}
        ),
    )
    procs = [OperatorProcess(namespace, peering, tmp_path / f"replica-{i}.log") for i in range(2)]
    try:
        yield namespace, procs
    finally:
        for p in procs:
            p.stop()
            # Shown by pytest only when the test failed.
            print(f"--- {p.log.name} (exit {p.proc.returncode}) ---\n{p.text()[-6000:]}")


OK_PARENT = 'tornado_operator_reconciles_total{result="ok",trigger="parent"}'


def _handled(p: OperatorProcess) -> bool:
    return OK_PARENT in p.get(p.metrics, "/metrics")


def test_one_active_replica_and_a_standby_takes_over(
    peered: tuple[str, list[OperatorProcess]],
) -> None:
    ns, procs = peered
    for p in procs:
        wait_for("liveness endpoint", lambda p=p: p.get(p.health, "/healthz") is not None, 60)

    # Both replicas announce themselves in the peering object, with distinct random priorities.
    def peers() -> dict[str, dict[str, int]] | None:
        status = (
            json.loads(
                kubectl(
                    "get", "kopfpeering", "tornado-operator-test", "-n", ns, "-o", "json"
                ).stdout
            ).get("status")
            or {}
        )
        return status if len(status) == 2 else None

    status = wait_for("both replicas in the peering object", peers, 60)
    assert len({peer["priority"] for peer in status.values()}) == 2

    apply(tornadoservice("peered", replicas=1), ns)
    wait_ready("peered", ns)
    time.sleep(3)
    handled = [p for p in procs if _handled(p)]
    assert len(handled) == 1, "exactly one replica is active"
    [active] = handled
    [standby] = [p for p in procs if p is not active]
    metrics = active.get(active.metrics, "/metrics")
    assert "tornado_operator_reconcile_duration_seconds_bucket" in metrics
    assert 'tornado_operator_managed_objects{kind="Deployment"} 1.0' in metrics

    # Structured logs: every line the operator writes is one JSON object.
    lines = [line for line in active.text().splitlines() if line.strip()]
    assert lines and all(json.loads(line)["message"] is not None for line in lines)

    # The active one stops; the standby resumes and serves new objects.
    active.stop()
    apply(tornadoservice("after-failover", replicas=1), ns)
    wait_ready("after-failover", ns)
    assert _handled(standby)
    assert get("deployment", "after-failover", ns) is not None


def test_refuses_to_start_without_its_peering_object(
    namespace: str, operator_crds: None, tmp_path: Path
) -> None:
    # kopf alone would wait silently forever for a peering object that does not exist.
    proc = OperatorProcess(namespace, "nobody-created-this", tmp_path / "lonely.log")
    try:
        code = proc.proc.wait(60)
    finally:
        proc.stop()
    assert code != 0
    lines = [json.loads(line) for line in proc.text().splitlines() if line.startswith("{")]
    # It waits a bounded while (3 s here) for the object, saying so, then gives up.
    assert lines[0]["severity"] == "warn"
    assert "waiting for the peering object" in lines[0]["message"]
    first = next(line for line in lines if line["severity"] == "error")
    assert (
        f"create KopfPeering 'nobody-created-this' in namespace(s) {namespace}" in first["message"]
    )
    assert "--standalone" in first["message"]
