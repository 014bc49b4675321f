"""Pure status assessment: what the live Deployment and pods say about a TornadoService.

Turns observations into the status block (counts, selector, URL) and the three conditions,
and lists the Events a change of condition deserves.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any

from tornado_operator import conditions, consumer, labels, rendering
from tornado_operator.conditions import DEGRADED, PROGRESSING, READY, Condition
from tornado_operator.errors import Problem

JSONDict = dict[str, Any]

IMAGE_PULL_REASONS = frozenset(
    {
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "ErrImageNeverPull",
        "RegistryUnavailable",
    }
)
CONFIG_REASONS = frozenset(
    {"CreateContainerConfigError", "CreateContainerError", "RunContainerError"}
)
# A container that has restarted this often and is not running now is crash-looping even
# when the kubelet's back-off has not yet renamed the state to CrashLoopBackOff.
CRASH_RESTARTS = 3


UNSCHEDULABLE = "PodsUnschedulable"


@dataclasses.dataclass(frozen=True)
class Event:
    type: str  # Normal or Warning
    reason: str
    message: str


@dataclasses.dataclass(frozen=True)
class Assessment:
    conditions: tuple[Condition, ...]
    fields: JSONDict  # status fields other than conditions and observedGeneration

    def _holds(self, type_: str) -> bool:
        return any(c.type == type_ and c.status for c in self.conditions)

    @property
    def ready(self) -> bool:
        return self._holds(READY)

    @property
    def degraded(self) -> bool:
        return self._holds(DEGRADED)

    @property
    def news(self) -> bool:
        """Whether this says something a user must hear about now: Ready, Degraded, or pods
        that no node takes (while the rest of a rollout is just under way)."""
        return (
            self.ready
            or self.degraded
            or any(c.type == PROGRESSING and c.reason == UNSCHEDULABLE for c in self.conditions)
        )


def _container_statuses(pod: JSONDict) -> list[JSONDict]:
    status = pod.get("status") or {}
    return list(status.get("initContainerStatuses") or []) + list(
        status.get("containerStatuses") or []
    )


def pod_problem(pod: JSONDict) -> Problem | None:
    """Image pull failures, crash loops and bad container config seen on one pod."""
    name = (pod.get("metadata") or {}).get("name", "?")
    for cs in _container_statuses(pod):
        waiting = (cs.get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason") or ""
        detail = waiting.get("message") or ""
        if reason in IMAGE_PULL_REASONS:
            image = cs.get("image") or "?"
            return Problem(
                reason="ImagePullFailed",
                message=f"pod {name} cannot pull image {image} ({reason}): {detail}".rstrip(": ")
                + ". Check spec.image, spec.imagePullSecrets and that the image exists.",
            )
        if reason in CONFIG_REASONS:
            where = f"pod {name} cannot start container {cs.get('name')}"
            return Problem(
                reason="ContainerConfigError",
                message=f"{where} ({reason}): {detail}".rstrip(": "),
            )
        terminated = (cs.get("lastState") or {}).get("terminated") or {}
        running = "running" in (cs.get("state") or {})
        crashing = reason == "CrashLoopBackOff" or (
            int(cs.get("restartCount") or 0) >= CRASH_RESTARTS and not running
        )
        if crashing:
            exit_code = terminated.get("exitCode", "?")
            why = terminated.get("reason") or "Error"
            return Problem(
                reason="CrashLoopBackOff",
                message=f"container {cs.get('name')} of pod {name} keeps exiting (last exit code "
                f"{exit_code}, {why}; {cs.get('restartCount', 0)} restarts). Check its logs: "
                f"kubectl logs {name} --previous",
            )
    return None


def _unschedulable(pod: JSONDict) -> str | None:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        scheduled = cond.get("type") == "PodScheduled" and cond.get("status") == "False"
        if scheduled and cond.get("reason") == "Unschedulable":
            return str(cond.get("message") or "no node fits the pod")
    return None


def _deployment_condition(deployment: JSONDict, type_: str) -> JSONDict | None:
    for cond in (deployment.get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_:
            return cond  # type: ignore[no-any-return]
    return None


def _live_pods(pods: Iterable[JSONDict]) -> list[JSONDict]:
    return [p for p in pods if not (p.get("metadata") or {}).get("deletionTimestamp")]


def assess(
    *,
    name: str,
    namespace: str,
    spec: JSONDict | None,
    default_image: str,
    deployment: JSONDict | None,
    pods: Sequence[JSONDict],
    blocker: Problem | None,
    stream: consumer.Reading | None = None,
) -> Assessment:
    """Conditions and status fields from what is live. `spec` is None when it is invalid.
    `stream` is the operator's last read of a consumer's group (None: not read yet).

    `blocker` is a problem the operator itself found before or while applying the children
    (invalid spec, a same-named object it does not own, a rejected apply): it wins over what
    the pods say."""
    dstatus = (deployment or {}).get("status") or {}
    if deployment is not None:
        desired = int((deployment.get("spec") or {}).get("replicas", 1))
    elif spec is not None:
        desired = rendering.desired_replicas(spec)
    else:
        desired = 0
    replicas = int(dstatus.get("replicas") or 0)
    ready = int(dstatus.get("readyReplicas") or 0)
    updated = int(dstatus.get("updatedReplicas") or 0)
    available = int(dstatus.get("availableReplicas") or 0)

    fields: JSONDict = {
        "replicas": replicas,
        "readyReplicas": ready,
        "updatedReplicas": updated,
        "replicaSummary": f"{ready}/{desired}",
        "selector": labels.selector_string(name),
    }
    if spec is not None:
        fields["image"] = rendering.resolve_image(spec, default_image)
        # A consumer has no Service: None removes a URL left from before it became one.
        fields["url"] = (
            None if consumer.is_consumer(spec) else rendering.service_url(name, namespace, spec)
        )

    live = _live_pods(pods)
    problem = blocker
    if problem is None:
        for pod in live:
            problem = pod_problem(pod)
            if problem:
                break
    is_consumer = spec is not None and consumer.is_consumer(spec)
    if problem is None and is_consumer and stream is not None and not stream.ok:
        # Pods may run and be ready while they have nothing to read: Degraded, not unready.
        problem = Problem(reason=stream.reason, message=stream.message)
    if problem is None and deployment is not None:
        failure = _deployment_condition(deployment, "ReplicaFailure")
        if failure and failure.get("status") == "True":
            problem = Problem(
                reason="ReplicaFailure",
                message=str(failure.get("message") or "pods cannot be created"),
            )
        progressing = _deployment_condition(deployment, "Progressing")
        if (
            problem is None
            and progressing
            and progressing.get("status") == "False"
            and progressing.get("reason") == "ProgressDeadlineExceeded"
        ):
            problem = Problem(
                reason="ProgressDeadlineExceeded",
                message="the rollout made no progress within "
                f"spec.rollout.progressDeadlineSeconds: {progressing.get('message', '')}".rstrip(
                    ": "
                ),
            )

    generation_seen = deployment is not None and int(dstatus.get("observedGeneration") or 0) >= int(
        (deployment.get("metadata") or {}).get("generation") or 0
    )
    old_pods = replicas > updated
    autoscaling = spec is not None and spec["autoscaling"]["enabled"]
    needed = (
        min(desired, int(spec["autoscaling"]["minReplicas"])) if autoscaling and spec else desired
    )
    rolled_out = generation_seen and not old_pods and updated >= desired and available >= desired
    serving = generation_seen and not old_pods and available >= needed

    if problem is not None:
        degraded = Condition(DEGRADED, True, problem.reason, problem.message)
    else:
        degraded = Condition(DEGRADED, False, "AsExpected", "no problems detected")

    if problem is not None and (blocker is not None or not serving):
        ready_c = Condition(READY, False, problem.reason, problem.message)
    elif deployment is None:
        ready_c = Condition(READY, False, "DeploymentMissing", "the Deployment does not exist yet")
    elif desired == 0:
        ready_c = Condition(READY, True, "ScaledToZero", "spec.replicas is 0: no pods are wanted")
    elif serving:
        ready_c = Condition(
            READY,
            True,
            "ReplicasReady",
            f"{available}/{desired} replicas of the current version are available",
        )
    else:
        ready_c = Condition(
            READY,
            False,
            "ReplicasNotReady",
            f"{available}/{desired} replicas of the current version are available"
            + (f"; {replicas - updated} pods of an older version remain" if old_pods else ""),
        )

    unschedulable = next((m for p in live if (m := _unschedulable(p))), None)
    if blocker is not None:
        progressing_c = Condition(PROGRESSING, False, blocker.reason, blocker.message)
    elif problem is not None and problem.reason == "ProgressDeadlineExceeded":
        progressing_c = Condition(PROGRESSING, False, problem.reason, problem.message)
    elif rolled_out:
        progressing_c = Condition(
            PROGRESSING, False, "RolloutComplete", f"all {desired} replicas run the current version"
        )
    elif unschedulable is not None:
        progressing_c = Condition(PROGRESSING, True, UNSCHEDULABLE, unschedulable)
    elif old_pods or not generation_seen:
        progressing_c = Condition(
            PROGRESSING,
            True,
            "RollingUpdate",
            f"{updated}/{desired} replicas updated, {available} available",
        )
    else:
        progressing_c = Condition(
            PROGRESSING, True, "Scaling", f"{available}/{desired} replicas available"
        )
    found: tuple[Condition, ...] = (ready_c, progressing_c, degraded)
    if is_consumer:
        found += (consumer.condition(stream),)
    return Assessment(found, fields)


def transition_events(before: Iterable[JSONDict], after: Sequence[Condition]) -> list[Event]:
    """Events for condition changes worth a user's attention."""
    old = list(before)
    events: list[Event] = []
    new = {c.type: c for c in after}
    old_degraded = conditions.find(old, DEGRADED)
    deg = new.get(DEGRADED)
    if deg is not None:
        was_true = old_degraded is not None and old_degraded.get("status") == "True"
        if deg.status and (not was_true or (old_degraded or {}).get("reason") != deg.reason):
            events.append(Event("Warning", deg.reason, deg.message))
        elif not deg.status and was_true:
            events.append(
                Event(
                    "Normal",
                    "Recovered",
                    f"no longer degraded ({(old_degraded or {}).get('reason')})",
                )
            )
    old_ready = conditions.find(old, READY)
    rdy = new.get(READY)
    if rdy is not None:
        was_ready = old_ready is not None and old_ready.get("status") == "True"
        # Only a change the status went through: a first status that is already Ready says
        # it all (with the condition's lastTransitionTime), and a create stays one write less.
        if rdy.status and not was_ready and old_ready is not None:
            events.append(Event("Normal", "Ready", rdy.message))
        elif not rdy.status and was_ready and not (deg and deg.status):
            events.append(Event("Normal", "NotReady", rdy.message))
    return events
