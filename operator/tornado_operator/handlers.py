"""kopf handlers: the operator's wiring to the watch streams.

Importing this module registers the handlers with kopf's default registry; `tornado-operator
run` does that, and so can `kopf run -m tornado_operator.handlers` (tests use kopf's
KopfRunner that way). Settings come in kopf's memo (`memo.settings`) when the CLI runs the
operator, else from the TORNADO_OPERATOR_* environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Mapping
from typing import Any

import kopf
from prometheus_client import start_http_server

from tornado_operator import (
    FIELD_MANAGER,
    GROUP,
    PLURAL,
    VERSION,
    kopf_relist,
    kopf_slim,
    kopf_toggles,
    kubeapi,
    labels,
)
from tornado_operator import settings as settings_mod
from tornado_operator.autoscaling import daemon as autoscaling_daemon
from tornado_operator.children import CHILD_KINDS
from tornado_operator.composition import monitor as upstream_monitor
from tornado_operator.composition import spec as composition
from tornado_operator.kubeapi import Kube
from tornado_operator.observed import (
    KOPF_DIFFBASE_KEY,
    Observed,
    Packed,
    pack,
    resource_version,
    slim,
    slim_pod,
    unpack,
)
from tornado_operator.reconcile import Reconciler, instance_of, parent_of
from tornado_operator.resources import POD, TORNADO_SERVICE, Resource

JSONDict = dict[str, Any]
# Before any watch starts: kopf's start-up wait is quadratic in the watched objects otherwise,
# a deletion missed while a watch was broken is never heard of, and every watched object is
# held whole (managedFields and all) until the last kind is listed.
kopf_toggles.apply()
kopf_relist.apply()
kopf_slim.apply()

logger = logging.getLogger(__name__)

# The watch handlers: they run on every event of every watched object (7,000 objects at a
# thousand services), so kopf's "Handler ... succeeded." line for them is noise, not news.
WATCH_HANDLER_IDS = frozenset(
    {"links", "pod_event", *(f"{child.plural}-event" for child in CHILD_KINDS)}
)


class QuietWatchHandlers(logging.Filter):
    """Drops kopf's success line of the watch handlers; their failures still show."""

    _lines = frozenset(f"Handler {i!r} succeeded." for i in WATCH_HANDLER_IDS)

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.INFO or record.getMessage() not in self._lines


_metrics_port_started: int | None = None

MANAGED = {labels.MANAGED_BY: FIELD_MANAGER}
# Watched with the server-side filter MANAGED_SELECTOR: every child kind, and the pods.
WATCHED: tuple[Resource, ...] = (*CHILD_KINDS, POD)
# kopf indexes, named after the kind: the watches' view of every object the operator reads.
PARENT_INDEX = "index_tornadoservices"
# (namespace, name) of a TornadoService -> (namespace, name) of each one whose spec.upstreams
# names it: who may call it, for its NetworkPolicy.
CALLERS_INDEX = "index_upstream_callers"
POD_INDEX = "index_pods"
CHILD_INDEXES = {child.kind: f"index_{child.plural}" for child in CHILD_KINDS}
# Objects per page of kopf's initial listings.
LIST_CHUNK = 250
# kopf retries a failed API request after 1, 1, 2, 3, 5, 8, 13 and 21 s, then gives up (54 s);
# its peering keep-alive giving up stops the whole operator (or, in older kopf, only the
# keep-alive: nolar/kopf#762). Retrying for about 5 minutes, at most 5 s apart, rides out an API
# server that is away that long (a control-plane restart) and resumes within 5 s of its return.
API_RETRY_BACKOFFS: tuple[float, ...] = (1, 1, 2, 3, 5) + (5,) * 58


@kopf.index(GROUP, VERSION, PLURAL, id=PARENT_INDEX)
def index_tornadoservices(
    body: kopf.Body, name: str, namespace: str | None, **_: Any
) -> dict[tuple[str, str], Packed]:
    return {(namespace or "", name): pack(slim(body, shared=False))}


@kopf.index(GROUP, VERSION, PLURAL, id=CALLERS_INDEX)
def index_upstream_callers(
    body: kopf.Body, name: str, namespace: str | None, **_: Any
) -> dict[tuple[str, str], tuple[str, str]]:
    caller = (namespace or "", name)
    found = composition.targets(body.get("spec"), namespace or "")
    # Always a mapping, empty too: kopf keeps an object's old entries when its index function
    # returns None, and an upstream removed from the spec would stay a caller.
    return {target: caller for target in found}


