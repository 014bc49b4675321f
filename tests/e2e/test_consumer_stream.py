"""Consumers end to end (issue 12): real consumer pods, the real in-cluster broker, the operator.

The broker is the one the project ships (deploy/broker/redis/redis.yaml, image
tornado-operator/broker-redis), applied to the test's namespace. The consumers are pods of the
consumer template image (HANDLER=hello_consumer.examples:record appends every processed message's
`uid` to the stream `results`, on the same broker). The operator runs in this process
(`operator_ns`, as in every tests/e2e/test_operator_*.py) and reads the broker's lag itself.

The operator in this process and the test reach the broker by its Service's ClusterIP: this host
is the node, and the node reaches Service IPs (kube-proxy) and pods (NetworkPolicy lets the node
in), but it does not use the cluster's DNS, so it cannot resolve `redis.NAMESPACE.svc`. The
consumer pods are given the same URL, so everyone names one broker the same way; a pod resolves
the DNS name too, and an operator running in the cluster would use it.

- No message lost: 10,000 messages; the consumers scale up on lag, are rolled out 3 times and one
  of them is SIGKILLed (by the container runtime: no SIGTERM, nothing acknowledged or handed
  back) while they consume; every message is then processed at least once (duplicates counted
  and printed), and the consumers scale back down to the minimum once the stream is drained.
- Poison messages: one that always fails ends in the dead-letter stream after MAX_DELIVERIES
  deliveries, with its fields and the dead_letter.* ones, while the others keep flowing.

Run with -s to see the numbers (`say`).
"""

from __future__ import annotations

import collections
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from hack import images, paths
from hack.cluster import kind, providers
from tests.e2e.operator_support import (
    ROOT,
    apply,
    get,
    kubectl,
    patch,
    tornadoservice,
    wait_for,
    wait_ready,
)

pytest_plugins = ["tests.e2e.operator_fixtures"]

BROKER_MANIFEST = ROOT / "deploy/broker/redis/redis.yaml"
STREAM, GROUP, RESULTS = "orders", "billing", "results"
MESSAGES = 10_000
SLEEP = "0.2"  # seconds per message in the handler: the backlog lasts through the disruptions
CONCURRENCY = "5"  # per pod: at most 25 messages/s per pod, 100/s with 4
MAX_REPLICAS = 4
ROLLOUTS = 3
# Faster than the defaults, so that a killed or stopped consumer's messages come back soon.
CONSUMER_ENV = {
    "HANDLER": "hello_consumer.examples:record",
    "RESULT_STREAM": RESULTS,
    "CONCURRENCY": CONCURRENCY,
    "CLAIM_IDLE_MS": "5000",
    "CLAIM_INTERVAL_SECONDS": "2",
    "HANDLER_TIMEOUT_SECONDS": "3",
    "RETRY_BACKOFF_MAX_SECONDS": "2",
}
# No preStop pause nor drain delay (a consumer has no endpoints to leave): stops in seconds.
SHUTDOWN = {"preStopSleepSeconds": 0, "drainDelaySeconds": 0, "timeoutSeconds": 5}


@pytest.fixture(scope="session")
def consumer_images(kubeconfig: Path) -> tuple[str, str]:
    """The consumer template's and the broker's images, built and loaded into the node."""
    refs = [images.build_consumer_template_image(), images.build_broker_image()]
    providers.load_images(refs)
    return refs[0], refs[1]


def deploy_broker(ns: str) -> tuple[str, redis.Redis]:
    """The shipped broker in `ns`, Ready; its URL (by ClusterIP) and a client from this host."""
    kubectl("apply", "-n", ns, "-f", str(BROKER_MANIFEST))
    kubectl(
        "-n", ns, "rollout", "status", "statefulset/redis", "--timeout=120s", timeout=130
    )  # fmt: skip
    kubectl("-n", ns, "wait", "--for=condition=Ready", "pod/redis-0", "--timeout=60s", timeout=70)
    # One verified request inside the pod, then one from here, before anything loops on it.
    pong = kubectl("-n", ns, "exec", "redis-0", "--", "/usr/bin/redis-cli", "ping").stdout
    assert pong.strip() == "PONG", pong
    svc = get("service", "redis", ns)
    assert svc is not None
    ip = svc["spec"]["clusterIP"]
    client = redis.Redis(
        host=ip, port=6379, db=0, socket_timeout=10, socket_connect_timeout=5,
        decode_responses=True,
    )  # fmt: skip
    # kube-proxy programs a new Service a moment after it exists; until then this host's
    # connections to its IP are refused (the hermetic rules reset them, nothing leaves).
    wait_for(f"the broker's Service {ip}:6379 from this host", lambda: _ping(client), 60, 1)
    return f"redis://{ip}:6379/0", client


