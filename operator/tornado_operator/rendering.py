"""Pure functions: a validated, defaulted spec becomes the child manifests.

No I/O here. The same inputs always give the same manifests, which is what makes reconciling
level-based: whether the spec was just created, edited, or the operator restarted, applying
these manifests with server-side apply converges to one state.

Each `render_*` function gives one child's body (metadata and spec), or None when that child
must not exist; the kind table, `children.CHILD_KINDS`, adds apiVersion and kind, so where a
kind lives in the API is written only there.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from tornado_operator import API_VERSION, KIND, consumer, labels
from tornado_operator.autoscaling import config as autoscaling_config
from tornado_operator.composition import spec as composition

JSONDict = dict[str, Any]

CONTAINER_NAME = "app"
PORT_NAME = "http"
# Seconds between the end of the template's own shutdown budget and SIGKILL.
GRACE_MARGIN_SECONDS = 5


# The labels of the operator's own pods (the chart's), for the NetworkPolicy rule that lets its
# scrapes of /metrics in. The TornadoService pods' own part-of/component never match both.
OPERATOR_POD_LABELS = {labels.PART_OF: "tornado-operator", labels.COMPONENT: "operator"}
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
# Where the cluster DNS runs: kube-dns pods in kube-system (kind, kubeadm, the local cluster).
DNS_NAMESPACE = "kube-system"
DNS_POD_LABELS = {"k8s-app": "kube-dns"}


@dataclasses.dataclass(frozen=True)
class Links:
    """What rendering needs from other objects, resolved by the reconcile from the watches:
    the URL of each spec.upstreams entry, who calls this service, and where the operator's
    pods run (None: outside the cluster, as node traffic that NetworkPolicy always allows)."""

    upstream_urls: tuple[tuple[str, str], ...] = ()  # (spec.upstreams[].name, URL)
    callers: tuple[tuple[str, str], ...] = ()  # (namespace, name) of TornadoServices, sorted
    operator_namespace: str | None = None


@dataclasses.dataclass(frozen=True)
class Parent:
    """What rendering needs to know about the TornadoService object itself (and, in `links`,
    about the objects it is linked with)."""

    name: str
    namespace: str
    uid: str
    links: Links = Links()


def owner_reference(parent: Parent) -> JSONDict:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": parent.name,
        "uid": parent.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def resolve_image(spec: JSONDict, default_image: str) -> str:
    image = spec.get("image")
    return image if isinstance(image, str) and image else default_image


def _metadata(parent: Parent, image: str, annotations: dict[str, str] | None = None) -> JSONDict:
    meta: JSONDict = {
        "name": parent.name,
        "namespace": parent.namespace,
        "labels": labels.common_labels(parent.name, image),
        "ownerReferences": [owner_reference(parent)],
    }
    if annotations:
        meta["annotations"] = dict(annotations)
    return meta


def termination_grace_seconds(spec: JSONDict) -> int:
    """preStop pause + the template's drain delay + its in-flight timeout + a margin; for a
    consumer also the fetch that may still block after SIGTERM (BLOCK_MS, rounded up)."""
    shutdown = spec["shutdown"]
    fetch = consumer.block_seconds(spec) if consumer.is_consumer(spec) else 0
    return int(
        shutdown["preStopSleepSeconds"]
        + shutdown["drainDelaySeconds"]
        + shutdown["timeoutSeconds"]
        + fetch
        + GRACE_MARGIN_SECONDS
    )


def desired_replicas(spec: JSONDict) -> int:
    """Replicas for the Deployment.

    With autoscaling on, the HPA writes spec.replicas through the scale subresource; clamping
    keeps the Deployment inside the HPA's bounds between the moment autoscaling is switched on
    and the HPA's first decision, and after a `kubectl scale` outside them. Zero stays zero:
    scaling to zero is an explicit pause that the HPA also respects.
    """
    replicas = int(spec["replicas"])
    auto = spec["autoscaling"]
    if auto["enabled"] and replicas != 0:
        return max(int(auto["minReplicas"]), min(int(auto["maxReplicas"]), replicas))
    return replicas


def _probe(probe: JSONDict) -> JSONDict | None:
    if not probe["enabled"]:
        return None
    return {
        "httpGet": {"path": probe["path"], "port": PORT_NAME, "scheme": "HTTP"},
        "initialDelaySeconds": probe["initialDelaySeconds"],
        "periodSeconds": probe["periodSeconds"],
        "timeoutSeconds": probe["timeoutSeconds"],
        "successThreshold": probe["successThreshold"],
        "failureThreshold": probe["failureThreshold"],
    }


def upstreams_env(parent: Parent, spec: JSONDict) -> str | None:
    """The template's UPSTREAMS from spec.upstreams (None when the spec lists none)."""
    found = composition.entries(spec, parent.namespace)
    if not found:
        return None
    urls = dict(parent.links.upstream_urls)
    for entry in found:
        # Not resolved by the reconcile: the URL it has with the default Service port.
        urls.setdefault(entry.name, composition.url_of(entry))
    return composition.env_value(found, urls)


