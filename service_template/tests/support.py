"""Test helpers: the service as a real process on a loopback port, and real fake upstreams.

Nothing is mocked: the service under test is `python -m hello` in a subprocess,
and the upstreams it calls are HTTP servers on 127.0.0.1 in this test process.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

SERVICE_ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "hello"
START_TIMEOUT = 15.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Service:
    """A running `python -m hello` process."""

    proc: subprocess.Popen[str]
    port: int
    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)

    def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 10.0,
    ) -> Response:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
        finally:
            conn.close()

    def get(self, path: str, **kwargs: Any) -> Response:
        return self.request("GET", path, **kwargs)

    def raw(self, data: bytes, *, timeout: float = 5.0) -> bytes:
        """Send raw bytes; return everything the server sends until it closes or goes quiet."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as s:
            s.sendall(data)
            return read_until_close(s, timeout)

    def log_entries(self) -> list[dict[str, Any]]:
        entries = []
        for line in list(self.stdout):
            with contextlib.suppress(ValueError):
                entries.append(json.loads(line))
        return entries

    def wait_for_log(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 5.0
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for entry in self.log_entries():
                if predicate(entry):
                    return entry
            time.sleep(0.02)
        raise AssertionError(f"no matching log line; stdout was:\n{''.join(self.stdout)}")

    def metric(self, name: str, **labels: str) -> float:
        """The value of one sample from /metrics; 0 when the series does not exist yet."""
        text = self.get("/metrics").body.decode()
        for line in text.splitlines():
            if line.startswith("#"):
                continue
            sample, _, value = line.rpartition(" ")
            sample_name, _, label_text = sample.partition("{")
            if sample_name != name:
                continue
            found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', label_text))
            if all(found.get(k) == v for k, v in labels.items()):
                return float(value)
        return 0.0

    def terminate(self, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)


def read_until_close(sock: socket.socket, timeout: float) -> bytes:
    sock.settimeout(timeout)
    chunks = []
    with contextlib.suppress(TimeoutError, ConnectionResetError):
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def _pump(stream: Any, sink: list[str]) -> None:
    for line in stream:
        sink.append(line)


def launch(env: dict[str, str] | None = None) -> Service:
    """Start the service on a free loopback port and wait until its startup probe answers."""
    port = free_port()
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    full_env.update(
        {
            "PORT": str(port),
            "BIND_ADDRESS": "127.0.0.1",
            "DRAIN_DELAY_SECONDS": "0",
            "SHUTDOWN_TIMEOUT_SECONDS": "5",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONUNBUFFERED": "1",
        }
    )
    full_env.update(env or {})
    proc = subprocess.Popen(
        [sys.executable, "-m", PACKAGE],
        cwd=SERVICE_ROOT,
        env=full_env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    service = Service(proc, port)
    for stream, sink in ((proc.stdout, service.stdout), (proc.stderr, service.stderr)):
        threading.Thread(target=_pump, args=(stream, sink), daemon=True).start()
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            proc.wait()
            time.sleep(0.1)  # let the pumps catch the last lines
            raise AssertionError(
                f"service exited with {proc.returncode} at start:\n{''.join(service.stderr)}"
            )
        with contextlib.suppress(OSError, http.client.HTTPException):
            if service.get("/startupz", timeout=1).status == 200:
                return service
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"service did not start within {START_TIMEOUT}s")


def stop(service: Service) -> None:
    if service.proc.poll() is None:
        service.proc.send_signal(signal.SIGTERM)
        try:
            service.proc.wait(10)
        except subprocess.TimeoutExpired:
            service.proc.kill()
            service.proc.wait()


class FakeUpstreams:
    """Real HTTP upstreams on loopback, with behaviour chosen by path.

    /ok               200 JSON
    /slow?delay=S     200 after S seconds
    /status/N         answers with status N
    /flaky/KEY        503 on the first call for KEY, 200 after
    /switch/KEY       200 or 500, as set with set_switch(KEY, healthy)
    """

    def __init__(self) -> None:
        self.hits: list[tuple[str, dict[str, str]]] = []
        self.in_progress = 0
        self._lock = threading.Lock()
        self._flaky: dict[str, int] = {}
        self._switch: dict[str, bool] = {}
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        # A bound socket that never listens: connections to it are refused.
        self._refusing = socket.socket()
        self._refusing.bind(("127.0.0.1", 0))

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    @property
    def refusing_url(self) -> str:
        return f"http://127.0.0.1:{self._refusing.getsockname()[1]}/"

    def set_switch(self, key: str, healthy: bool) -> None:
        self._switch[key] = healthy

    def count(self, path: str) -> int:
        with self._lock:
            return sum(1 for p, _ in self.hits if p == path)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._refusing.close()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                with fake._lock:
                    fake.hits.append((parts.path, {k.lower(): v for k, v in self.headers.items()}))
                    fake.in_progress += 1
                try:
                    self._answer(parts.path, parse_qs(parts.query))
                finally:
                    with fake._lock:
                        fake.in_progress -= 1

            def _answer(self, path: str, query: dict[str, list[str]]) -> None:
                status = 200
                if path == "/slow":
                    time.sleep(float(query.get("delay", ["1"])[0]))
                elif path.startswith("/status/"):
                    status = int(path.rsplit("/", 1)[1])
                elif path.startswith("/flaky/"):
                    with fake._lock:
                        seen = fake._flaky.get(path, 0)
                        fake._flaky[path] = seen + 1
                    status = 503 if seen == 0 else 200
                elif path.startswith("/switch/"):
                    status = 200 if fake._switch.get(path.rsplit("/", 1)[1], True) else 500
                elif path != "/ok":
                    status = 404
                body = json.dumps({"path": path, "status": status}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                with contextlib.suppress(OSError):
                    self.wfile.write(body)

        return Handler
