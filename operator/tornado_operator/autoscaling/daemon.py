"""The concurrency autoscaler's loop for one TornadoService: what its kopf daemon runs.

The operator runs one kopf daemon per TornadoService whose spec uses metric concurrency
(`wanted` is the daemon's filter). kopf starts it when a spec starts matching and stops it when
the spec stops matching, the object is deleted, the operator exits, or peering pauses this
replica. Each tick, every `Runtime.interval` seconds (2 by default):

1. the spec, from kopf's live body, validated (the CEL rules on spec.autoscaling included) and
   turned into the decider's Params; an invalid spec waits (reconcile reports InvalidSpec);
2. scrape the service's Ready pods (from the operator's pod index, no API call);
3. read spec.replicas and the resourceVersion from the scale subresource;
4. decide (controller, algorithm);
5. when the decision changes the replicas: merge-patch the scale subresource with the
   resourceVersion just read, so a `kubectl scale` in between makes it a 409 instead of being
   overwritten, and the tick is skipped (the next one decides from the new value); then an Event
   (ScaledUp or ScaledDown);
6. status.autoscaling, merge-patched when report.needs_write says it is worth a write.

A consumer (spec.consumer) gets a daemon too, autoscaled or not: each tick reads its group from
the broker (autoscaling.broker) instead of scraping pods, keeps that reading for the reconciler
(the StreamAvailable condition; a change of its reason brings a reconcile, hence a Warning Event
for a missing stream), writes status.consumer, and with metric lag decides on the backlog
(autoscaling.lag) and writes the scale subresource exactly as above. While the read fails the
ticks back off, up to `MAX_FAILED_POLL_SECONDS` apart: a missing stream or a broker outage costs
one read per 30 s, never a storm.

When the daemon stops, the service's decider is forgotten. When it stops because the spec stopped
matching (metric cpu, or autoscaling off, and no consumer), status.autoscaling and
status.consumer are removed; not when the operator exits or pauses: the replica that takes over
writes them anew.

No finalizer: kopf gives every daemon one, so that it can stop the daemon before its object goes,
but deleting a TornadoService must never wait for the operator (it may be down). The daemon stops
itself instead, at the first tick that finds its object gone (or replaced by a same-named one
with another uid). `without_finalizer` drops kopf's requirement.

Only `Kube.request` is used, so a fake with that one method tests all of it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import inspect
import logging
import math
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from typing import Any, Protocol

import kopf

from tornado_operator import FIELD_MANAGER, conditions, consumer
from tornado_operator.assessment import Event
from tornado_operator.autoscaling import config, metrics, report
from tornado_operator.autoscaling.algorithm import TICK_SECONDS
from tornado_operator.autoscaling.broker import BrokerReader
from tornado_operator.autoscaling.controller import (
    Autoscalers,
    ScrapesPods,
    ServiceAutoscaler,
    observe,
)
from tornado_operator.autoscaling.lag import LagDecider
from tornado_operator.autoscaling.scrape import APISERVER, Scraper
from tornado_operator.errors import APIError
from tornado_operator.kubeapi import object_path
from tornado_operator.resources import POD, TORNADO_SERVICE
from tornado_operator.settings import Settings
from tornado_operator.validation import validated_spec

JSONDict = dict[str, Any]
Key = tuple[str, str]
# (namespace, name) -> the pods of that TornadoService, as the operator's pod index keeps them.
PodsOf = Callable[[str, str], Iterable[Mapping[str, Any]]]
# (the TornadoService, the Event): posts it; may be a coroutine function.
EventPoster = Callable[[JSONDict, Event], Any]
AnyLogger = logging.Logger | logging.LoggerAdapter[Any]

# The manager named in managedFields for spec.replicas and status.autoscaling.
AUTOSCALER_MANAGER = f"{FIELD_MANAGER}-autoscaler"
KIND = TORNADO_SERVICE.kind  # for the operator's request metrics
MERGE_PATCH = "application/merge-patch+json"
# The same trouble (missing metrics, an API error, an invalid spec) is logged once, then again
# only after this long or when it changes.
LOG_EVERY_SECONDS = 60.0
# A consumer whose broker read fails is read again after 2, 4, 8... seconds, at most this long.
MAX_FAILED_POLL_SECONDS = 30.0
# status.consumer.consumptionRate: acknowledged entries over about this long.
RATE_WINDOW_SECONDS = 30.0

logger = logging.getLogger(__name__)


class KubeRequests(Protocol):
    """The one method of kubeapi.Kube the autoscaler's loop uses."""

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        kind: str = "",
    ) -> JSONDict | None: ...


