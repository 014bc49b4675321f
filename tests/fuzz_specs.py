"""Generated TornadoService specs for the fuzz test (tests/e2e/test_operator_fuzz.py).

Pure: no I/O, no cluster. Valid specs come from the CRD's own schema through hypothesis-jsonschema
(`valid_specs`), invalid ones are one-constraint mutations of valid ones (`invalid_spec`), each
naming the field it broke.

What is generated as the schema says, and what is made realistic:
- Every field the CRD itself constrains (a pattern, an enum, bounds, a CEL rule) is drawn from
  its schema as it is: any string its pattern allows (any Unicode where the pattern does), any
  number in its bounds, int-or-string fields as either. Where a pattern's language has corners a
  random draw rarely reaches (a URL's port, a quantity's suffix), the realistic strategy is drawn
  as well, as another branch of an anyOf: still only values the CRD allows.
- Fields the CRD passes through to the children with only a type (Kubernetes names, label keys,
  the EnvVarSource, affinity, tolerations, topology spread constraints, NetworkPolicy peers,
  resource names) are drawn as valid Kubernetes values: the children's own validation is their
  check (a bad one shows as the TornadoService's Degraded condition), and random text there would
  only make every child fail the same known way.
- spec.consumer.broker names loopback hosts only: the operator reads the broker itself, and the
  fuzz test sends no traffic beyond this machine. spec.service.nodePort is left out: node ports
  are one cluster-wide range that other tests' Services share.

Reproducible: the same seed gives the same specs, in the same order, whatever PYTHONHASHSEED
(hypothesis runs with that seed, no example database, generation only).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import random
import re
from collections.abc import Callable, Iterator
from typing import Any

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from hypothesis.internal.conjecture import providers
from hypothesis_jsonschema import from_schema
from tornado_operator import crd

JSONDict = dict[str, Any]

SEED = 20261201
CHUNK = 200  # specs per hypothesis run; chunk k of a seed is its own run (see valid_specs)

# ---------------------------------------------------------------- realistic strategies

_DNS_LABEL = r"[a-z0-9]([-a-z0-9]{0,14}[a-z0-9])?"
_DNS_SUBDOMAIN = rf"{_DNS_LABEL}(\.{_DNS_LABEL}){{0,2}}"
_LABEL_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,20}[A-Za-z0-9])?"
_LABEL_KEY = rf"({_DNS_SUBDOMAIN}/)?{_LABEL_NAME}"
_LABEL_VALUE = rf"({_LABEL_NAME})?"
_IMAGE = (
    r"(([a-z0-9]+\.)*[a-z0-9]+(:[0-9]{1,5})?/)?"
    r"[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*){0,2}"
    r"(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[0-9a-f]{64})?"
)


def _regex(pattern: str) -> st.SearchStrategy[str]:
    return st.from_regex(pattern, fullmatch=True)


def _port_suffix(low: int = 0, high: int = 99999) -> st.SearchStrategy[str]:
    # Every port the CRD's pattern allows, the corners more often: an upstream URL's pattern
    # takes any five digits, a broker's only 1-65535.
    corners = [p for p in (0, 1, 80, 443, 6379, 65535, 65536, 99999) if low <= p <= high]
    port = st.one_of(st.sampled_from(corners), st.integers(low, high))
    return st.one_of(st.just(""), port.map(lambda p: f":{p}"))


@st.composite
def _upstream_url(draw: st.DrawFn) -> str:
    scheme = draw(st.sampled_from(["http", "https"]))
    host = draw(st.one_of(_regex(_DNS_SUBDOMAIN), st.sampled_from(["10.0.0.1", "[::1]"])))
    path = draw(st.one_of(st.just(""), _regex(r"/[-a-zA-Z0-9_./]{0,20}(\?[a-z]=[0-9])?")))
    return f"{scheme}://{host}{draw(_port_suffix())}{path}"


@st.composite
def _loopback_broker(draw: st.DrawFn) -> str:
    host = draw(st.sampled_from(["127.0.0.1", "localhost", "127.3.2.1"]))
    db = draw(st.one_of(st.just(""), st.integers(0, 99).map(lambda d: f"/{d}")))
    return f"redis://{host}{draw(_port_suffix(1, 65535))}{db}"


# A quantity in the shape people write it; the CRD's own pattern is drawn as well.
_QUANTITY = r"[0-9]{1,4}(\.[0-9]{1,2})?(m|k|M|G|Ki|Mi|Gi|Ti)?"

CUSTOM_FORMATS: dict[str, st.SearchStrategy[str]] = {
    "k8s-name": _regex(_DNS_SUBDOMAIN),
    "label-key": _regex(_LABEL_KEY),
    "label-value": _regex(_LABEL_VALUE),
    "env-prefix": _regex(r"[A-Z_][A-Z0-9_]{0,8}"),
    "image": _regex(_IMAGE),
    "upstream-url": _upstream_url(),
    "loopback-redis-url": _loopback_broker(),
    "quantity": _regex(_QUANTITY),
}


def _fmt(name: str) -> JSONDict:
    return {"type": "string", "format": name}


def _map(keys: str, values: JSONDict, max_properties: int = 6) -> JSONDict:
    return {
        "type": "object",
        "maxProperties": max_properties,
        "propertyNames": _fmt(keys),
        "additionalProperties": values,
    }


_ENV_SOURCES: list[JSONDict] = [
    {"fieldRef": {"fieldPath": "metadata.name"}},
    {"fieldRef": {"apiVersion": "v1", "fieldPath": "status.podIP"}},
    {"configMapKeyRef": {"name": "settings", "key": "level"}},
    {"secretKeyRef": {"name": "db-credentials", "key": "password", "optional": True}},
    {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}},
]
_TOLERATIONS: list[JSONDict] = [
    {"key": "dedicated", "operator": "Equal", "value": "web", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute",
     "tolerationSeconds": 30},
    {"operator": "Exists"},
    {"key": "spot", "operator": "Exists", "effect": "PreferNoSchedule"},
]  # fmt: skip
_AFFINITIES: list[JSONDict] = [
    {
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 100,
                    "podAffinityTerm": {
                        "topologyKey": "kubernetes.io/hostname",
                        "labelSelector": {"matchLabels": {"team": "web"}},
                    },
                }
            ]
        }
    },
    {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {
                        "matchExpressions": [
                            {"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]}
                        ]
                    }
                ]
            }
        }
    },
]
_SPREADS: list[JSONDict] = [
    {"maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "ScheduleAnyway",
     "labelSelector": {"matchLabels": {"team": "web"}}},
    {"maxSkew": 2, "topologyKey": "topology.kubernetes.io/zone",
     "whenUnsatisfiable": "DoNotSchedule"},
]  # fmt: skip
_PEERS: list[JSONDict] = [
    {"namespaceSelector": {}},
    {"podSelector": {}},
    {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}},
    {
        "namespaceSelector": {"matchLabels": {"team": "web"}},
        "podSelector": {
            "matchExpressions": [
                {"key": "app.kubernetes.io/name", "operator": "In", "values": ["gateway", "edge"]},
                {"key": "canary", "operator": "DoesNotExist"},
            ]
        },
    },
    {"ipBlock": {"cidr": "10.0.0.0/8"}},
    {"ipBlock": {"cidr": "192.168.0.0/16", "except": ["192.168.1.0/24"]}},
    {"ipBlock": {"cidr": "2001:db8::/32"}},
]

_RESOURCE_NAMES = ("cpu", "memory", "ephemeral-storage")


def _either(raw: JSONDict, realistic: JSONDict) -> JSONDict:
    """The CRD's own schema of a field or a realistic value (both allowed by the CRD)."""
    return {"anyOf": [raw, realistic]}


