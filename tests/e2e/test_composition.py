"""Composition on the real cluster (issue 11): spec.upstreams wiring, upstream health in status,
a missing upstream, a cycle. Real pods of the template image; the operator in-process.

Every loop here is bounded in count and time, and calls only the test's own pods through the
API server's service proxy (after one request that checks the target answers).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hack.kubetools import binary, kubectl_json
from tests.e2e.operator_support import (
    apply,
    condition,
    get,
    http_get,
    kubectl,
    patch,
    reconciles,
    tornadoservice,
    wait_event,
    wait_for,
    wait_ready,
)

pytest_plugins = ["tests.e2e.operator_fixtures"]

# Short breaker and timeouts: the template's defaults would work, only slower.
FAST = {"retries": 0, "timeoutSeconds": 0.5}


def caller(name: str, *upstreams: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return tornadoservice(name, replicas=1, upstreams=list(upstreams), **spec)


def compose(ns: str, name: str) -> dict[str, Any]:
    return json.loads(http_get(ns, name, "/compose"))  # type: ignore[no-any-return]


def upstream_item(ns: str, name: str, upstream: str) -> dict[str, Any] | None:
    obj = get("tornadoservice", name, ns) or {}
    for item in (obj.get("status") or {}).get("upstreams") or []:
        if item.get("name") == upstream:
            return item  # type: ignore[no-any-return]
    return None


class Traffic:
    """Calls /compose of one service every `every` seconds in a thread, at most `limit` times
    and `seconds` long, so the caller's metrics have something to say."""

    def __init__(self, ns: str, name: str, every: float = 0.5, limit: int = 600) -> None:
        self.ns, self.name, self.every, self.limit = ns, name, every, limit
        self.answers: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        deadline = time.monotonic() + self.limit * self.every + 60
        for _ in range(self.limit):
            if self._stop.is_set() or time.monotonic() > deadline:
                return
            with contextlib.suppress(RuntimeError, OSError, ValueError, subprocess.TimeoutExpired):
                self.answers.append(compose(self.ns, self.name))
            self._stop.wait(self.every)

    def __enter__(self) -> Traffic:
        compose(self.ns, self.name)  # the target answers: then the loop may start
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


@pytest.fixture
def ab(operator_ns: str) -> Iterator[str]:
    """B (a plain template service) and A, which calls B by name."""
    ns = operator_ns
    apply(tornadoservice("b", replicas=1), ns)
    apply(caller("a", {"name": "b", "service": "b", **FAST}), ns)
    wait_ready("b", ns)
    wait_ready("a", ns)
    yield ns


def test_a_reaches_b_by_name_with_no_url_written_by_hand(ab: str) -> None:
    ns = ab
    b = get("tornadoservice", "b", ns)
    assert b is not None and b["status"]["url"] == f"http://b.{ns}.svc"
    deployment = get("deployment", "a", ns)
    assert deployment is not None
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["UPSTREAMS"] == f"b=http://b.{ns}.svc timeout=0.5 retries=0"
    answer = wait_for(
        "A's /compose reaches B", lambda: (c := compose(ns, "a"))["green"] == 1 and c, 60
    )
    assert answer["upstreams"]["b"]["status"] == "green"
    assert answer["upstreams"]["b"]["body"] == {"service": "hello", "message": "Hello, world!"}
    # B's NetworkPolicy names A as its caller (enforced or not: see test_composition_policy).
    policy = get("networkpolicy", "b", ns)
    assert policy is not None
    [rule] = policy["spec"]["ingress"]
    assert {"podSelector": {"matchLabels": _selector("a")}} in rule["from"]


def _selector(name: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/instance": name,
        "app.kubernetes.io/managed-by": "tornado-operator",
    }


