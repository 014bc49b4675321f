"""A TornadoService's life: create, serve, roll out, scale, autoscale, delete."""

from __future__ import annotations

import json
import time

from tests.e2e.operator_support import (
    TEMPLATE_IMAGE,
    TEMPLATE_IMAGE_ALIAS,
    apply,
    condition,
    get,
    http_get,
    kubectl,
    owned_children,
    patch,
    running_operator,
    tornadoservice,
    wait_for,
    wait_ready,
)

pytest_plugins = ["tests.e2e.operator_fixtures"]


def test_create_becomes_ready_and_serves(operator_ns: str) -> None:
    ns = operator_ns
    apply(tornadoservice("web", replicas=2), ns)
    obj = wait_ready("web", ns)

    status = obj["status"]
    assert status["observedGeneration"] == obj["metadata"]["generation"]
    assert status["replicas"] == 2 and status["readyReplicas"] == 2
    assert status["replicaSummary"] == "2/2"
    assert status["image"] == TEMPLATE_IMAGE
    assert status["url"] == f"http://web.{ns}.svc"
    assert status["selector"] == (
        "app.kubernetes.io/instance=web,app.kubernetes.io/managed-by=tornado-operator,"
        "app.kubernetes.io/name=web"
    )
    for type_ in ("Ready", "Progressing", "Degraded"):
        cond = condition(obj, type_)
        assert cond is not None, type_
        assert cond["observedGeneration"] == obj["metadata"]["generation"]
        assert cond["reason"] and cond["message"] and cond["lastTransitionTime"]
    assert condition(obj, "Degraded")["status"] == "False"  # type: ignore[index]

    # kopf state lives in annotations; no finalizer can ever block deletion.
    assert not obj["metadata"].get("finalizers")
    assert any(
        k.startswith("tornado-operator.dev/") for k in obj["metadata"].get("annotations", {})
    )

    dep = get("deployment", "web", ns)
    assert dep is not None
    [ref] = dep["metadata"]["ownerReferences"]
    assert ref["uid"] == obj["metadata"]["uid"] and ref["controller"] is True
    managers = {m["manager"]: m["operation"] for m in dep["metadata"]["managedFields"]}
    assert managers.get("tornado-operator") == "Apply"
    svc = get("service", "web", ns)
    assert (
        svc is not None and svc["metadata"]["ownerReferences"][0]["uid"] == obj["metadata"]["uid"]
    )
    pdb = get("poddisruptionbudget", "web", ns)
    assert pdb is not None  # two replicas
    assert get("horizontalpodautoscaler", "web", ns) is None

    # Real pods answer HTTP through the Service.
    assert http_get(ns, "web", "/readyz") is not None
    http_get(ns, "web", "/")

    table = kubectl("get", "tsvc", "web", "-n", ns).stdout
    header, row = table.splitlines()[:2]
    assert header.split() == ["NAME", "READY", "REPLICAS", "IMAGE", "URL", "AGE"]
    assert row.split()[:5] == ["web", "True", "2/2", TEMPLATE_IMAGE, f"http://web.{ns}.svc"]


def test_image_edit_rolls_out_without_losing_capacity(operator_ns: str) -> None:
    ns = operator_ns
    apply(tornadoservice("roll", replicas=2), ns)
    wait_ready("roll", ns)
    before = get("deployment", "roll", ns)
    assert before is not None

    patch("tornadoservice", "roll", ns, {"spec": {"image": TEMPLATE_IMAGE_ALIAS}})
    lowest = 2
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        dep = get("deployment", "roll", ns) or {}
        st = dep.get("status") or {}
        lowest = min(lowest, int(st.get("availableReplicas") or 0))
        image = dep["spec"]["template"]["spec"]["containers"][0]["image"]
        done = (
            image == TEMPLATE_IMAGE_ALIAS
            and st.get("observedGeneration", 0) >= dep["metadata"]["generation"]
            and st.get("updatedReplicas") == 2
            and st.get("replicas") == 2
            and st.get("availableReplicas") == 2
        )
        if done:
            break
        time.sleep(0.5)
    else:
        raise AssertionError(f"rollout did not finish: {json.dumps(st)}")
    assert lowest >= 2, "maxUnavailable 0: capacity never dropped below the desired count"
    after = get("deployment", "roll", ns)
    assert after is not None and after["metadata"]["uid"] == before["metadata"]["uid"]
    obj = wait_ready("roll", ns)
    assert obj["status"]["image"] == TEMPLATE_IMAGE_ALIAS
    assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"]
    pods = json.loads(
        kubectl(
            "get", "pods", "-n", ns, "-l", "app.kubernetes.io/instance=roll", "-o", "json"
        ).stdout
    )
    images = {
        p["spec"]["containers"][0]["image"]
        for p in pods["items"]
        if not p["metadata"].get("deletionTimestamp")
    }
    assert images == {TEMPLATE_IMAGE_ALIAS}


