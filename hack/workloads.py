"""The workload of the concurrency-autoscaling e2e tests and benchmark (benchmarks/autoscaling.py):
a slow upstream and a load generator, both pods of the template image (Debian bookworm, Python,
Tornado), all inside the cluster. Nothing here sends traffic from the host.

- `slow_upstream`: a Pod and Service answering every GET after `delay` seconds (200 ms).
- `loader`: a Pod that checks its target once (status 200 and a green /compose body), then keeps
  `concurrency` requests in flight, bounded in time and count, and prints one JSON line per
  second (completed, failed, slow, latency quantiles) and a summary at the end.
- `no_metrics_server`: a command for a TornadoService whose pods pass their probes but whose
  /metrics never answer in time, for the missing-metrics case.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hack.images import TEMPLATE_IMAGE
from hack.kubetools import kubectl

JSONDict = dict[str, Any]
PYTHON = "/opt/venv/bin/python"
# How long a loader tries its first, verified request (a new Service is not routed at once).
VERIFY_SECONDS = 180.0
RESTRICTED = {
    "allowPrivilegeEscalation": False,
    "runAsNonRoot": True,
    "runAsUser": 10001,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}

SLOW_SERVER = """
import asyncio, sys
import tornado.web

DELAY = float(sys.argv[1])

class Slow(tornado.web.RequestHandler):
    async def get(self):
        await asyncio.sleep(DELAY)
        self.write("slow ok")

    def log_exception(self, *args):
        pass

async def main():
    app = tornado.web.Application([(r"/.*", Slow)], log_function=lambda handler: None)
    app.listen(8080)
    await asyncio.Event().wait()

asyncio.run(main())
"""

LOADER = """
import asyncio, json, os, sys, time
from tornado.httpclient import AsyncHTTPClient

URL = os.environ["URL"]
CONCURRENCY = int(os.environ["CONCURRENCY"])
DURATION = float(os.environ["DURATION"])
MAX_REQUESTS = int(os.environ["MAX_REQUESTS"])
SLOW_SECONDS = float(os.environ["SLOW_SECONDS"])
TIMEOUT = float(os.environ["TIMEOUT"])
VERIFY_SECONDS = float(os.environ["VERIFY_SECONDS"])


def ok(response):
    if response.code != 200:
        return False
    try:
        body = json.loads(response.body)
    except ValueError:
        return False
    return body.get("red") == 0 and body.get("green", 0) >= 1


