"""`helm test` for tornado-operator: a TornadoService becomes Ready and answers HTTP.

Runs in the test pod (the operator image: Python plus the Kubernetes client), with a ServiceAccount
that may only create, read and delete TornadoServices and list Services in one namespace. Every step
prints what it does, so a failure in `helm test --logs` says where it stopped.
"""

from __future__ import annotations

import os
import sys
import time
import urllib.error
import urllib.request
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

GROUP, VERSION, PLURAL = "tornado-operator.dev", "v1alpha1", "tornadoservices"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def ready_condition(obj: dict[str, Any]) -> dict[str, Any] | None:
    for cond in obj.get("status", {}).get("conditions", []) or []:
        if cond.get("type") == "Ready":
            return dict(cond)
    return None


def delete_and_wait(api: client.CustomObjectsApi, ns: str, name: str, deadline: float) -> None:
    try:
        api.delete_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)
    except ApiException as exc:
        if exc.status == 404:
            return
        raise
    log(f"deleting TornadoService {ns}/{name}")
    while time.monotonic() < deadline:
        try:
            api.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)
        except ApiException as exc:
            if exc.status == 404:
                return
            raise
        time.sleep(1)
    raise TimeoutError(f"TornadoService {ns}/{name} was not deleted in time")


def wait_ready(api: client.CustomObjectsApi, ns: str, name: str, deadline: float) -> dict[str, Any]:
    last = None
    while time.monotonic() < deadline:
        obj = api.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)
        cond = ready_condition(obj)
        seen = (cond or {}).get("status"), (cond or {}).get("reason")
        if seen != last:
            log(f"Ready={seen[0]} reason={seen[1]} message={(cond or {}).get('message')!r}")
            last = seen
        fresh = (cond or {}).get("observedGeneration", 0) >= obj["metadata"].get("generation", 0)
        if cond and cond.get("status") == "True" and fresh:
            return dict(obj)
        time.sleep(2)
    raise TimeoutError(f"TornadoService {ns}/{name} did not become Ready; last condition {last}")


def owned_service(core: client.CoreV1Api, ns: str, uid: str) -> client.V1Service:
    for svc in core.list_namespaced_service(ns).items:
        if any(ref.uid == uid for ref in svc.metadata.owner_references or []):
            return svc
    raise LookupError(f"no Service in {ns} is owned by the TornadoService (uid {uid})")


def call(url: str, deadline: float) -> tuple[int, str]:
    error: Exception | None = None
    # Endpoints can trail the Ready condition by a moment; retry briefly, never forever.
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as rsp:
                return rsp.status, rsp.read(2000).decode("utf-8", "replace")
        except urllib.error.HTTPError as exc:
            if exc.code < 500:
                return exc.code, exc.read(2000).decode("utf-8", "replace")
            error = exc
            time.sleep(2)
        except (urllib.error.URLError, OSError) as exc:
            error = exc
            time.sleep(2)
    raise ConnectionError(f"GET {url} failed: {error}")


def main() -> int:
    ns, name = os.environ["SMOKE_NAMESPACE"], os.environ["SMOKE_NAME"]
    deadline = time.monotonic() + float(os.environ.get("SMOKE_TIMEOUT_SECONDS", "300"))
    config.load_incluster_config()
    api, core = client.CustomObjectsApi(), client.CoreV1Api()

    # A previous run that failed half-way may have left its TornadoService behind.
    delete_and_wait(api, ns, name, deadline)
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "TornadoService",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/component": "test"}},
        "spec": {
            "replicas": 1,
            # This pod is no TornadoService: the smoke service's NetworkPolicy must let it in.
            "ingress": {
                "from": [
                    {
                        "namespaceSelector": {
                            "matchLabels": {
                                "kubernetes.io/metadata.name": os.environ["SMOKE_CLIENT_NAMESPACE"]
                            }
                        },
                        "podSelector": {
                            "matchLabels": {
                                "app.kubernetes.io/name": os.environ["SMOKE_CLIENT_NAME"]
                            }
                        },
                    }
                ]
            },
        },
    }
    log(f"creating TornadoService {ns}/{name} (default image)")
    created = api.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, body)
    try:
        obj = wait_ready(api, ns, name, deadline)
        log(f"Ready; status.url={obj.get('status', {}).get('url')!r}")
        svc = owned_service(core, ns, created["metadata"]["uid"])
        port = svc.spec.ports[0].port
        url = f"http://{svc.spec.cluster_ip}:{port}/"
        status, text = call(url, deadline)
        log(f"GET {url} (Service {svc.metadata.name}) -> {status}: {text.strip()[:300]}")
        if not 200 <= status < 300:
            log("FAIL: the service did not answer 2xx")
            return 1
        log("PASS")
        return 0
    finally:
        delete_and_wait(api, ns, name, time.monotonic() + 60)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as exc:
        log(f"FAIL: {type(exc).__name__}: {exc}")
        sys.exit(1)
