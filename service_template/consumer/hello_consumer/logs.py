"""JSON log lines on stdout, written by a thread.

A container's stdout is a pipe to the node's log agent. If the agent stalls, a
write from the event loop would stall every request, so lines go through a
bounded queue to a writer thread; when the queue is full, lines are dropped and
counted rather than blocking.
"""

from __future__ import annotations

import collections
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TextIO

_second = -1
_second_text = ""


def timestamp() -> str:
    """UTC time as 2006-01-02T15:04:05.000Z; the seconds part is formatted once per second."""
    global _second, _second_text
    now = time.time()
    second = int(now)
    if second != _second:
        _second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _second = second
    return f"{_second_text}.{int((now - second) * 1000):03d}Z"


class LogWriter:
    """Writes whole lines to a stream from a background thread, never blocking the caller.

    Callers append to a deque (thread-safe, no lock, no wake-up); the thread collects
    what has piled up every `interval` seconds and writes it in one call. Under load
    that is one write per interval instead of one thread switch per line.
    """

    def __init__(
        self,
        stream: TextIO,
        *,
        max_pending: int = 10000,
        interval: float = 0.05,
        on_drop: Callable[[], None] | None = None,
    ) -> None:
        self._stream = stream
        self._pending: collections.deque[str] = collections.deque()
        self._max_pending = max_pending
        self._interval = interval
        self._on_drop = on_drop
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="log-writer", daemon=True)
        self._thread.start()

    def set_drop_counter(self, on_drop: Callable[[], None]) -> None:
        self._on_drop = on_drop

    def write(self, line: str) -> None:
        if len(self._pending) >= self._max_pending:
            if self._on_drop is not None:
                self._on_drop()
            return
        self._pending.append(line)

    def write_json(self, entry: dict[str, Any]) -> None:
        self.write(json.dumps(entry, default=str, separators=(",", ":")))

    def close(self, timeout: float = 5.0) -> None:
        """Write what is pending, then stop the thread."""
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            stopping = self._stop.wait(self._interval)
            self._flush()
            if stopping:
                return

    def _flush(self) -> None:
        pending = self._pending
        batch = []
        while pending:
            batch.append(pending.popleft())
        if not batch:
            return
        try:
            self._stream.write("\n".join(batch) + "\n")
            self._stream.flush()
        except (OSError, ValueError):
            pass  # stdout is gone; nothing useful can be done with the lines


class JsonLogHandler(logging.Handler):
    """Formats standard `logging` records as JSON lines, so Tornado's own logs match ours.

    Structured fields go in `extra={"fields": {...}}`.
    """

    def __init__(self, writer: LogWriter, service: str) -> None:
        super().__init__()
        self._writer = writer
        self._service = service
        self._formatter = logging.Formatter()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            entry: dict[str, Any] = {
                "time": timestamp(),
                "level": record.levelname.lower(),
                "service": self._service,
                "logger": record.name,
                "msg": record.getMessage(),
            }
            fields = getattr(record, "fields", None)
            if isinstance(fields, dict):
                entry.update(fields)
            if record.exc_info:
                entry["exception"] = self._formatter.formatException(record.exc_info)
            self._writer.write_json(entry)
        except Exception:
            self.handleError(record)


def configure(writer: LogWriter, service: str) -> None:
    """Route all `logging` output (ours and Tornado's) to JSON lines at INFO."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(JsonLogHandler(writer, service))
    root.setLevel(logging.INFO)
    # Access lines are written by the handlers themselves, with the request id.
    logging.getLogger("tornado.access").setLevel(logging.WARNING)
