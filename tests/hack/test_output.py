"""`make help` lists every target in sections; a step is one line, its output goes to a log."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hack.paths import REPO
from hack.steps import Steps, elapsed

STEP_LINE = re.compile(r"^\[(\S+ )?\d+/\d+\] .+ \(.+\) \.\.\. (done in \d+(s|m \d\ds)|FAILED.*)$")


@pytest.mark.skipif(not shutil.which("make"), reason="needs make")
def test_make_help_lists_every_target_in_sections() -> None:
    makefile = (REPO / "Makefile").read_text()
    phony = re.search(r"^\.PHONY:((?:.*\\\n)*.*)$", makefile, re.M)
    assert phony
    targets = phony.group(1).replace("\\\n", " ").split()
    out = subprocess.run(
        ["make", "-s", "--no-print-directory", "help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    listed = re.findall(r"^  make (\S+) +\S", out, re.M)
    assert sorted(listed) == sorted(targets)
    sections = [line for line in out.splitlines() if line and not line.startswith(" ")]
    assert len(sections) >= 3, out
    assert listed[:2] == ["demo", "demo-down"], "the first section starts with the demo"


def test_a_python_step_is_one_line_and_its_output_goes_to_the_log(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    steps = Steps("t", 2, logs=tmp_path)

    def noisy() -> int:
        print("from python")
        subprocess.run([sys.executable, "-c", "import sys; print('from a child', file=sys.stderr)"])
        return 7

    assert steps.run("noisy", "a noisy step", "about 1 s", noisy) == 7
    out = capfd.readouterr()
    assert out.err == ""
    assert out.out.splitlines() == [out.out.strip()] and STEP_LINE.match(out.out.strip())
    assert out.out.startswith("[t 1/2] a noisy step (about 1 s) ... done in ")
    assert (tmp_path / "t-noisy.log").read_text().split() == [
        "from",
        "python",
        "from",
        "a",
        "child",
    ]


def test_a_failed_python_step_shows_the_log_tail_and_exits_1(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    steps = Steps("t", 1, logs=tmp_path)

    def failing() -> None:
        for i in range(40):
            print(f"line {i}")
        raise RuntimeError("it broke")

    with pytest.raises(SystemExit) as exc:
        steps.run("failing", "a failing step", "about 1 s", failing)
    assert exc.value.code == 1
    lines = capfd.readouterr().out.splitlines()
    log = tmp_path / "t-failing.log"
    assert (
        lines[0] == "[t 1/1] a failing step (about 1 s) ... FAILED after 0s: RuntimeError: it broke"
    )
    assert lines[1] == f"--- last 30 lines of {log}:"
    assert lines[-2] == "RuntimeError: it broke" and lines[-1] == f"--- full log: {log}"
    assert "line 0" in log.read_text() and "line 0" not in lines


def test_shell_steps_number_log_and_stop_at_the_first_failure(tmp_path: Path) -> None:
    script = f"""
        set -euo pipefail
        STEP_LOGS={tmp_path} STEP_PHASE=p STEP_TOTAL=3
        . {REPO / "hack" / "steps.sh"}
        ok() {{ echo noise; }}
        broken() {{ echo before; false; echo after; }}
        step_skip "cached thing" cached
        step_run ok "an ok step" "about 1 s" ok
        step_run broken "a broken step" "about 1 s" broken
        echo unreachable
    """
    r = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=False)
    lines = r.stdout.splitlines()
    assert r.returncode == 1
    assert lines[0] == "[p 1/3] cached thing: cached"
    assert re.fullmatch(r"\[p 2/3\] an ok step \(about 1 s\) \.\.\. done in \ds", lines[1])
    assert lines[2] == "[p 3/3] a broken step (about 1 s) ... FAILED after 0s (exit 1)"
    log = tmp_path / "broken.log"
    assert lines[3:] == [f"--- last 30 lines of {log}:", "before", f"--- full log: {log}"]
    assert (tmp_path / "ok.log").read_text() == "noise\n"


def test_elapsed() -> None:
    assert [elapsed(s) for s in (0, 59.9, 60, 754)] == ["0s", "59s", "1m 00s", "12m 34s"]
