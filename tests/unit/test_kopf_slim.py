"""Watched objects cut down as they are decoded (tornado_operator.kopf_slim): every handler of a
watched kind answers the same from the cut-down object as from the whole one.

tests/unit/data/watched_objects.json holds one object of each watched kind as a real API server
returned it (`kubectl get -o json --show-managed-fields`): a TornadoService applied with
`kubectl apply` (so it carries kubectl's copy of the spec) and kopf's annotations, each child the
operator made for it, and one of its pods."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import kopf
import pytest
from kopf._cogs.clients import fetching, watching
from kopf._cogs.configs.diffbase import AnnotationsDiffBaseStorage
from tornado_operator import GROUP, handlers, kopf_slim
from tornado_operator.children import CHILD_KINDS
from tornado_operator.observed import KOPF_DIFFBASE_KEY, resource_version
from tornado_operator.reconcile import instance_of, parent_of
from tornado_operator.resources import POD, TORNADO_SERVICE

OBJECTS: list[dict[str, Any]] = json.loads(
    (Path(__file__).parent / "data" / "watched_objects.json").read_text()
)
BY_KIND = {o["kind"]: o for o in OBJECTS}
RESOURCES = {r.kind: r for r in (*CHILD_KINDS, POD, TORNADO_SERVICE)}


def cut(obj: dict[str, Any]) -> dict[str, Any]:
    return kopf_slim.cut(RESOURCES[obj["kind"]], json.loads(json.dumps(obj)))


def size(obj: dict[str, Any]) -> int:
    return len(json.dumps(obj))


def test_the_operator_wraps_the_kopf_it_pins() -> None:
    assert handlers.kopf_slim is kopf_slim  # importing the handlers applies it
    assert kopf.__version__ == kopf_slim.PATCHED_KOPF_VERSION
    assert kopf_slim.applied()


def test_the_captured_objects_are_whole() -> None:
    """Each test below is only as good as its objects: real ones, managedFields and all."""
    assert set(BY_KIND) == set(RESOURCES)
    for obj in OBJECTS:
        assert obj["metadata"]["managedFields"], obj["kind"]
    annotations = BY_KIND["TornadoService"]["metadata"]["annotations"]
    assert "kubectl.kubernetes.io/last-applied-configuration" in annotations
    assert f"{GROUP}/{KOPF_DIFFBASE_KEY}" in annotations
    assert BY_KIND["Pod"]["status"]["phase"] == "Running"


@pytest.mark.parametrize("kind", sorted(RESOURCES))
def test_no_managed_fields_are_kept(kind: str) -> None:
    assert "managedFields" not in cut(BY_KIND[kind])["metadata"]


# As JSON, of the captured objects: a pod keeps 26 % (only identity, ports and status are read),
# the others about 55 % (all but managedFields and kubectl's copy of the spec).
@pytest.mark.parametrize(
    ("kind", "kept"), [("Pod", 0.3), ("Deployment", 0.6), ("TornadoService", 0.6)]
)
def test_the_big_objects_shrink(kind: str, kept: float) -> None:
    obj = BY_KIND[kind]
    assert size(cut(obj)) <= size(obj) * kept, (kind, size(cut(obj)), size(obj))


def test_a_pod_reads_the_same() -> None:
    pod = BY_KIND["Pod"]
    ns = pod["metadata"]["namespace"]
    whole = handlers.index_pods(body=kopf.Body(pod), namespace=ns)
    assert whole  # the pod belongs to its TornadoService
    assert handlers.index_pods(body=kopf.Body(cut(pod)), namespace=ns) == whole
    assert instance_of(cut(pod)) == instance_of(pod)
    assert resource_version(cut(pod)) == resource_version(pod)


@pytest.mark.parametrize("kind", [c.kind for c in CHILD_KINDS])
def test_a_child_reads_the_same(kind: str) -> None:
    child = BY_KIND[kind]
    meta = child["metadata"]
    args = {"name": meta["name"], "namespace": meta["namespace"]}
    whole = handlers.index_child(body=kopf.Body(child), **args)
    assert handlers.index_child(body=kopf.Body(cut(child)), **args) == whole
    assert parent_of(cut(child)) == parent_of(child) is not None
    assert resource_version(cut(child)) == resource_version(child)
    assert cut(child)["kind"] == kind


def test_a_tornadoservice_reads_the_same_to_the_operator_and_to_kopf() -> None:
    tsvc = BY_KIND["TornadoService"]
    meta = tsvc["metadata"]
    args = {"name": meta["name"], "namespace": meta["namespace"]}
    lean = cut(tsvc)
    for index in (handlers.index_tornadoservices, handlers.index_upstream_callers):
        assert index(body=kopf.Body(lean), **args) == index(body=kopf.Body(tsvc), **args)
    assert handlers.index_upstream_callers(body=kopf.Body(tsvc), **args)  # it has an upstream
    # kopf tells an update by the diff of its stored spec and the event's: both must survive.
    storage = AnnotationsDiffBaseStorage(prefix=GROUP, key=KOPF_DIFFBASE_KEY)
    assert storage.fetch(body=kopf.Body(lean)) == storage.fetch(body=kopf.Body(tsvc)) is not None
    assert storage.build(body=kopf.Body(lean)) == storage.build(body=kopf.Body(tsvc))
    assert lean["spec"] == tsvc["spec"] and lean["status"] == tsvc["status"]
    assert "kubectl.kubernetes.io/last-applied-configuration" not in lean["metadata"]["annotations"]


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, list[Any]]]:
    """kopf's own listing and watch, replaced by scripts."""
    script: dict[str, list[Any]] = {"list": [], "watch": []}

    async def listing(**_: Any) -> AsyncIterator[Any]:
        for chunk in script["list"]:
            yield chunk, "7"

    async def watch(**_: Any) -> AsyncIterator[Any]:
        for event in script["watch"]:
            yield event

    monkeypatch.setattr(kopf_slim, "_original_fetch", listing)
    monkeypatch.setattr(kopf_slim, "_original_watch", watch)
    yield script