class KubeText(KubeRequests, Protocol):
    """With --scrape-via apiserver: GET a pod's /metrics through the API server's pod proxy."""

    async def get_text(self, path: str, *, kind: str = "") -> str: ...


class Stopped(Protocol):
    """kopf's `stopped` flag of a daemon."""

    def __bool__(self) -> bool: ...

    def wait(self, timeout: float | None = None) -> Awaitable[Any]: ...

    @property
    def reason(self) -> kopf.DaemonStoppingReason | None: ...


class KopfStopped:
    """kopf's `stopped` flag of a daemon, with a `wait(n)` of our own. kopf 1.45.2's runs
    `asyncio.wait_for` in a task of its own. When the operator exits, kopf cancels the daemons
    that did not stop in time and then awaits every task still left, raising what they raised: a
    wait task that ended in its own TimeoutError there made the operator's exit fail (the fuzz
    test's did, with a dozen consumer daemons running). Here the time limit is `asyncio.timeout`
    on the daemon's own task, which tells its expiry from a cancellation, and kopf's wait runs
    with no time limit, so it has no TimeoutError to leave behind."""

    def __init__(self, stopped: kopf.DaemonStopped) -> None:
        self._stopped = stopped

    def __bool__(self) -> bool:
        return bool(self._stopped)

    @property
    def reason(self) -> kopf.DaemonStoppingReason | None:
        return self._stopped.reason

    async def wait(self, timeout: float | None = None) -> None:  # noqa: ASYNC109 (kopf's)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(None if timeout is None else max(0.0, timeout)):
                await self._stopped.wait()


class Closeable(ScrapesPods, Protocol):
    async def close(self) -> None: ...


class ReadsBroker(Protocol):
    """What a consumer's ticks need of autoscaling.broker.BrokerReader."""

    async def read(self, broker: str, stream: str, group: str) -> consumer.Reading: ...

    async def forget(self, broker: str) -> None: ...

    async def close(self) -> None: ...


# (namespace, name): the reconcile a consumer's changed broker state asks for.
StreamChanged = Callable[[str, str], Coroutine[Any, Any, Any]]


def wanted(spec: Mapping[str, Any], **_: Any) -> bool:
    """The daemon's kopf filter: autoscaling on with metric concurrency, or a consumer."""
    given = dict(spec or {})
    return config.uses_concurrency(given) or consumer.is_consumer(given)


def without_finalizer(handler_id: str, registry: Any = None) -> None:
    """Make the registered kopf daemon `handler_id` run without a finalizer on its objects
    (kopf 1.45 marks every daemon as requiring one, with no option to say otherwise)."""
    spawning = (registry or kopf.get_default_registry())._spawning
    found = [h for h in spawning._handlers if h.id == handler_id]
    if len(found) != 1:
        raise LookupError(f"no single kopf daemon {handler_id!r} to take the finalizer off")
    spawning._handlers[:] = [
        dataclasses.replace(h, requires_finalizer=False) if h.id == handler_id else h
        for h in spawning._handlers
    ]


def clears_status(reason: kopf.DaemonStoppingReason | None) -> bool:
    """Whether a daemon stopped this way removes status.autoscaling: only when the spec stopped
    asking for it, never on deletion, operator exit or a peering pause."""
    why = kopf.DaemonStoppingReason
    if reason is None or reason & (
        why.RESOURCE_DELETED | why.OPERATOR_EXITING | why.OPERATOR_PAUSING
    ):
        return False
    return bool(reason & why.FILTERS_MISMATCH)


# -- the scale subresource and the status ----------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Scale:
    replicas: int
    resource_version: str
    uid: str  # the TornadoService's


def scale_path(namespace: str, name: str) -> str:
    return object_path(TORNADO_SERVICE, namespace, name) + "/scale"


async def read_scale(kube: KubeRequests, namespace: str, name: str) -> Scale | None:
    """spec.replicas and the resourceVersion, None when the TornadoService is gone."""
    try:
        found = await kube.request("GET", scale_path(namespace, name), kind=KIND)
    except APIError as exc:
        if exc.status == 404:
            return None
        raise
    found = found or {}
    meta = found.get("metadata") or {}
    replicas = (found.get("spec") or {}).get("replicas") or 0
    return Scale(int(replicas), str(meta.get("resourceVersion") or ""), str(meta.get("uid") or ""))


