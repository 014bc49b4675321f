"""Operator settings from command-line flags, falling back to the environment."""

from __future__ import annotations

import argparse
import dataclasses
import os
import random
import re
from collections.abc import Mapping, Sequence

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

    @property
    def clusterwide(self) -> bool:
        return not self.namespaces

    def effective_priority(self) -> int:
        return self.priority if self.priority is not None else random.randint(*PRIORITY_RANGE)


def _port(value: str, name: str, allow_zero: bool = False) -> int:
    try:
        port = int(value)
    except ValueError:
        raise SettingsError(f"{name} must be a port number, got {value!r}") from None
    low = 0 if allow_zero else 1
    if not low <= port <= 65535:
        raise SettingsError(f"{name} must be between {low} and 65535, got {port}")
    return port


def _namespaces(values: Sequence[str], name: str) -> tuple[str, ...]:
    out: list[str] = []
    for raw in values:
        for item in raw.split(","):
            ns = item.strip()
            if not ns:
                continue
            if len(ns) > 63 or not _DNS_LABEL.match(ns):
                raise SettingsError(f"{name}: {ns!r} is not a valid namespace name")
            if ns not in out:
                out.append(ns)
    return tuple(out)


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
    run.add_argument(
        "--namespace",
        "-n",
        action="append",
        default=None,
        metavar="NS",
        help="watch this namespace (repeatable); env TORNADO_OPERATOR_NAMESPACES (comma list). "
        "Default: all namespaces",
    )
    run.add_argument(
        "--all-namespaces", "-A", action="store_true", help="watch all namespaces (the default)"
    )
    run.add_argument(
        "--default-image", help=f"image when spec.image is unset (default {DEFAULT_IMAGE})"
    )
    run.add_argument("--health-port", help="liveness endpoint /healthz port (default 8081)")
    run.add_argument("--metrics-port", help="Prometheus /metrics port, 0 to disable (default 8080)")
    run.add_argument("--log-format", help="json or plain (default json)")
    run.add_argument("--log-level", help="DEBUG, INFO, WARNING or ERROR (default INFO)")
    run.add_argument("--peering", help="kopf peering object name (default tornado-operator)")
    run.add_argument(
        "--standalone", action="store_true", default=None, help="no peering (development only)"
    )
    run.add_argument(
        "--peering-wait",
        help="seconds to wait at start for the peering object before giving up (default 120)",
    )
    run.add_argument(
        "--priority",
        help="peering priority; default: random per process, so exactly one replica is active",
    )
    return p


def from_args(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> Settings:
    """Settings from parsed `run` flags; unset flags fall back to the environment."""
    env = os.environ if env is None else env

    def pick(flag: object, var: str) -> str | None:
        if flag is not None:
            return str(flag)
        value = env.get(ENV_PREFIX + var)
        return value if value not in (None, "") else None

    base = Settings()
    if args.all_namespaces and args.namespace:
        raise SettingsError("--namespace and --all-namespaces exclude each other")
    if args.all_namespaces:
        namespaces: tuple[str, ...] = ()
    elif args.namespace:
        namespaces = _namespaces(args.namespace, "--namespace")
    else:
        namespaces = _namespaces(
            [env.get(ENV_PREFIX + "NAMESPACES", "")], ENV_PREFIX + "NAMESPACES"
        )

    image = pick(args.default_image, "DEFAULT_IMAGE") or base.default_image
    if any(c.isspace() for c in image):
        raise SettingsError(f"default image {image!r} must not contain whitespace")
    health = pick(args.health_port, "HEALTH_PORT")
    metrics = pick(args.metrics_port, "METRICS_PORT")
    log_format = (pick(args.log_format, "LOG_FORMAT") or base.log_format).lower()
    if log_format not in ("json", "plain"):
        raise SettingsError(f"log format must be json or plain, got {log_format!r}")
    log_level = (pick(args.log_level, "LOG_LEVEL") or base.log_level).upper()
    if log_level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise SettingsError(f"log level must be DEBUG, INFO, WARNING or ERROR, got {log_level!r}")
    peering = pick(args.peering, "PEERING") or base.peering
    if len(peering) > 253 or not _DNS_SUBDOMAIN.match(peering):
        raise SettingsError(f"peering name {peering!r} is not a valid object name")
    standalone_raw = pick(args.standalone, "STANDALONE")
    standalone = standalone_raw is not None and standalone_raw.lower() in ("1", "true", "yes")
    priority_raw = pick(args.priority, "PRIORITY")
    priority = None
    if priority_raw is not None:
        try:
            priority = int(priority_raw)
        except ValueError:
            raise SettingsError(f"priority must be an integer, got {priority_raw!r}") from None
    wait_raw = pick(args.peering_wait, "PEERING_WAIT")
    peering_wait = base.peering_wait_seconds
    if wait_raw is not None:
        try:
            peering_wait = float(wait_raw)
        except ValueError:
            peering_wait = -1.0
        if not 0 <= peering_wait <= 3600:
            raise SettingsError(f"peering wait must be 0..3600 seconds, got {wait_raw!r}")
    return Settings(
        namespaces=namespaces,
        default_image=image,
        health_port=_port(health, "health port") if health else base.health_port,
        metrics_port=_port(metrics, "metrics port", allow_zero=True)
        if metrics
        else base.metrics_port,
        log_format=log_format,
        log_level=log_level,
        peering=peering,
        standalone=standalone,
        priority=priority,
        peering_wait_seconds=peering_wait,
    )


def from_env(env: Mapping[str, str] | None = None) -> Settings:
    """Settings from the environment alone (as when kopf itself loads the handlers)."""
    return from_args(parser().parse_args(["run"]), env)
