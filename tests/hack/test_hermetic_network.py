"""The local cluster's network is hermetic: a wrong host or port fails inside the machine.

Nothing here can send a packet out of the machine when the rules are missing: the first thing
each test does is check that the rules are in place, and it fails without sending anything if
they are not. Only then does it make its few connection attempts, each one alone (no loop), to a
Service IP of this cluster on a port that Service does not serve: without the rules such a
packet would leave through the default route. In-cluster traffic (a pod calling a Service by its
DNS name) still works.
"""

from __future__ import annotations

import inspect
import ipaddress
import json
import socket
import time
from pathlib import Path

import pytest

from hack import procs
from hack.cluster import hermetic, local
from hack.kubetools import kubectl, kubectl_json
from hack.paths import SERVICE_CIDR, paths
from tests.e2e.incluster import CONNECT_ONCE, GET_ONCE, RESTRICTED, client_pod, run_python

UNSERVED_PORT = 9  # discard: the test's Service serves 80 only
FAST = 2.0  # seconds: a local reset, not a time-out or an answer from afar


def _require_rules() -> None:
    """Fail, before anything is sent, unless every hermetic rule is in place."""
    found = hermetic.problems(before=local.FORWARD_RULES)
    if found:
        pytest.fail(
            "the hermetic network rules are not in place, so this test sends nothing: "
            f"{'; '.join(found)}. `python -m hack.cluster up` adds them to a running cluster."
        )


@pytest.fixture
def local_cluster(kubeconfig: Path) -> None:
    if kubeconfig != paths().kubeconfig:
        pytest.skip("the cluster in use is not the project's local cluster (the rules are its own)")
    _require_rules()


def _service_rules(ip: str) -> list[str]:
    """kube-proxy's nat rules that translate traffic to `ip` (read from the ruleset only)."""
    dump = procs.run(["iptables-save", "-t", "nat"]).stdout
    return [ln for ln in dump.splitlines() if f"-d {ip}/32" in ln and "KUBE-SVC" in ln]


def _server(namespace: str, image: str) -> str:
    labels = {"app": "hello"}
    dep = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "hello"},
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
    kubectl("-n", namespace, "apply", "-f", "-", input=json.dumps(dep))
    kubectl("-n", namespace, "expose", "deployment/hello", "--port=80", "--target-port=http")
    kubectl(
        "-n", namespace, "wait", "--for=condition=Available", "deployment/hello",
        "--timeout=120s", timeout=130,
    )  # fmt: skip
    ip = str(kubectl_json("-n", namespace, "get", "service", "hello")["spec"]["clusterIP"])
    # kube-proxy has the Service's rules (port 80) before anything is sent to it, and none for
    # the port the test will try.
    deadline = time.monotonic() + 30
    while not _service_rules(ip):
        assert time.monotonic() < deadline, f"kube-proxy never programmed {ip}"
        time.sleep(0.5)
    rules = _service_rules(ip)
    assert all("--dport 80" in r for r in rules), rules
    assert not any(f"--dport {UNSERVED_PORT}" in r for r in rules), rules
    return ip


def _moved(before: dict[str, int]) -> int:
    after = hermetic.counters()
    return sum(after[r] - before[r] for r in hermetic.SERVICE_PORT_RULES)


def test_wrong_port_fails_inside_the_machine_and_cluster_traffic_works(
    local_cluster: None, namespace: str, template_image: str
) -> None:
    ip = _server(namespace, template_image)
    assert ipaddress.ip_address(ip) in ipaddress.ip_network(SERVICE_CIDR), ip
    client = client_pod(namespace, template_image)

    # In-cluster traffic works: by DNS name, through the ClusterIP, one request.
    got = run_python(namespace, client, GET_ONCE, f"http://hello.{namespace}.svc/")
    assert got["status"] == 200, got
    assert json.loads(got["body"]) == {"service": "hello", "message": "Hello, world!"}

    # From a pod: one attempt to the ClusterIP on a port no Service serves.
    _require_rules()
    before = hermetic.counters()
    got = run_python(namespace, client, CONNECT_ONCE, ip, str(UNSERVED_PORT), "10")
    assert got["outcome"] == "ConnectionRefusedError", got
    assert got["seconds"] < FAST, got
    assert _moved(before) >= 1, "the pod's attempt did not meet the hermetic rule"

    # From the node: one attempt, the same.
    _require_rules()
    before = hermetic.counters()
    t0 = time.monotonic()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((ip, UNSERVED_PORT), timeout=10).close()
    assert time.monotonic() - t0 < FAST
    assert _moved(before) >= 1, "the node's attempt did not meet the hermetic rule"


def test_rules_come_and_go_with_the_functions_up_and_down_use(local_cluster: None) -> None:
    # A second copy under another name: the same rules, so the live ones stay as they are.
    scratch = "TORNADO-HERMETIC-T"
    try:
        assert hermetic.ensure(scratch, before=local.FORWARD_RULES) is True
        assert hermetic.problems(scratch, before=local.FORWARD_RULES) == []
        assert hermetic.ensure(scratch, before=local.FORWARD_RULES) is False  # idempotent
        assert set(hermetic.counters(scratch)) == {r.name for r in hermetic.RULES}
    finally:
        hermetic.remove(scratch)
    assert hermetic.problems(scratch) == [
        f"chain {scratch} is missing",
        f"no jump from FORWARD to {scratch}",
        f"no jump from OUTPUT to {scratch}",
    ]
    assert hermetic.problems(before=local.FORWARD_RULES) == [], "the live rules were touched"
    # `up` (also when already up) puts them in place, `down` takes them away.
    assert "hermetic.ensure(before=FORWARD_RULES)" in inspect.getsource(local.up)
    assert "hermetic.ensure(before=FORWARD_RULES)" in inspect.getsource(local._prepare_host)
    assert "hermetic.remove()" in inspect.getsource(local.down)
