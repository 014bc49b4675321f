"""The metric contract, which pods are scraped, and the scraper against real servers on loopback:
the bundled template as a real process, a port that refuses, and a tornado server that stalls."""

from __future__ import annotations

import asyncio
import importlib.util
import socket
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import tornado.httpserver
import tornado.web
from tornado_operator import labels
from tornado_operator.autoscaling import scrape
from tornado_operator.autoscaling.scrape import (
    PodMetrics,
    RateTracker,
    ScrapeError,
    Scraper,
    Target,
    parse_exposition,
    scrape_targets,
)
from tornado_operator.errors import APIConnectionError, APIError

ROOT = Path(__file__).resolve().parents[2]

# What the template answers (recorded from `GET /metrics` of service-template 0.1.0, shortened):
# one request in flight, which is the scrape itself.
TEMPLATE_EXPOSITION = """\
# HELP python_gc_objects_collected_total Objects collected during gc
# TYPE python_gc_objects_collected_total counter
python_gc_objects_collected_total{generation="0"} 312.0
# HELP http_requests_total HTTP requests answered, by handler, method and status code.
# TYPE http_requests_total counter
http_requests_total{code="200",handler="root",method="GET"} 40.0
http_requests_total{code="404",handler="not_found",method="GET"} 2.0
http_requests_total{code="200",handler="readyz",method="GET"} 17.0
http_requests_total{code="200",handler="metrics",method="GET"} 5.0
# HELP http_request_duration_seconds Time from request received to response finished.
# TYPE http_request_duration_seconds histogram
http_request_duration_seconds_bucket{handler="root",le="0.001",method="GET"} 40.0
http_request_duration_seconds_count{handler="root",method="GET"} 40.0
http_request_duration_seconds_sum{handler="root",method="GET"} 0.01
# HELP http_requests_in_flight HTTP requests being handled.
# TYPE http_requests_in_flight gauge
http_requests_in_flight 1.0
# HELP upstream_calls_in_flight Upstream calls waiting for an answer.
# TYPE upstream_calls_in_flight gauge
upstream_calls_in_flight{upstream="a"} 7.0
"""


# -- the contract -----------------------------------------------------------------------------


def test_template_exposition_minus_the_scrape_itself() -> None:
    assert parse_exposition(TEMPLATE_EXPOSITION) == PodMetrics(0.0, 42.0)


def test_in_flight_series_are_summed_and_the_scrape_subtracted() -> None:
    text = (
        "# TYPE http_requests_in_flight gauge\n"
        'http_requests_in_flight{handler="a"} 3\n'
        'http_requests_in_flight{handler="b"} 4.5\n'
    )
    assert parse_exposition(text) == PodMetrics(6.5, None)


def test_untyped_gauge_is_accepted() -> None:
    assert parse_exposition("http_requests_in_flight 12\nhttp_requests_total 9\n") == PodMetrics(
        11.0, 9.0
    )


def test_declared_counter_without_series_counts_zero() -> None:
    text = (
        "# TYPE http_requests_total counter\n"
        'http_requests_total{handler="startupz",method="GET",code="200"} 3\n'
        "http_requests_in_flight 1\n"
    )
    assert parse_exposition(text) == PodMetrics(0.0, 0.0)
    assert parse_exposition(text.splitlines()[0] + "\nhttp_requests_in_flight 1\n") == (
        PodMetrics(0.0, 0.0)
    )


def test_zero_in_flight_does_not_go_negative() -> None:
    # A service that does not count its own scrape: 0 stays 0.
    assert parse_exposition(
        "# TYPE http_requests_in_flight gauge\nhttp_requests_in_flight 0\n"
    ) == (PodMetrics(0.0, None))


@pytest.mark.parametrize(
    ("text", "reason", "words"),
    [
        ("# TYPE other gauge\nother 1\n", scrape.NO_GAUGE, "no http_requests_in_flight gauge"),
        (
            "# TYPE http_requests_in_flight counter\nhttp_requests_in_flight_total 1\n",
            scrape.NO_GAUGE,
            "no http_requests_in_flight gauge",
        ),
        (
            "# TYPE http_requests_in_flight histogram\nhttp_requests_in_flight_count 1\n",
            scrape.NO_GAUGE,
            "no http_requests_in_flight",
        ),
        ("http_requests_in_flight{x=1} 1\n", scrape.PARSE, "cannot parse"),
        ("http_requests_in_flight NaN\n", scrape.PARSE, "is nan"),
        ("http_requests_in_flight -2\n", scrape.PARSE, "is -2.0"),
        ("", scrape.NO_GAUGE, "no http_requests_in_flight"),
    ],
)
def test_unusable_expositions(text: str, reason: str, words: str) -> None:
    with pytest.raises(ScrapeError) as info:
        parse_exposition(text)
    assert info.value.reason == reason
    assert words in str(info.value)


