"""Operator settings from command-line flags, falling back to the environment.

`SETTINGS` is the one table of them (as the service template's config.py has one): each row names
the Settings field, its flag, its TORNADO_OPERATOR_* variable, its parser and its help. The
`run` parser and the environment fallback are both derived from it. The CLI hands the result
to kopf in its `memo`; when kopf loads the handlers itself, they read the environment.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import random
import re
from collections.abc import Callable, Mapping
from typing import Any

from tornado_operator import DEFAULT_IMAGE

ENV_PREFIX = "TORNADO_OPERATOR_"
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
# kopf pauses every peer that sees another live peer of the same priority (all replicas stop),
# so each replica draws its own priority from a range wide enough that ties never happen.
PRIORITY_RANGE = (1, 2**31 - 1)


class SettingsError(ValueError):
    """A flag or environment variable has a bad value; the message names it."""


@dataclasses.dataclass(frozen=True)
class Settings:
    namespaces: tuple[str, ...] = ()  # empty: all namespaces
    default_image: str = DEFAULT_IMAGE
    health_port: int = 8081
    metrics_port: int = 8080  # 0: no metrics endpoint
    log_format: str = "json"
    log_level: str = "INFO"
    peering: str = "tornado-operator"
    standalone: bool = False
    priority: int | None = None  # None: random per process
    # On a first `helm install` the peering object can appear a moment after the pods start.
    peering_wait_seconds: float = 120.0
    # How long a replica's peering record counts as alive without a keep-alive: a standby takes
    # over at most this long after the active replica's last keep-alive (kopf's default is 60).
    peering_lifetime_seconds: int = 10
    # The concurrency autoscaler (spec.autoscaling.metric concurrency). The defaults are
    # autoscaling.scrape's and autoscaling.algorithm's constants (a unit test checks).
    scrape_via: str = "direct"  # or "apiserver": the API server's pod proxy
    scrape_concurrency: int = 32  # scrapes in flight at once, across all services
    scrape_timeout_seconds: float = 1.0
    scrape_interval_seconds: float = 2.0
    # The namespace of the operator's own pods (the chart passes it): every TornadoService's
    # NetworkPolicy lets them in to scrape /metrics. Empty: outside the cluster (node traffic).
    pod_namespace: str = ""

    @property
    def clusterwide(self) -> bool:
        return not self.namespaces

    def effective_priority(self) -> int:
        return self.priority if self.priority is not None else random.randint(*PRIORITY_RANGE)


# A parser gets the raw text and where it came from (a flag or a variable name, for messages).
Parser = Callable[[str, str], Any]


@dataclasses.dataclass(frozen=True)
class Setting:
    field: str  # the Settings field
    flag: str  # long option of `run`
    env: str  # variable name after ENV_PREFIX
    parse: Parser
    help: str
    show_default: bool = True  # append "(default X)" to the help
    short: str | None = None
    metavar: str | None = None
    repeatable: bool = False  # the flag may be given more than once; values join with ","
    switch: bool = False  # a flag without a value; the variable is true for 1, true or yes

    @property
    def variable(self) -> str:
        return ENV_PREFIX + self.env

    @property
    def dest(self) -> str:
        return self.flag.removeprefix("--").replace("-", "_")

    @property
    def default(self) -> Any:
        return _FIELDS[self.field].default


def _port(name: str, allow_zero: bool = False) -> Parser:
    low = 0 if allow_zero else 1

    def parse(value: str, _where: str) -> int:
        try:
            port = int(value)
        except ValueError:
            raise SettingsError(f"{name} must be a port number, got {value!r}") from None
        if not low <= port <= 65535:
            raise SettingsError(f"{name} must be between {low} and 65535, got {port}")
        return port

    return parse


def _namespaces(value: str, where: str) -> tuple[str, ...]:
    out: list[str] = []
    for item in value.split(","):
        ns = item.strip()
        if not ns:
            continue
        if len(ns) > 63 or not _DNS_LABEL.match(ns):
            raise SettingsError(f"{where}: {ns!r} is not a valid namespace name")
        if ns not in out:
            out.append(ns)
    return tuple(out)


def _image(value: str, _where: str) -> str:
    if any(c.isspace() for c in value):
        raise SettingsError(f"default image {value!r} must not contain whitespace")
    return value


def _log_format(value: str, _where: str) -> str:
    log_format = value.lower()
    if log_format not in ("json", "plain"):
        raise SettingsError(f"log format must be json or plain, got {log_format!r}")
    return log_format


def _log_level(value: str, _where: str) -> str:
    log_level = value.upper()
    if log_level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise SettingsError(f"log level must be DEBUG, INFO, WARNING or ERROR, got {log_level!r}")
    return log_level


def _peering(value: str, _where: str) -> str:
    if len(value) > 253 or not _DNS_SUBDOMAIN.match(value):
        raise SettingsError(f"peering name {value!r} is not a valid object name")
    return value


def _switch(value: str, _where: str) -> bool:
    return value.lower() in ("1", "true", "yes")


def _priority(value: str, _where: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise SettingsError(f"priority must be an integer, got {value!r}") from None


def _peering_wait(value: str, _where: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= 3600:
        raise SettingsError(f"peering wait must be 0..3600 seconds, got {value!r}")
    return seconds


def _whole_seconds(name: str, low: int, high: int) -> Parser:
    def parse(value: str, _where: str) -> int:
        try:
            seconds = int(value)
        except ValueError:
            seconds = low - 1
        if not low <= seconds <= high:
            raise SettingsError(f"{name} must be {low}..{high} whole seconds, got {value!r}")
        return seconds

    return parse


def _scrape_via(value: str, _where: str) -> str:
    via = value.lower()
    if via not in ("direct", "apiserver"):
        raise SettingsError(f"scrape via must be direct or apiserver, got {via!r}")
    return via


def _pod_namespace(value: str, where: str) -> str:
    if len(value) > 63 or not _DNS_LABEL.match(value):
        raise SettingsError(f"{where}: {value!r} is not a valid namespace name")
    return value


def _count(name: str, low: int, high: int) -> Parser:
    def parse(value: str, _where: str) -> int:
        try:
            count = int(value)
        except ValueError:
            count = low - 1
        if not low <= count <= high:
            raise SettingsError(f"{name} must be {low}..{high}, got {value!r}")
        return count

    return parse


def _seconds(name: str, low: float, high: float) -> Parser:
    def parse(value: str, _where: str) -> float:
        try:
            seconds = float(value)
        except ValueError:
            seconds = low - 1
        if not low <= seconds <= high:
            raise SettingsError(f"{name} must be {low:g}..{high:g} seconds, got {value!r}")
        return seconds

    return parse


# fmt: off
SETTINGS: tuple[Setting, ...] = (
    Setting("namespaces", "--namespace", "NAMESPACES", _namespaces,
            "watch this namespace (repeatable); env TORNADO_OPERATOR_NAMESPACES (comma list). "
            "Default: all namespaces",
            show_default=False, short="-n", metavar="NS", repeatable=True),
    Setting("default_image", "--default-image", "DEFAULT_IMAGE", _image,
            "image when spec.image is unset"),
    Setting("health_port", "--health-port", "HEALTH_PORT", _port("health port"),
            "liveness endpoint /healthz port"),
    Setting("metrics_port", "--metrics-port", "METRICS_PORT", _port("metrics port", True),
            "Prometheus /metrics port, 0 to disable"),
    Setting("log_format", "--log-format", "LOG_FORMAT", _log_format, "json or plain"),
    Setting("log_level", "--log-level", "LOG_LEVEL", _log_level,
            "DEBUG, INFO, WARNING or ERROR"),
    Setting("peering", "--peering", "PEERING", _peering, "kopf peering object name"),
    Setting("standalone", "--standalone", "STANDALONE", _switch,
            "no peering (development only)", show_default=False, switch=True),
    Setting("peering_wait_seconds", "--peering-wait", "PEERING_WAIT", _peering_wait,
            "seconds to wait at start for the peering object before giving up"),
    Setting("peering_lifetime_seconds", "--peering-lifetime", "PEERING_LIFETIME",
            _whole_seconds("peering lifetime", 5, 3600),
            "seconds a replica's peering record stays valid without a keep-alive: the longest "
            "a standby waits for a replica that died"),
    Setting("priority", "--priority", "PRIORITY", _priority,
            "peering priority; default: random per process, so exactly one replica is active",
            show_default=False),
    Setting("scrape_via", "--scrape-via", "SCRAPE_VIA", _scrape_via,
            "how the concurrency autoscaler reads pods' /metrics: direct (pod IP and port) or "
            "apiserver (the API server's pod proxy, for an operator outside the cluster network; "
            "needs RBAC get on pods/proxy)"),
    Setting("scrape_concurrency", "--scrape-concurrency", "SCRAPE_CONCURRENCY",
            _count("scrape concurrency", 1, 1000),
            "pod scrapes in flight at once, across all services"),
    Setting("scrape_timeout_seconds", "--scrape-timeout", "SCRAPE_TIMEOUT",
            _seconds("scrape timeout", 0.1, 10), "seconds a pod's /metrics may take"),
    Setting("scrape_interval_seconds", "--scrape-interval", "SCRAPE_INTERVAL",
            _seconds("scrape interval", 0.5, 6),
            "seconds between the concurrency autoscaler's scrapes and decisions (at most the "
            "6 s panic window)"),
    Setting("pod_namespace", "--pod-namespace", "POD_NAMESPACE", _pod_namespace,
            "namespace the operator's own pods run in (the chart sets it): every TornadoService's "
            "NetworkPolicy lets its pods labelled app.kubernetes.io/part-of=tornado-operator, "
            "component=operator in to scrape /metrics. Default: none, for an operator outside the "
            "cluster, whose scrapes come from a node, which NetworkPolicies always let in",
            show_default=False, metavar="NS"),
)
# fmt: on

_FIELDS = {f.name: f for f in dataclasses.fields(Settings)}
ALL_NAMESPACES_HELP = "watch all namespaces (the default)"


def _help(setting: Setting) -> str:
    if not setting.show_default:
        return setting.help
    default = setting.default
    shown = f"{default:g}" if isinstance(default, float) else str(default)
    return f"{setting.help} (default {shown})"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tornado-operator",
        description="Kubernetes operator: TornadoService -> Deployment, Service, HPA, PDB.",
    )
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser(
        "run",
        help="run the operator",
        description="Run the operator. Every flag falls back to a TORNADO_OPERATOR_* variable.",
    )
    for setting in SETTINGS:
        names = [setting.flag, *([setting.short] if setting.short else [])]
        options: dict[str, Any] = {"dest": setting.dest, "help": _help(setting)}
        if setting.switch:
            options.update(action="store_true", default=None)
        elif setting.repeatable:
            options.update(action="append", default=None, metavar=setting.metavar)
        elif setting.metavar:
            options["metavar"] = setting.metavar
        run.add_argument(*names, **options)
        if setting.field == "namespaces":
            # Not a setting of its own: the explicit spelling of the namespaces' default.
            run.add_argument(
                "--all-namespaces", "-A", action="store_true", help=ALL_NAMESPACES_HELP
            )
    return p


def from_args(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> Settings:
    """Settings from parsed `run` flags; unset flags fall back to the environment. An empty
    value means the default; `--all-namespaces` overrides the environment's namespaces."""
    env = os.environ if env is None else env
    if args.all_namespaces and args.namespace:
        raise SettingsError("--namespace and --all-namespaces exclude each other")
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        if setting.field == "namespaces" and args.all_namespaces:
            continue  # the default: all namespaces
        flag = getattr(args, setting.dest)
        if flag is not None:
            raw = ",".join(flag) if setting.repeatable else str(flag)
            where = setting.flag
        else:
            raw = env.get(setting.variable) or ""
            where = setting.variable
        if raw:
            values[setting.field] = setting.parse(raw, where)
    return dataclasses.replace(Settings(), **values)


def from_env(env: Mapping[str, str] | None = None) -> Settings:
    """Settings from the environment alone (as when kopf itself loads the handlers)."""
    return from_args(parser().parse_args(["run"]), env)