async def main():
    client = AsyncHTTPClient(max_clients=CONCURRENCY + 4)
    # One verified request before any load: the right service, answering green. A new Service
    # can take a while to be routed (kube-proxy on a busy node), and a new pod a while to be let
    # in by the NetworkPolicy enforcer (refused until then): retried, within VERIFY_SECONDS.
    verify_until = time.monotonic() + VERIFY_SECONDS
    while True:
        try:
            first = await client.fetch(URL, raise_error=False, request_timeout=3)
            answer = {"code": first.code,
                      "body": (first.body or b"")[:300].decode("utf-8", "replace")}
        except Exception as exc:  # refused, reset, timed out: not routed or not let in yet
            first, answer = None, {"error": repr(exc)}
        if (first is not None and ok(first)) or time.monotonic() > verify_until:
            break
        await asyncio.sleep(1)
    if first is None or not ok(first):
        print(json.dumps({"verified": False, **answer}), flush=True)
        sys.exit(3)
    start = time.time()
    print(json.dumps({"verified": True, "start": start}), flush=True)
    end = time.monotonic() + DURATION
    sent = 0
    second = {"completed": 0, "failed": 0, "slow": 0, "latencies": []}
    totals = {"completed": 0, "failed": 0, "slow": 0}
    every = []  # all latencies, for the summary's quantiles (bounded by MAX_REQUESTS)

    async def worker():
        nonlocal sent
        while time.monotonic() < end and sent < MAX_REQUESTS:
            sent += 1
            began = time.monotonic()
            try:
                response = await client.fetch(URL, raise_error=False, request_timeout=TIMEOUT)
                good = ok(response)
            except Exception:
                good = False
            took = time.monotonic() - began
            second["completed" if good else "failed"] += 1
            second["slow"] += took > SLOW_SECONDS
            second["latencies"].append(took)

    async def reporter():
        while time.monotonic() < end and sent < MAX_REQUESTS:
            await asyncio.sleep(1)
            lat = sorted(second["latencies"])
            every.extend(lat)
            line = {"t": round(time.time() - start, 1), "completed": second["completed"],
                    "failed": second["failed"], "slow": second["slow"]}
            if lat:
                line["p50"] = round(lat[len(lat) // 2], 3)
                line["p99"] = round(lat[min(len(lat) - 1, int(len(lat) * 0.99))], 3)
            for key in totals:
                totals[key] += second[key]
            print(json.dumps(line), flush=True)
            second.update(completed=0, failed=0, slow=0, latencies=[])

    await asyncio.gather(reporter(), *(worker() for _ in range(CONCURRENCY)))
    for key in totals:
        totals[key] += second[key]
    every.extend(second["latencies"])
    every.sort()
    quantiles = {f"p{q}": round(every[min(len(every) - 1, int(len(every) * q / 100))], 3)
                 for q in (50, 90, 99)} if every else {}
    print(json.dumps({"done": True, "end": time.time(), **totals, **quantiles,
                      "max": round(every[-1], 3) if every else None}), flush=True)


asyncio.run(main())
"""

NO_METRICS_SERVER = """
import asyncio, os
import tornado.web

class Probe(tornado.web.RequestHandler):
    def get(self):
        self.write("ok")

class Stuck(tornado.web.RequestHandler):
    async def get(self):
        await asyncio.sleep(30)  # far beyond the autoscaler's 1 s scrape timeout

async def main():
    app = tornado.web.Application([(r"/metrics", Stuck), (r"/.*", Probe)])
    app.listen(int(os.environ["PORT"]))
    await asyncio.Event().wait()

asyncio.run(main())
"""


def _container(name: str, script: str, args: list[str] | None = None) -> JSONDict:
    return {
        "name": name,
        "image": TEMPLATE_IMAGE,
        "imagePullPolicy": "IfNotPresent",
        "command": [PYTHON, "-c", script, *(args or [])],
        "resources": {"requests": {"cpu": "50m", "memory": "32Mi"}, "limits": {"memory": "96Mi"}},
        "securityContext": RESTRICTED,
    }


def slow_upstream(name: str = "slow", delay: float = 0.2) -> list[JSONDict]:
    """A Pod and a Service (port 80) that answer every GET after `delay` seconds."""
    container = _container("slow", SLOW_SERVER, [str(delay)])
    container["ports"] = [{"name": "http", "containerPort": 8080}]
    container["readinessProbe"] = {
        "tcpSocket": {"port": "http"},
        "periodSeconds": 1,
    }
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "automountServiceAccountToken": False,
            "terminationGracePeriodSeconds": 1,
            "containers": [container],
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": {"app": name}, "ports": [{"port": 80, "targetPort": "http"}]},
    }
    return [pod, service]


# The loaders' label, and the spec.ingress a TornadoService they call needs (by default its
# NetworkPolicy admits only TornadoServices that list it as an upstream).
LOADER_LABELS = {"app": "load"}
LOADER_INGRESS = {"from": [{"podSelector": {"matchLabels": LOADER_LABELS}}]}


def loader(
    name: str,
    url: str,
    *,
    concurrency: int = 30,
    duration: float = 300,
    max_requests: int = 200_000,
    slow_seconds: float = 0.4,
    timeout: float = 10,
    verify_seconds: float = VERIFY_SECONDS,
) -> JSONDict:
    """A Pod that keeps `concurrency` GETs of `url` in flight for at most `duration` seconds and
    `max_requests` requests, after one verified request."""
    container = _container("load", LOADER)
    container["env"] = [
        {"name": "URL", "value": url},
        {"name": "CONCURRENCY", "value": str(concurrency)},
        {"name": "DURATION", "value": str(duration)},
        {"name": "MAX_REQUESTS", "value": str(max_requests)},
        {"name": "SLOW_SECONDS", "value": str(slow_seconds)},
        {"name": "TIMEOUT", "value": str(timeout)},
        {"name": "VERIFY_SECONDS", "value": str(verify_seconds)},
    ]
    container["resources"]["requests"]["cpu"] = "100m"
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": dict(LOADER_LABELS)},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "terminationGracePeriodSeconds": 0,
            "containers": [container],
        },
    }


def no_metrics_command() -> list[str]:
    """spec.command of pods that pass every probe while /metrics never answers in time."""
    return [PYTHON, "-c", NO_METRICS_SERVER]


def loader_lines(name: str, namespace: str, kubeconfig: Path | None = None) -> list[JSONDict]:
    """The JSON lines a loader printed so far."""
    proc = kubectl("logs", name, "-n", namespace, check=False, kubeconfig=kubeconfig)
    lines: list[JSONDict] = []
    for line in proc.stdout.splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError:
            continue
    return lines


def loader_verified(name: str, namespace: str, kubeconfig: Path | None = None) -> bool | None:
    """True once the loader checked its target, False if that check failed, None until then."""
    for line in loader_lines(name, namespace, kubeconfig):
        if "verified" in line:
            return bool(line["verified"])
    return None
