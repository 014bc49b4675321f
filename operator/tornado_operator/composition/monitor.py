"""The operator's upstream monitor: every 10 s, each caller's Ready pods' /metrics, one window each.

One loop for the whole operator (not a kopf daemon per TornadoService: a daemon would give every
service with upstreams kopf's finalizer, and deletion must never wait for the operator). It
reuses the concurrency autoscaler's Scraper (its bound on scrapes in flight and its timeout) and
its choice of pods (Ready, of this TornadoService, with an address), and keeps the latest
`health.Report` of each caller. It writes nothing itself: when a caller's upstream states change,
or its numbers did and the last write is `REWRITE_SECONDS` old, it asks the reconciler for a
reconcile, which writes status.upstreams and the UpstreamsHealthy condition with everything else.

It only works while this replica is the active one (`ActiveGate`): a standby replica's watches
are paused, and a reconcile from it would apply children from a stale view.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

from tornado_operator.autoscaling.scrape import Target, scrape_targets
from tornado_operator.composition import exposition, health
from tornado_operator.composition.health import PodSample, Report, Window
from tornado_operator.errors import APIError
from tornado_operator.kubeapi import object_path
from tornado_operator.resources import CLUSTER_PEERING, PEERING

JSONDict = dict[str, Any]
Key = tuple[str, str]
# (namespace, name) -> that TornadoService's pods, as the operator's pod index keeps them.
PodsOf = Callable[[str, str], Iterable[Mapping[str, Any]]]
# (namespace, name): ask for a reconcile of that TornadoService.
Trigger = Callable[[str, str], Awaitable[None]]

REWRITE_SECONDS = 30.0

logger = logging.getLogger(__name__)


class ScrapesText(Protocol):
    async def scrape_text(self, targets: Sequence[Target]) -> list[tuple[str, str | None]]: ...


class KubeRequests(Protocol):
    """The one method of kubeapi.Kube the gate uses."""

    async def request(self, method: str, path: str, *, kind: str = "") -> JSONDict | None: ...


# -- is this replica the active one? -------------------------------------------------------------


def _parse_time(value: Any) -> datetime.datetime | None:
    try:
        stamp = datetime.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=datetime.UTC)


def peering_allows(
    status: Mapping[str, Any] | None,
    *,
    identity: str | None,
    priority: int,
    now: datetime.datetime,
) -> bool:
    """kopf's own rule on one peering object's status ({peer id: {priority, lastseen,
    lifetime}}): this replica works unless a live peer has a higher priority, or another live
    peer has the same one (kopf then pauses them all). Without our identity, one peer with our
    priority is taken to be us."""
    same = 0
    for peer_id, info in (status or {}).items():
        if not isinstance(info, Mapping):
            continue
        seen = _parse_time(info.get("lastseen"))
        try:
            lifetime = float(info.get("lifetime", 60))
            peer_priority = int(info.get("priority", 0))
        except (TypeError, ValueError):
            continue
        if seen is not None and seen + datetime.timedelta(seconds=lifetime) <= now:
            continue  # dead
        if identity is not None and peer_id == identity:
            continue
        if peer_priority > priority:
            return False
        if peer_priority == priority:
            same += 1
    return same == 0 if identity is not None else same <= 1


class ActiveGate:
    """Whether this replica is the one kopf lets work, read from the peering object(s) at most
    once per `cache_seconds`. Always true with --standalone."""

    def __init__(
        self,
        kube: KubeRequests | None,
        *,
        standalone: bool,
        peering: str,
        namespaces: Sequence[str],
        priority: int,
        identity: str | None = None,
        cache_seconds: float = health.SCRAPE_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.kube = kube
        self.standalone = standalone or kube is None
        self.peering = peering
        self.namespaces = tuple(namespaces)
        self.priority = priority
        self.identity = identity if identity is not None else os.environ.get("POD_ID")
        self.cache_seconds = cache_seconds
        self.clock = clock
        self._checked: tuple[float, bool] | None = None

    async def active(self) -> bool:
        if self.standalone:
            return True
        now = self.clock()
        if self._checked is not None and now - self._checked[0] < self.cache_seconds:
            return self._checked[1]
        result = await self._ask()
        self._checked = (now, result)
        return result

    async def _ask(self) -> bool:
        assert self.kube is not None
        wall = datetime.datetime.now(datetime.UTC)
        places: list[str | None] = list(self.namespaces) or [None]
        for namespace in places:
            resource = CLUSTER_PEERING if namespace is None else PEERING
            try:
                body = await self.kube.request(
                    "GET", object_path(resource, namespace, self.peering), kind=resource.kind
                )
            except APIError as exc:
                logger.debug("peering object unreadable (%s): not monitoring upstreams", exc)
                return False
            status = (body or {}).get("status")
            if not peering_allows(
                status if isinstance(status, Mapping) else None,
                identity=self.identity,
                priority=self.priority,
                now=wall,
            ):
                return False
        return True


# -- the monitor ---------------------------------------------------------------------------------


@dataclasses.dataclass
class _Caller:
    window: Window
    report: Report | None = None
    triggered: tuple[Any, ...] | None = None  # health.digest at the last trigger
    triggered_at: float = -1e18
    measured: tuple[Any, ...] | None = None  # the numbers at the last trigger


def _numbers(report: Report) -> tuple[Any, ...]:
    return (
        *(
            (name, tuple(sorted(seen.outcomes.items())), seen.buckets, seen.breaker)
            for name, seen in sorted(report.upstreams.items())
        ),
        (report.ready_pods, report.scraped_pods),
    )


class Monitor:
    """Scrapes every caller (a TornadoService with spec.upstreams) each `interval` seconds."""

    def __init__(
        self,
        scraper: ScrapesText,
        pods_of: PodsOf,
        callers: Callable[[], Iterable[Key]],
        trigger: Trigger,
        gate: ActiveGate,
        *,
        interval: float = health.SCRAPE_INTERVAL_SECONDS,
        window: float = health.WINDOW_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.scraper = scraper
        self.pods_of = pods_of
        self.callers = callers
        self.trigger = trigger
        self.gate = gate
        self.interval = interval
        self.window = window
        self.clock = clock
        self._state: dict[Key, _Caller] = {}

    def report(self, namespace: str, name: str) -> Report | None:
        found = self._state.get((namespace, name))
        return found.report if found is not None else None

    async def run(self, stop: asyncio.Event) -> None:
        """Tick until `stop` is set; a failing tick is logged and the loop goes on."""
        while not stop.is_set():
            started = self.clock()
            try:
                if await self.gate.active():
                    await self.tick()
            except Exception:  # a bug: say so, keep monitoring
                logger.exception("upstream monitor tick failed")
            delay = max(0.0, self.interval - (self.clock() - started))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):  # unlike wait_for, never eats a cancel
                    await stop.wait()

    async def tick(self) -> None:
        keys = list(self.callers())
        for key in set(self._state) - set(keys):
            del self._state[key]
        await asyncio.gather(*(self._one(key) for key in keys))

    async def _one(self, key: Key) -> None:
        namespace, name = key
        pods = [dict(p) for p in self.pods_of(namespace, name)]
        targets = scrape_targets(pods, namespace=namespace, name=name)
        results = await self.scraper.scrape_text(targets.scrape) if targets.scrape else []
        samples: dict[str, PodSample] = {}
        for pod, text in results:
            if text is None:
                continue
            try:
                samples[pod] = exposition.parse(text)
            except exposition.ExpositionError as exc:
                logger.debug("metrics of %s/%s unusable: %s", namespace, pod, exc)
        state = self._state.get(key)
        if state is None:
            state = self._state[key] = _Caller(Window(self.window))
        now = self.clock()
        state.report = state.window.add(now, samples, targets.ready)
        await self._maybe_trigger(key, state, now)

    async def _maybe_trigger(self, key: Key, state: _Caller, now: float) -> None:
        assert state.report is not None
        digest = _report_digest(state.report)
        numbers = _numbers(state.report)
        stale = numbers != state.measured and now - state.triggered_at >= REWRITE_SECONDS
        if digest != state.triggered or stale:
            state.triggered, state.measured, state.triggered_at = digest, numbers, now
            await self.trigger(*key)


def _report_digest(report: Report) -> tuple[Any, ...]:
    """The states a report gives each upstream (and whether any pod answered)."""
    return (
        report.scraped_pods > 0,
        tuple(
            (name, health.state_of(seen, report.window_seconds), seen.breaker)
            for name, seen in sorted(report.upstreams.items())
        ),
    )
