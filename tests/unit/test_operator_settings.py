"""Operator settings from flags and the environment."""

from __future__ import annotations

import pytest
from tornado_operator import DEFAULT_IMAGE
from tornado_operator import settings as s


def parse(argv: list[str], env: dict[str, str] | None = None) -> s.Settings:
    return s.from_args(s.parser().parse_args(["run", *argv]), env or {})


def test_defaults() -> None:
    cfg = parse([])
    assert cfg == s.Settings()
    assert cfg.clusterwide and cfg.default_image == DEFAULT_IMAGE
    assert (cfg.health_port, cfg.metrics_port) == (8081, 8080)
    assert cfg.peering == "tornado-operator" and not cfg.standalone and cfg.log_format == "json"


def test_environment() -> None:
    cfg = parse(
        [],
        {
            "TORNADO_OPERATOR_NAMESPACES": "a, b,,a",
            "TORNADO_OPERATOR_DEFAULT_IMAGE": "example/x:1",
            "TORNADO_OPERATOR_HEALTH_PORT": "9001",
            "TORNADO_OPERATOR_METRICS_PORT": "0",
            "TORNADO_OPERATOR_LOG_FORMAT": "PLAIN",
            "TORNADO_OPERATOR_PEERING": "ops",
            "TORNADO_OPERATOR_STANDALONE": "true",
            "TORNADO_OPERATOR_PRIORITY": "7",
        },
    )
    assert cfg.namespaces == ("a", "b") and not cfg.clusterwide
    assert cfg.default_image == "example/x:1"
    assert (cfg.health_port, cfg.metrics_port) == (9001, 0)
    assert cfg.log_format == "plain" and cfg.peering == "ops" and cfg.standalone
    assert cfg.effective_priority() == 7


def test_flags_win_over_environment() -> None:
    env = {"TORNADO_OPERATOR_NAMESPACES": "a", "TORNADO_OPERATOR_DEFAULT_IMAGE": "env/x:1"}
    cfg = parse(["-n", "b", "--namespace", "c", "--default-image", "flag/x:2"], env)
    assert cfg.namespaces == ("b", "c") and cfg.default_image == "flag/x:2"
    assert parse(["--all-namespaces"], env).clusterwide


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["-n", "Bad_NS"], {}, "--namespace: 'Bad_NS' is not a valid namespace name"),
        ([], {"TORNADO_OPERATOR_NAMESPACES": "ok,-bad"}, "TORNADO_OPERATOR_NAMESPACES: '-bad'"),
        (["--health-port", "http"], {}, "health port must be a port number"),
        (["--metrics-port", "70000"], {}, "metrics port must be between 0 and 65535"),
        (["--health-port", "0"], {}, "health port must be between 1 and 65535"),
        (["--log-format", "xml"], {}, "log format must be json or plain"),
        (["--log-level", "LOUD"], {}, "log level must be"),
        (["--peering", "Not Valid"], {}, "peering name 'Not Valid'"),
        (["--priority", "high"], {}, "priority must be an integer"),
        (["--default-image", "a b"], {}, "must not contain whitespace"),
        (["-n", "a", "-A"], {}, "exclude each other"),
    ],
)
def test_bad_values_name_the_setting(argv: list[str], env: dict[str, str], message: str) -> None:
    with pytest.raises(s.SettingsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse(argv, env)


def test_random_priorities_differ() -> None:
    cfg = s.Settings()
    draws = {cfg.effective_priority() for _ in range(50)}
    assert len(draws) > 45
    assert all(s.PRIORITY_RANGE[0] <= p <= s.PRIORITY_RANGE[1] for p in draws)


def test_cli_reports_bad_settings(capsys: pytest.CaptureFixture[str]) -> None:
    from tornado_operator.__main__ import main

    with pytest.raises(SystemExit) as info:
        main(["run", "--log-format", "xml"])
    assert info.value.code == 2
    assert "log format must be json or plain" in capsys.readouterr().err


def test_peering_wait_from_flag_and_environment() -> None:
    assert parse([]).peering_wait_seconds == 120
    assert parse(["--peering-wait", "2.5"]).peering_wait_seconds == 2.5
    assert parse([], {"TORNADO_OPERATOR_PEERING_WAIT": "0"}).peering_wait_seconds == 0


@pytest.mark.parametrize("bad", ["-1", "soon", "3601"])
def test_bad_peering_wait_is_named(bad: str) -> None:
    with pytest.raises(s.SettingsError, match=f"peering wait must be 0..3600 seconds, got '{bad}'"):
        parse(["--peering-wait", bad])
