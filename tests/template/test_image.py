"""The template's image: its Dockerfile follows the project's image rules, and it runs.

The static checks need nothing; the run test builds the image the way the cluster
tests do (local base image, host-fetched wheels) and runs it with a read-only root
filesystem as a non-root user.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import tomllib
import urllib.request
import uuid
from collections.abc import Iterator

import pytest

from tests.template.support import REPO, TEMPLATE, free_port

DOCKERFILE = (TEMPLATE / "Dockerfile").read_text()
INSTRUCTIONS = [
    line.strip()
    for line in re.sub(r"\\\n", " ", DOCKERFILE).splitlines()
    if line.strip() and not line.lstrip().startswith("#")
]


def instructions(keyword: str) -> list[str]:
    return [i.split(None, 1)[1] for i in INSTRUCTIONS if i.split(None, 1)[0].upper() == keyword]


def test_base_image_is_an_argument_defaulting_to_official_python_slim() -> None:
    assert INSTRUCTIONS[0] == "ARG BASE_IMAGE=python:3.11-slim-bookworm"
    froms = instructions("FROM")
    assert len(froms) >= 2, "multi-stage: build stage and runtime stage"
    assert all(f.split()[0] == "${BASE_IMAGE}" for f in froms)


def test_wheels_are_installed_offline_into_a_venv_copied_to_the_final_stage() -> None:
    assert "wheels/ /wheels/" in instructions("COPY")
    run = " ".join(instructions("RUN"))
    assert "python3 -m venv /opt/venv" in run
    assert "/opt/venv/bin/pip install --no-index --find-links /wheels -r" in run
    final_stage = DOCKERFILE.rsplit("FROM ", 1)[1]
    assert "COPY --from=build /opt/venv /opt/venv" in final_stage
    assert "wheels" not in final_stage


def test_runs_as_numeric_non_root_user_with_exec_form_cmd() -> None:
    (user,) = instructions("USER")
    match = re.fullmatch(r"(\d+)(?::(\d+))?", user)
    assert match and int(match.group(1)) > 0
    (cmd,) = instructions("CMD")
    assert json.loads(cmd) == ["/opt/venv/bin/python", "-m", "hello"]


def test_nothing_is_written_at_run_time_and_no_latest_tag() -> None:
    assert "PYTHONDONTWRITEBYTECODE=1" in " ".join(instructions("ENV"))
    assert ":latest" not in DOCKERFILE


def test_requirements_pins_match_the_template_extra() -> None:
    pins = {
        line.strip()
        for line in (TEMPLATE / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert all("==" in pin for pin in pins)
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert pins == set(pyproject["project"]["optional-dependencies"]["template"])


@pytest.fixture(scope="module")
def image() -> str:
    from hack import images

    return images.build_template_image()


@pytest.fixture
def container(image: str) -> Iterator[tuple[str, int]]:
    name = f"tornado-template-test-{uuid.uuid4().hex[:8]}"
    port = free_port()
    started = subprocess.run(
        [
            "docker", "run", "-d", "--name", name,
            "--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
            "-p", f"127.0.0.1:{port}:8080",
            "-e", "DRAIN_DELAY_SECONDS=1", "-e", "SHUTDOWN_TIMEOUT_SECONDS=5",
            image,
        ],
        capture_output=True, text=True,
    )  # fmt: skip
    assert started.returncode == 0, f"docker run exited {started.returncode}: {started.stderr}"
    try:
        yield name, port
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)


@pytest.mark.cluster  # needs Docker and the local base image, like the cluster tests
def test_image_serves_read_only_as_non_root_and_stops_cleanly(
    container: tuple[str, int],
) -> None:
    name, port = container
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/startupz", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        assert time.monotonic() < deadline, _logs(name)
        time.sleep(0.2)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
        assert json.loads(r.read())["message"] == "Hello, world!"
    uid = subprocess.run(
        ["docker", "exec", name, "id", "-u"], capture_output=True, text=True, check=True
    )
    assert uid.stdout.strip() == "10001"

    stop = subprocess.run(["docker", "stop", "-t", "30", name], capture_output=True, text=True)
    assert stop.returncode == 0, stop.stderr
    state = subprocess.run(
        ["docker", "inspect", "-f", "{{.State.ExitCode}}", name],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert state.stdout.strip() == "0", _logs(name)
    messages = [json.loads(line).get("msg") for line in _logs(name).splitlines() if line]
    assert messages[-3:] == ["draining", "listener closed", "stopped"]


def _logs(name: str) -> str:
    return subprocess.run(["docker", "logs", name], capture_output=True, text=True).stdout
