#!/usr/bin/env python3
"""Benchmark of the consumer template (issue 12): messages/s per process, and lag drain time.

    .venv/bin/python benchmarks/consumer_throughput.py                 # about 1 minute
    .venv/bin/python benchmarks/consumer_throughput.py --out result.json --scale 0.5

Needs redis-server (apt-get install redis-server). Everything runs on 127.0.0.1: a
redis-server of its own on a free port (no persistence), the consumers as real processes.
Not a test: it prints one table and writes every number as JSON (--out).

Measured in one run, each with a backlog produced after the consumers are ready (one
pipelined XADD burst) and timed until the group has nothing left (XINFO GROUPS lag 0 and
pending 0):
  async, no-op         the template (`python -m hello_consumer`), HANDLER=...examples:noop,
                       its default CONCURRENCY (32): the cost of consuming itself
  async, 50 ms         the template, HANDLER=...examples:upstream_50ms (awaits 50 ms, like a
                       slow upstream), default CONCURRENCY
  sync, no-op / 50 ms  the reference: a blocking redis-py consumer, one message at a time
                       (XREADGROUP COUNT 1, handle, XACK), time.sleep(0.05) for the upstream
  drain vs processes   a fixed backlog for the 50 ms handler, drained by 1, 2 and 4 template
                       processes: seconds from the first XADD until nothing is left

Every wait is bounded (--timeout); every process started is stopped, also on failure.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import redis

REPO = Path(__file__).resolve().parents[1]
CONSUMER = REPO / "service_template" / "consumer"
PACKAGE = "hello_consumer"
STREAM, GROUP = "bench", "bench"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def redis_server() -> Iterator[int]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("consumer_throughput: needs redis-server (apt-get install redis-server)")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="bench-redis-") as workdir:
        proc = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", workdir,
             "--save", "", "--appendonly", "no", "--daemonize", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            wait("redis-server", lambda: redis.Redis(port=port).ping(), 10)
            yield port
        finally:
            proc.terminate()
            proc.wait(10)


def wait(what: str, check: Any, timeout: float, interval: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, redis.RedisError):
            if check():
                return
        time.sleep(interval)
    raise RuntimeError(f"timed out after {timeout:g} s waiting for {what}")


def drained(client: redis.Redis) -> bool:
    groups: list[dict[str, Any]] = client.xinfo_groups(STREAM)  # type: ignore[assignment]
    return any(g["lag"] == 0 and g["pending"] == 0 for g in groups)


def reset(client: redis.Redis) -> None:
    client.delete(STREAM)
    client.xgroup_create(STREAM, GROUP, id="$", mkstream=True)


def produce(client: redis.Redis, count: int) -> None:
    for start in range(0, count, 1000):
        pipe = client.pipeline(transaction=False)
        for i in range(start, min(start + 1000, count)):
            pipe.xadd(STREAM, {"n": str(i)})
        pipe.execute()


def start_template(port: int, handler: str, name: str) -> tuple[subprocess.Popen[bytes], int]:
    http_port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(CONSUMER),
        "PYTHONDONTWRITEBYTECODE": "1",
        "REDIS_URL": f"redis://127.0.0.1:{port}/0",
        "STREAM": STREAM,
        "GROUP": GROUP,
        "CONSUMER_NAME": name,
        "HANDLER": f"{PACKAGE}.examples:{handler}",
        "PORT": str(http_port),
        "BIND_ADDRESS": "127.0.0.1",
        "STATUS_INTERVAL_SECONDS": "1",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", PACKAGE], cwd=CONSUMER, env=env, stdout=subprocess.DEVNULL
    )
    return proc, http_port


def ready(http_port: int) -> bool:
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/readyz", timeout=2) as r:
        return int(r.status) == 200


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)


def run_template(port: int, handler: str, processes: int, backlog: int, timeout: float) -> float:
    """Seconds from the first XADD of `backlog` until `processes` template consumers drained it."""
    client = redis.Redis(port=port)
    reset(client)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for i in range(processes):
            proc, http_port = start_template(port, handler, f"template-{i}")
            procs.append(proc)
            wait(f"template consumer {i} ready", lambda p=http_port: ready(p), 30, 0.05)
        began = time.monotonic()
        produce(client, backlog)
        wait(f"{backlog} messages drained", lambda: drained(client), timeout)
        return time.monotonic() - began
    finally:
        stop(procs)


def sync_worker(port: int, sleep: float) -> None:
    """The reference: a blocking consumer, one message at a time (runs as its own process)."""
    client = redis.Redis(port=port)
    while True:
        reply: Any = client.xreadgroup(GROUP, "sync", {STREAM: ">"}, count=1, block=1000)
        for _stream, entries in reply or ():
            for entry_id, _fields in entries:
                if sleep:
                    time.sleep(sleep)
                client.xack(STREAM, GROUP, entry_id)


def run_sync(port: int, sleep: float, backlog: int, timeout: float) -> float:
    client = redis.Redis(port=port)
    reset(client)
    proc = subprocess.Popen(
        [sys.executable, __file__, "--sync-worker", str(port), "--sleep", str(sleep)]
    )
    try:
        time.sleep(0.5)  # connected and blocked in XREADGROUP
        began = time.monotonic()
        produce(client, backlog)
        wait(f"{backlog} messages drained by the sync consumer", lambda: drained(client), timeout)
        return time.monotonic() - began
    finally:
        proc.terminate()
        proc.wait(10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument(
        "--scale", type=float, default=1.0, help="multiply every backlog (default 1)"
    )
    parser.add_argument("--timeout", type=float, default=120, help="longest wait of one drain")
    parser.add_argument("--sync-worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--sleep", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.sync_worker:
        with contextlib.suppress(KeyboardInterrupt):
            sync_worker(args.sync_worker, args.sleep)
        return 0

    def n(base: int) -> int:
        return max(10, int(base * args.scale))

    rows: list[dict[str, Any]] = []

    def record(
        name: str, consumer: str, handler: str, processes: int, backlog: int, s: float
    ) -> None:
        row = {
            "name": name,
            "consumer": consumer,
            "handler": handler,
            "processes": processes,
            "backlog": backlog,
            "seconds": round(s, 3),
            "messages_per_second": round(backlog / s, 1),
            "messages_per_second_per_process": round(backlog / s / processes, 1),
        }
        rows.append(row)
        print(
            f"{name:<26} {consumer:<9} {handler:<7} x{processes}  {backlog:>6} msgs "
            f"{s:7.2f} s  {backlog / s:9.1f} msg/s  ({backlog / s / processes:.1f} per process)",
            flush=True,
        )

    with redis_server() as port:
        b = n(20000)
        record("async no-op", "template", "no-op", 1, b,
               run_template(port, "noop", 1, b, args.timeout))  # fmt: skip
        b = n(3000)
        record("async 50 ms", "template", "50 ms", 1, b,
               run_template(port, "upstream_50ms", 1, b, args.timeout))  # fmt: skip
        b = n(20000)
        record("sync no-op", "sync", "no-op", 1, b, run_sync(port, 0.0, b, args.timeout))
        b = n(200)
        record("sync 50 ms", "sync", "50 ms", 1, b, run_sync(port, 0.05, b, args.timeout))
        b = n(8000)
        for processes in (1, 2, 4):
            record(f"drain, {processes} process(es)", "template", "50 ms", processes, b,
                   run_template(port, "upstream_50ms", processes, b, args.timeout))  # fmt: skip
    by = {r["name"]: r for r in rows}
    summary = {
        "async_over_sync_50ms": round(
            by["async 50 ms"]["messages_per_second"] / by["sync 50 ms"]["messages_per_second"], 1
        ),
        "drain_speedup_4_over_1": round(
            by["drain, 1 process(es)"]["seconds"] / by["drain, 4 process(es)"]["seconds"], 2
        ),
    }
    print(json.dumps(summary))
    if args.out:
        result = {
            "benchmark": "consumer_throughput",
            "cpus": os.cpu_count(),
            "redis": subprocess.run(
                ["redis-server", "--version"], capture_output=True, text=True, check=False
            ).stdout.strip(),
            "template_concurrency": 32,
            "rows": rows,
            "summary": summary,
        }
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
