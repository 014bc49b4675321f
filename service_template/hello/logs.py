"""JSON log lines on stdout, written by a thread.

A container's stdout is a pipe to the node's log agent. If the agent stalls, a
write from the event loop would stall every request, so lines go through a
bounded queue to a writer thread; when the queue is full, lines are dropped and
counted rather than blocking.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TextIO

_STOP = object()


def timestamp() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class LogWriter:
    """Writes whole lines to a stream from a background thread, never blocking the caller."""

    def __init__(
        self,
        stream: TextIO,
        *,
        max_pending: int = 10000,
        on_drop: Callable[[], None] | None = None,
    ) -> None:
        self._stream = stream
        self._queue: queue.Queue[object] = queue.Queue(maxsize=max_pending)
        self._on_drop = on_drop
        self._thread = threading.Thread(target=self._run, name="log-writer", daemon=True)
        self._thread.start()

    def set_drop_counter(self, on_drop: Callable[[], None]) -> None:
        self._on_drop = on_drop

    def write(self, line: str) -> None:
        try:
            self._queue.put_nowait(line)
        except queue.Full:
            if self._on_drop is not None:
                self._on_drop()

    def write_json(self, entry: dict[str, Any]) -> None:
        self.write(json.dumps(entry, default=str, separators=(",", ":")))

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued, then stop the thread."""
        try:
            self._queue.put(_STOP, timeout=timeout)
        except queue.Full:
            return
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            batch: list[str] = []
            stop = False
            # Write everything already queued in one call: one syscall under load, not one per line.
            while True:
                if item is _STOP:
                    stop = True
                    break
                batch.append(item)  # type: ignore[arg-type]
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            if batch:
                try:
                    self._stream.write("\n".join(batch) + "\n")
                    self._stream.flush()
                except (OSError, ValueError):
                    pass  # stdout is gone; nothing useful can be done with the lines
            if stop:
                return


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
