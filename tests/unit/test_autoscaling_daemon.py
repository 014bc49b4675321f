"""The autoscaler's loop for one TornadoService against a fake API (the one `request` method it
uses), a recorded scraper and kopf's own stop flag: what it writes, in which order, and what it
leaves alone."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

import kopf
import pytest
from kopf._core.intents.stoppers import DaemonStopper
from tornado_operator import labels, rendering, settings, validation
from tornado_operator.assessment import Event
from tornado_operator.autoscaling import algorithm, daemon, scrape
from tornado_operator.autoscaling.scrape import PodMetrics, ScrapeResult, Target
from tornado_operator.errors import APIError

NS, NAME = "shop", "web"
BASE = "/apis/tornado-operator.dev/v1alpha1/namespaces/shop/tornadoservices/web"
WHY = kopf.DaemonStoppingReason


def pod(name: str, ip: str) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": NS,
            "labels": {**labels.common_labels(NAME, "x:1"), "pod-template-hash": "7c"},
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": "web-7c",
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


def body(**autoscaling: Any) -> dict[str, Any]:
    auto = {
        "enabled": True,
        "metric": "concurrency",
        "targetConcurrency": 5,
        "minReplicas": 1,
        "maxReplicas": 6,
        **autoscaling,
    }
    return {
        "apiVersion": "tornado-operator.dev/v1alpha1",
        "kind": "TornadoService",
        "metadata": {"name": NAME, "namespace": NS, "uid": "u-1", "resourceVersion": "10"},
        "spec": {"replicas": 1, "autoscaling": auto},
        "status": {},
    }


class FakeKube:
    """Records requests; answers the scale subresource from `replicas` and `rv`."""

    def __init__(self, replicas: int = 1) -> None:
        self.replicas = replicas
        self.rv = 10
        self.uid = "u-1"
        self.calls: list[tuple[str, str, Any, str]] = []
        self.fail: dict[tuple[str, str], APIError] = {}

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        kind: str = "",
    ) -> dict[str, Any] | None:
        assert kind == "TornadoService"
        self.calls.append((method, path.removeprefix(BASE), body, content_type))
        short = path.removeprefix(BASE)
        error = self.fail.pop((method, short), None)
        if error is not None:
            raise error
        if short == "/scale" and method == "GET":
            return {
                "metadata": {"resourceVersion": str(self.rv), "uid": self.uid},
                "spec": {"replicas": self.replicas},
            }
        if short == "/scale" and method == "PATCH":
            assert query == {"fieldManager": "tornado-operator-autoscaler"}
            self.replicas = body["spec"]["replicas"]
        self.rv += 1
        return {}

    def writes(self) -> list[tuple[str, Any]]:
        return [(path, b) for method, path, b, _ in self.calls if method == "PATCH"]


class Script:
    """A scraper answering each scrape from a list: pod -> in flight, or an error reason."""

    def __init__(self, answers: list[dict[str, float | str]]) -> None:
        self.answers = answers
        self.closed = False

    async def scrape(self, targets: Sequence[Target]) -> list[ScrapeResult]:
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        out = []
        for target in targets:
            value = answer[target.pod]
            if isinstance(value, str):
                out.append(ScrapeResult(target.pod, 0.0, 0.01, None, value, "refused"))
            else:
                out.append(ScrapeResult(target.pod, 0.0, 0.01, PodMetrics(value, None)))
        return out

    async def close(self) -> None:
        self.closed = True


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def runtime(kube: FakeKube, scraper: Script, clock: Clock) -> tuple[daemon.Runtime, list[Any]]:
    posted: list[Any] = []
    rt = daemon.Runtime(
        kube,
        scraper,
        post_event=lambda parent, event: posted.append((parent["metadata"]["name"], event)),
        clock=clock,
        wall=lambda: "2026-03-01T10:00:00Z",
    )
    return rt, posted


def run_daemon(
    obj: dict[str, Any],
    kube: FakeKube,
    scraper: Script,
    ticks: int,
    pods: list[dict[str, Any]],
    reason: Any = WHY.FILTERS_MISMATCH,
    rt: daemon.Runtime | None = None,
) -> tuple[daemon.Runtime, list[Any], StopFlag]:
    clock = Clock()
    posted: list[Any] = []
    if rt is None:
        rt, posted = runtime(kube, scraper, clock)
    else:
        rt.clock = clock
    stopped = StopFlag(ticks, clock, reason)
    asyncio.run(daemon.run(NS, NAME, obj, stopped, rt, lambda ns, name: pods))
    return rt, posted, stopped


class StopFlag:
    """kopf's stop flag, raised with `reason` after `count` waits; each wait moves the clock."""

    def __init__(self, count: int, clock: Clock, reason: Any) -> None:
        self._stopper = DaemonStopper()
        self._flag = self._stopper.async_waiter
        self._count = count
        self._clock = clock
        self._reason = reason
        self.waits: list[float] = []

    def __bool__(self) -> bool:
        return bool(self._flag)

    @property
    def reason(self) -> Any:
        return self._flag.reason

    def wait(self, timeout: float | None = None) -> Any:
        async def waiting() -> None:
            self.waits.append(timeout or 0.0)
            self._clock.now += timeout or 0.0
            if len(self.waits) >= self._count:
                self._stopper.set(reason=self._reason)

        return waiting()