def _overrides(schema: JSONDict) -> dict[tuple[str, ...], Callable[[JSONDict], JSONDict]]:
    quantity = schema["properties"]["resources"]["properties"]["requests"]["additionalProperties"]
    resources = {
        "type": "object",
        "properties": {
            name: _either(copy.deepcopy(quantity), _fmt("quantity")) for name in _RESOURCE_NAMES
        },
        "additionalProperties": False,
    }
    name_ref = {
        "type": "object",
        "required": ["name"],
        "properties": {"name": _fmt("k8s-name"), "optional": {"type": "boolean"}},
        "additionalProperties": False,
    }
    return {
        ("image",): lambda s: _fmt("image"),
        ("imagePullSecrets", "[]", "name"): lambda s: _fmt("k8s-name"),
        ("env", "[]", "valueFrom"): lambda s: {"enum": _ENV_SOURCES},
        ("envFrom", "[]", "prefix"): lambda s: _fmt("env-prefix"),
        ("envFrom", "[]", "configMapRef"): lambda s: name_ref,
        ("envFrom", "[]", "secretRef"): lambda s: name_ref,
        ("resources", "requests"): lambda s: resources,
        ("resources", "limits"): lambda s: resources,
        ("podLabels",): lambda s: _map("label-key", _fmt("label-value")),
        ("podAnnotations",): lambda s: _map("label-key", {"type": "string"}),
        ("nodeSelector",): lambda s: _map("label-key", _fmt("label-value")),
        ("service", "annotations"): lambda s: _map("label-key", {"type": "string"}),
        ("tolerations", "[]"): lambda s: {"enum": _TOLERATIONS},
        ("affinity",): lambda s: {"enum": _AFFINITIES},
        ("topologySpreadConstraints", "[]"): lambda s: {"enum": _SPREADS},
        ("priorityClassName",): lambda s: _fmt("k8s-name"),
        ("ingress", "from", "[]"): lambda s: {"enum": _PEERS},
        ("consumer", "broker"): lambda s: _fmt("loopback-redis-url"),
        ("upstreams", "[]", "url"): lambda s: _either(s, _fmt("upstream-url")),
    }


