"""Configuration from environment variables, checked once at start.

Every setting but the stream has a safe default. A bad value is refused before
anything connects: one line on stderr naming the variable, and exit code 2.
"""

from __future__ import annotations

import importlib
import math
import re
import socket
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from hello_consumer.message import Message

Handler = Callable[[Message], Awaitable[None]]

_USERINFO = re.compile(r"//[^/@\s]+@")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
_KEY = re.compile(r"^[^\s]{1,256}$")
_STREAM_ID = re.compile(r"^(\$|0|\d+(-\d+)?)$")
_HANDLER = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
DEFAULT_HANDLER = "hello_consumer.handler:handle"


class ConfigError(ValueError):
    """One or more environment variables have values the consumer cannot use."""


@dataclass(frozen=True)
class Config:
    # The broker and what to read. STREAM is the only setting without a default that works.
    redis_url: str = "redis://localhost:6379/0"
    stream: str = "events"
    group: str = "hello-consumer"
    # The consumer's name in the group: the pod name (HOSTNAME) unless set.
    consumer_name: str = field(default_factory=socket.gethostname)
    # Create the group (from GROUP_START_ID) when the stream has none; create the stream too
    # only when CREATE_STREAM is set: a misspelt stream name must show, not be created.
    create_group: bool = False
    create_stream: bool = False
    group_start_id: str = "0"
    # Work: at most `concurrency` handler calls at a time; each has handler_timeout.
    concurrency: int = 32
    handler_timeout: float = 20.0
    handler: str = DEFAULT_HANDLER
    # Failures: retry after retry_backoff * 2**(deliveries-1), at most retry_backoff_max;
    # after max_deliveries deliveries, the message goes to the dead-letter stream.
    max_deliveries: int = 5
    dead_letter_stream: str = ""
    retry_backoff: float = 0.5
    retry_backoff_max: float = 10.0
    # Take-over: every claim_interval, messages pending longer than claim_idle_ms (in
    # any consumer, such as a killed pod) are claimed by this one.
    claim_idle_ms: int = 30000
    claim_interval: float = 5.0
    # Fetching: one XREADGROUP blocks at most block_ms.
    block_ms: int = 1000
    # How often the group's lag and pending count, and readiness, are refreshed.
    status_interval: float = 5.0
    # Health and metrics: /livez, /readyz, /metrics on this port (container port `http`).
    port: int = 8080
    bind_address: str = ""
    # SIGTERM: stop fetching, give handlers in flight this long, exit 0.
    shutdown_timeout: float = 20.0
    log_probes: bool = False

    @property
    def dead_letters(self) -> str:
        return self.dead_letter_stream or f"{self.stream}.dead-letter"

    def load_handler(self) -> Handler:
        module, _, name = self.handler.partition(":")
        try:
            function: Any = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"invalid configuration: HANDLER={self.handler!r}: {exc}") from None
        if not callable(function):
            raise ConfigError(f"invalid configuration: HANDLER={self.handler!r} is not callable")
        return function  # type: ignore[no-any-return]


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


def _key(raw: str) -> str:
    value = raw.strip()
    if not _KEY.match(value):
        raise ValueError("expected 1-256 characters without spaces")
    return value


def _optional_key(raw: str) -> str:
    return _key(raw) if raw.strip() else ""


def _redis_url(raw: str) -> str:
    value = raw.strip()
    parts = urlsplit(value)
    if parts.scheme in ("redis", "rediss") and parts.hostname:
        try:
            parts.port  # noqa: B018 - urlsplit checks the port only when asked
        except ValueError:
            raise ValueError("has an invalid port") from None
        return value
    if parts.scheme == "unix" and parts.path:
        return value
    raise ValueError("expected redis://[user:password@]host[:port][/db], rediss://... or unix://")


def _stream_id(raw: str) -> str:
    value = raw.strip()
    if not _STREAM_ID.match(value):
        raise ValueError("expected 0 (the whole stream), $ (new entries only) or an entry id")
    return value


