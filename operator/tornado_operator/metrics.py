"""The operator's own Prometheus metrics."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import Counter, Gauge, Histogram

RECONCILES = Counter(
    "tornado_operator_reconciles_total",
    "Reconciles of TornadoServices, by trigger and result (ok, temporary, permanent).",
    ["trigger", "result"],
)
ERRORS = Counter(
    "tornado_operator_errors_total",
    "Failed reconciles, by reason (condition reason or API failure class).",
    ["reason"],
)
DURATION = Histogram(
    "tornado_operator_reconcile_duration_seconds",
    "Wall time of one reconcile of one TornadoService.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
MANAGED = Gauge(
    "tornado_operator_managed_objects",
    "Objects this operator process currently manages, by kind.",
    ["kind"],
)
APPLIES = Counter(
    "tornado_operator_applies_total",
    "Server-side applies of child objects, by kind and whether the object changed.",
    ["kind", "changed"],
)
API_REQUESTS = Counter(
    "tornado_operator_api_requests_total",
    "Requests this operator made to the Kubernetes API (not counting kopf's own watches and "
    "bookkeeping), by verb (get, list, create, apply, patch, patch-status, delete...), kind and "
    "HTTP status (0: no answer).",
    ["verb", "kind", "code"],
)


class ManagedObjects:
    """Which kinds each TornadoService currently has, feeding the MANAGED gauge.

    Counts per kind are kept and moved by the difference of each update, so an update costs
    the number of kinds that changed, not a recount of every TornadoService.
    """

    def __init__(self, parent_kind: str, child_kinds: Iterable[str]) -> None:
        self._parent_kind = parent_kind
        self._by_parent: dict[tuple[str, str], frozenset[str]] = {}
        self._counts = dict.fromkeys((parent_kind, *child_kinds), 0)
        for kind in self._counts:
            MANAGED.labels(kind=kind).set(0)

    def set(self, key: tuple[str, str], kinds: frozenset[str] | None) -> None:
        """Record the kinds one TornadoService has now; None when it is gone."""
        old = self._by_parent.pop(key, frozenset())
        if kinds is None:
            new: frozenset[str] = frozenset()
        else:
            new = (kinds | {self._parent_kind}).intersection(self._counts)
            self._by_parent[key] = new
        for kind in old ^ new:
            self._counts[kind] += 1 if kind in new else -1
            MANAGED.labels(kind=kind).set(self._counts[kind])