def _locate(schema: JSONDict, path: tuple[str, ...]) -> tuple[JSONDict, str]:
    """The parent schema dict and key holding the subschema at `path`."""
    node = schema
    for part in path[:-1]:
        node = node["items"] if part == "[]" else node["properties"][part]
    last = path[-1]
    if last == "[]":
        return node, "items"
    return node["properties"], last


def fuzz_schema() -> JSONDict:
    """The spec's JSON Schema (as the operator validates with) with the realistic overrides."""
    schema = crd.spec_json_schema()
    for path, make in _overrides(schema).items():
        parent, key = _locate(schema, path)
        parent[key] = make(parent[key])
    del schema["properties"]["service"]["properties"]["nodePort"]  # see the docstring
    # Kubernetes spreads are a list-map by (topologyKey, whenUnsatisfiable).
    schema["properties"]["topologySpreadConstraints"]["uniqueItems"] = True
    _int64(schema)
    return schema


INT64 = (-(1 << 63), (1 << 63) - 1)


def _int64(node: Any) -> None:
    """Integers within int64, as the API server decodes JSON (a larger one is a float to it, not
    an integer: the schema's type check refuses it before anything else sees it)."""
    if isinstance(node, dict):
        if node.get("type") == "integer":
            node["minimum"] = max(node.get("minimum", INT64[0]), INT64[0])
            node["maximum"] = min(node.get("maximum", INT64[1]), INT64[1])
        for value in node.values():
            _int64(value)
    elif isinstance(node, list):
        for value in node:
            _int64(value)


def spec_strategy() -> st.SearchStrategy[JSONDict]:
    return from_schema(fuzz_schema(), custom_formats=CUSTOM_FORMATS)


# ---------------------------------------------------------------- valid specs


