"""One line per step, the step's own output in a log file: the Python side of hack/steps.sh.

    [demo 2/6] building the images (about 3 min cold) ... done in 2m 41s

While a step runs, sys.stdout, sys.stderr and file descriptors 1 and 2 point at its log, so
whatever it prints and whatever its subprocesses print (docker, pip, kind, kubectl) lands there.
On failure the step's line says FAILED, the log's last lines and its path follow, and the program
exits with status 1.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from hack.paths import paths

T = TypeVar("T")
TAIL_LINES = 30


def elapsed(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 60}m {s % 60:02d}s" if s >= 60 else f"{s}s"


@contextlib.contextmanager
def _output_to(log: Path) -> Iterator[None]:
    """Point sys.stdout, sys.stderr and fds 1 and 2 (so every subprocess's output) at `log`."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    # Line-buffered, and sharing one file offset with fds 1 and 2: lines stay in order.
    with open(log, "w", buffering=1) as f:
        os.dup2(f.fileno(), 1)
        os.dup2(f.fileno(), 2)
        try:
            with contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
                yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


class Steps:
    """Numbered steps of one phase ("demo"), logging to $TORNADO_OPERATOR_CACHE/logs/."""

    def __init__(self, phase: str, total: int, logs: Path | None = None) -> None:
        self.phase, self.total, self.done = phase, total, 0
        self.logs = logs or paths().cache / "logs"

    def run(self, name: str, what: str, cold: str, fn: Callable[[], T]) -> T:
        """Run `fn` as the next step; `name` names its log, `cold` is how long it takes cold."""
        self.done += 1
        self.logs.mkdir(parents=True, exist_ok=True)
        log = self.logs / f"{self.phase}-{name}.log"
        print(f"[{self.phase} {self.done}/{self.total}] {what} ({cold}) ... ", end="", flush=True)
        t0 = time.monotonic()
        try:
            with _output_to(log):
                try:
                    result = fn()
                except BaseException:
                    traceback.print_exc()
                    raise
        except (Exception, KeyboardInterrupt) as exc:
            print(f"FAILED after {elapsed(time.monotonic() - t0)}: {_first_line(exc)}")
            lines = log.read_text(errors="replace").splitlines()[-TAIL_LINES:]
            print(
                f"--- last {len(lines)} lines of {log}:", *lines, f"--- full log: {log}", sep="\n"
            )
            raise SystemExit(1) from exc
        print(f"done in {elapsed(time.monotonic() - t0)}", flush=True)
        return result


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