def _deployment_replicas(ns: str, name: str) -> int:
    dep = get("deployment", name, ns)
    return int(dep["spec"]["replicas"]) if dep else -1


def test_scale_through_spec_and_kubectl_scale(operator_ns: str) -> None:
    ns = operator_ns
    apply(tornadoservice("scaled", replicas=1), ns)
    wait_ready("scaled", ns)

    patch("tornadoservice", "scaled", ns, {"spec": {"replicas": 3}})
    wait_for("Deployment at 3 replicas", lambda: _deployment_replicas(ns, "scaled") == 3, 60)
    obj = wait_ready("scaled", ns)
    assert obj["status"]["readyReplicas"] == 3

    kubectl("scale", "tsvc/scaled", "-n", ns, "--replicas=1")
    wait_for("Deployment at 1 replica", lambda: _deployment_replicas(ns, "scaled") == 1, 60)
    scale = json.loads(
        kubectl("get", "tsvc", "scaled", "-n", ns, "--subresource=scale", "-o", "json").stdout
    )
    assert scale["spec"]["replicas"] == 1
    wait_for(
        "scale status at 1",
        lambda: (
            json.loads(
                kubectl(
                    "get", "tsvc", "scaled", "-n", ns, "--subresource=scale", "-o", "json"
                ).stdout
            )["status"].get("replicas")
            == 1
        ),
        90,
    )
    # One replica: no disruption budget any more.
    wait_for("PDB removed", lambda: get("poddisruptionbudget", "scaled", ns) is None, 60)


def test_autoscaling_on_and_off(operator_ns: str) -> None:
    ns = operator_ns
    apply(tornadoservice("auto", replicas=1), ns)
    wait_ready("auto", ns)
    patch(
        "tornadoservice",
        "auto",
        ns,
        {"spec": {"autoscaling": {"enabled": True, "minReplicas": 2, "maxReplicas": 3}}},
    )

    hpa = wait_for("HPA created", lambda: get("horizontalpodautoscaler", "auto", ns), 60)
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "tornado-operator.dev/v1alpha1",
        "kind": "TornadoService",
        "name": "auto",
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 3)
    # Clamped to minReplicas at once; the PDB appears because up to 3 replicas can run.
    wait_for("Deployment at >= 2 replicas", lambda: _deployment_replicas(ns, "auto") >= 2, 60)
    wait_for("PDB created", lambda: get("poddisruptionbudget", "auto", ns), 60)

    # The HPA reads the TornadoService's scale subresource (selector included) and writes
    # spec.replicas, which the operator copies to the Deployment.
    def hpa_can_scale() -> bool:
        h = get("horizontalpodautoscaler", "auto", ns) or {}
        conds = {c["type"]: c for c in (h.get("status") or {}).get("conditions") or []}
        return conds.get("AbleToScale", {}).get("status") == "True"

    wait_for("HPA AbleToScale", hpa_can_scale, 120)
    wait_for(
        "spec.replicas within the HPA bounds",
        lambda: 2 <= int((get("tornadoservice", "auto", ns) or {})["spec"]["replicas"]) <= 3,
        120,
    )
    wait_ready("auto", ns)

    patch(
        "tornadoservice", "auto", ns, {"spec": {"autoscaling": {"enabled": False}, "replicas": 1}}
    )
    wait_for("HPA removed", lambda: get("horizontalpodautoscaler", "auto", ns) is None, 60)
    wait_for("Deployment at 1 replica", lambda: _deployment_replicas(ns, "auto") == 1, 60)
    wait_for("PDB removed", lambda: get("poddisruptionbudget", "auto", ns) is None, 60)
    wait_ready("auto", ns)


