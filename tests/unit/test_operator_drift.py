"""No-op detection: when a live child already says what the rendered manifest says."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from tornado_operator import DEFAULT_IMAGE, drift, validation
from tornado_operator import observed as observed_mod
from tornado_operator.children import render_children
from tornado_operator.observed import Observed
from tornado_operator.rendering import Parent

JSONDict = dict[str, Any]
PARENT = Parent(name="web", namespace="ns", uid="u-1")


def rendered(spec: JSONDict | None = None) -> JSONDict:
    return render_children(PARENT, validation.validated_spec(spec or {}), DEFAULT_IMAGE).deployment


def as_served(manifest: JSONDict) -> JSONDict:
    """What the API server gives back: our fields plus defaults, status and server metadata."""
    live = copy.deepcopy(manifest)
    live["metadata"].update(uid="d-1", resourceVersion="7", generation=1, managedFields=[])
    live["metadata"]["annotations"]["deployment.kubernetes.io/revision"] = "1"
    live["spec"]["template"]["spec"]["dnsPolicy"] = "ClusterFirst"
    container = live["spec"]["template"]["spec"]["containers"][0]
    container["terminationMessagePath"] = "/dev/termination-log"
    container["ports"][0]["protocol"] = "TCP"
    live["status"] = {"replicas": 1, "readyReplicas": 1}
    return live


def test_the_hash_is_stable_and_recorded() -> None:
    a, b = rendered(), rendered()
    assert drift.recorded_hash(a) == drift.recorded_hash(b) == drift.rendered_hash(a)
    assert drift.recorded_hash(rendered({"replicas": 3})) != drift.recorded_hash(a)


def test_a_served_copy_of_the_same_manifest_is_up_to_date() -> None:
    manifest = rendered()
    assert drift.up_to_date(manifest, as_served(manifest))


def test_nothing_live_is_not_up_to_date() -> None:
    assert not drift.up_to_date(rendered(), None)


def test_a_spec_change_is_seen_by_its_hash() -> None:
    old = as_served(rendered({"podAnnotations": {"a": "1"}}))
    # Removing a field: every other rendered field is still present live; only the hash tells.
    new = copy.deepcopy(rendered())
    del new["metadata"]["annotations"][drift.HASH_ANNOTATION]
    assert drift.contains(new, old)
    assert not drift.up_to_date(rendered(), old)


@pytest.mark.parametrize(
    "edit",
    [
        lambda d: d["spec"]["template"]["spec"]["containers"][0].update(image="hand/edit:1"),
        lambda d: d["spec"].update(replicas=5),
        lambda d: d["metadata"]["labels"].pop("app.kubernetes.io/instance"),
        lambda d: d["spec"]["template"]["spec"]["containers"][0]["env"].pop(),
        lambda d: d["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"].update(
            memory="1Gi"
        ),
        lambda d: d["spec"]["template"]["spec"].update(automountServiceAccountToken=True),
    ],
)
def test_a_hand_edit_is_drift(edit: Any) -> None:
    manifest = rendered()
    live = as_served(manifest)
    edit(live)
    assert not drift.up_to_date(manifest, live)


def test_quantities_compare_by_value() -> None:
    manifest = rendered({"resources": {"requests": {"cpu": "0.5", "memory": "1024Mi"}}})
    live = as_served(manifest)
    live["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"] = {
        "cpu": "500m",
        "memory": "1Gi",
    }
    assert drift.up_to_date(manifest, live)
    live["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] = "501m"
    assert not drift.up_to_date(manifest, live)
    assert drift.quantity("1.5Gi") == 1.5 * 1024**3
    assert drift.quantity("1e3") == 1000 and drift.quantity("web") is None


def test_zero_values_the_server_omits_are_not_drift() -> None:
    manifest = rendered()
    live = as_served(manifest)
    assert live["spec"]["minReadySeconds"] == 0
    del live["spec"]["minReadySeconds"]  # int32 with omitempty: the server drops a 0
    del live["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["initialDelaySeconds"]
    assert drift.up_to_date(manifest, live)
    # A false pointer boolean is kept by the server; its absence is a real change.
    del live["spec"]["template"]["spec"]["automountServiceAccountToken"]
    assert not drift.up_to_date(manifest, live)


def test_only_quantity_fields_compare_by_value() -> None:
    assert not drift.contains({"image": "1.0"}, {"image": "1"})
    assert not drift.contains({"enabled": True}, {"enabled": 1})


def test_observed_prefers_the_fresher_copy() -> None:
    watched: dict[tuple[str, str, str], JSONDict] = {}
    observed = Observed(lambda *key: watched.get(key), lambda ns, name: [])
    old = {"metadata": {"name": "web", "namespace": "ns", "resourceVersion": "5"}}
    new = {"metadata": {"name": "web", "namespace": "ns", "resourceVersion": "9"}}
    watched["Deployment", "ns", "web"] = old
    observed.wrote("Deployment", new)  # our apply returned rv 9; the watch still has rv 5
    assert observed.get("Deployment", "ns", "web") == new
    assert observed.written_version("Deployment", "ns", "web") == 9
    watched["Deployment", "ns", "web"] = new  # the watch caught up: the copy is dropped
    assert observed.get("Deployment", "ns", "web") is new
    assert observed.written_version("Deployment", "ns", "web") is None
    observed.wrote("Deployment", {**new, "metadata": {**new["metadata"], "resourceVersion": "12"}})
    observed.deleted("Deployment", "ns", "web")
    del watched["Deployment", "ns", "web"]
    assert observed.get("Deployment", "ns", "web") is None


def test_a_write_is_kept_only_until_the_watch_delivers_it() -> None:
    observed = Observed(lambda *key: None, lambda ns, name: [])

    def answer(version: str) -> JSONDict:
        meta = {"name": "web", "namespace": "ns", "resourceVersion": version}
        return {"metadata": {**meta, "managedFields": [{"manager": "x"}]}, "spec": {}}

    observed.wrote("Deployment", answer("9"))
    kept = observed.get("Deployment", "ns", "web")
    assert kept is not None and "managedFields" not in kept["metadata"]  # kept slim
    assert not observed.seen("Deployment", "ns", "web", 8)  # the watch is behind: keep it
    assert observed.written_version("Deployment", "ns", "web") == 9
    assert observed.seen("Deployment", "ns", "web", 9)  # our own echo, and now dropped
    assert observed.written_version("Deployment", "ns", "web") is None
    observed.wrote("Deployment", answer("12"))
    assert not observed.seen("Deployment", "ns", "web", 14)  # someone's later change
    assert observed.written_version("Deployment", "ns", "web") is None
    assert not observed.seen("Service", "ns", "web", 3)  # nothing written: not an echo


def test_a_terminating_namespace_is_remembered_for_older_objects_only() -> None:
    observed = Observed(lambda *key: None, lambda ns, name: [])
    assert not observed.terminating("ns", 0.0)
    observed.saw_terminating("ns")
    assert observed.terminating("ns", 0.0)
    assert not observed.terminating("ns", 4102444800.0)  # made after: a new namespace
    assert not observed.terminating("other", 0.0)


def test_kept_copies_share_their_short_strings() -> None:
    # Two objects decoded apart, as two watch events are.
    text = json.dumps(
        {
            "kind": "Deployment",
            "metadata": {"name": "web", "managedFields": [{"manager": "x"}]},
            "spec": {"template": {"spec": {"containers": [{"imagePullPolicy": "IfNotPresent"}]}}},
            "note": "x" * (observed_mod.SHARED_STRING_MAX + 1),
        }
    )
    a, b = observed_mod.slim(json.loads(text)), observed_mod.slim(json.loads(text))
    assert a == json.loads(text) | {"metadata": {"name": "web"}}
    (ka,) = [k for k in a["spec"] if k == "template"]
    (kb,) = [k for k in b["spec"] if k == "template"]
    assert ka is kb  # one key string for every copy

    def policy(o: dict[str, Any]) -> str:
        return str(o["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"])

    assert policy(a) is policy(b)
    assert a["note"] == b["note"] and a["note"] is not b["note"]  # long values stay apart


def test_kept_copies_leave_out_the_annotations_that_copy_a_spec() -> None:
    kopf_key = f"tornado-operator.dev/{observed_mod.KOPF_DIFFBASE_KEY}"
    body = {
        "metadata": {
            "name": "web",
            "annotations": {
                kopf_key: '{"spec": {}}',
                "kubectl.kubernetes.io/last-applied-configuration": "{}",
                drift.HASH_ANNOTATION: "abc",
                "team": "shop",
            },
        },
        "spec": {"replicas": 1},
    }
    kept = observed_mod.slim(body)
    assert kept["metadata"]["annotations"] == {drift.HASH_ANNOTATION: "abc", "team": "shop"}
    assert kopf_key in body["metadata"]["annotations"]  # the event itself is left as it was