# -- the filter and the stop reasons ---------------------------------------------------------


def test_the_daemon_runs_only_for_concurrency() -> None:
    assert daemon.wanted(body()["spec"])
    assert not daemon.wanted(body(metric="cpu")["spec"])
    assert not daemon.wanted(body(enabled=False)["spec"])
    assert not daemon.wanted({})


@pytest.mark.parametrize(
    ("reason", "clears"),
    [
        (WHY.FILTERS_MISMATCH, True),
        (WHY.FILTERS_MISMATCH | WHY.DAEMON_SIGNALLED, True),
        (WHY.RESOURCE_DELETED, False),
        (WHY.FILTERS_MISMATCH | WHY.RESOURCE_DELETED, False),
        (WHY.OPERATOR_EXITING, False),
        (WHY.OPERATOR_PAUSING, False),
        (None, False),
    ],
)
def test_status_is_removed_only_when_the_spec_stops_asking(reason: Any, clears: bool) -> None:
    assert daemon.clears_status(reason) is clears


# -- ticks -----------------------------------------------------------------------------------


def test_a_burst_scales_up_through_the_scale_subresource() -> None:
    kube = FakeKube(replicas=1)
    # 30 in flight on the one ready pod, target 5: 6 replicas.
    rt, posted, _ = run_daemon(body(), kube, Script([{"web-a": 30.0}]), 1, [pod("web-a", "1")])
    method, path, patch, content_type = kube.calls[1]
    assert (method, path, content_type) == ("PATCH", "/scale", "application/merge-patch+json")
    # The resourceVersion just read: a kubectl scale in between makes this a 409.
    assert patch == {"metadata": {"resourceVersion": "10"}, "spec": {"replicas": 6}}
    assert [c[:2] for c in kube.calls] == [
        ("GET", "/scale"),
        ("PATCH", "/scale"),
        ("PATCH", "/status"),
        ("PATCH", "/status"),  # on stop (the spec no longer asks): status.autoscaling removed
    ]
    [(name, event)] = posted
    assert name == NAME and isinstance(event, Event)
    assert (event.type, event.reason) == ("Normal", "ScaledUp")
    assert event.message.startswith("from 1 to 6 replicas: panic: ")
    status = kube.calls[2][2]["status"]["autoscaling"]
    assert status["desiredReplicas"] == 6 and status["panicMode"] is True
    assert status["lastScaleTime"] == "2026-03-01T10:00:00Z"
    assert status["lastScaleReason"] == event.message
    assert kube.calls[3][2] == {"status": {"autoscaling": None}}
    assert (NS, NAME) not in rt.autoscalers  # forgotten on stop


