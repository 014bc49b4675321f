"""The chart without a cluster: lint, schemas, rendered objects, and the files around it."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from hack.kubetools import CHART, CRD_FILES, helm
from hack.paths import KUBERNETES_VERSION, REPO
from tests.chart.helm import (
    CI_VALUES,
    CRD_NAME,
    KUBE_VERSION,
    by_kind,
    pod_specs,
    render,
    render_error,
)

CI_IDS = [p.name.removesuffix("-values.yaml") for p in CI_VALUES]
RECOMMENDED = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/part-of",
    "helm.sh/chart",
)
# Custom resources the offline Kubernetes schemas cannot know.
CUSTOM_KINDS = {"ClusterKopfPeering", "KopfPeering", "ServiceMonitor"}


def crd_docs() -> dict[str, dict[str, Any]]:
    docs: dict[str, dict[str, Any]] = {}
    for f in CRD_FILES:
        for doc in yaml.safe_load_all(f.read_text()):
            if doc:
                docs[doc["metadata"]["name"]] = doc
    return docs


def test_ci_values_cover_the_main_variants() -> None:
    assert {"default", "namespaced", "ha", "no-crds"} <= set(CI_IDS)


@pytest.mark.parametrize("values", [None, *CI_VALUES], ids=["no-values", *CI_IDS])
def test_helm_lint_strict(values: Path | None) -> None:
    args = ["lint", "--strict", str(CHART)] + (["-f", str(values)] if values else [])
    out = helm(*args)
    assert "0 chart(s) failed" in out.stdout, out.stdout


@pytest.mark.parametrize("values", CI_VALUES, ids=CI_IDS)
def test_rendered_objects_match_kubernetes_schemas(values: Path) -> None:
    objs = render([values])
    assert objs, "nothing rendered"
    crds = crd_docs()
    for obj in objs:
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        if obj["kind"] in CUSTOM_KINDS:
            if obj["kind"] in ("ClusterKopfPeering", "KopfPeering"):
                plural = obj["kind"].lower() + "s"
                schema = crds[f"{plural}.kopf.dev"]["spec"]["versions"][0]["schema"]
                jsonschema.validate(obj, schema["openAPIV3Schema"])
            else:
                assert obj["apiVersion"] == "monitoring.coreos.com/v1", where
                assert obj["spec"]["endpoints"][0]["port"] == "http-metrics", where
            continue
        try:
            kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{values.name}: {where}: {exc.message} at {list(exc.path)}")


def test_kubernetes_validate_really_rejects() -> None:
    # The validation above must be able to fail: a typo in a rendered Deployment is caught.
    dep = by_kind(render(), "Deployment")[0]
    dep["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(dep, KUBE_VERSION, strict=True)


def test_crds_are_the_single_shipped_copy() -> None:
    files = crd_docs()
    assert CRD_NAME in files and {"clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev"} <= set(
        files
    )
    rendered = {o["metadata"]["name"]: o for o in by_kind(render(), "CustomResourceDefinition")}
    assert set(rendered) == set(files)
    for name, obj in rendered.items():
        meta = obj["metadata"]
        assert meta["annotations"]["helm.sh/resource-policy"] == "keep", name
        assert meta["labels"]["app.kubernetes.io/part-of"] == "tornado-operator", name
        # The file's own labels and annotations survive; apart from what the chart adds, the
        # rendered object is the file's object.
        want = files[name]
        for field in ("labels", "annotations"):
            assert want["metadata"].get(field, {}).items() <= meta[field].items(), (name, field)
        stripped = json.loads(json.dumps(obj))
        for field in ("labels", "annotations"):
            stripped["metadata"][field] = want["metadata"].get(field)
            if stripped["metadata"][field] is None:
                del stripped["metadata"][field]
        assert stripped == want, f"rendered {name} drifted from its file"


def test_crds_keep_and_enabled_switches() -> None:
    no_keep = by_kind(render(set_values=["crds.keep=false"]), "CustomResourceDefinition")
    assert no_keep and all("annotations" not in o["metadata"] for o in no_keep)
    assert not by_kind(render(set_values=["crds.enabled=false"]), "CustomResourceDefinition")


def test_operator_package_validates_against_the_same_crd_file() -> None:
    packaged = REPO / "operator" / "tornado_operator" / "crd.yaml"
    chart_copy = CHART / "files" / "crds" / f"{CRD_NAME}.yaml"
    assert packaged.resolve() == chart_copy.resolve(), "the operator must read the chart's file"


def _walk_schema(node: Any, path: str, found: list[str]) -> None:
    if isinstance(node, dict):
        if node.get("type") == "object" and path != "/properties/global":
            ap = node.get("additionalProperties")
            if ap is not False and not isinstance(ap, dict):
                found.append(path or "/")
        for key, child in node.items():
            _walk_schema(child, f"{path}/{key}", found)
    elif isinstance(node, list):
        for i, child in enumerate(node):
            _walk_schema(child, f"{path}/{i}", found)


def test_values_schema_is_closed_everywhere() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    open_objects: list[str] = []
    _walk_schema(schema, "", open_objects)
    assert not open_objects, f"objects without additionalProperties false/schema: {open_objects}"
    # And the defaults themselves are valid.
    jsonschema.validate(yaml.safe_load((CHART / "values.yaml").read_text()), schema)


# Kubernetes objects passed through as-is; their fields are Kubernetes', documented there.
PASSTHROUGH = {
    "updateStrategy",
    "podSecurityContext",
    "securityContext",
    "resources",
    "tests.resources",
}


def test_every_value_is_commented() -> None:
    lines = (CHART / "values.yaml").read_text().splitlines()
    stack: list[tuple[int, str]] = []
    missing = []
    for i, line in enumerate(lines):
        m = re.match(r"^( *)([A-Za-z][\w.-]*):", line)
        if not m:
            continue
        indent, key = len(m.group(1)), m.group(2)
        while stack and stack[-1][0] >= indent:
            stack.pop()
        parent = ".".join(k for _, k in stack)
        stack.append((indent, key))
        if any(parent == p or parent.startswith(p + ".") for p in PASSTHROUGH):
            continue
        j = i - 1
        while (
            j >= 0 and lines[j].strip().startswith("#") and not lines[j].strip().startswith("# --")
        ):
            j -= 1  # continuation lines of a comment
        if j < 0 or not lines[j].strip().startswith("# --"):
            missing.append(".".join(k for _, k in stack))
    assert not missing, f"values without a '# --' comment: {missing}"


WRONG_VALUES = [
    (["replicaCont=2"], "replicaCont"),
    (["operator.logFormat=xml"], "/operator/logFormat"),
    (["operator.logLevel=LOUD"], "/operator/logLevel"),
    (["image.pullPolicy=Sometimes"], "/image/pullPolicy"),
    (["crds.keep=yes"], "/crds/keep"),
    (["operator.watchNamespaces[0]=Bad_NS"], "/operator/watchNamespaces/0"),
    (["operator.healthPort=70000"], "/operator/healthPort"),
    (["replicaCount=2", "operator.peering.enabled=false"], "/operator/peering/enabled"),
    (["metrics.serviceMonitor.interval=often"], "/metrics/serviceMonitor/interval"),
    (["resources.limits.memory=lots"], "/resources/limits/memory"),
    (["operator.defaultServiceImage.digest=sha256:abc"], "/operator/defaultServiceImage/digest"),
    (["nodeSelector.disk=1"], "/nodeSelector/disk"),
    (["affinity.nodeAffinity.sometimes=true"], "sometimes"),
    (["securityContext.runAsUser=-1"], "/securityContext/runAsUser"),
    (["operator.peering.extra=1"], "extra"),
    (["tests.timeoutSeconds=1"], "/tests/timeoutSeconds"),
    # Not expressible in the schema (depends on two values): the template fails, naming it.
    (["operator.watchNamespaces[0]=a", "tests.namespace=b"], "tests.namespace"),
]


@pytest.mark.parametrize(("set_values", "named"), WRONG_VALUES, ids=[w[1] for w in WRONG_VALUES])
def test_wrong_value_is_rejected_naming_it(set_values: list[str], named: str) -> None:
    message = render_error(set_values)
    assert named in message, message


def test_labels_and_selectors() -> None:
    objs = render([CHART / "ci" / "ha-values.yaml"])
    for obj in objs:
        labels = obj["metadata"].get("labels", {})
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        for key in RECOMMENDED:
            assert key in labels, f"{where} lacks {key}"
        assert labels["app.kubernetes.io/instance"] == "t", where
    selector_sets = []
    for obj in objs:
        kind, spec = obj["kind"], obj.get("spec", {})
        if kind in ("Deployment", "PodDisruptionBudget"):
            selector_sets.append(spec["selector"]["matchLabels"])
        elif kind == "Service":
            selector_sets.append(spec["selector"])
        elif kind == "ServiceMonitor":
            selector_sets.append(spec["selector"]["matchLabels"])
    assert len(selector_sets) == 4
    for sel in selector_sets:
        assert sel == {
            "app.kubernetes.io/name": "tornado-operator",
            "app.kubernetes.io/instance": "t",
        }
    # The test pod must not match the operator's selector (its ReplicaSet would adopt it).
    test_pod = by_kind(objs, "Pod")[0]
    assert test_pod["metadata"]["labels"]["app.kubernetes.io/name"] != "tornado-operator"


def _restricted_violations(name: str, spec: dict[str, Any]) -> list[str]:
    """Pod Security "restricted" (v1.34) plus the project's read-only root filesystem rule."""
    bad = []
    psc = spec.get("securityContext", {})
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(flag):
            bad.append(f"{name}: {flag}")
    for vol in spec.get("volumes", []):
        kinds = set(vol) - {"name"}
        allowed = {"configMap", "emptyDir", "projected", "secret", "downwardAPI", "ephemeral"}
        if not kinds <= allowed | {"persistentVolumeClaim", "csi"}:
            bad.append(f"{name}: volume {vol['name']} {kinds}")
    if psc.get("seccompProfile", {}).get("type") not in ("RuntimeDefault", "Localhost"):
        bad.append(f"{name}: pod seccompProfile")
    for c in spec.get("initContainers", []) + spec["containers"]:
        sc = c.get("securityContext", {})
        cname = f"{name}/{c['name']}"
        if sc.get("allowPrivilegeEscalation") is not False:
            bad.append(f"{cname}: allowPrivilegeEscalation")
        if sc.get("capabilities", {}).get("drop") != ["ALL"]:
            bad.append(f"{cname}: capabilities.drop")
        if set(sc.get("capabilities", {}).get("add", [])) - {"NET_BIND_SERVICE"}:
            bad.append(f"{cname}: capabilities.add")
        if not sc.get("runAsNonRoot", psc.get("runAsNonRoot")):
            bad.append(f"{cname}: runAsNonRoot")
        uid = sc.get("runAsUser", psc.get("runAsUser"))
        if not isinstance(uid, int) or uid == 0:
            bad.append(f"{cname}: numeric non-root runAsUser")
        if sc.get("privileged"):
            bad.append(f"{cname}: privileged")
        if not sc.get("readOnlyRootFilesystem"):
            bad.append(f"{cname}: readOnlyRootFilesystem")
        if c.get("ports") and any(p.get("hostPort") for p in c["ports"]):
            bad.append(f"{cname}: hostPort")
    return bad


