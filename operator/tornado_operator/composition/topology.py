"""Which TornadoServices need a reconcile when another one changes (pure memory).

A TornadoService's children depend on two kinds of other TornadoServices:

- its NetworkPolicy names its callers (those that list it in spec.upstreams), so when a caller's
  list of targets changes, each target that was added or removed is reconciled;
- its UPSTREAMS names its upstreams' URLs (their status.url) and its status says which of them do
  not exist, so when a TornadoService appears, goes, or gets another URL, its callers are
  reconciled.

`Topology.observe` is fed every watch event of every TornadoService and answers with the keys to
reconcile. It compares with what it saw last, so the echo of a reconcile's own status write (same
targets, same URL) triggers nothing: a cycle (A calls B, B calls A) settles after one round.
The initial listing only records: the resume handlers reconcile every object then anyway.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from tornado_operator.composition import spec as composition

Key = tuple[str, str]  # namespace, name
# (namespace, name) of a TornadoService -> the TornadoServices that list it in spec.upstreams.
CallersOf = Callable[[str, str], Iterable[Key]]


def _alive(body: Mapping[str, Any] | None) -> bool:
    return body is not None and not (body.get("metadata") or {}).get("deletionTimestamp")


def _url(body: Mapping[str, Any] | None) -> str | None:
    url = ((body or {}).get("status") or {}).get("url")
    return str(url) if url else None


class Topology:
    """What the operator last saw of each TornadoService's links."""

    def __init__(self) -> None:
        self._targets: dict[Key, frozenset[Key]] = {}
        self._urls: dict[Key, str | None] = {}
        self._with_upstreams: set[Key] = set()

    def services_with_upstreams(self) -> list[Key]:
        """The TornadoServices whose spec lists upstreams, sorted."""
        return sorted(self._with_upstreams)

    def observe(
        self,
        key: Key,
        body: Mapping[str, Any] | None,
        callers_of: CallersOf,
        *,
        listing: bool = False,
    ) -> set[Key]:
        """Record one event (`body` None: the object is gone) and return the other
        TornadoServices to reconcile because of it (never `key` itself: its own handlers run)."""
        alive = _alive(body)
        spec = (body or {}).get("spec") if alive else None
        new_targets = composition.targets(spec, key[0]) if alive else frozenset()
        new_url = _url(body) if alive else None
        known = key in self._urls
        old_targets = self._targets.get(key, frozenset())
        old_url = self._urls.get(key)

        if alive:
            self._targets[key] = new_targets
            self._urls[key] = new_url
            if composition.has_upstreams(spec):
                self._with_upstreams.add(key)
            else:
                self._with_upstreams.discard(key)
        else:
            self._targets.pop(key, None)
            self._urls.pop(key, None)
            self._with_upstreams.discard(key)
        if listing:
            return set()

        wanted: set[Key] = set(old_targets ^ new_targets)
        appeared_or_went = known != alive
        if appeared_or_went or old_url != new_url:
            wanted.update(callers_of(*key))
        wanted.discard(key)
        return wanted
