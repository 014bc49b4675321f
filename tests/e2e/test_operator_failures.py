"""Bad input the API server cannot see: Degraded with a clear reason, a Warning Event, no storm,
and never a touch on objects the operator does not own."""

from __future__ import annotations

import json
import time

from tests.e2e.operator_support import (
    CHILD_KIND_NAMES,
    api_requests,
    apply,
    condition,
    get,
    kubectl,
    reconciles,
    tornadoservice,
    wait_condition,
    wait_event,
    wait_ready,
)

pytest_plugins = ["tests.e2e.operator_fixtures"]

# How long an error must stay quiet: a tight retry loop would reconcile many times in it, while
# the slow retry of a conflict (60 s) and a permanent error (never) reconcile not once.
QUIET_WINDOW = 8.0


def _applies(code: str | None = None) -> int:
    """Child applies the operator sent so far (answered or not), of one HTTP code or any."""
    sent = api_requests(verbs=frozenset({"apply"}), kinds=CHILD_KIND_NAMES, ok=False)
    return sum(n for (_verb, _kind, c), n in sent.items() if code in (None, c))


def test_existing_deployment_not_owned_is_left_alone(operator_ns: str) -> None:
    ns = operator_ns
    kubectl(
        "create", "deployment", "taken", "-n", ns, "--image=example/someone-elses:1", "--replicas=0"
    )
    foreign = get("deployment", "taken", ns)
    assert foreign is not None
    temporary_before = reconciles("temporary")
    apply(tornadoservice("taken", replicas=1), ns)

    cond = wait_condition("taken", ns, "Degraded", "True", "ResourceConflict", timeout=60)
    assert "Deployment named taken already exists" in cond["message"]
    ready = condition(get("tornadoservice", "taken", ns), "Ready")
    assert (
        ready is not None and ready["status"] == "False" and ready["reason"] == "ResourceConflict"
    )
    wait_event("taken", ns, "ResourceConflict", "Warning")
    # No retry storm: counted from the operator's own metrics (every reconcile and every API
    # request it makes), not from Events, which are posted only when a condition changes.
    attempts, applies = reconciles(), _applies()
    time.sleep(QUIET_WINDOW)
    assert reconciles() - attempts == 0, "the conflict was retried within the slow-retry delay"
    assert _applies() - applies == 0, "an apply was attempted while a child conflicts"
    assert reconciles("temporary") - temporary_before <= 2, "retried more than twice in all"
    after = get("deployment", "taken", ns)
    assert after is not None
    # Not its resourceVersion: the Deployment controller writes the foreign one's status on its
    # own schedule (on kind it did so after `foreign` was read). Its spec is what we must not touch.
    assert after["metadata"]["generation"] == foreign["metadata"]["generation"]
    assert after["spec"] == foreign["spec"]
    assert not any(m["manager"] == "tornado-operator" for m in after["metadata"]["managedFields"])
    assert get("service", "taken", ns) is None, "nothing is applied while a child conflicts"

    # Once the other Deployment is gone the operator takes over on its slow retry.
    kubectl("delete", "deployment", "taken", "-n", ns)
    wait_ready("taken", ns, timeout=240)
    dep = get("deployment", "taken", ns)
    assert dep is not None and dep["metadata"]["ownerReferences"][0]["kind"] == "TornadoService"


def test_image_that_never_pulls(operator_ns: str) -> None:
    ns = operator_ns
    apply(
        tornadoservice(
            "nopull", image="tornado-operator/does-not-exist:0.0.1", imagePullPolicy="Never"
        ),
        ns,
    )
    cond = wait_condition("nopull", ns, "Degraded", "True", "ImagePullFailed", timeout=120)
    assert "does-not-exist" in cond["message"] and "spec.image" in cond["message"]
    ready = condition(get("tornadoservice", "nopull", ns), "Ready")
    assert ready is not None and ready["status"] == "False"
    wait_event("nopull", ns, "ImagePullFailed", "Warning")

    # Fixing the spec recovers.
    kubectl(
        "patch",
        "tsvc",
        "nopull",
        "-n",
        ns,
        "--type=json",
        "-p",
        json.dumps(
            [
                {"op": "remove", "path": "/spec/image"},
                {"op": "remove", "path": "/spec/imagePullPolicy"},
            ]
        ),
    )
    wait_ready("nopull", ns)
    wait_condition("nopull", ns, "Degraded", "False")
    wait_event("nopull", ns, "Recovered", "Normal")


def test_crash_loop(operator_ns: str) -> None:
    ns = operator_ns
    apply(
        tornadoservice(
            "crashy",
            command=["/opt/venv/bin/python", "-c", "raise SystemExit(3)"],
            probes={"startup": {"enabled": False}},
        ),
        ns,
    )
    cond = wait_condition("crashy", ns, "Degraded", "True", "CrashLoopBackOff", timeout=180)
    assert "exit code 3" in cond["message"]
    wait_event("crashy", ns, "CrashLoopBackOff", "Warning")
    assert (condition(get("tornadoservice", "crashy", ns), "Ready") or {})["status"] == "False"


def test_pods_admitted_under_restricted_pod_security(operator_ns: str) -> None:
    ns = operator_ns
    kubectl(
        "label",
        "namespace",
        ns,
        "pod-security.kubernetes.io/enforce=restricted",
        "pod-security.kubernetes.io/enforce-version=latest",
        "--overwrite",
    )
    apply(tornadoservice("strict", replicas=1), ns)
    obj = wait_ready("strict", ns)
    assert obj["status"]["readyReplicas"] == 1
    dep = get("deployment", "strict", ns)
    assert dep is not None
    assert not any(c.get("type") == "ReplicaFailure" for c in dep["status"].get("conditions", []))
    # And the check is real: a pod that breaks "restricted" is refused in this namespace.
    bad = kubectl(
        "run",
        "rooty",
        "-n",
        ns,
        "--image=" + "tornado-operator/service-template:0.1.0",
        "--overrides",
        json.dumps({"spec": {"securityContext": {"runAsUser": 0}}}),
        check=False,
    )
    assert bad.returncode != 0 and "restricted" in bad.stderr


def test_child_rejected_by_the_api_server_is_permanent(operator_ns: str) -> None:
    # The API server accepts any pod annotation key in the TornadoService, but refuses the
    # Deployment (HTTP 422): a permanent error, shown once, never retried in a loop.
    ns = operator_ns
    permanent_before, rejected_before = reconciles("permanent"), _applies(code="422")
    apply(tornadoservice("rejected", podAnnotations={"bad annotation key": "x"}), ns)
    cond = wait_condition("rejected", ns, "Degraded", "True", "ApplyRejected", timeout=60)
    assert "422" in cond["message"]
    wait_event("rejected", ns, "ApplyRejected", "Warning")
    # Permanent errors are not retried: counted from the operator's metrics (reconciles and the
    # API requests it made), not from Events.
    attempts, applies = reconciles(), _applies()
    assert reconciles("permanent") - permanent_before == 1, "one permanent failure, not more"
    assert _applies(code="422") - rejected_before == 1, "the rejected apply was sent once"
    time.sleep(QUIET_WINDOW)
    assert reconciles() - attempts == 0, "a permanent error was reconciled again"
    assert _applies() - applies == 0, "a permanent error was applied again"
    obj = get("tornadoservice", "rejected", ns)
    assert obj is not None and not obj["metadata"].get("finalizers")
