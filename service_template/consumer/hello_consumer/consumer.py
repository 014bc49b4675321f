"""The consumer: read the stream through a consumer group, handle, acknowledge, never lose.

- Fetch: XREADGROUP for new entries, never more than the free handler slots (CONCURRENCY).
- Handle: the user's `handle(message)`, with HANDLER_TIMEOUT_SECONDS. XACK only after it
  returned, so a message is acknowledged only once processed.
- Fail: the message stays pending; after RETRY_BACKOFF_SECONDS * 2**(deliveries-1) this
  consumer claims it again (XCLAIM, which counts a delivery) and retries. After
  MAX_DELIVERIES deliveries it goes to the dead-letter stream (XADD and XACK in one
  transaction), so a poison message never blocks the rest.
- Take over: every CLAIM_INTERVAL_SECONDS, XAUTOCLAIM takes messages pending longer than
  CLAIM_IDLE_MS in any consumer of the group, such as a pod that was killed. That is why a
  crash loses nothing: what was not acknowledged is still pending, and someone claims it.
- Stop: no more fetching; handlers in flight get until the deadline; what is unfinished is
  not acknowledged and is taken over by the others.

The broker's pending list is the only record of deliveries, so counts survive restarts and
take-overs. Delivery is at least once: make the handler idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from hello_consumer.config import Config
from hello_consumer.message import Message
from hello_consumer.metrics import Metrics

log = logging.getLogger(__name__)

# The broker is down or unreachable (a reply that is an error is a ResponseError instead).
BROKER_DOWN = (RedisConnectionError, RedisTimeoutError, OSError)
_ERROR_TEXT_LIMIT = 500
# Bounds of one take-over round, so a huge pending list is worked through over rounds.
_CLAIM_ROUNDS = 20


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class Consumer:
    def __init__(
        self,
        config: Config,
        handler: Callable[[Message], Awaitable[None]],
        metrics: Metrics,
        client: redis.Redis,
    ) -> None:
        self.config = config
        self.handler = handler
        self.metrics = metrics
        self.client = client
        self.problem: str | None = "starting"
        self.detail = "not checked yet"
        self._stopping = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._retries: set[asyncio.Task[None]] = set()
        # Ids this consumer is handling or will retry: a take-over round skips them.
        self._held: set[str] = set()
        self._room = asyncio.Event()
        self._room.set()
        self._loops: list[asyncio.Task[None]] = []
        self._acks: list[tuple[str, asyncio.Future[bool]]] = []
        self._acker: asyncio.Task[None] | None = None
        self._fetcher: asyncio.Task[None] | None = None
        metrics.in_flight.set_function(lambda: len(self._tasks))

    # -- state -----------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self.problem is None

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    def _set_problem(self, problem: str | None, detail: str = "") -> None:
        if problem != self.problem:
            fields = {"stream": self.config.stream, "group": self.config.group, "detail": detail}
            if problem is None:
                log.info("ready: consuming", extra={"fields": fields})
            elif problem in ("stream_missing", "group_missing"):
                log.error(f"not ready: {problem}", extra={"fields": fields})
            elif problem != "draining":
                log.warning(f"not ready: {problem}", extra={"fields": fields})
        self.problem, self.detail = problem, detail
        self.metrics.set_problem(problem)

    def _broker_down(self, exc: BaseException) -> None:
        self.metrics.broker_errors.inc()
        if not self._stopping.is_set():
            self._set_problem("broker_unreachable", f"{type(exc).__name__}: {exc}")

    async def _pause(self, seconds: float) -> bool:
        """Sleep, or return True at once when stopping."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)
        return self._stopping.is_set()

    # -- the group -------------------------------------------------------------------------

    async def refresh(self) -> None:
        """Check the stream and the group (creating them if configured to); update lag gauges."""
        c = self.config
        try:
            try:
                groups = await self.client.xinfo_groups(c.stream)
            except ResponseError as exc:
                if str(exc).startswith("WRONGTYPE"):
                    self._set_problem("stream_missing", f"key {c.stream!r} is not a stream")
                    return
                if "no such key" not in str(exc).lower():
                    raise
                if c.create_group and c.create_stream:
                    await self._create_group(mkstream=True)
                    return
                self.metrics.lag.set(math.nan)
                self.metrics.pending.set(0)
                self.metrics.backlog.set(math.nan)
                self._set_problem(
                    "stream_missing",
                    f"stream {c.stream!r} does not exist (create it, or set CREATE_STREAM=true "
                    "and CREATE_GROUP=true)",
                )
                return
        except BROKER_DOWN as exc:
            self._broker_down(exc)
            return
        for group in groups:
            if _text(group.get("name")) == c.group:
                lag = group.get("lag")
                pending = int(group.get("pending") or 0)
                self.metrics.lag.set(math.nan if lag is None else float(lag))
                self.metrics.pending.set(pending)
                self.metrics.backlog.set(math.nan if lag is None else float(lag) + pending)
                if not self._stopping.is_set():
                    self._set_problem(None)
                return
        if c.create_group:
            await self._create_group(mkstream=False)
            return
        self._set_problem(
            "group_missing",
            f"stream {c.stream!r} has no consumer group {c.group!r} (create it, or set "
            "CREATE_GROUP=true)",
        )

    async def _create_group(self, *, mkstream: bool) -> None:
        c = self.config
        try:
            await self.client.xgroup_create(
                c.stream, c.group, id=c.group_start_id, mkstream=mkstream
            )
            log.info(
                "created consumer group",
                extra={"fields": {"stream": c.stream, "group": c.group, "from": c.group_start_id}},
            )
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):  # another replica created it first: fine
                raise
        except BROKER_DOWN as exc:
            self._broker_down(exc)
            return
        await self.refresh()

    # -- running ---------------------------------------------------------------------------

    def start(self) -> None:
        self._fetcher = asyncio.create_task(self._guarded(self._fetch_loop), name="fetch")
        self._loops = [
            asyncio.create_task(self._guarded(self._claim_loop), name="claim"),
            asyncio.create_task(self._guarded(self._status_loop), name="status"),
        ]

    async def _guarded(self, loop: Callable[[], Awaitable[None]]) -> None:
        """Run a loop; an unexpected error is logged and the loop starts again, never dies."""
        while not self._stopping.is_set():
            try:
                await loop()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("consumer loop failed; restarting it in 1 s")
                self.metrics.broker_errors.inc()
                await self._pause(1.0)

    async def _fetch_loop(self) -> None:
        c = self.config
        delay = 0.1
        while not self._stopping.is_set():
            if self.problem is not None:
                await self.refresh()
                if self.problem is not None:
                    if await self._pause(delay):
                        return
                    delay = min(delay * 2, c.status_interval, 5.0)
                    continue
            delay = 0.1
            await self._wait_for_room()
            count = max(1, c.concurrency - len(self._tasks))
            try:
                reply = await self.client.xreadgroup(
                    c.group, c.consumer_name, {c.stream: ">"}, count=count, block=c.block_ms
                )
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                await self.refresh()
                continue
            except BROKER_DOWN as exc:
                self._broker_down(exc)
                continue
            for _stream, entries in reply or ():
                for entry_id, fields in entries:
                    await self._start(Message.from_entry(c.stream, entry_id, fields, 1))

    async def _wait_for_room(self) -> None:
        while len(self._tasks) >= self.config.concurrency:
            self._room.clear()
            await self._room.wait()

    async def _start(self, message: Message) -> None:
        await self._wait_for_room()
        self._held.add(message.id)
        task = asyncio.create_task(self._process(message))
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._room.set()

    async def _process(self, message: Message) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            async with asyncio.timeout(self.config.handler_timeout):
                await self.handler(message)
        except asyncio.CancelledError:
            # Shutdown ran out of time: not acknowledged, so still pending for the others.
            self._held.discard(message.id)
            raise
        except Exception as exc:
            self.metrics.duration.observe(loop.time() - started)
            self.metrics.failed.inc()
            await self._failed(message, exc)
            return
        self.metrics.duration.observe(loop.time() - started)
        await self._ack(message)

    async def _ack(self, message: Message) -> None:
        """Acknowledge once handled. Acks that come while one XACK is on its way go together
        in the next (one round trip for many messages); each waits for its own."""
        done = asyncio.get_running_loop().create_future()
        self._acks.append((message.id, done))
        if self._acker is None or self._acker.done():
            self._acker = asyncio.create_task(self._send_acks())
        try:
            # Shielded: a handler cancelled at the shutdown deadline does not cancel the acks.
            acknowledged = await asyncio.shield(done)
        finally:
            self._held.discard(message.id)
        if acknowledged:
            self.metrics.processed.inc()

    async def _send_acks(self) -> None:
        while self._acks:
            batch, self._acks = self._acks, []
            ids = [ident for ident, _ in batch]
            try:
                await self.client.xack(self.config.stream, self.config.group, *ids)
                ok = True
            except BROKER_DOWN as exc:
                self._broker_down(exc)
                log.warning(
                    "acknowledgement failed: the messages will be delivered again",
                    extra={"fields": {"ids": ids[:20], "count": len(ids), "error": str(exc)}},
                )
                ok = False
            for _, done in batch:
                if not done.done():
                    done.set_result(ok)

    async def _failed(self, message: Message, exc: BaseException) -> None:
        c = self.config
        error = f"{type(exc).__name__}: {exc}"[:_ERROR_TEXT_LIMIT]
        if message.deliveries >= c.max_deliveries:
            await self._dead_letter(message, error)
            return
        delay = min(c.retry_backoff_max, c.retry_backoff * 2 ** (message.deliveries - 1))
        log.warning(
            "handler failed; will retry",
            extra={
                "fields": {
                    "id": message.id,
                    "deliveries": message.deliveries,
                    "retry_in_seconds": delay,
                    "error": error,
                }
            },
        )
        if self._stopping.is_set():
            self._held.discard(message.id)  # stays pending: another consumer retries it
            return
        task = asyncio.create_task(self._retry(message, delay))
        self._retries.add(task)
        task.add_done_callback(self._retries.discard)

    async def _retry(self, message: Message, delay: float) -> None:
        c = self.config
        try:
            if await self._pause(delay):
                return
            try:
                claimed = await self.client.xclaim(
                    c.stream, c.group, c.consumer_name, 0, [message.id]
                )
            except BROKER_DOWN as exc:
                self._broker_down(exc)
                return  # still pending: a take-over round retries it
            if not claimed:
                return  # acknowledged by another consumer, or deleted from the stream
            entry_id, fields = claimed[0]
            self.metrics.retried.inc()
            retried = Message.from_entry(c.stream, entry_id, fields, message.deliveries + 1)
        finally:
            self._held.discard(message.id)
        await self._start(retried)

    async def _dead_letter(self, message: Message, error: str) -> None:
        c = self.config
        entry: dict[Any, Any] = dict(message.raw)
        entry.update(
            {
                "dead_letter.id": message.id,
                "dead_letter.stream": c.stream,
                "dead_letter.group": c.group,
                "dead_letter.consumer": c.consumer_name,
                "dead_letter.deliveries": str(message.deliveries),
                "dead_letter.error": error,
            }
        )
        try:
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.xadd(c.dead_letters, entry)
                pipe.xack(c.stream, c.group, message.id)
                await pipe.execute()
        except BROKER_DOWN as exc:
            self._broker_down(exc)
            return  # still pending: dead-lettered when taken over
        finally:
            self._held.discard(message.id)
        self.metrics.dead_lettered.inc()
        log.warning(
            "moved to the dead-letter stream",
            extra={
                "fields": {
                    "id": message.id,
                    "dead_letter_stream": c.dead_letters,
                    "deliveries": message.deliveries,
                    "error": error,
                }
            },
        )

    async def _claim_loop(self) -> None:
        while not await self._pause(self.config.claim_interval):
            if self.problem is None:
                await self.claim_idle()

    async def claim_idle(self) -> int:
        """Take over messages idle longer than CLAIM_IDLE_MS, as many as there are free slots."""
        c = self.config
        cursor: Any = "0-0"
        taken = 0
        for _ in range(_CLAIM_ROUNDS):
            room = c.concurrency - len(self._tasks)
            if room <= 0 or self._stopping.is_set():
                break
            try:
                reply = await self.client.xautoclaim(
                    c.stream, c.group, c.consumer_name, c.claim_idle_ms, cursor, count=room
                )
                cursor, entries = reply[0], [e for e in reply[1] if _text(e[0]) not in self._held]
                deliveries = await self._deliveries([_text(e[0]) for e in entries])
            except BROKER_DOWN as exc:
                self._broker_down(exc)
                break
            for (entry_id, fields), count in zip(entries, deliveries, strict=True):
                taken += 1
                self.metrics.reclaimed.inc()
                message = Message.from_entry(c.stream, entry_id, fields, count)
                log.info(
                    "took over an idle message",
                    extra={"fields": {"id": message.id, "deliveries": count}},
                )
                if count > c.max_deliveries:
                    # Delivered that often and never acknowledged: it may crash its consumers.
                    self._held.add(message.id)
                    await self._dead_letter(
                        message, f"delivered {count} times without being acknowledged"
                    )
                else:
                    await self._start(message)
            if _text(cursor) == "0-0":
                break
        return taken

    async def _deliveries(self, ids: list[str]) -> list[int]:
        """The delivery counts the pending list holds for `ids` (claimed by this consumer)."""
        if not ids:
            return []
        c = self.config
        async with self.client.pipeline(transaction=False) as pipe:
            for ident in ids:
                pipe.xpending_range(c.stream, c.group, ident, ident, 1)
            replies = await pipe.execute()
        return [int(r[0]["times_delivered"]) if r else 1 for r in replies]

    async def _status_loop(self) -> None:
        while True:
            await self.refresh()
            if await self._pause(self.config.status_interval):
                return

    # -- stopping --------------------------------------------------------------------------

    async def stop(self, deadline: float) -> int:
        """Stop fetching, let handlers in flight finish until `deadline` (loop time).

        Returns how many were still running at the deadline; those are cancelled and stay
        pending, unacknowledged, for another consumer to take over.
        """
        loop = asyncio.get_running_loop()
        self._stopping.set()
        self._set_problem("draining")
        for task in (*self._loops, *self._retries):
            task.cancel()
        if self._fetcher is not None:
            # The fetch in progress returns within BLOCK_MS; what it brings is handled.
            wait = min(deadline - loop.time(), self.config.block_ms / 1000 + 1)
            _done, pending = await asyncio.wait({self._fetcher}, timeout=max(wait, 0))
            for task in pending:
                task.cancel()
            await asyncio.gather(self._fetcher, return_exceptions=True)
        await asyncio.gather(*self._loops, *self._retries, return_exceptions=True)
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=max(deadline - loop.time(), 0))
        unfinished = list(self._tasks)
        for task in unfinished:
            task.cancel()
        await asyncio.gather(*unfinished, return_exceptions=True)
        if self._acker is not None:
            # Acks on their way are not abandoned: each is one round trip.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._acker), self.config.block_ms / 1000 + 5)
        return len(unfinished)