def test_a_concurrent_kubectl_scale_wins_and_the_tick_is_skipped() -> None:
    kube = FakeKube(replicas=1)
    kube.fail[("PATCH", "/scale")] = APIError("the object has been modified", status=409)
    _, posted, _ = run_daemon(
        body(), kube, Script([{"web-a": 30.0}]), 2, [pod("web-a", "1")], WHY.OPERATOR_EXITING
    )
    # First tick: 409, so no Event and no status for a decision that was not written.
    # Second tick: read again, decided again, written.
    assert [c[:2] for c in kube.calls] == [
        ("GET", "/scale"),
        ("PATCH", "/scale"),
        ("GET", "/scale"),
        ("PATCH", "/scale"),
        ("PATCH", "/status"),
    ]
    assert kube.calls[3][2]["metadata"] == {"resourceVersion": "10"}
    assert [e.reason for _, e in posted] == ["ScaledUp"]
    assert kube.replicas == 6


def test_steady_state_writes_status_once_and_not_every_tick() -> None:
    kube = FakeKube(replicas=2)
    scraper = Script([{"web-a": 5.0, "web-b": 5.0}])
    _, posted, stopped = run_daemon(
        body(), kube, scraper, 5, [pod("web-a", "1"), pod("web-b", "2")], WHY.OPERATOR_EXITING
    )
    assert posted == []
    assert kube.writes() == [("/status", kube.calls[1][2])]  # one status write, nothing else
    assert kube.calls[1][2]["status"]["autoscaling"]["desiredReplicas"] == 2
    assert stopped.waits == [2.0] * 5  # every TICK_SECONDS


def test_missing_metrics_hold_the_replicas_and_are_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    kube = FakeKube(replicas=2)
    scraper = Script([{"web-a": 0.0, "web-b": scrape.CONNECTION}])
    # Long after start (no warm-up), no load at all: it would scale down to 1, but web-b's
    # metrics are missing.
    obj = body(behavior={"scaleDown": {"stabilizationWindowSeconds": 0}})
    clock = Clock()
    rt, _ = runtime(kube, scraper, clock)
    rt.autoscalers.ensure(
        (NS, NAME), algorithm.Params(5, 1, 6), now=clock.now - 600, current_replicas=2
    )
    with caplog.at_level(logging.WARNING):
        run_daemon(obj, kube, scraper, 40, [pod("web-a", "1"), pod("web-b", "2")], rt=rt)
    assert kube.replicas == 2
    assert ("PATCH", "/scale") not in [c[:2] for c in kube.calls]
    block = kube.calls[1][2]["status"]["autoscaling"]
    assert block["missingPods"] == 1 and block["scrapedPods"] == 1 and block["readyPods"] == 2
    assert "metrics missing from 1 of 2 ready pods: not scaling down" in block["message"]
    warnings = [r.getMessage() for r in caplog.records if "metrics missing" in r.getMessage()]
    # 40 ticks of 2 s: logged at the start and once more after 60 s, not 40 times.
    assert len(warnings) == 2
    assert warnings[0] == (
        "metrics missing from 1 of 2 ready pods of shop/web (not scaling down): "
        "web-b: connection: refused"
    )


def test_an_invalid_spec_waits_without_calling_the_api(caplog: pytest.LogCaptureFixture) -> None:
    kube = FakeKube()
    # An older CRD without the CEL rules let this through: concurrency without a target.
    obj = body()
    del obj["spec"]["autoscaling"]["targetConcurrency"]
    with caplog.at_level(logging.WARNING):
        run_daemon(obj, kube, Script([{}]), 3, [], WHY.OPERATOR_EXITING)
    assert kube.calls == []
    [line] = [r.getMessage() for r in caplog.records]
    assert line == (
        "not autoscaling shop/web: spec.autoscaling.targetConcurrency: is required with "
        "spec.autoscaling.metric concurrency"
    )


