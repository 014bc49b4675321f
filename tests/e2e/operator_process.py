"""The operator as a real process (`python -m tornado_operator run`) for the cluster tests that
need one: several replicas with kopf peering, SIGKILL, a process's own RSS from /proc."""

from __future__ import annotations

import datetime
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests.e2e.operator_support import get, kubectl

# kopf's log line when a replica becomes the active one (peering decided it may run).
RESUMED = "Resuming operations"
PAUSED = "Pausing operations in favour of"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class OperatorProcess:
    """One replica: `peering` names its KopfPeering (None: --standalone); `identity` is its
    kopf peering identity (POD_ID, as the chart sets it from the pod name), default the log's
    name. A replica restarted with the same identity is a container restarted in its pod."""

    def __init__(
        self,
        namespace: str,
        peering: str | None,
        log: Path,
        *,
        identity: str | None = None,
        args: Sequence[str] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self.health = free_port()
        self.metrics = free_port()
        self.log = log
        self.identity = identity or log.stem
        environ = {
            **os.environ,
            "TORNADO_OPERATOR_NAMESPACES": namespace,
            "TORNADO_OPERATOR_PEERING_WAIT": "3",
            "POD_ID": self.identity,
            **(env or {}),
        }
        peering_args = ["--peering", peering] if peering else ["--standalone"]
        self._out = log.open("w")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tornado_operator",
                "run",
                *peering_args,
                "--health-port",
                str(self.health),
                "--metrics-port",
                str(self.metrics),
                *args,
            ],
            stdout=self._out,
            stderr=subprocess.STDOUT,
            env=environ,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def get(self, port: int, path: str) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as rsp:
            return str(rsp.read().decode())

    def healthy(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.log.name} exited ({self.proc.returncode})")
        return self.get(self.health, "/healthz") is not None

    def text(self) -> str:
        return self.log.read_text()

    def lines(self) -> list[dict[str, Any]]:
        """The JSON log lines (the operator's default log format)."""
        out = []
        for line in self.text().splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    continue  # the last line, half written
        return out

    def resumed_at(self) -> list[float]:
        """Wall-clock times (epoch seconds) at which kopf peering let this replica run."""
        return [
            datetime.datetime.fromisoformat(line["timestamp"]).timestamp()
            for line in self.lines()
            if str(line.get("message", "")).startswith(RESUMED)
        ]

    def is_active(self) -> bool:
        """Its latest peering decision was to run (replicas start paused with mandatory peering)."""
        text = self.text()
        return text.rfind(RESUMED) > max(text.rfind(PAUSED), -1)

    def status(self) -> dict[str, str]:
        """/proc/PID/status fields (VmRSS, VmHWM, ...)."""
        out = {}
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            out[key] = value.strip()
        return out

    def kill(self) -> None:
        """SIGKILL: no clean exit, its peering record stays until it expires."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._out.close()


def peers(namespace: str, peering: str) -> dict[str, dict[str, Any]]:
    """The KopfPeering's records: identity -> {priority, lifetime, lastseen}."""
    obj = get("kopfpeering", peering, namespace) or {}
    return dict(obj.get("status") or {})


def create_peering(namespace: str, peering: str) -> None:
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


def kill_right_after_keepalive(
    proc: OperatorProcess, namespace: str, peering: str
) -> tuple[float, float]:
    """SIGKILL `proc` just after its peering record was refreshed: the worst moment, when the
    record still has its whole lifetime to run. Returns (wall-clock time of the kill, the dead
    record's deadline: lastseen + lifetime, as the standbys compute it)."""
    record = peers(namespace, peering)[proc.identity]
    before, limit = record["lastseen"], record["lifetime"] + 5  # kopf refreshes it sooner
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        record = peers(namespace, peering)[proc.identity]
        if record["lastseen"] != before:
            proc.kill()
            killed = time.time()
            seen = datetime.datetime.fromisoformat(record["lastseen"]).timestamp()
            return killed, seen + record["lifetime"]
        time.sleep(0.1)
    raise AssertionError(f"{proc.identity} sent no keep-alive in {limit}s")
