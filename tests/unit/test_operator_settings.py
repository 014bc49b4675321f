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
        (["--scrape-via", "ssh"], {}, "scrape via must be direct or apiserver, got 'ssh'"),
        (["--scrape-concurrency", "0"], {}, "scrape concurrency must be 1..1000, got '0'"),
        ([], {"TORNADO_OPERATOR_SCRAPE_TIMEOUT": "soon"}, "scrape timeout must be 0.1..10 sec"),
        (["--scrape-interval", "30"], {}, "scrape interval must be 0.5..6 seconds, got '30'"),
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


def test_peering_lifetime_is_ten_seconds_unless_set() -> None:
    # A standby waits at most this long for a replica that died (issue 13: failover < 15 s).
    assert parse([]).peering_lifetime_seconds == 10
    assert parse(["--peering-lifetime", "30"]).peering_lifetime_seconds == 30


@pytest.mark.parametrize("bad", ["4", "3601", "2.5", "ten"])
def test_bad_peering_lifetime_is_named(bad: str) -> None:
    with pytest.raises(
        s.SettingsError, match=f"peering lifetime must be 5..3600 whole seconds, got '{bad}'"
    ):
        parse([], {"TORNADO_OPERATOR_PEERING_LIFETIME": bad})


def test_one_row_per_setting() -> None:
    fields = [f.name for f in s.dataclasses.fields(s.Settings)]
    assert sorted(row.field for row in s.SETTINGS) == sorted(fields)
    assert len({row.flag for row in s.SETTINGS}) == len(fields)
    assert len({row.env for row in s.SETTINGS}) == len(fields)


GOOD = {
    "namespaces": ("a,b", ("a", "b")),
    "default_image": ("example/x:1", "example/x:1"),
    "health_port": ("9001", 9001),
    "metrics_port": ("0", 0),
    "log_format": ("plain", "plain"),
    "log_level": ("debug", "DEBUG"),
    "peering": ("ops", "ops"),
    "standalone": ("yes", True),
    "peering_wait_seconds": ("2.5", 2.5),
    "peering_lifetime_seconds": ("15", 15),
    "priority": ("7", 7),
    "scrape_via": ("APIServer", "apiserver"),
    "scrape_concurrency": ("8", 8),
    "scrape_timeout_seconds": ("0.5", 0.5),
    "scrape_interval_seconds": ("1.5", 1.5),
    "pod_namespace": ("tornado-operator", "tornado-operator"),
}


@pytest.mark.parametrize("row", s.SETTINGS, ids=lambda row: row.field)
def test_flag_and_variable_of_each_row(row: s.Setting) -> None:
    raw, value = GOOD[row.field]
    assert getattr(parse([], {row.variable: raw}), row.field) == value
    argv = [row.flag] if row.switch else [row.flag, raw]
    assert getattr(parse(argv), row.field) == value
    assert getattr(parse([], {row.variable: ""}), row.field) == row.default


def test_help_names_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "500")
    text = " ".join(s.parser()._subparsers._group_actions[0].choices["run"].format_help().split())
    assert "[--namespace NS] [--all-namespaces] [--default-image DEFAULT_IMAGE]" in text
    for line in (
        f"image when spec.image is unset (default {DEFAULT_IMAGE})",
        "liveness endpoint /healthz port (default 8081)",
        "Prometheus /metrics port, 0 to disable (default 8080)",
        "json or plain (default json)",
        "DEBUG, INFO, WARNING or ERROR (default INFO)",
        "kopf peering object name (default tornado-operator)",
        "seconds to wait at start for the peering object before giving up (default 120)",
        "--namespace NS, -n NS",
        "--all-namespaces, -A",
    ):
        assert line in text
