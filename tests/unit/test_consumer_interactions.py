"""Consumers (issue 12) among the other parts of the operator: composition (issue 11), the broker
(deploy/broker) and the consumer template's contract (service_template/consumer)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from tornado_operator import DEFAULT_IMAGE, consumer, labels, rendering, validation
from tornado_operator.children import Children, render_children
from tornado_operator.composition import health
from tornado_operator.composition import spec as composition

ROOT = Path(__file__).resolve().parents[2]
PARENT = rendering.Parent(name="billing", namespace="apps", uid="u-1")
BLOCK = {"broker": "redis://redis.broker.svc:6379/0", "stream": "orders", "group": "billing"}


def spec(**fields: Any) -> dict[str, Any]:
    return validation.validated_spec({"consumer": dict(BLOCK), **fields})


def render(parent: rendering.Parent = PARENT, **fields: Any) -> Children:
    return render_children(parent, spec(**fields), DEFAULT_IMAGE)


def pod_template(children: Children) -> dict[str, Any]:
    template: dict[str, Any] = children.deployment["spec"]["template"]
    return template


def container(children: Children) -> dict[str, Any]:
    [c] = pod_template(children)["spec"]["containers"]
    return c


# -- the broker ------------------------------------------------------------------------------


def test_consumer_pods_carry_the_label_the_brokers_network_policy_admits() -> None:
    assert pod_template(render())["metadata"]["labels"][labels.BROKER_CLIENT] == "true"
    api = render_children(PARENT, validation.validated_spec({}), DEFAULT_IMAGE)
    assert labels.BROKER_CLIENT not in pod_template(api)["metadata"]["labels"]
    # spec.podLabels cannot take it away.
    off = render(podLabels={labels.BROKER_CLIENT: "false"})
    assert pod_template(off)["metadata"]["labels"][labels.BROKER_CLIENT] == "true"
    # The broker's manifest admits exactly that label.
    docs = list(yaml.safe_load_all((ROOT / "deploy/broker/redis/redis.yaml").read_text()))
    [policy] = [d for d in docs if d and d.get("kind") == "NetworkPolicy"]
    peers = [p for rule in policy["spec"]["ingress"] for p in rule.get("from", [])]
    assert any(
        (p.get("podSelector") or {}).get("matchLabels") == {labels.BROKER_CLIENT: "true"}
        for p in peers
    )


@pytest.mark.parametrize(
    ("broker", "port"),
    [
        ("redis://redis.broker.svc:6379/0", 6379),
        ("redis://redis.broker.svc", 6379),
        ("redis://redis.broker.svc/2", 6379),
        ("redis://redis:7000", 7000),
        ("redis://redis:7001/1", 7001),
    ],
)
def test_broker_port(broker: str, port: int) -> None:
    assert consumer.broker_port({"consumer": {**BLOCK, "broker": broker}}) == port


def test_a_consumers_egress_policy_lets_it_reach_the_broker() -> None:
    plain = render()["NetworkPolicy"]
    assert plain is not None and "egress" not in plain["spec"]  # egress stays opt-in
    found = render(
        consumer={**BLOCK, "broker": "redis://redis.broker.svc:7000"},
        networkPolicy={"egress": True},
        upstreams=[{"name": "ext", "url": "https://api.example:8443/"}],
    )["NetworkPolicy"]
    assert found is not None
    rules = found["spec"]["egress"]
    assert {"ports": [{"port": 7000, "protocol": "TCP"}, {"port": 8443, "protocol": "TCP"}]} in (
        rules
    )
    api = render_children(
        PARENT, validation.validated_spec({"networkPolicy": {"egress": True}}), DEFAULT_IMAGE
    )["NetworkPolicy"]
    assert api is not None and len(api["spec"]["egress"]) == 1  # DNS only


def test_a_consumer_lets_in_no_caller_only_the_operator_and_spec_ingress() -> None:
    links = rendering.Links(callers=(("apps", "web"),), operator_namespace="ops")
    parent = rendering.Parent(name="billing", namespace="apps", uid="u-1", links=links)
    frm = [{"namespaceSelector": {"matchLabels": {"team": "debug"}}}]
    policy = render(parent, ingress={"from": frm})["NetworkPolicy"]
    assert policy is not None
    [rule] = policy["spec"]["ingress"]
    assert rule["from"] == [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ops"}},
            "podSelector": {"matchLabels": rendering.OPERATOR_POD_LABELS},
        },
        *frm,
    ]
    # An API with the same callers lets them in.
    api = render_children(parent, validation.validated_spec({}), DEFAULT_IMAGE)["NetworkPolicy"]
    assert api is not None
    caller = api["spec"]["ingress"][0]["from"][0]
    assert caller["podSelector"]["matchLabels"][labels.NAME] == "web"


# -- composition: a consumer is no upstream ----------------------------------------------------


def test_a_consumer_named_as_an_upstream_is_not_found_with_the_reason() -> None:
    caller = validation.validated_spec(
        {
            "upstreams": [
                {"name": "billing", "service": "billing"},
                {"name": "web", "service": "web"},
            ]
        }
    )
    objects: dict[tuple[str, str], dict[str, Any]] = {
        ("apps", "billing"): {"metadata": {"name": "billing"}, "spec": {"consumer": dict(BLOCK)}},
        ("apps", "web"): {"metadata": {"name": "web"}, "spec": {}, "status": {"url": "http://w"}},
    }
    entries = composition.entries(caller, "apps")
    found = composition.resolve(entries, lambda ns, n: objects.get((ns, n)))
    assert [e.name for e in found.consumers] == ["billing"] and found.missing == ()
    # Its URL is the default one (nothing answers there), never a crash.
    assert found.url_of == {"billing": "http://billing.apps.svc", "web": "http://w"}
    items = health.status_items(entries, found, None)
    assert items[0]["state"] == health.NOT_FOUND
    assert "is a consumer" in items[0]["message"]
    cond = health.condition(items)
    assert (cond.status, cond.reason) == (False, health.REASON_NOT_FOUND)
    [event] = health.transition_events([], items, None, cond)
    assert event.reason == health.REASON_NOT_FOUND and "is a consumer" in event.message


def test_a_consumer_may_call_upstreams() -> None:
    env = {
        e["name"]: e.get("value")
        for e in container(render(upstreams=[{"name": "w", "service": "web"}]))["env"]
    }
    assert env[composition.ENV_NAME].startswith("w=http://web.apps.svc")
    assert env["STREAM"] == "orders"


# -- the consumer template's contract --------------------------------------------------------


def test_consumer_name_is_the_pods_name() -> None:
    env = {e["name"]: e for e in container(render())["env"]}
    assert env["CONSUMER_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    problems = validation.validated_spec  # the operator refuses a spec.env CONSUMER_NAME
    with pytest.raises(validation.InvalidSpecError, match="CONSUMER_NAME"):
        problems({"consumer": dict(BLOCK), "env": [{"name": "CONSUMER_NAME", "value": "x"}]})


def test_the_grace_period_covers_the_shutdown_timeout_and_one_fetch() -> None:
    shutdown = {"preStopSleepSeconds": 0, "drainDelaySeconds": 0, "timeoutSeconds": 20}
    pod = pod_template(render(shutdown=shutdown))["spec"]
    assert pod["terminationGracePeriodSeconds"] == 20 + 1 + 5  # BLOCK_MS 1000 by default
    slow = render(shutdown=shutdown, env=[{"name": "BLOCK_MS", "value": "4500"}])
    assert pod_template(slow)["spec"]["terminationGracePeriodSeconds"] == 20 + 5 + 5
    api = render_children(PARENT, validation.validated_spec({"shutdown": shutdown}), DEFAULT_IMAGE)
    assert pod_template(api)["spec"]["terminationGracePeriodSeconds"] == 20 + 5


def _template_config() -> Any:
    sys.path.insert(0, str(ROOT / "service_template/consumer"))
    try:
        return importlib.import_module("hello_consumer.config")
    finally:
        sys.path.pop(0)


def test_the_rendered_env_is_what_the_consumer_template_reads() -> None:
    config = _template_config()
    rendered = container(
        render(
            consumer={**BLOCK, "deadLetterStream": "orders-dead"}, shutdown={"timeoutSeconds": 7}
        )
    )
    environ = {e["name"]: e["value"] for e in rendered["env"] if "value" in e}
    environ["CONSUMER_NAME"] = "billing-6d5f-abcde"  # what the kubelet resolves the fieldRef to
    loaded = config.load(environ)
    assert (loaded.redis_url, loaded.stream, loaded.group) == (
        "redis://redis.broker.svc:6379/0",
        "orders",
        "billing",
    )
    assert (loaded.dead_letter_stream, loaded.consumer_name) == (
        "orders-dead",
        "billing-6d5f-abcde",
    )
    assert (loaded.port, loaded.shutdown_timeout) == (8080, 7)
    # Every variable the operator sets is one the template reads (DRAIN_DELAY_SECONDS aside:
    # the API template's, a consumer has no endpoints to drain from).
    read = set(config._SETTINGS)
    assert {e["name"] for e in rendered["env"]} - read == {"DRAIN_DELAY_SECONDS"}
    grace = pod_template(render(shutdown={"timeoutSeconds": 7}))["spec"]
    assert (
        grace["terminationGracePeriodSeconds"]
        >= loaded.shutdown_timeout + loaded.block_ms / 1000 + 5
    )


def test_the_default_probes_are_paths_the_consumer_template_serves() -> None:
    sys.path.insert(0, str(ROOT / "service_template/consumer"))
    try:
        server = importlib.import_module("hello_consumer.server")
    finally:
        sys.path.pop(0)
    app = server.make_app(None, None, None)
    served = {rule.matcher.regex.pattern.rstrip("$") for rule in app.wildcard_router.rules}
    c = container(render())
    probed = {c[f"{kind}Probe"]["httpGet"]["path"] for kind in ("liveness", "readiness", "startup")}
    assert probed == {"/livez", "/readyz", "/startupz"} and probed <= served
