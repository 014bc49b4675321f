"""Every manifest in examples/ is applied and becomes Ready."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.e2e.operator_support import (
    EXAMPLES,
    apply,
    http_get,
    wait_ready,
)

pytest_plugins = ["tests.e2e.operator_fixtures"]


# examples/consumer.yaml needs the broker and the consumer image: test_consumer_operator.py.
@pytest.mark.parametrize(
    "path",
    sorted(p for p in EXAMPLES.glob("*.yaml") if p.name != "consumer.yaml"),
    ids=lambda p: p.name,
)
def test_example_becomes_ready(path: Path, operator_ns: str) -> None:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    for doc in docs:
        apply(doc, operator_ns)
    for doc in docs:
        name = doc["metadata"]["name"]
        obj = wait_ready(name, operator_ns, timeout=300)
        wanted = doc["spec"].get("replicas") or doc["spec"].get("autoscaling", {}).get(
            "minReplicas", 1
        )
        assert obj["status"]["readyReplicas"] >= min(wanted, obj["spec"]["replicas"])
        http_get(operator_ns, name, "/")