def say(text: str) -> None:
    """print() for the numbers: to the real stdout, since the operator's KopfRunner (click's
    CliRunner) swaps sys.stdout for its own buffer while it runs."""
    out = sys.__stdout__
    assert out is not None
    out.write(text + "\n")
    out.flush()


def _ping(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


def consumer_service(name: str, url: str, image: str, **spec: Any) -> dict[str, Any]:
    env = {**CONSUMER_ENV, **spec.pop("extra_env", {})}
    return tornadoservice(
        name,
        image=image,
        consumer={"broker": url, "stream": STREAM, "group": GROUP, **spec.pop("consumer", {})},
        env=[{"name": k, "value": v} for k, v in env.items()],
        shutdown=SHUTDOWN,
        **spec,
    )


def produce(client: redis.Redis, uids: list[str], **fields: str) -> list[str]:
    ids: list[str] = []
    for start in range(0, len(uids), 1000):
        pipe = client.pipeline(transaction=False)
        for uid in uids[start : start + 1000]:
            pipe.xadd(STREAM, {"uid": uid, **fields})
        ids += pipe.execute()
    return ids


def results(client: redis.Redis, stream: str = RESULTS) -> list[tuple[str, dict[str, str]]]:
    """Every entry of `stream`, read in pages."""
    found: list[tuple[str, dict[str, str]]] = []
    start = "-"
    for _ in range(1000):  # at most 1,000 pages of 1,000
        page = client.xrange(stream, min=start, count=1000)
        found += page
        if len(page) < 1000:
            return found
        start = "(" + page[-1][0]
    raise AssertionError(f"{stream} has more than a million entries")


def group_info(client: redis.Redis) -> dict[str, Any]:
    [info] = [g for g in client.xinfo_groups(STREAM) if g["name"] == GROUP]
    return dict(info)


def spec_replicas(name: str, ns: str) -> int:
    return int(((get("tornadoservice", name, ns) or {}).get("spec") or {}).get("replicas", 0))


def pods(name: str, ns: str) -> list[dict[str, Any]]:
    data = kubectl(
        "get", "pods", "-n", ns, "-l", f"app.kubernetes.io/instance={name}", "-o", "json"
    ).stdout
    return [p for p in json.loads(data)["items"] if not p["metadata"].get("deletionTimestamp")]


def ready(pod: dict[str, Any]) -> bool:
    conds = (pod.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)


def rolled_out(name: str, ns: str, revision: str) -> bool:
    """The Deployment's pods are all of `revision`, updated and available (old ones may still
    be stopping: they hand back what they hold)."""
    dep = get("deployment", name, ns) or {}
    st = dep.get("status") or {}
    template = dep["spec"]["template"]["metadata"].get("annotations") or {}
    if template.get("test/revision") != revision:
        return False
    if st.get("observedGeneration", 0) < dep["metadata"]["generation"]:
        return False
    want = dep["spec"]["replicas"]
    if not (st.get("updatedReplicas") == st.get("availableReplicas") == want):
        return False
    live = pods(name, ns)
    return bool(live) and all(
        (p["metadata"].get("annotations") or {}).get("test/revision") == revision and ready(p)
        for p in live
    )


def sigkill(pod: dict[str, Any]) -> None:
    """SIGKILL the pod's container through the container runtime, as the OOM killer or a crash
    would: the process gets no SIGTERM, acknowledges nothing, hands nothing back."""
    [status] = pod["status"]["containerStatuses"]
    runtime, _, cid = status["containerID"].partition("://")
    assert runtime == "containerd", status["containerID"]
    kill = ["task", "kill", "-s", "SIGKILL", cid]
    if providers.targets_local():
        sock = str(paths.paths().containerd_sock)
        subprocess.run(["ctr", "--address", sock, "-n", "k8s.io", *kill], check=True, timeout=30)
    elif kind.running():
        kind.node_exec(pod["spec"]["nodeName"], "ctr", "-n", "k8s.io", *kill, timeout=30)
    else:
        pytest.skip("SIGKILL needs the local cluster's or kind's containerd")


class Watch:
    """Samples spec.replicas and the results' length every 2 s, in a thread, for at most
    `max_seconds`: the most replicas reached, and when."""

    def __init__(self, name: str, ns: str, client: redis.Redis, max_seconds: float) -> None:
        self.name, self.ns, self.client = name, ns, client
        self.max_replicas = 0
        self.samples: list[tuple[float, int, int]] = []
        self._stop = threading.Event()
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._run, args=(max_seconds,), daemon=True)
        self._thread.start()

    def _run(self, max_seconds: float) -> None:
        while not self._stop.is_set() and time.monotonic() - self._t0 < max_seconds:
            try:
                replicas = spec_replicas(self.name, self.ns)
                done = int(self.client.xlen(RESULTS))
            except (RuntimeError, OSError, redis.RedisError, json.JSONDecodeError):
                pass
            else:
                self.max_replicas = max(self.max_replicas, replicas)
                self.samples.append((time.monotonic() - self._t0, replicas, done))
            self._stop.wait(2)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)