def index_child(
    body: kopf.Body, name: str, namespace: str | None, **_: Any
) -> dict[tuple[str, str], Packed] | None:
    # Keyed by the parent's name: children are named after it, but a child that is not ours
    # (a same-named object of someone else) must be seen too, to be left alone.
    return {(namespace or "", name): pack(slim(body, shared=False))}


for _child in CHILD_KINDS:
    kopf.index(
        group=_child.group,
        version=_child.version,
        plural=_child.plural,
        id=CHILD_INDEXES[_child.kind],
    )(index_child)


@kopf.index(group=POD.group, version=POD.version, plural=POD.plural, labels=MANAGED, id=POD_INDEX)
def index_pods(
    body: kopf.Body, namespace: str | None, **_: Any
) -> dict[tuple[str, str], Packed] | None:
    instance = instance_of(dict(body))
    return {(namespace or "", instance): pack(slim_pod(body, shared=False))} if instance else None


def observed_from(indices: Mapping[str, Any]) -> Observed:
    """An Observed reading kopf's live indexes (read-only views that kopf keeps current)."""
    by_kind = {TORNADO_SERVICE.kind: indices[PARENT_INDEX]}
    by_kind.update({kind: indices[index] for kind, index in CHILD_INDEXES.items()})
    pods_index = indices[POD_INDEX]

    def lookup(kind: str, namespace: str, name: str) -> JSONDict | None:
        store: Iterable[Packed] = by_kind[kind].get((namespace, name), ())
        packed = next(iter(store), None)
        return None if packed is None else unpack(packed)

    def pods(namespace: str, instance: str) -> Iterable[JSONDict]:
        found: Iterable[Packed] = pods_index.get((namespace, instance), ())
        return [unpack(p) for p in found]

    callers_index = indices.get(CALLERS_INDEX)

    def callers(namespace: str, name: str) -> Iterable[tuple[str, str]]:
        found: Iterable[tuple[str, str]] = (
            callers_index.get((namespace, name), ()) if callers_index is not None else ()
        )
        return found

    return Observed(lookup, pods, callers)


def _start_metrics(port: int) -> None:
    # The Prometheus registry is process-wide, so one endpoint serves every operator run in
    # this process (tests start several in a row).
    global _metrics_port_started
    if port and _metrics_port_started is None:
        start_http_server(port)
        _metrics_port_started = port


@kopf.on.login()
async def login(**_: Any) -> kopf.ConnectionInfo:
    """kopf's watch streams use the same credentials as our API calls (service account in a
    pod, else $KUBECONFIG as it is now)."""
    return await kubeapi.connection_info(await kubeapi.load_configuration())


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: Any, **kwargs: Any) -> None:
    patches = (
        (kopf_toggles, "start-up with thousands of watched objects will be slow"),
        (kopf_relist, "a child deleted while a watch is broken (an API server restart) stays gone"),
        (kopf_slim, "start-up with thousands of watched objects will take much more memory"),
    )
    for patch, without in patches:
        if not patch.applied():
            logger.warning(
                "kopf %s is not the version %s was written for (%s): %s",
                getattr(kopf, "__version__", "?"),
                patch.__name__.rsplit(".", 1)[-1],
                patch.PATCHED_KOPF_VERSION,
                without,
            )
    cfg = memo.get("settings")
    if not isinstance(cfg, settings_mod.Settings):
        # kopf loaded this module itself (`kopf run -m`): no CLI put settings in the memo.
        cfg = memo["settings"] = settings_mod.from_env()
    # kopf's own state goes into annotations under our group: the status schema would prune
    # unknown status fields, and annotations survive any CRD schema.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key=KOPF_DIFFBASE_KEY
    )
    settings.persistence.finalizer = f"{GROUP}/kopf-finalizer"  # never added: no delete handlers
    # No namespace/CRD listing: least privilege, and --namespace values are exact names.
    settings.scanning.disabled = True
    # Events come from kopf.event() calls for condition transitions, never from log lines.
    settings.posting.loggers = False
    # Listed in pages: one response for 2,000 pods is tens of MiB of JSON decoded at once.
    settings.watching.chunk_size = LIST_CHUNK
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.networking.request_timeout = 60
    for resource in WATCHED:
        key = (resource.group, resource.version, resource.plural)
        settings.watching.label_selectors[key] = labels.MANAGED_SELECTOR
    # A standby resumes when the active replica's record expires (kopf sleeps until exactly
    # then): this bounds the failover after an unclean death. Read by kopf's keep-alive, which
    # starts after the startup handlers.
    settings.peering.lifetime = cfg.peering_lifetime_seconds
    settings.networking.error_backoffs = API_RETRY_BACKOFFS
    kube = await Kube.from_environment()
    if settings.peering.mandatory and not settings.peering.standalone:
        await _require_peering(kube, settings.peering.name, cfg)
    # kopf hands every handler its indexes by name; these views stay current as watches run.
    rec = memo["reconciler"] = Reconciler(
        kube,
        cfg.default_image,
        observed_from(kwargs),
        operator_namespace=cfg.pod_namespace or None,
    )

    async def stream_changed(namespace: str, name: str) -> None:
        await rec.reconcile_soon(namespace, name, trigger="broker")

    # The operator's own autoscalers and the consumers' broker reads: one Scraper, one broker
    # reader and the deciders, shared by every daemon below.
    runtime = memo["autoscaling"] = autoscaling_daemon.Runtime.from_settings(
        cfg, kube, rec.post_event, stream_changed
    )
    # A consumer's StreamAvailable condition comes from the daemons' last broker reads.
    rec.stream_of = runtime.stream_of
    _start_upstream_monitor(memo, kube, settings)
    _start_metrics(cfg.metrics_port)
    logger.info(
        "tornado-operator configured: namespaces=%s default_image=%s",
        ",".join(cfg.namespaces) or "<all>",
        cfg.default_image,
    )


