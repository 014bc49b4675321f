"""spec.upstreams: targets, URL resolution and the template's UPSTREAMS value (pure functions).

A `service` entry names a TornadoService (in `namespace`, default the caller's); its URL is read
from that TornadoService's status.url, which the operator writes. Until the TornadoService exists
(or has a status), the URL it will have with the default Service port stands in, so a caller
whose upstream appears later keeps the same environment and is not rolled again. A `url` entry
is used as written.

Also the operator's copy of the CRD's CEL rules on spec.upstreams and spec.ingress: jsonschema
evaluates none of them, and a cluster with an older CRD must not hand the operator a spec whose
UPSTREAMS it cannot render.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

JSONDict = dict[str, Any]
Key = tuple[str, str]  # namespace, name
# (namespace, name) -> the TornadoService as the watch sees it, or None.
Lookup = Callable[[str, str], Mapping[str, Any] | None]

ENV_NAME = "UPSTREAMS"
DEFAULT_SERVICE_PORT = 80


@dataclasses.dataclass(frozen=True)
class Entry:
    """One spec.upstreams item, read from a validated spec."""

    name: str
    service: str | None = None
    namespace: str | None = None  # of the service; None for a url entry
    path: str = ""
    url: str | None = None
    timeout: float | None = None
    retries: int | None = None

    @property
    def target(self) -> Key | None:
        """(namespace, name) of the TornadoService called, None for a url entry."""
        if self.service is None or self.namespace is None:
            return None
        return (self.namespace, self.service)


def entries(spec: Mapping[str, Any], namespace: str) -> list[Entry]:
    """The upstream entries of a validated spec, service namespaces filled in."""
    found: list[Entry] = []
    for item in spec.get("upstreams") or []:
        service = item.get("service")
        timeout = item.get("timeoutSeconds")
        retries = item.get("retries")
        found.append(
            Entry(
                name=str(item["name"]),
                service=str(service) if service else None,
                namespace=str(item.get("namespace") or namespace) if service else None,
                path=str(item.get("path") or ""),
                url=str(item["url"]) if item.get("url") else None,
                timeout=float(timeout) if timeout is not None else None,
                retries=int(retries) if retries is not None else None,
            )
        )
    return found


def targets(spec: Any, namespace: str) -> frozenset[Key]:
    """The TornadoServices a spec calls, from any spec at all (also an invalid one, as the
    kopf index sees it before validation): what cannot be read is left out."""
    if not isinstance(spec, Mapping):
        return frozenset()
    items = spec.get("upstreams")
    if not isinstance(items, list):
        return frozenset()
    found: set[Key] = set()
    for item in items:
        if not isinstance(item, Mapping):
            continue
        service, ns = item.get("service"), item.get("namespace") or namespace
        if isinstance(service, str) and service and isinstance(ns, str) and ns:
            found.add((ns, service))
    return frozenset(found)


def has_upstreams(spec: Any) -> bool:
    return isinstance(spec, Mapping) and bool(spec.get("upstreams"))


def default_url(service: str, namespace: str, port: int = DEFAULT_SERVICE_PORT) -> str:
    """The URL a TornadoService gets (rendering.service_url) for a given Service port."""
    host = f"{service}.{namespace}.svc"
    return f"http://{host}" if port == DEFAULT_SERVICE_PORT else f"http://{host}:{port}"


def _join(base: str, path: str) -> str:
    return base.rstrip("/") + path if path else base


def url_of(entry: Entry, status_url: str | None = None) -> str:
    """An entry's URL: a url as written; a service's status.url (or, without one, the URL it
    has with the default Service port) plus the entry's path."""
    if entry.url is not None:
        return entry.url
    assert entry.service is not None and entry.namespace is not None
    base = status_url or default_url(entry.service, entry.namespace)
    return _join(base, entry.path)


@dataclasses.dataclass(frozen=True)
class Resolution:
    """Where each upstream is, and which referenced TornadoServices do not exist."""

    urls: tuple[tuple[str, str], ...] = ()  # (entry name, URL), in spec order
    missing: tuple[Entry, ...] = ()  # service entries whose TornadoService does not exist
    # Service entries whose TornadoService is a consumer (spec.consumer): it has no Service, no
    # URL, and its NetworkPolicy lets no caller in. Not callable, as if it did not exist.
    consumers: tuple[Entry, ...] = ()

    @property
    def url_of(self) -> dict[str, str]:
        return dict(self.urls)


def _live(obj: Mapping[str, Any] | None) -> bool:
    return obj is not None and not (obj.get("metadata") or {}).get("deletionTimestamp")


