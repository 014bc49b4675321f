"""`kubectl tornado`: the table, the tree, dot and JSON from TornadoService objects; exit codes."""

from __future__ import annotations

import datetime
import io
import json
from typing import Any

import pytest
from tornado_operator import kubectl_tornado as plugin

NOW = datetime.datetime(2026, 12, 1, 12, 0, 0, tzinfo=datetime.UTC)


def tsvc(
    name: str,
    *,
    ns: str = "shop",
    ready: str = "True",
    upstreams: list[dict[str, Any]] | None = None,
    status_upstreams: list[dict[str, Any]] | None = None,
    autoscaling: dict[str, Any] | None = None,
    seen: dict[str, Any] | None = None,
) -> dict[str, Any]:
    status: dict[str, Any] = {
        "replicaSummary": "2/2",
        "conditions": [{"type": "Ready", "status": ready, "reason": "ReplicasReady"}],
    }
    if status_upstreams is not None:
        status["upstreams"] = status_upstreams
    if seen is not None:
        status["autoscaling"] = seen
    spec: dict[str, Any] = {"replicas": 2}
    if upstreams is not None:
        spec["upstreams"] = upstreams
    if autoscaling is not None:
        spec["autoscaling"] = autoscaling
    return {
        "metadata": {"name": name, "namespace": ns, "creationTimestamp": "2026-12-01T11:00:00Z"},
        "spec": spec,
        "status": status,
    }


WEB = tsvc(
    "web",
    upstreams=[
        {"name": "cart", "service": "cart"},
        {"name": "stock", "service": "stock", "namespace": "warehouse"},
        {"name": "maps", "url": "https://maps.example/"},
    ],
    status_upstreams=[
        {"name": "cart", "state": "Healthy", "calls": 120, "errorRatio": 0.0,
         "latencyP99Milliseconds": 4.2, "breaker": "closed"},
        {"name": "stock", "state": "Failing", "calls": 30, "errorRatio": 1.0, "breaker": "open"},
        {"name": "maps", "state": "Idle", "calls": 0, "errorRatio": 0.0},
    ],
    autoscaling={"enabled": True, "metric": "concurrency", "targetConcurrency": 10,
                 "minReplicas": 2, "maxReplicas": 8},
    seen={"observedConcurrency": 12.34, "desiredReplicas": 3, "panicMode": True},
)  # fmt: skip
CART = tsvc(
    "cart",
    upstreams=[{"name": "web", "service": "web"}, {"name": "ghost", "service": "ghost"}],
    status_upstreams=[{"name": "ghost", "state": "NotFound"}],
    autoscaling={"enabled": True, "minReplicas": 2, "maxReplicas": 5},
)
LONE = tsvc("lone", ready="False")


def test_status_table() -> None:
    text = plugin.status_table([WEB, CART, LONE], all_namespaces=False, now=NOW)
    lines = text.splitlines()
    assert lines[0].split() == ["NAME", "READY", "REPLICAS", "AUTOSCALING", "UPSTREAMS", "AGE"]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert list(rows) == ["cart", "lone", "web"]  # by name
    assert "concurrency 10 2-8 (seen 12.3, wants 3) panic" in rows["web"]
    assert "2/3 healthy (stock failing)" in rows["web"]
    assert "cpu 80% 2-5" in rows["cart"]
    # web is in status only later (no status item yet): Unknown; ghost does not exist.
    assert "0/2 healthy (ghost notfound)" in rows["cart"]
    assert rows["lone"].split()[1:4] == ["False", "2/2", "off"] and " - " in rows["lone"]
    assert rows["web"].split()[-1] == "60m"
    # Columns line up as kubectl's do.
    starts = [line.index(line.split()[1]) for line in lines]
    assert len(set(starts)) == 1
    wide = plugin.status_table([WEB], all_namespaces=True, wide=True, now=NOW).splitlines()
    assert wide[0].split()[:4] == ["NAMESPACE", "NAME", "READY", "REASON"]
    assert wide[1].split()[:4] == ["shop", "web", "True", "ReplicasReady"]


def test_status_row_is_what_json_prints() -> None:
    row = plugin.status_row(WEB)
    assert row["name"] == "web" and row["ready"] == "True" and row["replicas"] == "2/2"
    assert [e["name"] for e in row["upstreamDetails"]] == ["cart", "stock", "maps"]
    assert row["upstreamDetails"][1]["namespace"] == "warehouse"


