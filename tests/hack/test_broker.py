"""The broker the project ships (deploy/broker): image rules and manifests, checked offline.

Nothing here needs a cluster: the manifests are validated against the Kubernetes schemas
(kubernetes-validate), checked for Pod Security `restricted`, and the PVC variant is rendered
by `kubectl kustomize` (local, no API server).
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from hack import images, kubetools
from hack.cluster import providers
from hack.paths import REPO

BROKER = REPO / "deploy" / "broker"
MANIFEST = BROKER / "redis" / "redis.yaml"
CONSUMER_DEPLOYMENT = REPO / "service_template" / "consumer" / "deploy" / "deployment.yaml"
K8S_VERSION = "1.34.0"


def documents(path: Path) -> dict[str, dict[str, Any]]:
    return {d["kind"]: d for d in yaml.safe_load_all(path.read_text()) if d}


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


def assert_restricted(pod: dict[str, Any]) -> None:
    """Pod Security Standards, level restricted (and a read-only root filesystem)."""
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for volume in pod.get("volumes", []):
        allowed = {"emptyDir", "persistentVolumeClaim", "configMap", "secret", "projected"}
        assert set(volume) - {"name"} <= allowed, volume
    for container in pod["containers"]:
        sc = container["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert "privileged" not in sc and "hostPort" not in str(container.get("ports"))
        assert container["livenessProbe"] and container["readinessProbe"]
    assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC")


@pytest.mark.parametrize("path", [MANIFEST, CONSUMER_DEPLOYMENT], ids=["broker", "consumer"])
def test_manifests_are_valid_kubernetes(path: Path) -> None:
    for document in yaml.safe_load_all(path.read_text()):
        kubernetes_validate.validate(document, K8S_VERSION, strict=True)


def test_the_broker_is_a_statefulset_a_service_and_a_network_policy() -> None:
    docs = documents(MANIFEST)
    assert set(docs) == {"Service", "StatefulSet", "NetworkPolicy"}
    sts, svc, netpol = docs["StatefulSet"], docs["Service"], docs["NetworkPolicy"]
    assert sts["spec"]["serviceName"] == svc["metadata"]["name"] == "redis"
    assert svc["spec"]["ports"] == [{"name": "redis", "port": 6379, "targetPort": "redis"}]
    labels = sts["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= labels.items()
    assert sts["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert netpol["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
    pod = pod_spec(sts)
    assert_restricted(pod)
    [container] = pod["containers"]
    assert container["image"] == images.BROKER_IMAGE
    assert {"name": "data", "mountPath": "/data"} in container["volumeMounts"]
    # The local cluster has no storage class: emptyDir, documented; redis-pvc/ for a PVC.
    assert {"name": "data", "emptyDir": {}} in pod["volumes"]
    assert "emptyDir" in MANIFEST.read_text().split("apiVersion")[0]


def test_the_network_policy_admits_consumers_and_the_operator_by_label() -> None:
    netpol = documents(MANIFEST)["NetworkPolicy"]
    assert netpol["spec"]["policyTypes"] == ["Ingress"]
    [rule] = netpol["spec"]["ingress"]
    peers = [p["podSelector"]["matchLabels"] for p in rule["from"]]
    assert {"tornado-operator.dev/broker-client": "true"} in peers
    assert {"app.kubernetes.io/name": "tornado-operator"} in peers
    assert rule["ports"] == [{"port": "redis", "protocol": "TCP"}]
    # The consumer template's Deployment carries the label on its pods.
    labels = documents(CONSUMER_DEPLOYMENT)["Deployment"]["spec"]["template"]["metadata"]
    assert labels["labels"]["tornado-operator.dev/broker-client"] == "true"


def test_the_consumer_deployment_is_restricted_and_named_per_pod() -> None:
    deployment = documents(CONSUMER_DEPLOYMENT)["Deployment"]
    pod = pod_spec(deployment)
    assert_restricted(pod)
    [container] = pod["containers"]
    assert container["image"] == images.CONSUMER_TEMPLATE_IMAGE
    env = {e["name"]: e for e in container["env"]}
    assert env["CONSUMER_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"


def test_the_pvc_variant_renders_with_kubectl_kustomize() -> None:
    rendered = subprocess.run(
        [kubetools.binary("kubectl"), "kustomize", str(BROKER / "redis-pvc")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    docs = documents_from_text(rendered)
    sts = docs["StatefulSet"]
    assert [v["name"] for v in pod_spec(sts)["volumes"]] == ["tmp"]
    [claim] = sts["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data"
    assert claim["spec"]["resources"]["requests"]["storage"] == "1Gi"
    for document in docs.values():
        kubernetes_validate.validate(document, K8S_VERSION, strict=True)


def documents_from_text(text: str) -> dict[str, dict[str, Any]]:
    return {d["kind"]: d for d in yaml.safe_load_all(text) if d}


def test_the_image_follows_the_project_rules() -> None:
    dockerfile = (BROKER / "Dockerfile").read_text()
    lines = [
        line.strip()
        for line in re.sub(r"\\\n", " ", dockerfile).splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert lines[0].startswith("ARG BASE_IMAGE=")
    assert "FROM ${BASE_IMAGE}" in lines
    [user] = [line.split()[1] for line in lines if line.startswith("USER ")]
    uid, gid = (int(x) for x in user.split(":"))
    assert uid > 0 and gid > 0
    pod = pod_spec(documents(MANIFEST)["StatefulSet"])
    assert pod["securityContext"]["runAsUser"] == uid
    assert pod["securityContext"]["fsGroup"] == gid
    [cmd] = [line.split(None, 1)[1] for line in lines if line.startswith("CMD ")]
    assert json.loads(cmd)[0] == "/usr/bin/redis-server"
    assert "apt-get" not in dockerfile, "nothing is downloaded inside the build"
    conf = (BROKER / "redis.conf").read_text()
    for setting in ("appendonly yes", "appendfsync everysec", "dir /data", 'logfile ""'):
        assert re.search(rf"^{re.escape(setting)}$", conf, re.MULTILINE), setting


def test_the_image_tag_is_defined_once_and_build_images_knows_it() -> None:
    assert f"tornado-operator/broker-redis:{images.PROJECT_VERSION}" == images.BROKER_IMAGE
    assert images.BROKER_IMAGE in MANIFEST.read_text()
    assert images.CONSUMER_TEMPLATE_IMAGE in CONSUMER_DEPLOYMENT.read_text()
    # Every other mention of the broker image is in docs, never a second definition.
    defining = [
        p.relative_to(REPO)
        for p in (REPO / "hack").rglob("*.py")
        if "tornado-operator/broker-redis:" in p.read_text()
    ]
    assert defining == [Path("hack/images.py")]
    source = Path(providers.__file__).read_text()
    assert '"broker": images.build_broker_image' in source
    assert '"consumer": images.build_consumer_template_image' in source


def test_prereqs_install_redis_server() -> None:
    prereqs = (REPO / "hack" / "prereqs.sh").read_text()
    [pkgs] = [line for line in prereqs.splitlines() if line.startswith("pkgs=(")]
    assert "redis-server" in pkgs.removeprefix("pkgs=(").removesuffix(")").split()
