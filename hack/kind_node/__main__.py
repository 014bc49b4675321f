"""`python -m hack.kind_node build|engine-start|engine-stop|systemd-check`.

- build: the node image in the project's engine (cached; prints the ref)
- engine-start / engine-stop: the project's own dockerd (hack/kind_node/engine.py)
- systemd-check: boot the node image with `docker run --privileged` on that engine and wait
  for `systemctl is-system-running` (the go/no-go of issue 14, without kind)
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

from hack.kind_node import engine, image


def systemd_check(timeout: float = 60) -> int:
    ref = image.ensure()
    name = "tornado-kind-systemd-check"
    engine.docker("rm", "-f", "-v", name, check=False)
    r = engine.docker(
        "run", "-d", "--name", name, "--privileged", "--cgroupns=private",
        "--tmpfs", "/tmp", "--tmpfs", "/run", "--volume", "/var", "--tty", ref,
        check=False,
    )  # fmt: skip
    if r.returncode != 0:
        print(f"docker run --privileged failed: {r.stderr.strip()}", file=sys.stderr)
        return 1
    try:
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            out = engine.docker(
                "exec", name, "systemctl", "is-system-running", check=False, timeout=30
            )
            state = out.stdout.strip()
            if state in ("running", "degraded"):
                break
            time.sleep(1)
        print(f"systemctl is-system-running: {state}")
        if state == "degraded":
            print(engine.docker("exec", name, "systemctl", "--failed", check=False).stdout)
        pid1 = engine.docker("exec", name, "cat", "/proc/1/comm", check=False).stdout.strip()
        print(f"PID 1: {pid1}")
        return 0 if state == "running" and pid1 == "systemd" else 1
    finally:
        engine.docker("rm", "-f", "-v", name, check=False)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hack.kind_node", description=__doc__)
    ap.add_argument("cmd", choices=["build", "engine-start", "engine-stop", "systemd-check"])
    args = ap.parse_args(argv)
    try:
        if args.cmd == "build":
            print(image.ensure())
        elif args.cmd == "engine-start":
            engine.start()
            print(engine.DOCKER_HOST)
        elif args.cmd == "engine-stop":
            engine.stop()
        elif args.cmd == "systemd-check":
            return systemd_check()
    except (RuntimeError, subprocess.CalledProcessError) as e:
        print(f"error: {e}", file=sys.stderr)
        if isinstance(e, subprocess.CalledProcessError):
            print(e.stderr, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