@contextlib.contextmanager
def _no_local_constants() -> Iterator[None]:
    """Hypothesis also draws, now and then, constants it finds in the source of the local
    modules loaded at the time: the specs would change with what the process has imported and
    with any edit of the project's code. Without them a seed gives the same specs anywhere.
    (Private API: hypothesis is pinned, as hypothesis-jsonschema needs it to be.)"""
    saved = providers._get_local_constants
    providers._get_local_constants = providers.Constants
    providers.CONSTANTS_CACHE.cache.clear()
    try:
        yield
    finally:
        providers._get_local_constants = saved
        providers.CONSTANTS_CACHE.cache.clear()


def valid_specs(seed_value: int, chunk: int, count: int = CHUNK) -> list[JSONDict]:
    """Chunk `chunk` of the specs of `seed_value`: `count` specs, always the same ones.

    Each chunk is its own seeded hypothesis run, so a test that needs more specs takes the next
    chunk and the earlier ones stay what they were.
    """
    found: list[JSONDict] = []

    @seed(seed_value * 1000 + chunk)
    @settings(
        max_examples=count,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
        report_multiple_bugs=False,
    )
    @given(spec_strategy())
    def collect(spec: JSONDict) -> None:
        found.append(spec)

    with _no_local_constants():
        collect()
    return found


def digest(specs: list[JSONDict]) -> str:
    return hashlib.sha256(json.dumps(specs, sort_keys=True).encode()).hexdigest()


# ---------------------------------------------------------------- invalid specs: one mutation
#
# A mutation breaks one known constraint of an accepted spec and names the field it broke, as
# a field path (spec.env[2].name). The API server's message names that field either as it is
# or, for a CEL rule on a list item, with its index left out (spec.env[].name).


def named(message: str, field: str) -> bool:
    """Whether `message` names `field` (with or without its list indexes)."""
    return field in message or re.sub(r"\[\d+\]", "[]", field) in message


Mutation = tuple[str, JSONDict, str]  # (rule id, mutated spec, field path)

_WRONG_TYPE: dict[str, Any] = {
    "string": 7,
    "integer": "seven",
    "number": "seven",
    "boolean": "yes",
    "object": "x",
    "array": "x",
}
_NOT_MATCHING = ("bad value!", "-", " ", "UPPER_case value", "lots")


def _path_text(parts: list[str | int]) -> str:
    out = "spec"
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _set(spec: JSONDict, parts: list[str | int], value: Any) -> JSONDict:
    out = copy.deepcopy(spec)
    node: Any = out
    for part in parts[:-1]:
        node = node[part]
    node[parts[-1]] = value
    return out


def _delete(spec: JSONDict, parts: list[str | int]) -> JSONDict:
    out = copy.deepcopy(spec)
    node: Any = out
    for part in parts[:-1]:
        node = node[part]
    del node[parts[-1]]
    return out


def _leaf_mutations(spec: JSONDict, parts: list[str | int], schema: JSONDict) -> Iterator[Mutation]:
    """Values for the field at `parts` (present or not) that break one of its own keywords."""
    where = _path_text(parts)
    if schema.get("x-kubernetes-int-or-string"):
        yield "type", _set(spec, parts, True), where
    elif schema.get("type") in _WRONG_TYPE:
        yield "type", _set(spec, parts, _WRONG_TYPE[schema["type"]]), where
    if "enum" in schema:
        yield "enum", _set(spec, parts, "Bogus"), where
    if schema.get("type") in ("integer", "number"):
        if "minimum" in schema:
            yield "minimum", _set(spec, parts, schema["minimum"] - 1), where
        if "maximum" in schema:
            yield "maximum", _set(spec, parts, schema["maximum"] + 1), where
    if schema.get("type") == "string":
        if schema.get("minLength", 0) >= 1:
            yield "minLength", _set(spec, parts, ""), where
        if schema.get("maxLength", 1 << 20) <= 2048:
            yield "maxLength", _set(spec, parts, "a" * (schema["maxLength"] + 1)), where
    if "pattern" in schema:
        for bad in _NOT_MATCHING:
            if len(bad) >= schema.get("minLength", 0) and not re.search(schema["pattern"], bad):
                yield "pattern", _set(spec, parts, bad), where
                break