def _start_upstream_monitor(memo: Any, kube: Kube, settings: kopf.OperatorSettings) -> None:
    """One loop for the whole operator (composition.monitor): every caller's /metrics each 10 s
    through the autoscaler's Scraper, on the active replica only, asking for reconciles that
    write status.upstreams and UpstreamsHealthy."""
    rec: Reconciler = memo["reconciler"]
    cfg: settings_mod.Settings = memo["settings"]
    gate = upstream_monitor.ActiveGate(
        kube,
        standalone=bool(settings.peering.standalone or not settings.peering.mandatory),
        peering=settings.peering.name,
        namespaces=cfg.namespaces,
        priority=int(settings.peering.priority),
    )

    async def trigger(namespace: str, name: str) -> None:
        rec.schedule(namespace, name, trigger="upstreams")

    monitor = upstream_monitor.Monitor(
        memo["autoscaling"].scraper,
        rec.observed.pods,
        rec.topology.services_with_upstreams,
        trigger,
        gate,
    )
    rec.upstream_reports = monitor.report
    stop = asyncio.Event()
    memo["upstream_monitor"] = (stop, asyncio.create_task(monitor.run(stop)))


async def _require_peering(kube: Kube, name: str, cfg: settings_mod.Settings) -> None:
    # Without its peering object kopf would wait silently forever. Wait a bounded while (a first
    # `helm install` creates it just after the pods start), then say so and stop instead.
    places: list[str | None] = list(cfg.namespaces) or [None]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + cfg.peering_wait_seconds
    next_log = loop.time()
    while True:
        missing = [ns for ns in places if not await kube.peering_exists(name, ns)]
        if not missing:
            return
        where = (
            f"ClusterKopfPeering {name!r}"
            if missing == [None]
            else f"KopfPeering {name!r} in namespace(s) {', '.join(str(ns) for ns in missing)}"
        )
        now = loop.time()
        if now >= deadline:
            raise kopf.PermanentError(
                f"peering object missing: create {where} (the Helm chart does), "
                "or run a single replica with --standalone"
            )
        if now >= next_log:
            logger.warning("waiting for the peering object: %s", where)
            next_log = now + 15
        await asyncio.sleep(min(2.0, deadline - now))


def _reconciler(memo: Any) -> Reconciler:
    rec = memo.get("reconciler")
    if not isinstance(rec, Reconciler):
        raise kopf.PermanentError("operator not configured (startup handler did not run)")
    return rec


async def _reconcile_parent(name: str, namespace: str | None, memo: Any, retry: int) -> None:
    if not namespace:
        return
    outcome = await _reconciler(memo).reconcile(namespace, name, trigger="parent", retry=retry)
    problem = outcome.problem
    if problem is not None and not problem.permanent:
        # kopf keeps the retry count in our annotations, so backoff survives restarts.
        raise kopf.TemporaryError(problem.message, delay=problem.delay(retry))
    # Permanent failures are already visible as Degraded plus a Warning Event; the next spec
    # change brings a new attempt. Returning (not raising) keeps kopf from retrying them.


@kopf.on.resume(GROUP, VERSION, PLURAL, id="resume")
async def on_resume(name: str, namespace: str | None, memo: Any, retry: int, **_: Any) -> None:
    await _reconcile_parent(name, namespace, memo, retry)


