"""Rendering: spec -> Deployment, Service, HPA and PDB manifests, with no cluster."""

from __future__ import annotations

import dataclasses
from typing import Any

import kubernetes_validate
import pytest
from tornado_operator import DEFAULT_IMAGE, drift, rendering, validation
from tornado_operator.children import CHILD_KINDS, Children, render_children

PARENT = rendering.Parent(
    name="hello", namespace="apps", uid="0b7d6a3e-1111-2222-3333-444455556666"
)
K8S_VERSION = "1.34.0"


def render(spec: dict[str, Any]) -> Children:
    return render_children(PARENT, validation.validated_spec(spec), DEFAULT_IMAGE)


def container(children: Children) -> dict[str, Any]:
    [c] = children.deployment["spec"]["template"]["spec"]["containers"]
    return c  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    "spec",
    [
        {},
        {"replicas": 3, "autoscaling": {"enabled": True, "targetMemoryUtilizationPercentage": 70}},
        {
            "service": {"type": "NodePort", "nodePort": 30080},
            "podDisruptionBudget": {"minAvailable": "50%"},
        },
        {
            "env": [{"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
            "envFrom": [{"configMapRef": {"name": "cfg"}}],
            "imagePullSecrets": [{"name": "reg"}],
            "tolerations": [{"key": "a", "operator": "Exists"}],
            "securityContext": {"runAsUser": 10001},
        },
    ],
)
def test_manifests_match_the_kubernetes_schemas(spec: dict[str, Any]) -> None:
    for manifest in render(spec).all():
        kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)


def test_children_come_from_the_kind_table_in_apply_order() -> None:
    rendered = render({"replicas": 2, "autoscaling": {"enabled": True}})
    assert list(rendered) == [
        "Deployment",
        "Service",
        "NetworkPolicy",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
    ]
    assert [(m["apiVersion"], m["kind"]) for m in rendered.all()] == [
        ("apps/v1", "Deployment"),
        ("v1", "Service"),
        ("networking.k8s.io/v1", "NetworkPolicy"),
        ("autoscaling/v2", "HorizontalPodAutoscaler"),
        ("policy/v1", "PodDisruptionBudget"),
    ]
    assert [m["kind"] for m in render({}).all()] == ["Deployment", "Service", "NetworkPolicy"]
    off = {"networkPolicy": {"enabled": False}}
    assert [m["kind"] for m in render(off).all()] == ["Deployment", "Service"]
    # The Service is optional since consumers exist: they have none.
    assert [c.kind for c in CHILD_KINDS if not c.optional] == ["Deployment"]


def test_a_required_child_cannot_be_left_out() -> None:
    [deployment] = [c for c in CHILD_KINDS if c.kind == "Deployment"]
    broken = dataclasses.replace(deployment, render=lambda *_: None)
    with pytest.raises(ValueError, match="Deployment is not optional"):
        broken.manifest(PARENT, validation.validated_spec({}), DEFAULT_IMAGE)


