"""Rolling updates under load lose no request.

A client pod in the cluster sends at least 100 requests/s to a TornadoService's Service by its DNS
name (CoreDNS, the ClusterIP, kube-proxy: the path a real caller takes) while the TornadoService
rolls out three times; first with a new TCP connection per request, then again over keep-alive
connections. Every request must succeed: the rollout keeps capacity (maxUnavailable 0), a pod
leaves the endpoints before it stops serving (preStop sleep), then drains (readiness 503 and
`Connection: close`, so keep-alive clients reconnect elsewhere) before its listener closes.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from tests.e2e.incluster import ALLOW_CLIENTS, GET_ONCE, Load, client_pod, run_python
from tests.e2e.operator_support import (
    apply,
    get,
    kubectl,
    patch,
    tornadoservice,
    wait_for,
    wait_ready,
)

pytest_plugins = ["tests.e2e.operator_fixtures"]

RATE = 120  # requests/s asked of the client (at least 100 must be measured)
WORKERS = 12
ROLLOUTS = 3  # per connection mode
MAX_LOAD_SECONDS = 240  # the load stops by itself after this, whatever happens to the test
NAME = "loaded"


def _pods(ns: str) -> list[dict[str, Any]]:
    data = kubectl(
        "get", "pods", "-n", ns, "-l", f"app.kubernetes.io/instance={NAME}", "-o", "json"
    ).stdout
    return list(json.loads(data)["items"])


def _rolled_out(ns: str, revision: str) -> bool:
    """The Deployment runs 2 ready pods of the new template, and no old pod is left at all."""
    dep = get("deployment", NAME, ns) or {}
    st = dep.get("status") or {}
    template = dep["spec"]["template"]["metadata"].get("annotations") or {}
    if template.get("test/revision") != revision:
        return False
    if st.get("observedGeneration", 0) < dep["metadata"]["generation"]:
        return False
    if not (st.get("updatedReplicas") == st.get("replicas") == st.get("availableReplicas") == 2):
        return False
    pods = _pods(ns)
    # Old pods are gone, not only terminating: their drain happened under load too.
    return len(pods) == 2 and all(
        (p["metadata"].get("annotations") or {}).get("test/revision") == revision for p in pods
    )


def _roll(ns: str, revision: str) -> float:
    t0 = time.monotonic()
    patch("tornadoservice", NAME, ns, {"spec": {"podAnnotations": {"test/revision": revision}}})
    wait_for(f"rollout to revision {revision}", lambda: _rolled_out(ns, revision), 180, 0.5)
    return time.monotonic() - t0


def test_rolling_updates_under_load_lose_no_request(operator_ns: str, template_image: str) -> None:
    ns = operator_ns
    apply(
        tornadoservice(
            NAME,
            replicas=2,
            podAnnotations={"test/revision": "0"},
            # Shorter than the defaults (5 s and 5 s) to keep the test short; the same sequence.
            shutdown={"preStopSleepSeconds": 3, "drainDelaySeconds": 2},
            ingress=ALLOW_CLIENTS,  # the client pod is no TornadoService: it must be let in
        ),
        ns,
    )
    wait_ready(NAME, ns)
    wait_for("the first pods", lambda: _rolled_out(ns, "0"), 120, 0.5)
    client = client_pod(ns, template_image, cpu="200m")
    url = f"http://{NAME}.{ns}.svc/"

    # One verified request before any load.
    got = run_python(ns, client, GET_ONCE, url)
    assert got["status"] == 200 and "Hello, world!" in got["body"], got

    results: dict[str, dict[str, Any]] = {}
    durations: dict[str, list[float]] = {}
    revision = 0
    for mode in ("new", "keepalive"):
        load = Load(ns, client, url, mode, RATE, WORKERS, MAX_LOAD_SECONDS)
        try:
            time.sleep(2)  # load before the first rollout
            durations[mode] = []
            for _ in range(ROLLOUTS):
                revision += 1
                durations[mode].append(_roll(ns, str(revision)))
            time.sleep(1)
            results[mode] = load.stop()
        finally:
            load.kill()
    # KopfRunner holds sys.stdout while the operator runs: the numbers go to the real one.
    print(f"rollout under load: {results} rollout seconds: {durations}", file=sys.__stdout__)
    for mode, r in results.items():
        assert r["failed"] == 0, f"{mode}: {r}"
        assert r["ok"] == r["sent"] > 0, f"{mode}: {r}"
        assert r["rate"] >= 100, f"{mode}: under 100 requests/s: {r}"
        assert r["seconds"] < MAX_LOAD_SECONDS - 5, f"{mode}: the load ended before the rollouts"
    # Over keep-alive, connections were in fact reused (and reopened when pods went away).
    keep = results["keepalive"]
    assert keep["reconnects"] >= 1 and keep["reconnects"] < keep["sent"] / 10, keep
    obj = wait_ready(NAME, ns)
    assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"]