@pytest.fixture
def broker(operator_ns: str, consumer_images: tuple[str, str]) -> Iterator[tuple[str, redis.Redis]]:
    url, client = deploy_broker(operator_ns)
    try:
        yield url, client
    finally:
        client.close()


def test_no_message_lost_through_scaling_rollouts_and_a_sigkill(
    operator_ns: str, broker: tuple[str, redis.Redis], consumer_images: tuple[str, str]
) -> None:
    ns, (url, client) = operator_ns, broker
    name = "orders"
    client.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    uids = [f"m{i:05d}" for i in range(MESSAGES)]
    t_produce = time.monotonic()
    produce(client, uids, sleep=SLEEP)
    assert client.xlen(STREAM) == MESSAGES
    say(f"\n[no-loss] produced {MESSAGES} messages in {time.monotonic() - t_produce:.1f}s")

    auto = {
        "enabled": True,
        "metric": "lag",
        # 100 waiting per replica: the maximum until the last few hundred, the minimum once
        # drained (10 s later).
        "targetLagPerReplica": 100,
        "minReplicas": 1,
        "maxReplicas": MAX_REPLICAS,
        "behavior": {"scaleDown": {"stabilizationWindowSeconds": 10}},
    }
    t0 = time.monotonic()
    apply(
        consumer_service(
            name, url, consumer_images[0], autoscaling=auto, replicas=1,
            podAnnotations={"test/revision": "0"}, rollout={"maxSurge": 2},
        ),
        ns,
    )  # fmt: skip
    watch = Watch(name, ns, client, max_seconds=600)
    try:
        wait_ready(name, ns, timeout=180)
        # 10,000 waiting, 100 per replica: the maximum.
        wait_for("a scale-up on lag", lambda: spec_replicas(name, ns) > 1, timeout=90)
        up = spec_replicas(name, ns)
        say(f"[no-loss] scaled up to {up} after {time.monotonic() - t0:.0f}s")
        wait_for("2 ready consumers", lambda: sum(map(ready, pods(name, ns))) >= 2, 120)

        rollouts = 0
        killed = ""
        for revision in range(1, ROLLOUTS + 1):
            done_before = int(client.xlen(RESULTS))
            assert done_before < MESSAGES, "drained before the disruptions: make it slower"
            annotations = {"test/revision": str(revision)}
            patch("tornadoservice", name, ns, {"spec": {"podAnnotations": annotations}})
            t_roll = time.monotonic()
            if revision == 2:
                # The SIGKILL in the middle of a rollout: a pod of the new revision, once ready
                # and consuming.
                def new_ready(want: str = str(revision)) -> dict[str, Any] | None:
                    for p in pods(name, ns):
                        rev = (p["metadata"].get("annotations") or {}).get("test/revision")
                        if rev == want and ready(p):
                            return p
                    return None

                victim = wait_for("a ready pod of revision 2", new_ready, 120)
                time.sleep(2)  # it has messages in flight
                sigkill(victim)
                killed = victim["metadata"]["name"]
                say(f"[no-loss] SIGKILLed {killed} at {client.xlen(RESULTS)} processed")

                # The kubelet restarts the container; its exit was a SIGKILL's (137).
                def restarted(pod_name: str = killed) -> dict[str, Any] | None:
                    pod = get("pod", pod_name, ns) or {}
                    [cs] = (pod.get("status") or {}).get("containerStatuses") or [{}]
                    term = (cs.get("lastState") or {}).get("terminated")
                    return term if cs.get("restartCount", 0) >= 1 and term else None

                term = wait_for("the SIGKILLed container's restart", restarted, 60)
                assert term["exitCode"] == 137, term

            wait_for(f"rollout {revision}", lambda r=str(revision): rolled_out(name, ns, r), 180, 1)
            rollouts += 1
            say(
                f"[no-loss] rollout {revision} done in {time.monotonic() - t_roll:.0f}s "
                f"({done_before} -> {client.xlen(RESULTS)} processed, "
                f"{spec_replicas(name, ns)} replicas)"
            )

        # Every message processed at least once.
        def drained() -> bool:
            info = group_info(client)
            return client.xlen(RESULTS) >= MESSAGES and info["pending"] == 0 and info["lag"] == 0

        wait_for("the stream drained", drained, timeout=360, interval=2)
        t_drained = time.monotonic() - t0
        at_drain = spec_replicas(name, ns)
        got = collections.Counter(fields["uid"] for _, fields in results(client))
        lost = [u for u in uids if u not in got]
        duplicates = sum(n - 1 for n in got.values())
        redelivered = sum(1 for _, f in results(client) if int(f["deliveries"]) > 1)
        say(
            f"[no-loss] drained in {t_drained:.0f}s: {len(got)} distinct ids processed, "
            f"{len(lost)} lost, {duplicates} duplicates ({sum(got.values())} results, "
            f"{redelivered} processed on a second delivery or later), "
            f"max replicas {watch.max_replicas}, rollouts {rollouts}, SIGKILL {killed}"
        )
        assert not lost, f"{len(lost)} messages lost, e.g. {lost[:10]}"
        assert set(got) == set(uids)
        assert client.xlen(f"{STREAM}.dead-letter") == 0
        assert watch.max_replicas > 1

        # Back to the minimum once drained (10 s window).
        t_down = time.monotonic()
        wait_for("1 replica", lambda: spec_replicas(name, ns) == 1, timeout=120, interval=2)
        wait_for("1 pod", lambda: len(pods(name, ns)) == 1, timeout=90, interval=2)
        say(
            f"[no-loss] {at_drain} replicas when drained, 1 replica "
            f"{time.monotonic() - t_down:.0f}s later"
        )
        auto_status = (get("tornadoservice", name, ns) or {})["status"]["autoscaling"]
        assert auto_status["metric"] == "lag"
    finally:
        watch.stop()
        samples = " ".join(f"{t:.0f}s:{r}:{n}" for t, r, n in watch.samples)
        say(f"[no-loss] samples (time:replicas:processed): {samples}")