def _container(parent: Parent, spec: JSONDict, image: str) -> JSONDict:
    shutdown = spec["shutdown"]
    env: list[JSONDict] = [
        {"name": "PORT", "value": str(spec["port"])},
        {"name": "DRAIN_DELAY_SECONDS", "value": str(shutdown["drainDelaySeconds"])},
        {"name": "SHUTDOWN_TIMEOUT_SECONDS", "value": str(shutdown["timeoutSeconds"])},
    ]
    if consumer.is_consumer(spec):
        env.extend(consumer.env(spec))
    upstreams = upstreams_env(parent, spec)
    if upstreams is not None:
        env.append({"name": composition.ENV_NAME, "value": upstreams})
    env.extend(dict(item) for item in spec.get("env", []))
    container: JSONDict = {
        "name": CONTAINER_NAME,
        "image": image,
        "ports": [{"name": PORT_NAME, "containerPort": spec["port"], "protocol": "TCP"}],
        "env": env,
        "resources": spec["resources"],
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "privileged": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    if shutdown["preStopSleepSeconds"] > 0:
        container["lifecycle"] = {
            "preStop": {"sleep": {"seconds": shutdown["preStopSleepSeconds"]}}
        }
    for key in ("command", "args", "envFrom", "imagePullPolicy"):
        if key in spec:
            container[key] = spec[key]
    for kind in ("liveness", "readiness", "startup"):
        probe = _probe(spec["probes"][kind])
        if probe is not None:
            container[f"{kind}Probe"] = probe
    return container


def render_deployment(parent: Parent, spec: JSONDict, default_image: str) -> JSONDict:
    image = resolve_image(spec, default_image)
    rollout = spec["rollout"]
    pod_labels = {**spec.get("podLabels", {}), **labels.common_labels(parent.name, image)}
    if consumer.is_consumer(spec):
        # Lets the pods through the broker's NetworkPolicy.
        pod_labels[labels.BROKER_CLIENT] = "true"
    pod_security: JSONDict = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    pod_security.update(spec.get("securityContext", {}))
    pod_spec: JSONDict = {
        "automountServiceAccountToken": spec["automountServiceAccountToken"],
        "enableServiceLinks": False,
        "securityContext": pod_security,
        "terminationGracePeriodSeconds": termination_grace_seconds(spec),
        "containers": [_container(parent, spec, image)],
        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": spec["tmpSizeLimit"]}}],
    }
    optional = (
        "serviceAccountName",
        "imagePullSecrets",
        "nodeSelector",
        "tolerations",
        "affinity",
        "topologySpreadConstraints",
        "priorityClassName",
    )
    for key in optional:
        if key in spec:
            pod_spec[key] = spec[key]
    template_meta: JSONDict = {"labels": pod_labels}
    if spec.get("podAnnotations"):
        template_meta["annotations"] = dict(spec["podAnnotations"])
    return {
        "metadata": _metadata(parent, image),
        "spec": {
            "replicas": desired_replicas(spec),
            "revisionHistoryLimit": rollout["revisionHistoryLimit"],
            "progressDeadlineSeconds": rollout["progressDeadlineSeconds"],
            "minReadySeconds": rollout["minReadySeconds"],
            "selector": {"matchLabels": labels.selector_labels(parent.name)},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {
                    "maxSurge": rollout["maxSurge"],
                    "maxUnavailable": rollout["maxUnavailable"],
                },
            },
            "template": {"metadata": template_meta, "spec": pod_spec},
        },
    }


