"""The host reaches the kind node's pod and Service IPs (hack/cluster/kind.py's routes), and the
node still rejects a Service IP that no Service translated. Runs when $KUBECONFIG is the kind
cluster on the project's engine; the route commands themselves are in test_kind_node.py."""

from __future__ import annotations

import http.client
import ipaddress
import time
from pathlib import Path

import pytest

from hack.cluster import kind
from hack.kind_node import engine, image
from hack.kubetools import kubectl

# CoreDNS (kubeadm's Corefile): `health` on :8080 answers OK; `prometheus :9153` is kube-dns's
# metrics port. Both run in every kind cluster: nothing to build or load.
HEALTH_PORT = 8080
METRICS_PORT = 9153


@pytest.fixture(scope="module")
def project_kind(kubeconfig: Path) -> Path:
    if kubeconfig.resolve() != kind.kubeconfig().resolve() or not kind.on_project_engine():
        pytest.skip("the cluster in use is not the kind cluster on the project's engine")
    return kubeconfig


def _get(host: str, port: int, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def _coredns(jsonpath: str, kind_: str, selector: str) -> str:
    return kubectl(
        "-n", "kube-system", "get", kind_, *selector.split(), "-o", f"jsonpath={jsonpath}"
    ).stdout.strip()


def test_the_host_routes_the_nodes_subnets_to_it(project_kind: Path) -> None:
    ip = kind.node_ip()
    assert kind.routes() == dict.fromkeys(kind.ROUTED, ip)
    assert ipaddress.ip_address(ip) in ipaddress.ip_network(engine.KIND_SUBNET)


def test_the_host_reaches_a_pod_ip(project_kind: Path) -> None:
    pod_ip = _coredns("{.items[0].status.podIP}", "pods", "-l k8s-app=kube-dns")
    assert ipaddress.ip_address(pod_ip) in ipaddress.ip_network(image.POD_SUBNET)
    # The answer comes back to the host's address on kind's bridge: return traffic works.
    status, body = _get(pod_ip, HEALTH_PORT, "/health")
    assert (status, body.strip()) == (200, b"OK")


def test_the_host_reaches_a_cluster_ip(project_kind: Path) -> None:
    cluster_ip = _coredns("{.spec.clusterIP}", "service", "kube-dns")
    assert ipaddress.ip_address(cluster_ip) in ipaddress.ip_network(image.SERVICE_SUBNET)
    # kube-proxy in the node translates what arrives from the host over the bridge.
    status, body = _get(cluster_ip, METRICS_PORT, "/metrics")
    assert status == 200 and b"coredns_build_info" in body


def _rejected_by_the_node() -> int:
    """Packets the node's hermetic chain rejected for the Service range over TCP."""
    out = engine.docker(
        "exec", kind.NODE, "iptables", "-w", "5", "-L", image.HERMETIC_CHAIN, "-v", "-n", "-x",
        timeout=60,
    ).stdout  # fmt: skip
    [line] = [ln for ln in out.splitlines() if "tornado-node-hermetic service-port-tcp" in ln]
    return int(line.split()[0])


@pytest.mark.parametrize("target", ["kube-dns:9", "unallocated:80"])
def test_the_node_rejects_a_service_ip_no_service_translated(
    project_kind: Path, target: str
) -> None:
    # kube-dns's address on a port it does not serve, or an address no Service has: kube-proxy
    # leaves it as it is, so it must not leave the node; the hermetic chain resets it at once.
    name, port = target.split(":")
    if name == "kube-dns":
        address = _coredns("{.spec.clusterIP}", "service", "kube-dns")
    else:
        address = str(ipaddress.ip_network(image.SERVICE_SUBNET)[-2])
        taken = kubectl("get", "services", "-A", "-o", "jsonpath={.items[*].spec.clusterIP}")
        assert address not in taken.stdout.split()
    before = _rejected_by_the_node()
    t0 = time.monotonic()
    with pytest.raises(ConnectionRefusedError):
        _get(address, int(port), "/")
    assert time.monotonic() - t0 < 5
    assert _rejected_by_the_node() > before
