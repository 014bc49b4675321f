"""Fixtures for the consumer's tests; the helpers they use live in support.py."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import redis

from support import Broker, ConsumerProcess, free_port, kill, launch


@pytest.fixture(scope="session")
def broker() -> Iterator[Broker]:
    """One real redis-server for the session; every test uses streams of its own."""
    b = Broker(free_port())
    b.start()
    yield b
    b.close()


@pytest.fixture
def client(broker: Broker) -> Iterator[redis.Redis]:
    c = broker.client()
    c.flushdb()
    yield c
    c.close()


@pytest.fixture
def start_consumer(broker: Broker) -> Iterator[Callable[..., ConsumerProcess]]:
    """A factory: `start_consumer({"ENV": "value"})`; every consumer started is killed after."""
    started: list[ConsumerProcess] = []

    def start(env: dict[str, str] | None = None, on: Broker | None = None) -> ConsumerProcess:
        consumer = launch(on or broker, env)
        started.append(consumer)
        return consumer

    yield start
    for consumer in started:
        kill(consumer)
