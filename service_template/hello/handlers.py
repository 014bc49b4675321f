"""Request handlers. Every request is counted, timed, logged once and carries a request id."""

from __future__ import annotations

import itertools
import json
import os
import re
import time
from dataclasses import dataclass
from http.client import responses
from typing import Any, ClassVar

from tornado.httputil import HTTPServerRequest
from tornado.web import Application, RequestHandler

from hello import SERVICE_NAME
from hello.config import Config
from hello.lifecycle import Lifecycle
from hello.logs import LogWriter, timestamp
from hello.metrics import Metrics
from hello.upstreams import UpstreamClient

# Accepted incoming request ids: what common proxies and tracers produce, nothing that
# could break a log line or a header when echoed.
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:/+=@-]{1,128}$")
_json_string = json.encoder.encode_basestring_ascii
_SERVICE_JSON = _json_string(SERVICE_NAME)
# New request ids: a random per-process prefix and a counter, unique across pods
# without a random draw per request.
_ID_PREFIX = os.urandom(8).hex()
_id_counter = itertools.count(1)


def _new_request_id() -> str:
    return f"{_ID_PREFIX}{next(_id_counter):016x}"


@dataclass
class ServiceContext:
    config: Config
    lifecycle: Lifecycle
    metrics: Metrics
    upstreams: UpstreamClient
    log: LogWriter


class ServiceApplication(Application):
    def __init__(self, ctx: ServiceContext, *args: Any, **settings: Any) -> None:
        self.ctx = ctx
        super().__init__(*args, **settings)


class BaseHandler(RequestHandler):
    # The handler label in metrics and logs: a fixed name, never the raw path.
    name: ClassVar[str] = "unmatched"
    # Probe and metrics requests are frequent and uninteresting: not logged by default.
    quiet: ClassVar[bool] = False

    def __init__(
        self, application: ServiceApplication, request: HTTPServerRequest, **kwargs: Any
    ) -> None:
        # Set before RequestHandler.__init__, which already calls set_default_headers().
        self.ctx = application.ctx
        incoming = request.headers.get("X-Request-Id", "")
        self.request_id = incoming if _REQUEST_ID.match(incoming) else _new_request_id()
        super().__init__(application, request, **kwargs)
        self.ctx.lifecycle.request_started()
        self._counted = True

    def set_default_headers(self) -> None:
        self.set_header("X-Request-Id", self.request_id)
        if self.ctx.lifecycle.draining:
            # Tell keep-alive clients to reconnect, so they reach a pod that is staying.
            self.set_header("Connection", "close")

    def compute_etag(self) -> None:
        # Answers are small and dynamic: hashing each one for an ETag is cost without use.
        return None

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        # Never a traceback to the client: the reason and the id to find the log line.
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(
            json.dumps(
                {
                    "error": responses.get(status_code, "Unknown"),
                    "status": status_code,
                    "request_id": self.request_id,
                }
            )
        )

    def on_finish(self) -> None:
        if not self._counted:
            return
        self._counted = False
        ctx = self.ctx
        ctx.lifecycle.request_finished()
        request = self.request
        status = self.get_status()
        seconds = request.request_time()
        ctx.metrics.observe_request(self.name, request.method or "", status, seconds)
        if self.quiet and not ctx.config.log_probes:
            return
        # Built by hand: this line is written for every request, and json.dumps of a
        # dict costs more than the rest of the bookkeeping together. Strings that come
        # from the client are escaped; the request id is already restricted to safe text.
        ctx.log.write(
            f'{{"time":"{timestamp()}","level":"info","service":{_SERVICE_JSON},'
            f'"msg":"request","request_id":"{self.request_id}",'
            f'"method":{_json_string(request.method or "")},'
            f'"path":{_json_string(request.path)},"status":{status},'
            f'"duration_ms":{seconds * 1000:.3f},"remote":{_json_string(request.remote_ip or "")}}}'
        )


class HelloHandler(BaseHandler):
    name = "root"
    _body = json.dumps({"service": SERVICE_NAME, "message": "Hello, world!"}).encode() + b"\n"

    def get(self) -> None:
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.write(self._body)


class LivezHandler(BaseHandler):
    """Liveness: answering at all proves the event loop runs. No dependency is asked."""

    name = "livez"
    quiet = True

    def get(self) -> None:
        self.set_header("Content-Type", "text/plain; charset=UTF-8")
        self.write("ok\n")


class ReadyzHandler(BaseHandler):
    """Readiness: started and not draining.

    Never upstream health: if a shared upstream fails, every pod would turn
    unready together and the whole service would vanish instead of degrading.
    """

    name = "readyz"
    quiet = True

    def get(self) -> None:
        lifecycle = self.ctx.lifecycle
        self.set_header("Content-Type", "text/plain; charset=UTF-8")
        if lifecycle.ready:
            self.write("ready\n")
            return
        self.set_status(503)
        self.write("draining\n" if lifecycle.draining else "starting\n")


class StartupzHandler(BaseHandler):
    """Startup: 200 once start-up has completed, so the slower probes can begin."""

    name = "startupz"
    quiet = True

    def get(self) -> None:
        self.set_header("Content-Type", "text/plain; charset=UTF-8")
        if self.ctx.lifecycle.started:
            self.write("started\n")
            return
        self.set_status(503)
        self.write("starting\n")


class MetricsHandler(BaseHandler):
    name = "metrics"
    quiet = True

    def get(self) -> None:
        self.set_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.write(self.ctx.metrics.exposition())


class ComposeHandler(BaseHandler):
    """Fans out to every configured upstream; answers 200 with green or red per upstream."""

    name = "compose"

    async def get(self) -> None:
        start = time.monotonic()
        results = await self.ctx.upstreams.fan_out(self.request_id)
        green = sum(1 for r in results if r.green)
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.write(
            json.dumps(
                {
                    "service": SERVICE_NAME,
                    "request_id": self.request_id,
                    "duration_ms": round((time.monotonic() - start) * 1000, 1),
                    "green": green,
                    "red": len(results) - green,
                    "upstreams": {r.name: r.as_json() for r in results},
                }
            )
        )


class NotFoundHandler(BaseHandler):
    name = "not_found"

    def prepare(self) -> None:
        self.send_error(404)
