"""Fixtures for the service's tests; the helpers they use live in support.py."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from support import FakeUpstreams, Service, launch, stop


@pytest.fixture
def start_service() -> Iterator[Callable[..., Service]]:
    """A factory: `start_service({"ENV": "value"})`; every service started is stopped after."""
    started: list[Service] = []

    def start(env: dict[str, str] | None = None) -> Service:
        service = launch(env)
        started.append(service)
        return service

    yield start
    for service in started:
        stop(service)


@pytest.fixture(scope="module")
def service() -> Iterator[Service]:
    """One service with default settings, shared by a module's tests."""
    svc = launch()
    yield svc
    stop(svc)


@pytest.fixture
def upstreams() -> Iterator[FakeUpstreams]:
    fake = FakeUpstreams()
    yield fake
    fake.close()