def test_api_errors_skip_ticks_and_name_the_missing_permission(
    caplog: pytest.LogCaptureFixture,
) -> None:
    kube = FakeKube()
    kube.fail[("GET", "/scale")] = APIError("forbidden", status=403, reason="Forbidden")
    with caplog.at_level(logging.INFO):
        run_daemon(body(), kube, Script([{"web-a": 1.0}]), 2, [pod("web-a", "1")])
    messages = [r.getMessage() for r in caplog.records]
    assert any(
        "skipping ticks, API error: HTTP 403: forbidden (RBAC needs tornadoservices/scale" in m
        for m in messages
    )
    assert "API calls for shop/web work again" in messages
    assert ("GET", "/scale") in [c[:2] for c in kube.calls[1:]]  # the loop went on


def test_a_deleted_service_stops_its_own_daemon() -> None:
    # No finalizer, so kopf does not stop the daemon of a deleted object: it stops itself.
    kube = FakeKube()
    kube.fail[("GET", "/scale")] = APIError("not found", status=404)
    rt, _, stopped = run_daemon(
        body(), kube, Script([{"web-a": 30.0}]), 10, [pod("web-a", "1")], WHY.RESOURCE_DELETED
    )
    assert [c[:2] for c in kube.calls] == [("GET", "/scale")]
    assert stopped.waits == [] and not stopped  # it returned on its own
    assert len(rt.autoscalers) == 0


def test_a_same_named_successor_is_left_to_its_own_daemon() -> None:
    kube = FakeKube(replicas=1)
    clock = Clock()
    rt, _ = runtime(kube, Script([{"web-a": 30.0}]), clock)
    successor = rt.autoscalers.ensure(
        (NS, NAME), algorithm.Params(5, 1, 6), now=clock.now, current_replicas=1
    )
    kube.uid = "u-2"  # the object was deleted and created again: another uid
    run_daemon(body(), kube, Script([{"web-a": 30.0}]), 10, [pod("web-a", "1")], rt=rt)
    assert [c[:2] for c in kube.calls] == [("GET", "/scale")]  # no write to the new object
    assert rt.autoscalers.get((NS, NAME)) is successor  # and its decider stays


def test_switching_to_cpu_stops_quietly(caplog: pytest.LogCaptureFixture) -> None:
    # The live body already says cpu while kopf has not stopped the daemon yet.
    kube = FakeKube()
    obj = body(metric="cpu")
    del obj["spec"]["autoscaling"]["targetConcurrency"]
    with caplog.at_level(logging.WARNING):
        run_daemon(obj, kube, Script([{}]), 1, [])
    assert caplog.records == []
    assert kube.calls == [
        ("PATCH", "/status", {"status": {"autoscaling": None}}, daemon.MERGE_PATCH)
    ]


def test_an_async_event_poster_is_awaited() -> None:
    kube = FakeKube(replicas=1)
    clock = Clock()
    posted: list[Event] = []

    async def post(parent: dict[str, Any], event: Event) -> None:
        await asyncio.sleep(0)
        posted.append(event)

    rt = daemon.Runtime(kube, Script([{"web-a": 30.0}]), post_event=post, clock=clock)
    run_daemon(body(), kube, Script([{"web-a": 30.0}]), 1, [pod("web-a", "1")], rt=rt)
    assert [e.reason for e in posted] == ["ScaledUp"]


