"""Fixtures for the operator's cluster tests, loaded with `pytest_plugins`."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.operator_support import CRD_DIR, kubectl, running_operator


@pytest.fixture(scope="session")
def operator_crds(kubeconfig: Path) -> None:
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
    """A fresh namespace with the operator running on it."""
    with running_operator(namespace):
        yield namespace


@pytest.fixture(scope="module")
def module_namespace(kubeconfig: Path, operator_crds: None) -> Iterator[str]:
    name = f"t-operator-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)