def test_other_families_are_never_parsed() -> None:
    # Broken lines of families the contract does not use cannot spoil a scrape.
    text = TEMPLATE_EXPOSITION + 'broken_metric{a="b" 1 2 3\n'
    assert parse_exposition(text).in_flight == 0.0


def test_rate_tracker() -> None:
    rates = RateTracker()
    assert rates.observe("a", 10.0, 100.0) is None
    assert rates.observe("a", 12.0, 130.0) == 15.0
    assert rates.observe("a", 14.0, 4.0) == 2.0  # restarted container: the counter reset
    assert rates.observe("a", 14.0, 10.0) is None  # no time passed
    assert rates.observe("a", 16.0, None) is None
    assert rates.observe("a", 18.0, 50.0) is None  # the counter came back: start again
    rates.forget_except(["b"])
    assert rates.observe("a", 20.0, 60.0) is None


# -- which pods -------------------------------------------------------------------------------


def pod(name: str, **changes: Any) -> dict[str, Any]:
    """A Ready pod of TornadoService `web` in namespace `shop`, as the API returns it."""
    obj: dict[str, Any] = {
        "metadata": {
            "name": name,
            "namespace": "shop",
            "labels": {**labels.common_labels("web", "x:1"), "pod-template-hash": "5d8f"},
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": "web-5d8f",
                    "uid": "u1",
                    "controller": True,
                }
            ],
        },
        "spec": {
            "containers": [
                {"name": "app", "ports": [{"name": "http", "containerPort": 8080}]},
                {"name": "sidecar", "ports": [{"name": "http", "containerPort": 9999}]},
            ]
        },
        "status": {
            "phase": "Running",
            "podIP": "10.1.2.3",
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }
    for path, value in changes.items():
        node = obj
        *parents, leaf = path.split("__")
        for part in parents:
            node = node[part]
        if value is None:
            node.pop(leaf, None)
        else:
            node[leaf] = value
    return obj


def test_scrape_targets_only_ready_pods_of_this_service() -> None:
    other_labels = {**labels.common_labels("other", "x:1"), "pod-template-hash": "5d8f"}
    hand_made = pod("hand-made")
    del hand_made["metadata"]["ownerReferences"]
    pods = [
        pod("web-b", status__podIP="10.1.2.4"),
        pod("web-a"),
        pod("web-v6", status__podIP="fd00::7"),
        pod("web-not-ready", status__conditions=[{"type": "Ready", "status": "False"}]),
        pod("web-pending", status__phase="Pending"),
        pod("web-leaving", metadata__deletionTimestamp="2026-01-01T00:00:00Z"),
        pod("web-elsewhere", metadata__namespace="other"),
        pod("other-1", metadata__labels=other_labels),
        hand_made,
        pod("web-foreign-rs", metadata__ownerReferences=[{"kind": "ReplicaSet", "name": "x-1"}]),
        pod("web-no-ip", status__podIP=None),
        pod("web-no-port", spec__containers=[{"name": "app"}]),
    ]
    targets = scrape_targets(pods, namespace="shop", name="web")
    assert targets.scrape == (
        Target("web-a", "http://10.1.2.3:8080/metrics", "shop", 8080),
        Target("web-b", "http://10.1.2.4:8080/metrics", "shop", 8080),
        Target("web-v6", "http://[fd00::7]:8080/metrics", "shop", 8080),
    )
    assert targets.unreachable == ("web-no-ip", "web-no-port")
    assert targets.ready == 5


def test_scrape_target_uses_the_pods_own_port() -> None:
    # During a change of spec.port, old pods still listen on the old port.
    old = pod("web-old")
    old["spec"]["containers"][0]["ports"][0]["containerPort"] = 9090
    [target] = scrape_targets([old], namespace="shop", name="web").scrape
    assert target.url == "http://10.1.2.3:9090/metrics"
    # The same pod through the API server's pod proxy (--scrape-via apiserver).
    assert target.proxy_path == "/api/v1/namespaces/shop/pods/web-old:9090/proxy/metrics"


