"""Watched objects cut down to what is read, as soon as they are decoded.

kopf gives every listed object a worker of its own, and each worker holds its object until
every watched kind has been listed: kopf runs no handler before its indexes are complete. With
a thousand TornadoServices that is about 7,000 objects held at once (Deployments, Services,
PodDisruptionBudgets, NetworkPolicies and 2,000 pods), about 20 KiB each once decoded, half of
it managedFields. A restarted operator took 400 MiB to catch up, and kept it
(benchmarks/operator_scale.py and its resume phase).

Here each object of a listing page or a watch event is replaced, before kopf queues it, by what
the operator and kopf read of it: a pod by `observed.slim_pod`, any other object by
`observed.lean` (no managedFields, no kubectl copy of the spec; kopf's own annotations stay).
Every handler of a watched kind reads only those parts, and `tests/unit/test_kopf_slim.py`
checks that each gives the same answer from the cut-down object as from the whole one. This
wraps private kopf functions, so it is applied only to the kopf version it was written for.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Collection
from typing import Any

import kopf
from kopf._cogs.clients import fetching, watching

from tornado_operator.observed import lean, slim_pod
from tornado_operator.resources import POD

PATCHED_KOPF_VERSION = "1.45.2"

JSONDict = dict[str, Any]
Stream = Callable[..., AsyncIterator[Any]]

_original_fetch: Stream = fetching.fetch_objs
_original_watch: Stream = watching.watch_objs


def cut(resource: Any, obj: JSONDict, shared: bool = True) -> JSONDict:
    """What is kept of one watched object of `resource` (a kopf Resource)."""
    if resource.group == POD.group and resource.plural == POD.plural:
        return slim_pod(obj, shared)
    return lean(obj, shared)


# A listed object is held until every kind is listed, so its strings are shared with the other
# copies (observed.compact); an event's object is handled at once and dropped, so it is not.
async def fetch_objs(*, resource: Any, **kwargs: Any) -> AsyncIterator[tuple[Collection[Any], str]]:
    async for chunk, version in _original_fetch(resource=resource, **kwargs):
        yield [cut(resource, obj) if isinstance(obj, dict) else obj for obj in chunk], version


async def watch_objs(*, resource: Any, **kwargs: Any) -> AsyncIterator[Any]:
    async for event in _original_watch(resource=resource, **kwargs):
        obj = event.get("object") if isinstance(event, dict) else None
        # ERROR events carry a Status, BOOKMARKs only a resourceVersion: passed as they are.
        if isinstance(obj, dict) and event.get("type") in ("ADDED", "MODIFIED", "DELETED"):
            event = {**event, "object": cut(resource, obj, shared=False)}
        yield event


def apply() -> bool:
    """Wrap kopf's listing and watching when kopf is the version this was written for;
    whether it was."""
    if getattr(kopf, "__version__", None) != PATCHED_KOPF_VERSION:
        return False
    fetching.fetch_objs = fetch_objs
    watching.watch_objs = watch_objs
    return True


def applied() -> bool:
    return fetching.fetch_objs is fetch_objs and watching.watch_objs is watch_objs