def test_upstream_health_follows_b_while_a_stays_ready(ab: str) -> None:
    ns = ab
    with Traffic(ns, "a"):
        wait_for(
            "B healthy in A's status",
            lambda: (upstream_item(ns, "a", "b") or {}).get("state") == "Healthy",
            90,
        )
        healthy = upstream_item(ns, "a", "b")
        assert healthy is not None and healthy["calls"] > 0 and healthy["errorRatio"] == 0
        assert healthy["breaker"] == "closed" and "latencyP99Milliseconds" in healthy
        cond = condition(get("tornadoservice", "a", ns), "UpstreamsHealthy")
        assert cond is not None and cond["status"] == "True"

        kubectl("scale", "tsvc/b", "--replicas=0", "-n", ns)
        scaled = time.monotonic()
        failing = wait_for(
            "B failing in A's status",
            lambda: (i := upstream_item(ns, "a", "b")) and i.get("state") == "Failing" and i,
            45,
        )
        took = time.monotonic() - scaled
        assert took <= 30, f"A's status showed B failing only after {took:.0f}s"
        assert failing["errorRatio"] > 0
        cond = condition(get("tornadoservice", "a", ns), "UpstreamsHealthy")
        assert cond is not None and (cond["status"], cond["reason"]) == (
            "False",
            "UpstreamsFailing",
        )
        assert cond["message"].startswith("b: ")
        # A stays Ready and in its Service, answering /compose with B red.
        ready = condition(get("tornadoservice", "a", ns), "Ready")
        assert ready is not None and ready["status"] == "True"
        red = compose(ns, "a")
        assert red["upstreams"]["b"]["status"] == "red" and red["red"] == 1
        wait_event("a", ns, "UpstreamFailing", "Warning")

        kubectl("scale", "tsvc/b", "--replicas=1", "-n", ns)
        wait_ready("b", ns)
        wait_for(
            "B healthy again in A's status",
            lambda: (upstream_item(ns, "a", "b") or {}).get("state") == "Healthy",
            120,
        )
        cond = condition(get("tornadoservice", "a", ns), "UpstreamsHealthy")
        assert cond is not None and cond["status"] == "True"
        wait_event("a", ns, "UpstreamsHealthy", "Normal")
        assert compose(ns, "a")["upstreams"]["b"]["status"] == "green"


def test_a_missing_upstream_is_a_condition_and_an_event(operator_ns: str) -> None:
    ns = operator_ns
    apply(caller("lonely", {"name": "ghost", "service": "ghost"}), ns)
    # Ready all the same: a missing dependency does not take the caller out of its Service.
    obj = wait_ready("lonely", ns)
    wait_for(
        "UpstreamNotFound",
        lambda: (
            (c := condition(get("tornadoservice", "lonely", ns), "UpstreamsHealthy"))
            and c["reason"] == "UpstreamNotFound"
            and c
        ),
        60,
    )
    cond = condition(get("tornadoservice", "lonely", ns), "UpstreamsHealthy")
    assert cond is not None and cond["status"] == "False"
    assert f"TornadoService {ns}/ghost does not exist" in cond["message"]
    item = upstream_item(ns, "lonely", "ghost")
    assert item is not None and item["state"] == "NotFound"
    event = wait_event("lonely", ns, "UpstreamNotFound", "Warning")
    assert "ghost" in event["message"]
    assert condition(obj, "Degraded")["status"] == "False"  # type: ignore[index]
    # The caller's /compose answers, with the missing upstream red.
    assert compose(ns, "lonely")["upstreams"]["ghost"]["status"] == "red"

    # It appears: the caller is reconciled (no edit of the caller) and the condition clears.
    apply(tornadoservice("ghost", replicas=1), ns)
    wait_for(
        "the upstream found",
        lambda: (upstream_item(ns, "lonely", "ghost") or {}).get("state") not in (None, "NotFound"),
        90,
    )
    wait_for(
        "its NetworkPolicy names the caller",
        lambda: any(
            {"podSelector": {"matchLabels": _selector("lonely")}} in r.get("from", [])
            for r in ((get("networkpolicy", "ghost", ns) or {}).get("spec") or {}).get("ingress")
            or []
        ),
        60,
    )


def test_a_cycle_settles(operator_ns: str) -> None:
    ns = operator_ns
    apply(caller("ping", {"name": "pong", "service": "pong"}), ns)
    apply(caller("pong", {"name": "ping", "service": "ping"}), ns)
    wait_ready("ping", ns)
    wait_ready("pong", ns)
    wait_for(
        "ping reaches pong",
        lambda: compose(ns, "ping")["upstreams"]["pong"]["status"] == "green",
        60,
    )
    for name, other in (("ping", "pong"), ("pong", "ping")):
        policy = get("networkpolicy", name, ns)
        assert policy is not None
        [rule] = policy["spec"]["ingress"]
        assert {"podSelector": {"matchLabels": _selector(other)}} in rule["from"]
    # No loop: with nothing changing (no traffic, so no new numbers either), reconciles stop.
    time.sleep(15)
    before = reconciles()
    time.sleep(20)
    assert reconciles() - before <= 2, "the cycle keeps the operator reconciling"


