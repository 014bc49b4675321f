"""Shared fixtures: a real cluster for tests marked `cluster`, one namespace per test."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from hack import images, kubetools
from hack.cluster import providers


@pytest.fixture(scope="session")
def kubeconfig() -> Iterator[Path]:
    """A kubeconfig for a real cluster.

    The cluster $KUBECONFIG points to when it answers (a user's kind cluster);
    otherwise the project's local offline cluster, started if it is down.
    """
    path = providers.ensure_cluster()
    os.environ["KUBECONFIG"] = str(path)
    yield path


@pytest.fixture
def namespace(kubeconfig: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace for one test, deleted afterwards (not waited for)."""
    slug = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:40].strip("-")
    name = f"t-{slug}-{uuid.uuid4().hex[:5]}"
    kubetools.kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        kubetools.kubectl(
            "delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False
        )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Anything that uses the cluster is a cluster test, even if unmarked.
    for item in items:
        if "kubeconfig" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.cluster)


@pytest.fixture(scope="session")
def template_image(kubeconfig: Path) -> str:
    """The bundled template's image, built locally and loaded into the cluster's node."""
    ref = images.build_template_image()
    providers.load_images([ref])
    return ref


@pytest.fixture(scope="session")
def operator_image(kubeconfig: Path) -> str:
    """The operator's image, built locally and loaded into the cluster's node."""
    ref = images.build_operator_image()
    providers.load_images([ref])
    return ref
