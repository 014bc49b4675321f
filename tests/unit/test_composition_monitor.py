"""The upstream monitor and its wiring into the reconcile, with fakes for the API and the pods."""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Sequence
from typing import Any

import pytest
from tornado_operator import labels
from tornado_operator.autoscaling.scrape import Target
from tornado_operator.composition import health
from tornado_operator.composition.monitor import ActiveGate, Monitor, peering_allows
from tornado_operator.errors import APIError
from tornado_operator.observed import Observed
from tornado_operator.reconcile import Reconciler

from tests.unit.test_composition_health import FakePod

NOW = datetime.datetime(2026, 12, 1, 12, 0, 0, tzinfo=datetime.UTC)


def peer(priority: int, seconds_ago: float = 1, lifetime: int = 60) -> dict[str, Any]:
    seen = (NOW - datetime.timedelta(seconds=seconds_ago)).isoformat()
    return {"priority": priority, "lastseen": seen, "lifetime": lifetime}


def test_peering_rule_is_kopfs() -> None:
    def allows(status: dict[str, Any], identity: str | None = "me") -> bool:
        return peering_allows(status, identity=identity, priority=10, now=NOW)

    assert allows({})
    assert allows({"me": peer(10), "other": peer(5)})
    assert not allows({"me": peer(10), "other": peer(20)})  # a higher one is alive
    assert allows({"me": peer(10), "other": peer(20, seconds_ago=120)})  # that one is dead
    assert not allows({"me": peer(10), "twin": peer(10)})  # a tie pauses everyone
    # Without knowing our own id, one peer with our priority is us, two are a tie.
    assert allows({"x": peer(10), "y": peer(3)}, identity=None)
    assert not allows({"x": peer(10), "y": peer(10)}, identity=None)
    # kopf's own format: naive UTC times.
    naive = {"lastseen": NOW.replace(tzinfo=None).isoformat(), "priority": 20, "lifetime": 60}
    assert not peering_allows({"other": naive}, identity="me", priority=10, now=NOW)


class FakeKube:
    def __init__(self, bodies: dict[str, Any]) -> None:
        self.bodies = bodies
        self.gets: list[str] = []

    async def request(self, method: str, path: str, *, kind: str = "") -> dict[str, Any] | None:
        self.gets.append(path)
        body = self.bodies.get(path)
        if body is None:
            raise APIError("not found", status=404, reason="NotFound")
        return body  # type: ignore[no-any-return]


async def test_gate_reads_every_peering_object_and_caches() -> None:
    clock = [0.0]
    status = {"me": {**peer(10), "lastseen": datetime.datetime.now(datetime.UTC).isoformat()}}
    kube = FakeKube(
        {
            "/apis/kopf.dev/v1/namespaces/a/kopfpeerings/p": {"status": status},
            "/apis/kopf.dev/v1/namespaces/b/kopfpeerings/p": {"status": status},
        }
    )
    gate = ActiveGate(
        kube,
        standalone=False,
        peering="p",
        namespaces=["a", "b"],
        priority=10,
        identity="me",
        clock=lambda: clock[0],
    )
    assert await gate.active()
    assert len(kube.gets) == 2
    assert await gate.active() and len(kube.gets) == 2  # cached
    clock[0] = 11
    del kube.bodies["/apis/kopf.dev/v1/namespaces/b/kopfpeerings/p"]
    assert not await gate.active()  # unreadable: not working
    standalone = ActiveGate(None, standalone=False, peering="p", namespaces=[], priority=0)
    assert await standalone.active()


