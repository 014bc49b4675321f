"""The NetworkPolicies of composition, enforced on the real cluster (issue 11).

On the project's local cluster kube-router enforces them (hack/cluster/netpol.py; a cluster that
was started before it existed gets it here, as `up` would); on the project's kind node the same
kube-router runs as a systemd unit (hack/kind_node); on an upstream kindest/node, kindnet does.
Connections are tried from pods, by the Service's DNS name, one attempt each with a 3 s timeout,
repeated at most a bounded number of times while a policy change propagates.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hack.cluster import kind, netpol
from hack.paths import paths
from tests.e2e.incluster import CONNECT_ONCE, GET_ONCE, client_pod, run_python
from tests.e2e.operator_support import (
    apply,
    get,
    http_get,
    kubectl,
    patch,
    tornadoservice,
    wait_for,
    wait_ready,
)

pytest_plugins = ["tests.e2e.operator_fixtures"]

CONNECT_TIMEOUT = "3"


@pytest.fixture(scope="module")
def enforced(kubeconfig: Path) -> None:
    """NetworkPolicies are enforced in the cluster under test."""
    p = paths()
    if kubeconfig == p.kubeconfig:
        netpol.ensure(p)
        assert netpol.synced() and netpol.hermetic_first()
    elif kubeconfig == kind.kubeconfig() and kind.on_project_engine():
        assert not kind.enforcer_problems(), kind.enforcer_problems()


def pod_of(ns: str, name: str) -> str:
    """The one running, current pod of a TornadoService with one replica."""

    def probe() -> str | None:
        dep = get("deployment", name, ns) or {}
        status = dep.get("status") or {}
        if status.get("observedGeneration") != (dep.get("metadata") or {}).get("generation"):
            return None
        if not status.get("updatedReplicas") == status.get("readyReplicas") == 1:
            return None
        data = json.loads(
            kubectl(
                "get", "pods", "-n", ns, "-l", f"app.kubernetes.io/instance={name}", "-o", "json"
            ).stdout
        )
        pods = [p for p in data["items"] if not p["metadata"].get("deletionTimestamp")]
        if len(pods) != 1 or pods[0]["status"].get("phase") != "Running":
            return None
        return str(pods[0]["metadata"]["name"])

    return wait_for(f"one current pod of {name}", probe, 180)


def connect(ns: str, pod: str, host: str, port: int = 80) -> dict[str, Any]:
    return run_python(ns, pod, CONNECT_ONCE, host, str(port), CONNECT_TIMEOUT)


def blocked(result: dict[str, Any]) -> bool:
    """Refused or timed out, within the attempt's bounded wait."""
    return result["outcome"] != "connected" and result["seconds"] <= float(CONNECT_TIMEOUT) + 2


def wait_blocked(ns: str, pod: str, host: str, what: str) -> dict[str, Any]:
    last: dict[str, Any] = {}
    for _ in range(10):  # a policy change reaches kube-router's rules within seconds
        last = connect(ns, pod, host)
        if blocked(last):
            return last
        time.sleep(2)
    pytest.fail(f"{what}: still connects after 10 attempts: {last}")


@pytest.fixture
def ab(operator_ns: str, enforced: None) -> Iterator[str]:
    ns = operator_ns
    apply(tornadoservice("b", replicas=1), ns)
    apply(
        tornadoservice(
            "a", replicas=1, upstreams=[{"name": "b", "service": "b", "timeoutSeconds": 1}]
        ),
        ns,
    )
    wait_ready("b", ns)
    wait_ready("a", ns)
    yield ns


def test_only_declared_callers_reach_b(ab: str, template_image: str) -> None:
    ns = ab
    host = f"b.{ns}.svc"
    a_pod = pod_of(ns, "a")
    # One verified request first, through the API server's proxy: B answers.
    assert json.loads(http_get(ns, "b", "/"))["message"] == "Hello, world!"

    # A reaches B (its caller, allowed by B's policy) once kube-router has put A's new pod into
    # B's allowed set: it does so on the pod's event, a moment after the pod is Ready, and until
    # then B's policy refuses it (CI saw ConnectionRefusedError on the first attempt).
    def a_gets_b() -> dict[str, Any] | None:
        got = run_python(ns, a_pod, GET_ONCE, f"http://{host}/")
        return got if got["status"] == 200 else None

    got = wait_for("A's new pod let in by B's policy", a_gets_b, 30, 2)
    assert "Hello, world!" in got["body"], got
    assert connect(ns, a_pod, host)["outcome"] == "connected"
    # A pod that is no TornadoService calling B, nor in spec.ingress.from, is turned away.
    stranger = client_pod(ns, template_image, name="stranger")
    result = wait_blocked(ns, stranger, host, "a pod not allowed by B's policy")
    assert result["outcome"] in ("ConnectionRefusedError", "TimeoutError", "timeout"), result
    # The node still reaches B (kubelet probes keep B Ready; the API server's proxy answers).
    assert json.loads(http_get(ns, "b", "/"))["message"] == "Hello, world!"
    assert json.loads(http_get(ns, "a", "/compose"))["upstreams"]["b"]["status"] == "green"

    # B allows the stranger's label in spec.ingress.from: now it may connect.
    patch(
        "tornadoservice",
        "b",
        ns,
        {
            "spec": {
                "ingress": {
                    "from": [
                        {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "test-client"}}}
                    ]
                }
            }
        },
    )
    wait_for(
        "the stranger let in by spec.ingress.from",
        lambda: connect(ns, stranger, host)["outcome"] == "connected",
        60,
        2,
    )

    # The upstream removed from A's spec: B's policy loses A, and A's (new) pod is turned away.
    patch("tornadoservice", "a", ns, {"spec": {"upstreams": None}})
    a_pod = pod_of(ns, "a")
    wait_blocked(ns, a_pod, host, "A after its upstream was removed")


def test_egress_is_opt_in_and_limited_to_the_declared_upstreams(
    operator_ns: str, enforced: None
) -> None:
    ns = operator_ns
    anyone = {"from": [{"namespaceSelector": {}}]}  # c's own policy lets every pod in
    apply(tornadoservice("b", replicas=1), ns)
    apply(tornadoservice("c", replicas=1, ingress=anyone), ns)
    apply(
        tornadoservice(
            "a",
            replicas=1,
            upstreams=[{"name": "b", "service": "b"}],
            networkPolicy={"egress": True},
        ),
        ns,
    )
    for name in ("b", "c", "a"):
        wait_ready(name, ns)
    a_pod = pod_of(ns, "a")
    # DNS and the declared upstream work (the name resolves, B answers).
    got = run_python(ns, a_pod, GET_ONCE, f"http://b.{ns}.svc/")
    assert got["status"] == 200, got
    # c admits everyone, but A's egress policy does not name it.
    wait_blocked(ns, a_pod, f"c.{ns}.svc", "A's egress to an undeclared service")