def test_the_last_scale_survives_a_restart() -> None:
    # status.autoscaling found at start carries lastScaleTime/Reason over.
    kube = FakeKube(replicas=2)
    obj = body()
    obj["status"] = {"autoscaling": {"lastScaleTime": "earlier", "lastScaleReason": "from 1 to 2"}}
    run_daemon(
        obj,
        kube,
        Script([{"web-a": 5.0, "web-b": 5.0}]),
        1,
        [pod("web-a", "1"), pod("web-b", "2")],
        WHY.OPERATOR_EXITING,
    )
    block = kube.calls[1][2]["status"]["autoscaling"]
    assert (block["lastScaleTime"], block["lastScaleReason"]) == ("earlier", "from 1 to 2")


# -- the settings' defaults are the autoscaler's ---------------------------------------------


def test_settings_defaults_are_the_autoscalers_constants() -> None:
    cfg = settings.Settings()
    assert cfg.scrape_via == scrape.DIRECT
    assert cfg.scrape_concurrency == scrape.SCRAPE_CONCURRENCY
    assert cfg.scrape_timeout_seconds == scrape.SCRAPE_TIMEOUT_SECONDS
    assert cfg.scrape_interval_seconds == algorithm.TICK_SECONDS
    for via in scrape.SCRAPE_VIA:
        assert settings.from_env({"TORNADO_OPERATOR_SCRAPE_VIA": via}).scrape_via == via


# -- one writer: no HPA with metric concurrency ----------------------------------------------


def test_no_hpa_with_metric_concurrency() -> None:
    parent = rendering.Parent(NAME, NS, "u-1")
    spec = validation.validated_spec(body()["spec"])
    assert rendering.render_hpa(parent, spec, "x:1") is None
    # The bounds still clamp the Deployment, and the PDB still sees maxReplicas.
    assert rendering.desired_replicas({**spec, "replicas": 9}) == 6
    assert rendering.max_possible_replicas(spec) == 6
    cpu = body(metric="cpu")["spec"]
    del cpu["autoscaling"]["targetConcurrency"]
    hpa = rendering.render_hpa(parent, validation.validated_spec(cpu), "x:1")
    assert hpa is not None and hpa["spec"]["maxReplicas"] == 6


# -- the wiring ------------------------------------------------------------------------------


def test_one_daemon_per_tornadoservice_with_concurrency() -> None:
    from kopf._core.intents import registries
    from tornado_operator import GROUP, PLURAL, VERSION, handlers

    found = [
        h
        for h in registries.get_default_registry()._spawning.get_all_handlers()
        if h.id == "autoscaler"
    ]
    assert len(found) == 1
    [daemon_handler] = found
    assert daemon_handler.fn is handlers.autoscaler
    assert daemon_handler.when is daemon.wanted
    # Deleting a TornadoService never waits for the operator: no finalizer for the daemon.
    assert daemon_handler.requires_finalizer is False
    # kopf signals a stop and gives the tick 5 s to end, then cancels it.
    assert (daemon_handler.cancellation_backoff, daemon_handler.cancellation_timeout) == (5, 5)
    assert daemon_handler.selector is not None
    selector = daemon_handler.selector
    assert (selector.group, selector.version, selector.any_name) == (GROUP, VERSION, PLURAL)


def test_the_runtime_follows_the_settings() -> None:
    class TextKube(FakeKube):
        async def get_text(self, path: str, *, kind: str = "") -> str:
            return "http_requests_in_flight 2\n"

    cfg = settings.Settings(
        scrape_via="apiserver",
        scrape_concurrency=3,
        scrape_timeout_seconds=0.5,
        scrape_interval_seconds=1.5,
    )
    rt = daemon.Runtime.from_settings(cfg, TextKube(), lambda parent, event: None)
    assert isinstance(rt.scraper, scrape.Scraper)
    assert (rt.scraper.via, rt.scraper.concurrency, rt.scraper.timeout) == ("apiserver", 3, 0.5)
    assert rt.interval == 1.5
    [result] = asyncio.run(rt.scraper.scrape([Target("p", "http://x/metrics", NS, 8080)]))
    assert result.metrics == PodMetrics(1.0, None)
    direct = daemon.Runtime.from_settings(settings.Settings(), TextKube(), lambda p, e: None)
    assert isinstance(direct.scraper, scrape.Scraper) and direct.scraper.via == "direct"
    assert direct.interval == 2.0


