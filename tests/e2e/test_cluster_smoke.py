"""The cluster is real: pods run, probes pass, Services route, Pod Security admits or rejects."""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from hack.kubetools import binary, kubectl, kubectl_json

RESTRICTED = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "runAsUser": 10001,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def _deployment(name: str, image: str) -> dict[str, object]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "automountServiceAccountToken": False,
                    "containers": [
                        {
                            "name": "app",
                            "image": image,
                            "imagePullPolicy": "Never",
                            "ports": [{"name": "http", "containerPort": 8080}],
                            "readinessProbe": {
                                "httpGet": {"path": "/readyz", "port": "http"},
                                "periodSeconds": 1,
                            },
                            "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}},
                            "securityContext": RESTRICTED,
                            "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                        }
                    ],
                    "volumes": [{"name": "tmp", "emptyDir": {}}],
                },
            },
        },
    }


_CLIENT = """
import sys, time, urllib.request
url = "http://hello.{ns}.svc.cluster.local/"
for attempt in range(30):
    try:
        r = urllib.request.urlopen(url, timeout=5)
        print(r.status, r.read().decode())
        break
    except OSError as e:
        print("attempt", attempt, e, flush=True)
        time.sleep(1)
else:
    sys.exit(1)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def hello(namespace: str, template_image: str) -> str:
    kubectl(
        "-n", namespace, "apply", "-f", "-", input=json.dumps(_deployment("hello", template_image))
    )
    kubectl("-n", namespace, "expose", "deployment/hello", "--port=80", "--target-port=http")
    kubectl(
        "-n",
        namespace,
        "wait",
        "--for=condition=Available",
        "deployment/hello",
        "--timeout=120s",
        timeout=130,
    )
    return namespace


def test_deployment_becomes_available_with_passing_readiness_probe(hello: str) -> None:
    pods = kubectl_json("-n", hello, "get", "pods", "-l", "app=hello")["items"]
    assert len(pods) == 1
    status = pods[0]["status"]
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True"
    # The probe really ran: the kubelet's request shows up in the service's own metrics.
    out = kubectl(
        "-n",
        hello,
        "exec",
        pods[0]["metadata"]["name"],
        "--",
        "/opt/venv/bin/python",
        "-c",
        "import urllib.request;print(urllib.request.urlopen('http://127.0.0.1:8080/readyz').status)",
    )
    assert out.stdout.strip() == "200"


def test_cluster_ip_service_routes_from_another_pod(hello: str, template_image: str) -> None:
    client = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "client"},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "containers": [
                {
                    "name": "client",
                    "image": template_image,
                    "imagePullPolicy": "Never",
                    # By DNS name (CoreDNS) and through the ClusterIP (kube-proxy).
                    # A new Service is routed once kube-proxy has synced (about a second
                    # after the pod is Ready), so the client retries briefly, as clients do.
                    "command": ["/opt/venv/bin/python", "-c", _CLIENT.format(ns=hello)],
                    "securityContext": RESTRICTED,
                }
            ],
        },
    }
    kubectl("-n", hello, "apply", "-f", "-", input=json.dumps(client))
    done = kubectl(
        "-n",
        hello,
        "wait",
        "--for=jsonpath={.status.phase}=Succeeded",
        "pod/client",
        "--timeout=90s",
        timeout=100,
        check=False,
    )
    out = kubectl("-n", hello, "logs", "client").stdout
    assert done.returncode == 0, out
    assert out.strip().splitlines()[-1].startswith("200 "), out


def test_port_forward_reaches_the_pod_from_the_host(hello: str, kubeconfig: Path) -> None:
    port = _free_port()
    pf = subprocess.Popen(
        [
            binary("kubectl"),
            "-n",
            hello,
            "port-forward",
            "svc/hello",
            f"{port}:80",
            "--address=127.0.0.1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
                    assert r.status == 200
                    break
            except OSError:
                if time.monotonic() > deadline or pf.poll() is not None:
                    raise
                time.sleep(0.5)
    finally:
        pf.terminate()
        pf.wait(10)


def test_root_pod_is_rejected_under_restricted_pod_security(
    namespace: str, template_image: str
) -> None:
    kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    root_pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "root"},
        "spec": {
            "containers": [
                {"name": "c", "image": template_image, "securityContext": {"runAsUser": 0}}
            ]
        },
    }
    r = kubectl("-n", namespace, "apply", "-f", "-", input=json.dumps(root_pod), check=False)
    assert r.returncode != 0
    assert "violates PodSecurity" in r.stderr and "restricted" in r.stderr


def test_kubectl_top_shows_the_pod(hello: str) -> None:
    deadline = time.monotonic() + 150
    while True:
        r = kubectl("-n", hello, "top", "pod", "-l", "app=hello", "--no-headers", check=False)
        if r.returncode == 0 and r.stdout.strip():
            name, cpu, mem = r.stdout.split()[:3]
            assert name.startswith("hello-") and cpu.endswith("m") and mem.endswith("Mi")
            return
        assert time.monotonic() < deadline, f"kubectl top never showed the pod: {r.stderr}"
        time.sleep(3)
