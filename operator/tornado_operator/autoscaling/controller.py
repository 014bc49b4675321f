"""One tick of the concurrency autoscaler for one TornadoService, without the Kubernetes API.

The caller (`daemon`, the operator's wiring) scrapes the pods (`observe`), reads spec.replicas,
calls `ServiceAutoscaler.decide` (`tick` does both steps at once), then writes what the returned
decision says: spec.replicas through the scale subresource, status.autoscaling, and an Event.
Everything here is testable without a cluster: the scraper is passed in.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from tornado_operator.autoscaling import metrics
from tornado_operator.autoscaling.algorithm import Decider, Decision, Params, Sample
from tornado_operator.autoscaling.scrape import (
    NO_ADDRESS,
    RateTracker,
    ScrapeResult,
    Target,
    scrape_targets,
)

JSONDict = dict[str, Any]
Key = tuple[str, str]


class ScrapesPods(Protocol):
    async def scrape(self, targets: Sequence[Target]) -> list[ScrapeResult]: ...


@dataclasses.dataclass(frozen=True)
class Tick:
    decision: Decision
    results: tuple[ScrapeResult, ...]
    unreachable: tuple[str, ...]  # ready pods without an IP or `http` port

    @property
    def failures(self) -> list[str]:
        """One line per pod whose metrics are missing, for logs."""
        lines = [f"{pod}: {NO_ADDRESS}" for pod in self.unreachable]
        lines += [f"{r.pod}: {r.reason}: {r.error}" for r in self.results if not r.ok]
        return lines


@dataclasses.dataclass(frozen=True)
class Observation:
    """One scrape of a service's Ready pods, before any decision."""

    results: tuple[ScrapeResult, ...]
    unreachable: tuple[str, ...]  # ready pods without an IP or `http` port


async def observe(
    scraper: ScrapesPods, pods: Iterable[JSONDict], *, namespace: str, name: str
) -> Observation:
    """Scrape the Ready pods of one TornadoService (only those: see scrape.belongs_to)."""
    targets = scrape_targets(pods, namespace=namespace, name=name)
    results = await scraper.scrape(targets.scrape) if targets.scrape else []
    for result in results:
        metrics.SCRAPES.labels(result="ok" if result.ok else "error").inc()
        metrics.SCRAPE_DURATION.observe(result.seconds)
        if result.reason is not None:
            metrics.SCRAPE_ERRORS.labels(reason=result.reason).inc()
    for _ in targets.unreachable:
        metrics.SCRAPE_ERRORS.labels(reason=NO_ADDRESS).inc()
    return Observation(tuple(results), targets.unreachable)


class ServiceAutoscaler:
    """The autoscaler of one TornadoService: its decider and its pods' last counter values."""

    def __init__(
        self, namespace: str, name: str, params: Params, *, now: float, current_replicas: int
    ) -> None:
        self.namespace = namespace
        self.name = name
        self.decider = Decider(params, now=now, current_replicas=current_replicas)
        self._rates = RateTracker()

    def update(self, params: Params) -> None:
        self.decider.update(params)

    def sample(self, now: float, results: Sequence[ScrapeResult], unreachable: int) -> Sample:
        in_flight: list[float] = []
        rate = 0.0
        rate_pods = 0
        for result in results:
            if result.metrics is None:
                self._rates.observe(result.pod, result.time, None)
                continue
            in_flight.append(result.metrics.in_flight)
            pod_rate = self._rates.observe(result.pod, result.time, result.metrics.requests_total)
            if pod_rate is not None:
                rate += pod_rate
                rate_pods += 1
        self._rates.forget_except(r.pod for r in results)
        missing = unreachable + sum(1 for r in results if not r.ok)
        return Sample(
            time=now,
            in_flight=tuple(in_flight),
            missing=missing,
            request_rate=rate if rate_pods else None,
            rate_pods=rate_pods,
        )

    async def tick(
        self,
        scraper: ScrapesPods,
        pods: Iterable[JSONDict],
        *,
        current_replicas: int,
        now: float,
    ) -> Tick:
        """Scrape the service's Ready pods (only those: see scrape.belongs_to) and decide."""
        found = await observe(scraper, pods, namespace=self.namespace, name=self.name)
        return self.decide(found, current_replicas=current_replicas, now=now)

    def decide(self, found: Observation, *, current_replicas: int, now: float) -> Tick:
        """Decide on one observation. The operator scrapes first and reads spec.replicas just
        before deciding, so the replicas it decides from are as fresh as they can be."""
        sample = self.sample(now, found.results, len(found.unreachable))
        decision = self.decider.step(sample, current_replicas)
        metrics.DECISIONS.labels(
            direction=decision.direction, panic=str(decision.panic).lower()
        ).inc()
        return Tick(decision, found.results, found.unreachable)


class Autoscalers:
    """Every ServiceAutoscaler of this operator process, keyed by (namespace, name).

    The operator has one; its gauges (services, services in panic) read the latest instance.
    """

    def __init__(self) -> None:
        self._by_key: dict[Key, ServiceAutoscaler] = {}
        metrics.SERVICES.set_function(lambda: len(self._by_key))
        metrics.PANICKING.set_function(
            lambda: sum(1 for a in self._by_key.values() if a.decider.panicking)
        )

    def __contains__(self, key: Key) -> bool:
        return key in self._by_key

    def __len__(self) -> int:
        return len(self._by_key)

    def get(self, key: Key) -> ServiceAutoscaler | None:
        return self._by_key.get(key)

    def ensure(
        self, key: Key, params: Params, *, now: float, current_replicas: int
    ) -> ServiceAutoscaler:
        """The service's autoscaler with these params, created on first use (its decider then
        starts holding scale-downs for a window, see algorithm.Decider)."""
        found = self._by_key.get(key)
        if found is None:
            found = self._by_key[key] = ServiceAutoscaler(
                key[0], key[1], params, now=now, current_replicas=current_replicas
            )
        else:
            found.update(params)
        return found

    def remove(self, key: Key, instance: ServiceAutoscaler | None = None) -> None:
        """Forget a service that was deleted or no longer autoscales on concurrency; with
        `instance`, only if that is still the one kept (a same-named successor keeps its own)."""
        if instance is None or self._by_key.get(key) is instance:
            self._by_key.pop(key, None)
