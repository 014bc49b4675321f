"""spec.upstreams and spec.networkPolicy rendered: UPSTREAMS, the NetworkPolicy, URL resolution."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
from tornado_operator import DEFAULT_IMAGE, labels, rendering, validation
from tornado_operator.children import Children, render_children
from tornado_operator.composition import spec as composition

ROOT = Path(__file__).resolve().parents[2]
UID = "0b7d6a3e-1111-2222-3333-444455556666"
K8S_VERSION = "1.34.0"


def parent(**links: Any) -> rendering.Parent:
    return rendering.Parent(name="a", namespace="shop", uid=UID, links=rendering.Links(**links))


def render(spec: dict[str, Any], **links: Any) -> Children:
    return render_children(parent(**links), validation.validated_spec(spec), DEFAULT_IMAGE)


def env_of(children: Children) -> dict[str, str]:
    [c] = children.deployment["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value") for e in c["env"]}


def policy(children: Children) -> dict[str, Any]:
    found = children["NetworkPolicy"]
    assert found is not None
    return found


UPSTREAMS = [
    {"name": "b", "service": "b"},
    {"name": "inventory", "service": "stock", "namespace": "warehouse", "path": "/levels"},
    {"name": "weather", "url": "https://api.weather.example/v1", "timeoutSeconds": 0.5},
    {"name": "c", "service": "c", "retries": 0, "timeoutSeconds": 2},
]


def test_upstreams_env_from_resolved_urls_in_spec_order() -> None:
    urls = (("b", "http://b.shop.svc:8000"), ("inventory", "http://stock.warehouse.svc/levels"))
    env = env_of(render({"upstreams": UPSTREAMS}, upstream_urls=urls))
    assert env["UPSTREAMS"] == (
        "b=http://b.shop.svc:8000,"
        "inventory=http://stock.warehouse.svc/levels,"
        "weather=https://api.weather.example/v1 timeout=0.5,"
        # Not resolved (as rendering sees it): the URL it has with the default Service port.
        "c=http://c.shop.svc timeout=2 retries=0"
    )


def test_no_upstreams_no_env() -> None:
    assert "UPSTREAMS" not in env_of(render({}))
    assert "UPSTREAMS" not in env_of(render({"upstreams": []}))
    # UPSTREAMS written by hand (no spec.upstreams) is left as it was.
    hand = render({"env": [{"name": "UPSTREAMS", "value": "x=http://x.example/"}]})
    assert env_of(hand)["UPSTREAMS"] == "x=http://x.example/"


def test_the_template_parses_what_is_rendered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT / "service_template"))
    hello_config = importlib.import_module("hello.config")
    env = env_of(render({"upstreams": UPSTREAMS}))
    parsed = hello_config.load({"UPSTREAMS": env["UPSTREAMS"]}).upstreams
    assert [(u.name, u.url, u.timeout, u.retries) for u in parsed] == [
        ("b", "http://b.shop.svc", None, None),
        ("inventory", "http://stock.warehouse.svc/levels", None, None),
        ("weather", "https://api.weather.example/v1", 0.5, None),
        ("c", "http://c.shop.svc", 2.0, 0),
    ]


def test_resolution_reads_status_url_and_names_what_is_missing() -> None:
    objects = {
        ("shop", "b"): {"metadata": {"name": "b"}, "status": {"url": "http://b.shop.svc:8000"}},
        ("warehouse", "stock"): {"metadata": {"name": "stock"}},  # no status yet
        ("shop", "c"): {"metadata": {"name": "c", "deletionTimestamp": "2026-01-01T00:00:00Z"}},
    }
    entries = composition.entries(validation.validated_spec({"upstreams": UPSTREAMS}), "shop")
    found = composition.resolve(entries, lambda ns, n: objects.get((ns, n)))
    assert found.url_of == {
        "b": "http://b.shop.svc:8000",
        "inventory": "http://stock.warehouse.svc/levels",
        "weather": "https://api.weather.example/v1",
        "c": "http://c.shop.svc",
    }
    assert [e.name for e in found.missing] == ["c"]  # being deleted counts as gone


def test_network_policy_on_by_default_admits_only_callers_and_the_operator() -> None:
    found = policy(
        render(
            {},
            callers=(("other", "front"), ("shop", "web")),
            operator_namespace="tornado-operator",
        )
    )
    assert found["metadata"]["name"] == "a" and found["metadata"]["namespace"] == "shop"
    assert found["metadata"]["ownerReferences"][0]["uid"] == UID
    spec = found["spec"]
    assert spec["podSelector"] == {"matchLabels": labels.selector_labels("a")}
    assert spec["policyTypes"] == ["Ingress"]
    assert "egress" not in spec
    [rule] = spec["ingress"]
    assert rule["ports"] == [{"port": "http", "protocol": "TCP"}]
    assert rule["from"] == [
        {
            "podSelector": {"matchLabels": labels.selector_labels("front")},
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "other"}},
        },
        # Same namespace: the pod selector alone (a NetworkPolicy's own namespace).
        {"podSelector": {"matchLabels": labels.selector_labels("web")}},
        {
            "namespaceSelector": {
                "matchLabels": {"kubernetes.io/metadata.name": "tornado-operator"}
            },
            "podSelector": {
                "matchLabels": {
                    "app.kubernetes.io/part-of": "tornado-operator",
                    "app.kubernetes.io/component": "operator",
                }
            },
        },
    ]


def test_without_any_peer_the_policy_admits_nobody() -> None:
    # A rule without `from` would admit everyone: no peer means no rule at all.
    spec = policy(render({}))["spec"]
    assert spec["ingress"] == []
    assert spec["policyTypes"] == ["Ingress"]


def test_ingress_from_is_added_as_given() -> None:
    peers = [
        {"namespaceSelector": {"matchLabels": {"team": "edge"}}, "podSelector": {}},
        {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}},
    ]
    [rule] = policy(render({"ingress": {"from": peers}}))["spec"]["ingress"]
    assert rule["from"] == peers


def test_network_policy_can_be_switched_off() -> None:
    assert render({"networkPolicy": {"enabled": False}})["NetworkPolicy"] is None


def test_egress_is_opt_in_and_allows_dns_and_the_declared_upstreams() -> None:
    spec = policy(render({"upstreams": UPSTREAMS, "networkPolicy": {"egress": True}}))["spec"]
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    dns, services, urls = spec["egress"]
    assert dns["to"] == [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
            "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
        }
    ]
    assert {(p["port"], p["protocol"]) for p in dns["ports"]} == {
        (53, "UDP"),
        (53, "TCP"),
        ("dns", "UDP"),
        ("dns-tcp", "TCP"),
    }
    assert services == {
        "to": [
            {"podSelector": {"matchLabels": labels.selector_labels("b")}},
            {"podSelector": {"matchLabels": labels.selector_labels("c")}},
            {
                "podSelector": {"matchLabels": labels.selector_labels("stock")},
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "warehouse"}},
            },
        ],
        "ports": [{"port": "http", "protocol": "TCP"}],
    }
    # A url names a host a NetworkPolicy cannot: any address, on that URL's port only.
    assert urls == {"ports": [{"port": 443, "protocol": "TCP"}]}


def test_egress_without_upstreams_is_dns_only() -> None:
    spec = policy(render({"networkPolicy": {"egress": True}}))["spec"]
    assert len(spec["egress"]) == 1


@pytest.mark.parametrize(
    "spec",
    [
        {},
        {"upstreams": UPSTREAMS, "networkPolicy": {"egress": True}},
        {"ingress": {"from": [{"ipBlock": {"cidr": "192.0.2.0/24"}}]}},
        {
            "ingress": {
                "from": [
                    {"podSelector": {"matchExpressions": [{"key": "app", "operator": "Exists"}]}}
                ]
            }
        },
    ],
)
def test_network_policy_matches_the_kubernetes_schema(spec: dict[str, Any]) -> None:
    found = policy(render(spec, callers=(("x", "y"),), operator_namespace="ops"))
    kubernetes_validate.validate(found, K8S_VERSION, strict=True)


@pytest.mark.parametrize(
    ("spec", "field", "words"),
    [
        (
            {"upstreams": [{"name": "b", "service": "b", "url": "http://b/"}]},
            "spec.upstreams[0]",
            "exactly one",
        ),
        ({"upstreams": [{"name": "b"}]}, "spec.upstreams[0]", "exactly one"),
        (
            {"upstreams": [{"name": "b", "url": "http://b/", "namespace": "x"}]},
            "spec.upstreams[0].namespace",
            "only for",
        ),
        (
            {"upstreams": [{"name": "b", "url": "http://b/", "path": "/x"}]},
            "spec.upstreams[0].path",
            "only for",
        ),
        (
            {"upstreams": [{"name": "b", "service": "b"}, {"name": "b", "service": "c"}]},
            "spec.upstreams[1].name",
            "appears twice",
        ),
        (
            {"upstreams": [{"name": "b", "service": "b", "timeoutSeconds": 0}]},
            "spec.upstreams[0].timeoutSeconds",
            "at least 0.01",
        ),
        (
            {
                "upstreams": [{"name": "b", "service": "b"}],
                "env": [{"name": "UPSTREAMS", "value": "x"}],
            },
            "spec.env",
            "must not set UPSTREAMS",
        ),
        ({"ingress": {"from": [{}]}}, "spec.ingress.from[0]", "must set"),
        (
            {"ingress": {"from": [{"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}}]}},
            "spec.ingress.from[0]",
            "cannot be combined",
        ),
    ],
)
def test_the_operator_checks_the_cel_rules_too(
    spec: dict[str, Any], field: str, words: str
) -> None:
    # For a cluster whose CRD is older than this operator: InvalidSpec naming the field.
    with pytest.raises(validation.InvalidSpecError) as info:
        validation.validated_spec(spec)
    problems = {p.field: p.message for p in info.value.problems}
    assert field in problems, problems
    assert words in problems[field]


def test_targets_come_from_any_spec() -> None:
    # The kopf index reads raw bodies, valid or not.
    assert composition.targets(None, "ns") == frozenset()
    assert composition.targets({"upstreams": "nope"}, "ns") == frozenset()
    spec = {"upstreams": [{"service": "b"}, {"service": "c", "namespace": "x"}, {"url": "u"}, 7]}
    assert composition.targets(spec, "ns") == {("ns", "b"), ("x", "c")}


def test_url_ports() -> None:
    assert composition.url_port("http://x.example/") == 80
    assert composition.url_port("https://x.example/") == 443
    assert composition.url_port("http://x.example:8080/a") == 8080
