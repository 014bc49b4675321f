"""Configuration from environment variables, checked once at start.

Every setting has a safe default, so the service runs with no environment at all.
A bad value is refused before the port is opened: a pod that cannot work should
fail its start, visibly, rather than serve wrongly.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urlsplit

T = TypeVar("T")

_UPSTREAM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_USERINFO = re.compile(r"//[^/@\s]+@")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class ConfigError(ValueError):
    """One or more environment variables have values the service cannot use."""


@dataclass(frozen=True)
class Upstream:
    """A service the composition endpoint calls: a name for answers and metrics, and a URL.

    `timeout` and `retries`, when set, replace UPSTREAM_TIMEOUT_SECONDS and UPSTREAM_RETRIES for
    this upstream alone (None: the service-wide value).
    """

    name: str
    url: str
    timeout: float | None = None
    retries: int | None = None


@dataclass(frozen=True)
class Config:
    # The listener. PORT is the container port named `http`.
    port: int = 8080
    bind_address: str = ""
    # Shutdown: readiness is 503 for drain_delay while requests are still served (so endpoints
    # and load balancers stop sending), then the listener closes and in-flight requests get
    # up to shutdown_timeout. The operator sizes terminationGracePeriodSeconds from both.
    drain_delay: float = 5.0
    shutdown_timeout: float = 20.0
    # Composition: each call has its own timeout; the whole request has a deadline.
    upstreams: tuple[Upstream, ...] = ()
    upstream_timeout: float = 1.0
    compose_deadline: float = 2.0
    upstream_retries: int = 1
    retry_backoff: float = 0.05
    # Tornado's default of 10 concurrent client requests caps a 5-way fan-out near 40 rps.
    upstream_max_clients: int = 100
    upstream_max_body_bytes: int = 1024 * 1024
    dns_cache_ttl: float = 10.0
    breaker_failure_threshold: int = 5
    breaker_reset: float = 10.0
    # Server limits.
    max_body_bytes: int = 1024 * 1024
    max_header_bytes: int = 64 * 1024
    idle_connection_timeout: float = 60.0
    body_timeout: float = 30.0
    # Probe and metrics requests are not logged unless asked for.
    log_probes: bool = False


def _integer(low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw.strip(), 10)
        except ValueError:
            raise ValueError(f"expected an integer from {low} to {high}") from None
        if not low <= value <= high:
            raise ValueError(f"expected an integer from {low} to {high}")
        return value

    return parse


def _seconds(low: float, high: float, *, low_inclusive: bool = True) -> Callable[[str], float]:
    bound = f"{'at least' if low_inclusive else 'more than'} {low:g} and at most {high:g}"

    def parse(raw: str) -> float:
        try:
            value = float(raw.strip())
        except ValueError:
            raise ValueError(f"expected a number of seconds, {bound}") from None
        too_low = value < low if low_inclusive else value <= low
        if not math.isfinite(value) or too_low or value > high:
            raise ValueError(f"expected a number of seconds, {bound}")
        return value

    return parse


def _boolean(raw: str) -> bool:
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError("expected true or false")


def _address(raw: str) -> str:
    value = raw.strip()
    if any(c.isspace() for c in value) or "/" in value:
        raise ValueError("expected an IP address or host name, or empty for all interfaces")
    return value


# Per-upstream options after the URL (`name=url timeout=0.5 retries=0`): the same bounds as the
# service-wide UPSTREAM_TIMEOUT_SECONDS and UPSTREAM_RETRIES, which they replace for that upstream.
_UPSTREAM_OPTIONS: dict[str, tuple[str, Callable[[str], object]]] = {
    "timeout": ("timeout", _seconds(0, 300, low_inclusive=False)),
    "retries": ("retries", _integer(0, 1)),
}


def _upstreams(raw: str) -> tuple[Upstream, ...]:
    """Parse `name=url,name2=url2 timeout=0.5 retries=0`: a comma list of upstreams, each a
    name=url with optional per-upstream options after spaces (a URL has no unescaped space)."""
    result: list[Upstream] = []
    seen: set[str] = set()
    for item in raw.split(","):
        words = item.split()
        if not words:
            continue
        name, sep, url = words[0].partition("=")
        name, url = name.strip(), url.strip()
        if not sep or not name or not url:
            raise ValueError(f"{item.strip()!r} is not name=url")
        if not _UPSTREAM_NAME.match(name):
            raise ValueError(
                f"upstream name {name!r} must be 1-63 letters, digits, '_', '.' or '-', "
                "starting with a letter or digit"
            )
        if name in seen:
            raise ValueError(f"upstream name {name!r} appears twice")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"upstream {name!r} URL {url!r} must be an absolute http(s) URL")
        try:
            parts.port  # noqa: B018 - urlsplit checks the port only when asked
        except ValueError:
            raise ValueError(f"upstream {name!r} URL {url!r} has an invalid port") from None
        options: dict[str, object] = {}
        for word in words[1:]:
            key, sep, value = word.partition("=")
            if not sep or key not in _UPSTREAM_OPTIONS:
                known = " or ".join(f"{k}=..." for k in _UPSTREAM_OPTIONS)
                raise ValueError(f"upstream {name!r}: {word!r} is not {known}")
            field, parse = _UPSTREAM_OPTIONS[key]
            if field in options:
                raise ValueError(f"upstream {name!r}: {key} appears twice")
            try:
                options[field] = parse(value)
            except ValueError as exc:
                raise ValueError(f"upstream {name!r} {key}: {exc}") from None
        seen.add(name)
        result.append(Upstream(name, url, **options))  # type: ignore[arg-type]
    return tuple(result)


# Environment variable -> (Config field, parser). The one place that names the variables.
_SETTINGS: dict[str, tuple[str, Callable[[str], object]]] = {
    "PORT": ("port", _integer(1, 65535)),
    "BIND_ADDRESS": ("bind_address", _address),
    "DRAIN_DELAY_SECONDS": ("drain_delay", _seconds(0, 3600)),
    "SHUTDOWN_TIMEOUT_SECONDS": ("shutdown_timeout", _seconds(0, 3600, low_inclusive=False)),
    "UPSTREAMS": ("upstreams", _upstreams),
    "UPSTREAM_TIMEOUT_SECONDS": ("upstream_timeout", _seconds(0, 300, low_inclusive=False)),
    "COMPOSE_DEADLINE_SECONDS": ("compose_deadline", _seconds(0, 300, low_inclusive=False)),
    "UPSTREAM_RETRIES": ("upstream_retries", _integer(0, 1)),
    "UPSTREAM_RETRY_BACKOFF_SECONDS": ("retry_backoff", _seconds(0, 60)),
    "UPSTREAM_MAX_CLIENTS": ("upstream_max_clients", _integer(1, 10000)),
    "UPSTREAM_MAX_BODY_BYTES": ("upstream_max_body_bytes", _integer(1, 1 << 30)),
    "UPSTREAM_DNS_CACHE_SECONDS": ("dns_cache_ttl", _seconds(0, 3600)),
    "BREAKER_FAILURE_THRESHOLD": ("breaker_failure_threshold", _integer(1, 1000)),
    "BREAKER_RESET_SECONDS": ("breaker_reset", _seconds(0, 3600, low_inclusive=False)),
    "MAX_BODY_BYTES": ("max_body_bytes", _integer(0, 1 << 30)),
    "MAX_HEADER_BYTES": ("max_header_bytes", _integer(1024, 1 << 20)),
    "IDLE_CONNECTION_TIMEOUT_SECONDS": (
        "idle_connection_timeout",
        _seconds(0, 86400, low_inclusive=False),
    ),
    "BODY_TIMEOUT_SECONDS": ("body_timeout", _seconds(0, 86400, low_inclusive=False)),
    "LOG_PROBES": ("log_probes", _boolean),
}

ENVIRONMENT_VARIABLES = tuple(_SETTINGS)


def load(environ: Mapping[str, str]) -> Config:
    """Build the configuration from `environ`; raise ConfigError naming every bad variable."""
    values: dict[str, object] = {}
    errors: list[str] = []
    for variable, (field, parse) in _SETTINGS.items():
        raw = environ.get(variable)
        if raw is None:
            continue
        try:
            values[field] = parse(raw)
        except ValueError as exc:
            errors.append(f"{variable}={_shorten(raw)!r}: {exc}")
    if errors:
        # Upstream URLs may carry credentials (user:password@host): never echo those.
        message = _USERINFO.sub("//***@", "; ".join(errors))
        raise ConfigError("invalid configuration: " + message)
    return Config(**values)  # type: ignore[arg-type]


def _shorten(raw: str, limit: int = 200) -> str:
    return raw if len(raw) <= limit else raw[:limit] + "..."
