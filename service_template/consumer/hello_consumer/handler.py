"""Your code: what to do with one message.

`handle` is called once per delivered message, with at most CONCURRENCY calls at a
time. Return to have the message acknowledged; raise to have it retried with backoff,
and moved to the dead-letter stream after MAX_DELIVERIES deliveries. A message may be
delivered more than once (after a crash or a timeout), so make the work idempotent,
for example keyed by `message.id` or a field of your own.

Keep the event loop free: await I/O (Tornado's AsyncHTTPClient, redis.asyncio, ...),
and run CPU-heavy or blocking work with `await asyncio.to_thread(...)`.
"""

from __future__ import annotations

import logging

from hello_consumer.message import Message

log = logging.getLogger(__name__)


async def handle(message: Message) -> None:
    log.debug("handled", extra={"fields": {"id": message.id, "fields": dict(message.fields)}})