def test_a_poison_message_is_dead_lettered_and_the_rest_flow(
    operator_ns: str, broker: tuple[str, redis.Redis], consumer_images: tuple[str, str]
) -> None:
    ns, (url, client) = operator_ns, broker
    name = "poisoned"
    dead, max_deliveries = "orders-dead", 3
    client.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    before = [f"a{i:03d}" for i in range(100)]
    after = [f"b{i:03d}" for i in range(300)]
    apply(
        consumer_service(
            name, url, consumer_images[0], replicas=2,
            consumer={"deadLetterStream": dead},
            extra_env={
                "MAX_DELIVERIES": str(max_deliveries), "RETRY_BACKOFF_SECONDS": "0.5",
                "CONCURRENCY": "4",
            },
        ),
        ns,
    )  # fmt: skip
    wait_ready(name, ns, timeout=180)
    t0 = time.monotonic()
    produce(client, before, sleep="0.05")
    [poison_id] = produce(client, ["poison-1"], poison="yes")
    produce(client, after, sleep="0.1")

    def finished() -> bool:
        info = group_info(client)
        return client.xlen(dead) >= 1 and info["pending"] == 0 and info["lag"] == 0

    wait_for("everything processed or dead-lettered", finished, timeout=120, interval=1)
    elapsed = time.monotonic() - t0
    [(dl_id, fields)] = client.xrange(dead)
    say(f"\n[poison] dead letter after {elapsed:.1f}s: {fields}")
    assert fields["uid"] == "poison-1" and fields["poison"] == "yes"
    assert fields["dead_letter.id"] == poison_id
    assert fields["dead_letter.stream"] == STREAM
    assert fields["dead_letter.group"] == GROUP
    assert fields["dead_letter.deliveries"] == str(max_deliveries)
    assert "poison" in fields["dead_letter.error"]
    assert fields["dead_letter.consumer"].startswith(f"{name}-")

    entries = results(client)
    got = collections.Counter(f["uid"] for _, f in entries)
    assert "poison-1" not in got
    lost = [u for u in before + after if u not in got]
    assert not lost, f"{len(lost)} lost: {lost[:10]}"
    # It blocked nothing: messages behind it were processed while it was being retried.
    dl_ms = int(dl_id.split("-")[0])
    behind_first = sum(
        1 for rid, f in entries if f["uid"].startswith("b") and int(rid.split("-")[0]) < dl_ms
    )
    say(
        f"[poison] {len(got)} others processed ({sum(got.values()) - len(got)} duplicates), "
        f"{behind_first} of the {len(after)} behind it before it was dead-lettered"
    )
    assert behind_first > 0
