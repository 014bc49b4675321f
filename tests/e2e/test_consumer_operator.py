"""Consumers, the operator's side (issue 12), on the real cluster with a real broker.

The operator runs in this process (KopfRunner, as in every tests/e2e/test_operator_*.py), so the
broker it reads is a real redis-server on this host's loopback (tests/redis_server.py), and the
test itself plays producer and consumer with redis-py. The pods are the bundled API template:
it serves the probes a consumer's Deployment has, and ignores REDIS_URL, so what is tested here
is the operator alone: rendering (a Deployment, no Service), status.consumer and the printer
columns, the StreamAvailable condition and its Events for a missing stream, group or broker,
lag autoscaling up to the maximum and back to the minimum once drained, and fail static while
the broker is away. The consumer template's own e2e (no message lost, poison messages) runs its
pods against the in-cluster broker.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.e2e.operator_support import (
    apply,
    condition,
    get,
    kubectl,
    reconciles,
    tornadoservice,
    wait_condition,
    wait_event,
    wait_for,
    wait_ready,
)
from tests.redis_server import REDIS_SERVER, free_port, redis_server

pytest_plugins = ["tests.e2e.operator_fixtures"]
pytestmark = pytest.mark.skipif(REDIS_SERVER is None, reason="needs redis-server (prereqs)")

STREAM, GROUP = "orders", "billing"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[str]:
    with redis_server(tmp_path) as url:
        yield url


def consumer_service(name: str, url: str, **spec: Any) -> dict[str, Any]:
    return tornadoservice(name, consumer={"broker": url, "stream": STREAM, "group": GROUP}, **spec)


def status_consumer(name: str, ns: str) -> dict[str, Any]:
    return ((get("tornadoservice", name, ns) or {}).get("status") or {}).get("consumer") or {}


def spec_replicas(name: str, ns: str) -> int:
    return int(((get("tornadoservice", name, ns) or {}).get("spec") or {}).get("replicas", 0))


def test_consumer_has_a_deployment_and_no_service(operator_ns: str, broker: str) -> None:
    ns = operator_ns
    client = redis.Redis.from_url(broker, decode_responses=True)
    client.xgroup_create(STREAM, GROUP, id="$", mkstream=True)
    apply(consumer_service("billing", broker, replicas=1), ns)
    wait_ready("billing", ns)
    assert get("deployment", "billing", ns) is not None
    assert get("service", "billing", ns) is None
    assert get("poddisruptionbudget", "billing", ns) is None  # one replica: no budget
    dep = get("deployment", "billing", ns)
    assert dep is not None
    [container] = dep["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert (env["REDIS_URL"], env["STREAM"], env["GROUP"]) == (broker, STREAM, GROUP)
    wait_condition("billing", ns, "StreamAvailable", "True", "StreamFound", timeout=60)
    obj = get("tornadoservice", "billing", ns)
    assert obj is not None and "url" not in obj["status"]
    wide = kubectl("get", "tsvc", "billing", "-n", ns, "-o", "wide").stdout
    assert "LAG" in wide.splitlines()[0] and "PENDING" in wide.splitlines()[0]


def test_missing_stream_is_a_condition_and_an_event_without_a_storm(
    operator_ns: str, broker: str
) -> None:
    ns = operator_ns
    apply(consumer_service("lost", broker, replicas=1), ns)
    cond = wait_condition("lost", ns, "StreamAvailable", "False", "StreamNotFound", timeout=90)
    assert f"stream {STREAM} does not exist" in cond["message"]
    wait_condition("lost", ns, "Degraded", "True", "StreamNotFound", timeout=30)
    wait_event("lost", ns, "StreamNotFound", "Warning")
    # The pods are fine (liveness does not depend on the broker): Ready, no restarts.
    wait_ready("lost", ns)
    # No storm: the broker is read at most every 30 s once it keeps failing, and a read that
    # says the same brings no reconcile.
    before = reconciles()
    time.sleep(20)
    assert reconciles() - before <= 2
    assert status_consumer("lost", ns)["reason"] == "StreamNotFound"
    # The stream and group appear (a producer, the consumers): it recovers by itself.
    client = redis.Redis.from_url(broker, decode_responses=True)
    client.xgroup_create(STREAM, GROUP, id="$", mkstream=True)
    wait_condition("lost", ns, "StreamAvailable", "True", "StreamFound", timeout=60)
    wait_condition("lost", ns, "Degraded", "False", timeout=30)
    wait_event("lost", ns, "Recovered", "Normal")


def test_lag_scales_up_to_the_maximum_and_down_once_drained(operator_ns: str, broker: str) -> None:
    ns = operator_ns
    client = redis.Redis.from_url(broker, decode_responses=True)
    client.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    for start in range(0, 1000, 100):
        pipe = client.pipeline()
        for i in range(start, start + 100):
            pipe.xadd(STREAM, {"id": str(i)})
        pipe.execute()
    auto = {
        "enabled": True,
        "metric": "lag",
        "targetLagPerReplica": 300,
        "minReplicas": 1,
        "maxReplicas": 3,
        "behavior": {"scaleDown": {"stabilizationWindowSeconds": 10}},
    }
    apply(consumer_service("drain", broker, autoscaling=auto), ns)
    # 1000 waiting, 300 per replica: 4, limited to maxReplicas 3.
    wait_for("3 replicas", lambda: spec_replicas("drain", ns) == 3, timeout=60)
    wait_event("drain", ns, "ScaledUp", "Normal")
    assert get("horizontalpodautoscaler", "drain", ns) is None  # one writer: the operator
    seen = wait_for("status.consumer", lambda: status_consumer("drain", ns) or None, 30)
    assert seen["lag"] + seen["pending"] == 1000 and seen["backlog"] == 1000
    # Deliver everything; acknowledge half: pending still counts.
    got = client.xreadgroup(GROUP, "test", {STREAM: ">"}, count=1000)
    ids = [entry_id for _, entries in got for entry_id, _ in entries]
    client.xack(STREAM, GROUP, *ids[:500])
    wait_for(
        "pending 500",
        lambda: status_consumer("drain", ns).get("pending") == 500 or None,
        timeout=60,
    )
    assert spec_replicas("drain", ns) == 2 or spec_replicas("drain", ns) == 3
    client.xack(STREAM, GROUP, *ids[500:])
    # Drained: back to minReplicas after the 10 s window.
    wait_for("1 replica", lambda: spec_replicas("drain", ns) == 1, timeout=90)
    wait_event("drain", ns, "ScaledDown", "Normal")
    auto_status = (get("tornadoservice", "drain", ns) or {})["status"]["autoscaling"]
    assert auto_status["metric"] == "lag" and auto_status["lastScaleTime"]
    assert auto_status["lastScaleReason"].startswith("from ")
    rate = status_consumer("drain", ns).get("consumptionRate")
    assert rate is None or rate >= 0


def test_broker_away_fails_static(operator_ns: str, tmp_path: Path) -> None:
    ns = operator_ns
    port = free_port()
    auto = {"enabled": True, "metric": "lag", "targetLagPerReplica": 10, "minReplicas": 1}
    with redis_server(tmp_path, port) as url:
        client = redis.Redis.from_url(url, decode_responses=True)
        client.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
        for i in range(25):
            client.xadd(STREAM, {"id": str(i)})
        apply(consumer_service("static", url, autoscaling=auto), ns)
        wait_for("3 replicas", lambda: spec_replicas("static", ns) == 3, timeout=60)
    # The broker is gone: temporary, told apart from a missing stream; replicas stay.
    cond = wait_condition("static", ns, "StreamAvailable", "False", "BrokerUnreachable", 60)
    assert "temporary" in cond["message"]
    wait_event("static", ns, "BrokerUnreachable", "Warning")
    time.sleep(15)
    assert spec_replicas("static", ns) == 3
    message = (get("tornadoservice", "static", ns) or {})["status"]["autoscaling"]["message"]
    assert "keeping 3 replicas" in message
    obj = get("tornadoservice", "static", ns)
    assert condition(obj, "Ready") is not None
