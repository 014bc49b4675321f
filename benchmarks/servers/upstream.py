"""Fake upstreams for the fan-out benchmark: every port answers 200 after a fixed latency.

    python upstream.py LATENCY_MS PORT [PORT ...]

A bare asyncio protocol, so the upstreams cost the load side as little as possible
and their latency is the configured one, not their own processing time.
"""

from __future__ import annotations

import asyncio
import sys

_BODY = b'{"ok":true}'


def _response(keep_alive: bool) -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
        + str(len(_BODY)).encode()
        + (b"\r\n\r\n" if keep_alive else b"\r\nConnection: close\r\n\r\n")
        + _BODY
    )


_KEEP, _CLOSE = _response(True), _response(False)


class Delayed(asyncio.Protocol):
    def __init__(self, delay: float) -> None:
        self._delay = delay
        self._buffer = b""
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        loop = asyncio.get_running_loop()
        while b"\r\n\r\n" in self._buffer:
            head, _, self._buffer = self._buffer.partition(b"\r\n\r\n")
            close = b"connection: close" in head.lower() or head.startswith(b"GET / HTTP/1.0")
            loop.call_later(self._delay, self._answer, close)

    def _answer(self, close: bool) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        transport.write(_CLOSE if close else _KEEP)
        if close:
            transport.close()


async def main() -> None:
    delay = float(sys.argv[1]) / 1000
    loop = asyncio.get_running_loop()
    for port in sys.argv[2:]:
        await loop.create_server(
            lambda: Delayed(delay), "127.0.0.1", int(port), backlog=4096, reuse_address=True
        )
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
