"""The routes. A new endpoint is a handler in handlers.py and a line here."""

from __future__ import annotations

from tornado.web import RequestHandler

from hello import handlers
from hello.handlers import ServiceApplication, ServiceContext


def _no_access_log(handler: RequestHandler) -> None:
    """Tornado's own access log is replaced by the JSON line each handler writes."""


def make_app(ctx: ServiceContext) -> ServiceApplication:
    return ServiceApplication(
        ctx,
        [
            (r"/", handlers.HelloHandler),
            (r"/compose", handlers.ComposeHandler),
            (r"/livez", handlers.LivezHandler),
            (r"/readyz", handlers.ReadyzHandler),
            (r"/startupz", handlers.StartupzHandler),
            (r"/metrics", handlers.MetricsHandler),
        ],
        default_handler_class=handlers.NotFoundHandler,
        log_function=_no_access_log,
        # Production settings, spelled out: no reloading, no tracebacks to clients.
        debug=False,
        autoreload=False,
        serve_traceback=False,
        compress_response=False,
    )