@kopf.on.create(GROUP, VERSION, PLURAL, id="create")
async def on_create(name: str, namespace: str | None, memo: Any, retry: int, **_: Any) -> None:
    await _reconcile_parent(name, namespace, memo, retry)


@kopf.on.update(GROUP, VERSION, PLURAL, id="update")
async def on_update(name: str, namespace: str | None, memo: Any, retry: int, **_: Any) -> None:
    await _reconcile_parent(name, namespace, memo, retry)


# The operator's own autoscaler (spec.autoscaling.metric concurrency, and every consumer: its
# broker reads and, with metric lag, its scaling; autoscaling.daemon): one daemon per such
# TornadoService. kopf stops it when the spec stops matching, the operator exits or
# peering pauses it (5 s to finish its tick, then cancelled); it stops itself when its object is
# gone, so it needs no finalizer. It returns nothing: kopf would store a value in status.
@kopf.daemon(
    GROUP,
    VERSION,
    PLURAL,
    id="autoscaler",
    when=autoscaling_daemon.wanted,
    cancellation_backoff=5,
    cancellation_timeout=5,
)
async def autoscaler(
    name: str,
    namespace: str | None,
    body: kopf.Body,
    stopped: kopf.DaemonStopped,
    memo: Any,
    logger: Any,
    **_: Any,
) -> None:
    if namespace:
        pods = _reconciler(memo).observed.pods  # the pod index, no API call
        flag = autoscaling_daemon.KopfStopped(stopped)
        await autoscaling_daemon.run(namespace, name, body, flag, memo["autoscaling"], pods, logger)


autoscaling_daemon.without_finalizer("autoscaler")


@kopf.on.cleanup()
async def close_autoscaling(memo: Any, **_: Any) -> None:
    runtime = memo.get("autoscaling")
    if isinstance(runtime, autoscaling_daemon.Runtime):
        await runtime.close()


@kopf.on.cleanup()
async def stop_upstream_monitor(memo: Any, **_: Any) -> None:
    running = memo.get("upstream_monitor")
    if running is not None:
        stop, task = running
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=5)


@kopf.on.cleanup()
async def close(memo: Any, **_: Any) -> None:
    rec = memo.get("reconciler")
    if isinstance(rec, Reconciler):
        await rec.kube.close()


@kopf.on.event(GROUP, VERSION, PLURAL, id="links")
async def tornadoservice_event(
    body: kopf.Body, name: str, namespace: str | None, type: str | None, memo: Any, **_: Any
) -> None:
    """Any change of any TornadoService: reconcile the others linked with it (its upstreams
    added or removed, for their NetworkPolicy; its callers when it appears, goes or changes its
    URL). The initial listing (type None) only records: resume reconciles everything then."""
    if not namespace:
        return
    gone = type == "DELETED"
    rec = _reconciler(memo)
    # The watch caught up with any status the operator wrote: its kept copy can go.
    if gone:
        rec.observed.deleted(TORNADO_SERVICE.kind, namespace, name)
    else:
        rec.observed.seen(TORNADO_SERVICE.kind, namespace, name, resource_version(dict(body)))
    rec.links_changed(namespace, name, None if gone else dict(body), listing=type is None)


async def child_event(
    body: kopf.Body,
    name: str,
    namespace: str | None,
    type: str | None,
    memo: Any,
    resource: kopf.Resource,
    **_: Any,
) -> None:
    # type None is the initial listing at startup: the resume handlers cover it.
    if type is None or not namespace:
        return
    parent = parent_of(dict(body))
    if not parent:
        return
    rec = _reconciler(memo)
    kind = str(body.get("kind") or resource.kind)
    if type == "DELETED":
        rec.observed.deleted(kind, namespace, name)
    elif rec.observed.seen(kind, namespace, name, resource_version(dict(body))):
        return  # the echo of the operator's own write: nothing new to look at
    await rec.reconcile_soon(namespace, parent, trigger="child")


# One watch per child kind, all with the same handler.
for _child in CHILD_KINDS:
    kopf.on.event(
        group=_child.group,
        version=_child.version,
        plural=_child.plural,
        labels=MANAGED,
        id=f"{_child.plural}-event",  # in WATCH_HANDLER_IDS
    )(child_event)


@kopf.on.event(group=POD.group, version=POD.version, plural=POD.plural, labels=MANAGED)
async def pod_event(
    body: kopf.Body, namespace: str | None, type: str | None, memo: Any, **_: Any
) -> None:
    if type is None or not namespace:
        return
    name = instance_of(dict(body))
    if name:
        await _reconciler(memo).reconcile_soon(namespace, name, trigger="pod")