def _schema_mutations(
    spec: JSONDict, value: Any, schema: JSONDict, parts: list[str | int]
) -> Iterator[Mutation]:
    """Every one-keyword mutation of the structural schema reachable from `value`."""
    if parts:
        yield from _leaf_mutations(spec, parts, schema)
    if isinstance(value, dict) and schema.get("type") == "object":
        props: JSONDict = schema.get("properties") or {}
        if props and not schema.get("x-kubernetes-preserve-unknown-fields"):
            yield (
                "unknown-field",
                _set(spec, [*parts, "fuzzUnknown"], 1),
                _path_text([*parts, "fuzzUnknown"]),
            )
        for name in schema.get("required") or []:
            if name in value:
                yield "required", _delete(spec, [*parts, name]), _path_text([*parts, name])
        for name, sub in props.items():
            if name in value:
                yield from _schema_mutations(spec, value[name], sub, [*parts, name])
            else:
                yield from _leaf_mutations(spec, [*parts, name], sub)
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict) and not props:
            for key in sorted(value):
                yield from _schema_mutations(spec, value[key], extra, [*parts, key])
    elif isinstance(value, list) and schema.get("type") == "array":
        for i, item in enumerate(value):
            yield from _schema_mutations(spec, item, schema["items"], [*parts, i])


