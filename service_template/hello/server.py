"""The process: check the configuration, listen, serve, and shut down gracefully on SIGTERM.

Shutdown order, so that a rolling update loses no request:
1. readiness turns 503 (the endpoint controller and load balancers stop sending);
2. requests are still served for DRAIN_DELAY_SECONDS, while that news spreads;
3. the listener closes;
4. in-flight requests finish, for at most SHUTDOWN_TIMEOUT_SECONDS;
5. the remaining (idle keep-alive) connections close;
6. the process exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from typing import Any

from tornado.httpserver import HTTPServer
from tornado.iostream import IOStream, UnsatisfiableReadError
from tornado.netutil import bind_sockets

from hello import SERVICE_NAME, __version__, logs
from hello.app import make_app
from hello.config import Config, ConfigError, load
from hello.handlers import ServiceContext
from hello.lifecycle import Lifecycle
from hello.logs import LogWriter
from hello.metrics import Metrics
from hello.upstreams import UpstreamClient

log = logging.getLogger(SERVICE_NAME)

_HEADERS_TOO_LARGE_BODY = b"request header fields too large\n"
_HEADERS_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"Content-Type: text/plain; charset=UTF-8\r\n"
    b"Content-Length: " + str(len(_HEADERS_TOO_LARGE_BODY)).encode() + b"\r\n"
    b"Connection: close\r\n\r\n" + _HEADERS_TOO_LARGE_BODY
)
_CLOSE_CONNECTIONS_TIMEOUT = 5.0


class StartError(RuntimeError):
    """The service cannot start (for example, its port is taken)."""


class LimitedHTTPServer(HTTPServer):
    """Answers 431 to oversized request headers.

    Tornado closes the connection without a word when the headers exceed
    max_header_size; a client then sees a reset and may retry the same request
    forever. The stream reports that case by closing with UnsatisfiableReadError.
    """

    def handle_stream(self, stream: IOStream, address: tuple[Any, ...]) -> None:
        close = stream.close

        def close_with_431(exc_info: Any = False) -> None:
            if isinstance(exc_info, UnsatisfiableReadError) and not stream.closed():
                with contextlib.suppress(OSError):
                    # A few bytes into an empty send buffer: never blocks.
                    stream.socket.send(_HEADERS_TOO_LARGE)
            close(exc_info)

        stream.close = close_with_431  # type: ignore[method-assign]
        super().handle_stream(stream, address)


async def serve(config: Config, writer: LogWriter) -> int:
    loop = asyncio.get_running_loop()
    metrics = Metrics()
    writer.set_drop_counter(metrics.log_lines_dropped.inc)
    lifecycle = Lifecycle()
    metrics.requests_in_flight.set_function(lambda: lifecycle.in_flight)
    upstreams = UpstreamClient(config, metrics)
    ctx = ServiceContext(config, lifecycle, metrics, upstreams, writer)
    server = LimitedHTTPServer(
        make_app(ctx),
        max_header_size=config.max_header_bytes,
        max_body_size=config.max_body_bytes,
        max_buffer_size=config.max_body_bytes + config.max_header_bytes + 128 * 1024,
        idle_connection_timeout=config.idle_connection_timeout,
        body_timeout=config.body_timeout,
        decompress_request=False,
        xheaders=False,
    )
    try:
        sockets = bind_sockets(config.port, address=config.bind_address or None, backlog=1024)
    except OSError as exc:
        where = f"{config.bind_address or '*'}:{config.port}"
        raise StartError(f"cannot listen on {where}: {exc.strerror or exc}") from None

    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    server.add_sockets(sockets)
    lifecycle.started = True
    log.info(
        "started",
        extra={
            "fields": {
                "version": __version__,
                "port": config.port,
                "upstreams": [u.name for u in config.upstreams],
            }
        },
    )

    await stop.wait()
    lifecycle.draining = True
    log.info("draining", extra={"fields": {"drain_delay_seconds": config.drain_delay}})
    await asyncio.sleep(config.drain_delay)

    server.stop()
    log.info("listener closed", extra={"fields": {"in_flight": lifecycle.in_flight}})
    try:
        async with asyncio.timeout(config.shutdown_timeout):
            await lifecycle.wait_idle()
    except TimeoutError:
        log.warning(
            "shutdown timeout: abandoning requests still in flight",
            extra={"fields": {"in_flight": lifecycle.in_flight}},
        )
    try:
        async with asyncio.timeout(_CLOSE_CONNECTIONS_TIMEOUT):
            await server.close_all_connections()
    except TimeoutError:
        log.warning("connections still open after close; exiting anyway")
    upstreams.close()
    log.info("stopped")
    return 0


def main() -> int:
    try:
        config = load(os.environ)
    except ConfigError as exc:
        # One line, before anything else happens: `kubectl logs` shows exactly why.
        print(f"{SERVICE_NAME}: {exc}", file=sys.stderr, flush=True)
        return 2
    writer = LogWriter(sys.stdout)
    logs.configure(writer, SERVICE_NAME)
    try:
        return asyncio.run(serve(config, writer))
    except StartError as exc:
        print(f"{SERVICE_NAME}: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        writer.close()
