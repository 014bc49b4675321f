"""Consumers (spec.consumer): validation naming the field, rendering (a Deployment with the env
contract and probes, no Service, a PDB only where it helps, no HPA with metric lag), and status
(the StreamAvailable condition, Degraded and its Event, no URL)."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest
from tornado_operator import DEFAULT_IMAGE, assessment, consumer, crd, rendering, validation
from tornado_operator.children import Children, render_children
from tornado_operator.consumer import Reading

from tests.invalid_corpus import CORPUS, HELLO, merged

PARENT = rendering.Parent(name="billing", namespace="apps", uid="u-1")
BLOCK = {"broker": "redis://redis.broker.svc:6379/0", "stream": "orders", "group": "billing"}
LAG = {"enabled": True, "metric": "lag", "targetLagPerReplica": 100}


def spec(**fields: Any) -> dict[str, Any]:
    return validation.validated_spec({"consumer": dict(BLOCK), **fields})


def render(**fields: Any) -> Children:
    return render_children(PARENT, spec(**fields), DEFAULT_IMAGE)


def env_of(children: Children) -> dict[str, str]:
    [c] = children.deployment["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value") for e in c["env"]}


# -- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"autoscaling": LAG},
        {"autoscaling": {**LAG, "minReplicas": 1, "maxReplicas": 20}},
        {"autoscaling": {"enabled": True}},  # cpu: the HPA, fine for a consumer
        {"consumer": {**BLOCK, "deadLetterStream": "orders-dead"}},
        {"consumer": {**BLOCK, "broker": "redis://10.0.0.7"}},
        {"env": [{"name": "CONCURRENCY", "value": "8"}]},
    ],
)
def test_valid_consumers(fields: dict[str, Any]) -> None:
    given = {"consumer": dict(BLOCK), **fields}
    assert validation.problems(validation.validated_spec(given)) == []


CONSUMER_CEL_CASES = [
    c
    for c in CORPUS
    if c["layer"] == "cel" and c["id"].startswith(("consumer-", "autoscaling-lag-"))
]


def test_corpus_has_the_consumer_rules() -> None:
    ids = {c["id"] for c in CORPUS}
    assert {
        "consumer-without-stream",
        "consumer-broker-with-password",
        "consumer-with-service",
        "consumer-with-concurrency",
        "consumer-env-reserved",
        "autoscaling-lag-without-consumer",
        "autoscaling-lag-without-target",
        "autoscaling-target-lag-with-cpu",
    } <= ids
    assert len(CONSUMER_CEL_CASES) >= 6


def _crd_messages() -> set[str]:
    schema = crd.spec_schema()
    nodes = (
        schema,
        schema["properties"]["autoscaling"],
        schema["properties"]["consumer"],
    )
    return {rule["message"] for node in nodes for rule in node.get("x-kubernetes-validations", [])}


@pytest.mark.parametrize("case", CONSUMER_CEL_CASES, ids=lambda c: str(c["id"]))
def test_operator_refuses_what_the_consumer_cel_rules_refuse(case: dict[str, Any]) -> None:
    # A cluster with an older CRD lets such a spec through: InvalidSpec naming the field, with
    # the CRD's own words.
    given = merged(HELLO["spec"], case["spec"])
    assert validation.problems(validation.apply_defaults(given, crd.spec_schema())) == []
    with pytest.raises(validation.InvalidSpecError) as info:
        validation.validated_spec(given)
    assert [p.field for p in info.value.problems] == [case["field"]]
    [problem] = info.value.problems
    assert f"{problem.field} {problem.message}" in _crd_messages() or any(
        problem.message in m for m in _crd_messages()
    )


def test_explicit_default_service_is_harmless_for_a_consumer() -> None:
    # The API server defaults spec.service to {type: ClusterIP, port: 80}: indistinguishable
    # from leaving it out, so it must pass.
    assert consumer.spec_problems(spec(service={"type": "ClusterIP", "port": 80})) == []


# -- rendering -------------------------------------------------------------------------------


def test_a_consumer_has_a_deployment_and_no_service() -> None:
    children = render()
    assert children["Service"] is None
    # Its NetworkPolicy (composition) admits the operator's scrapes of /metrics, no callers.
    assert [m["kind"] for m in children.all()] == ["Deployment", "NetworkPolicy"]
    for manifest in render(replicas=3, autoscaling=LAG).all():
        kubernetes_validate.validate(manifest, "1.34.0", strict=True)


def test_env_contract() -> None:
    env = env_of(render(consumer={**BLOCK, "deadLetterStream": "orders-dead"}))
    assert env["REDIS_URL"] == "redis://redis.broker.svc:6379/0"
    assert (env["STREAM"], env["GROUP"], env["DEAD_LETTER_STREAM"]) == (
        "orders",
        "billing",
        "orders-dead",
    )
    assert env["PORT"] == "8080"  # the health and /metrics port
    assert "DEAD_LETTER_STREAM" not in env_of(render())
    assert consumer.RESERVED_ENV == (
        "REDIS_URL",
        "STREAM",
        "GROUP",
        "DEAD_LETTER_STREAM",
        "CONSUMER_NAME",
    )
    # The CRD's rule lists the same names.
    rules = [r["rule"] for r in crd.spec_schema()["x-kubernetes-validations"]]
    assert any(all(f"'{name}'" in rule for name in consumer.RESERVED_ENV) for rule in rules)


def test_user_env_comes_after_the_operators() -> None:
    names = list(env_of(render(env=[{"name": "CONCURRENCY", "value": "8"}])))
    assert names.index("GROUP") < names.index("CONCURRENCY")


def test_probes_on_the_health_port() -> None:
    [c] = render().deployment["spec"]["template"]["spec"]["containers"]
    assert c["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert c["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "http", "scheme": "HTTP"}
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"


@pytest.mark.parametrize(
    ("fields", "pdb"),
    [
        ({"replicas": 1}, False),
        ({"replicas": 2}, True),
        # Up to 8 may run, but only 1 always does: no budget (an API would get one).
        ({"autoscaling": {**LAG, "minReplicas": 1, "maxReplicas": 8}}, False),
        ({"autoscaling": {**LAG, "minReplicas": 2, "maxReplicas": 8}}, True),
        ({"replicas": 3, "podDisruptionBudget": {"enabled": False}}, False),
    ],
)
def test_pdb_only_while_two_always_run(fields: dict[str, Any], pdb: bool) -> None:
    assert (render(**fields)["PodDisruptionBudget"] is not None) is pdb


def test_api_pdb_rule_is_unchanged() -> None:
    api = validation.validated_spec({"autoscaling": {"enabled": True, "minReplicas": 1}})
    assert render_children(PARENT, api, DEFAULT_IMAGE)["PodDisruptionBudget"] is not None


def test_no_hpa_with_metric_lag() -> None:
    assert render(autoscaling=LAG)["HorizontalPodAutoscaler"] is None
    hpa = render(autoscaling={"enabled": True})["HorizontalPodAutoscaler"]
    assert hpa is not None and hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"


def test_replicas_clamped_to_the_lag_bounds() -> None:
    dep = render(replicas=30, autoscaling={**LAG, "maxReplicas": 8}).deployment
    assert dep["spec"]["replicas"] == 8


# -- status ----------------------------------------------------------------------------------


def ready_deployment() -> dict[str, Any]:
    return {
        "metadata": {"generation": 1},
        "spec": {"replicas": 1},
        "status": {
            "observedGeneration": 1,
            "replicas": 1,
            "readyReplicas": 1,
            "updatedReplicas": 1,
            "availableReplicas": 1,
        },
    }


def assess(reading: Reading | None) -> assessment.Assessment:
    return assessment.assess(
        name="billing",
        namespace="apps",
        spec=spec(),
        default_image=DEFAULT_IMAGE,
        deployment=ready_deployment(),
        pods=[],
        blocker=None,
        stream=reading,
    )


def conds(found: assessment.Assessment) -> dict[str, tuple[bool, str]]:
    return {c.type: (c.status, c.reason) for c in found.conditions}


def test_stream_found() -> None:
    found = assess(Reading("StreamFound", "group billing on stream orders", 1.0, 5, 2, 9))
    assert conds(found) == {
        "Ready": (True, "ReplicasReady"),
        "Progressing": (False, "RolloutComplete"),
        "Degraded": (False, "AsExpected"),
        "StreamAvailable": (True, "StreamFound"),
    }
    assert found.fields["url"] is None  # no Service: a URL left from before is removed


def test_not_read_yet_is_not_degraded() -> None:
    found = assess(None)
    assert conds(found)["StreamAvailable"] == (False, "BrokerNotReadYet")
    assert conds(found)["Degraded"] == (False, "AsExpected")


@pytest.mark.parametrize(
    "reason", ["StreamNotFound", "GroupNotFound", "NotAStream", "BrokerUnreachable"]
)
def test_broker_trouble_is_degraded_with_an_event(reason: str) -> None:
    reading = Reading(reason, f"{reason}: details", 1.0)
    found = assess(reading)
    # The pods run and are ready (they wait for their stream): Degraded, still Ready.
    assert conds(found)["Ready"] == (True, "ReplicasReady")
    assert conds(found)["Degraded"] == (True, reason)
    assert conds(found)["StreamAvailable"] == (False, reason)
    before = [
        {"type": "Degraded", "status": "False", "reason": "AsExpected"},
        {"type": "Ready", "status": "True", "reason": "ReplicasReady"},
    ]
    events = assessment.transition_events(before, found.conditions)
    assert [(e.type, e.reason) for e in events] == [("Warning", reason)]
    # Once Degraded with that reason, the next reads bring no Event: no storm.
    again = [
        {"type": c.type, "status": c.status_text, "reason": c.reason} for c in found.conditions
    ]
    assert assessment.transition_events(again, found.conditions) == []


def test_permanent_and_temporary_are_told_apart() -> None:
    assert Reading("StreamNotFound", "", 0.0).permanent
    assert Reading("GroupNotFound", "", 0.0).permanent
    assert not Reading("BrokerUnreachable", "", 0.0).permanent
    assert Reading("StreamFound", "", 0.0, lag=3, pending=4).backlog == 7
    assert Reading("StreamFound", "", 0.0, lag=None, pending=4).backlog is None


def test_an_api_has_no_stream_condition() -> None:
    found = assessment.assess(
        name="hello",
        namespace="apps",
        spec=validation.validated_spec({}),
        default_image=DEFAULT_IMAGE,
        deployment=ready_deployment(),
        pods=[],
        blocker=None,
    )
    assert "StreamAvailable" not in conds(found)
    assert found.fields["url"] == "http://hello.apps.svc"


def test_before_the_first_read_the_last_status_carries_over() -> None:
    # An operator restart: the reconcile at resume comes before the daemon's first read; the
    # condition and Degraded must not flap (and post their Events again) meanwhile.
    from tornado_operator.reconcile import _stream

    old = [
        {"type": "Ready", "status": "True", "reason": "ReplicasReady", "message": "1/1"},
        {"type": "Degraded", "status": "True", "reason": "StreamNotFound", "message": "gone"},
        {"type": "StreamAvailable", "status": "False", "reason": "StreamNotFound", "message": "x"},
    ]
    carried = _stream(None, old)
    assert carried is not None and carried.reason == "StreamNotFound" and carried.message == "x"
    found = assess(carried)
    assert conds(found)["Degraded"] == (True, "StreamNotFound")
    assert assessment.transition_events(old, found.conditions) == []
    fresh = Reading("StreamFound", "ok", 1.0, 0, 0, 0)
    assert _stream(fresh, old) is fresh
    assert _stream(None, []) is None
    not_yet = [{"type": "StreamAvailable", "status": "False", "reason": "BrokerNotReadYet"}]
    assert _stream(None, not_yet) is None
