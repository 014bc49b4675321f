"""Fuzzing the TornadoService spec through the API server (issue 13).

Specs generated from the CRD's schema (tests/fuzz_specs.py) are created on the API server, so the
CEL rules judge them too. Those it refuses are counted as refused by CEL (a refusal for any other
reason fails: the schema said they were valid). The test keeps generating until VALID_TARGET are
accepted; the operator, running in this process, must give each one a status for its generation
with no traceback in its log and no InvalidSpec (it validates with the same schema), and the
children its own rendering code makes of the stored spec must pass a server dry run. Then
INVALID_TARGET one-constraint mutations of accepted specs must each be refused at admission with a
message naming the broken field.

No pods: a ResourceQuota of 0 pods keeps the Deployments' ReplicaSets from making any, and each
chunk's TornadoServices are deleted before the next chunk is created.

FUZZ_SEED=N picks another seed; the seed and the counts are printed, and the same seed gives the
same specs, so the same counts.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
from tornado_operator import API_VERSION, KIND, children, crd, kubeapi, validation
from tornado_operator.errors import TEMPORARY_STATUSES, APIConnectionError, APIError
from tornado_operator.kubeapi import Kube, collection_path, object_path
from tornado_operator.rendering import Parent
from tornado_operator.resources import TORNADO_SERVICE

from tests import fuzz_specs
from tests.e2e.operator_support import TEMPLATE_IMAGE, kubectl, running_operator

pytest_plugins = ["tests.e2e.operator_fixtures"]

JSONDict = dict[str, Any]
T = TypeVar("T")

SEED = int(os.environ.get("FUZZ_SEED", fuzz_specs.SEED))
# The numbers; smaller ones (FUZZ_VALID, FUZZ_INVALID) only for trying a change quickly.
VALID_TARGET = int(os.environ.get("FUZZ_VALID", 500))
INVALID_TARGET = int(os.environ.get("FUZZ_INVALID", 200))
MAX_CHUNKS = 8  # bounded: 1,600 specs at most
CONCURRENCY = 8  # requests in flight from the test (the operator has its own)
STATUS_TIMEOUT = 300.0
FIELD_MANAGER = "tornado-operator-fuzz"


def out(text: str) -> None:
    """To the real stdout: the operator's KopfRunner swaps sys.stdout while it runs."""
    print(text, file=sys.__stdout__, flush=True)


def cel_messages() -> list[str]:
    """The messages of every CEL rule in the CRD."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for rule in node.get("x-kubernetes-validations") or []:
                found.append(rule["message"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(crd.openapi_schema())
    return found


class ProblemLog(logging.Handler):
    """Every log record of the process with a traceback or at ERROR and above."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info or record.levelno >= logging.ERROR:
            self.records.append(self.format(record))


async def bounded(items: list[T], work: Callable[[T], Awaitable[Any]]) -> list[Any]:
    limit = asyncio.Semaphore(CONCURRENCY)

    async def one(item: T) -> Any:
        async with limit:
            return await work(item)

    return await asyncio.gather(*(one(item) for item in items))


def manifest(name: str, spec: JSONDict) -> JSONDict:
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": name}, "spec": spec}


async def request(kube: Kube, method: str, path: str, **kwargs: Any) -> Any:
    """kube.request, again after a temporary failure (a busy API server times out), 4 tries."""
    for attempt in range(4):
        try:
            return await kube.request(method, path, kind="fuzz", **kwargs)
        except APIError as exc:
            temporary = isinstance(exc, APIConnectionError) or exc.status in TEMPORARY_STATUSES
            if not temporary or attempt == 3:
                raise
        await asyncio.sleep(2**attempt)
    raise AssertionError("unreachable")


async def create(kube: Kube, ns: str, doc: JSONDict, *, dry_run: bool = False) -> Any:
    """The created object, or the APIError that refused it."""
    query = {"fieldValidation": "Strict", "fieldManager": FIELD_MANAGER}
    if dry_run:
        query["dryRun"] = "All"
    try:
        return await request(
            kube, "POST", collection_path(TORNADO_SERVICE, ns), query=query, body=doc
        )
    except APIError as exc:
        return exc


async def dry_run_children(kube: Kube, ns: str, obj: JSONDict) -> list[str]:
    """Server dry run of the children the operator renders of the stored object: refusals."""
    meta = obj["metadata"]
    spec = validation.validated_spec(obj.get("spec"))
    parent = Parent(name=meta["name"], namespace=ns, uid=meta["uid"])
    refused: list[str] = []
    for kind in children.CHILD_KINDS:
        child = kind.manifest(parent, spec, TEMPLATE_IMAGE)
        if child is None:
            continue
        try:
            await request(
                kube,
                "PATCH",
                object_path(kind, ns, meta["name"]),
                query={"fieldManager": FIELD_MANAGER, "force": "true", "dryRun": "All"},
                body=kubeapi.apply_body(child),
                content_type=kubeapi.APPLY_CONTENT_TYPE,
            )
        except APIError as exc:
            refused.append(f"{kind.kind}: {exc.message}")
    return refused


def statuses(ns: str) -> dict[str, JSONDict]:
    items = json.loads(kubectl("get", "tsvc", "-n", ns, "-o", "json").stdout)["items"]
    return {obj["metadata"]["name"]: obj for obj in items}


def wait_statuses(ns: str, names: set[str]) -> dict[str, JSONDict]:
    """The objects once each has a status for its generation (fails naming the missing)."""
    deadline = time.monotonic() + STATUS_TIMEOUT
    while True:
        objs = statuses(ns)
        missing = sorted(
            n
            for n in names
            if n not in objs
            or (objs[n].get("status") or {}).get("observedGeneration")
            != objs[n]["metadata"]["generation"]
        )
        if not missing:
            return objs
        if time.monotonic() > deadline:
            pytest.fail(f"no status for the generation of {len(missing)}: {missing[:20]}")
        time.sleep(2)


