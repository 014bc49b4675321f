"""kubectl and helm for the dev tooling and the tests: the project's own builds, the install,
wait and port-forward steps the demo and the chart's e2e tests share, and the e2e lock and the
pause of other operators that every run of an operator against the shared cluster takes (the
e2e tests and the benchmarks).

Nothing here imports pytest or the tests; the tests import this module.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from hack import procs
from hack.paths import REPO, paths

CHART = REPO / "charts" / "tornado-operator"
CRD_FILES = sorted((CHART / "files" / "crds").glob("*.yaml"))
RESTRICTED_LABELS = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
}


def binary(name: str) -> str:
    """The project's build of `name` when it exists, else the one on PATH."""
    built = paths().bin / name
    if built.is_file() and os.access(built, os.X_OK):
        return str(built)
    found = shutil.which(name)
    if not found:
        raise FileNotFoundError(
            f"{name} not found: run `make prereqs` to build it into {paths().bin}, or install it"
        )
    return found


def kubectl(
    *args: str,
    check: bool = True,
    input: str | None = None,
    timeout: float = 120,
    kubeconfig: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run kubectl against $KUBECONFIG (or `kubeconfig`); raise with its stderr on failure."""
    env = dict(os.environ)
    if kubeconfig is not None:
        env["KUBECONFIG"] = str(kubeconfig)
    proc = subprocess.run(
        [binary("kubectl"), *args],
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )
    if check and proc.returncode != 0:
        raise RuntimeError(
            f"kubectl {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}"
        )
    return proc


def kubectl_json(*args: str, **kwargs: Any) -> Any:
    return json.loads(kubectl(*args, "-o", "json", **kwargs).stdout)


def helm(
    *args: str, check: bool = True, timeout: float = 600, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the project's helm (the cache build, else PATH) against $KUBECONFIG."""
    proc = subprocess.run(
        [binary("helm"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input,
        env=dict(os.environ),
        check=False,
    )
    if check and proc.returncode != 0:
        raise RuntimeError(
            f"helm {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


def value_args(values_files: Iterable[Path] = (), set_values: Iterable[str] = ()) -> list[str]:
    args: list[str] = []
    for f in values_files:
        args += ["-f", str(f)]
    for s in set_values:
        args += ["--set", s]
    return args


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


# ---------------------------------------------------------------- one operator at a time

E2E_LOCK = Path(tempfile.gettempdir()) / "tornado-operator-e2e.lock"
OPERATOR_SELECTOR = (
    "app.kubernetes.io/part-of=tornado-operator,app.kubernetes.io/component=operator"
)


class LockTimeout(TimeoutError):
    """The e2e lock stayed held by someone else for longer than the caller would wait."""


_held = 0  # how deep this process is inside operator_lock: it is re-entrant within a process


@contextlib.contextmanager
def operator_lock(timeout: float = 1800) -> Iterator[None]:
    """Held while a test or a benchmark runs an operator in the shared cluster.

    Two operators watching the same TornadoServices would fight over them, so every run that
    starts one (the chart's e2e, the operator's e2e, the benchmarks) takes this lock first, a
    file lock that other processes see. Within one process it is re-entrant: the operator's e2e
    tests hold it for a module, and the chart's module fixture inside the same session takes it
    again without waiting for itself.
    """
    global _held
    if _held:
        _held += 1
        try:
            yield
        finally:
            _held -= 1
        return
    with open(E2E_LOCK, "w") as f:
        procs.take_flock(f, E2E_LOCK, timeout, error=LockTimeout)
        _held = 1
        try:
            yield
        finally:
            _held = 0
            fcntl.flock(f, fcntl.LOCK_UN)


@contextlib.contextmanager
def other_operators_paused(
    release: str = "",
    *,
    kubeconfig: Path | None = None,
    log: Callable[[str], None] | None = None,
) -> Iterator[list[str]]:
    """Scale every chart-installed operator but `release`'s (e.g. `make demo`'s) to 0, wait until
    their pods are gone, and scale them back at the end.

    A second operator watching the same namespaces would reconcile the same TornadoServices.
    Yields the paused Deployments as "namespace/name".
    """
    kw: dict[str, Any] = {"kubeconfig": kubeconfig}
    paused: list[tuple[str, str, int]] = []
    for dep in kubectl_json("get", "deployments", "-A", "-l", OPERATOR_SELECTOR, **kw)["items"]:
        meta, replicas = dep["metadata"], dep["spec"].get("replicas", 1)
        if meta["labels"].get("app.kubernetes.io/instance") == release or not replicas:
            continue
        kubectl(
            "-n", meta["namespace"], "scale", f"deployment/{meta['name']}", "--replicas=0", **kw
        )
        paused.append((meta["namespace"], meta["name"], replicas))
        if log:
            log(f"paused operator {meta['namespace']}/{meta['name']} ({replicas} replicas)")
    try:
        for dep in kubectl_json("get", "deployments", "-A", "-l", OPERATOR_SELECTOR, **kw)["items"]:
            meta = dep["metadata"]
            if (meta["namespace"], meta["name"]) not in {(ns, n) for ns, n, _ in paused}:
                continue
            pods = ",".join(f"{k}={v}" for k, v in dep["spec"]["selector"]["matchLabels"].items())
            kubectl(
                "-n", meta["namespace"], "wait", "--for=delete", "pod", "-l", pods,
                "--timeout=60s", check=False, timeout=70, **kw,
            )  # fmt: skip
        yield [f"{ns}/{name}" for ns, name, _ in paused]
    finally:
        for ns, name, replicas in paused:
            kubectl(
                "-n", ns, "scale", f"deployment/{name}", f"--replicas={replicas}", check=False, **kw
            )
            if log:
                log(f"restored operator {ns}/{name} to {replicas} replicas")
