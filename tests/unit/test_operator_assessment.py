"""Status assessment: conditions, reasons and Events from Deployment and pod observations."""

from __future__ import annotations

from typing import Any

from tornado_operator import DEFAULT_IMAGE, assessment, conditions, validation
from tornado_operator.errors import Problem

SPEC = validation.validated_spec({"replicas": 2})


def deployment(
    *,
    replicas: int = 2,
    ready: int = 2,
    updated: int = 2,
    available: int = 2,
    current: int = 2,
    generation: int = 3,
    observed: int = 3,
    conds: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "metadata": {"generation": generation},
        "spec": {"replicas": replicas},
        "status": {
            "observedGeneration": observed,
            "replicas": current,
            "readyReplicas": ready,
            "updatedReplicas": updated,
            "availableReplicas": available,
            "conditions": conds or [],
        },
    }


def pod(name: str = "hello-1", **container: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "status": {"containerStatuses": [{"name": "app", "image": "bad/image:1", **container}]},
    }


def assess(
    dep: dict[str, Any] | None,
    pods: list[dict[str, Any]] | None = None,
    blocker: Problem | None = None,
    spec: dict[str, Any] | None = SPEC,
) -> assessment.Assessment:
    return assessment.assess(
        name="hello",
        namespace="apps",
        spec=spec,
        default_image=DEFAULT_IMAGE,
        deployment=dep,
        pods=pods or [],
        blocker=blocker,
    )


def by_type(a: assessment.Assessment) -> dict[str, conditions.Condition]:
    return {c.type: c for c in a.conditions}


def test_all_ready() -> None:
    a = assess(deployment())
    c = by_type(a)
    assert (c["Ready"].status, c["Ready"].reason) == (True, "ReplicasReady")
    assert (c["Progressing"].status, c["Progressing"].reason) == (False, "RolloutComplete")
    assert (c["Degraded"].status, c["Degraded"].reason) == (False, "AsExpected")
    assert a.fields["replicaSummary"] == "2/2"
    assert a.fields["selector"] == (
        "app.kubernetes.io/instance=hello,app.kubernetes.io/managed-by=tornado-operator,"
        "app.kubernetes.io/name=hello"
    )
    assert a.fields["url"] == "http://hello.apps.svc"
    assert a.fields["image"] == DEFAULT_IMAGE


def test_rolling_update_is_not_ready_yet() -> None:
    c = by_type(assess(deployment(current=3, updated=1, available=2)))
    assert (c["Ready"].status, c["Ready"].reason) == (False, "ReplicasNotReady")
    assert "older version" in c["Ready"].message
    assert (c["Progressing"].status, c["Progressing"].reason) == (True, "RollingUpdate")


def test_deployment_not_yet_observed() -> None:
    c = by_type(assess(deployment(generation=4, observed=3)))
    assert c["Ready"].status is False
    assert c["Progressing"].status is True


def test_scaled_to_zero_is_ready() -> None:
    c = by_type(assess(deployment(replicas=0, ready=0, updated=0, available=0, current=0)))
    assert (c["Ready"].status, c["Ready"].reason) == (True, "ScaledToZero")


def test_image_pull_failure() -> None:
    bad = pod(
        state={"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image"}}
    )
    c = by_type(assess(deployment(ready=0, available=0), [bad]))
    assert (c["Degraded"].status, c["Degraded"].reason) == (True, "ImagePullFailed")
    assert "bad/image:1" in c["Degraded"].message and "spec.image" in c["Degraded"].message
    assert (c["Ready"].status, c["Ready"].reason) == (False, "ImagePullFailed")


def test_crash_loop() -> None:
    crashing = pod(
        state={"waiting": {"reason": "CrashLoopBackOff"}},
        restartCount=4,
        lastState={"terminated": {"exitCode": 3, "reason": "Error"}},
    )
    c = by_type(assess(deployment(ready=0, available=0), [crashing]))
    assert (c["Degraded"].status, c["Degraded"].reason) == (True, "CrashLoopBackOff")
    assert (
        "exit code 3" in c["Degraded"].message
        and "kubectl logs hello-1 --previous" in c["Degraded"].message
    )


def test_restarting_without_backoff_yet_counts_as_crash_loop() -> None:
    restarting = pod(state={"terminated": {"exitCode": 1}}, restartCount=3)
    assert (
        by_type(assess(deployment(ready=0, available=0), [restarting]))["Degraded"].reason
        == "CrashLoopBackOff"
    )
    running = pod(state={"running": {}}, restartCount=5, ready=True)
    assert by_type(assess(deployment(), [running]))["Degraded"].status is False


def test_container_config_error() -> None:
    bad = pod(
        state={
            "waiting": {
                "reason": "CreateContainerConfigError",
                "message": 'configmap "cfg" not found',
            }
        }
    )
    c = by_type(assess(deployment(ready=0, available=0), [bad]))
    assert c["Degraded"].reason == "ContainerConfigError" and "cfg" in c["Degraded"].message


