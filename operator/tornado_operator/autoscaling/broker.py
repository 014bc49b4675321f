"""Reading a consumer group's backlog from the broker: the lag source, next to the pods' scrape.

The operator asks Redis itself, XINFO GROUPS <stream>, and takes its group's `lag` (entries not
yet delivered to the group), `pending` (delivered, not acknowledged) and `entries-read`. Only
that one read-only command: the operator never writes to a stream or a group (the consumers
create the group).

What can go wrong, told apart (consumer.Reading.reason):
- the broker does not answer, in time or at all: BrokerUnreachable, temporary;
- the key does not exist: StreamNotFound; it is not a stream: NotAStream; the stream has no such
  group: GroupNotFound. Permanent until someone creates them (a producer, the consumers): the
  daemon polls them slowly, it never retries them in a storm;
- any other error answer (a broker that needs a password answers NOAUTH): BrokerError.

One client per broker URL, shared by every consumer on it; each read is bounded by
`READ_TIMEOUT_SECONDS`, and at most `READ_CONCURRENCY` run at once across the operator.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from tornado_operator import consumer
from tornado_operator.consumer import Reading

READ_TIMEOUT_SECONDS = 1.0
READ_CONCURRENCY = 16
MAX_MESSAGE = 512


def _int(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def reading_from_groups(
    groups: Any, *, stream: str, group: str, broker: str, now: float
) -> Reading:
    """The Reading for XINFO GROUPS' answer (a list of one mapping per group)."""
    for entry in groups or ():
        if isinstance(entry, Mapping) and str(entry.get("name")) == group:
            lag = _int(entry.get("lag"))
            pending = _int(entry.get("pending"))
            read = _int(entry.get("entries-read"))
            lag_text = "unknown" if lag is None else str(lag)
            return Reading(
                consumer.STREAM_FOUND,
                f"group {group} on stream {stream}: lag {lag_text}, pending {pending}",
                now,
                lag=lag,
                pending=pending,
                # Redis answers nil before the group's first read: nothing read yet.
                entries_read=0 if read is None else read,
            )
    return Reading(
        consumer.GROUP_NOT_FOUND,
        f"stream {stream} on {broker} has no consumer group {group}: the consumers create it "
        "when they start (XGROUP CREATE ... MKSTREAM), or create it yourself",
        now,
    )


def reading_from_error(exc: BaseException, *, stream: str, broker: str, now: float) -> Reading:
    """The Reading for a failed XINFO GROUPS."""
    text = str(exc)[:MAX_MESSAGE] or type(exc).__name__
    if isinstance(exc, ResponseError):
        if "no such key" in text.lower():
            return Reading(
                consumer.STREAM_NOT_FOUND,
                f"stream {stream} does not exist on {broker}: check spec.consumer.stream, or "
                "create it (a producer's first XADD, or XGROUP CREATE ... MKSTREAM)",
                now,
            )
        if text.startswith("WRONGTYPE"):
            return Reading(
                consumer.NOT_A_STREAM,
                f"key {stream} on {broker} is not a stream: check spec.consumer.stream",
                now,
            )
        return Reading(consumer.BROKER_ERROR, f"{broker} refused XINFO GROUPS: {text}", now)
    if isinstance(exc, RedisConnectionError | RedisTimeoutError | OSError | TimeoutError):
        return Reading(
            consumer.BROKER_UNREACHABLE,
            f"cannot reach the broker {broker}: {text} (temporary: retried)",
            now,
        )
    return Reading(consumer.BROKER_ERROR, f"reading {broker}: {type(exc).__name__}: {text}", now)


class BrokerReader:
    """Reads consumer groups, with one client per broker URL. Close it when done."""

    def __init__(
        self,
        *,
        timeout: float = READ_TIMEOUT_SECONDS,
        concurrency: int = READ_CONCURRENCY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.timeout = timeout
        self.clock = clock
        self._limit = asyncio.Semaphore(concurrency)
        self._clients: dict[str, Redis] = {}

    def _client(self, url: str) -> Redis:
        client = self._clients.get(url)
        if client is None:
            # No retries inside the client: the daemon's next tick is the retry, and a read
            # must end within its timeout whatever the broker does.
            client = self._clients[url] = Redis.from_url(
                url,
                decode_responses=True,
                socket_timeout=self.timeout,
                socket_connect_timeout=self.timeout,
                retry=Retry(NoBackoff(), 0),
                # No max_connections: a full pool fails a read instead of waiting for it, and
                # the semaphore already bounds the reads in flight.
            )
        return client

    async def read(self, broker: str, stream: str, group: str) -> Reading:
        """One XINFO GROUPS of `stream`, as the Reading for `group`. Never raises for broker
        trouble: that is what the Reading says."""
        try:
            client = self._client(broker)
        except ValueError as exc:  # the CRD's pattern should keep such URLs out; say so if not
            return Reading(
                consumer.BROKER_ERROR,
                f"spec.consumer.broker {broker!r} is not a usable Redis URL: {exc}",
                self.clock(),
            )
        async with self._limit:
            try:
                async with asyncio.timeout(self.timeout * 2):
                    groups = await client.xinfo_groups(stream)
            except (RedisError, OSError, TimeoutError) as exc:
                return reading_from_error(exc, stream=stream, broker=broker, now=self.clock())
        return reading_from_groups(
            groups, stream=stream, group=group, broker=broker, now=self.clock()
        )

    async def forget(self, broker: str) -> None:
        """Close the client of a broker no consumer names any more."""
        client = self._clients.pop(broker, None)
        if client is not None:
            await client.aclose()

    async def close(self) -> None:
        for url in list(self._clients):
            await self.forget(url)
