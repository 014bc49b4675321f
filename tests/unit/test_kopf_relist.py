"""kopf's watch stream, as the operator wraps it: a listing after a broken watch delivers a DELETED
event for each object deleted meanwhile (kopf 1.45.2 drops them silently)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import kopf
import pytest
from kopf._cogs.clients import watching
from tornado_operator import handlers, kopf_relist

Bookmark = watching.Bookmark


def obj(name: str, uid: str, rv: int) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": "ns",
            "uid": uid,
            "resourceVersion": str(rv),
            "labels": {"app.kubernetes.io/managed-by": "tornado-operator"},
            "ownerReferences": [{"kind": "TornadoService", "name": name, "controller": True}],
            "managedFields": [{"manager": "tornado-operator"}],
        },
        "spec": {"replicas": 1},
    }


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[list[Any]]]:
    """kopf's own stream, replaced by a script: one list of events per (re)connection."""
    scripts: list[list[Any]] = []

    async def original(**_: Any) -> AsyncIterator[Any]:
        for event in scripts.pop(0):
            yield event

    monkeypatch.setattr(kopf_relist, "_original", original)
    monkeypatch.setattr(kopf_relist, "_delivered", {})
    yield scripts


async def run(resource: str = "deployments", namespace: str | None = "ns") -> list[Any]:
    return [
        e
        async for e in kopf_relist.continuous_watch(
            resource=resource, namespace=namespace, settings=None, operator_pause_waiter=None
        )
    ]


def test_the_operator_wraps_the_kopf_it_pins() -> None:
    assert handlers.kopf_relist is kopf_relist  # importing the handlers applies it
    assert kopf.__version__ == kopf_relist.PATCHED_KOPF_VERSION
    assert kopf_relist.applied()


async def test_an_object_deleted_while_the_watch_was_broken_is_reported_deleted(
    scripted: list[list[Any]],
) -> None:
    a, b, c = obj("a", "u-a", 1), obj("b", "u-b", 2), obj("c", "u-c", 5)
    scripts = scripted
    scripts.append(
        [
            {"type": None, "object": a},
            {"type": None, "object": b},
            Bookmark.LISTED,
            {"type": "ADDED", "object": c},
            {"type": "DELETED", "object": b},
        ]
    )
    first = await run()
    assert first[2] is Bookmark.LISTED and len(first) == 5  # nothing added to a first listing
    # The watch broke with 410 Gone; c was deleted meanwhile, so the new listing has only a.
    scripts.append([{"type": None, "object": obj("a", "u-a", 9)}, Bookmark.LISTED])
    second = await run()
    assert len(second) == 3 and second[0]["type"] is None and second[2] is Bookmark.LISTED
    deleted = second[1]
    assert deleted["type"] == "DELETED"
    assert deleted["object"]["metadata"] == {
        k: v for k, v in c["metadata"].items() if k != "managedFields"
    }
    assert deleted["object"]["kind"] == "Deployment" and "spec" not in deleted["object"]
    # Reported once: a third listing of a alone adds nothing.
    scripts.append([{"type": None, "object": a}, Bookmark.LISTED])
    assert len(await run()) == 2


async def test_an_unfinished_listing_reports_nothing(scripted: list[list[Any]]) -> None:
    scripts = scripted
    scripts.append([{"type": None, "object": obj("a", "u-a", 1)}, Bookmark.LISTED])
    await run()
    # The connection broke in the middle of the next listing: a may well be on a later page.
    scripts.append([])
    assert await run() == []
    listing = [{"type": None, "object": obj("a", "u-a", 1)}, Bookmark.LISTED]
    scripts.append(list(listing))
    assert await run() == listing


async def test_each_watch_stream_has_its_own_objects(scripted: list[list[Any]]) -> None:
    scripts = scripted
    scripts.append([{"type": None, "object": obj("a", "u-a", 1)}, Bookmark.LISTED])
    await run(namespace="ns")
    # Another namespace's listing does not have a: that says nothing about a.
    scripts.append([Bookmark.LISTED])
    assert await run(namespace="other") == [Bookmark.LISTED]
    scripts.append([Bookmark.LISTED])
    assert [e["object"]["metadata"]["name"] for e in (await run(namespace="ns"))[:-1]] == ["a"]