def render_service(parent: Parent, spec: JSONDict, default_image: str) -> JSONDict | None:
    """The Service in front of the pods; None for a consumer, which serves no traffic (its
    probes and /metrics are reached on the pods themselves)."""
    if consumer.is_consumer(spec):
        return None
    svc = spec["service"]
    port: JSONDict = {
        "name": PORT_NAME,
        "port": svc["port"],
        "targetPort": PORT_NAME,
        "protocol": "TCP",
        "appProtocol": "http",
    }
    if "nodePort" in svc:
        port["nodePort"] = svc["nodePort"]
    image = resolve_image(spec, default_image)
    return {
        "metadata": _metadata(parent, image, svc.get("annotations")),
        "spec": {
            "type": svc["type"],
            "selector": labels.selector_labels(parent.name),
            "ports": [port],
        },
    }


def render_hpa(parent: Parent, spec: JSONDict, default_image: str) -> JSONDict | None:
    """The autoscaler, targeting the TornadoService's scale subresource (None when disabled,
    and with metric concurrency or lag, where the operator's own autoscaler is the one writer).

    Targeting the TornadoService rather than the Deployment keeps one owner per field: the HPA
    writes spec.replicas of the TornadoService, the operator copies it to the Deployment, and
    nothing else ever writes Deployment replicas.
    """
    auto = spec["autoscaling"]
    if not auto["enabled"] or autoscaling_config.uses_own_autoscaler(spec):
        return None
    metrics: list[JSONDict] = []
    for resource, key in (
        ("cpu", "targetCPUUtilizationPercentage"),
        ("memory", "targetMemoryUtilizationPercentage"),
    ):
        if key in auto:
            metrics.append(
                {
                    "type": "Resource",
                    "resource": {
                        "name": resource,
                        "target": {"type": "Utilization", "averageUtilization": auto[key]},
                    },
                }
            )
    hpa_spec: JSONDict = {
        "scaleTargetRef": {"apiVersion": API_VERSION, "kind": KIND, "name": parent.name},
        "minReplicas": auto["minReplicas"],
        "maxReplicas": auto["maxReplicas"],
        "metrics": metrics,
    }
    if "behavior" in auto:
        hpa_spec["behavior"] = auto["behavior"]
    return {
        "metadata": _metadata(parent, resolve_image(spec, default_image)),
        "spec": hpa_spec,
    }


def max_possible_replicas(spec: JSONDict) -> int:
    auto = spec["autoscaling"]
    if auto["enabled"]:
        return int(auto["maxReplicas"])
    return int(spec["replicas"])


def min_guaranteed_replicas(spec: JSONDict) -> int:
    auto = spec["autoscaling"]
    if auto["enabled"]:
        return int(auto["minReplicas"])
    return int(spec["replicas"])


def wants_pdb(spec: JSONDict) -> bool:
    """An API gets a budget while more than one replica can run: with a single replica any
    budget either blocks node drains forever or protects nothing. A consumer only while at
    least two always run: when its only pod is evicted, nothing is lost (the stream keeps the
    messages, and what it had in flight is pending, claimed again), processing just waits."""
    if not spec["podDisruptionBudget"]["enabled"]:
        return False
    if consumer.is_consumer(spec):
        return min_guaranteed_replicas(spec) >= 2
    return max_possible_replicas(spec) > 1


def render_pdb(parent: Parent, spec: JSONDict, default_image: str) -> JSONDict | None:
    """A disruption budget, when `wants_pdb` says so."""
    pdb = spec["podDisruptionBudget"]
    if not wants_pdb(spec):
        return None
    pdb_spec: JSONDict = {
        "selector": {"matchLabels": labels.selector_labels(parent.name)},
        # Pods that are not ready yet (e.g. crash-looping) must never block a node drain.
        "unhealthyPodEvictionPolicy": "AlwaysAllow",
    }
    if "minAvailable" in pdb:
        pdb_spec["minAvailable"] = pdb["minAvailable"]
    else:
        pdb_spec["maxUnavailable"] = pdb.get("maxUnavailable", 1)
    return {
        "metadata": _metadata(parent, resolve_image(spec, default_image)),
        "spec": pdb_spec,
    }


