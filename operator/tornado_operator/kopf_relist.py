"""Deletions that a watch missed, delivered when it lists again.

kopf resumes a broken watch from the last resourceVersion it saw. When the API server no longer
serves that version (410 Gone: after an API server restart, whose watch cache starts anew, or
after a watch was down for minutes), kopf 1.45.2 lists the objects again and watches on from the
list. An object deleted in between is simply absent from that list: kopf sends no DELETED event
for it, so its index entry stays for good and no handler hears of it. For the operator that
meant a Deployment deleted while the API server restarted was never re-created (CI caught it in
tests/e2e/test_operator_control_plane_restart.py).

Here every watch stream remembers what it delivered of each object (its identity, labels and
owner references: what the operator reads of a deleted object) and, when a listing ends, delivers
a DELETED event for each object it remembers that the listing did not have. They come before
kopf's own end-of-listing bookmark, so the indexes are right before the operator counts as
indexed. This wraps a private kopf function, so it is applied only to the kopf version it was
written for; `tests/unit/test_kopf_relist.py` checks the behaviour and that the wrap is in place.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import kopf
from kopf._cogs.clients import watching

from tornado_operator.observed import Packed, pack, unpack

PATCHED_KOPF_VERSION = "1.45.2"
logger = logging.getLogger(__name__)

JSONDict = dict[str, Any]
Stream = Callable[..., AsyncIterator[Any]]
# What a DELETED event needs of an object, and nothing more: this is kept for every watched one.
_KEPT_METADATA = ("name", "namespace", "uid", "labels", "ownerReferences", "resourceVersion")

_original: Stream = watching.continuous_watch
# (resource, namespace) of a watch stream -> uid -> what was kept of that object.
_delivered: dict[tuple[Any, Any], dict[str, Packed]] = {}


def skeleton(obj: JSONDict) -> JSONDict:
    meta = obj.get("metadata") or {}
    kept = {k: meta[k] for k in _KEPT_METADATA if k in meta}
    return {"apiVersion": obj.get("apiVersion"), "kind": obj.get("kind"), "metadata": kept}


def _uid(obj: JSONDict) -> str | None:
    uid = (obj.get("metadata") or {}).get("uid")
    return str(uid) if uid else None


async def continuous_watch(*, resource: Any, namespace: Any, **kwargs: Any) -> AsyncIterator[Any]:
    """kopf's listing-then-watching stream, plus a DELETED event for each object that a listing
    no longer has."""
    delivered = _delivered.setdefault((resource, namespace), {})
    listed: set[str] | None = set()  # None once the listing is over
    async for event in _original(resource=resource, namespace=namespace, **kwargs):
        if event is watching.Bookmark.LISTED and listed is not None:
            gone = [known for known in delivered if known not in listed]
            if gone:
                where = f"in {namespace!r}" if namespace is not None else "cluster-wide"
                logger.info(
                    "%d %s %s deleted while the watch was broken: reported as deleted",
                    len(gone), resource, where,
                )  # fmt: skip
            for known in gone:
                yield {"type": "DELETED", "object": unpack(delivered.pop(known))}
            listed = None
        elif isinstance(event, dict) and isinstance(event.get("object"), dict):
            obj = event["object"]
            uid = _uid(obj)
            if uid is not None and event.get("type") == "DELETED":
                delivered.pop(uid, None)
            elif uid is not None and event.get("type") in (None, "ADDED", "MODIFIED"):
                delivered[uid] = pack(skeleton(obj))
                if event.get("type") is None and listed is not None:
                    listed.add(uid)
        yield event


def apply() -> bool:
    """Wrap kopf's watch stream when kopf is the version this was written for; whether it was."""
    if getattr(kopf, "__version__", None) != PATCHED_KOPF_VERSION:
        return False
    watching.continuous_watch = continuous_watch
    return True


def applied() -> bool:
    return watching.continuous_watch is continuous_watch