@pytest.mark.parametrize("values", CI_VALUES, ids=CI_IDS)
def test_pods_meet_pod_security_restricted(values: Path) -> None:
    specs = pod_specs(render([values]))
    assert specs
    problems = [p for name, spec in specs for p in _restricted_violations(name, spec)]
    assert not problems, problems


def test_operator_deployment() -> None:
    objs = render(
        set_values=[
            "operator.watchNamespaces={a,b}",
            "operator.defaultServiceImage.digest=sha256:" + "a" * 64,
            "operator.healthPort=9001",
            "image.tag=9.9.9",
        ]
    )
    dep = by_kind(objs, "Deployment")[0]
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["TORNADO_OPERATOR_NAMESPACES"] == "a,b"
    assert env["TORNADO_OPERATOR_DEFAULT_IMAGE"] == (
        "tornado-operator/service-template:0.1.0@sha256:" + "a" * 64
    )
    assert env["TORNADO_OPERATOR_HEALTH_PORT"] == "9001"
    assert env["TORNADO_OPERATOR_PEERING"] == "t-tornado-operator"
    assert "POD_ID" in env  # kopf's peering identity
    assert c["image"] == "tornado-operator/operator:9.9.9"
    assert c["command"] == ["/opt/venv/bin/tornado-operator", "run"]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert {p["name"]: p["containerPort"] for p in c["ports"]}["health"] == 9001
    assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]
    # Never more operator processes than replicas: no surge.
    assert dep["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 0, "maxUnavailable": 1}
    assert pod["automountServiceAccountToken"] is True
    sa = [
        o for o in by_kind(objs, "ServiceAccount") if o["metadata"]["name"] == "t-tornado-operator"
    ]
    assert sa[0]["automountServiceAccountToken"] is False


def test_pdb_and_spreading_only_with_more_than_one_replica() -> None:
    single = render()
    assert not by_kind(single, "PodDisruptionBudget")
    assert "affinity" not in by_kind(single, "Deployment")[0]["spec"]["template"]["spec"]
    ha = render(set_values=["replicaCount=2"])
    (pdb,) = by_kind(ha, "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1
    affinity = by_kind(ha, "Deployment")[0]["spec"]["template"]["spec"]["affinity"]
    assert "podAntiAffinity" in affinity


def test_metrics_service_and_servicemonitor_are_off_by_default() -> None:
    assert not by_kind(render(), "Service") and not by_kind(render(), "ServiceMonitor")
    objs = render(set_values=["metrics.serviceMonitor.enabled=true"])
    (svc,) = by_kind(objs, "Service")
    (sm,) = by_kind(objs, "ServiceMonitor")
    assert svc["spec"]["ports"][0]["targetPort"] == "http-metrics"
    assert sm["spec"]["endpoints"][0]["path"] == "/metrics"


def _rules(objs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for obj in objs:
        if obj["kind"] in ("Role", "ClusterRole"):
            where = (
                f"{obj['kind']}/{obj['metadata'].get('namespace', '')}/{obj['metadata']['name']}"
            )
            out += [(where, rule) for rule in obj["rules"]]
    return out


@pytest.mark.parametrize("values", CI_VALUES, ids=CI_IDS)
def test_rbac_has_no_wildcards_and_no_secrets(values: Path) -> None:
    for where, rule in _rules(render([values])):
        for field in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule.get(field, []), f"{where}: wildcard in {field}"
        assert "secrets" not in rule["resources"], f"{where}: Secrets"
        assert not {"escalate", "bind", "impersonate"} & set(rule["verbs"]), where


def test_rbac_scope_follows_watched_namespaces() -> None:
    cluster = render()
    (role,) = [o for o in by_kind(cluster, "ClusterRole")]
    assert any("tornadoservices" in r["resources"] for r in role["rules"])
    assert [o["metadata"]["name"] for o in by_kind(cluster, "Role")] == ["t-tornado-operator-test"]

    spaced = render([CHART / "ci" / "namespaced-values.yaml"])
    # Nothing cluster-wide when watching a list of namespaces.
    assert not by_kind(spaced, "ClusterRole") and not by_kind(spaced, "ClusterRoleBinding")
    operator_roles = [
        o for o in by_kind(spaced, "Role") if o["metadata"]["name"] == "t-tornado-operator"
    ]
    assert sorted(o["metadata"]["namespace"] for o in operator_roles) == ["team-a", "team-b"]
    bindings = [
        o for o in by_kind(spaced, "RoleBinding") if o["metadata"]["name"] == "t-tornado-operator"
    ]
    for b in bindings:
        assert b["subjects"] == [
            {"kind": "ServiceAccount", "name": "t-tornado-operator", "namespace": "tornado-system"}
        ]
    # The helm test follows the operator into a watched namespace.
    test_role = next(o for o in by_kind(spaced, "Role") if o["metadata"]["name"].endswith("-test"))
    assert test_role["metadata"]["namespace"] == "team-a"


def test_peering_objects() -> None:
    first_install = by_kind(render(), "ClusterKopfPeering")
    (peering,) = first_install
    ann = peering["metadata"]["annotations"]
    # Unknown kind at install time: a hook that the next upgrade adopts (Helm ownership metadata).
    assert ann["helm.sh/hook"] == "post-install"
    assert ann["meta.helm.sh/release-name"] == "t"
    assert ann["meta.helm.sh/release-namespace"] == "tornado-system"
    assert peering["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
    upgrade = by_kind(render(api_versions=["kopf.dev/v1"]), "ClusterKopfPeering")
    assert upgrade and "annotations" not in upgrade[0]["metadata"]

    spaced = render([CHART / "ci" / "namespaced-values.yaml"], api_versions=["kopf.dev/v1"])
    assert not by_kind(spaced, "ClusterKopfPeering")
    assert sorted(o["metadata"]["namespace"] for o in by_kind(spaced, "KopfPeering")) == [
        "team-a",
        "team-b",
    ]
    off = render(set_values=["operator.peering.enabled=false"])
    assert not by_kind(off, "ClusterKopfPeering")
    env = by_kind(off, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["env"]
    names = {e["name"]: e.get("value") for e in env}
    assert "TORNADO_OPERATOR_PEERING" not in names
    assert names["TORNADO_OPERATOR_STANDALONE"] == "true"


def test_test_hook_is_least_privilege() -> None:
    objs = render()
    hooks = [o for o in objs if o["metadata"].get("annotations", {}).get("helm.sh/hook") == "test"]
    assert {o["kind"] for o in hooks} == {
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "ConfigMap",
        "Pod",
    }
    (role,) = [o for o in hooks if o["kind"] == "Role"]
    assert role["rules"] == [
        {
            "apiGroups": ["tornado-operator.dev"],
            "resources": ["tornadoservices"],
            "verbs": ["create", "get", "delete"],
        },
        {"apiGroups": [""], "resources": ["services"], "verbs": ["list"]},
    ]
    (cm,) = [o for o in hooks if o["kind"] == "ConfigMap"]
    script = (CHART / "files" / "tests" / "smoke.py").read_text()
    assert cm["data"]["smoke.py"].strip() == script.strip()
    assert not by_kind(render(set_values=["tests.enabled=false"]), "Pod")


def test_chart_metadata() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["name"] == "tornado-operator"
    assert chart["kubeVersion"]
    # appVersion is the operator image tag the project builds.
    from hack import images

    assert f"tornado-operator/operator:{chart['appVersion']}" == images.OPERATOR_IMAGE
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    template_tag = values["operator"]["defaultServiceImage"]["tag"]
    assert f"tornado-operator/service-template:{template_tag}" == images.TEMPLATE_IMAGE
    ann = chart["annotations"]
    crds = yaml.safe_load(ann["artifacthub.io/crds"])
    crd = crd_docs()[CRD_NAME]
    assert crds[0]["name"] == CRD_NAME and crds[0]["kind"] == crd["spec"]["names"]["kind"]
    assert crds[0]["version"] in [v["name"] for v in crd["spec"]["versions"]]
    assert {i["image"] for i in yaml.safe_load(ann["artifacthub.io/images"])} == {
        images.OPERATOR_IMAGE,
        images.TEMPLATE_IMAGE,
    }
    for key in ("artifacthub.io/links", "artifacthub.io/changes", "artifacthub.io/crdsExamples"):
        assert yaml.safe_load(ann[key]), key


def test_operator_dockerfile_contract() -> None:
    text = (REPO / "operator" / "Dockerfile").read_text()
    lines = [
        ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")
    ]
    froms = [i for i, ln in enumerate(lines) if ln.startswith("FROM ")]
    assert len(froms) >= 2, "multi-stage"
    assert lines.index("ARG BASE_IMAGE=python:3.11-slim-bookworm") < froms[0]
    final = lines[froms[-1] :]
    assert "--no-index --find-links /wheels" in text
    users = [ln for ln in final if ln.startswith("USER ")]
    assert users and re.fullmatch(r"USER (\d+|\$\{UID\})(:(\d+|\$\{UID\}))?", users[-1])
    assert re.search(r"^ARG UID=\d+$", text, re.M) and not re.search(r"^ARG UID=0$", text, re.M)
    assert final[-1] == 'CMD ["/opt/venv/bin/tornado-operator", "run"]'
    assert "COPY --from=build /opt/venv /opt/venv" in final
    assert not any(re.search(r"apt-get|gcc|build-essential", ln) for ln in final)
    assert ":latest" not in text


def test_kind_config_pins_the_node_image_and_binds_loopback() -> None:
    cfg = yaml.safe_load((REPO / "kind-config.yaml").read_text())
    assert cfg["kind"] == "Cluster" and cfg["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    assert cfg["networking"]["apiServerAddress"] == "127.0.0.1"
    minor = ".".join(KUBERNETES_VERSION.split(".")[:2])
    for node in cfg["nodes"]:
        assert re.fullmatch(
            rf"kindest/node:v{re.escape(minor)}\.\d+@sha256:[0-9a-f]{{64}}", node["image"]
        ), node["image"]
        for mapping in node.get("extraPortMappings", []):
            assert mapping["listenAddress"] == "127.0.0.1", mapping


def test_packaged_chart_carries_the_crds_and_the_test(tmp_path: Path) -> None:
    helm("package", str(CHART), "-d", str(tmp_path))
    (tgz,) = tmp_path.glob("tornado-operator-*.tgz")
    out = helm("template", "t", str(tgz), "--kube-version", KUBE_VERSION).stdout
    objs = [o for o in yaml.safe_load_all(out) if o]
    assert len(by_kind(objs, "CustomResourceDefinition")) == len(crd_docs())
    assert by_kind(objs, "Pod")  # the helm test, with its script from files/tests/
