"""The consumer template's image and the broker's image, together: built the way the cluster
tests build images, run read-only as non-root with all capabilities dropped, the consumer in
the broker's network namespace (loopback only: the builds and runs need no Docker bridge)."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator

import pytest

from hack import images


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check)


def wait(what: str, check: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def get(container: str, path: str) -> tuple[int, str]:
    script = (
        "import sys, urllib.request, urllib.error\n"
        "try:\n"
        f"    r = urllib.request.urlopen('http://127.0.0.1:8080{path}', timeout=5)\n"
        "    print(r.status); print(r.read().decode())\n"
        "except urllib.error.HTTPError as e:\n"
        "    print(e.code); print(e.read().decode())\n"
    )
    out = docker("exec", container, "/opt/venv/bin/python", "-c", script, check=False).stdout
    status, _, body = out.partition("\n")
    return (int(status) if status.strip().isdigit() else 0), body


@pytest.fixture(scope="module")
def built() -> tuple[str, str]:
    return images.build_broker_image(), images.build_consumer_template_image()


@pytest.fixture
def pair(built: tuple[str, str]) -> Iterator[tuple[str, str]]:
    broker_image, consumer_image = built
    suffix = uuid.uuid4().hex[:8]
    broker, consumer = f"broker-test-{suffix}", f"consumer-test-{suffix}"
    hardening = ["--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges"]
    try:
        docker("run", "-d", "--name", broker, "--network", "none", *hardening,
               "--tmpfs", "/data:uid=10003,gid=10003", broker_image)  # fmt: skip
        wait("the broker's PONG", lambda: "PONG" in docker(
            "exec", broker, "redis-cli", "ping", check=False).stdout)  # fmt: skip
        docker("run", "-d", "--name", consumer, "--network", f"container:{broker}", *hardening,
               "-e", "STREAM=events", "-e", "CREATE_GROUP=true", "-e", "CREATE_STREAM=true",
               "-e", "SHUTDOWN_TIMEOUT_SECONDS=5", consumer_image)  # fmt: skip
        yield broker, consumer
    finally:
        docker("rm", "-f", consumer, broker, check=False)


@pytest.mark.cluster  # needs Docker and the local base image, like the template's image test
def test_the_consumer_image_consumes_from_the_broker_image_and_stops_cleanly(
    pair: tuple[str, str],
) -> None:
    broker, consumer = pair
    for name, uid in ((broker, "10003"), (consumer, "10001")):
        assert docker("exec", name, "id", "-u").stdout.strip() == uid
    wait("the consumer ready", lambda: get(consumer, "/readyz")[0] == 200)
    assert docker("exec", broker, "redis-cli", "config", "get", "appendonly").stdout.split() == [
        "appendonly",
        "yes",
    ]
    docker("exec", broker, "sh", "-c",
           'for i in $(seq 50); do redis-cli xadd events "*" n "$i" >/dev/null; done')  # fmt: skip

    def processed() -> bool:
        _, body = get(consumer, "/metrics")
        return "consumer_messages_processed_total 50.0" in body

    wait("50 processed", processed)
    pending = docker("exec", broker, "redis-cli", "xpending", "events", "hello-consumer")
    assert pending.stdout.split()[0] == "0"
    assert get(consumer, "/livez")[0] == 200

    for name in (consumer, broker):
        docker("stop", "-t", "30", name)
        assert docker("inspect", "-f", "{{.State.ExitCode}}", name).stdout.strip() == "0"
    lines = [json.loads(line) for line in docker("logs", consumer).stdout.splitlines() if line]
    assert lines[-1]["msg"] == "stopped" and lines[-1]["unfinished"] == 0
    assert "ready to exit" in docker("logs", broker).stdout
