"""Start, find and stop the cluster's daemons: one pid file and one log per component."""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from hack.paths import Paths


class StartError(RuntimeError):
    """A component did not come up; the message carries its log tail."""


def take_flock(
    f: IO[str],
    path: Path,
    timeout: float,
    *,
    poll: float = 2,
    waiting: Callable[[], None] | None = None,
    error: type[TimeoutError] = TimeoutError,
) -> None:
    """Take an exclusive lock on the open file `f` (at `path`), polling every `poll` seconds;
    `waiting` is called once if it must wait, `error` raised after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    told = False
    while True:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise error(f"{path} stayed locked for {timeout:.0f}s") from None
            if waiting is not None and not told:
                waiting()
                told = True
            time.sleep(poll)


def pid_of(p: Paths, name: str) -> int | None:
    pidfile = p.run / f"{name}.pid"
    try:
        pid = int(pidfile.read_text())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    return pid


def log_tail(p: Paths, name: str, lines: int = 25) -> str:
    try:
        text = (p.logs / f"{name}.log").read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def start(p: Paths, name: str, argv: list[str], env: dict[str, str] | None = None) -> int:
    """Start a daemon detached from this process, so it outlives `up`."""
    running = pid_of(p, name)
    if running:
        return running
    p.logs.mkdir(parents=True, exist_ok=True)
    p.run.mkdir(parents=True, exist_ok=True)
    with open(p.logs / f"{name}.log", "ab") as log:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
    (p.run / f"{name}.pid").write_text(str(proc.pid))
    return proc.pid


def wait_until(p: Paths, name: str, ready: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `ready` until it holds; fail fast with the log tail if the process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pid_of(p, name) is None:
            raise StartError(
                f"{name} exited while waiting for {what}. Log tail:\n{log_tail(p, name)}"
            )
        try:
            if ready():
                return
        except Exception:
            pass
        time.sleep(0.25)
    raise StartError(
        f"{name}: {what} not reached in {timeout:.0f}s. Log tail:\n{log_tail(p, name)}"
    )


def stop(p: Paths, name: str, grace: float = 10) -> bool:
    """SIGTERM, then SIGKILL after `grace`; return whether something was running."""
    pid = pid_of(p, name)
    with contextlib.suppress(FileNotFoundError):
        (p.run / f"{name}.pid").unlink()
    if pid is None:
        return False
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        # Reap if it happens to be our child.
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    return True


def run(argv: list[str], check: bool = True, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=check, capture_output=True, text=True, **kw)  # type: ignore[call-overload,no-any-return]


def path_exists(path: Path) -> Callable[[], bool]:
    return path.exists