async def write_scale(
    kube: KubeRequests, namespace: str, name: str, replicas: int, resource_version: str
) -> bool:
    """Set spec.replicas if the object is still at `resource_version`. False when it changed
    meanwhile (409: someone else wrote it) or is gone (404)."""
    body = {"metadata": {"resourceVersion": resource_version}, "spec": {"replicas": replicas}}
    try:
        await kube.request(
            "PATCH",
            scale_path(namespace, name),
            query={"fieldManager": AUTOSCALER_MANAGER},
            body=body,
            content_type=MERGE_PATCH,
            kind=KIND,
        )
    except APIError as exc:
        if exc.status in (404, 409):
            return False
        raise
    return True


async def patch_status(
    kube: KubeRequests, namespace: str, name: str, block: JSONDict | None
) -> None:
    """Merge-patch status.autoscaling (None removes it); nothing else in status is touched."""
    await patch_status_fields(kube, namespace, name, {"autoscaling": block})


async def patch_status_fields(
    kube: KubeRequests, namespace: str, name: str, fields: JSONDict
) -> None:
    """Merge-patch these status fields (a None value removes one), and only those."""
    try:
        await kube.request(
            "PATCH",
            object_path(TORNADO_SERVICE, namespace, name) + "/status",
            query={"fieldManager": AUTOSCALER_MANAGER},
            body={"status": fields},
            content_type=MERGE_PATCH,
            kind=KIND,
        )
    except APIError as exc:
        if exc.status != 404:
            raise


# -- shared state ----------------------------------------------------------------------------