def test_tree_follows_the_calls_and_stops_at_cycles() -> None:
    text = plugin.tree([WEB, CART, LONE], namespace="shop")
    assert text == (
        "lone (Ready False, 2/2)\n"
        "cart (Ready True, 2/2)\n"
        "├── web: web (Ready True, 2/2)  [Unknown]\n"
        "│   ├── cart: cart (Ready True, 2/2) (cycle)  "
        "[Healthy, 120 calls, 0% errors, p99 4.2 ms]\n"
        "│   ├── stock: warehouse/stock (not found)  "
        "[Failing, 30 calls, 100% errors, breaker open]\n"
        "│   └── maps: https://maps.example/  [Idle, 0 calls, 0% errors]\n"
        "└── ghost: ghost (not found)  [NotFound, no such TornadoService]\n"
    )


def test_dot() -> None:
    text = plugin.dot([WEB, CART], namespace="shop")
    assert text.startswith("digraph tornado {\n")
    assert '"web" -> "warehouse/stock" [color=red, label="stock: Failing' in text
    assert '"web" -> "cart" [color=darkgreen' in text
    assert '"web" -> "https://maps.example/" [color=grey' in text
    assert '"cart" -> "ghost" [color=red' in text
    assert text.rstrip().endswith("}")


def test_graph_json() -> None:
    found = plugin.graph_json([WEB, CART])
    assert [n["name"] for n in found["nodes"]] == ["cart", "web"]
    edges = {(e["from"]["name"], e["name"]): e for e in found["edges"]}
    assert edges[("web", "stock")]["to"] == {"namespace": "warehouse", "name": "stock"}
    assert edges[("web", "stock")]["state"] == "Failing"
    assert edges[("web", "maps")]["to"] == {"url": "https://maps.example/"}


class Args:
    def __init__(self, **kw: Any) -> None:
        self.__dict__.update(
            {"all_namespaces": False, "namespace": None, "output": "table", "dot": False, **kw}
        )


def test_run_prints_and_says_when_nothing_is_found(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plugin, "fetch", lambda args: ([], "shop"))
    out, err = io.StringIO(), io.StringIO()
    assert plugin.run(Args(command="status"), out, err) == 0  # type: ignore[arg-type]
    assert out.getvalue() == "" and err.getvalue() == "No resources found in shop namespace.\n"
    monkeypatch.setattr(plugin, "fetch", lambda args: ([WEB, CART], "shop"))
    out = io.StringIO()
    assert plugin.run(Args(command="graph", output="json"), out, err) == 0  # type: ignore[arg-type]
    assert len(json.loads(out.getvalue())["edges"]) == 5
    out = io.StringIO()
    assert plugin.run(Args(command="graph", dot=True), out, err) == 0  # type: ignore[arg-type]
    assert out.getvalue().startswith("digraph")


def test_errors_exit_1_as_kubectl_does(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        plugin.main(["status", "--colour"])
    assert info.value.code == 1
    assert "error: unrecognized arguments: --colour" in capsys.readouterr().err

    def missing(args: Any) -> Any:
        raise plugin.PluginError(
            'Error from server (NotFound): tornadoservices.tornado-operator.dev "x" not found'
        )

    monkeypatch.setattr(plugin, "fetch", missing)
    assert plugin.main(["status", "x", "-n", "shop"]) == 1
    assert capsys.readouterr().err == (
        'Error from server (NotFound): tornadoservices.tornado-operator.dev "x" not found\n'
    )
    assert plugin.main(["status", "-n", "a", "-A"]) == 1
    assert "exclude each other" in capsys.readouterr().err
    monkeypatch.undo()
    assert plugin.main(["status", "--kubeconfig", "/nonexistent/kubeconfig"]) == 1
    assert capsys.readouterr().err.startswith("error: ")


def test_a_consumer_scaled_on_lag_shows_its_backlog() -> None:
    auto = {"enabled": True, "metric": "lag", "targetLagPerReplica": 100}
    obj: dict[str, Any] = {
        "metadata": {"name": "billing", "namespace": "shop"},
        "spec": {"consumer": {"stream": "orders"}, "autoscaling": {**auto, "maxReplicas": 8}},
    }
    assert plugin.autoscaling_of(obj) == "lag 100/replica 2-8"
    obj["status"] = {"consumer": {"backlog": 250}, "autoscaling": {"desiredReplicas": 3}}
    assert plugin.autoscaling_of(obj) == "lag 100/replica 2-8 (backlog 250, wants 3)"
    # No URL, no upstreams: the row still renders.
    assert plugin.status_row(obj)["upstreams"] == "-"
