"""The operator loses its API server for longer than kopf's default retry budget (issue 13).

kopf retries a failed request after 1, 1, 2, 3, 5, 8, 13 and 21 s by default (54 s), then
gives up. A watch starts again by itself, but the peering keep-alive is a task of its own: once
it gives up it never runs again, its record expires, and a standby resumes next to the still
active replica for good (the freeze reported as nolar/kopf#762). The operator retries every
request for about 5 minutes, at most 5 s apart.

Only this operator's connections go through a TCP proxy on the API server's own address (so its
certificate still matches) that the test cuts for 70 s: nobody else using the cluster notices.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.e2e.operator_process import OperatorProcess, create_peering, peers
from tests.e2e.operator_support import apply, get, patch, tornadoservice, wait_for

pytest_plugins = ["tests.e2e.operator_fixtures"]

PEERING = "tornado-operator-outage"
EDIT = "OUTAGE_EDIT"
OUTAGE = 70.0  # seconds: longer than kopf's default 54 s of retries
# After the API is back: the next retry (at most 5 s later), a re-list and one reconcile.
RECOVERY_BOUND = 15.0


class CuttableProxy:
    """A TCP proxy to (host, port), listening on host: `cut()` closes every connection and the
    listener, so connecting is refused as with a dead API server; `restore()` listens again."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.host = host
        self.port = 0
        self.lock = threading.Lock()
        self.sockets: set[socket.socket] = set()
        self.listener: socket.socket | None = None
        self.restore()

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self.listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed by cut()
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self.lock:
                self.sockets |= {client, upstream}
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        assert self.listener is not None
        self.listener.close()
        self.listener = None
        with self.lock:
            for s in self.sockets:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
            self.sockets.clear()


@pytest.fixture
def proxied_kubeconfig(kubeconfig: Path, tmp_path: Path) -> Iterator[tuple[Path, CuttableProxy]]:
    """A copy of the kubeconfig whose server is the proxy; deleted afterwards (it holds the
    credentials)."""
    cfg = yaml.safe_load(kubeconfig.read_text())
    ctx = next(c["context"] for c in cfg["contexts"] if c["name"] == cfg["current-context"])
    cluster = next(c["cluster"] for c in cfg["clusters"] if c["name"] == ctx["cluster"])
    url = urllib.parse.urlsplit(cluster["server"])
    assert url.hostname and url.port, cluster["server"]
    try:
        proxy = CuttableProxy(url.hostname, url.port)
    except OSError as exc:  # the API server's address is not one of this host's
        pytest.skip(f"cannot listen on the API server's address {url.hostname}: {exc}")
    cluster["server"] = f"https://{url.hostname}:{proxy.port}"
    path = tmp_path / "kubeconfig"
    path.touch(mode=0o600)
    path.write_text(yaml.safe_dump(cfg))
    try:
        yield path, proxy
    finally:
        path.unlink()
        with contextlib.suppress(AssertionError):
            proxy.cut()


def _edit(ns: str, name: str, value: str) -> None:
    patch("tornadoservice", name, ns, {"spec": {"env": [{"name": EDIT, "value": value}]}})


def _converged(ns: str, name: str, value: str) -> bool:
    obj, dep = get("tornadoservice", name, ns), get("deployment", name, ns)
    if not obj or not dep:
        return False
    if (obj.get("status") or {}).get("observedGeneration") != obj["metadata"]["generation"]:
        return False
    env = dep["spec"]["template"]["spec"]["containers"][0].get("env") or []
    return {"name": EDIT, "value": value} in env


def test_operator_outlives_70s_without_its_api(
    namespace: str,
    operator_crds: None,
    proxied_kubeconfig: tuple[Path, CuttableProxy],
    tmp_path: Path,
) -> None:
    ns, (kubeconfig, proxy) = namespace, proxied_kubeconfig
    create_peering(ns, PEERING)
    op = OperatorProcess(
        ns, PEERING, tmp_path / "operator.log", env={"KUBECONFIG": str(kubeconfig)}
    )
    try:
        wait_for("operator healthy", op.healthy, 60)
        wait_for("operator active", op.is_active, 30)
        apply(tornadoservice("outage", replicas=0, env=[{"name": EDIT, "value": "0"}]), ns)
        wait_for("outage converged", lambda: _converged(ns, "outage", "0"), 60, 0.5)

        proxy.cut()
        cut = time.monotonic()
        _edit(ns, "outage", "1")  # the test's own connection is not cut: a change meanwhile
        while time.monotonic() - cut < OUTAGE:
            assert op.proc.poll() is None, "the operator exited without its API"
            time.sleep(1)
        lastseen = peers(ns, PEERING)[op.identity]["lastseen"]
        proxy.restore()
        back = time.monotonic()

        wait_for("the edit made meanwhile", lambda: _converged(ns, "outage", "1"), 60, 0.5)
        recovered = time.monotonic() - back
        _edit(ns, "outage", "2")
        wait_for("an edit after", lambda: _converged(ns, "outage", "2"), 30, 0.5)
        # The keep-alive still runs: kopf did not give it up during the outage. (Its record may
        # be missing a moment: kopf deletes records it finds expired, its own too, and the next
        # keep-alive writes it again.)
        wait_for(
            "a keep-alive after the outage",
            lambda: (r := peers(ns, PEERING).get(op.identity)) and r["lastseen"] != lastseen,
            15,
            0.5,
        )
        print(
            f"API cut for {OUTAGE:.0f}s: the edit made meanwhile converged {recovered:.1f}s after"
        )
        assert recovered <= RECOVERY_BOUND
        text = op.text()
        assert "has failed" not in text and "Traceback" not in text, text[-3000:]
        assert op.proc.poll() is None and op.is_active()
    finally:
        op.stop()
        print(f"--- operator log (exit {op.proc.returncode}) ---\n{op.text()[-6000:]}")
