"""`up --fake-nodes N`: kwok's nodes take the pods that ask for them, and only those."""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from hack.cluster import fakenodes
from hack.kubetools import kubectl, kubectl_json
from hack.paths import NODE_NAME, PAUSE_IMAGE, REPO, paths


def _up_fake_nodes(n: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hack.cluster", "up", "--provider", "local", "--fake-nodes", str(n)],
        cwd=REPO, capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip


def _pods(namespace: str, selector: str) -> list[dict[str, Any]]:
    return list(kubectl_json("-n", namespace, "get", "pods", "-l", selector)["items"])


def _ready(pod: dict[str, Any]) -> bool:
    conds = (pod.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)


def _wait(what: str, check: Any, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached in {timeout:.0f}s")
        time.sleep(0.5)


def test_fake_nodes_take_only_the_pods_that_ask(kubeconfig: Path, namespace: str) -> None:
    p = paths()
    if kubeconfig != p.kubeconfig:
        pytest.skip("the cluster in use is not the project's local cluster")
    r = _up_fake_nodes(2)
    assert r.returncode == 0, r.stderr
    assert fakenodes.pid(p) is not None
    again = _up_fake_nodes(2)  # idempotent: kwok keeps running, no node is created twice
    assert again.returncode == 0, again.stderr
    assert "(0 created)" in again.stdout
    nodes = fakenodes.fake_nodes(p)
    assert {"kwok-node-0", "kwok-node-1"} <= {n for n, ready in nodes.items() if ready}

    status = subprocess.run(
        [sys.executable, "-m", "hack.cluster", "status"],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert f"kwok                       running, pid {fakenodes.pid(p)}" in status.stdout
    assert "fake nodes:" in status.stdout

    fake = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "on-fake", "namespace": namespace},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "on-fake"}},
            "template": {
                "metadata": {"labels": {"app": "on-fake"}},
                "spec": {
                    "nodeSelector": fakenodes.FAKE_NODE_SELECTOR,
                    "tolerations": fakenodes.FAKE_NODE_TOLERATIONS,
                    "containers": [{"name": "app", "image": "never-pulled.invalid/app:1"}],
                },
            },
        },
    }
    real = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "on-real", "namespace": namespace, "labels": {"app": "on-real"}},
        "spec": {
            "containers": [
                {"name": "app", "image": PAUSE_IMAGE, "imagePullPolicy": "IfNotPresent"}
            ],
        },
    }
    kubectl(
        "apply",
        "-f",
        "-",
        input=json.dumps({"kind": "List", "apiVersion": "v1", "items": [fake, real]}),
    )

    def three_ready() -> list[dict[str, Any]] | None:
        pods = _pods(namespace, "app=on-fake")
        return pods if len(pods) == 3 and all(_ready(x) for x in pods) else None

    pods = _wait("3 Ready pods on fake nodes", three_ready)
    fake_net = ipaddress.ip_network(fakenodes.FAKE_POD_CIDR)
    for pod in pods:
        assert pod["spec"]["nodeName"].startswith(fakenodes.NODE_PREFIX), pod["spec"]
        assert ipaddress.ip_address(pod["status"]["podIP"]) in fake_net

    def running() -> dict[str, Any] | None:
        pods = _pods(namespace, "app=on-real")
        return pods[0] if pods and pods[0]["status"].get("phase") == "Running" else None

    on_real = _wait("the plain pod Running", running)
    assert on_real["spec"]["nodeName"] == NODE_NAME
    kubectl("-n", namespace, "delete", "deployment/on-fake", "pod/on-real", "--wait=false")
    _wait("the fake pods gone", lambda: not _pods(namespace, "app=on-fake"))
