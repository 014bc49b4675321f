"""A small asynchronous layer over kubernetes_asyncio's transport.

Children are plain dicts (rendered manifests), so requests go through the client's own
configuration loading, authentication (tokens, exec plugins and their refresh) and TLS handling,
without the typed models. kubernetes_asyncio is the official client's asyncio twin (the same
generated code and config loaders) on aiohttp, the transport kopf itself uses: no worker threads,
and as many requests in flight as `MAX_CONNECTIONS` allows.

Every failure leaves this module as an `errors.APIError` (`errors.APIConnectionError` when the
server never answered): no exception of the client library gets past it. Every request is
counted in `metrics.API_REQUESTS` by verb, kind and answer, so what the operator costs the API
server can be read off its /metrics.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import socket
from typing import Any
from urllib.parse import quote

import aiohttp
import kopf
from kubernetes_asyncio import config as kube_config
from kubernetes_asyncio.client import ApiClient, Configuration
from kubernetes_asyncio.client.exceptions import ApiException

from tornado_operator import FIELD_MANAGER, metrics
from tornado_operator.errors import APIConnectionError, APIError, namespace_terminating
from tornado_operator.resources import (
    CLUSTER_PEERING,
    EVENT,
    PEERING,
    TORNADO_SERVICE,
    Resource,
)

JSONDict = dict[str, Any]

# Connect and read limits: a stuck API server shows up as a temporary failure, not a hang.
# Only the TCP connect (sock_connect) is bounded, not aiohttp's `connect`, which also counts the
# wait for a free connection of the pool: with a thousand reconciles queued behind
# MAX_CONNECTIONS, that wait alone passed 5 s and failed healthy requests as
# ConnectionTimeoutError, each one then backed off as a temporary failure (the N=1000 stall).
# A queued request waits its turn; the ones ahead of it are bounded by sock_read.
REQUEST_TIMEOUT = aiohttp.ClientTimeout(connect=None, sock_connect=5.0, sock_read=30.0)
# Requests in flight at once. The API server's own default limits are 400 reads and 200 writes
# in flight; this leaves room for every other client while not queueing behind a small pool.
MAX_CONNECTIONS = 64

_VERBS = {"GET": "get", "POST": "create", "PUT": "update", "DELETE": "delete"}
_PATCH_VERBS = {
    "application/apply-patch+yaml": "apply",
    "application/merge-patch+json": "patch",
    "application/strategic-merge-patch+json": "patch",
    "application/json-patch+json": "patch",
}


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


async def load_configuration() -> Configuration:
    """In-cluster service account when in a pod, else $KUBECONFIG / ~/.kube/config."""
    cfg = Configuration()
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        kube_config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
    else:
        # Read $KUBECONFIG now, not at import, so a late change counts.
        await kube_config.load_kube_config(
            config_file=os.environ.get("KUBECONFIG") or None, client_configuration=cfg
        )
    cfg.connection_pool_maxsize = MAX_CONNECTIONS
    return cfg


async def connection_info(cfg: Configuration) -> kopf.ConnectionInfo:
    """kopf's view of a client Configuration (as kopf's own client-based login builds it)."""
    auth = (await cfg.auth_settings()).get("BearerToken") or {}
    header = str(auth.get("value") or "")
    parts = header.split(" ", 1) if header else []
    scheme = parts[0] if len(parts) == 2 else None
    token = parts[-1] if parts else None
    return kopf.ConnectionInfo(
        server=str(cfg.host),
        ca_path=cfg.ssl_ca_cert,
        insecure=not cfg.verify_ssl,
        username=cfg.username or None,
        password=cfg.password or None,
        scheme=scheme,
        token=token,
        certificate_path=cfg.cert_file,
        private_key_path=cfg.key_file,
    )


# An apply patch is YAML (the API server reads JSON as the YAML it also is). JSON's escapes for
# characters beyond the Basic Multilingual Plane (surrogate pairs, "\ud83d\ude00") are not valid
# YAML escapes, and YAML reads some raw characters (C1 controls, NEL, the line and paragraph
# separators, BOM) as line breaks or refuses them. So an apply body is UTF-8 with only those
# characters escaped (as BMP escapes, which YAML reads); a lone surrogate becomes U+FFFD, as the
# API server's own JSON decoding would make it.
_YAML_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029\ufeff\ufffe\uffff\ud800-\udfff]")
APPLY_CONTENT_TYPE = "application/apply-patch+yaml; charset=utf-8"


def _yaml_escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return "\\ufffd" if 0xD800 <= code <= 0xDFFF else f"\\u{code:04x}"


def apply_body(manifest: JSONDict) -> bytes:
    """`manifest` as an apply patch body the API server's YAML decoder reads back unchanged."""
    text = json.dumps(manifest, ensure_ascii=False, separators=(",", ":"))
    return _YAML_UNSAFE.sub(_yaml_escape, text).encode("utf-8")