# -- scraping real servers --------------------------------------------------------------------


def _template_support() -> ModuleType:
    path = ROOT / "service_template/tests/support.py"
    spec = importlib.util.spec_from_file_location("template_test_support", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def support() -> ModuleType:
    return _template_support()


@pytest.fixture
def upstreams(support: ModuleType) -> Iterator[Any]:
    fake = support.FakeUpstreams()
    yield fake
    fake.close()


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def scrape_all(targets: list[Target], **kwargs: Any) -> list[scrape.ScrapeResult]:
    async with Scraper(**kwargs) as scraper:
        return await scraper.scrape(targets)


def test_scrapes_the_real_template(support: ModuleType, upstreams: Any) -> None:
    service = support.launch(
        {
            "UPSTREAMS": f"slow={upstreams.url('/slow?delay=1.5')}",
            "UPSTREAM_TIMEOUT_SECONDS": "10",
            "COMPOSE_DEADLINE_SECONDS": "10",
        }
    )
    try:
        target = Target("tpl", f"http://127.0.0.1:{service.port}/metrics")
        [idle] = run(scrape_all([target]))
        assert idle.ok, idle.error
        assert idle.metrics.in_flight == 0.0  # the gauge said 1: the scrape itself
        base = idle.metrics.requests_total
        for _ in range(4):
            assert service.get("/").status == 200
        service.get("/readyz")  # probes do not count as traffic

        # Three requests waiting on a slow upstream: in flight for 1.5 seconds.
        threads = [threading.Thread(target=service.get, args=("/compose",)) for _ in range(3)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 5
        while upstreams.in_progress < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert upstreams.in_progress == 3
        [busy] = run(scrape_all([target]))
        assert busy.ok, busy.error
        assert busy.metrics.in_flight == 3.0
        assert busy.metrics.requests_total == base + 4  # root only: no probe, no scrape
        assert busy.seconds < 1.0
        for thread in threads:
            thread.join()
    finally:
        support.stop(service)


def test_connection_refused_is_reported(support: ModuleType) -> None:
    with socket.socket() as refusing:  # bound, never listening: connections are refused
        refusing.bind(("127.0.0.1", 0))
        port = refusing.getsockname()[1]
        [result] = run(scrape_all([Target("gone", f"http://127.0.0.1:{port}/metrics")]))
    assert not result.ok
    assert result.reason == scrape.CONNECTION
    assert result.pod == "gone" and result.error


class _Slow(tornado.web.RequestHandler):
    active = 0
    most = 0

    async def get(self) -> None:
        cls = type(self)
        cls.active += 1
        cls.most = max(cls.most, cls.active)
        try:
            await asyncio.sleep(float(self.get_argument("delay", "5")))
            self.write("http_requests_in_flight 2\n")
        finally:
            cls.active -= 1


class _Status(tornado.web.RequestHandler):
    def get(self, code: str) -> None:
        self.set_status(int(code))
        self.write("http_requests_in_flight 2\n")


class _Big(tornado.web.RequestHandler):
    def get(self) -> None:
        self.write("# " + "x" * 5000 + "\nhttp_requests_in_flight 2\n")


async def _with_server(scenario: Any) -> Any:
    app = tornado.web.Application([(r"/slow", _Slow), (r"/status/(\d+)", _Status), (r"/big", _Big)])
    server = tornado.httpserver.HTTPServer(app)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    sock.setblocking(False)
    server.add_sockets([sock])
    try:
        return await scenario(f"http://127.0.0.1:{sock.getsockname()[1]}")
    finally:
        server.stop()
        await server.close_all_connections()


def test_a_stalled_endpoint_times_out() -> None:
    async def scenario(base: str) -> tuple[list[scrape.ScrapeResult], float]:
        started = time.monotonic()
        results = await scrape_all([Target("stuck", f"{base}/slow?delay=5")], timeout=0.3)
        return results, time.monotonic() - started

    [result], elapsed = run(_with_server(scenario))
    assert (result.ok, result.reason) == (False, scrape.TIMEOUT)
    assert result.error == "no answer within 0.3s"
    assert 0.25 < elapsed < 1.5


def test_scrapes_are_bounded_in_concurrency() -> None:
    _Slow.active = _Slow.most = 0

    async def scenario(base: str) -> tuple[list[scrape.ScrapeResult], float]:
        targets = [Target(f"p{i}", f"{base}/slow?delay=0.2") for i in range(6)]
        started = time.monotonic()
        results = await scrape_all(targets, concurrency=2, timeout=2)
        return results, time.monotonic() - started

    results, elapsed = run(_with_server(scenario))
    assert [r.pod for r in results] == [f"p{i}" for i in range(6)]
    assert all(r.ok and r.metrics and r.metrics.in_flight == 1.0 for r in results)
    assert _Slow.most == 2
    assert elapsed >= 0.55  # three rounds of two


def test_error_status_and_oversized_bodies() -> None:
    async def scenario(base: str) -> list[scrape.ScrapeResult]:
        return await scrape_all(
            [Target("err", f"{base}/status/503"), Target("big", f"{base}/big")], max_bytes=1000
        )

    err, big = run(_with_server(scenario))
    assert (err.reason, err.error) == (scrape.HTTP_STATUS, "GET /metrics answered 503")
    assert big.reason == scrape.TOO_LARGE


def test_scraper_ignores_proxy_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    # Pods are reached directly: an HTTP_PROXY of the operator must not swallow the scrapes.
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")

    async def scenario(base: str) -> list[scrape.ScrapeResult]:
        return await scrape_all([Target("p", f"{base}/slow?delay=0")])

    [result] = run(_with_server(scenario))
    assert result.ok, result.error


def test_urllib_sees_the_same_template_value(support: ModuleType) -> None:
    # The contract's subtraction, checked against an independent client.
    service = support.launch()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{service.port}/metrics", timeout=5) as r:
            text = r.read().decode()
        assert "http_requests_in_flight 1.0" in text.splitlines()
        assert parse_exposition(text).in_flight == 0.0
    finally:
        support.stop(service)


# -- through the API server's pod proxy (--scrape-via apiserver) ------------------------------


class _ProxyFetcher:
    """Answers pod-proxy paths like the API server would, from a script keyed by pod."""

    def __init__(self, answers: dict[str, Any]) -> None:
        self.answers = answers
        self.paths: list[str] = []

    async def __call__(self, path: str) -> str:
        self.paths.append(path)
        pod = path.split("/pods/", 1)[1].split(":", 1)[0]
        answer = self.answers[pod]
        if isinstance(answer, BaseException):
            raise answer
        if isinstance(answer, float):
            await asyncio.sleep(answer)
            return "http_requests_in_flight 1\n"
        return str(answer)


def test_scrapes_through_the_api_server_proxy() -> None:
    fetch = _ProxyFetcher(
        {
            "ok": "http_requests_in_flight 4\nhttp_requests_total 10\n",
            "refused": APIError(
                "error trying to reach service: dial tcp 10.0.0.2:8080: connect: refused",
                status=503,
            ),
            "missing": APIError("404 page not found", status=404),
            "no-api": APIConnectionError("ClientConnectorError: refused"),
            "slow": 5.0,
            "big": "# " + "x" * 2000 + "\nhttp_requests_in_flight 1\n",
        }
    )
    targets = [
        Target(pod, f"http://10.0.0.{i}:8080/metrics", "shop", 8080)
        for i, pod in enumerate(fetch.answers, 1)
    ]

    async def scenario() -> list[scrape.ScrapeResult]:
        async with Scraper(via_api=fetch, timeout=0.3, max_bytes=1000) as scraper:
            assert scraper.via == scrape.APISERVER
            return await scraper.scrape(targets)

    ok, refused, missing, no_api, slow, big = run(scenario())
    assert fetch.paths[0] == "/api/v1/namespaces/shop/pods/ok:8080/proxy/metrics"
    assert ok.ok and ok.metrics == PodMetrics(3.0, 10.0)
    assert refused.reason == scrape.CONNECTION and "error trying to reach" in (refused.error or "")
    assert (missing.reason, missing.error) == (
        scrape.HTTP_STATUS,
        "GET /metrics through the API server answered 404",
    )
    assert no_api.reason == scrape.CONNECTION
    assert (slow.reason, slow.error) == (scrape.TIMEOUT, "no answer within 0.3s")
    assert big.reason == scrape.TOO_LARGE


def test_direct_is_the_default() -> None:
    assert Scraper().via == scrape.DIRECT