def _cel_mutations(spec: JSONDict) -> Iterator[Mutation]:
    """Mutations that only a CEL rule (or a list-map key) of the CRD refuses."""
    s = copy.deepcopy
    is_consumer = "consumer" in spec
    env = list(spec.get("env") or [])
    auto = dict(spec.get("autoscaling") or {})
    metric = auto.get("metric", "cpu")

    def with_(**fields: Any) -> JSONDict:
        return {**s(spec), **s(fields)}

    if len(env) < 126:
        both = {"name": "FUZZ_BOTH", "value": "x", "valueFrom": _ENV_SOURCES[0]}
        yield "env-value-and-value-from", with_(env=[*env, both]), f"spec.env[{len(env)}].valueFrom"
        reserved = {"name": "PORT", "value": "9000"}
        yield "env-reserved", with_(env=[*env, reserved]), f"spec.env[{len(env)}].name"
        if env:
            yield "env-duplicate", with_(env=[*env, s(env[0])]), f"spec.env[{len(env)}]"
        if is_consumer:
            mine = {"name": "REDIS_URL", "value": "redis://127.0.0.1"}
            yield "consumer-env-reserved", with_(env=[*env, mine]), f"spec.env[{len(env)}].name"
        if spec.get("upstreams"):
            up = {"name": "UPSTREAMS", "value": "a=http://a"}
            yield "env-upstreams", with_(env=[*env, up]), "spec.env"
    env_from = list(spec.get("envFrom") or [])
    if len(env_from) < 32:
        i = len(env_from)
        both_refs = {"configMapRef": {"name": "a"}, "secretRef": {"name": "b"}}
        yield "env-from-both", with_(envFrom=[*env_from, both_refs]), f"spec.envFrom[{i}]"
        yield "env-from-none", with_(envFrom=[*env_from, {"prefix": "X_"}]), f"spec.envFrom[{i}]"
    resources = s(spec.get("resources") or {})
    for kind, low, high in (
        ("memory", "1Gi", "2Gi"),
        ("cpu", "1", "2"),
        ("ephemeral-storage", 0, 2),
    ):
        over = s(resources)
        over.setdefault("requests", {})[kind] = high
        over.setdefault("limits", {})[kind] = low
        # The rule for the resources other than cpu and memory names no single one.
        field = "spec.resources.requests" if kind == "ephemeral-storage" else None
        yield (
            f"resources-{kind}-request-over-limit",
            with_(resources=over),
            field or f"spec.resources.requests.{kind}",
        )
    for probe in ("liveness", "readiness", "startup"):
        probes = s(spec.get("probes") or {})
        probes[probe] = {**probes.get(probe, {}), "enabled": True}
        probes[probe].update(timeoutSeconds=5, periodSeconds=5)
        yield f"probe-{probe}-timeout", with_(probes=probes), f"spec.probes.{probe}.timeoutSeconds"
        if probe != "readiness":
            probes = s(spec.get("probes") or {})
            probes[probe] = {**probes.get(probe, {}), "successThreshold": 2}
            field = f"spec.probes.{probe}.successThreshold"
            yield f"probe-{probe}-success-threshold", with_(probes=probes), field
    yield (
        "autoscaling-min-above-max",
        with_(autoscaling={**auto, "minReplicas": 5, "maxReplicas": 3}),
        "spec.autoscaling.minReplicas",
    )
    plain = {
        k: v
        for k, v in auto.items()
        if k
        not in (
            "metric",
            "targetConcurrency",
            "targetLagPerReplica",
            "targetCPUUtilizationPercentage",
            "targetMemoryUtilizationPercentage",
        )
    }
    if metric != "concurrency":
        yield (
            "autoscaling-target-concurrency-without-metric",
            with_(autoscaling={**auto, "targetConcurrency": 10}),
            "spec.autoscaling.targetConcurrency",
        )
    if metric != "lag":
        yield (
            "autoscaling-target-lag-without-metric",
            with_(autoscaling={**auto, "targetLagPerReplica": 10}),
            "spec.autoscaling.targetLagPerReplica",
        )
    if is_consumer:
        yield (
            "consumer-metric-concurrency",
            with_(autoscaling={**plain, "metric": "concurrency", "targetConcurrency": 5}),
            "spec.autoscaling.metric",
        )
        stream = spec["consumer"]["stream"]
        yield (
            "consumer-dead-letter-is-stream",
            with_(consumer={**spec["consumer"], "deadLetterStream": stream}),
            "spec.consumer.deadLetterStream",
        )
        yield "consumer-with-service", with_(service={"type": "NodePort"}), "spec.service"
    else:
        yield (
            "autoscaling-concurrency-without-target",
            with_(autoscaling={**plain, "metric": "concurrency"}),
            "spec.autoscaling.targetConcurrency",
        )
        yield (
            "autoscaling-target-concurrency-zero",
            with_(autoscaling={**plain, "metric": "concurrency", "targetConcurrency": 0}),
            "spec.autoscaling.targetConcurrency",
        )
        yield (
            "autoscaling-concurrency-with-memory",
            with_(
                autoscaling={
                    **plain,
                    "metric": "concurrency",
                    "targetConcurrency": 5,
                    "targetMemoryUtilizationPercentage": 70,
                }
            ),
            "spec.autoscaling.targetMemoryUtilizationPercentage",
        )
        yield (
            "autoscaling-lag-without-consumer",
            with_(autoscaling={**plain, "metric": "lag", "targetLagPerReplica": 10}),
            "spec.autoscaling.metric",
        )
        svc = {**(spec.get("service") or {}), "type": "ClusterIP", "nodePort": 30080}
        yield "service-node-port-on-cluster-ip", with_(service=svc), "spec.service.nodePort"
    rollout = spec.get("rollout") or {}
    yield (
        "rollout-both-zero",
        with_(rollout={**rollout, "maxSurge": 0, "maxUnavailable": 0}),
        "spec.rollout.maxSurge",
    )
    yield (
        "rollout-surge-word",
        with_(rollout={**rollout, "maxSurge": "lots"}),
        "spec.rollout.maxSurge",
    )
    pdb = {k: v for k, v in (spec.get("podDisruptionBudget") or {}).items()}
    yield (
        "pdb-min-and-max",
        with_(podDisruptionBudget={**pdb, "minAvailable": 1, "maxUnavailable": 1}),
        "spec.podDisruptionBudget.minAvailable",
    )
    pdb.pop("minAvailable", None)
    yield (
        "pdb-max-unavailable-zero",
        with_(podDisruptionBudget={**pdb, "maxUnavailable": 0}),
        "spec.podDisruptionBudget.maxUnavailable",
    )
    labels = dict(spec.get("podLabels") or {})
    if len(labels) < 64:
        yield (
            "pod-labels-reserved",
            with_(podLabels={**labels, "app.kubernetes.io/name": "other"}),
            "spec.podLabels",
        )
        yield (
            "pod-labels-bad-value",
            with_(podLabels={**labels, "team": "web team"}),
            "spec.podLabels",
        )
    yield "image-whitespace", with_(image="web app:1"), "spec.image"
    yield "tmp-size-negative", with_(tmpSizeLimit=-1), "spec.tmpSizeLimit"
    ups = list(spec.get("upstreams") or [])
    if len(ups) < 32:
        i = len(ups)
        bad_entries = (
            ("upstream-service-and-url", {"service": "b", "url": "http://b.example"}, ""),
            ("upstream-neither", {}, ""),
            ("upstream-namespace-with-url", {"url": "http://b.example", "namespace": "o"}, ""),
            ("upstream-path-with-url", {"url": "http://b.example", "path": "/x"}, ".path"),
            ("upstream-timeout-zero", {"service": "b", "timeoutSeconds": 0}, ".timeoutSeconds"),
        )
        for rule, entry, suffix in bad_entries:
            field = f"spec.upstreams[{i}]{suffix}"
            if rule == "upstream-namespace-with-url":
                field = f"spec.upstreams[{i}].namespace"
            yield rule, with_(upstreams=[*ups, {"name": "fuzz-up", **entry}]), field
        if ups:
            yield (
                "upstream-duplicate-name",
                with_(upstreams=[*ups, s(ups[0])]),
                f"spec.upstreams[{i}]",
            )
    ingress = dict(spec.get("ingress") or {})
    peers = list(ingress.get("from") or [])
    if len(peers) < 32:
        i = len(peers)
        yield (
            "ingress-empty-peer",
            with_(ingress={**ingress, "from": [*peers, {}]}),
            f"spec.ingress.from[{i}]",
        )
        mixed = {"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}}
        yield (
            "ingress-ip-block-and-selector",
            with_(ingress={**ingress, "from": [*peers, mixed]}),
            f"spec.ingress.from[{i}].ipBlock",
        )
    secrets = list(spec.get("imagePullSecrets") or [])
    if secrets and len(secrets) < 16:
        yield (
            "pull-secret-duplicate",
            with_(imagePullSecrets=[*secrets, s(secrets[0])]),
            f"spec.imagePullSecrets[{len(secrets)}]",
        )


def invalid_spec(seed_value: int, index: int, base: JSONDict) -> tuple[str, str, JSONDict, str]:
    """Invalid spec number `index` of `seed_value`, a mutation of `base` (a spec the API server
    accepted): (layer, rule id, spec, field). Layer `schema` (every even index: a keyword of the
    structural schema, which the operator's jsonschema check also sees) or `cel`."""
    rng = random.Random(f"{seed_value}/invalid/{index}")
    if index % 2 == 0:
        candidates = list(_schema_mutations(base, base, crd.spec_schema(), []))
        layer = "schema"
    else:
        candidates = list(_cel_mutations(base))
        layer = "cel"
    # A rule first, then one of its mutations: each rule as likely, whatever its number of sites.
    rule = rng.choice(sorted({rule for rule, _, _ in candidates}))
    _, spec, field = rng.choice([c for c in candidates if c[0] == rule])
    return layer, rule, spec, field