def is_consumer(obj: Mapping[str, Any] | None) -> bool:
    """Whether a TornadoService object is a consumer (tornado_operator.consumer.is_consumer of
    its spec): a consumer has no Service, so it cannot be an upstream."""
    return isinstance(((obj or {}).get("spec") or {}).get("consumer"), dict)


def resolve(found: Iterable[Entry], lookup: Lookup) -> Resolution:
    """Each entry's URL: a url as written, a service from its status.url (or its default URL
    while it has none), plus the entry's path. A TornadoService that is a consumer keeps the
    default URL (nothing answers there) and is named in `consumers`."""
    urls: list[tuple[str, str]] = []
    missing: list[Entry] = []
    consumers: list[Entry] = []
    for entry in found:
        if entry.url is not None:
            urls.append((entry.name, entry.url))
            continue
        assert entry.service is not None and entry.namespace is not None
        obj = lookup(entry.namespace, entry.service)
        if not _live(obj):
            missing.append(entry)
            obj = None
        elif is_consumer(obj):
            consumers.append(entry)
            obj = None
        status_url = ((obj or {}).get("status") or {}).get("url")
        urls.append((entry.name, url_of(entry, str(status_url) if status_url else None)))
    return Resolution(tuple(urls), tuple(missing), tuple(consumers))


def _number(value: float) -> str:
    return f"{value:g}"


def env_value(found: Iterable[Entry], urls: Mapping[str, str]) -> str:
    """The template's UPSTREAMS: `name=url timeout=S retries=N`, comma separated, in spec
    order (hello/config.py parses it). An entry without a resolved URL is left out."""
    items: list[str] = []
    for entry in found:
        url = urls.get(entry.name)
        if not url:
            continue
        words = [f"{entry.name}={url}"]
        if entry.timeout is not None:
            words.append(f"timeout={_number(entry.timeout)}")
        if entry.retries is not None:
            words.append(f"retries={entry.retries}")
        items.append(" ".join(words))
    return ",".join(items)


def url_port(url: str) -> int:
    """The TCP port a url upstream is called on."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is not None:
        return port
    return 443 if parts.scheme == "https" else 80


def spec_problems(spec: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(field, message) for every CEL rule on spec.upstreams and spec.ingress the spec breaks,
    and for duplicate upstream names (a list-map key in the CRD). Messages name the field."""
    found: list[tuple[str, str]] = []
    items = spec.get("upstreams") or []
    seen: set[str] = set()
    for i, item in enumerate(items):
        where = f"spec.upstreams[{i}]"
        if ("service" in item) == ("url" in item):
            found.append(
                (
                    where,
                    "spec.upstreams[] must set exactly one of service (a TornadoService) and url "
                    "(something outside)",
                )
            )
        if "namespace" in item and "service" not in item:
            found.append(
                (
                    f"{where}.namespace",
                    "spec.upstreams[].namespace is only for spec.upstreams[].service: "
                    "a url names its own host",
                )
            )
        if "path" in item and "service" not in item:
            found.append(
                (
                    f"{where}.path",
                    "spec.upstreams[].path is only for spec.upstreams[].service: "
                    "put the path in the url",
                )
            )
        timeout = item.get("timeoutSeconds")
        if isinstance(timeout, int | float) and timeout < 0.01:
            found.append(
                (
                    f"{where}.timeoutSeconds",
                    "spec.upstreams[].timeoutSeconds must be at least 0.01 (10 ms)",
                )
            )
        name = item.get("name")
        if name in seen:
            found.append((f"{where}.name", f"spec.upstreams[].name {name!r} appears twice"))
        seen.add(name)
    env_names = {e.get("name") for e in spec.get("env") or []}
    if items and ENV_NAME in env_names:
        found.append(
            (
                "spec.env",
                "spec.env must not set UPSTREAMS while spec.upstreams is set: the operator "
                "renders UPSTREAMS from spec.upstreams",
            )
        )
    for i, peer in enumerate((spec.get("ingress") or {}).get("from") or []):
        where = f"spec.ingress.from[{i}]"
        selectors = "namespaceSelector" in peer or "podSelector" in peer
        if not selectors and "ipBlock" not in peer:
            found.append(
                (where, "spec.ingress.from[] must set namespaceSelector, podSelector or ipBlock")
            )
        if selectors and "ipBlock" in peer:
            found.append(
                (
                    where,
                    "spec.ingress.from[].ipBlock cannot be combined with namespaceSelector or "
                    "podSelector",
                )
            )
    return found
