"""Reconcile one TornadoService: validate, render, apply the children, write status.

The single path for every trigger (create, edit, operator restart, a child changed or deleted,
a pod changed): read the parent, its children and its pods from the watches (`observed`),
converge to the rendered state, and write only what differs: a child whose live object already
matches its rendered manifest gets no apply, and an unchanged status no patch. So a reconcile
that finds everything in place makes no API request at all.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from tornado_operator import (
    API_VERSION,
    KIND,
    assessment,
    conditions,
    consumer,
    drift,
    errors,
    labels,
    metrics,
    rendering,
)
from tornado_operator.assessment import Event
from tornado_operator.children import (
    CHILD_KINDS,
    DEPLOYMENT,
    ChildKind,
    Children,
    render_children,
)
from tornado_operator.composition import health
from tornado_operator.composition import spec as composition
from tornado_operator.composition.topology import Topology
from tornado_operator.consumer import Reading
from tornado_operator.errors import APIError, Problem
from tornado_operator.kubeapi import Kube
from tornado_operator.observed import Observed
from tornado_operator.resources import TORNADO_SERVICE
from tornado_operator.validation import InvalidSpecError, validated_spec

JSONDict = dict[str, Any]
Key = tuple[str, str]
# (namespace, name) -> a consumer's last broker read (the autoscaling daemons keep them).
StreamOf = Callable[[str, str], Reading | None]

logger = logging.getLogger(__name__)

# Operator-side problems that make the TornadoService Degraded at once. Temporary API failures
# only count after this many retries, so a single 409 or a restarting API server is not news.
DEGRADE_AFTER_RETRIES = 2
CHILD_RETRY_LIMIT = 6
# Reconciles running at once; the rest wait their turn, first come first served. Each one's
# requests share kubeapi.MAX_CONNECTIONS: with a thousand reconciles at once (an operator start,
# a burst of creates), every one of them waited behind all the others once per request, and
# each TornadoService was done only near the end. A few at a time, each gets its children
# created and its status written in a few round trips, and the controllers start on its pods
# while the next ones are reconciled.
RECONCILES_IN_FLIGHT = 16
# A new TornadoService's first status waits for its first rollout to finish, so a create costs
# one status write instead of one per step. News is written at once: Ready, a problem
# (Degraded, a conflict, an invalid spec) or pods no node takes; and after this long, whatever
# the rollout's state (a thousand services created at once take minutes to roll out).
FIRST_STATUS_GRACE_SECONDS = 120.0
# A namespace found not terminating is not asked again for this long (namespace_going).
NAMESPACE_PROBE_SECONDS = 5.0


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What one reconcile achieved. `problem` is None on success."""

    problem: Problem | None = None
    changed: tuple[str, ...] = ()  # kinds whose live object changed (created or restored)
    gone: bool = False  # the TornadoService no longer exists (or is being deleted)


@dataclasses.dataclass(frozen=True)
class Applied:
    """What applying the children did."""

    changed: tuple[str, ...] = ()  # kinds whose live object changed, in apply order
    created: tuple[str, ...] = ()  # kinds that did not exist before
    deployment: JSONDict | None = None  # the live Deployment (as an apply returned it)
    # A same-named object that is not ours: nothing at all was touched.
    conflict: Problem | None = None
    # An API call failed part-way; `changed` lists what was applied before it.
    error: Problem | None = None
    # The namespace refused the write because it is being deleted.
    terminating: bool = False


def owned_by(obj: JSONDict, uid: str) -> bool:
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("uid") == uid and ref.get("controller"):
            return True
    return False