def pod(name: str, ip: str, instance: str = "a") -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": "shop",
            "labels": {**labels.selector_labels(instance), "pod-template-hash": "h"},
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": f"{instance}-h",
                    "controller": True,
                }
            ],
        },
        "spec": {
            "containers": [{"name": "app", "ports": [{"name": "http", "containerPort": 8080}]}]
        },
        "status": {
            "phase": "Running",
            "podIP": ip,
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


class FakeScraper:
    def __init__(self, pods: dict[str, FakePod | None]) -> None:
        self.pods = pods
        self.asked: list[list[str]] = []

    async def scrape_text(self, targets: Sequence[Target]) -> list[tuple[str, str | None]]:
        self.asked.append([t.url for t in targets])
        out: list[tuple[str, str | None]] = []
        for t in targets:
            fake = self.pods.get(t.pod)
            out.append((t.pod, fake.text() if fake is not None else None))
        return out


async def test_monitor_scrapes_callers_and_asks_for_a_write_when_states_change() -> None:
    p1, p2 = FakePod(), FakePod()
    scraper = FakeScraper({"a-1": p1, "a-2": p2})
    clock = [0.0]
    triggered: list[tuple[str, str]] = []

    async def trigger(ns: str, name: str) -> None:
        triggered.append((ns, name))

    pods = {("shop", "a"): [pod("a-1", "10.0.0.1"), pod("a-2", "10.0.0.2")]}
    monitor = Monitor(
        scraper,
        lambda ns, n: pods.get((ns, n), []),
        lambda: [("shop", "a")],
        trigger,
        ActiveGate(None, standalone=True, peering="p", namespaces=[], priority=0),
        clock=lambda: clock[0],
    )
    await monitor.tick()
    assert scraper.asked == [["http://10.0.0.1:8080/metrics", "http://10.0.0.2:8080/metrics"]]
    assert triggered == [("shop", "a")]  # the first report
    first = monitor.report("shop", "a")
    assert first is not None and first.scraped_pods == 2

    clock[0] = 10
    p1.call("b", "ok", n=20)
    p2.call("b", "ok", n=20)
    await monitor.tick()
    report = monitor.report("shop", "a")
    assert report is not None and report.upstreams["b"].calls == 40
    assert triggered == [("shop", "a")] * 2  # b appeared: a new state

    clock[0] = 20
    p1.call("b", "ok", n=5)
    await monitor.tick()
    assert len(triggered) == 2  # same states, numbers only, last write 10 s ago: no write

    clock[0] = 30
    p1.call("b", "connection_error", n=30)
    p1.breaker.labels("b").set(2)
    await monitor.tick()
    assert len(triggered) == 3  # b is failing now: at once
    assert health.state_of(monitor.report("shop", "a").upstreams["b"]) == "Failing"  # type: ignore[union-attr]

    clock[0] = 70
    p1.call("b", "circuit_open", n=3)
    await monitor.tick()
    assert len(triggered) == 4  # numbers changed and the last write is 40 s old

    # A pod that does not answer counts as not scraped; no callers left: forgotten.
    scraper.pods["a-2"] = None
    clock[0] = 80
    await monitor.tick()
    assert monitor.report("shop", "a").scraped_pods == 1  # type: ignore[union-attr]
    monitor.callers = lambda: []
    await monitor.tick()
    assert monitor.report("shop", "a") is None


async def test_monitor_run_stops_and_survives_a_bad_tick() -> None:
    class Broken(FakeScraper):
        async def scrape_text(self, targets: Sequence[Target]) -> list[tuple[str, str | None]]:
            raise RuntimeError("bug")

    stop = asyncio.Event()
    monitor = Monitor(
        Broken({}),
        lambda ns, n: [pod("a-1", "10.0.0.1")],
        lambda: [("shop", "a")],
        lambda ns, n: asyncio.sleep(0),
        ActiveGate(None, standalone=True, peering="p", namespaces=[], priority=0),
        interval=0.01,
    )
    task = asyncio.create_task(monitor.run(stop))
    await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(task, timeout=1)


# -- the reconcile writes status.upstreams, UpstreamsHealthy and the Events ----------------------


class ReconcileKube:
    """What Reconciler calls on kubeapi.Kube, recorded; nothing exists but what is applied."""

    def __init__(self) -> None:
        self.applied: dict[tuple[str, str], dict[str, Any]] = {}
        self.statuses: list[dict[str, Any]] = []
        self.events: list[tuple[str, str, str]] = []

    async def get(self, resource: Any, namespace: str, name: str) -> dict[str, Any] | None:
        return None

    async def apply(self, resource: Any, manifest: dict[str, Any]) -> dict[str, Any]:
        self.applied[(manifest["kind"], manifest["metadata"]["name"])] = manifest
        return {**manifest, "metadata": {**manifest["metadata"], "resourceVersion": "1"}}

    async def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        self.statuses.append(status)

    async def post_event(self, involved: Any, *, type: str, reason: str, message: str) -> None:
        self.events.append((type, reason, message))


def tornadoservice(name: str, spec: dict[str, Any], status: Any = None) -> dict[str, Any]:
    return {
        "apiVersion": "tornado-operator.dev/v1alpha1",
        "kind": "TornadoService",
        "metadata": {"name": name, "namespace": "shop", "uid": f"uid-{name}", "generation": 1},
        "spec": spec,
        "status": status or {},
    }


def reconciler(objects: dict[tuple[str, str], dict[str, Any]]) -> tuple[Reconciler, ReconcileKube]:
    def lookup(kind: str, ns: str, name: str) -> dict[str, Any] | None:
        return objects.get((ns, name)) if kind == "TornadoService" else None

    def callers(ns: str, name: str) -> list[tuple[str, str]]:
        return [
            ("shop", other)
            for (_ns, other), body in objects.items()
            if any(u.get("service") == name for u in body["spec"].get("upstreams") or [])
        ]

    kube = ReconcileKube()
    rec = Reconciler(
        kube,  # type: ignore[arg-type]
        "img:1",
        Observed(lookup, lambda ns, n: [], callers),
        operator_namespace="ops",
        first_status_grace=0,  # status at once: these tests read it
    )
    return rec, kube


async def settle(rec: Reconciler) -> None:
    for _ in range(5):
        await asyncio.sleep(0)
    if rec._tasks:
        await asyncio.gather(*list(rec._tasks))


async def test_a_missing_upstream_is_named_in_status_and_a_warning_event() -> None:
    objects = {("shop", "a"): tornadoservice("a", {"upstreams": [{"name": "b", "service": "b"}]})}
    rec, kube = reconciler(objects)
    outcome = await rec.reconcile("shop", "a", trigger="parent")
    await settle(rec)
    assert outcome.problem is None  # nothing crashes, nothing is retried
    [status] = kube.statuses
    [item] = status["upstreams"]
    assert item["state"] == "NotFound" and item["url"] == "http://b.shop.svc"
    cond = {c["type"]: c for c in status["conditions"]}
    assert cond["UpstreamsHealthy"]["status"] == "False"
    assert cond["UpstreamsHealthy"]["reason"] == "UpstreamNotFound"
    assert "b: TornadoService shop/b does not exist" in cond["UpstreamsHealthy"]["message"]
    # It never affects Ready (here: no Deployment status yet, ReplicasNotReady or so).
    assert cond["Ready"]["reason"] != "UpstreamNotFound"
    assert ("Warning", "UpstreamNotFound", "upstream b: TornadoService shop/b does not exist") in (
        kube.events
    )
    deployment = kube.applied[("Deployment", "a")]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert {"name": "UPSTREAMS", "value": "b=http://b.shop.svc"} in container["env"]


async def test_the_callee_policy_names_its_callers_and_the_caller_gets_its_url() -> None:
    objects = {
        ("shop", "a"): tornadoservice("a", {"upstreams": [{"name": "b", "service": "b"}]}),
        ("shop", "b"): tornadoservice(
            "b", {"service": {"port": 8000}}, {"url": "http://b.shop.svc:8000"}
        ),
    }
    rec, kube = reconciler(objects)
    await rec.reconcile("shop", "b", trigger="parent")
    policy = kube.applied[("NetworkPolicy", "b")]
    [rule] = policy["spec"]["ingress"]
    assert {"podSelector": {"matchLabels": labels.selector_labels("a")}} in rule["from"]
    await rec.reconcile("shop", "a", trigger="parent")
    [container] = kube.applied[("Deployment", "a")]["spec"]["template"]["spec"]["containers"]
    assert {"name": "UPSTREAMS", "value": "b=http://b.shop.svc:8000"} in container["env"]
    status = kube.statuses[-1]
    cond = {c["type"]: c for c in status["conditions"]}
    assert cond["UpstreamsHealthy"]["status"] == "True"
    assert status["upstreams"][0]["state"] == "Unknown"  # not measured yet


async def test_reports_become_status_and_removing_upstreams_removes_it() -> None:
    objects = {
        ("shop", "a"): tornadoservice(
            "a", {"upstreams": [{"name": "ext", "url": "http://e.example/"}]}
        )
    }
    rec, kube = reconciler(objects)
    seen = health.Seen({"ok": 1, "timeout": 9}, ((1.0, 10.0), (float("inf"), 10.0)), 2)
    rec.upstream_reports = lambda ns, n: health.Report(2, 2, {"ext": seen})
    await rec.reconcile("shop", "a", trigger="upstreams")
    await settle(rec)
    status = kube.statuses[-1]
    assert status["upstreams"][0]["state"] == "Failing"
    assert status["upstreams"][0]["breaker"] == "open"
    assert ("Warning", "UpstreamFailing") in [(t, r) for t, r, _ in kube.events]
    # The status now says so; the spec loses its upstreams: both go.
    objects[("shop", "a")] = tornadoservice("a", {}, status)
    await rec.reconcile("shop", "a", trigger="parent")
    last = kube.statuses[-1]
    assert last["upstreams"] is None
    assert "UpstreamsHealthy" not in {c["type"] for c in last["conditions"]}


@pytest.mark.parametrize("listing", [True, False])
async def test_links_changed_schedules_the_other_side(listing: bool) -> None:
    objects = {("shop", "a"): tornadoservice("a", {"upstreams": [{"name": "b", "service": "b"}]})}
    rec, _kube = reconciler(objects)
    asked: list[tuple[str, str, str]] = []

    def schedule(ns: str, name: str, *, trigger: str) -> None:
        asked.append((ns, name, trigger))

    rec.schedule = schedule  # type: ignore[method-assign]
    rec.links_changed("shop", "a", objects[("shop", "a")], listing=listing)
    assert asked == ([] if listing else [("shop", "b", "link")])


def test_the_callers_index_forgets_an_upstream_that_was_removed() -> None:
    from tornado_operator import handlers

    body = {
        "spec": {"upstreams": [{"name": "b", "service": "b"}, {"name": "u", "url": "http://u/"}]}
    }
    assert handlers.index_upstream_callers(body=body, name="a", namespace="shop") == {  # type: ignore[arg-type]
        ("shop", "b"): ("shop", "a")
    }
    # An empty mapping, never None: kopf keeps an object's old entries when given None.
    assert handlers.index_upstream_callers(body={"spec": {}}, name="a", namespace="shop") == {}  # type: ignore[arg-type]
