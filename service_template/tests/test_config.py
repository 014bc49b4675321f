"""A bad configuration is refused at start, with one clear line."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from hello import SERVICE_NAME

from support import PACKAGE, SERVICE_ROOT, Service, launch, stop


def run_with(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    full_env.update({"BIND_ADDRESS": "127.0.0.1", "PYTHONDONTWRITEBYTECODE": "1"})
    full_env.update(env)
    return subprocess.run(
        [sys.executable, "-m", PACKAGE],
        cwd=SERVICE_ROOT,
        env=full_env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=20,
    )


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PORT", "http"),
        ("PORT", "0"),
        ("PORT", "70000"),
        ("DRAIN_DELAY_SECONDS", "-1"),
        ("SHUTDOWN_TIMEOUT_SECONDS", "0"),
        ("COMPOSE_DEADLINE_SECONDS", "nan"),
        ("UPSTREAMS", "just-a-url"),
        ("UPSTREAMS", "a=ftp://example.test/"),
        ("UPSTREAMS", "a=http://127.0.0.1:1/,a=http://127.0.0.1:2/"),
        ("UPSTREAMS", "a=http://127.0.0.1:notaport/"),
        ("UPSTREAMS", "a=http://127.0.0.1:1/ timeout=0"),
        ("UPSTREAMS", "a=http://127.0.0.1:1/ retries=2"),
        ("UPSTREAMS", "a=http://127.0.0.1:1/ colour=red"),
        ("UPSTREAMS", "a=http://127.0.0.1:1/ timeout=1 timeout=2"),
        ("UPSTREAM_RETRIES", "2"),
        ("LOG_PROBES", "sometimes"),
        ("MAX_BODY_BYTES", "1MB"),
    ],
)
def test_bad_value_stops_the_process_with_one_line(variable: str, value: str) -> None:
    result = run_with({variable: value})
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"{SERVICE_NAME}: invalid configuration: {variable}=")
    assert repr(value) in lines[0]


def test_every_bad_variable_is_named_in_the_one_line() -> None:
    result = run_with({"PORT": "x", "UPSTREAM_RETRIES": "9"})
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1
    assert "PORT='x'" in lines[0] and "UPSTREAM_RETRIES='9'" in lines[0]


def test_credentials_in_upstream_urls_are_not_echoed() -> None:
    result = run_with({"UPSTREAMS": "a=http://user:s3cret@127.0.0.1:1/,a=http://127.0.0.1:2/"})
    assert result.returncode == 2
    assert "appears twice" in result.stderr
    assert "s3cret" not in result.stderr


def test_port_in_use_is_one_clear_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_with({"PORT": str(port)})
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"{SERVICE_NAME}: cannot listen on 127.0.0.1:{port}")


def test_good_values_are_accepted() -> None:
    svc: Service = launch(
        {
            "UPSTREAMS": " a=http://127.0.0.1:1/x , b.v2=https://example.test:8443/  timeout=0.25 "
            "retries=0",
            "LOG_PROBES": "off",
            "UPSTREAM_RETRIES": "0",
            "COMPOSE_DEADLINE_SECONDS": "0.5",
        }
    )
    try:
        assert svc.wait_for_log(lambda e: e.get("msg") == "started")["upstreams"] == ["a", "b.v2"]
    finally:
        stop(svc)


def test_upstream_options_are_parsed() -> None:
    from hello import config

    cfg = config.load({"UPSTREAMS": "a=http://a.test/ timeout=0.5 retries=0,b=http://b.test:81/"})
    assert cfg.upstreams == (
        config.Upstream("a", "http://a.test/", timeout=0.5, retries=0),
        config.Upstream("b", "http://b.test:81/"),
    )
