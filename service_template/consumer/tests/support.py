"""Test helpers: a real redis-server on a loopback port, and the consumer as a real process.

Nothing is mocked: the broker is Debian's redis-server started for the tests, and the
consumer under test is `python -m hello_consumer` in a subprocess.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import redis

SERVICE_ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "hello_consumer"
START_TIMEOUT = 15.0
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(what: str, check: Callable[[], T | None], timeout: float = 15.0) -> T:
    """Poll `check` until it returns something truthy; fail naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, redis.RedisError):
            last = check()
            if last:
                return last  # type: ignore[no-any-return]
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what} (last: {last!r})")


@dataclass
class Broker:
    """A redis-server process of our own, on 127.0.0.1:port, with its data in a temp dir."""

    port: int
    proc: subprocess.Popen[bytes] | None = None
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="redis-test-")))

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=10)

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError(
                "redis-server is not installed (apt-get install redis-server): "
                "the consumer's tests run against a real broker"
            )
        self.proc = subprocess.Popen(
            [
                binary,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--dir", str(self.workdir),
                "--save", "",
                "--appendonly", "no",
                "--daemonize", "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        wait_for("redis-server to answer PING", lambda: self.client().ping(), 10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


@dataclass
class Response:
    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class ConsumerProcess:
    """A running `python -m hello_consumer`."""

    proc: subprocess.Popen[str]
    port: int
    name: str
    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)

    def get(self, path: str, timeout: float = 5.0) -> Response:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            return Response(resp.status, resp.read())
        finally:
            conn.close()

    def metric(self, name: str) -> float:
        """The value of an unlabelled (or first labelled) sample of `name` in /metrics."""
        for line in self.get("/metrics").body.decode().splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
        raise AssertionError(f"metric {name} not found")

    def logs(self) -> list[dict[str, Any]]:
        out = []
        for line in list(self.stdout):
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
        return out

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        wait_for(f"{self.name} /readyz 200", lambda: self.get("/readyz").status == 200, timeout)


def launch(broker: Broker, env: dict[str, str] | None = None) -> ConsumerProcess:
    """Start a consumer against `broker`; wait until its health port answers."""
    port = free_port()
    name = f"consumer-{uuid.uuid4().hex[:6]}"
    full_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")},
        "PYTHONPATH": str(SERVICE_ROOT),
        "PYTHONUNBUFFERED": "1",
        "PORT": str(port),
        "BIND_ADDRESS": "127.0.0.1",
        "REDIS_URL": broker.url,
        "CONSUMER_NAME": name,
        "CREATE_GROUP": "true",
        "CREATE_STREAM": "true",
        "STATUS_INTERVAL_SECONDS": "0.2",
        "CLAIM_INTERVAL_SECONDS": "0.5",
        "BLOCK_MS": "200",
        "RETRY_BACKOFF_MAX_SECONDS": "0.5",
        "HANDLER": f"{PACKAGE}.examples:record",
        **(env or {}),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", PACKAGE],
        cwd=SERVICE_ROOT,
        env=full_env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    consumer = ConsumerProcess(proc, port, name)
    for stream, sink in ((proc.stdout, consumer.stdout), (proc.stderr, consumer.stderr)):
        threading.Thread(target=_drain, args=(stream, sink), daemon=True).start()

    def answers() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"consumer exited {proc.returncode}: {consumer.stderr}")
        return consumer.get("/livez").status == 200

    wait_for("the consumer's /livez", answers, START_TIMEOUT)
    return consumer


def _drain(stream: Any, sink: list[str]) -> None:
    for line in stream:
        sink.append(line.rstrip("\n"))


def terminate(consumer: ConsumerProcess, timeout: float = 30.0) -> int:
    if consumer.proc.poll() is None:
        consumer.proc.send_signal(signal.SIGTERM)
    try:
        return consumer.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        consumer.proc.kill()
        consumer.proc.wait(5)
        raise AssertionError(
            f"{consumer.name} did not exit within {timeout:g} s of SIGTERM"
        ) from None


def kill(consumer: ConsumerProcess) -> None:
    if consumer.proc.poll() is None:
        consumer.proc.kill()
    consumer.proc.wait(10)


def produce(client: redis.Redis, stream: str, count: int, **fields: str) -> list[str]:
    """Add `count` entries with unique `uid` fields; return the uids."""
    uids = [uuid.uuid4().hex for _ in range(count)]
    pipe = client.pipeline(transaction=False)
    for uid in uids:
        entry: dict[str, str] = {"uid": uid, **fields}
        pipe.xadd(stream, entry)  # type: ignore[arg-type]
    pipe.execute()
    return uids


def results(client: redis.Redis, stream: str = "results") -> list[dict[str, str]]:
    entries: list[tuple[bytes, dict[bytes, bytes]]] = client.xrange(stream)  # type: ignore[assignment]
    return [{k.decode(): v.decode() for k, v in fields.items()} for _id, fields in entries]
