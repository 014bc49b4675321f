"""Cluster-side helpers only the chart's e2e tests use: the e2e lock, pausing operators, can-i.

What the demo shares with them (install, wait, port-forward) is in hack.kubetools.
"""

from __future__ import annotations

import contextlib
import fcntl
import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hack.kubetools import helm, kubectl, kubectl_json

TSVC = "tornadoservices.tornado-operator.dev"


_held = 0  # how deep this process is inside operator_lock: it is re-entrant within a process


@contextlib.contextmanager
def operator_lock(timeout: float = 1800) -> Iterator[None]:
    """Held while a test runs a cluster-wide operator in the shared cluster.

    Two operators watching the same TornadoServices would fight over them, so every test session
    that starts one (this chart's e2e, the operator's e2e) takes this lock first. Within one
    process it is re-entrant: the operator's e2e tests hold it for the session, and the chart's
    module fixture inside the same session takes it again without waiting for itself.
    """
    global _held
    if _held:
        _held += 1
        try:
            yield
        finally:
            _held -= 1
        return
    path = Path(tempfile.gettempdir()) / "tornado-operator-e2e.lock"
    with open(path, "w") as f:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{path} stayed locked for {timeout}s") from None
                time.sleep(2)
        _held = 1
        try:
            yield
        finally:
            _held = 0
            fcntl.flock(f, fcntl.LOCK_UN)


@contextlib.contextmanager
def other_operators_paused(release: str) -> Iterator[list[str]]:
    """Scale every other chart-installed operator (e.g. `make demo`'s) to 0 for a while, then back.

    A second operator watching the same namespaces would reconcile the tests' TornadoServices too.
    """
    selector = "app.kubernetes.io/part-of=tornado-operator,app.kubernetes.io/component=operator"
    paused: list[tuple[str, str, int]] = []
    for dep in kubectl_json("get", "deployments", "-A", "-l", selector)["items"]:
        meta, replicas = dep["metadata"], dep["spec"].get("replicas", 1)
        if meta["labels"].get("app.kubernetes.io/instance") == release or not replicas:
            continue
        kubectl("-n", meta["namespace"], "scale", f"deployment/{meta['name']}", "--replicas=0")
        paused.append((meta["namespace"], meta["name"], replicas))
    try:
        for dep in kubectl_json("get", "deployments", "-A", "-l", selector)["items"]:
            meta = dep["metadata"]
            if (meta["namespace"], meta["name"]) not in {(ns, n) for ns, n, _ in paused}:
                continue
            pods = ",".join(f"{k}={v}" for k, v in dep["spec"]["selector"]["matchLabels"].items())
            kubectl(
                "-n", meta["namespace"], "wait", "--for=delete", "pod", "-l", pods,
                "--timeout=60s", check=False, timeout=70,
            )  # fmt: skip
        yield [f"{ns}/{name}" for ns, name, _ in paused]
    finally:
        for ns, name, replicas in paused:
            kubectl("-n", ns, "scale", f"deployment/{name}", f"--replicas={replicas}", check=False)


def owned(namespace: str, uid: str, kinds: str = "deployments,services,hpa,pdb") -> list[Any]:
    """Objects in `namespace` whose owner references name `uid`."""
    items = kubectl_json("-n", namespace, "get", kinds)["items"]
    return [
        o
        for o in items
        if any(ref["uid"] == uid for ref in o["metadata"].get("ownerReferences", []))
    ]


_CAN_I = re.compile(r"^(\S*)\s+(\[[^\]]*\])\s+(\[[^\]]*\])\s+(\[[^\]]*\])\s*$")


def can_i_list(user: str, namespace: str) -> set[str]:
    """`kubectl auth can-i --list` as "resource verb" / "url verb" strings, one per verb."""
    out = kubectl("auth", "can-i", "--list", f"--as={user}", "-n", namespace).stdout
    rights: set[str] = set()
    for line in out.splitlines()[1:]:
        if not line.strip():
            continue
        m = _CAN_I.match(line)
        if not m:
            raise ValueError(f"unexpected `kubectl auth can-i --list` line: {line!r}")
        resource, urls, names, verbs = m.groups()
        if names != "[]":
            resource = f"{resource}{names}"
        targets = [resource] if resource else urls.strip("[]").split()
        for target in targets:
            for verb in verbs.strip("[]").split():
                rights.add(f"{target} {verb}")
    return rights


def helm_test(release: str, namespace: str, fullname: str) -> str:
    """Run `helm test`; on failure, fail with helm's output and the test pod's log."""
    r = helm("test", release, "-n", namespace, "--timeout", "6m", check=False, timeout=420)
    if r.returncode != 0:
        logs = kubectl("-n", namespace, "logs", f"{fullname}-test", check=False)
        pytest.fail(f"helm test failed:\n{r.stdout}\n{r.stderr}\npod log:\n{logs.stdout}")
    assert "Phase:          Succeeded" in r.stdout, r.stdout
    return r.stdout
