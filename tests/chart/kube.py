"""Cluster-side helpers for the chart's e2e tests and the demo: install, port-forward, can-i."""

from __future__ import annotations

import contextlib
import fcntl
import re
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.chart.helm import CHART, CRD_FILES, helm, value_args
from tests.cluster.kube import binary, kubectl, kubectl_json

TSVC = "tornadoservices.tornado-operator.dev"
RESTRICTED_LABELS = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
}


@contextlib.contextmanager
def operator_lock(timeout: float = 1800) -> Iterator[None]:
    """Held while a test runs a cluster-wide operator in the shared cluster.

    Two operators watching the same TornadoServices would fight over them, so every test session
    that starts one (this chart's e2e, the operator's e2e) takes this lock first.
    """
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
        try:
            yield
        finally:
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


def crd_names() -> list[str]:
    names = []
    for f in CRD_FILES:
        names += re.findall(r"(?m)^  name: (\S+)$", f.read_text())
    return names


def ensure_namespace(name: str, labels: dict[str, str] | None = None) -> None:
    kubectl("create", "namespace", name, check=False)
    if labels:
        kubectl("label", "--overwrite", "namespace", name, *[f"{k}={v}" for k, v in labels.items()])


def adopt_crds(release: str, namespace: str) -> None:
    """Hand CRDs already in the cluster to `release`, as Helm requires before it manages them.

    They may come from another release (the keep policy leaves them behind) or from `kubectl apply`.
    This is the documented way to adopt existing objects into a release.
    """
    for name in crd_names():
        if kubectl("get", "crd", name, check=False).returncode != 0:
            continue
        kubectl("label", "--overwrite", "crd", name, "app.kubernetes.io/managed-by=Helm")
        kubectl(
            "annotate",
            "--overwrite",
            "crd",
            name,
            f"meta.helm.sh/release-name={release}",
            f"meta.helm.sh/release-namespace={namespace}",
        )


def install(
    release: str,
    namespace: str,
    set_values: Sequence[str] = (),
    values_files: Sequence[Path] = (),
    *,
    reuse_values: bool = False,
    timeout: str = "5m",
) -> str:
    """`helm upgrade --install --wait`; returns helm's output (NOTES included)."""
    args = ["upgrade", "--install", release, str(CHART), "-n", namespace, "--wait"]
    args += ["--timeout", timeout]
    if reuse_values:
        args.append("--reuse-values")
    return helm(*args, *value_args(values_files, set_values), timeout=600).stdout


def uninstall(release: str, namespace: str) -> None:
    helm("uninstall", release, "-n", namespace, "--wait", "--ignore-not-found", timeout=300)


def wait_ready(namespace: str, name: str, timeout: int = 240) -> dict[str, Any]:
    r = kubectl(
        "-n",
        namespace,
        "wait",
        "--for=condition=Ready",
        f"tsvc/{name}",
        f"--timeout={timeout}s",
        check=False,
        timeout=timeout + 10,
    )
    obj: dict[str, Any] = kubectl_json("-n", namespace, "get", "tsvc", name)
    if r.returncode != 0:
        raise AssertionError(
            f"TornadoService {namespace}/{name} not Ready: {r.stderr.strip()}\n"
            f"status: {obj.get('status')}"
        )
    return obj


def owned(namespace: str, uid: str, kinds: str = "deployments,services,hpa,pdb") -> list[Any]:
    """Objects in `namespace` whose owner references name `uid`."""
    items = kubectl_json("-n", namespace, "get", kinds)["items"]
    return [
        o
        for o in items
        if any(ref["uid"] == uid for ref in o["metadata"].get("ownerReferences", []))
    ]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def port_forward(namespace: str, target: str, remote_port: int) -> Iterator[str]:
    """`kubectl port-forward` on 127.0.0.1; yields the base URL once it answers."""
    port = free_port()
    proc = subprocess.Popen(
        [
            binary("kubectl"),
            "-n",
            namespace,
            "port-forward",
            target,
            f"{port}:{remote_port}",
            "--address=127.0.0.1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                err = proc.stderr.read() if proc.stderr else ""
                raise RuntimeError(f"port-forward {target} exited: {err}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def get(url: str, timeout: float = 5) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as rsp:
            return rsp.status, rsp.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8", "replace")


def get_until_ok(url: str, timeout: float = 60) -> tuple[int, str]:
    """GET until 2xx (endpoints may trail readiness by a moment); fail with the last error."""
    deadline = time.monotonic() + timeout
    last = "no attempt"
    while time.monotonic() < deadline:
        try:
            status, body = get(url)
            if 200 <= status < 300:
                return status, body
            last = f"HTTP {status}: {body[:200]}"
        except OSError as exc:
            last = repr(exc)
        time.sleep(0.5)
    raise AssertionError(f"GET {url} never answered 2xx in {timeout}s; last: {last}")


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
