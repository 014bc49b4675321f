"""The lag source (autoscaling.broker) against a real redis-server on loopback: XINFO GROUPS of
real streams and groups, pending entries, a missing stream, group or broker."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
from redis.asyncio import Redis
from tornado_operator import consumer
from tornado_operator.autoscaling import broker as broker_mod
from tornado_operator.autoscaling.broker import BrokerReader

from tests.redis_server import REDIS_SERVER, free_port, redis_server

pytestmark = pytest.mark.skipif(
    REDIS_SERVER is None, reason="needs redis-server (Debian's redis-server: hack/prereqs.sh)"
)


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture
async def client(redis_url: str) -> Redis:
    conn = Redis.from_url(redis_url, decode_responses=True)
    await conn.flushdb()
    yield conn
    await conn.aclose()


async def test_lag_and_pending(client: Redis, redis_url: str) -> None:
    for i in range(10):
        await client.xadd("orders", {"id": str(i)})
    await client.xgroup_create("orders", "billing", id="0")
    # Delivered to a consumer and never acknowledged: pending, still backlog.
    got = await client.xreadgroup("billing", "c1", {"orders": ">"}, count=4)
    ids = [entry_id for _, entries in got for entry_id, _ in entries]
    await client.xack("orders", "billing", ids[0])
    reader = BrokerReader()
    try:
        reading = await reader.read(redis_url, "orders", "billing")
    finally:
        await reader.close()
    assert reading.ok and reading.reason == "StreamFound"
    assert (reading.lag, reading.pending, reading.entries_read) == (6, 3, 4)
    assert reading.backlog == 9 and reading.acked == 1
    assert "lag 6, pending 3" in reading.message


async def test_new_group_before_its_first_read(client: Redis, redis_url: str) -> None:
    for i in range(3):
        await client.xadd("orders", {"id": str(i)})
    await client.xgroup_create("orders", "billing", id="0")
    reader = BrokerReader()
    try:
        reading = await reader.read(redis_url, "orders", "billing")
    finally:
        await reader.close()
    assert (reading.lag, reading.pending, reading.entries_read, reading.backlog) == (3, 0, 0, 3)


async def test_drained(client: Redis, redis_url: str) -> None:
    await client.xgroup_create("orders", "billing", id="$", mkstream=True)
    await client.xadd("orders", {"id": "1"})
    got = await client.xreadgroup("billing", "c1", {"orders": ">"})
    await client.xack("orders", "billing", got[0][1][0][0])
    reader = BrokerReader()
    try:
        reading = await reader.read(redis_url, "orders", "billing")
    finally:
        await reader.close()
    assert reading.backlog == 0 and reading.acked == 1


async def test_missing_stream(client: Redis, redis_url: str) -> None:
    reader = BrokerReader()
    try:
        reading = await reader.read(redis_url, "no-such-stream", "billing")
    finally:
        await reader.close()
    assert reading.reason == "StreamNotFound" and reading.permanent and not reading.ok
    assert "no-such-stream does not exist" in reading.message and reading.backlog is None


async def test_missing_group(client: Redis, redis_url: str) -> None:
    await client.xadd("orders", {"id": "1"})
    await client.xgroup_create("orders", "other", id="0")
    reader = BrokerReader()
    try:
        reading = await reader.read(redis_url, "orders", "billing")
    finally:
        await reader.close()
    assert reading.reason == "GroupNotFound" and reading.permanent
    assert "no consumer group billing" in reading.message


async def test_not_a_stream(client: Redis, redis_url: str) -> None:
    await client.set("orders", "x")
    reader = BrokerReader()
    try:
        reading = await reader.read(redis_url, "orders", "billing")
    finally:
        await reader.close()
    assert reading.reason == "NotAStream" and reading.permanent


async def test_unreachable_broker_is_temporary_and_bounded() -> None:
    port = free_port()  # nothing listens there
    reader = BrokerReader(timeout=0.5)
    started = time.monotonic()
    try:
        reading = await reader.read(f"redis://127.0.0.1:{port}/0", "orders", "billing")
    finally:
        await reader.close()
    assert reading.reason == "BrokerUnreachable" and not reading.permanent
    assert "temporary" in reading.message
    assert time.monotonic() - started < 2.0


async def test_a_silent_broker_times_out() -> None:
    # Accepts connections and never answers: the read ends within its bound.
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader = BrokerReader(timeout=0.3)
    started = time.monotonic()
    try:
        reading = await reader.read(f"redis://127.0.0.1:{port}/0", "orders", "billing")
    finally:
        await reader.close()
        server.close()
    assert reading.reason == "BrokerUnreachable"
    assert time.monotonic() - started < 1.5


async def test_one_client_per_broker(client: Redis, redis_url: str) -> None:
    await client.xgroup_create("a", "g", id="$", mkstream=True)
    await client.xgroup_create("b", "g", id="$", mkstream=True)
    reader = BrokerReader()
    try:
        first = await asyncio.gather(
            *(reader.read(redis_url, stream, "g") for stream in ("a", "b") * 5)
        )
        assert all(r.ok for r in first)
        assert len(reader._clients) == 1
        await reader.forget(redis_url)
        assert not reader._clients
    finally:
        await reader.close()


def test_group_answer_parsing() -> None:
    groups = [
        {"name": "other", "pending": 1, "lag": 1, "entries-read": 1},
        {"name": "billing", "pending": 2, "lag": None, "entries-read": None},
    ]
    reading = broker_mod.reading_from_groups(
        groups, stream="s", group="billing", broker="redis://b", now=5.0
    )
    assert reading.ok and reading.lag is None and reading.backlog is None
    assert "lag unknown" in reading.message and reading.time == 5.0


async def test_a_broker_url_no_client_takes_is_a_reading_not_an_exception() -> None:
    # The CRD refuses such ports now; an object stored before that still gets a status.
    reader = BrokerReader()
    try:
        reading = await reader.read("redis://localhost:65536/0", "orders", "billing")
    finally:
        await reader.close()
    assert reading.reason == consumer.BROKER_ERROR
    assert "spec.consumer.broker 'redis://localhost:65536/0' is not a usable Redis URL" in (
        reading.message
    )