def test_a_bug_in_a_tick_is_logged_once_a_minute_and_the_loop_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken(Script):
        async def scrape(self, targets: Sequence[Target]) -> list[ScrapeResult]:
            raise ZeroDivisionError("a bug")

    kube = FakeKube()
    with caplog.at_level(logging.ERROR):
        _, _, stopped = run_daemon(body(), kube, Broken([{}]), 40, [pod("web-a", "1")])
    failures = [r for r in caplog.records if "autoscaler tick of shop/web failed" in r.getMessage()]
    assert len(failures) == 2 and failures[0].exc_info  # 80 s of ticks: at the start, after 60 s
    assert len(stopped.waits) == 40


def test_without_finalizer_needs_the_daemon_to_exist() -> None:
    registry = kopf.OperatorRegistry()
    with pytest.raises(LookupError, match="no single kopf daemon 'nothing'"):
        daemon.without_finalizer("nothing", registry)

    @kopf.daemon("example.com", "v1", "things", id="mine", registry=registry)
    async def mine(**_: Any) -> None: ...

    [before] = registry._spawning.get_all_handlers()
    assert before.requires_finalizer is True  # kopf's own choice for every daemon
    daemon.without_finalizer("mine", registry)
    [after] = registry._spawning.get_all_handlers()
    assert after.requires_finalizer is False and after.fn is mine


# -- the stop flag's wait, as the daemon gets it from kopf -------------------------------------


async def test_the_stop_flag_waits_its_time_or_until_stopped() -> None:
    stopper = DaemonStopper()
    flag = daemon.KopfStopped(stopper.async_waiter)
    t0 = time.monotonic()
    await flag.wait(0.05)
    assert 0.04 <= time.monotonic() - t0 < 1 and not flag
    asyncio.get_running_loop().call_later(0.05, stopper.set, WHY.OPERATOR_EXITING)
    t0 = time.monotonic()
    await flag.wait(30)
    assert time.monotonic() - t0 < 1 and flag and flag.reason == WHY.OPERATOR_EXITING


async def test_a_daemon_cancelled_while_waiting_is_cancelled() -> None:
    # kopf cancels a daemon that did not stop in time: the wait must not turn that into a
    # normal return (the daemon would tick on) nor into a TimeoutError.
    for delay in (0.0, 0.01, 0.02, 0.03):
        flag = daemon.KopfStopped(DaemonStopper().async_waiter)
        task = asyncio.create_task(flag.wait(0.02 if delay < 0.02 else 30))
        await asyncio.sleep(delay)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


class ClosingKube(FakeKube):
    """The operator exits during a tick: its cleanup closes the clients, the request fails."""

    def __init__(self) -> None:
        super().__init__(replicas=2)
        self.rt: daemon.Runtime | None = None

    async def request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any] | None:
        assert self.rt is not None
        self.calls.append((method, path.removeprefix(BASE), kwargs.get("body"), ""))
        await self.rt.close()
        raise RuntimeError("Session is closed")  # what aiohttp says of a closed session


def test_a_tick_cut_short_by_the_operator_exiting_is_not_a_bug(
    caplog: pytest.LogCaptureFixture,
) -> None:
    kube = ClosingKube()
    scraper = Script([{"web-a": 5.0}])
    clock = Clock()
    rt, posted = runtime(kube, scraper, clock)
    kube.rt = rt
    with caplog.at_level(logging.INFO):
        _, _, stopped = run_daemon(body(), kube, scraper, 5, [pod("web-a", "1")], rt=rt)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert stopped.waits == [] and len(kube.calls) == 1 and posted == []  # it stopped there