def _namespace_selector(namespace: str) -> JSONDict:
    return {"matchLabels": {NAMESPACE_NAME_LABEL: namespace}}


def _service_peer(parent: Parent, namespace: str, name: str) -> JSONDict:
    """The pods of one TornadoService, as a NetworkPolicy peer."""
    peer: JSONDict = {"podSelector": {"matchLabels": labels.selector_labels(name)}}
    if namespace != parent.namespace:
        peer["namespaceSelector"] = _namespace_selector(namespace)
    return peer


def _http_port() -> JSONDict:
    return {"port": PORT_NAME, "protocol": "TCP"}


def render_network_policy(parent: Parent, spec: JSONDict, default_image: str) -> JSONDict | None:
    """Who may connect to the pods, and (with spec.networkPolicy.egress) where they may connect.

    Ingress, on the `http` port only: the TornadoServices that list this one in spec.upstreams
    (`parent.links.callers`), the operator's pods (they scrape /metrics), and spec.ingress.from.
    The node is not named: NetworkPolicy always allows a pod's own node (kubelet probes, and an
    operator or API server proxy on the host). With no peer at all the list of rules is empty,
    which admits nobody but the node: a rule without `from` would admit everyone.

    Egress: DNS (kube-dns, on 53 and its pods' named ports), the pods of each service upstream
    on their `http` port, and any address on each url upstream's port.

    A consumer (spec.consumer) has no Service and takes no calls: whoever lists it in
    spec.upstreams is not let in (its status says the upstream is not found); with egress, its
    pods may also connect to any address on the broker's port (spec.consumer.broker).
    """
    policy = spec["networkPolicy"]
    if not policy["enabled"]:
        return None
    links = parent.links
    is_consumer = consumer.is_consumer(spec)
    callers = () if is_consumer else links.callers
    peers: list[JSONDict] = [_service_peer(parent, ns, name) for ns, name in callers]
    if links.operator_namespace:
        peers.append(
            {
                "namespaceSelector": _namespace_selector(links.operator_namespace),
                "podSelector": {"matchLabels": dict(OPERATOR_POD_LABELS)},
            }
        )
    peers.extend(dict(peer) for peer in (spec.get("ingress") or {}).get("from") or [])
    ingress = [{"from": peers, "ports": [_http_port()]}] if peers else []
    policy_spec: JSONDict = {
        "podSelector": {"matchLabels": labels.selector_labels(parent.name)},
        "policyTypes": ["Ingress"],
        "ingress": ingress,
    }
    if policy["egress"]:
        dns_ports = [
            {"port": 53, "protocol": "UDP"},
            {"port": 53, "protocol": "TCP"},
            # After DNAT the port is the DNS pod's own: 53 in most clusters, 5353 in some, and
            # named dns / dns-tcp in the usual kube-dns manifests.
            {"port": "dns", "protocol": "UDP"},
            {"port": "dns-tcp", "protocol": "TCP"},
        ]
        egress: list[JSONDict] = [
            {
                "to": [
                    {
                        "namespaceSelector": _namespace_selector(DNS_NAMESPACE),
                        "podSelector": {"matchLabels": dict(DNS_POD_LABELS)},
                    }
                ],
                "ports": dns_ports,
            }
        ]
        found = composition.entries(spec, parent.namespace)
        services = sorted({e.target for e in found if e.target is not None})
        if services:
            egress.append(
                {
                    "to": [_service_peer(parent, ns, name) for ns, name in services],
                    "ports": [_http_port()],
                }
            )
        url_ports = {composition.url_port(e.url) for e in found if e.url is not None}
        if is_consumer:
            url_ports.add(consumer.broker_port(spec))
        if url_ports:
            # A NetworkPolicy cannot name a host: any address, on the URL's port only.
            egress.append(
                {"ports": [{"port": port, "protocol": "TCP"} for port in sorted(url_ports)]}
            )
        policy_spec["policyTypes"] = ["Ingress", "Egress"]
        policy_spec["egress"] = egress
    return {
        "metadata": _metadata(parent, resolve_image(spec, default_image)),
        "spec": policy_spec,
    }


def service_url(name: str, namespace: str, spec: JSONDict) -> str:
    port = spec["service"]["port"]
    host = f"{name}.{namespace}.svc"
    return f"http://{host}" if port == 80 else f"http://{host}:{port}"
