"""The process's phase, as the probes report it, and the count of requests in flight."""

from __future__ import annotations

import asyncio


class Lifecycle:
    """Started -> draining -> stopped; in-flight requests are counted so shutdown can wait."""

    def __init__(self) -> None:
        self.started = False
        self.draining = False
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def ready(self) -> bool:
        return self.started and not self.draining

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def request_started(self) -> None:
        self._in_flight += 1
        self._idle.clear()

    def request_finished(self) -> None:
        self._in_flight -= 1
        if self._in_flight <= 0:
            self._in_flight = 0
            self._idle.set()

    async def wait_idle(self) -> None:
        """Return once no request is in flight (callers bound the wait with asyncio.timeout)."""
        await self._idle.wait()
