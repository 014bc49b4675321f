"""Fixtures for the operator's cluster tests, loaded with `pytest_plugins`."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from hack.kubetools import kubectl_json, operator_lock, other_operators_paused
from tests.e2e.operator_support import (
    CHILD_KIND_NAMES,
    CRD_DIR,
    WRITE_VERBS,
    api_requests,
    kubectl,
    owned_children,
    running_operator,
)

OPERATOR_PODS = "app.kubernetes.io/part-of=tornado-operator,app.kubernetes.io/component=operator"


@pytest.fixture(scope="module")
def only_our_operator(kubeconfig: Path) -> Iterator[None]:
    """For one test module: no other operator acts on the tests' TornadoServices.

    Takes the lock the chart's e2e tests take (so no other test session runs a cluster-wide
    operator meanwhile) and scales every chart-installed operator (`make demo`'s, say) to 0,
    then checks that none of their pods is left; all are put back at the end. Per module, not
    per session, so that sessions sharing a cluster take turns module by module.
    """
    with operator_lock(), other_operators_paused(release="") as paused:
        # Pods of an operator just uninstalled (or paused) may still be shutting down: they act
        # until they are gone.
        deadline = time.monotonic() + 90
        while True:
            pods = kubectl_json("get", "pods", "-A", "-l", OPERATOR_PODS)["items"]
            left = [f"{p['metadata']['namespace']}/{p['metadata']['name']}" for p in pods]
            if not left:
                break
            assert time.monotonic() < deadline, f"operator pods left after pausing {paused}: {left}"
            time.sleep(2)
        yield


@pytest.fixture(scope="module")
def operator_crds(kubeconfig: Path, only_our_operator: None) -> None:
    """The CRDs the chart ships, installed as the chart would."""
    for path in (
        CRD_DIR / "tornadoservices.tornado-operator.dev.yaml",
        CRD_DIR / "kopf-peering.yaml",
    ):
        kubectl(
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager=tornado-operator-tests",
            "-f",
            str(path),
        )
    for crd in (
        "tornadoservices.tornado-operator.dev",
        "kopfpeerings.kopf.dev",
        "clusterkopfpeerings.kopf.dev",
    ):
        kubectl("wait", "--for=condition=Established", f"crd/{crd}", "--timeout=60s")


@pytest.fixture
def operator_ns(namespace: str, operator_crds: None, template_image: str) -> Iterator[str]:
    """A fresh namespace with the operator running on it.

    Afterwards: if the namespace holds children, this operator's own counters show it wrote
    children (with `only_our_operator`, nobody else could have).
    """
    before = api_requests(verbs=WRITE_VERBS, kinds=CHILD_KIND_NAMES, ok=True)
    with running_operator(namespace):
        yield namespace
    written = api_requests(verbs=WRITE_VERBS, kinds=CHILD_KIND_NAMES, ok=True) - before
    children = [c for items in owned_children(namespace).values() for c in items]
    assert written or not children, (
        f"{len(children)} children in {namespace}, but the operator under test wrote none"
    )


@pytest.fixture(scope="module")
def module_namespace(kubeconfig: Path, operator_crds: None) -> Iterator[str]:
    name = f"t-operator-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)