def parent_of(obj: JSONDict) -> str | None:
    """Name of the TornadoService that controls a child, from its ownerReferences."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if (
            ref.get("controller")
            and ref.get("kind") == KIND
            and ref.get("apiVersion") == API_VERSION
        ):
            return str(ref.get("name"))
    return None


def instance_of(obj: JSONDict) -> str | None:
    """Name of the TornadoService a pod belongs to, from its labels."""
    value = ((obj.get("metadata") or {}).get("labels") or {}).get(labels.INSTANCE)
    return str(value) if value else None


def _rv(obj: JSONDict | None) -> str | None:
    return None if obj is None else (obj.get("metadata") or {}).get("resourceVersion")


def _created(obj: JSONDict) -> float:
    stamp = (obj.get("metadata") or {}).get("creationTimestamp")
    try:
        return datetime.datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


# (namespace, name) -> the upstream monitor's latest window of that caller, None before one.
UpstreamReports = Callable[[str, str], health.Report | None]


def _no_reports(_namespace: str, _name: str) -> health.Report | None:
    return None


class Reconciler:
    def __init__(
        self,
        kube: Kube,
        default_image: str,
        observed: Observed,
        *,
        operator_namespace: str | None = None,
        stream_of: StreamOf = lambda namespace, name: None,
        first_status_grace: float = FIRST_STATUS_GRACE_SECONDS,
    ) -> None:
        self.kube = kube
        self.default_image = default_image
        self.observed = observed
        # Where the operator's own pods run: their scrapes are let in by every NetworkPolicy.
        self.operator_namespace = operator_namespace
        # Which TornadoServices to reconcile when another one changes (composition.topology).
        self.topology = Topology()
        # The upstream monitor's reports (composition.monitor), read when status is written.
        self.upstream_reports: UpstreamReports = _no_reports
        self.stream_of = stream_of
        self.managed = metrics.ManagedObjects(KIND, [child.kind for child in CHILD_KINDS])
        self._locks: dict[Key, asyncio.Lock] = {}
        self._pending: set[Key] = set()
        self._retrying: set[Key] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(RECONCILES_IN_FLIGHT)
        # TornadoServices whose first status waits (FIRST_STATUS_GRACE_SECONDS): the deadline.
        self.first_status_grace = first_status_grace
        self._first_status: dict[Key, float] = {}
        self._alive_until: dict[str, float] = {}  # namespace -> until when it counts as alive

    def post_event(self, parent: JSONDict, event: Event) -> None:
        """Post an Event about `parent` in the background: a reconcile never waits for it."""
        task = asyncio.create_task(self._post_event(parent, event))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _post_event(self, parent: JSONDict, event: Event) -> None:
        try:
            await self.kube.post_event(
                parent, type=event.type, reason=event.reason, message=event.message
            )
        except APIError as exc:
            # Not retried (see kubeapi.post_event); a terminating namespace is no news at all.
            if errors.namespace_terminating(exc) or exc.status == 404:
                logger.debug("event %s dropped: %s", event.reason, exc.message)
            else:
                logger.warning("could not post event %s: %s", event.reason, exc.message)

    def _lock(self, key: Key) -> asyncio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        return lock

    async def reconcile(
        self, namespace: str, name: str, *, trigger: str, retry: int = 0
    ) -> Outcome:
        """Reconcile now (after any reconcile of the same object that is in progress)."""
        key = (namespace, name)
        async with self._lock(key):
            return await self._timed(namespace, name, trigger=trigger, retry=retry)

    def schedule(self, namespace: str, name: str, *, trigger: str) -> None:
        """reconcile_soon in the background: for another object than the one being handled."""
        task = asyncio.create_task(self.reconcile_soon(namespace, name, trigger=trigger))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def links_changed(
        self, namespace: str, name: str, body: JSONDict | None, *, listing: bool
    ) -> None:
        """A TornadoService event (body None: it is gone): reconcile the TornadoServices whose
        NetworkPolicy names it as a caller or whose UPSTREAMS and status name it."""
        wanted = self.topology.observe(
            (namespace, name), body, self.observed.callers, listing=listing
        )
        for other_ns, other in sorted(wanted):
            self.schedule(other_ns, other, trigger="link")

    async def reconcile_soon(self, namespace: str, name: str, *, trigger: str) -> None:
        """Reconcile for a child or pod event. Bursts of events for one TornadoService collapse
        into one reconcile that starts after the burst's first event; temporary failures are
        retried in the background with backoff, a bounded number of times."""
        key = (namespace, name)
        if key in self._pending:
            return
        self._pending.add(key)
        async with self._lock(key):
            outcome = await self._timed(namespace, name, trigger=trigger, retry=0, pending=True)
        if (
            outcome.problem is not None
            and not outcome.problem.permanent
            and key not in self._retrying
        ):
            self._retrying.add(key)
            task = asyncio.create_task(self._retry_later(namespace, name, trigger))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _retry_later(self, namespace: str, name: str, trigger: str) -> None:
        key = (namespace, name)
        try:
            for attempt in range(CHILD_RETRY_LIMIT):
                await asyncio.sleep(errors.backoff(attempt))
                outcome = await self.reconcile(namespace, name, trigger=trigger, retry=attempt + 1)
                if outcome.problem is None or outcome.problem.permanent:
                    return
        finally:
            self._retrying.discard(key)

    async def _timed(
        self, namespace: str, name: str, *, trigger: str, retry: int, pending: bool = False
    ) -> Outcome:
        async with self._slots:
            if pending:
                # From here on the state is read afresh: later events need a reconcile of
                # their own, the ones that came while this one waited for its turn do not.
                self._pending.discard((namespace, name))
            started = time.monotonic()
            try:
                outcome = await self._reconcile(namespace, name, trigger=trigger, retry=retry)
            except Exception:
                metrics.RECONCILES.labels(trigger=trigger, result="crash").inc()
                metrics.ERRORS.labels(reason="Unexpected").inc()
                raise
            finally:
                metrics.DURATION.observe(time.monotonic() - started)
        if outcome.problem is None:
            result = "ok"
        else:
            result = "permanent" if outcome.problem.permanent else "temporary"
            metrics.ERRORS.labels(reason=outcome.problem.reason).inc()
        metrics.RECONCILES.labels(trigger=trigger, result=result).inc()
        if outcome.gone:
            self.managed.set((namespace, name), None)
            self._first_status.pop((namespace, name), None)
            lock = self._locks.get((namespace, name))
            if lock is not None and not lock.locked():
                self._locks.pop((namespace, name), None)
        return outcome

    async def _reconcile(self, namespace: str, name: str, *, trigger: str, retry: int) -> Outcome:
        parent = self.observed.get(TORNADO_SERVICE.kind, namespace, name)
        if parent is None or (parent.get("metadata") or {}).get("deletionTimestamp"):
            # Deletion is garbage collection's job: children carry ownerReferences.
            return Outcome(gone=True)
        if self.observed.terminating(namespace, _created(parent)):
            return Outcome(gone=True)

        meta = parent["metadata"]
        try:
            spec = validated_spec(parent.get("spec"))
        except InvalidSpecError as exc:
            invalid = Problem(
                reason="InvalidSpec",
                message=f"the spec does not match the TornadoService schema: {exc}",
                permanent=True,
            )
            await self._safe_status(parent, None, None, invalid)
            return Outcome(invalid)

        resolution = composition.resolve(
            composition.entries(spec, namespace),
            lambda ns, n: self.observed.get(TORNADO_SERVICE.kind, ns, n),
        )
        links = rendering.Links(
            upstream_urls=resolution.urls,
            callers=tuple(self.observed.callers(namespace, name)),
            operator_namespace=self.operator_namespace,
        )
        info = rendering.Parent(name=name, namespace=namespace, uid=str(meta["uid"]), links=links)
        children = render_children(info, spec, self.default_image)
        applied = await self._apply_children(info, children)
        if applied.terminating:
            return Outcome(gone=True)
        if applied.error is not None:
            if applied.error.permanent or retry >= DEGRADE_AFTER_RETRIES:
                await self._safe_status(parent, spec, None, applied.error, resolution=resolution)
            return Outcome(applied.error, applied.changed)

        if DEPLOYMENT.kind in applied.created and not parent.get("status"):
            self._await_first_rollout(namespace, name)
        if applied.changed and trigger in ("child", "pod"):
            for kind in applied.changed:
                self.post_event(
                    parent,
                    Event(
                        "Normal",
                        "DriftCorrected",
                        f"restored {kind} {name} to the TornadoService spec",
                    ),
                )
        pods = self.observed.pods(namespace, name)
        await self._safe_status(
            parent, spec, applied.deployment, applied.conflict, pods, resolution=resolution
        )
        if applied.conflict is None:
            kinds = frozenset(c["kind"] for c in children.all())
            self.managed.set((namespace, name), kinds)
        return Outcome(applied.conflict, applied.changed)

    async def _apply_children(self, info: rendering.Parent, children: Children) -> Applied:
        """Apply every desired child that differs from its live object and remove our unwanted
        ones, unless one of them exists and is not ours: then nothing at all is touched.

        A reconcile's requests go out together (its GETs, then its writes): each one waits its
        turn in the shared connection pool, so sending them one after another made a reconcile
        wait that turn once per child."""
        try:
            live = dict(
                zip(
                    [child.kind for child in CHILD_KINDS],
                    await _all(self._live_child(child, info, children) for child in CHILD_KINDS),
                    strict=True,
                )
            )
        except APIError as exc:
            return self._failed(info, exc, ())
        for child in CHILD_KINDS:
            obj = live[child.kind]
            if obj is not None and children[child.kind] is not None and not owned_by(obj, info.uid):
                return Applied(conflict=_conflict(child.kind, info))
        results = await asyncio.gather(
            *(
                self._apply_child(child, info, children[child.kind], live[child.kind])
                for child in CHILD_KINDS
            ),
            return_exceptions=True,
        )
        changed: list[str] = []
        created: list[str] = []
        deployment: JSONDict | None = None
        failure: APIError | None = None
        for child, result in zip(CHILD_KINDS, results, strict=True):
            if isinstance(result, APIError):
                failure = failure or result
                continue
            if isinstance(result, BaseException):
                raise result
            obj, did_change = result
            if did_change:
                changed.append(child.kind)
                if live[child.kind] is None:
                    created.append(child.kind)
            if child is DEPLOYMENT:
                deployment = obj
        if failure is not None:
            return self._failed(info, failure, tuple(changed))
        return Applied(changed=tuple(changed), created=tuple(created), deployment=deployment)

    def _failed(self, info: rendering.Parent, exc: APIError, changed: tuple[str, ...]) -> Applied:
        if errors.namespace_terminating(exc):
            self.observed.saw_terminating(info.namespace)
            return Applied(changed=changed, terminating=True)
        return Applied(changed=changed, error=errors.classify(exc, "applying children"))

    async def _live_child(
        self, child: ChildKind, info: rendering.Parent, children: Children
    ) -> JSONDict | None:
        obj = self.observed.get(child.kind, info.namespace, info.name)
        if obj is None and children[child.kind] is not None:
            # The watches see only objects labelled as ours, so before creating one, ask
            # whether a same-named object of someone else is there (one GET per child when it
            # is first made, never once it is watched).
            obj = await self.kube.get(child, info.namespace, info.name)
        return obj

    async def _apply_child(
        self,
        child: ChildKind,
        info: rendering.Parent,
        manifest: JSONDict | None,
        obj: JSONDict | None,
    ) -> tuple[JSONDict | None, bool]:
        """Bring one child to `manifest` (None: not wanted). The live object afterwards, and
        whether this changed it."""
        if manifest is None:
            if obj is not None and owned_by(obj, info.uid):
                uid = str(obj["metadata"]["uid"])
                if await self.kube.delete_owned(child, info.namespace, info.name, uid):
                    logger.info(
                        "deleted %s %s/%s: no longer wanted", child.kind, info.namespace, info.name
                    )
                    metrics.APPLIES.labels(kind=child.kind, changed="deleted").inc()
            return None, False
        if obj is not None and (obj.get("metadata") or {}).get("deletionTimestamp"):
            # Being deleted (garbage collection, a foreground delete): applying now would edit
            # a dying object. Its deletion event brings the next reconcile.
            return None, False
        if drift.up_to_date(manifest, obj):
            metrics.APPLIES.labels(kind=child.kind, changed="skipped").inc()
            return obj, False
        result = await self.kube.apply(child, manifest)
        self.observed.wrote(child.kind, result)
        did_change = _rv(result) != _rv(obj)
        metrics.APPLIES.labels(kind=child.kind, changed=str(did_change).lower()).inc()
        if did_change:
            logger.info(
                "%s %s %s/%s",
                "updated" if obj else "created",
                child.kind,
                info.namespace,
                info.name,
            )
        return result, did_change

    def _await_first_rollout(self, namespace: str, name: str) -> None:
        """Hold back the first status of a TornadoService whose children were just created,
        and reconcile when the wait is over (its pods' events usually come first)."""
        key = (namespace, name)
        if key in self._first_status or self.first_status_grace <= 0:
            return
        self._first_status[key] = time.monotonic() + self.first_status_grace
        task = asyncio.create_task(self._reconcile_after(namespace, name))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _reconcile_after(self, namespace: str, name: str) -> None:
        await asyncio.sleep(self.first_status_grace)
        await self.reconcile_soon(namespace, name, trigger="first-status")

    def _holds_first_status(self, key: Key, found: assessment.Assessment) -> bool:
        deadline = self._first_status.get(key)
        if deadline is None:
            return False
        if time.monotonic() < deadline and not found.news:
            return True
        del self._first_status[key]
        return False

    async def _safe_status(
        self,
        parent: JSONDict,
        spec: JSONDict | None,
        deployment: JSONDict | None,
        blocker: Problem | None,
        pods: list[JSONDict] | None = None,
        *,
        resolution: composition.Resolution | None = None,
    ) -> None:
        try:
            await self._write_status(
                parent,
                spec,
                deployment,
                pods or [],
                blocker,
                resolution or composition.Resolution(),
            )
        except APIError as exc:
            # The next reconcile writes it; a status write must not turn success into failure.
            if errors.namespace_terminating(exc):
                self.observed.saw_terminating(str(parent["metadata"]["namespace"]))
                return
            logger.warning("could not write status of %s: %s", parent["metadata"]["name"], exc)

    async def _write_status(
        self,
        parent: JSONDict,
        spec: JSONDict | None,
        deployment: JSONDict | None,
        pods: list[JSONDict],
        blocker: Problem | None,
        resolution: composition.Resolution,
    ) -> None:
        meta = parent["metadata"]
        old_status: JSONDict = parent.get("status") or {}
        old_conditions = list(old_status.get("conditions") or [])
        upstream_fields, upstream_conditions, upstream_events = self._upstream_status(
            parent, spec, resolution
        )
        found = assessment.assess(
            name=meta["name"],
            namespace=meta["namespace"],
            spec=spec,
            default_image=self.default_image,
            deployment=deployment,
            pods=pods,
            blocker=blocker,
            stream=_stream(self.stream_of(meta["namespace"], meta["name"]), old_conditions),
        )
        if blocker is None and self._holds_first_status((meta["namespace"], meta["name"]), found):
            return
        generation = int(meta.get("generation") or 0)
        status: JSONDict = {
            **found.fields,
            **upstream_fields,
            "observedGeneration": generation,
            "conditions": conditions.merge(
                old_conditions,
                (*found.conditions, *upstream_conditions),
                generation,
                conditions.now_rfc3339(),
            ),
        }
        current = {k: old_status.get(k) for k in status}
        if current != status:
            if _fewer_pods(old_status, status) and await self._namespace_going(parent):
                return
            written = await self.kube.patch_status(meta["namespace"], meta["name"], status)
            self.observed.wrote(TORNADO_SERVICE.kind, written)
        for event in (
            *assessment.transition_events(old_conditions, found.conditions),
            *upstream_events,
        ):
            self.post_event(parent, event)

    async def _namespace_going(self, parent: JSONDict) -> bool:
        """Whether the parent's namespace is being deleted. Asked when pods went away, before
        their loss is written: deleting a namespace deletes its pods, and a status patch, unlike
        a create, is still taken then (a thousand of them when a namespace of a thousand
        services goes). A namespace found alive is not asked again for a few seconds, so a
        rollout's or a scale-down's departing pods cost one request per namespace at most."""
        namespace = str(parent["metadata"]["namespace"])
        now = time.monotonic()
        if self._alive_until.get(namespace, 0.0) > now:
            return False
        try:
            going = await self.kube.namespace_terminating(parent)
        except APIError as exc:
            logger.debug("could not tell whether namespace %s is terminating: %s", namespace, exc)
            return False
        if going:
            self.observed.saw_terminating(namespace)
            self._alive_until.pop(namespace, None)
            return True
        self._alive_until = {ns: t for ns, t in self._alive_until.items() if t > now}
        self._alive_until[namespace] = now + NAMESPACE_PROBE_SECONDS
        return False

    def _upstream_status(
        self, parent: JSONDict, spec: JSONDict | None, resolution: composition.Resolution
    ) -> tuple[JSONDict, tuple[conditions.Condition, ...], list[Event]]:
        """status.upstreams, the UpstreamsHealthy condition and their Events. An invalid spec
        keeps what the last valid one gave; a spec without upstreams removes both."""
        meta = parent["metadata"]
        old_status: JSONDict = parent.get("status") or {}
        old_items = list(old_status.get("upstreams") or [])
        old_condition = conditions.find(old_status.get("conditions") or [], health.CONDITION)
        if spec is None:
            if old_condition is None:
                return {}, (), []
            kept = conditions.Condition(
                health.CONDITION,
                old_condition.get("status") == "True",
                str(old_condition.get("reason") or health.REASON_HEALTHY),
                str(old_condition.get("message") or ""),
            )
            return {}, (kept,), []
        entries = composition.entries(spec, str(meta["namespace"]))
        if not entries:
            return ({"upstreams": None} if "upstreams" in old_status else {}), (), []
        report = self.upstream_reports(str(meta["namespace"]), str(meta["name"]))
        items = health.status_items(entries, resolution, report, old_items)
        cond = health.condition(items)
        events = health.transition_events(old_items, items, old_condition, cond)
        return {"upstreams": items}, (cond,), events


def _fewer_pods(old: JSONDict, new: JSONDict) -> bool:
    return any(int(new.get(k) or 0) < int(old.get(k) or 0) for k in ("replicas", "readyReplicas"))


def _stream(reading: Reading | None, old_conditions: list[JSONDict]) -> Reading | None:
    """The consumer's last broker read, or, before this process has read it (an operator
    restart, a takeover), what the status last said: the condition and Degraded do not flap,
    and no Event repeats, while the daemon makes its first read."""
    if reading is not None:
        return reading
    old = conditions.find(old_conditions, consumer.STREAM_AVAILABLE)
    if old is None or old.get("reason") == consumer.NOT_READ_YET:
        return None
    return Reading(str(old.get("reason") or ""), str(old.get("message") or ""), 0.0)


async def _all(requests: Iterable[Awaitable[JSONDict | None]]) -> list[JSONDict | None]:
    """Every request's answer, in order; the first failure (in order) once all have ended, so
    none is left running unobserved."""
    results = await asyncio.gather(*requests, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return [r for r in results if not isinstance(r, BaseException)]


def _conflict(kind: str, info: rendering.Parent) -> Problem:
    return Problem(
        reason="ResourceConflict",
        message=f"a {kind} named {info.name} already exists in namespace {info.namespace} "
        f"and is not owned by this TornadoService; the operator leaves it alone. "
        f"Delete or rename that {kind}, or give the TornadoService another name.",
        # Retried slowly until that object is gone; it is not an API failure.
        retry_after=errors.SLOW_RETRY_SECONDS,
    )
