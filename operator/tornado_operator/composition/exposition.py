"""The template's per-upstream metrics, out of one pod's Prometheus text exposition.

What the operator reads (hello/metrics.py exports them; a service of one's own that exports the
same gets the same status):

- `upstream_calls_total{upstream, outcome}`, counter: calls by outcome (ok, http_error, timeout,
  connection_error, error, circuit_open, deadline);
- `upstream_call_duration_seconds{upstream}`, histogram: the duration of attempted calls;
- `upstream_circuit_breaker_state{upstream}`, gauge: 0 closed, 1 half-open, 2 open.

Other families are skipped before parsing: the parser is pure Python and an exposition has
hundreds of lines about the process and the service's own requests.
"""

from __future__ import annotations

import math

from prometheus_client.parser import text_string_to_metric_families

from tornado_operator.composition.health import PodSample, UpstreamSample

CALLS = "upstream_calls_total"
DURATION = "upstream_call_duration_seconds"
BREAKER = "upstream_circuit_breaker_state"
_FAMILIES = frozenset({CALLS.removesuffix("_total"), CALLS, DURATION, BREAKER})
_SAMPLES = frozenset({CALLS, f"{DURATION}_bucket", BREAKER})


class ExpositionError(ValueError):
    """The text is not a Prometheus exposition."""


def _relevant(text: str) -> str:
    kept: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("#"):
            parts = stripped.split(None, 3)
            if len(parts) >= 3 and parts[1] in ("TYPE", "HELP") and parts[2] in _FAMILIES:
                kept.append(stripped)
            continue
        name = stripped.split("{", 1)[0].split(None, 1)[0]
        if name in _SAMPLES:
            kept.append(stripped)
    return "\n".join(kept) + "\n"


def _le(raw: str) -> float:
    return math.inf if raw in ("+Inf", "Inf", "inf") else float(raw)


def parse(text: str) -> PodSample:
    """upstream name -> what one pod's counters, buckets and breaker gauge say now."""
    outcomes: dict[str, dict[str, float]] = {}
    buckets: dict[str, dict[float, float]] = {}
    breakers: dict[str, int] = {}
    try:
        families = list(text_string_to_metric_families(_relevant(text)))
    except ValueError as exc:
        raise ExpositionError(f"cannot parse the metrics: {exc}") from None
    for family in families:
        for sample in family.samples:
            upstream = sample.labels.get("upstream")
            value = float(sample.value)
            if not upstream or not math.isfinite(value) or value < 0:
                continue
            if sample.name == CALLS:
                outcome = sample.labels.get("outcome") or "unknown"
                by_outcome = outcomes.setdefault(upstream, {})
                by_outcome[outcome] = by_outcome.get(outcome, 0.0) + value
            elif sample.name == f"{DURATION}_bucket" and "le" in sample.labels:
                try:
                    le = _le(sample.labels["le"])
                except ValueError:
                    continue
                by_le = buckets.setdefault(upstream, {})
                by_le[le] = by_le.get(le, 0.0) + value
            elif sample.name == BREAKER:
                breakers[upstream] = max(breakers.get(upstream, 0), int(value))
    names = set(outcomes) | set(buckets) | set(breakers)
    return {
        name: UpstreamSample(
            outcomes=dict(outcomes.get(name, {})),
            buckets=tuple(sorted(buckets.get(name, {}).items())),
            breaker=breakers.get(name),
        )
        for name in sorted(names)
    }
