"""The process: check the configuration, serve health and metrics, consume, stop on SIGTERM.

The HTTP port (PORT, container port `http`) serves only the probes and metrics:
- /livez: 200 while the event loop answers. It asks nothing of the broker, so a broker
  outage never makes the kubelet restart consumers in a loop.
- /readyz: 200 when the broker answers and the stream and the group exist; 503 with the
  reason (broker_unreachable, stream_missing, group_missing, starting, draining) otherwise.
  A consumer has no Service, so readiness sends no traffic: it is what rollouts wait for
  and what `kubectl get pods` shows.
- /startupz: 200 once the process has started (configuration checked, handler loaded, port
  bound). Like /livez it asks nothing of the broker: the tornado-operator's default startup
  probe asks for it, and a broker outage at start must not restart the pod in a loop.
- /metrics: Prometheus text.

Shutdown on SIGTERM (or SIGINT): readiness turns 503; fetching stops (the fetch in
progress returns within BLOCK_MS); handlers in flight get until SHUTDOWN_TIMEOUT_SECONDS
after the signal; the rest are cancelled, unacknowledged, for another consumer to take
over; the process exits 0.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from typing import Any

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets
from tornado.web import Application, RequestHandler

from hello_consumer import SERVICE_NAME, __version__, logs
from hello_consumer.config import Config, ConfigError, load
from hello_consumer.consumer import Consumer
from hello_consumer.logs import LogWriter
from hello_consumer.metrics import Metrics

log = logging.getLogger(SERVICE_NAME)
_CONNECT_TIMEOUT = 2.0


class StartError(RuntimeError):
    """The consumer cannot start (for example, its port is taken)."""


class _Base(RequestHandler):
    def initialize(self, consumer: Consumer, metrics: Metrics, config: Config) -> None:
        self.consumer = consumer
        self.metrics = metrics
        self.config = config

    def on_finish(self) -> None:
        if self.config.log_probes:
            log.info(
                "request",
                extra={
                    "fields": {
                        "method": self.request.method,
                        "path": self.request.path,
                        "status": self.get_status(),
                    }
                },
            )

    def _json(self, status: int, body: dict[str, Any]) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps(body))


class LivezHandler(_Base):
    def get(self) -> None:
        self._json(200, {"status": "alive", "in_flight": self.consumer.in_flight})


class StartupzHandler(_Base):
    def get(self) -> None:
        # Served only once serve() has bound the port, after the configuration and the handler.
        self._json(200, {"status": "started"})


class ReadyzHandler(_Base):
    def get(self) -> None:
        c = self.consumer
        body = {
            "status": "ready" if c.ready else "not ready",
            "reason": c.problem,
            "detail": c.detail,
            "stream": self.config.stream,
            "group": self.config.group,
            "consumer": self.config.consumer_name,
        }
        self._json(200 if c.ready else 503, body)


class MetricsHandler(_Base):
    def get(self) -> None:
        self.set_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.finish(self.metrics.exposition())


def make_app(consumer: Consumer, metrics: Metrics, config: Config) -> Application:
    args = {"consumer": consumer, "metrics": metrics, "config": config}
    return Application(
        [
            (r"/livez", LivezHandler, args),
            (r"/readyz", ReadyzHandler, args),
            (r"/startupz", StartupzHandler, args),
            (r"/metrics", MetricsHandler, args),
        ],
        log_function=lambda handler: None,
        debug=False,
        autoreload=False,
        serve_traceback=False,
    )


def make_client(config: Config) -> redis.Redis:
    # A blocking XREADGROUP waits BLOCK_MS for an answer; anything slower is a dead broker.
    client: redis.Redis = redis.Redis.from_url(
        config.redis_url,
        socket_connect_timeout=_CONNECT_TIMEOUT,
        socket_timeout=config.block_ms / 1000 + 5,
        # One quick retry mends a dropped idle connection; longer outages are the loops' job.
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 1),
        health_check_interval=30,
        client_name=config.consumer_name,
    )
    return client


async def serve(config: Config, writer: LogWriter) -> int:
    loop = asyncio.get_running_loop()
    metrics = Metrics()
    writer.set_drop_counter(metrics.log_lines_dropped.inc)
    handler = config.load_handler()
    client = make_client(config)
    consumer = Consumer(config, handler, metrics, client)
    server = HTTPServer(make_app(consumer, metrics, config), xheaders=False)
    try:
        sockets = bind_sockets(config.port, address=config.bind_address or None, backlog=128)
    except OSError as exc:
        where = f"{config.bind_address or '*'}:{config.port}"
        raise StartError(f"cannot listen on {where}: {exc.strerror or exc}") from None
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    # Health first: /livez answers even while the broker does not.
    server.add_sockets(sockets)
    consumer.start()
    log.info(
        "started",
        extra={
            "fields": {
                "version": __version__,
                "port": config.port,
                "stream": config.stream,
                "group": config.group,
                "consumer": config.consumer_name,
                "concurrency": config.concurrency,
                "handler": config.handler,
            }
        },
    )
    await stop.wait()
    deadline = loop.time() + config.shutdown_timeout
    log.info("stopping: no more fetching", extra={"fields": {"in_flight": consumer.in_flight}})
    unfinished = await consumer.stop(deadline)
    if unfinished:
        log.warning(
            "shutdown timeout: unfinished messages stay pending for the other consumers",
            extra={"fields": {"unfinished": unfinished}},
        )
    server.stop()
    await client.aclose()
    log.info("stopped", extra={"fields": {"unfinished": unfinished}})
    return 0


def main() -> int:
    try:
        config = load(os.environ)
        config.load_handler()
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
