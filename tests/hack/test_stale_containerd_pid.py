"""dockerd's containerd pid file is removed before dockerd starts when that pid is no containerd."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from hack import images


def test_a_pid_that_is_not_containerd_is_stale(tmp_path: Path) -> None:
    pid_file = tmp_path / "containerd.pid"
    pid_file.write_text(str(os.getpid()))  # this Python: alive, not containerd
    assert images._clear_stale_containerd_pid(pid_file)
    assert not pid_file.exists()


def test_a_dead_pid_is_stale(tmp_path: Path) -> None:
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True, timeout=30)  # fmt: skip
    pid_file = tmp_path / "containerd.pid"
    pid_file.write_text(child.stdout.strip())
    assert images._clear_stale_containerd_pid(pid_file) and not pid_file.exists()


def test_a_running_containerd_and_a_missing_file_are_left_alone(tmp_path: Path) -> None:
    pid_file = tmp_path / "containerd.pid"
    assert not images._clear_stale_containerd_pid(pid_file)
    # A containerd of its own would need root and a socket; any process named containerd will do.
    exe = tmp_path / "containerd"
    shutil.copy2("/bin/sleep", exe)
    proc = subprocess.Popen([str(exe), "30"])
    try:
        comm = Path(f"/proc/{proc.pid}/comm")
        deadline = time.monotonic() + 10  # until the child has exec'd (bounded)
        while comm.read_text().strip() != "containerd" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert comm.read_text().strip() == "containerd"
        pid_file.write_text(f"{proc.pid}\n")
        assert not images._clear_stale_containerd_pid(pid_file) and pid_file.exists()
    finally:
        proc.kill()
        proc.wait(10)
