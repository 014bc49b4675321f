"""kubeapi: paths derived from the kind table, and no client exception gets out of it."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException
from tornado_operator import errors, kubeapi
from tornado_operator.children import CHILD_KINDS
from tornado_operator.resources import CLUSTER_PEERING, PEERING, POD, TORNADO_SERVICE
from urllib3.exceptions import MaxRetryError, ProtocolError, ReadTimeoutError


class Response:
    def __init__(self, status: int, data: bytes = b"", reason: str = "OK") -> None:
        self.status, self.data, self.reason = status, data, reason

    def read(self) -> bytes:
        return self.data


class Client:
    """Just enough of kubernetes.client.ApiClient: the calls kubeapi makes."""

    def __init__(self, *outcomes: Response | BaseException) -> None:
        self.outcomes = list(outcomes)
        self.requests: list[tuple[str, str, dict[str, Any]]] = []

    def param_serialize(self, method: str, path: str, **kwargs: Any) -> tuple[str, str]:
        self.requests.append((method, path, kwargs))
        return method, path

    def call_api(self, *_: Any, **__: Any) -> Response:
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome


def status_body(code: int, reason: str, message: str) -> bytes:
    return json.dumps(
        {"kind": "Status", "code": code, "reason": reason, "message": message}
    ).encode()


def test_paths_derive_from_group_version_plural() -> None:
    paths = {child.kind: kubeapi.collection_path(child, "a b") for child in CHILD_KINDS}
    assert paths == {
        "Deployment": "/apis/apps/v1/namespaces/a%20b/deployments",
        "Service": "/api/v1/namespaces/a%20b/services",
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


def test_error_answers_become_api_errors() -> None:
    kube = kubeapi.Kube(Client(Response(409, status_body(409, "Conflict", "busy"), "Conflict")))
    with pytest.raises(errors.APIError) as info:
        kube.request_sync("GET", "/x")
    assert (info.value.status, info.value.reason, info.value.message) == (409, "Conflict", "busy")
    assert type(info.value) is errors.APIError


def test_client_exceptions_become_api_errors() -> None:
    raised = ApiException(status=429, reason="Too Many Requests")
    kube = kubeapi.Kube(Client(raised, ApiException(status=0, reason="SSLError\nbad cert")))
    with pytest.raises(errors.APIError) as info:
        kube.request_sync("GET", "/x")
    assert (info.value.status, info.value.message) == (429, "Too Many Requests")
    assert info.value.__cause__ is raised
    with pytest.raises(errors.APIError) as info:
        kube.request_sync("GET", "/x")
    assert not errors.classify(info.value, "x").permanent


@pytest.mark.parametrize(
    "exc",
    [
        ProtocolError("reset"),
        MaxRetryError(None, "/x"),  # type: ignore[arg-type]
        ReadTimeoutError(None, "/x", "read timed out"),  # type: ignore[arg-type]
        ConnectionRefusedError(),
        TimeoutError("slow"),
    ],
)
def test_no_answer_becomes_a_connection_error(exc: Exception) -> None:
    kube = kubeapi.Kube(Client(exc))
    with pytest.raises(errors.APIConnectionError) as info:
        kube.request_sync("GET", "/x")
    assert info.value.status == 0 and info.value.__cause__ is exc
    assert info.value.message == f"{type(exc).__name__}: {exc}"
    problem = errors.classify(info.value, "x")
    assert not problem.permanent and problem.reason == "ApiUnavailable"


def test_bugs_are_not_api_errors() -> None:
    kube = kubeapi.Kube(Client(KeyError("bug")))
    with pytest.raises(KeyError):
        kube.request_sync("GET", "/x")


def test_absent_objects() -> None:
    not_found = Response(404, status_body(404, "NotFound", "gone"), "Not Found")
    conflict = Response(409, status_body(409, "Conflict", "uid precondition"), "Conflict")
    client = Client(not_found, not_found, conflict, not_found, not_found)
    kube = kubeapi.Kube(client)
    [deployment, *_] = CHILD_KINDS

    async def calls() -> list[object]:
        return [
            await kube.get(deployment, "a", "web"),
            await kube.delete_owned(deployment, "a", "web", "uid-1"),
            await kube.delete_owned(deployment, "a", "web", "uid-1"),
            await kube.patch_status("a", "web", {"replicas": 1}),
            await kube.peering_exists("p", None),
        ]

    assert asyncio.run(calls()) == [None, False, False, None, False]
    assert [path for _, path, _ in client.requests] == [
        "/apis/apps/v1/namespaces/a/deployments/web",
        "/apis/apps/v1/namespaces/a/deployments/web",
        "/apis/apps/v1/namespaces/a/deployments/web",
        "/apis/tornado-operator.dev/v1alpha1/namespaces/a/tornadoservices/web/status",
        "/apis/kopf.dev/v1/clusterkopfpeerings/p",
    ]


def test_apply_goes_to_the_kind_path_under_our_field_manager() -> None:
    client = Client(Response(200, b'{"metadata": {"resourceVersion": "2"}}'))
    kube = kubeapi.Kube(client)
    pdb = CHILD_KINDS[-1]
    manifest = {"metadata": {"name": "web", "namespace": "a"}, "spec": {}}
    result = asyncio.run(kube.apply(pdb, manifest))
    assert result == {"metadata": {"resourceVersion": "2"}}
    [(method, path, kwargs)] = client.requests
    assert (method, path) == ("PATCH", "/apis/policy/v1/namespaces/a/poddisruptionbudgets/web")
    assert kwargs["query_params"] == [("fieldManager", "tornado-operator"), ("force", "true")]
    assert kwargs["header_params"]["Content-Type"] == "application/apply-patch+yaml"
