"""What the operator knows of live objects, without asking the API server.

Reads come from the watches kopf already holds (its indexes, filled before any handler runs), so
a reconcile costs no GET or LIST. A watch lags the operator's own writes by a moment, so what a
write returned is kept until the watch has caught up with it: the fresher of the two, by
resourceVersion, is what a reconcile sees. Without that, the reconcile right after a write would
see the old object and write again.

resourceVersions are compared as integers. The API contract calls them opaque, but every API
server backed by etcd hands out its revision, and comparing is only ever used here to choose the
fresher of two copies of one object; when either is not a number, the watch's copy wins.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from tornado_operator import GROUP

JSONDict = dict[str, Any]
Key = tuple[str, str, str]  # kind, namespace, name
# (kind, namespace, name) -> the watched object, or None; (namespace, instance) -> its pods.
ObjectLookup = Callable[[str, str, str], JSONDict | None]
PodsLookup = Callable[[str, str], Iterable[JSONDict]]
# (namespace, name) -> (namespace, name) of each TornadoService that lists it in spec.upstreams.
CallersLookup = Callable[[str, str], Iterable[tuple[str, str]]]

# How long a namespace that refused writes because it is being deleted stays "terminating".
TERMINATING_MEMORY_SECONDS = 600.0


def resource_version(obj: JSONDict | None) -> int:
    try:
        return int(((obj or {}).get("metadata") or {}).get("resourceVersion") or -1)
    except (TypeError, ValueError):
        return -1


# Strings up to this long are shared (interned) in kept copies: keys, and values such as "TCP",
# "IfNotPresent" or a label that every object repeats. Longer ones are mostly unique.
SHARED_STRING_MAX = 32


def compact(value: Any) -> Any:
    """A copy of a decoded JSON value whose short strings are shared with every other copy.

    Each watch event is decoded on its own, so every kept object has its own copy of each key
    ("metadata", "containers", "readinessProbe", ...): about half of a Deployment's memory
    (19 KiB per Deployment, 10 KiB compacted; measured with tracemalloc on a rendered one)."""
    if isinstance(value, Mapping):
        return {sys.intern(str(k)): compact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [compact(v) for v in value]
    if isinstance(value, str) and len(value) <= SHARED_STRING_MAX:
        return sys.intern(value)
    return value


# The annotation (under GROUP/) where kopf keeps the spec it last handled: its diff base.
KOPF_DIFFBASE_KEY = "last-handled-configuration"
# Whole copies of a spec that no reconcile reads: kopf reads its diff base from the event itself.
KUBECTL_LAST_APPLIED = frozenset({"kubectl.kubernetes.io/last-applied-configuration"})
UNREAD_ANNOTATIONS = KUBECTL_LAST_APPLIED | {f"{GROUP}/{KOPF_DIFFBASE_KEY}"}
# What is read of a pod (slim_pod): the rest of its metadata and status is never looked at.
POD_METADATA = (
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "labels",
    "ownerReferences",
    "deletionTimestamp",
    "finalizers",
)
POD_STATUS = ("phase", "podIP", "conditions", "containerStatuses", "initContainerStatuses")


# What an index holds of each object: its JSON text, one string. As decoded dicts and lists the
# same object takes about five times the memory, in hundreds of small blocks per object, and
# at a thousand services those blocks, interleaved with the listing's short-lived ones, kept most
# of the allocator's arenas from being given back (benchmarks/operator_scale.py, resume peak
# RSS). A reconcile decodes the few objects it reads: tens of microseconds each.
Packed = str


def pack(obj: Mapping[str, Any]) -> Packed:
    return json.dumps(obj, separators=(",", ":"))


def unpack(packed: Packed) -> JSONDict:
    obj: JSONDict = json.loads(packed)
    return obj


def _without(
    body: Mapping[str, Any], annotations_dropped: frozenset[str], shared: bool
) -> JSONDict:
    meta = {k: v for k, v in (body.get("metadata") or {}).items() if k != "managedFields"}
    annotations = meta.get("annotations")
    if annotations and not annotations_dropped.isdisjoint(annotations):
        meta["annotations"] = {k: v for k, v in annotations.items() if k not in annotations_dropped}
    kept: JSONDict = {**body, "metadata": meta}
    return compact(kept) if shared else kept


# `shared` below: whether short strings are shared with every other copy (`compact`). That
# halves a copy that is kept as decoded dicts, and is wasted on one that is packed or dropped
# soon: it is most of the cost of cutting an object (300 of 400 us for a Deployment).


def slim(body: Mapping[str, Any], shared: bool = True) -> JSONDict:
    """The object without managedFields (most of an object's size) and the annotations that
    copy a whole spec, all unread. What the operator keeps of every object, watched or
    written."""
    return _without(body, UNREAD_ANNOTATIONS, shared)


def lean(body: Mapping[str, Any], shared: bool = True) -> JSONDict:
    """The object as kopf needs it: `slim` but with kopf's diff base, which kopf reads from
    each event of a TornadoService to tell an update's old spec from its new one."""
    return _without(body, KUBECTL_LAST_APPLIED, shared)


def slim_pod(body: Mapping[str, Any], shared: bool = True) -> JSONDict:
    """What the operator reads of a pod: identity, ports (for scraping) and status."""
    meta = body.get("metadata") or {}
    status = body.get("status") or {}
    spec = body.get("spec") or {}
    kept: JSONDict = {
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "metadata": {k: meta[k] for k in POD_METADATA if k in meta},
        "spec": {
            "containers": [
                {"name": c.get("name"), "ports": c.get("ports") or []}
                for c in spec.get("containers") or []
            ]
        },
        "status": {k: status[k] for k in POD_STATUS if k in status},
    }
    return compact(kept) if shared else kept


class Observed:
    """The watches' view of the operator's objects, corrected by its own writes."""

    def __init__(
        self, lookup: ObjectLookup, pods: PodsLookup, callers: CallersLookup | None = None
    ) -> None:
        self._lookup = lookup
        self._pods = pods
        self._callers = callers
        self._written: dict[Key, JSONDict] = {}
        self._terminating: dict[str, float] = {}  # namespace -> wall time it was seen so

    def get(self, kind: str, namespace: str, name: str) -> JSONDict | None:
        key = (kind, namespace, name)
        watched = self._lookup(kind, namespace, name)
        written = self._written.get(key)
        if written is None:
            return watched
        if watched is not None and resource_version(watched) >= resource_version(written):
            del self._written[key]  # the watch caught up: nothing to keep
            return watched
        return written

    def wrote(self, kind: str, obj: JSONDict | None) -> None:
        """Remember what a write returned (None: nothing to remember)."""
        meta = (obj or {}).get("metadata") or {}
        if obj is None or not meta.get("name"):
            return
        key = (kind, str(meta.get("namespace") or ""), str(meta["name"]))
        if resource_version(obj) >= resource_version(self._written.get(key)):
            self._written[key] = slim(obj)

    def seen(self, kind: str, namespace: str, name: str, version: int) -> bool:
        """A watch delivered this object at `version`: whether that is the echo of the
        operator's own last write. Once the watch has caught up with that write, its copy is
        dropped, so nothing is held for objects that stay unchanged (at a thousand services
        the kept write answers were most of the operator's memory)."""
        key = (kind, namespace, name)
        written = self._written.get(key)
        if written is None:
            return False
        mine = resource_version(written)
        if version >= mine >= 0:
            del self._written[key]
        return version == mine

    def deleted(self, kind: str, namespace: str, name: str) -> None:
        """The watch saw the object deleted: a copy from an earlier write is stale."""
        self._written.pop((kind, namespace, name), None)

    def written_version(self, kind: str, namespace: str, name: str) -> int | None:
        """The resourceVersion of the operator's last write of this object still remembered."""
        written = self._written.get((kind, namespace, name))
        return None if written is None else resource_version(written)

    def pods(self, namespace: str, instance: str) -> list[JSONDict]:
        return list(self._pods(namespace, instance))

    def callers(self, namespace: str, name: str) -> list[tuple[str, str]]:
        """The TornadoServices whose spec.upstreams name this one, sorted, without repeats."""
        if self._callers is None:
            return []
        return sorted({(str(ns), str(n)) for ns, n in self._callers(namespace, name)})

    def saw_terminating(self, namespace: str) -> None:
        self._terminating[namespace] = time.time()
        self._written = {k: v for k, v in self._written.items() if k[1] != namespace}

    def terminating(self, namespace: str, created: float) -> bool:
        """Whether the namespace was refusing new content when last tried, for an object created
        at `created` (epoch seconds): objects created later live in a namespace of that name that
        was made anew, since a terminating namespace takes no new objects."""
        seen = self._terminating.get(namespace)
        if seen is None:
            return False
        if time.time() - seen > TERMINATING_MEMORY_SECONDS:
            del self._terminating[namespace]
            return False
        return created <= seen
