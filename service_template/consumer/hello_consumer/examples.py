"""Example handlers, used by this service's tests and the project's end-to-end tests.

Select one with HANDLER=hello_consumer.examples:record. Delete this module when
your service no longer needs it.
"""

from __future__ import annotations

import asyncio
import os
import socket

import redis.asyncio as redis

from hello_consumer.message import Message

_client: redis.Redis | None = None


def _results() -> redis.Redis:
    global _client
    if _client is None:
        _client = redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://localhost:6379/0"))
    return _client


async def record(message: Message) -> None:
    """Append the message's id (and `uid` field) to RESULT_STREAM, once processed.

    A field `sleep` (seconds) makes it wait first, like a slow upstream; a field
    `poison` makes it always fail.
    """
    sleep = message.fields.get("sleep")
    if sleep:
        await asyncio.sleep(float(sleep))
    if "poison" in message.fields:
        raise ValueError(f"poison message {message.id}")
    await _results().xadd(
        os.environ.get("RESULT_STREAM", "results"),
        {
            "id": message.id,
            "uid": message.fields.get("uid", ""),
            "deliveries": str(message.deliveries),
            "consumer": os.environ.get("CONSUMER_NAME") or socket.gethostname(),
        },
    )


async def noop(message: Message) -> None:
    """Does nothing: the cost of consuming itself."""


async def upstream_50ms(message: Message) -> None:
    """Waits 50 ms, like a call to a slow upstream."""
    await asyncio.sleep(0.05)