def conditions(obj: JSONDict) -> dict[str, JSONDict]:
    return {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}


def with_kube(work: Callable[[Kube], Awaitable[T]]) -> T:
    """`work` with a client of its own, on an event loop of its own (the operator has its own)."""

    async def run() -> T:
        kube = await Kube.from_environment()
        try:
            return await work(kube)
        finally:
            await kube.close()

    return asyncio.run(run())


class Fuzz:
    """One fuzz run's counts and failures."""

    def __init__(self, ns: str) -> None:
        self.ns = ns
        self.rules = cel_messages()
        self.counts: Counter[str] = Counter()
        self.degraded: Counter[str] = Counter()
        self.failures: list[str] = []
        self.accepted: list[JSONDict] = []  # the specs as sent, in creation order

    def chunk(self, chunk: int) -> None:
        """Create chunk `chunk` of the seed's specs, wait for the operator's statuses, check
        them and dry-run the children; then delete them."""
        ns = self.ns
        specs = fuzz_specs.valid_specs(SEED, chunk)
        docs = [manifest(f"v{chunk}-{i:03d}", spec) for i, spec in enumerate(specs)]
        self.counts["generated"] += len(docs)
        results = with_kube(lambda kube: bounded(docs, functools.partial(create, kube, ns)))
        created: dict[str, JSONDict] = {}
        for doc, result in zip(docs, results, strict=True):
            name = doc["metadata"]["name"]
            if isinstance(result, dict):
                self.counts["accepted"] += 1
                self.accepted.append(doc["spec"])
                created[name] = result
            elif result.status == 422 and any(m in result.message for m in self.rules):
                self.counts["refused by CEL"] += 1
            elif result.status == 422 and "Duplicate value" in result.message:
                self.counts["refused: duplicate list-map key"] += 1
            else:
                self.failures.append(
                    f"{name} refused, not by a CEL rule: {result.status} "
                    f"{result.message[:500]}\n  spec: {json.dumps(doc['spec'])[:1500]}"
                )
        names = sorted(created)
        objs = wait_statuses(ns, set(names))
        live = [objs[name] for name in names]
        refusals = with_kube(
            lambda kube: bounded(live, functools.partial(dry_run_children, kube, ns))
        )
        for obj, refused in zip(live, refusals, strict=True):
            name = obj["metadata"]["name"]
            conds = conditions(obj)
            degraded = conds.get("Degraded") or {}
            if degraded.get("status") == "True":
                self.degraded[str(degraded.get("reason"))] += 1
            if any(c.get("reason") == "InvalidSpec" for c in conds.values()):
                self.failures.append(f"{name}: the operator calls it invalid: {conds}")
            for text in refused:
                self.failures.append(
                    f"{name}: child refused by a dry run: {text[:600]}"
                    f"\n  spec: {json.dumps(obj['spec'])[:1500]}"
                )
            self.counts["children passed a dry run"] += not refused
        # This chunk is done: its objects go before the next chunk's come.
        kubectl("delete", "tsvc", "--all", "-n", ns, "--wait=false")

    def invalid(self) -> None:
        """INVALID_TARGET mutations of accepted specs, each refused naming its field."""
        bases = self.accepted or [{}]
        cases = [
            fuzz_specs.invalid_spec(SEED, i, bases[i % len(bases)]) for i in range(INVALID_TARGET)
        ]
        docs = [manifest(f"x-{i:03d}", spec) for i, (_, _, spec, _) in enumerate(cases)]
        results = with_kube(
            lambda kube: bounded(docs, functools.partial(create, kube, self.ns, dry_run=True))
        )
        for i, ((layer, rule, _, field), result) in enumerate(zip(cases, results, strict=True)):
            self.counts[f"invalid ({layer})"] += 1
            if isinstance(result, dict):
                self.failures.append(f"invalid #{i} {rule} ({field}) was accepted")
            elif not fuzz_specs.named(result.message, field):
                self.failures.append(
                    f"invalid #{i} {rule}: the message does not name {field}: "
                    f"{result.message[:600]}"
                )
            else:
                self.counts["invalid rejected with field named"] += 1


def test_fuzzed_specs(namespace: str, operator_crds: None) -> None:
    kubectl("create", "quota", "no-pods", "-n", namespace, "--hard=pods=0")  # keeps pods out
    fuzz = Fuzz(namespace)
    log = ProblemLog()
    root = logging.getLogger()
    started = time.monotonic()
    root.addHandler(log)
    try:
        with running_operator(namespace) as runner:
            chunk = 0
            while fuzz.counts["accepted"] < VALID_TARGET and chunk < MAX_CHUNKS:
                fuzz.chunk(chunk)
                chunk += 1
            fuzz.invalid()
    finally:
        root.removeHandler(log)
    elapsed = time.monotonic() - started
    counts, failures = fuzz.counts, fuzz.failures
    summary = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    out(f"\nfuzz seed {SEED}: {summary}; Degraded by reason {dict(fuzz.degraded)}; {elapsed:.0f}s")
    failures += [f"operator log: {text[:1500]}" for text in log.records]
    if "Traceback" in runner.output:
        failures.append(f"a traceback in the operator's output: {runner.output[-3000:]}")
    assert counts["accepted"] >= VALID_TARGET, summary
    assert counts["invalid rejected with field named"] >= INVALID_TARGET, summary
    assert not failures, f"{len(failures)} failures ({summary}):\n" + "\n".join(failures[:40])
