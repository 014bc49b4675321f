"""benchmarks/consumer_throughput.py runs, small, and writes what it printed (not a
measurement: the numbers of a real run are in the issue's closing note)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.template.support import REPO


def test_the_benchmark_runs_small_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "consumer_throughput.py"),
         "--scale", "0.02", "--timeout", "60", "--out", str(out)],
        capture_output=True, text=True, timeout=240, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads(out.read_text())
    names = [row["name"] for row in data["rows"]]
    assert names == [
        "async no-op",
        "async 50 ms",
        "sync no-op",
        "sync 50 ms",
        "drain, 1 process(es)",
        "drain, 2 process(es)",
        "drain, 4 process(es)",
    ]
    assert all(row["messages_per_second"] > 0 for row in data["rows"])
    assert data["summary"]["async_over_sync_50ms"] > 1
