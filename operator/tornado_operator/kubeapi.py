"""A small asynchronous layer over the official Kubernetes client's transport.

Children are plain dicts (rendered manifests), so requests go through ApiClient's own
serialization, authentication and TLS handling, without the typed models. Blocking calls run in
worker threads so the kopf event loop never stalls.

Every failure leaves this module as an `errors.APIError` (`errors.APIConnectionError` when the
server never answered): no exception of the client library gets past it.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any
from urllib.parse import quote

import kopf
from kubernetes import config as kube_config
from kubernetes.client import ApiClient, Configuration
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from tornado_operator import FIELD_MANAGER
from tornado_operator.errors import APIConnectionError, APIError
from tornado_operator.resources import CLUSTER_PEERING, PEERING, TORNADO_SERVICE, Resource

JSONDict = dict[str, Any]

# (connect, read) seconds: a stuck API server shows up as a temporary failure, not a hang.
REQUEST_TIMEOUT = (5.0, 30.0)


def collection_path(resource: Resource, namespace: str | None = None) -> str:
    """The REST path of a kind's objects (in `namespace` when the kind is namespaced)."""
    prefix = f"/apis/{resource.group}" if resource.group else "/api"
    path = f"{prefix}/{resource.version}"
    if resource.namespaced:
        if not namespace:
            raise ValueError(f"{resource.kind} is namespaced: a namespace is needed")
        path += f"/namespaces/{quote(namespace, safe='')}"
    return f"{path}/{resource.plural}"


def object_path(resource: Resource, namespace: str | None, name: str) -> str:
    return f"{collection_path(resource, namespace)}/{quote(name, safe='')}"


def load_configuration() -> Configuration:
    """In-cluster service account when in a pod, else $KUBECONFIG / ~/.kube/config."""
    cfg = Configuration()
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        kube_config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
    else:
        # The client reads $KUBECONFIG once, at import; read it now so a late change counts.
        kube_config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=os.environ.get("KUBECONFIG") or None, client_configuration=cfg
        )
    return cfg


def connection_info(cfg: Configuration) -> kopf.ConnectionInfo:
    """kopf's view of a client Configuration (as kopf's own client-based login builds it)."""
    header = cfg.get_api_key_with_prefix("BearerToken") or cfg.get_api_key_with_prefix(
        "authorization"
    )
    parts = header.split(" ", 1) if header else []
    scheme = parts[0] if len(parts) == 2 else None
    token = parts[-1] if parts else None
    return kopf.ConnectionInfo(
        server=cfg.host,
        ca_path=cfg.ssl_ca_cert,
        insecure=not cfg.verify_ssl,
        username=cfg.username or None,
        password=cfg.password or None,
        scheme=scheme,
        token=token,
        certificate_path=cfg.cert_file,
        private_key_path=cfg.key_file,
    )


class Kube:
    """JSON requests to the API server. Every method raises errors.APIError on failure."""

    def __init__(self, api_client: ApiClient) -> None:
        self._client = api_client

    @classmethod
    def from_environment(cls) -> Kube:
        return cls(ApiClient(configuration=load_configuration()))

    def request_sync(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> JSONDict | None:
        serialized = self._client.param_serialize(
            method,
            path,
            query_params=list((query or {}).items()),
            header_params={"Accept": "application/json", "Content-Type": content_type},
            body=body,
            auth_settings=["BearerToken"],
        )
        try:
            response = self._client.call_api(*serialized, _request_timeout=REQUEST_TIMEOUT)
            data = response.read()  # type: ignore[no-untyped-call]
        except ApiException as exc:
            # The client raises these itself for some answers (a 429 it retried) and for TLS
            # failures (status 0).
            raise APIError.from_response(int(exc.status or 0), exc.body, exc.reason) from exc
        except (
            HTTPError,
            OSError,
        ) as exc:  # refused, reset, timed out (TimeoutError is an OSError)
            raise APIConnectionError(f"{type(exc).__name__}: {exc}") from exc
        if not 200 <= response.status <= 299:
            raise APIError.from_response(response.status, data, response.reason)
        if not data:
            return None
        return json.loads(data)  # type: ignore[no-any-return]

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> JSONDict | None:
        return await asyncio.to_thread(
            self.request_sync, method, path, query=query, body=body, content_type=content_type
        )

    async def get(self, resource: Resource, namespace: str, name: str) -> JSONDict | None:
        """The object, or None when it does not exist."""
        try:
            return await self.request("GET", object_path(resource, namespace, name))
        except APIError as exc:
            if exc.status == 404:
                return None
            raise

    async def peering_exists(self, name: str, namespace: str | None) -> bool:
        """Whether kopf's peering object exists (ClusterKopfPeering when namespace is None)."""
        resource = CLUSTER_PEERING if namespace is None else PEERING
        try:
            await self.request("GET", object_path(resource, namespace, name))
        except APIError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    async def list(self, resource: Resource, namespace: str, selector: str) -> list[JSONDict]:
        result = await self.request(
            "GET", collection_path(resource, namespace), query={"labelSelector": selector}
        )
        return list((result or {}).get("items") or [])

    async def apply(
        self, resource: Resource, manifest: JSONDict, *, force: bool = True
    ) -> JSONDict:
        """Server-side apply under the operator's field manager.

        force=True takes over fields another manager set by hand on an object we own (a hand
        edit of the image is reverted); fields we do not send (HPA-written replicas on other
        objects, clusterIP, annotations added by others) keep their owners.
        """
        meta = manifest["metadata"]
        path = object_path(resource, meta["namespace"], meta["name"])
        query = {"fieldManager": FIELD_MANAGER, "force": "true" if force else "false"}
        result = await self.request(
            "PATCH", path, query=query, body=manifest, content_type="application/apply-patch+yaml"
        )
        assert result is not None
        return result

    async def delete_owned(self, resource: Resource, namespace: str, name: str, uid: str) -> bool:
        """Delete an object only if it is still the one with this uid (a precondition the API
        server enforces), so a same-named object someone else created meanwhile survives."""
        body = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "preconditions": {"uid": uid},
            "propagationPolicy": "Background",
        }
        try:
            await self.request("DELETE", object_path(resource, namespace, name), body=body)
        except APIError as exc:
            if exc.status in (404, 409):
                return False
            raise
        return True

    async def patch_status(self, namespace: str, name: str, status: JSONDict) -> JSONDict | None:
        path = object_path(TORNADO_SERVICE, namespace, name) + "/status"
        try:
            return await self.request(
                "PATCH",
                path,
                query={"fieldManager": FIELD_MANAGER},
                body={"status": status},
                content_type="application/merge-patch+json",
            )
        except APIError as exc:
            if exc.status == 404:
                return None
            raise