def test_terminating_pods_are_ignored() -> None:
    old = pod(state={"waiting": {"reason": "CrashLoopBackOff"}})
    old["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert by_type(assess(deployment(), [old]))["Degraded"].status is False


def test_degraded_pod_while_old_version_still_serves() -> None:
    # A broken new version during a rollout: old pods serve, so Ready reflects the rollout.
    bad = pod(state={"waiting": {"reason": "ErrImagePull"}})
    c = by_type(assess(deployment(current=3, updated=1, available=2), [bad]))
    assert c["Degraded"].status is True and c["Ready"].status is False


def test_replica_failure_from_deployment() -> None:
    dep = deployment(
        ready=0,
        available=0,
        conds=[
            {
                "type": "ReplicaFailure",
                "status": "True",
                "message": 'pods "x" is forbidden: violates PodSecurity',
            }
        ],
    )
    c = by_type(assess(dep))
    assert c["Degraded"].reason == "ReplicaFailure" and "PodSecurity" in c["Degraded"].message


def test_progress_deadline() -> None:
    dep = deployment(
        ready=1,
        available=1,
        conds=[
            {
                "type": "Progressing",
                "status": "False",
                "reason": "ProgressDeadlineExceeded",
                "message": "x",
            }
        ],
    )
    c = by_type(assess(dep))
    assert c["Degraded"].reason == "ProgressDeadlineExceeded"
    assert (c["Progressing"].status, c["Progressing"].reason) == (False, "ProgressDeadlineExceeded")


def test_unschedulable_pods() -> None:
    p = {
        "metadata": {"name": "p"},
        "status": {
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": "0/1 nodes",
                }
            ]
        },
    }
    c = by_type(assess(deployment(ready=1, available=1, current=2), [p]))
    assert (c["Progressing"].status, c["Progressing"].reason) == (True, "PodsUnschedulable")


def test_operator_blocker_wins() -> None:
    blocker = Problem(reason="ResourceConflict", message="a Deployment named hello already exists")
    c = by_type(assess(None, blocker=blocker))
    for t in ("Ready", "Degraded"):
        assert c[t].reason == "ResourceConflict"
    assert c["Ready"].status is False and c["Degraded"].status is True
    assert c["Progressing"].status is False


def test_invalid_spec_has_no_url() -> None:
    a = assess(None, blocker=Problem(reason="InvalidSpec", message="spec.port: ..."), spec=None)
    assert "url" not in a.fields and a.fields["replicaSummary"] == "0/0"


def test_autoscaling_ready_with_minimum_available() -> None:
    spec = validation.validated_spec(
        {"replicas": 4, "autoscaling": {"enabled": True, "minReplicas": 2}}
    )
    c = by_type(
        assess(deployment(replicas=4, ready=3, available=3, updated=4, current=4), spec=spec)
    )
    assert c["Ready"].status is True
    assert c["Progressing"].reason == "Scaling"


def test_condition_merge_keeps_transition_time_until_status_flips() -> None:
    first = conditions.merge([], [conditions.Condition("Ready", False, "A", "m")], 1, "T1")
    assert first[0]["lastTransitionTime"] == "T1" and first[0]["observedGeneration"] == 1
    same = conditions.merge(first, [conditions.Condition("Ready", False, "B", "n")], 2, "T2")
    assert same[0]["lastTransitionTime"] == "T1" and same[0]["reason"] == "B"
    assert same[0]["observedGeneration"] == 2
    flipped = conditions.merge(same, [conditions.Condition("Ready", True, "C", "o")], 2, "T3")
    assert flipped[0]["lastTransitionTime"] == "T3" and flipped[0]["status"] == "True"


def test_condition_shape() -> None:
    [c] = conditions.merge(
        [],
        [conditions.Condition("Degraded", True, "ImagePullFailed", "x")],
        5,
        conditions.now_rfc3339(),
    )
    assert set(c) == {
        "type",
        "status",
        "observedGeneration",
        "lastTransitionTime",
        "reason",
        "message",
    }
    assert c["lastTransitionTime"].endswith("Z")


def test_transition_events() -> None:
    healthy = conditions.merge([], by_type(assess(deployment())).values(), 1, "T")
    bad = pod(state={"waiting": {"reason": "ImagePullBackOff"}})
    degraded = by_type(assess(deployment(ready=0, available=0), [bad])).values()
    events = assessment.transition_events(healthy, list(degraded))
    assert [(e.type, e.reason) for e in events] == [("Warning", "ImagePullFailed")]
    degraded_conds = conditions.merge(healthy, list(degraded), 1, "T")
    assert assessment.transition_events(degraded_conds, list(degraded)) == []  # no repeats
    recovered = assessment.transition_events(
        degraded_conds, list(by_type(assess(deployment())).values())
    )
    assert [(e.type, e.reason) for e in recovered] == [("Normal", "Recovered"), ("Normal", "Ready")]
    rolling = by_type(assess(deployment(current=3, updated=1))).values()
    assert [(e.type, e.reason) for e in assessment.transition_events(healthy, list(rolling))] == [
        ("Normal", "NotReady")
    ]
