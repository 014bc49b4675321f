"""Reconcile one TornadoService: validate, render, apply the children, write status.

The single path for every trigger (create, edit, operator restart, a child changed or deleted,
a pod changed): always read the parent fresh, always converge to the rendered state.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any

from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from tornado_operator import (
    API_VERSION,
    KIND,
    assessment,
    conditions,
    errors,
    labels,
    metrics,
    rendering,
)
from tornado_operator.assessment import Blocker, Event
from tornado_operator.kubeapi import Kube
from tornado_operator.validation import InvalidSpecError, validated_spec

JSONDict = dict[str, Any]
Key = tuple[str, str]
EventPoster = Callable[[JSONDict, Event], None]

logger = logging.getLogger(__name__)

# Operator-side problems that make the TornadoService Degraded at once. Temporary API failures
# only count after this many retries, so a single 409 or a restarting API server is not news.
DEGRADE_AFTER_RETRIES = 2
CHILD_RETRY_LIMIT = 6


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What one reconcile achieved. `failure` is None on success."""

    failure: errors.Failure | None = None
    changed: tuple[str, ...] = ()  # kinds whose live object changed (created or restored)
    gone: bool = False  # the TornadoService no longer exists (or is being deleted)


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


class Reconciler:
    def __init__(self, kube: Kube, default_image: str, post_event: EventPoster) -> None:
        self.kube = kube
        self.default_image = default_image
        self.post_event = post_event
        self.managed = metrics.ManagedObjects()
        self._locks: dict[Key, asyncio.Lock] = {}
        self._pending: set[Key] = set()
        self._retrying: set[Key] = set()
        self._tasks: set[asyncio.Task[None]] = set()

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

    async def reconcile_soon(self, namespace: str, name: str, *, trigger: str) -> None:
        """Reconcile for a child or pod event. Bursts of events for one TornadoService collapse
        into one reconcile that starts after the burst's first event; temporary failures are
        retried in the background with backoff, a bounded number of times."""
        key = (namespace, name)
        if key in self._pending:
            return
        self._pending.add(key)
        async with self._lock(key):
            self._pending.discard(key)
            outcome = await self._timed(namespace, name, trigger=trigger, retry=0)
        if (
            outcome.failure is not None
            and not outcome.failure.permanent
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
                if outcome.failure is None or outcome.failure.permanent:
                    return
        finally:
            self._retrying.discard(key)

    async def _timed(self, namespace: str, name: str, *, trigger: str, retry: int) -> Outcome:
        started = time.monotonic()
        try:
            outcome = await self._reconcile(namespace, name, trigger=trigger, retry=retry)
        except Exception:
            metrics.RECONCILES.labels(trigger=trigger, result="crash").inc()
            metrics.ERRORS.labels(reason="Unexpected").inc()
            raise
        finally:
            metrics.DURATION.observe(time.monotonic() - started)
        if outcome.failure is None:
            result = "ok"
        else:
            result = "permanent" if outcome.failure.permanent else "temporary"
            metrics.ERRORS.labels(reason=outcome.failure.reason).inc()
        metrics.RECONCILES.labels(trigger=trigger, result=result).inc()
        if outcome.gone:
            self.managed.set((namespace, name), None)
            lock = self._locks.get((namespace, name))
            if lock is not None and not lock.locked():
                self._locks.pop((namespace, name), None)
        return outcome

    async def _reconcile(self, namespace: str, name: str, *, trigger: str, retry: int) -> Outcome:
        try:
            parent = await self.kube.get(API_VERSION, KIND, namespace, name)
        except (ApiException, HTTPError, OSError) as exc:
            return Outcome(errors.classify(exc, f"reading TornadoService {name}"))
        if parent is None or (parent.get("metadata") or {}).get("deletionTimestamp"):
            # Deletion is garbage collection's job: children carry ownerReferences.
            return Outcome(gone=True)

        meta = parent["metadata"]
        info = rendering.Parent(name=name, namespace=namespace, uid=str(meta["uid"]))
        try:
            spec = validated_spec(parent.get("spec"))
        except InvalidSpecError as exc:
            message = f"the spec does not match the TornadoService schema: {exc}"
            await self._safe_status(parent, None, None, Blocker("InvalidSpec", message))
            return Outcome(errors.Failure(True, 0, "InvalidSpec", str(exc)))

        children = rendering.render_children(info, spec, self.default_image)
        changed: list[str] = []
        try:
            blocker, deployment = await self._apply_children(parent, info, children, changed)
        except (ApiException, HTTPError, OSError) as exc:
            apply_failure = errors.classify(exc, "applying children")
            if apply_failure.permanent or retry >= DEGRADE_AFTER_RETRIES:
                problem = Blocker(apply_failure.reason, apply_failure.message)
                await self._safe_status(parent, spec, None, problem)
            return Outcome(apply_failure, tuple(changed))

        if changed and trigger in ("child", "pod"):
            for kind in changed:
                self.post_event(
                    parent,
                    Event(
                        "Normal",
                        "DriftCorrected",
                        f"restored {kind} {name} to the TornadoService spec",
                    ),
                )
        failure: errors.Failure | None = None
        if blocker is not None:
            failure = errors.Failure(
                False, 409, blocker.reason, blocker.message, min_delay=errors.SLOW_RETRY_SECONDS
            )
        try:
            pods = await self.kube.list("v1", "Pod", namespace, labels.selector_string(name))
        except (ApiException, HTTPError, OSError) as exc:
            return Outcome(errors.classify(exc, "listing pods"), tuple(changed))
        await self._safe_status(parent, spec, deployment, blocker, pods)
        if blocker is None:
            kinds = frozenset(c["kind"] for c in children.all())
            self.managed.set((namespace, name), kinds)
        return Outcome(failure, tuple(changed))

    async def _apply_children(
        self,
        parent: JSONDict,
        info: rendering.Parent,
        children: rendering.Children,
        changed: list[str],
    ) -> tuple[Blocker | None, JSONDict | None]:
        """Apply every desired child and remove our unwanted ones, unless one of them exists
        and is not ours: then nothing at all is touched."""
        wanted: list[tuple[str, str, JSONDict | None]] = [
            ("apps/v1", "Deployment", children.deployment),
            ("v1", "Service", children.service),
            ("autoscaling/v2", "HorizontalPodAutoscaler", children.hpa),
            ("policy/v1", "PodDisruptionBudget", children.pdb),
        ]
        live: dict[str, JSONDict | None] = {}
        for api_version, kind, manifest in wanted:
            obj = await self.kube.get(api_version, kind, info.namespace, info.name)
            live[kind] = obj
            if obj is not None and manifest is not None and not owned_by(obj, info.uid):
                return (
                    Blocker(
                        "ResourceConflict",
                        f"a {kind} named {info.name} already exists in namespace {info.namespace} "
                        f"and is not owned by this TornadoService; the operator leaves it alone. "
                        f"Delete or rename that {kind}, or give the TornadoService another name.",
                    ),
                    None,
                )
        deployment: JSONDict | None = None
        for api_version, kind, manifest in wanted:
            obj = live[kind]
            if manifest is None:
                if obj is not None and owned_by(obj, info.uid):
                    uid = str(obj["metadata"]["uid"])
                    if await self.kube.delete_owned(
                        api_version, kind, info.namespace, info.name, uid
                    ):
                        logger.info(
                            "deleted %s %s/%s: no longer wanted", kind, info.namespace, info.name
                        )
                        metrics.APPLIES.labels(kind=kind, changed="deleted").inc()
                continue
            result = await self.kube.apply(manifest)
            did_change = _rv(result) != _rv(obj)
            metrics.APPLIES.labels(kind=kind, changed=str(did_change).lower()).inc()
            if did_change:
                changed.append(kind)
                logger.info(
                    "%s %s %s/%s", "updated" if obj else "created", kind, info.namespace, info.name
                )
            if kind == "Deployment":
                deployment = result
        return None, deployment

    async def _safe_status(
        self,
        parent: JSONDict,
        spec: JSONDict | None,
        deployment: JSONDict | None,
        blocker: Blocker | None,
        pods: list[JSONDict] | None = None,
    ) -> None:
        try:
            await self._write_status(parent, spec, deployment, pods or [], blocker)
        except (ApiException, HTTPError, OSError) as exc:
            # The next reconcile writes it; a status write must not turn success into failure.
            logger.warning("could not write status of %s: %s", parent["metadata"]["name"], exc)

    async def _write_status(
        self,
        parent: JSONDict,
        spec: JSONDict | None,
        deployment: JSONDict | None,
        pods: list[JSONDict],
        blocker: Blocker | None,
    ) -> None:
        meta = parent["metadata"]
        old_status: JSONDict = parent.get("status") or {}
        old_conditions = list(old_status.get("conditions") or [])
        found = assessment.assess(
            name=meta["name"],
            namespace=meta["namespace"],
            spec=spec,
            default_image=self.default_image,
            deployment=deployment,
            pods=pods,
            blocker=blocker,
        )
        generation = int(meta.get("generation") or 0)
        status: JSONDict = {
            **found.fields,
            "observedGeneration": generation,
            "conditions": conditions.merge(
                old_conditions, found.conditions, generation, conditions.now_rfc3339()
            ),
        }
        current = {k: old_status.get(k) for k in status}
        if current != status:
            await self.kube.patch_status(meta["namespace"], meta["name"], status)
        for event in assessment.transition_events(old_conditions, found.conditions):
            self.post_event(parent, event)
