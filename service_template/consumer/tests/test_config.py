"""Configuration: defaults work, and a bad value is refused naming its variable."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from hello_consumer.config import ENVIRONMENT_VARIABLES, ConfigError, load

from support import SERVICE_ROOT


def test_defaults() -> None:
    config = load({})
    assert config.redis_url == "redis://localhost:6379/0"
    assert (config.stream, config.group) == ("events", "hello-consumer")
    assert config.consumer_name == socket.gethostname()
    assert config.dead_letters == "events.dead-letter"
    assert (config.create_group, config.create_stream) == (False, False)
    assert config.concurrency == 32 and config.max_deliveries == 5 and config.port == 8080


def test_every_setting_is_read() -> None:
    config = load(
        {
            "REDIS_URL": "redis://:secret@broker:6380/2",
            "STREAM": "orders",
            "GROUP": "billing",
            "CONSUMER_NAME": "pod-1",
            "CREATE_GROUP": "true",
            "CREATE_STREAM": "yes",
            "GROUP_START_ID": "$",
            "CONCURRENCY": "8",
            "HANDLER_TIMEOUT_SECONDS": "2",
            "HANDLER": "hello_consumer.examples:noop",
            "MAX_DELIVERIES": "3",
            "DEAD_LETTER_STREAM": "orders.dlq",
            "RETRY_BACKOFF_SECONDS": "0.1",
            "RETRY_BACKOFF_MAX_SECONDS": "1",
            "CLAIM_IDLE_MS": "5000",
            "CLAIM_INTERVAL_SECONDS": "1",
            "BLOCK_MS": "500",
            "STATUS_INTERVAL_SECONDS": "2",
            "PORT": "9090",
            "BIND_ADDRESS": "127.0.0.1",
            "SHUTDOWN_TIMEOUT_SECONDS": "15",
            "LOG_PROBES": "1",
        }
    )
    assert config.dead_letters == "orders.dlq"
    assert (config.concurrency, config.claim_idle_ms, config.port) == (8, 5000, 9090)
    assert config.load_handler().__name__ == "noop"
    assert len(ENVIRONMENT_VARIABLES) == 22


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("REDIS_URL", "http://broker", "redis://"),
        ("REDIS_URL", "redis://broker:99999", "invalid port"),
        ("STREAM", "", "1-256 characters"),
        ("GROUP", "a b", "without spaces"),
        ("CONCURRENCY", "0", "from 1 to 10000"),
        ("MAX_DELIVERIES", "many", "integer"),
        ("CLAIM_IDLE_MS", "10", "from 100"),
        ("RETRY_BACKOFF_SECONDS", "-1", "seconds"),
        ("GROUP_START_ID", "latest", "0 (the whole stream)"),
        ("HANDLER", "handle", "module:function"),
        ("CREATE_GROUP", "maybe", "true or false"),
    ],
)
def test_a_bad_value_names_its_variable(variable: str, value: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load({variable: value})
    assert f"{variable}=" in str(caught.value) and expected in str(caught.value)


def test_settings_that_would_let_live_messages_be_taken_over_are_refused() -> None:
    with pytest.raises(ConfigError, match="HANDLER_TIMEOUT_SECONDS=30 must be less than"):
        load({"HANDLER_TIMEOUT_SECONDS": "30", "CLAIM_IDLE_MS": "30000"})
    with pytest.raises(ConfigError, match="RETRY_BACKOFF_MAX_SECONDS=40 must be less than"):
        load({"RETRY_BACKOFF_MAX_SECONDS": "40"})
    with pytest.raises(ConfigError, match="must differ from STREAM"):
        load({"STREAM": "a", "DEAD_LETTER_STREAM": "a"})


def test_a_password_in_the_broker_url_is_never_echoed() -> None:
    with pytest.raises(ConfigError) as caught:
        load({"REDIS_URL": "redis://user:hunter2@broker:0x/0"})
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"CONCURRENCY": "lots"}, "CONCURRENCY='lots'"),
        ({"HANDLER": "nowhere.at_all:handle"}, "HANDLER='nowhere.at_all:handle'"),
    ],
)
def test_the_process_refuses_bad_settings_with_one_line_and_exit_2(
    env: dict[str, str], expected: str
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "hello_consumer"],
        cwd=SERVICE_ROOT,
        env={
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": str(SERVICE_ROOT),
            "PYTHONDONTWRITEBYTECODE": "1",
            **env,
        },
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and expected in lines[0], lines
    assert result.stdout == ""