def test_hpa_scales_up_on_real_cpu_load(operator_ns: str) -> None:
    """Real CPU numbers from metrics-server drive the HPA through the scale subresource."""
    ns = operator_ns
    apply(
        tornadoservice(
            "busy",
            replicas=1,
            # The load pod below is no TornadoService: the NetworkPolicy must let it in.
            ingress={"from": [{"podSelector": {"matchLabels": {"app": "cpu-load"}}}]},
            autoscaling={
                "enabled": True,
                "minReplicas": 1,
                "maxReplicas": 2,
                "targetCPUUtilizationPercentage": 50,
            },
        ),
        ns,
    )
    wait_ready("busy", ns)
    # Load from a pod of our own, at our own Service, bounded in time and in count.
    loader = (
        "import time, urllib.request\n"
        f"url = 'http://busy.{ns}.svc/'\n"
        "end = time.monotonic() + 150\n"
        "for _ in range(300000):\n"
        "    if time.monotonic() > end: break\n"
        "    try: urllib.request.urlopen(url, timeout=5).read()\n"
        "    except OSError: time.sleep(0.1)\n"
    )
    apply(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "load", "labels": {"app": "cpu-load"}},
            "spec": {
                "restartPolicy": "Never",
                "automountServiceAccountToken": False,
                "containers": [
                    {
                        "name": "load",
                        "image": TEMPLATE_IMAGE,
                        "imagePullPolicy": "IfNotPresent",
                        "command": ["/opt/venv/bin/python", "-c", loader],
                        "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}},
                        "securityContext": {
                            "allowPrivilegeEscalation": False,
                            "runAsNonRoot": True,
                            "capabilities": {"drop": ["ALL"]},
                            "seccompProfile": {"type": "RuntimeDefault"},
                        },
                    }
                ],
            },
        },
        ns,
    )
    try:

        def scaled_up() -> bool:
            hpa = get("horizontalpodautoscaler", "busy", ns) or {}
            tsvc = get("tornadoservice", "busy", ns) or {}
            desired = (hpa.get("status") or {}).get("desiredReplicas", 0)
            return desired == 2 and tsvc["spec"]["replicas"] == 2

        wait_for("the HPA to scale busy to 2 on CPU load", scaled_up, 150, interval=3)
        wait_for("Deployment at 2 replicas", lambda: _deployment_replicas(ns, "busy") == 2, 60)
        hpa = get("horizontalpodautoscaler", "busy", ns) or {}
        cpu = hpa["status"]["currentMetrics"][0]["resource"]["current"]["averageUtilization"]
        assert cpu > 50
    finally:
        kubectl("delete", "pod", "load", "-n", ns, "--wait=false", check=False)


def test_delete_removes_children(operator_ns: str) -> None:
    ns = operator_ns
    apply(
        tornadoservice(
            "gone", replicas=2, autoscaling={"enabled": True, "minReplicas": 2, "maxReplicas": 3}
        ),
        ns,
    )
    wait_ready("gone", ns)
    assert all(
        owned_children(ns)[k]
        for k in ("deployment", "service", "horizontalpodautoscaler", "poddisruptionbudget")
    )
    kubectl("delete", "tsvc", "gone", "-n", ns, "--timeout=60s")
    wait_for("children garbage-collected", lambda: not any(owned_children(ns).values()), 120)


def test_deletion_never_hangs_while_the_operator_is_down(
    namespace: str, operator_crds: None, template_image: str
) -> None:
    with running_operator(namespace):
        apply(tornadoservice("orphanless", replicas=1), namespace)
        wait_ready("orphanless", namespace)
    # Operator stopped: deletion must not wait for it (no finalizers), GC removes the children.
    kubectl("delete", "tsvc", "orphanless", "-n", namespace, "--timeout=30s")
    wait_for("children garbage-collected", lambda: not any(owned_children(namespace).values()), 120)
