"""Probes and metrics: a missing stream, a broker outage, and what /metrics shows."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
import redis

from support import Broker, ConsumerProcess, free_port, produce, results, wait_for

Start = Callable[..., ConsumerProcess]


def reason(consumer: ConsumerProcess) -> object:
    response = consumer.get("/readyz")
    return response.status, response.json()["reason"]


def test_a_missing_stream_is_not_ready_without_crashing_and_recovers(
    client: redis.Redis, start_consumer: Start
) -> None:
    consumer = start_consumer({"STREAM": "orders", "CREATE_STREAM": "false"})
    wait_for("stream_missing", lambda: reason(consumer) == (503, "stream_missing"))
    assert "does not exist" in consumer.get("/readyz").json()["detail"]
    assert consumer.get("/livez").status == 200
    # The operator's default startup probe: started, whatever the broker says.
    assert consumer.get("/startupz").status == 200
    text = consumer.get("/metrics").body.decode()
    assert 'consumer_not_ready_reason{reason="stream_missing"} 1.0' in text
    assert "consumer_ready 0.0" in text
    time.sleep(1)
    assert consumer.proc.poll() is None, "a missing stream must not stop the process"
    errors = [line for line in consumer.logs() if line.get("msg") == "not ready: stream_missing"]
    # Said once, not every poll.
    assert len(errors) == 1 and errors[0]["level"] == "error" and errors[0]["stream"] == "orders"
    # Once the stream exists, the consumer creates its group (CREATE_GROUP) and consumes.
    uids = produce(client, "orders", 3)
    wait_for("ready", lambda: consumer.get("/readyz").status == 200)
    wait_for("3 recorded", lambda: len(results(client)) == 3)
    assert sorted(r["uid"] for r in results(client)) == sorted(uids)


def test_a_key_that_is_not_a_stream_is_a_missing_stream(
    client: redis.Redis, start_consumer: Start
) -> None:
    client.set("events", "not a stream")
    consumer = start_consumer()
    wait_for("stream_missing", lambda: reason(consumer) == (503, "stream_missing"))
    assert "is not a stream" in consumer.get("/readyz").json()["detail"]
    assert consumer.get("/livez").status == 200


def test_a_missing_group_is_not_ready_unless_it_may_be_created(
    client: redis.Redis, start_consumer: Start
) -> None:
    produce(client, "events", 1)
    consumer = start_consumer({"CREATE_GROUP": "false"})
    wait_for("group_missing", lambda: reason(consumer) == (503, "group_missing"))
    assert consumer.get("/livez").status == 200
    assert client.xinfo_groups("events") == []
    client.xgroup_create("events", "hello-consumer", id="0")
    wait_for("ready", lambda: consumer.get("/readyz").status == 200)
    wait_for("1 recorded", lambda: len(results(client)) == 1)


@pytest.fixture
def own_broker() -> Iterator[Broker]:
    b = Broker(free_port())
    b.start()
    yield b
    b.close()


def test_a_broker_outage_fails_readiness_but_never_liveness(
    own_broker: Broker, start_consumer: Start
) -> None:
    consumer = start_consumer(on=own_broker)
    consumer.wait_ready()
    own_broker.stop()
    wait_for("broker_unreachable", lambda: reason(consumer) == (503, "broker_unreachable"))
    for _ in range(10):
        assert consumer.get("/livez").status == 200
        time.sleep(0.2)
    assert consumer.proc.poll() is None
    assert consumer.metric("consumer_broker_errors_total") >= 1
    # The broker is back (empty: no persistence here): the group is created again.
    own_broker.start()
    consumer.wait_ready(20)
    c = own_broker.client()
    uids = produce(c, "events", 2)
    wait_for("2 recorded", lambda: len(results(c)) == 2, 15)
    assert sorted(r["uid"] for r in results(c)) == sorted(uids)


def test_metrics_show_outcomes_latency_in_flight_and_lag(
    client: redis.Redis, start_consumer: Start
) -> None:
    produce(client, "events", 5)
    client.xgroup_create("events", "hello-consumer", id="0")
    # Not consuming yet (the group is another's): the lag is the whole stream.
    consumer = start_consumer({"GROUP": "hello-consumer", "CONCURRENCY": "1"})
    wait_for("5 recorded", lambda: len(results(client)) == 5)
    wait_for("lag 0", lambda: consumer.metric("consumer_group_lag") == 0)
    text = consumer.get("/metrics").body.decode()
    for name in (
        "consumer_messages_processed_total 5.0",
        "consumer_messages_failed_total 0.0",
        "consumer_messages_dead_lettered_total 0.0",
        "consumer_messages_reclaimed_total",
        "consumer_messages_in_flight 0.0",
        "consumer_processing_duration_seconds_count 5.0",
        "consumer_group_lag 0.0",
        "consumer_group_pending 0.0",
        "consumer_group_backlog 0.0",
        "consumer_ready 1.0",
        'consumer_not_ready_reason{reason="broker_unreachable"} 0.0',
        "process_resident_memory_bytes",
    ):
        assert name in text, name
    assert "_created" not in text


def test_the_lag_gauge_counts_what_the_group_has_not_read(
    client: redis.Redis, start_consumer: Start
) -> None:
    client.xgroup_create("events", "hello-consumer", id="0", mkstream=True)
    consumer = start_consumer({"CREATE_GROUP": "false"})
    consumer.wait_ready()
    produce(client, "events", 3, sleep="3")
    wait_for("3 in flight", lambda: consumer.metric("consumer_messages_in_flight") == 3)
    wait_for("pending 3", lambda: consumer.metric("consumer_group_pending") == 3)
    assert consumer.metric("consumer_group_lag") == 0
    assert consumer.metric("consumer_group_backlog") == 3
