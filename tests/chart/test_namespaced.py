"""The chart on the real cluster, watching a list of namespaces: Roles, a KopfPeering in each.

Runs after test_install.py's module (pytest orders modules by name and tears that module's
cluster-wide release down first), so this is the only operator in the cluster.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hack import kubetools
from hack.kubetools import helm, kubectl, kubectl_json
from hack.paths import REPO
from tests.chart import kube
from tests.chart.test_install import OPERATOR_NAMESPACED, rights

RELEASE = "tornado-e2e-ns"
NAMESPACE = "tornado-chart-e2e-ns"
WATCHED = ("tornado-chart-e2e-a", "tornado-chart-e2e-b")
FULLNAME = f"{RELEASE}-tornado-operator"
SA_USER = f"system:serviceaccount:{NAMESPACE}:{FULLNAME}"


@pytest.fixture(scope="module")
def release(kubeconfig: Path, operator_image: str, template_image: str) -> Iterator[str]:
    with kubetools.operator_lock(), kubetools.other_operators_paused(RELEASE):
        kubetools.uninstall(RELEASE, NAMESPACE)
        for ns in (NAMESPACE, *WATCHED):
            kubetools.ensure_namespace(ns, kubetools.RESTRICTED_LABELS)
        kubetools.adopt_crds(RELEASE, NAMESPACE)
        try:
            kubetools.install(
                RELEASE, NAMESPACE, [f"operator.watchNamespaces={{{','.join(WATCHED)}}}"]
            )
            yield RELEASE
        finally:
            kubetools.uninstall(RELEASE, NAMESPACE)
            for ns in (NAMESPACE, *WATCHED):
                kubectl("delete", "namespace", ns, "--wait=false", "--ignore-not-found")


def test_nothing_cluster_wide_and_a_kopfpeering_per_watched_namespace(release: str) -> None:
    manifest = helm("get", "manifest", RELEASE, "-n", NAMESPACE).stdout
    assert "kind: ClusterRole" not in manifest
    for ns in WATCHED:
        kubectl_json("-n", ns, "get", "kopfpeering", FULLNAME)
        kubectl_json("-n", ns, "get", "role", FULLNAME)


def test_rbac_in_watched_and_other_namespaces(release: str, namespace: str) -> None:
    for ns in WATCHED:
        baseline = kube.can_i_list(f"system:serviceaccount:{ns}:nobody", ns)
        got = kube.can_i_list(SA_USER, ns) - baseline
        want = rights(OPERATOR_NAMESPACED) | rights(
            {"kopfpeerings.kopf.dev": "get list watch patch"}
        )
        assert got == want, f"{ns}: extra {sorted(got - want)}; missing {sorted(want - got)}"
    baseline = kube.can_i_list(f"system:serviceaccount:{namespace}:nobody", namespace)
    assert kube.can_i_list(SA_USER, namespace) == baseline, "rights outside the watched namespaces"
    for ns in (*WATCHED, namespace):
        r = kubectl("auth", "can-i", "get", "secrets", f"--as={SA_USER}", "-n", ns, check=False)
        assert r.stdout.strip() == "no"


def test_watched_namespace_serves_and_others_are_left_alone(release: str, namespace: str) -> None:
    hello = (REPO / "examples" / "hello.yaml").read_text()
    kubectl("-n", WATCHED[0], "apply", "-f", "-", input=hello)
    kubectl("-n", namespace, "apply", "-f", "-", input=hello)
    kubetools.wait_ready(WATCHED[0], "hello")
    with kubetools.port_forward(WATCHED[0], "service/hello", 80) as url:
        assert kubetools.get_until_ok(f"{url}/")[0] == 200
    time.sleep(5)
    ignored = kubectl_json("-n", namespace, "get", "tsvc", "hello")
    assert not ignored.get("status"), "an unwatched namespace was reconciled"
    assert not kubectl_json("-n", namespace, "get", "deployments")["items"]
    kubectl("-n", WATCHED[0], "delete", "tsvc", "hello", "--wait=false")


def test_helm_test_passes_in_the_first_watched_namespace(release: str) -> None:
    kube.helm_test(RELEASE, NAMESPACE, FULLNAME)