async def test_listing_pages_are_cut(scripted: dict[str, list[Any]]) -> None:
    pod = BY_KIND["Pod"]
    other = json.loads(json.dumps(pod))
    other["metadata"]["name"] += "-other"
    scripted["list"] = [[pod, other], [pod]]
    pages = [p async for p in fetching.fetch_objs(resource=RESOURCES["Pod"])]
    assert [list(chunk) for chunk, _ in pages] == [[cut(pod), cut(other)], [cut(pod)]]
    assert [version for _, version in pages] == ["7", "7"]


async def test_watch_events_are_cut_and_errors_and_bookmarks_pass(
    scripted: dict[str, list[Any]],
) -> None:
    pod = BY_KIND["Pod"]
    error = {"type": "ERROR", "object": {"kind": "Status", "code": 410, "message": "too old"}}
    bookmark = {"type": "BOOKMARK", "object": {"kind": "Pod", "metadata": {"resourceVersion": "9"}}}
    scripted["watch"] = [{"type": t, "object": pod} for t in ("ADDED", "MODIFIED", "DELETED")] + [
        error,
        bookmark,
    ]
    events = [e async for e in watching.watch_objs(resource=RESOURCES["Pod"])]
    assert [e["type"] for e in events] == ["ADDED", "MODIFIED", "DELETED", "ERROR", "BOOKMARK"]
    assert all(e["object"] == cut(pod) for e in events[:3])
    assert events[3] == error and events[4] == bookmark


@pytest.mark.parametrize("kind", sorted(RESOURCES))
def test_a_cut_is_the_same_with_its_strings_shared_or_not(kind: str) -> None:
    obj = BY_KIND[kind]
    assert kopf_slim.cut(RESOURCES[kind], obj, shared=False) == cut(obj)