def _verb(method: str, content_type: str, path: str) -> str:
    content_type = content_type.split(";")[0].strip()
    verb = _PATCH_VERBS.get(content_type, "patch") if method == "PATCH" else _VERBS[method]
    if path.endswith("/status"):
        return f"{verb}-status"
    if path.endswith("/scale"):
        return f"{verb}-scale"
    return verb


class Kube:
    """JSON requests to the API server. Every method raises errors.APIError on failure."""

    def __init__(self, api_client: ApiClient) -> None:
        self._client = api_client

    @classmethod
    async def from_environment(cls) -> Kube:
        return cls(ApiClient(configuration=await load_configuration()))

    async def close(self) -> None:
        await self._client.close()

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        kind: str = "",
    ) -> JSONDict | None:
        """One request; the parsed JSON answer, or None for an empty one. `kind` labels the
        request in the operator's metrics."""
        data = await self._send(method, path, query, body, content_type, kind, "application/json")
        if not data:
            return None
        return json.loads(data)  # type: ignore[no-any-return]

    async def get_text(self, path: str, *, kind: str = "") -> str:
        """GET an answer that is not JSON, as text: a pod's /metrics through the API server's
        pod proxy (the concurrency autoscaler's --scrape-via apiserver)."""
        data = await self._send("GET", path, None, None, "application/json", kind, "*/*")
        if isinstance(data, bytes):
            return data.decode("utf-8", "replace")
        return str(data or "")

    async def _send(
        self,
        method: str,
        path: str,
        query: dict[str, str] | None,
        body: Any,
        content_type: str,
        kind: str,
        accept: str,
    ) -> Any:
        headers = {"Accept": accept, "Content-Type": content_type}
        params = dict(query or {})
        verb = _verb(method, content_type, path)
        if "dryRun" in params:
            verb += "-dryrun"  # writes nothing: not counted with the writes
        code = "0"
        try:
            # The token goes in a header (refreshed first when it comes from an exec plugin).
            await self._client.update_params_for_auth(headers, [], ["BearerToken"])
            response = await self._client.rest_client.request(
                method,
                f"{self._client.configuration.host}{path}",
                query_params=params,
                headers=headers,
                body=body,
                _request_timeout=REQUEST_TIMEOUT,
            )
            code = str(response.status)
            data = response.data
        except ApiException as exc:
            code = str(exc.status or 0)
            if not exc.status:
                raise APIConnectionError(f"{exc.reason}") from exc
            raise APIError.from_response(int(exc.status), exc.body, exc.reason) from exc
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            # Refused, reset, TLS failures and timeouts: the server never answered.
            raise APIConnectionError(f"{type(exc).__name__}: {exc}") from exc
        finally:
            metrics.API_REQUESTS.labels(verb=verb, kind=kind or "-", code=code).inc()
        return data

    async def get(self, resource: Resource, namespace: str, name: str) -> JSONDict | None:
        """The object, or None when it does not exist."""
        try:
            return await self.request(
                "GET", object_path(resource, namespace, name), kind=resource.kind
            )
        except APIError as exc:
            if exc.status == 404:
                return None
            raise

    async def peering_exists(self, name: str, namespace: str | None) -> bool:
        """Whether kopf's peering object exists (ClusterKopfPeering when namespace is None)."""
        resource = CLUSTER_PEERING if namespace is None else PEERING
        try:
            await self.request("GET", object_path(resource, namespace, name), kind=resource.kind)
        except APIError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    async def list(self, resource: Resource, namespace: str, selector: str) -> list[JSONDict]:
        result = await self.request(
            "GET",
            collection_path(resource, namespace),
            query={"labelSelector": selector},
            kind=resource.kind,
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
            "PATCH",
            path,
            query=query,
            # Bytes, with a charset: the client library then sends them as they are.
            body=apply_body(manifest),
            content_type=APPLY_CONTENT_TYPE,
            kind=resource.kind,
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
            await self.request(
                "DELETE", object_path(resource, namespace, name), body=body, kind=resource.kind
            )
        except APIError as exc:
            if exc.status in (404, 409):
                return False
            raise
        return True

    async def patch_status(self, namespace: str, name: str, status: JSONDict) -> JSONDict | None:
        """Merge-patch the TornadoService's status; the updated object, None when it is gone."""
        path = object_path(TORNADO_SERVICE, namespace, name) + "/status"
        try:
            return await self.request(
                "PATCH",
                path,
                query={"fieldManager": FIELD_MANAGER},
                body={"status": status},
                content_type="application/merge-patch+json",
                kind=TORNADO_SERVICE.kind,
            )
        except APIError as exc:
            if exc.status == 404:
                return None
            raise

    async def post_event(self, involved: JSONDict, *, type: str, reason: str, message: str) -> None:
        """Create a core/v1 Event about `involved` (a TornadoService body), once.

        Not retried: an Event is news about now, and the reasons it fails (the namespace is being
        deleted, RBAC) do not pass by retrying soon; callers log and move on.
        """
        body = _event(involved, type=type, reason=reason, message=message)
        namespace = body["metadata"]["namespace"]
        await self.request("POST", collection_path(EVENT, namespace), body=body, kind=EVENT.kind)

    async def namespace_terminating(self, involved: JSONDict) -> bool:
        """Whether the namespace of `involved` (a TornadoService body) is being deleted: it
        refuses new objects then. Asked with a dry-run Event, which creates nothing and needs
        no permission beyond posting Events (no access to namespaces)."""
        body = _event(involved, type="Normal", reason="Probe", message="dry run")
        namespace = body["metadata"]["namespace"]
        try:
            await self.request(
                "POST",
                collection_path(EVENT, namespace),
                query={"dryRun": "All"},
                body=body,
                kind=EVENT.kind,
            )
        except APIError as exc:
            if namespace_terminating(exc):
                return True
            raise
        return False


def _event(involved: JSONDict, *, type: str, reason: str, message: str) -> JSONDict:
    meta = involved.get("metadata") or {}
    namespace = str(meta.get("namespace") or "default")
    now = datetime.datetime.now(datetime.UTC).isoformat()
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{meta.get('name')}.", "namespace": namespace},
        "involvedObject": {
            "apiVersion": involved.get("apiVersion") or TORNADO_SERVICE.api_version,
            "kind": involved.get("kind") or TORNADO_SERVICE.kind,
            "name": meta.get("name"),
            "namespace": namespace,
            "uid": meta.get("uid"),
        },
        "type": type,
        "reason": reason,
        "message": message[:1024],
        "source": {"component": FIELD_MANAGER},
        "reportingComponent": FIELD_MANAGER,
        "reportingInstance": socket.gethostname()[:128],
        # The shape kopf posts: `kubectl describe` reads first/lastTimestamp.
        "firstTimestamp": now,
        "lastTimestamp": now,
        "eventTime": now,
        "action": reason,
    }