class Runtime:
    """What every autoscaler daemon of one operator process shares (kept in kopf's memo): the
    API client, the one Scraper (its bound holds across services), the one broker reader, the
    deciders, the Event poster, the consumers' last broker reads and the tick interval."""

    def __init__(
        self,
        kube: KubeRequests,
        scraper: Closeable,
        *,
        post_event: EventPoster,
        broker: ReadsBroker | None = None,
        on_stream_change: StreamChanged | None = None,
        interval: float = TICK_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], str] = conditions.now_rfc3339,
    ) -> None:
        if not interval > 0:
            raise ValueError("the interval must be positive")
        self.kube = kube
        self.scraper = scraper
        self.broker: ReadsBroker = broker if broker is not None else BrokerReader()
        self.on_stream_change = on_stream_change
        self.post_event = post_event
        self.interval = interval
        self.clock = clock
        self.wall = wall
        self.autoscalers = Autoscalers()
        # (namespace, name) -> the consumer's last broker read, for the reconciler's status.
        self.streams: dict[Key, consumer.Reading] = {}
        # broker URL -> the consumers reading it: its client is closed when the last one goes.
        self._brokers: dict[str, set[Key]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        # Set when the operator exits: kopf runs its cleanup (closing the clients) before it
        # cancels the daemons it could not stop, so a tick may still be under way.
        self.closed = False

    async def use_broker(self, key: Key, url: str | None) -> None:
        """`key` reads `url` now (None: no broker at all); a URL nobody reads is forgotten."""
        for known, users in list(self._brokers.items()):
            if known != url and key in users:
                users.discard(key)
                if not users:
                    del self._brokers[known]
                    await self.broker.forget(known)
        if url is not None:
            self._brokers.setdefault(url, set()).add(key)

    def stream_of(self, namespace: str, name: str) -> consumer.Reading | None:
        """The last broker read of a consumer (None: not read by this operator process yet)."""
        return self.streams.get((namespace, name))

    def stream_changed(self, namespace: str, name: str) -> None:
        """Ask, in the background, for the reconcile that puts a new broker state in status."""
        if self.on_stream_change is None:
            return
        task: asyncio.Task[Any] = asyncio.create_task(self.on_stream_change(namespace, name))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @classmethod
    def from_settings(
        cls,
        cfg: Settings,
        kube: KubeText,
        post_event: EventPoster,
        on_stream_change: StreamChanged | None = None,
    ) -> Runtime:
        """The operator's one Runtime: a Scraper as the settings say (pods' IPs, or the API
        server's pod proxy), ticks every scrape interval."""
        via_api = None
        if cfg.scrape_via == APISERVER:

            async def via_api(path: str) -> str:
                return await kube.get_text(path, kind=POD.kind)

        scraper = Scraper(
            concurrency=cfg.scrape_concurrency,
            timeout=cfg.scrape_timeout_seconds,
            via_api=via_api,
        )
        return cls(
            kube,
            scraper,
            post_event=post_event,
            on_stream_change=on_stream_change,
            interval=cfg.scrape_interval_seconds,
        )

    async def close(self) -> None:
        self.closed = True
        await self.scraper.close()
        await self.broker.close()


class _Notes:
    """Rate-limited log lines, one topic at a time."""

    def __init__(self, log: AnyLogger) -> None:
        self.log = log
        self._last: dict[str, tuple[float, object]] = {}

    def due(self, topic: str, now: float, what: object) -> bool:
        """Whether `what` about `topic` is news: new, changed, or last said long ago."""
        last = self._last.get(topic)
        if last is None or last[1] != what or now - last[0] >= LOG_EVERY_SECONDS:
            self._last[topic] = (now, what)
            return True
        return False

    def warn(self, topic: str, now: float, what: object, message: str) -> None:
        if self.due(topic, now, what):
            self.log.warning(message)

    def resolved(self, topic: str, message: str) -> None:
        if self._last.pop(topic, None) is not None:
            self.log.info(message)


@dataclasses.dataclass
class _Service:
    namespace: str
    name: str
    body: Mapping[str, Any]  # kopf's live body: always the latest the watch saw
    notes: _Notes
    previous: JSONDict | None  # status.autoscaling as last written (or found at start)
    written_at: float = -math.inf
    decider: ServiceAutoscaler | None = None  # the one this daemon uses
    gone: bool = False  # the object was deleted (or replaced): the daemon stops itself
    # A consumer's: status.consumer as last written, its lag decider, its reads' acked counts
    # (for the consumption rate), the broker reads failed in a row (for the backoff).
    consumer_previous: JSONDict | None = None
    consumer_written_at: float = -math.inf
    lag_decider: LagDecider | None = None
    acked: collections.deque[tuple[float, int]] = dataclasses.field(
        default_factory=collections.deque
    )
    failed_reads: int = 0
    reading: consumer.Reading | None = None  # the last one this daemon put in Runtime.streams

    @property
    def uid(self) -> str:
        return str((self.body.get("metadata") or {}).get("uid") or "")

    @property
    def key(self) -> Key:
        return (self.namespace, self.name)

    @property
    def label(self) -> str:
        return f"{self.namespace}/{self.name}"


def _status_block(body: Mapping[str, Any], field: str = "autoscaling") -> JSONDict | None:
    block = (body.get("status") or {}).get(field)
    return dict(block) if isinstance(block, Mapping) else None


async def _post(poster: EventPoster, parent: JSONDict, event: Event) -> None:
    result = poster(parent, event)
    if inspect.isawaitable(result):
        await result


# -- the loop --------------------------------------------------------------------------------


async def run(
    namespace: str,
    name: str,
    body: Mapping[str, Any],
    stopped: Stopped,
    runtime: Runtime,
    pods_of: PodsOf,
    log: AnyLogger = logger,
) -> None:
    """Autoscale one TornadoService until `stopped`. Returns None (kopf would store a value)."""
    service = _Service(namespace, name, body, _Notes(log), _status_block(body))
    service.consumer_previous = _status_block(body, "consumer")
    try:
        next_at = runtime.clock()
        while not stopped and not service.gone and not runtime.closed:
            later: float | None = None
            try:
                later = await tick(service, runtime, pods_of)
                service.notes.resolved("api", f"API calls for {service.label} work again")
            except APIError as exc:
                service.notes.warn(
                    "api",
                    runtime.clock(),
                    (exc.status, exc.reason),
                    f"autoscaler of {service.label}: skipping ticks, API error: "
                    f"HTTP {exc.status}: {exc.message}"
                    + (
                        " (RBAC needs tornadoservices/scale get, patch)"
                        if exc.status == 403
                        else ""
                    ),
                )
            except Exception as exc:  # a bug: say so (with the traceback), keep autoscaling
                if runtime.closed:
                    break  # the operator is exiting: the tick lost its clients, not a bug
                if service.notes.due("bug", runtime.clock(), type(exc)):
                    log.exception("autoscaler tick of %s failed", service.label)
            next_at += runtime.interval if later is None else max(runtime.interval, later)
            now = runtime.clock()
            if next_at < now:  # a slow tick: start the next one now, do not catch up
                next_at = now
            if not service.gone and not runtime.closed:
                await stopped.wait(next_at - now)
    finally:
        if service.decider is not None:  # never another daemon's (a same-named successor's)
            runtime.autoscalers.remove(service.key, service.decider)
        if service.reading is not None and runtime.streams.get(service.key) is service.reading:
            del runtime.streams[service.key]
        # A same-named successor's daemon registers again at its next tick.
        await runtime.use_broker(service.key, None)
    if service.gone:
        log.info("%s is gone: its autoscaler stops", service.label)
        return
    if runtime.closed:
        return  # the operator is exiting: status stays as it is for the next one
    if clears_status(stopped.reason):
        try:
            cleared: JSONDict = {"autoscaling": None}
            if service.consumer_previous is not None:
                cleared["consumer"] = None
            await patch_status_fields(runtime.kube, namespace, name, cleared)
        except APIError as exc:
            log.warning("could not remove status.autoscaling of %s: %s", service.label, exc)


async def tick(service: _Service, runtime: Runtime, pods_of: PodsOf) -> float | None:
    """One tick for one service: a consumer's broker read, or the concurrency scrape. Returns
    the seconds until the next tick when that is more than the interval. APIError passes to
    the caller."""
    if consumer.is_consumer(dict(service.body.get("spec") or {})):
        return await consumer_tick(service, runtime)
    await concurrency_tick(service, runtime, pods_of)
    return None


async def concurrency_tick(service: _Service, runtime: Runtime, pods_of: PodsOf) -> None:
    """One scrape, decision and write for one service. APIError passes to the caller."""
    namespace, name = service.key
    try:
        spec = validated_spec(service.body.get("spec"))
        params = config.params_from_spec(spec)
    except ValueError as exc:  # InvalidSpecError too
        if not wanted(service.body.get("spec") or {}):
            return  # switched to metric cpu or off: kopf is stopping this daemon
        service.notes.warn(
            "spec", runtime.clock(), str(exc), f"not autoscaling {service.label}: {exc}"
        )
        return
    service.notes.resolved("spec", f"autoscaling {service.label} again")

    pods = [dict(p) for p in pods_of(namespace, name)]
    found = await observe(runtime.scraper, pods, namespace=namespace, name=name)
    scale = await read_scale(runtime.kube, namespace, name)
    if scale is None or (scale.uid and service.uid and scale.uid != service.uid):
        service.gone = True  # deleted, or a new object of the same name has its own daemon
        return
    now = runtime.clock()
    auto = service.decider = runtime.autoscalers.ensure(
        service.key, params, now=now, current_replicas=scale.replicas
    )
    result = auto.decide(found, current_replicas=scale.replicas, now=now)
    decision = result.decision

    scaled_at: str | None = None
    if decision.scale:
        if not await write_scale(
            runtime.kube, namespace, name, decision.desired_replicas, scale.resource_version
        ):
            service.notes.log.info(
                "spec.replicas of %s changed while deciding; deciding again next tick",
                service.label,
            )
            return
        scaled_at = runtime.wall()
        service.notes.log.info("scaled %s %s", service.label, report.scale_message(decision))
        event = report.scale_event(decision)
        if event is not None:
            try:
                await _post(
                    runtime.post_event,
                    dict(service.body),
                    Event(event.type, event.reason, event.message),
                )
            except APIError as exc:  # news of now: not retried
                service.notes.log.warning("could not post %s: %s", event.reason, exc)

    block = report.status_block(decision, service.previous, scaled_at=scaled_at)
    if report.needs_write(service.previous, block, now - service.written_at):
        await patch_status(runtime.kube, namespace, name, block)
        service.previous = block
        service.written_at = now

    failures = result.failures
    if failures:
        missing = tuple(sorted(line.split(":", 1)[0] for line in failures))
        service.notes.warn(
            "scrape",
            now,
            missing,
            f"metrics missing from {len(failures)} of {decision.ready_pods} ready pods of "
            f"{service.label} (not scaling down): " + "; ".join(failures),
        )
    else:
        service.notes.resolved("scrape", f"metrics of every ready pod of {service.label} again")


def _rate(service: _Service, reading: consumer.Reading) -> float | None:
    """Entries acknowledged per second over about RATE_WINDOW_SECONDS (None: not yet known,
    or the counter went back: the group was recreated)."""
    acked = reading.acked
    if not reading.ok or acked is None:
        return None
    window = service.acked
    if window and acked < window[-1][1]:
        window.clear()
    window.append((reading.time, acked))
    while len(window) > 2 and window[1][0] <= reading.time - RATE_WINDOW_SECONDS:
        window.popleft()
    (first_at, first), (last_at, last) = window[0], window[-1]
    if last_at - first_at <= 0:
        return None
    return (last - first) / (last_at - first_at)


async def consumer_tick(service: _Service, runtime: Runtime) -> float | None:
    """One broker read of a consumer: its reading for the reconciler, status.consumer, and with
    metric lag a decision written to the scale subresource. Returns the backoff after a
    failed read. APIError passes to the caller."""
    namespace, name = service.key
    try:
        spec = validated_spec(service.body.get("spec"))
        lag_params = config.lag_params_from_spec(spec) if config.uses_lag(spec) else None
    except ValueError as exc:  # InvalidSpecError too
        if not wanted(service.body.get("spec") or {}):
            return None
        service.notes.warn(
            "spec", runtime.clock(), str(exc), f"not reading the broker of {service.label}: {exc}"
        )
        return None
    service.notes.resolved("spec", f"reading the broker of {service.label} again")
    block = spec["consumer"]
    await runtime.use_broker(service.key, str(block["broker"]))
    reading = await runtime.broker.read(block["broker"], block["stream"], block["group"])
    metrics.BROKER_READS.labels(reason=reading.reason).inc()
    scale = await read_scale(runtime.kube, namespace, name)
    if scale is None or (scale.uid and service.uid and scale.uid != service.uid):
        service.gone = True
        return None
    now = runtime.clock()

    before = runtime.streams.get(service.key)
    runtime.streams[service.key] = service.reading = reading
    state_changed = before is None or before.reason != reading.reason
    if state_changed:
        # Only a change of state brings a reconcile (the condition and its Event), never a
        # read: the numbers are status.consumer's, written here.
        runtime.stream_changed(namespace, name)
    rate = _rate(service, reading)

    fields: JSONDict = {}
    if lag_params is not None:
        if service.lag_decider is None:
            service.lag_decider = LagDecider(lag_params, now=now, current_replicas=scale.replicas)
        else:
            service.lag_decider.update(lag_params)
        decision = service.lag_decider.step(reading, scale.replicas, now)
        metrics.LAG_DECISIONS.labels(direction=decision.direction).inc()
        scaled_at: str | None = None
        if decision.scale:
            if not await write_scale(
                runtime.kube, namespace, name, decision.desired_replicas, scale.resource_version
            ):
                service.notes.log.info(
                    "spec.replicas of %s changed while deciding; deciding again next tick",
                    service.label,
                )
                return None
            scaled_at = runtime.wall()
            service.notes.log.info("scaled %s %s", service.label, report.scale_message(decision))
            event = report.scale_event(decision)
            if event is not None:
                try:
                    await _post(
                        runtime.post_event,
                        dict(service.body),
                        Event(event.type, event.reason, event.message),
                    )
                except APIError as exc:  # news of now: not retried
                    service.notes.log.warning("could not post %s: %s", event.reason, exc)
        auto = report.lag_status_block(decision, service.previous, scaled_at=scaled_at)
        # The message is noisy while the readings are alike, but a broker that stops (or starts
        # again) answering changes what it says: "keeping N replicas" must show at once.
        if state_changed or report.needs_write(service.previous, auto, now - service.written_at):
            fields["autoscaling"] = auto
    else:
        service.lag_decider = None
        if service.previous is not None:
            fields["autoscaling"] = None  # lag autoscaling was switched off
    status = report.consumer_block(
        reading,
        service.consumer_previous,
        stream=str(block["stream"]),
        group=str(block["group"]),
        rate=rate,
        read_at=runtime.wall(),
    )
    if report.needs_write(service.consumer_previous, status, now - service.consumer_written_at):
        fields["consumer"] = status
    if fields:
        await patch_status_fields(runtime.kube, namespace, name, fields)
        if "autoscaling" in fields:
            service.previous = fields["autoscaling"]
            service.written_at = now
        if "consumer" in fields:
            service.consumer_previous = status
            service.consumer_written_at = now

    if reading.ok:
        service.failed_reads = 0
        service.notes.resolved("broker", f"the broker of {service.label} answers again")
        return None
    service.failed_reads += 1
    service.notes.warn(
        "broker", now, reading.reason, f"consumer {service.label}: {reading.message}"
    )
    return float(min(MAX_FAILED_POLL_SECONDS, runtime.interval * 2**service.failed_reads))
