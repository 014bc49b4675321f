"""The operator's own Prometheus metrics."""

from __future__ import annotations

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


class ManagedObjects:
    """Which kinds each TornadoService currently has, feeding the MANAGED gauge."""

    KINDS = (
        "TornadoService",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
    )

    def __init__(self) -> None:
        self._by_parent: dict[tuple[str, str], frozenset[str]] = {}

    def set(self, key: tuple[str, str], kinds: frozenset[str] | None) -> None:
        if kinds is None:
            self._by_parent.pop(key, None)
        else:
            self._by_parent[key] = kinds | {"TornadoService"}
        for kind in self.KINDS:
            MANAGED.labels(kind=kind).set(sum(1 for ks in self._by_parent.values() if kind in ks))