def test_deployment_defaults() -> None:
    children = render({})
    dep = children.deployment
    assert dep["metadata"]["name"] == "hello" and dep["metadata"]["namespace"] == "apps"
    assert dep["spec"]["replicas"] == 1
    assert dep["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": "25%", "maxUnavailable": 0}
    pod = dep["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    c = container(children)
    assert c["image"] == DEFAULT_IMAGE
    assert c["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert {"name": "PORT", "value": "8080"} in c["env"]
    assert c["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "http", "scheme": "HTTP"}
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["startupProbe"]["httpGet"]["path"] == "/startupz"
    assert c["resources"] == {
        "requests": {"cpu": "100m", "memory": "128Mi"},
        "limits": {"memory": "256Mi"},
    }


def test_pod_passes_restricted_pod_security() -> None:
    children = render({"securityContext": {"runAsUser": 10001, "runAsGroup": 10001}})
    pod = children.deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["securityContext"]["runAsUser"] == 10001
    sc = container(children)["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["runAsNonRoot"] is True
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container(children)["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    assert pod["volumes"] == [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}]
    assert "hostNetwork" not in pod and "hostPID" not in pod


def test_graceful_shutdown_budget() -> None:
    children = render(
        {"shutdown": {"preStopSleepSeconds": 4, "drainDelaySeconds": 6, "timeoutSeconds": 30}}
    )
    pod = children.deployment["spec"]["template"]["spec"]
    c = container(children)
    assert c["lifecycle"] == {"preStop": {"sleep": {"seconds": 4}}}
    assert {"name": "DRAIN_DELAY_SECONDS", "value": "6"} in c["env"]
    assert {"name": "SHUTDOWN_TIMEOUT_SECONDS", "value": "30"} in c["env"]
    assert pod["terminationGracePeriodSeconds"] == 4 + 6 + 30 + rendering.GRACE_MARGIN_SECONDS
    default = render({}).deployment["spec"]["template"]["spec"]
    assert default["terminationGracePeriodSeconds"] == 5 + 5 + 20 + 5
    no_pause = container(render({"shutdown": {"preStopSleepSeconds": 0}}))
    assert "lifecycle" not in no_pause


def test_probe_overrides_and_disabling() -> None:
    c = container(
        render(
            {
                "port": 9000,
                "probes": {
                    "liveness": {"path": "/health", "periodSeconds": 20},
                    "startup": {"enabled": False},
                },
            }
        )
    )
    assert c["livenessProbe"]["httpGet"]["path"] == "/health"
    assert c["livenessProbe"]["periodSeconds"] == 20
    assert c["livenessProbe"]["timeoutSeconds"] == 2  # other defaults stay
    assert "startupProbe" not in c
    assert c["ports"][0]["containerPort"] == 9000


def test_recommended_labels_and_owner_reference() -> None:
    children = render({"image": "registry.example/team/web:1.2.3", "podLabels": {"team": "web"}})
    for manifest in children.all():
        meta = manifest["metadata"]
        assert meta["labels"]["app.kubernetes.io/name"] == "hello"
        assert meta["labels"]["app.kubernetes.io/instance"] == "hello"
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "tornado-operator"
        assert meta["labels"]["app.kubernetes.io/version"] == "1.2.3"
        assert meta["ownerReferences"] == [
            {
                "apiVersion": "tornado-operator.dev/v1alpha1",
                "kind": "TornadoService",
                "name": "hello",
                "uid": PARENT.uid,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
    template_labels = children.deployment["spec"]["template"]["metadata"]["labels"]
    assert template_labels["team"] == "web"
    selector = children.deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= template_labels.items()
    assert "app.kubernetes.io/version" not in selector  # selectors are immutable


def test_user_env_follows_operator_env() -> None:
    c = container(render({"env": [{"name": "A", "value": "1"}]}))
    assert [e["name"] for e in c["env"]] == [
        "PORT",
        "DRAIN_DELAY_SECONDS",
        "SHUTDOWN_TIMEOUT_SECONDS",
        "A",
    ]


def test_service() -> None:
    svc = render(
        {
            "service": {
                "type": "NodePort",
                "port": 8080,
                "nodePort": 30080,
                "annotations": {"a": "b"},
            }
        }
    )["Service"]
    assert svc is not None and svc["spec"]["type"] == "NodePort"
    assert svc["spec"]["ports"] == [
        {
            "name": "http",
            "port": 8080,
            "targetPort": "http",
            "protocol": "TCP",
            "appProtocol": "http",
            "nodePort": 30080,
        }
    ]
    assert svc["metadata"]["annotations"] == {
        "a": "b",
        drift.HASH_ANNOTATION: drift.rendered_hash(svc),
    }
    assert svc["spec"]["selector"] == render({}).deployment["spec"]["selector"]["matchLabels"]


def test_hpa_targets_the_tornadoservice_scale_subresource() -> None:
    hpa = render(
        {
            "autoscaling": {
                "enabled": True,
                "minReplicas": 2,
                "maxReplicas": 7,
                "targetCPUUtilizationPercentage": 60,
                "targetMemoryUtilizationPercentage": 75,
            }
        }
    )["HorizontalPodAutoscaler"]
    assert hpa is not None
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "tornado-operator.dev/v1alpha1",
        "kind": "TornadoService",
        "name": "hello",
    }
    assert hpa["spec"]["minReplicas"] == 2 and hpa["spec"]["maxReplicas"] == 7
    targets = {
        m["resource"]["name"]: m["resource"]["target"]["averageUtilization"]
        for m in hpa["spec"]["metrics"]
    }
    assert targets == {"cpu": 60, "memory": 75}
    assert render({})["HorizontalPodAutoscaler"] is None


def test_hpa_behavior_passes_through() -> None:
    behavior = {
        "scaleDown": {
            "stabilizationWindowSeconds": 60,
            "policies": [{"type": "Pods", "value": 1, "periodSeconds": 30}],
        }
    }
    rendered = render({"autoscaling": {"enabled": True, "behavior": behavior}})
    hpa = rendered["HorizontalPodAutoscaler"]
    assert hpa is not None and hpa["spec"]["behavior"] == behavior


@pytest.mark.parametrize(
    ("replicas", "auto", "expected"),
    [
        (3, None, 3),
        (0, None, 0),
        (1, {"enabled": True, "minReplicas": 2, "maxReplicas": 5}, 2),
        (9, {"enabled": True, "minReplicas": 2, "maxReplicas": 5}, 5),
        (4, {"enabled": True, "minReplicas": 2, "maxReplicas": 5}, 4),
        (0, {"enabled": True, "minReplicas": 2, "maxReplicas": 5}, 0),
    ],
)
def test_deployment_replicas(replicas: int, auto: dict[str, Any] | None, expected: int) -> None:
    spec: dict[str, Any] = {"replicas": replicas}
    if auto:
        spec["autoscaling"] = auto
    assert render(spec).deployment["spec"]["replicas"] == expected


@pytest.mark.parametrize(
    ("spec", "wanted"),
    [
        ({"replicas": 1}, False),
        ({"replicas": 2}, True),
        ({"replicas": 2, "podDisruptionBudget": {"enabled": False}}, False),
        (
            {"replicas": 1, "autoscaling": {"enabled": True, "minReplicas": 1, "maxReplicas": 3}},
            True,
        ),
        (
            {"replicas": 1, "autoscaling": {"enabled": True, "minReplicas": 1, "maxReplicas": 1}},
            False,
        ),
    ],
)
def test_pdb_only_when_more_than_one_replica_can_run(spec: dict[str, Any], wanted: bool) -> None:
    pdb = render(spec)["PodDisruptionBudget"]
    assert (pdb is not None) is wanted
    if pdb is not None:
        assert pdb["spec"]["maxUnavailable"] == 1
        assert pdb["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"


def test_pdb_min_available() -> None:
    pdb = render({"replicas": 3, "podDisruptionBudget": {"minAvailable": 2}})["PodDisruptionBudget"]
    assert (
        pdb is not None and pdb["spec"]["minAvailable"] == 2 and "maxUnavailable" not in pdb["spec"]
    )


def test_rendering_is_deterministic() -> None:
    spec = {"replicas": 2, "env": [{"name": "A", "value": "1"}], "autoscaling": {"enabled": True}}
    assert render(spec) == render(spec)


def test_spec_image_and_pull_policy() -> None:
    c = container(
        render(
            {
                "image": "example/app:2",
                "imagePullPolicy": "Always",
                "command": ["python"],
                "args": ["-m", "app"],
            }
        )
    )
    assert c["image"] == "example/app:2" and c["imagePullPolicy"] == "Always"
    assert c["command"] == ["python"] and c["args"] == ["-m", "app"]
    assert "imagePullPolicy" not in container(render({}))


def test_service_url() -> None:
    spec = validation.validated_spec({})
    assert rendering.service_url("hello", "apps", spec) == "http://hello.apps.svc"
    spec = validation.validated_spec({"service": {"port": 8080}})
    assert rendering.service_url("hello", "apps", spec) == "http://hello.apps.svc:8080"


def test_kubernetes_schema_check_catches_mistakes() -> None:
    # Guards the test above: the schema check must be able to fail.
    dep = render({}).deployment
    dep["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGett"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(dep, K8S_VERSION, strict=True)