def test_removing_an_upstream_updates_both_sides(ab: str) -> None:
    ns = ab
    patch("tornadoservice", "a", ns, {"spec": {"upstreams": None}})
    wait_for(
        "B's NetworkPolicy without A",
        lambda: (
            not any(
                {"podSelector": {"matchLabels": _selector("a")}} in r.get("from", [])
                for r in ((get("networkpolicy", "b", ns) or {}).get("spec") or {}).get("ingress")
                or []
            )
        ),
        60,
    )

    def a_env() -> dict[str, Any]:
        dep = get("deployment", "a", ns) or {}
        [c] = dep["spec"]["template"]["spec"]["containers"]
        return {e["name"]: e.get("value") for e in c["env"]}

    wait_for("A's UPSTREAMS gone", lambda: "UPSTREAMS" not in a_env(), 60)
    wait_for(
        "A's status without upstreams",
        lambda: (
            "upstreams" not in ((get("tornadoservice", "a", ns) or {}).get("status") or {})
            and condition(get("tornadoservice", "a", ns), "UpstreamsHealthy") is None
        ),
        60,
    )


def plugin(*args: str) -> subprocess.CompletedProcess[str]:
    """`kubectl tornado ARGS` as a user runs it: kubectl finds the console script kubectl-tornado
    that the package installed next to this Python (the venv's bin on PATH)."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run(
        [binary("kubectl"), "tornado", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


def test_the_plugin_matches_the_objects(ab: str) -> None:
    ns = ab
    # Something in A's status.upstreams first, so the table and the graph have an outcome.
    with Traffic(ns, "a"):
        wait_for(
            "B healthy in A's status",
            lambda: (upstream_item(ns, "a", "b") or {}).get("state") == "Healthy",
            90,
        )
    objects = {o["metadata"]["name"]: o for o in kubectl_json("get", "tsvc", "-n", ns)["items"]}

    done = plugin("status", "-n", ns, "-o", "json")
    assert done.returncode == 0, done.stderr
    rows = {r["name"]: r for r in json.loads(done.stdout)["items"]}
    assert set(rows) == set(objects) == {"a", "b"}
    for name, obj in objects.items():
        ready = condition(obj, "Ready")
        assert ready is not None and rows[name]["ready"] == ready["status"]
        assert rows[name]["replicas"] == obj["status"]["replicaSummary"]
    assert [e["name"] for e in rows["a"]["upstreamDetails"]] == ["b"]
    assert rows["b"]["upstreamDetails"] == []

    table = plugin("status", "-n", ns)
    assert table.returncode == 0, table.stderr
    header, *lines = table.stdout.splitlines()
    assert header.split()[:4] == ["NAME", "READY", "REPLICAS", "AUTOSCALING"]
    assert sorted(line.split()[0] for line in lines) == ["a", "b"]

    graph = plugin("graph", "-n", ns, "-o", "json")
    assert graph.returncode == 0, graph.stderr
    found = json.loads(graph.stdout)
    assert sorted(n["name"] for n in found["nodes"]) == ["a", "b"]
    [edge] = found["edges"]
    assert edge["from"] == {"namespace": ns, "name": "a"}
    assert edge["to"] == {"namespace": ns, "name": "b"} and edge["name"] == "b"
    status_b = upstream_item(ns, "a", "b")
    assert status_b is not None and edge["state"] == status_b["state"]

    text = plugin("graph", "-n", ns)
    assert text.returncode == 0, text.stderr
    assert text.stdout.splitlines()[0].startswith("a (Ready ")
    assert "b: b (Ready " in text.stdout
    dot = plugin("graph", "-n", ns, "--dot")
    assert dot.returncode == 0 and '"a" -> "b"' in dot.stdout, dot.stderr

    # kubectl's conventions: a missing object is an error from the server, exit code 1.
    missing = plugin("status", "nothere", "-n", ns)
    assert missing.returncode == 1
    assert missing.stderr.startswith("Error from server (NotFound)"), missing.stderr
