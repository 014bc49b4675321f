"""kubeapi against a real HTTP server on loopback: paths derived from the kind table, requests
counted, and no client exception gets out of it."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import yaml
from aiohttp import web
from kubernetes_asyncio.client import ApiClient, Configuration
from tornado_operator import errors, kubeapi, metrics
from tornado_operator.children import CHILD_KINDS
from tornado_operator.resources import CLUSTER_PEERING, PEERING, POD, TORNADO_SERVICE

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def status_body(code: int, reason: str, message: str, **extra: Any) -> str:
    return json.dumps(
        {"kind": "Status", "code": code, "reason": reason, "message": message, **extra}
    )


class Server:
    """An API server stand-in on 127.0.0.1 that answers from a script and records requests."""

    def __init__(self) -> None:
        self.answers: list[Handler] = []
        self.requests: list[tuple[str, str, dict[str, str], str, Any]] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        text = await request.text()
        body = json.loads(text) if text else None
        query = dict(request.query)
        self.requests.append((request.method, request.path, query, request.content_type, body))
        return await self.answers.pop(0)(request)


def answer(status: int, body: str = "") -> Handler:
    async def handler(_: web.Request) -> web.StreamResponse:
        return web.Response(status=status, text=body, content_type="application/json")

    return handler


async def hang_up(request: web.Request) -> web.StreamResponse:
    assert request.transport is not None
    request.transport.close()  # no answer at all: the connection just ends
    return web.Response()


@pytest.fixture
async def served() -> AsyncIterator[tuple[Server, kubeapi.Kube]]:
    server = Server()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", server.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    cfg = Configuration(host=f"http://127.0.0.1:{port}")
    cfg.api_key = {"BearerToken": "s3cret"}
    cfg.api_key_prefix = {"BearerToken": "Bearer"}
    kube = kubeapi.Kube(ApiClient(configuration=cfg))
    try:
        yield server, kube
    finally:
        await kube.close()
        await runner.cleanup()


def test_paths_derive_from_group_version_plural() -> None:
    paths = {child.kind: kubeapi.collection_path(child, "a b") for child in CHILD_KINDS}
    assert paths == {
        "Deployment": "/apis/apps/v1/namespaces/a%20b/deployments",
        "Service": "/api/v1/namespaces/a%20b/services",
        "NetworkPolicy": "/apis/networking.k8s.io/v1/namespaces/a%20b/networkpolicies",
        "HorizontalPodAutoscaler": "/apis/autoscaling/v2/namespaces/a%20b/horizontalpodautoscalers",
        "PodDisruptionBudget": "/apis/policy/v1/namespaces/a%20b/poddisruptionbudgets",
    }
    assert kubeapi.collection_path(POD, "a") == "/api/v1/namespaces/a/pods"
    assert kubeapi.object_path(TORNADO_SERVICE, "a", "web/1") == (
        "/apis/tornado-operator.dev/v1alpha1/namespaces/a/tornadoservices/web%2F1"
    )
    peering = "/apis/kopf.dev/v1/namespaces/a/kopfpeerings/p"
    assert kubeapi.object_path(PEERING, "a", "p") == peering
    cluster_peering = "/apis/kopf.dev/v1/clusterkopfpeerings/p"
    assert kubeapi.object_path(CLUSTER_PEERING, None, "p") == cluster_peering
    with pytest.raises(ValueError, match="namespaced"):
        kubeapi.collection_path(POD, None)


async def test_error_answers_become_api_errors(served: tuple[Server, kubeapi.Kube]) -> None:
    server, kube = served
    server.answers.append(answer(409, status_body(409, "Conflict", "busy")))
    with pytest.raises(errors.APIError) as info:
        await kube.request("GET", "/x")
    assert (info.value.status, info.value.reason, info.value.message) == (409, "Conflict", "busy")
    assert type(info.value) is errors.APIError
    server.answers.append(answer(500, "plain text, not a Status"))
    with pytest.raises(errors.APIError) as info:
        await kube.request("GET", "/x")
    assert (info.value.status, info.value.message) == (500, "plain text, not a Status")
    assert not errors.classify(info.value, "x").permanent


async def test_the_token_goes_in_a_header(served: tuple[Server, kubeapi.Kube]) -> None:
    server, kube = served
    seen: list[str] = []

    async def check(request: web.Request) -> web.StreamResponse:
        seen.append(request.headers.get("Authorization", ""))
        return web.Response(text="{}", content_type="application/json")

    server.answers.append(check)
    assert await kube.request("GET", "/x") == {}
    assert seen == ["Bearer s3cret"]


async def test_no_answer_becomes_a_connection_error(served: tuple[Server, kubeapi.Kube]) -> None:
    server, kube = served
    # aiohttp tries a GET once more on a fresh connection when the first one just ends.
    server.answers += [hang_up, hang_up]
    with pytest.raises(errors.APIConnectionError) as info:
        await kube.request("GET", "/x")
    assert info.value.status == 0
    problem = errors.classify(info.value, "x")
    assert not problem.permanent and problem.reason == "ApiUnavailable"


async def test_refused_connection_is_a_connection_error() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    kube = kubeapi.Kube(ApiClient(configuration=Configuration(host=f"http://127.0.0.1:{port}")))
    try:
        with pytest.raises(errors.APIConnectionError) as info:
            await kube.request("GET", "/x")
    finally:
        await kube.close()
    assert "Connect" in info.value.message


async def test_absent_objects(served: tuple[Server, kubeapi.Kube]) -> None:
    server, kube = served
    not_found = answer(404, status_body(404, "NotFound", "gone"))
    conflict = answer(409, status_body(409, "Conflict", "uid precondition"))
    server.answers += [not_found, not_found, conflict, not_found, not_found]
    [deployment, *_] = CHILD_KINDS
    assert [
        await kube.get(deployment, "a", "web"),
        await kube.delete_owned(deployment, "a", "web", "uid-1"),
        await kube.delete_owned(deployment, "a", "web", "uid-1"),
        await kube.patch_status("a", "web", {"replicas": 1}),
        await kube.peering_exists("p", None),
    ] == [None, False, False, None, False]
    assert [path for _, path, *_ in server.requests] == [
        "/apis/apps/v1/namespaces/a/deployments/web",
        "/apis/apps/v1/namespaces/a/deployments/web",
        "/apis/apps/v1/namespaces/a/deployments/web",
        "/apis/tornado-operator.dev/v1alpha1/namespaces/a/tornadoservices/web/status",
        "/apis/kopf.dev/v1/clusterkopfpeerings/p",
    ]
    assert server.requests[1][4]["preconditions"] == {"uid": "uid-1"}


async def test_apply_goes_to_the_kind_path_under_our_field_manager(
    served: tuple[Server, kubeapi.Kube],
) -> None:
    server, kube = served
    server.answers.append(answer(200, '{"metadata": {"resourceVersion": "2"}}'))
    pdb = CHILD_KINDS[-1]
    manifest = {"metadata": {"name": "web", "namespace": "a"}, "spec": {}}
    before = metrics.API_REQUESTS.labels(verb="apply", kind=pdb.kind, code="200")._value.get()
    result = await kube.apply(pdb, manifest)
    assert result == {"metadata": {"resourceVersion": "2"}}
    [(method, path, query, content_type, body)] = server.requests
    assert (method, path) == ("PATCH", "/apis/policy/v1/namespaces/a/poddisruptionbudgets/web")
    assert query == {"fieldManager": "tornado-operator", "force": "true"}
    assert content_type == "application/apply-patch+yaml" and body == manifest
    after = metrics.API_REQUESTS.labels(verb="apply", kind=pdb.kind, code="200")._value.get()
    assert after == before + 1


async def test_events_are_posted_once_and_say_who_posted(
    served: tuple[Server, kubeapi.Kube],
) -> None:
    server, kube = served
    terminating = status_body(
        403,
        "Forbidden",
        "events is forbidden: unable to create new content in namespace a because it is being "
        "terminated",
        details={"causes": [{"reason": "NamespaceTerminating"}]},
    )
    server.answers += [answer(201, "{}"), answer(403, terminating)]
    parent = {"metadata": {"name": "web", "namespace": "a", "uid": "u1"}}
    await kube.post_event(parent, type="Warning", reason="CrashLoopBackOff", message="m" * 2000)
    with pytest.raises(errors.APIError) as info:
        await kube.post_event(parent, type="Normal", reason="Ready", message="ok")
    assert errors.namespace_terminating(info.value)
    (_, path, _, _, body), _ = server.requests
    assert path == "/api/v1/namespaces/a/events"
    assert body["involvedObject"] == {
        "apiVersion": "tornado-operator.dev/v1alpha1",
        "kind": "TornadoService",
        "name": "web",
        "namespace": "a",
        "uid": "u1",
    }
    assert (body["type"], body["reason"], len(body["message"])) == (
        "Warning",
        "CrashLoopBackOff",
        1024,
    )
    assert body["source"] == {"component": "tornado-operator"}
    assert len(server.requests) == 2  # not retried


async def test_text_answers_through_the_pod_proxy(served: tuple[Server, kubeapi.Kube]) -> None:
    # The concurrency autoscaler's --scrape-via apiserver: a pod's /metrics is not JSON.
    server, kube = served
    seen: list[str] = []

    async def metrics(request: web.Request) -> web.StreamResponse:
        seen.append(request.headers.get("Accept", ""))
        return web.Response(text="http_requests_in_flight 3.0\n", content_type="text/plain")

    server.answers += [metrics, answer(503, status_body(503, "ServiceUnavailable", "no pod"))]
    path = "/api/v1/namespaces/a/pods/web-1:8080/proxy/metrics"
    assert await kube.get_text(path, kind="Pod") == "http_requests_in_flight 3.0\n"
    assert seen == ["*/*"]
    with pytest.raises(errors.APIError) as info:
        await kube.get_text(path)
    assert (info.value.status, info.value.message) == (503, "no pod")
    assert server.requests[0][:2] == ("GET", path)


async def test_requests_run_concurrently() -> None:
    # The point of the async client: many requests in flight at once, no thread pool.
    in_flight, most = 0, 0
    release = asyncio.Event()

    async def held(_: web.Request) -> web.StreamResponse:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        if most >= 40:
            release.set()
        await asyncio.wait_for(release.wait(), 10)
        in_flight -= 1
        return web.Response(text="{}", content_type="application/json")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", held)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    cfg = Configuration(host=f"http://127.0.0.1:{runner.addresses[0][1]}")
    cfg.connection_pool_maxsize = kubeapi.MAX_CONNECTIONS
    kube = kubeapi.Kube(ApiClient(configuration=cfg))
    try:
        await asyncio.gather(*(kube.request("GET", f"/x/{i}") for i in range(40)))
    finally:
        await kube.close()
        await runner.cleanup()
    assert most == 40


async def test_waiting_for_a_pooled_connection_is_not_a_failure(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The module's own bounds, ten times shorter; one connection and three requests of 0.6 s:
    # the last waits 1.2 s for the pool, longer than any connect bound scaled so. Only
    # establishing a connection may be bounded, so all three succeed.
    bounds = kubeapi.REQUEST_TIMEOUT
    monkeypatch.setattr(
        kubeapi,
        "REQUEST_TIMEOUT",
        kubeapi.aiohttp.ClientTimeout(
            connect=bounds.connect / 10 if bounds.connect else None,
            sock_connect=(bounds.sock_connect or 5.0) / 10,
            sock_read=bounds.sock_read,
        ),
    )

    async def slow(_: web.Request) -> web.StreamResponse:
        await asyncio.sleep(0.6)
        return web.Response(text="{}", content_type="application/json")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", slow)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    cfg = Configuration(host=f"http://127.0.0.1:{runner.addresses[0][1]}")
    cfg.connection_pool_maxsize = 1
    kube = kubeapi.Kube(ApiClient(configuration=cfg))
    try:
        answers = await asyncio.gather(*(kube.request("GET", f"/x/{i}") for i in range(3)))
    finally:
        await kube.close()
        await runner.cleanup()
    assert answers == [{}, {}, {}]


def test_apply_body_is_yaml_that_reads_back_unchanged() -> None:
    # An apply patch is YAML. JSON's surrogate-pair escapes (json.dumps' default for an emoji)
    # are not YAML, and YAML 1.1 reads NEL and U+2028 as line breaks: a spec with any of them
    # (found by tests/e2e/test_fuzz_specs.py) made every apply fail with "error decoding YAML".
    value = 'emoji \U0001f600, NEL \x85, LS \u2028, C1 \x9b, C0 \x19, quote " and \\ é'
    manifest = {"metadata": {"name": "web", "annotations": {"k\U0001f600": value}}, "x": [value]}
    body = kubeapi.apply_body(manifest)
    assert b"\\ud83d" not in body and "\U0001f600".encode() in body
    assert yaml.safe_load(body.decode("utf-8")) == manifest
    assert json.loads(body) == manifest
    # A lone surrogate (no valid UTF-8) becomes U+FFFD, as the API server would make it.
    assert yaml.safe_load(kubeapi.apply_body({"a": "\ud800"}).decode()) == {"a": "\ufffd"}


async def test_a_terminating_namespace_is_told_by_a_dry_run_event(
    served: tuple[Server, kubeapi.Kube],
) -> None:
    server, kube = served
    terminating = status_body(
        403,
        "Forbidden",
        "events is forbidden: unable to create new content in namespace a because it is being "
        "terminated",
        details={"causes": [{"reason": "NamespaceTerminating"}]},
    )
    rbac = status_body(403, "Forbidden", 'events is forbidden: User "x" cannot create')
    server.answers += [answer(201, "{}"), answer(403, terminating), answer(403, rbac)]
    parent = {"metadata": {"name": "web", "namespace": "a", "uid": "u1"}}
    before = metrics.API_REQUESTS.labels(
        verb="create-dryrun", kind="Event", code="201"
    )._value.get()
    assert await kube.namespace_terminating(parent) is False
    assert await kube.namespace_terminating(parent) is True
    with pytest.raises(errors.APIError):  # any other refusal is not an answer
        await kube.namespace_terminating(parent)
    for method, path, query, _, body in server.requests:
        assert (method, path, query) == ("POST", "/api/v1/namespaces/a/events", {"dryRun": "All"})
        assert body["involvedObject"]["uid"] == "u1"
    # Counted apart from the writes: a dry run writes nothing.
    after = metrics.API_REQUESTS.labels(verb="create-dryrun", kind="Event", code="201")._value.get()
    assert after == before + 1
