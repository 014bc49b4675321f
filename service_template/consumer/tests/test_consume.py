"""Consuming against a real broker: ack after processing, dead letters, drain, take-over."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import redis

from support import ConsumerProcess, kill, produce, results, terminate, wait_for

Start = Callable[..., ConsumerProcess]


def pending(client: redis.Redis, stream: str = "events", group: str = "hello-consumer") -> int:
    summary: dict[str, Any] = client.xpending(stream, group)  # type: ignore[assignment]
    return int(summary["pending"])


def test_a_message_is_acknowledged_only_after_it_was_processed(
    client: redis.Redis, start_consumer: Start
) -> None:
    consumer = start_consumer({"CONCURRENCY": "4"})
    consumer.wait_ready()
    uids = produce(client, "events", 8, sleep="1.5")
    # Being handled: delivered to the group, pending, not yet recorded.
    wait_for("4 messages in flight", lambda: consumer.metric("consumer_messages_in_flight") == 4)
    assert pending(client) == 4
    assert results(client) == []
    wait_for("all 8 recorded", lambda: len(results(client)) == 8)
    wait_for("nothing pending", lambda: pending(client) == 0)
    assert sorted(r["uid"] for r in results(client)) == sorted(uids)
    assert consumer.metric("consumer_messages_processed_total") == 8
    assert consumer.metric("consumer_messages_failed_total") == 0


def test_a_poison_message_is_dead_lettered_after_max_deliveries_while_others_flow(
    client: redis.Redis, start_consumer: Start
) -> None:
    consumer = start_consumer(
        {"MAX_DELIVERIES": "3", "RETRY_BACKOFF_SECONDS": "0.2", "CONCURRENCY": "2"}
    )
    consumer.wait_ready()
    (poison,) = produce(client, "events", 1, poison="yes")
    good = produce(client, "events", 30)
    # The rest flow while the poison message waits for its retries.
    wait_for("the 30 good ones", lambda: len(results(client)) == 30)
    assert consumer.metric("consumer_messages_dead_lettered_total") == 0
    dead = wait_for("a dead letter", lambda: client.xrange("events.dead-letter"), 15)
    assert len(dead) == 1
    fields = {k.decode(): v.decode() for k, v in dead[0][1].items()}
    assert fields["uid"] == poison and fields["poison"] == "yes"
    assert fields["dead_letter.deliveries"] == "3"
    assert fields["dead_letter.stream"] == "events"
    assert fields["dead_letter.group"] == "hello-consumer"
    assert "ValueError: poison message" in fields["dead_letter.error"]
    wait_for("nothing pending", lambda: pending(client) == 0)
    assert sorted(r["uid"] for r in results(client)) == sorted(good)
    assert consumer.metric("consumer_messages_failed_total") == 3
    assert consumer.metric("consumer_messages_retried_total") == 2
    assert consumer.metric("consumer_messages_dead_lettered_total") == 1
    wait_for(
        "the dead-letter log line",
        lambda: any(
            line.get("msg") == "moved to the dead-letter stream" for line in consumer.logs()
        ),
    )


def test_sigterm_finishes_what_is_in_flight_and_exits_0_losing_nothing(
    client: redis.Redis, start_consumer: Start
) -> None:
    env = {
        "CONCURRENCY": "5",
        "SHUTDOWN_TIMEOUT_SECONDS": "10",
        "CLAIM_IDLE_MS": "3000",
        "HANDLER_TIMEOUT_SECONDS": "2.5",
    }
    first = start_consumer(env)
    first.wait_ready()
    uids = produce(client, "events", 20, sleep="1")
    wait_for("5 in flight", lambda: first.metric("consumer_messages_in_flight") == 5)
    began = time.monotonic()
    assert terminate(first) == 0
    took = time.monotonic() - began
    assert took < 5, f"drain took {took:.1f} s"
    # Each message it took was finished and recorded before it exited; no new one was begun.
    done = {r["uid"] for r in results(client)}
    assert 5 <= len(done) <= 10, len(done)
    assert pending(client) == 0
    assert any(line.get("msg") == "stopped" for line in first.logs())
    second = start_consumer({**env, "CONCURRENCY": "20"})
    wait_for("all 20 recorded", lambda: len(results(client)) >= 20, 20)
    assert sorted(r["uid"] for r in results(client)) == sorted(uids)
    assert terminate(second) == 0


def test_sigterm_with_a_short_timeout_hands_unfinished_messages_back(
    client: redis.Redis, start_consumer: Start
) -> None:
    env = {
        "SHUTDOWN_TIMEOUT_SECONDS": "0.3",
        "CLAIM_IDLE_MS": "1500",
        "HANDLER_TIMEOUT_SECONDS": "1.4",
    }
    first = start_consumer(env)
    first.wait_ready()
    uids = produce(client, "events", 3, sleep="1")
    wait_for("3 in flight", lambda: first.metric("consumer_messages_in_flight") == 3)
    assert terminate(first) == 0
    assert results(client) == []
    assert pending(client) == 3  # not acknowledged: handed back
    second = start_consumer(env)
    wait_for("all 3 taken over and recorded", lambda: len(results(client)) == 3, 15)
    assert sorted(r["uid"] for r in results(client)) == sorted(uids)
    assert {r["deliveries"] for r in results(client)} == {"2"}
    assert second.metric("consumer_messages_reclaimed_total") == 3


def test_a_killed_consumers_pending_messages_are_taken_over(
    client: redis.Redis, start_consumer: Start
) -> None:
    env = {"CONCURRENCY": "5", "CLAIM_IDLE_MS": "1000", "HANDLER_TIMEOUT_SECONDS": "0.9"}
    victim = start_consumer(env)
    victim.wait_ready()
    uids = produce(client, "events", 30, sleep="0.5")
    wait_for("5 in flight", lambda: victim.metric("consumer_messages_in_flight") == 5)
    kill(victim)  # SIGKILL: no drain, its 5 messages stay pending under its name
    stuck: list[Any] = client.xpending_range(  # type: ignore[assignment]
        "events", "hello-consumer", "-", "+", 100, victim.name
    )
    assert len(stuck) >= 5
    heir = start_consumer(env)
    wait_for("all 30 recorded", lambda: {r["uid"] for r in results(client)} == set(uids), 30)
    wait_for("nothing pending", lambda: pending(client) == 0)
    assert heir.metric("consumer_messages_reclaimed_total") >= len(stuck)
    by_heir = [r for r in results(client) if r["consumer"] == heir.name]
    assert len(by_heir) >= 25
    taken_over = {r["deliveries"] for r in results(client) if r["consumer"] == heir.name}
    assert "2" in taken_over