def _handler(raw: str) -> str:
    value = raw.strip()
    if not _HANDLER.match(value):
        raise ValueError("expected module:function, for example hello_consumer.handler:handle")
    return value


# Environment variable -> (Config field, parser). The one place that names the variables.
_SETTINGS: dict[str, tuple[str, Callable[[str], object]]] = {
    "REDIS_URL": ("redis_url", _redis_url),
    "STREAM": ("stream", _key),
    "GROUP": ("group", _key),
    "CONSUMER_NAME": ("consumer_name", _key),
    "CREATE_GROUP": ("create_group", _boolean),
    "CREATE_STREAM": ("create_stream", _boolean),
    "GROUP_START_ID": ("group_start_id", _stream_id),
    "CONCURRENCY": ("concurrency", _integer(1, 10000)),
    "HANDLER_TIMEOUT_SECONDS": ("handler_timeout", _seconds(0, 3600, low_inclusive=False)),
    "HANDLER": ("handler", _handler),
    "MAX_DELIVERIES": ("max_deliveries", _integer(1, 1000)),
    "DEAD_LETTER_STREAM": ("dead_letter_stream", _optional_key),
    "RETRY_BACKOFF_SECONDS": ("retry_backoff", _seconds(0, 3600)),
    "RETRY_BACKOFF_MAX_SECONDS": ("retry_backoff_max", _seconds(0, 3600)),
    "CLAIM_IDLE_MS": ("claim_idle_ms", _integer(100, 86_400_000)),
    "CLAIM_INTERVAL_SECONDS": ("claim_interval", _seconds(0, 3600, low_inclusive=False)),
    "BLOCK_MS": ("block_ms", _integer(1, 60_000)),
    "STATUS_INTERVAL_SECONDS": ("status_interval", _seconds(0, 3600, low_inclusive=False)),
    "PORT": ("port", _integer(1, 65535)),
    "BIND_ADDRESS": ("bind_address", _address),
    "SHUTDOWN_TIMEOUT_SECONDS": ("shutdown_timeout", _seconds(0, 3600, low_inclusive=False)),
    "LOG_PROBES": ("log_probes", _boolean),
}

ENVIRONMENT_VARIABLES = tuple(_SETTINGS)


def load(environ: Mapping[str, str]) -> Config:
    """Build the configuration from `environ`; raise ConfigError naming every bad variable."""
    values: dict[str, object] = {}
    errors: list[str] = []
    for variable, (name, parse) in _SETTINGS.items():
        raw = environ.get(variable)
        if raw is None:
            continue
        try:
            values[name] = parse(raw)
        except ValueError as exc:
            errors.append(f"{variable}={_shorten(raw)!r}: {exc}")
    if not errors:
        config = Config(**values)  # type: ignore[arg-type]
        errors = _consistency(config)
    if errors:
        # The broker URL may carry a password (redis://:password@host): never echo it.
        message = _USERINFO.sub("//***@", "; ".join(errors))
        raise ConfigError("invalid configuration: " + message)
    return config


def _consistency(config: Config) -> list[str]:
    """Settings that are only wrong together: each would let a live message be taken over."""
    errors = []
    idle = config.claim_idle_ms / 1000
    if config.handler_timeout >= idle:
        errors.append(
            f"HANDLER_TIMEOUT_SECONDS={config.handler_timeout:g} must be less than "
            f"CLAIM_IDLE_MS={config.claim_idle_ms} (in seconds), or another consumer takes "
            "over messages still being handled"
        )
    if config.retry_backoff_max >= idle:
        errors.append(
            f"RETRY_BACKOFF_MAX_SECONDS={config.retry_backoff_max:g} must be less than "
            f"CLAIM_IDLE_MS={config.claim_idle_ms} (in seconds), or another consumer takes "
            "over messages waiting for their retry"
        )
    if config.dead_letters == config.stream:
        errors.append(f"DEAD_LETTER_STREAM={config.dead_letters!r} must differ from STREAM")
    return errors


def _shorten(raw: str, limit: int = 200) -> str:
    return raw if len(raw) <= limit else raw[:limit] + "..."
