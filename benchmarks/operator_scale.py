#!/usr/bin/env python3
"""Scale benchmark of the operator (issue 9): N TornadoServices x 2 pods on kwok's fake nodes.

    .venv/bin/python benchmarks/operator_scale.py --n 100 --layouts one,ten --out /tmp/scale.json
    .venv/bin/python benchmarks/operator_scale.py --fake-nodes --n 1000      # sets kwok up first

Not a test: it prints one markdown table and writes every number as JSON (--out). It needs the
project's local cluster with fake nodes (`python -m hack.cluster up --fake-nodes 10`; --fake-nodes
runs that), and measures whatever operator is in the tree, started as a real separate process on
the host (`tornado-operator run --standalone`), so its CPU and peak RSS come from /proc and its
counters from its own /metrics. Helm-installed operators are scaled to 0 meanwhile and restored.

Per N and layout (`one`: every service in one namespace; `ten`: spread over 10), in one run:

  baseline   the API server's limit: an aiohttp client, at most --concurrency requests in flight,
             no client-side throttling, makes the operator's writes with no operator running:
             create each TornadoService, server-side apply each child rendered by the operator's
             own code, one status merge-patch. `ready` adds the time until every Deployment has
             its pods available (what the controllers and kwok need: a floor for any operator).
  kubectl    `kubectl apply --server-side` of the same pre-rendered children, for reference.
  operator   create N TornadoServices, then a watch (receipt timestamps) sees each one reach
             observedGeneration == generation and Ready=True; convergence also waits for every
             child. Latency per service: watch ADDED -> watch converged, p50 and p99.
             Writes and reconciles per service from the operator's metrics
             (tornado_operator_api_requests_total: writes = verbs other than get/list/watch;
             tornado_operator_reconciles_total), counted until the operator is quiet; "n/a" when
             the operator does not export them; they leave out kopf's own bookkeeping patches.
             "api" columns are the API server's own count of applies and merge patches on
             TornadoServices and child kinds: they include kopf's patches, and, being
             cluster-wide, anyone else's writes in the same seconds (tests running meanwhile).
             CPU seconds and peak RSS (VmHWM).
  resume     SIGTERM, start again: seconds until every service had its resume reconcile and
             reconciles stopped (kopf resumes nothing before its indexes are listed), its writes.
  idle       its CPU over --idle-seconds with everything converged and nothing changing.
  deletion   delete the namespace(s): seconds until gone, the operator's writes after deletion
             began (its metric / the API server's count), children re-created (its applies or
             creates of a child answered 201; without its metric, the API server's 201 applies),
             and temporary failures (reconciles_total{result="temporary"}).

By default the operator watches only the benchmark's namespaces (--scope namespaced), so it never
touches other people's TornadoServices in a shared cluster; --scope cluster watches all of them.
Every wait is bounded; the benchmark's namespaces are deleted at the end, also on failure.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import math
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from hack.cluster import fakenodes, local  # noqa: E402
from hack.kubetools import (  # noqa: E402
    LockTimeout,
    binary,
    operator_lock,
    other_operators_paused,
)
from hack.paths import paths  # noqa: E402

JSONDict = dict[str, Any]
Key = tuple[str, str]
GROUP_VERSION = "tornado-operator.dev/v1alpha1"
PLURAL = "tornadoservices"
CRD_NAME = f"{PLURAL}.tornado-operator.dev"
FIELD_MANAGER = "tornado-operator"
BENCH_LABEL = "benchmark.tornado-operator.dev/run"
REPLICAS = 2
# kind -> (API path prefix, plural). Filled in from the operator's own child table when it has one
# (tornado_operator.children.CHILD_KINDS), so a new child kind needs no change here.
CHILD_PATHS = {
    "Deployment": ("apis/apps/v1", "deployments"),
    "Service": ("api/v1", "services"),
    "HorizontalPodAutoscaler": ("apis/autoscaling/v2", "horizontalpodautoscalers"),
    "PodDisruptionBudget": ("apis/policy/v1", "poddisruptionbudgets"),
    "NetworkPolicy": ("apis/networking.k8s.io/v1", "networkpolicies"),
}
API_RESOURCES = {PLURAL, *(plural for _, plural in CHILD_PATHS.values())}


def learn_child_kinds() -> None:
    import importlib

    with contextlib.suppress(ImportError, AttributeError, TypeError):
        for child in importlib.import_module("tornado_operator.children").CHILD_KINDS:
            group, version = str(child.group), str(child.version)
            prefix = f"apis/{group}/{version}" if group else f"api/{version}"
            CHILD_PATHS[str(child.kind)] = (prefix, str(child.plural))
            API_RESOURCES.add(str(child.plural))


READ_VERBS = {"get", "list", "watch"}


class BenchError(RuntimeError):
    """Something the benchmark needs is missing or did not happen in time; one sentence."""


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- the operator's own code


@dataclass
class Renderer:
    """The operator's rendering, imported at run time (its module layout is being refactored)."""

    render: Callable[[str, str, str, JSONDict], list[JSONDict]]
    default_image: str
    where: str


def load_renderer() -> Renderer:
    import importlib

    validation = importlib.import_module("tornado_operator.validation")
    package = importlib.import_module("tornado_operator")
    default_image = str(
        getattr(package, "DEFAULT_IMAGE", "tornado-operator/service-template:0.1.0")
    )
    render_children: Callable[..., Any] | None = None
    parent_cls: Any = None
    where = ""
    for modname in ("tornado_operator.children", "tornado_operator.rendering"):
        try:
            mod = importlib.import_module(modname)
        except ImportError:
            continue
        if render_children is None and hasattr(mod, "render_children"):
            render_children, where = mod.render_children, f"{modname}.render_children"
        if parent_cls is None and hasattr(mod, "Parent"):
            parent_cls = mod.Parent
    if render_children is None or parent_cls is None:
        raise BenchError("tornado_operator has no render_children/Parent to render children with")
    fn, parent_type = render_children, parent_cls

    def render(name: str, namespace: str, uid: str, spec: JSONDict) -> list[JSONDict]:
        try:
            valid = validation.validated_spec(spec)
        except ValueError as exc:  # InvalidSpecError
            raise BenchError(
                f"the operator's own validation rejects the spec the API server returned "
                f"(is the CRD in the cluster the one in the tree?): {exc}"
            ) from exc
        children = fn(parent_type(name=name, namespace=namespace, uid=uid), valid, default_image)
        items = children.all() if hasattr(children, "all") else list(children)
        return [m for m in items if m is not None]

    return Renderer(render, default_image, where)


def tornadoservice(name: str, namespace: str, run_id: str) -> JSONDict:
    return {
        "apiVersion": GROUP_VERSION,
        "kind": "TornadoService",
        "metadata": {"name": name, "namespace": namespace, "labels": {BENCH_LABEL: run_id}},
        "spec": {
            "replicas": REPLICAS,
            "nodeSelector": fakenodes.FAKE_NODE_SELECTOR,
            "tolerations": fakenodes.FAKE_NODE_TOLERATIONS,
        },
    }


def status_like_the_operator(obj: JSONDict, image: str) -> JSONDict:
    """A status of the shape and size the operator writes (baseline only)."""
    meta = obj["metadata"]
    gen = int(meta.get("generation") or 1)
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())

    def cond(type_: str, status: str, reason: str, message: str) -> JSONDict:
        return {
            "type": type_,
            "status": status,
            "reason": reason,
            "message": message,
            "lastTransitionTime": now,
            "observedGeneration": gen,
        }

    return {
        "status": {
            "observedGeneration": gen,
            "replicas": REPLICAS,
            "readyReplicas": 0,
            "updatedReplicas": 0,
            "selector": f"app.kubernetes.io/instance={meta['name']}",
            "url": f"http://{meta['name']}.{meta['namespace']}.svc",
            "image": image,
            "conditions": [
                cond("Ready", "False", "ReplicasNotReady", f"0 of {REPLICAS} replicas ready"),
                cond("Progressing", "True", "Scaling", "scaling to 2 replicas"),
                cond("Degraded", "False", "AsExpected", "nothing needs attention"),
            ],
        }
    }


# ---------------------------------------------------------------- a plain async API client


@dataclass
class Credentials:
    server: str
    ssl: ssl.SSLContext
    token: str | None
    kubeconfig: Path


def load_credentials(kubeconfig: Path, tmp: Path) -> Credentials:
    cfg = yaml.safe_load(kubeconfig.read_text())
    ctx_name = cfg.get("current-context")
    ctx = next(c["context"] for c in cfg["contexts"] if c["name"] == ctx_name)
    cluster = next(c["cluster"] for c in cfg["clusters"] if c["name"] == ctx["cluster"])
    user = next(u["user"] for u in cfg["users"] if u["name"] == ctx["user"])

    def material(obj: JSONDict, key: str, name: str) -> str | None:
        if obj.get(f"{key}-data"):
            path = tmp / name
            path.write_bytes(base64.b64decode(obj[f"{key}-data"]))
            path.chmod(0o600)
            return str(path)
        value = obj.get(key)
        return str(value) if value else None

    sslctx = ssl.create_default_context(cafile=material(cluster, "certificate-authority", "ca"))
    cert, key = material(user, "client-certificate", "crt"), material(user, "client-key", "key")
    if cert and key:
        sslctx.load_cert_chain(cert, key)
    return Credentials(str(cluster["server"]).rstrip("/"), sslctx, user.get("token"), kubeconfig)


class ApiError(RuntimeError):
    def __init__(self, status: int, method: str, path: str, body: str) -> None:
        super().__init__(f"{method} {path}: HTTP {status}: {body[:300]}")
        self.status = status


class Api:
    """JSON requests, at most `concurrency` in flight, retried on 429/5xx (counted)."""

    def __init__(self, creds: Credentials, concurrency: int) -> None:
        self.creds = creds
        headers = {"Accept": "application/json"}
        if creds.token:
            headers["Authorization"] = f"Bearer {creds.token}"
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=creds.ssl, limit=concurrency + 16),
            headers=headers,
            read_bufsize=1 << 22,
            timeout=aiohttp.ClientTimeout(total=120),
        )
        self.sem = asyncio.Semaphore(concurrency)
        self.retries = 0

    async def close(self) -> None:
        await self.session.close()

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: dict[str, str] | None = None,
        content_type: str = "application/json",
        missing_ok: bool = False,
    ) -> JSONDict | None:
        data = None if body is None else json.dumps(body)
        status, text = 0, ""
        for attempt in range(6):
            try:
                async with (
                    self.sem,
                    self.session.request(
                        method,
                        f"{self.creds.server}/{path.lstrip('/')}",
                        params=query,
                        data=data,
                        headers={"Content-Type": content_type},
                    ) as resp,
                ):
                    status, text = resp.status, await resp.text()
            except aiohttp.ClientConnectionError as exc:  # the API server restarting
                status, text = 0, str(exc)
            if status == 404 and missing_ok:
                return None
            if status in (0, 429) or status >= 500:
                self.retries += 1
                await asyncio.sleep(min(2.0, 0.05 * 2**attempt))
                continue
            if status >= 300:
                raise ApiError(status, method, path, text)
            return json.loads(text) if text else None
        raise ApiError(status, method, path, f"still failing after 6 attempts: {text}")

    async def text(self, path: str) -> str:
        async with self.sem, self.session.get(f"{self.creds.server}/{path.lstrip('/')}") as resp:
            if resp.status != 200:
                raise ApiError(resp.status, "GET", path, await resp.text())
            return await resp.text()

    async def watch(
        self,
        path: str,
        query: dict[str, str],
        resource_version: str,
        handle: Callable[[str, JSONDict, float], None],
    ) -> None:
        """Feed every event to `handle` with its receipt time, until cancelled."""
        rv = resource_version
        for _reconnect in range(50):
            q = {
                **query,
                "watch": "1",
                "allowWatchBookmarks": "true",
                "resourceVersion": rv,
                "timeoutSeconds": "290",
            }
            try:
                async with self.session.get(
                    f"{self.creds.server}/{path.lstrip('/')}",
                    params=q,
                    timeout=aiohttp.ClientTimeout(total=None, sock_read=320),
                ) as resp:
                    if resp.status != 200:
                        raise ApiError(resp.status, "WATCH", path, await resp.text())
                    async for raw in resp.content:
                        received = time.monotonic()
                        if not raw.strip():
                            continue
                        event = json.loads(raw)
                        obj = event.get("object") or {}
                        if event.get("type") == "ERROR":
                            rv = await self._relist(path, query, handle)
                            break
                        rv = obj.get("metadata", {}).get("resourceVersion", rv)
                        if event.get("type") != "BOOKMARK":
                            handle(str(event.get("type")), obj, received)
            except (aiohttp.ClientError, TimeoutError):
                await asyncio.sleep(0.5)
        raise BenchError(f"the watch on {path} broke 50 times")

    async def _relist(
        self, path: str, query: dict[str, str], handle: Callable[[str, JSONDict, float], None]
    ) -> str:
        listed = await self.request("GET", path, query=query) or {}
        now = time.monotonic()
        for obj in listed.get("items") or []:
            handle("MODIFIED", obj, now)
        return str(listed.get("metadata", {}).get("resourceVersion", "0"))


def tsvc_path(namespace: str, name: str | None = None, sub: str = "") -> str:
    base = f"apis/{GROUP_VERSION}/namespaces/{namespace}/{PLURAL}"
    return base + (f"/{name}" if name else "") + (f"/{sub}" if sub else "")


def child_path(manifest: JSONDict) -> str:
    prefix, plural = CHILD_PATHS[manifest["kind"]]
    meta = manifest["metadata"]
    return f"{prefix}/namespaces/{meta['namespace']}/{plural}/{meta['name']}"


async def apply(api: Api, manifest: JSONDict) -> None:
    await api.request(
        "PATCH",
        child_path(manifest),
        body=manifest,
        query={"fieldManager": FIELD_MANAGER, "force": "true"},
        content_type="application/apply-patch+yaml",
    )


async def gather_bounded(coros: list[Awaitable[Any]]) -> list[Any]:
    """All of them; the Api's semaphore bounds what is in flight."""
    return list(await asyncio.gather(*coros))


# ---------------------------------------------------------------- metrics


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
FAMILY = "__family__"  # marks a metric family that is exported, with or without samples


def parse_metrics(text: str, prefixes: tuple[str, ...]) -> Samples:
    """Samples of the metrics whose names start with one of `prefixes` (other lines skipped
    before parsing: the API server's /metrics is megabytes)."""

    def wanted(line: str) -> bool:
        if line.startswith(("# HELP ", "# TYPE ")):
            return line[7:].startswith(prefixes)
        return line.startswith(prefixes)

    text = "\n".join(line for line in text.splitlines() if wanted(line)) + "\n"
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        # A labelled counter that was never incremented has no samples, but it is exported.
        out[(FAMILY, frozenset({("name", family.name)}))] = 0.0
        for s in family.samples:  # a counter family is named without its samples' _total
            if s.name.startswith(prefixes):
                out[(s.name, frozenset(s.labels.items()))] = float(s.value)
    return out


def total(samples: Samples | None, name: str, **match: str | Callable[[str], bool]) -> float | None:
    """Sum of a metric's samples whose labels match; None when the metric does not exist."""
    if samples is None:
        return None
    family = name.removesuffix("_total")
    found = (FAMILY, frozenset({("name", family)})) in samples
    acc = 0.0
    for (sname, labels), value in samples.items():
        if sname != name:
            continue
        found = True
        lab = dict(labels)
        ok = True
        for k, want in match.items():
            have = lab.get(k, "")
            ok = ok and (want(have) if callable(want) else have == want)
        if ok:
            acc += value
    return acc if found else None


def grew(
    before: Samples | None, after: Samples | None, name: str, **match: str | Callable[[str], bool]
) -> float | None:
    """How much a counter grew between two scrapes; None when the operator does not export it.

    A labelled counter has no samples before its first increment, so absent before is 0."""
    now = total(after, name, **match)
    return None if now is None else now - (total(before, name, **match) or 0.0)


def breakdown(before: Samples | None, after: Samples | None, name: str) -> dict[str, float]:
    """verb/kind -> count, for the operator's request counter."""
    if after is None:
        return {}
    out: dict[str, float] = {}
    for (sname, labels), value in after.items():
        if sname != name:
            continue
        lab = dict(labels)
        prev = (before or {}).get((sname, labels), 0.0)
        if value - prev:
            label = f"{lab.get('verb', '?')} {lab.get('kind', '?')}"
            out[label] = out.get(label, 0.0) + value - prev
    return dict(sorted(out.items()))


API_REQUESTS = "tornado_operator_api_requests_total"
RECONCILES = "tornado_operator_reconciles_total"
APPLIES = "tornado_operator_applies_total"


def op_writes(before: Samples | None, after: Samples | None) -> float | None:
    def is_write(verb: str) -> bool:
        # The operator's dry runs (is a namespace terminating?) write nothing.
        return verb.lower() not in READ_VERBS and not verb.endswith("-dryrun")

    return grew(before, after, API_REQUESTS, verb=is_write)


def api_writes(before: Samples, after: Samples, code: str | None = None) -> float:
    """The API server's count of patches (server-side applies and merge patches) on
    TornadoServices and the child kinds; with `code`, only those answered with it."""

    def ours(resource: str) -> bool:
        return resource in API_RESOURCES

    def patch(verb: str) -> bool:
        return verb in ("PATCH", "APPLY")  # APPLY: the server-side apply flavour of PATCH

    match: dict[str, str | Callable[[str], bool]] = {"verb": patch, "resource": ours}
    if code:
        match["code"] = code
    a = total(after, "apiserver_request_total", **match) or 0.0
    b = total(before, "apiserver_request_total", **match) or 0.0
    return a - b


def api_breakdown(before: Samples, after: Samples) -> dict[str, float]:
    """'VERB resource[/subresource] code' -> count, for patches on our resources."""
    out: dict[str, float] = {}
    for (sname, labels), value in after.items():
        lab = dict(labels)
        if sname != "apiserver_request_total" or lab.get("resource") not in API_RESOURCES:
            continue
        if lab.get("verb") not in ("PATCH", "APPLY"):
            continue
        n = value - before.get((sname, labels), 0.0)
        if n:
            sub = f"/{lab['subresource']}" if lab.get("subresource") else ""
            out[f"{lab['verb']} {lab['resource']}{sub} {lab.get('code', '')}"] = n
    return dict(sorted(out.items()))


async def apiserver_metrics(api: Api) -> Samples:
    return parse_metrics(await api.text("/metrics"), ("apiserver_request_total",))


# ---------------------------------------------------------------- the operator process


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Operator:
    """`tornado-operator run --standalone` as a separate host process."""

    def __init__(
        self,
        kubeconfig: Path,
        namespaces: list[str] | None,
        logdir: Path,
        profile_memory: Path | None = None,
    ) -> None:
        self.kubeconfig = kubeconfig
        self.profile_memory = profile_memory
        self.namespaces = namespaces
        self.logdir = logdir
        self.proc: subprocess.Popen[bytes] | None = None
        self.metrics_port = free_port()
        self.health_port = free_port()
        self.started = 0.0
        self.tag = ""
        self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        self.has_metrics = True
        exe = Path(sys.executable).parent / "tornado-operator"
        self.exe = str(exe) if exe.exists() else "tornado-operator"

    def start(self, tag: str) -> None:
        self.tag = tag
        argv = [self.exe, "run", "--standalone"]
        if self.profile_memory is not None:
            # Every allocation recorded; `memray summary|flamegraph FILE` shows the peak's owners.
            self.profile_memory.mkdir(parents=True, exist_ok=True)
            out = self.profile_memory / f"operator-{tag}-{time.strftime('%H%M%S')}.memray"
            argv = [sys.executable, "-m", "memray", "run", "-q", "-o", str(out)]
            argv += ["-m", "tornado_operator", "run", "--standalone"]
        argv += ["--metrics-port", str(self.metrics_port), "--health-port", str(self.health_port)]
        for ns in self.namespaces or []:
            argv += ["--namespace", ns]
        logf = open(self.logdir / f"operator-{tag}.log", "wb")  # noqa: SIM115 (owned by the child)
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=logf,
            stderr=subprocess.STDOUT,
            env={**os.environ, "KUBECONFIG": str(self.kubeconfig)},
            start_new_session=True,
        )
        logf.close()
        self.started = time.monotonic()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def wait_ready(self, limit_s: float = 60) -> None:
        deadline = time.monotonic() + limit_s
        last = ""
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise BenchError(f"the operator exited ({self.proc.returncode}); see {self.logdir}")
            try:
                async with self.http.get(f"http://127.0.0.1:{self.health_port}/healthz") as r:
                    healthy = r.status == 200
                if healthy:
                    await self.metrics()  # one verified request before any polling of /metrics
                    return
            except (aiohttp.ClientError, TimeoutError) as exc:
                last = str(exc)
            await asyncio.sleep(0.25)
        raise BenchError(
            f"the operator was not healthy in {limit_s:.0f}s ({last}); see {self.logdir}"
        )

    async def metrics(self) -> Samples:
        async with self.http.get(f"http://127.0.0.1:{self.metrics_port}/metrics") as r:
            if r.status != 200:
                raise BenchError(f"operator /metrics answered {r.status}")
            return parse_metrics(await r.text(), ("tornado_operator_",))

    def check_alive(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise BenchError(f"the operator exited ({self.proc.returncode}). {self.log_tail()}")

    def log_tail(self, lines: int = 5) -> str:
        """The operator's last log lines that are errors, else its last lines."""
        path = self.logdir / f"operator-{self.tag}.log"
        try:
            text = path.read_text(errors="replace").splitlines()
        except OSError:
            return f"(no log at {path})"
        errors = [ln for ln in text if '"severity": "error"' in ln or "Traceback" in ln]
        picked = (errors or text)[-lines:]
        return f"Operator log {path}:\n" + "\n".join(ln[:400] for ln in picked)

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def peak_rss_mib(self) -> float:
        return self._status_mib("VmHWM:")

    def rss_mib(self) -> float:
        return self._status_mib("VmRSS:")

    def _status_mib(self, field_name: str) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(field_name):
                return int(line.split()[1]) / 1024
        return math.nan

    def stop(self, grace: float = 30) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    async def close(self) -> None:
        self.stop()
        await self.http.close()

    async def settle(
        self, quiet: float, limit_s: float, at_least: float = 0
    ) -> tuple[float, Samples | None]:
        """Wait until the reconcile counter has reached `at_least` and then not moved for
        `quiet` s; (last change, metrics).

        `at_least` matters after a restart: kopf runs no resume handler before every index has
        its initial listing, so a counter that has not moved yet says nothing. A resumed
        operator has caught up once each service had its resume reconcile."""
        deadline = time.monotonic() + limit_s
        last_value: float | None = None
        last_change = time.monotonic()
        snap: Samples | None = None
        while time.monotonic() < deadline:
            snap = await self.metrics()
            value = total(snap, RECONCILES)
            if value is None:
                value = total(snap, APPLIES) or 0.0
            now = time.monotonic()
            if value != last_value:
                last_value, last_change = value, now
            elif now - last_change >= quiet and value >= at_least:
                return last_change, snap
            await asyncio.sleep(1)
        raise BenchError(
            f"the operator did not settle in {limit_s:.0f}s "
            f"(reconciles {last_value}, waiting for {at_least:.0f} and {quiet:g}s of quiet)"
        )


# ---------------------------------------------------------------- convergence, from a watch


def converged(obj: JSONDict) -> bool:
    meta, status = obj.get("metadata") or {}, obj.get("status") or {}
    gen = meta.get("generation")
    if gen is None or status.get("observedGeneration") != gen:
        return False
    for c in status.get("conditions") or []:
        if c.get("type") == "Ready":
            return bool(c.get("status") == "True" and c.get("observedGeneration", gen) == gen)
    return False


@dataclass
class Tracker:
    expected: set[Key]
    added: dict[Key, float] = field(default_factory=dict)
    done: dict[Key, float] = field(default_factory=dict)
    events: int = 0
    complete: asyncio.Event = field(default_factory=asyncio.Event)

    def handle(self, type_: str, obj: JSONDict, received: float) -> None:
        meta = obj.get("metadata") or {}
        key = (str(meta.get("namespace")), str(meta.get("name")))
        if key not in self.expected:
            return
        self.events += 1
        if type_ == "ADDED":
            self.added.setdefault(key, received)
        if type_ != "DELETED" and key not in self.done and converged(obj):
            self.done[key] = received
            if len(self.done) == len(self.expected):
                self.complete.set()


async def wait_converged(op: Operator, tracker: Tracker, limit_s: float, stall_s: float) -> None:
    """Until every service converged; fail early when nothing moves for `stall_s` seconds."""
    n = len(tracker.expected)
    start = time.monotonic()
    deadline = start + limit_s
    last_seen: tuple[Any, ...] = ()
    last_progress = next_log = start
    while not tracker.complete.is_set():
        now = time.monotonic()
        where = f"{len(tracker.done)}/{n} converged after {now - start:.0f}s"
        op.check_alive()
        if now > deadline:
            raise BenchError(f"{where} (limit {limit_s:.0f}s). {op.log_tail()}")
        snap = await op.metrics()
        seen = (len(tracker.done), tracker.events, total(snap, RECONCILES), total(snap, APPLIES))
        if seen != last_seen:
            last_seen, last_progress = seen, now
        elif now - last_progress > stall_s:
            raise BenchError(f"no progress for {stall_s:.0f}s: {where}. {op.log_tail()}")
        if now >= next_log:
            log(f"operator: {where}")
            next_log = now + 30
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(tracker.complete.wait(), 2.0)


def quantile(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


# ---------------------------------------------------------------- namespaces and cluster state


def layout_namespaces(prefix: str, layout: str) -> list[str]:
    return [f"{prefix}-{k}" for k in range(10 if layout == "ten" else 1)]


def services(namespaces: list[str], n: int) -> list[Key]:
    return [(namespaces[i % len(namespaces)], f"svc-{i:04d}") for i in range(n)]


async def create_namespaces(api: Api, names: list[str], run_id: str) -> None:
    for ns in names:
        body = {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": ns, "labels": {BENCH_LABEL: run_id}},
        }
        await api.request("POST", "api/v1/namespaces", body=body)


async def delete_namespaces(api: Api, names: list[str], limit_s: float) -> float:
    """Delete and wait until they are gone; seconds it took."""
    t0 = time.monotonic()
    for ns in names:
        await api.request("DELETE", f"api/v1/namespaces/{ns}", missing_ok=True)
    deadline = t0 + limit_s
    left = list(names)
    while left:
        if time.monotonic() > deadline:
            raise BenchError(f"namespaces {', '.join(left)} not gone after {limit_s:.0f}s")
        left = [
            ns
            for ns in left
            if await api.request("GET", f"api/v1/namespaces/{ns}", missing_ok=True) is not None
        ]
        if left:
            await asyncio.sleep(0.5)
    return time.monotonic() - t0


async def leftover_namespaces(api: Api) -> list[str]:
    listed = await api.request("GET", "api/v1/namespaces", query={"labelSelector": BENCH_LABEL})
    return [str(ns["metadata"]["name"]) for ns in (listed or {}).get("items") or []]


async def missing_children(api: Api, keys: list[Key], kinds: list[str]) -> int:
    """How many expected children do not exist (one list per namespace and kind)."""
    want: dict[str, set[str]] = {}
    for ns, name in keys:
        want.setdefault(ns, set()).add(name)
    missing = 0
    for ns, names in want.items():
        for kind in kinds:
            prefix, plural = CHILD_PATHS[kind]
            listed = await api.request("GET", f"{prefix}/namespaces/{ns}/{plural}") or {}
            have = {str(o["metadata"]["name"]) for o in listed.get("items") or []}
            missing += len(names - have)
    return missing


async def wait_deployments_available(
    api: Api, namespaces: list[str], n: int, limit_s: float
) -> None:
    deadline = time.monotonic() + limit_s
    while True:
        ready = 0
        for ns in namespaces:
            listed = await api.request("GET", f"apis/apps/v1/namespaces/{ns}/deployments") or {}
            ready += sum(
                1
                for d in listed.get("items") or []
                if (d.get("status") or {}).get("availableReplicas", 0) >= REPLICAS
            )
        if ready >= n:
            return
        if time.monotonic() > deadline:
            raise BenchError(f"only {ready}/{n} Deployments available after {limit_s:.0f}s")
        await asyncio.sleep(1)


# ---------------------------------------------------------------- the phases


@dataclass
class Result:
    n: int
    layout: str
    scope: str
    renderer: str = ""
    child_kinds: list[str] = field(default_factory=list)
    baseline_s: float | None = None
    baseline_requests: int | None = None
    baseline_ready_s: float | None = None
    baseline_retries: int | None = None
    kubectl_s: float | None = None
    operator_s: float | None = None
    create_s: float | None = None
    latency_p50_s: float | None = None
    latency_p99_s: float | None = None
    latency_max_s: float | None = None
    writes_per_service: float | None = None
    api_writes_per_service: float | None = None
    reconciles_per_service: float | None = None
    requests_by_verb_kind: dict[str, float] = field(default_factory=dict)
    api_writes_by_verb_resource: dict[str, float] = field(default_factory=dict)
    cpu_s: float | None = None
    peak_rss_mib: float | None = None
    resume_s: float | None = None
    resume_writes: float | None = None
    resume_api_writes: float | None = None
    resume_reconciles: float | None = None
    resume_requests_by_verb_kind: dict[str, float] = field(default_factory=dict)
    resume_api_writes_by_verb_resource: dict[str, float] = field(default_factory=dict)
    resume_peak_rss_mib: float | None = None
    # Resident memory now (VmRSS), with everything converged and watched: after the idle phase.
    idle_rss_mib: float | None = None
    idle_cpu_percent: float | None = None
    deletion_s: float | None = None
    deletion_writes: float | None = None
    deletion_child_applies_changed: float | None = None
    deletion_api_creates: float | None = None
    deletion_recreated: float | None = None
    deletion_api_writes: float | None = None
    deletion_temporary_failures: float | None = None
    deletion_api_writes_by_verb_resource: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


async def create_services(api: Api, keys: list[Key], run_id: str) -> dict[Key, JSONDict]:
    async def one(key: Key) -> tuple[Key, JSONDict]:
        ns, name = key
        body = tornadoservice(name, ns, run_id)
        created = await api.request("POST", tsvc_path(ns), body=body)
        assert created is not None
        return key, created

    return dict(await gather_bounded([one(k) for k in keys]))


async def phase_baseline(
    api: Api, renderer: Renderer, res: Result, run_id: str, limit_s: float
) -> None:
    namespaces = layout_namespaces(f"opbench-base-{res.layout}", res.layout)
    keys = services(namespaces, res.n)
    await create_namespaces(api, namespaces, run_id)
    requests = 0

    async def one(key: Key) -> None:
        nonlocal requests
        ns, name = key
        created = await api.request("POST", tsvc_path(ns), body=tornadoservice(name, ns, run_id))
        assert created is not None
        spec = created.get("spec") or {}
        for manifest in renderer.render(name, ns, created["metadata"]["uid"], spec):
            await apply(api, manifest)
            requests += 1
        await api.request(
            "PATCH",
            tsvc_path(ns, name, "status"),
            body=status_like_the_operator(created, renderer.default_image),
            query={"fieldManager": FIELD_MANAGER},
            content_type="application/merge-patch+json",
        )
        requests += 2

    retries0 = api.retries
    t0 = time.monotonic()
    await gather_bounded([one(k) for k in keys])
    res.baseline_s = time.monotonic() - t0
    res.baseline_requests = requests
    res.baseline_retries = api.retries - retries0
    log(f"baseline: {requests} writes in {res.baseline_s:.2f}s")
    await wait_deployments_available(api, namespaces, res.n, limit_s)
    res.baseline_ready_s = time.monotonic() - t0
    log(f"baseline: every Deployment available after {res.baseline_ready_s:.2f}s")
    gone = await delete_namespaces(api, namespaces, limit_s)
    log(f"baseline: namespaces deleted in {gone:.1f}s")


async def phase_kubectl(
    api: Api, renderer: Renderer, res: Result, run_id: str, limit_s: float, workdir: Path
) -> None:
    namespaces = layout_namespaces(f"opbench-kctl-{res.layout}", res.layout)
    keys = services(namespaces, res.n)
    await create_namespaces(api, namespaces, run_id)
    created = await create_services(api, keys, run_id)
    items: list[JSONDict] = []
    for (ns, name), obj in created.items():
        items += renderer.render(name, ns, obj["metadata"]["uid"], obj.get("spec") or {})
    manifest = workdir / f"kubectl-{res.n}-{res.layout}.json"
    manifest.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
    argv = [binary("kubectl"), "--kubeconfig", str(api.creds.kubeconfig), "apply", "--server-side"]
    argv += ["--force-conflicts", f"--field-manager={FIELD_MANAGER}", "-f", str(manifest)]
    t0 = time.monotonic()
    r = await asyncio.to_thread(
        subprocess.run, argv, capture_output=True, text=True, timeout=limit_s, check=False
    )
    res.kubectl_s = time.monotonic() - t0
    if r.returncode != 0:
        raise BenchError(f"kubectl apply --server-side failed: {r.stderr[-500:]}")
    log(f"kubectl: {len(items)} children applied in {res.kubectl_s:.2f}s")
    gone = await delete_namespaces(api, namespaces, limit_s)
    log(f"kubectl: namespaces deleted in {gone:.1f}s")


async def phase_operator(
    api: Api,
    renderer: Renderer,
    res: Result,
    run_id: str,
    args: argparse.Namespace,
    workdir: Path,
) -> None:
    namespaces = layout_namespaces(f"opbench-op-{res.layout}", res.layout)
    keys = services(namespaces, res.n)
    await create_namespaces(api, namespaces, run_id)
    scope_ns = namespaces if args.scope == "namespaced" else None
    op = Operator(api.creds.kubeconfig, scope_ns, workdir, args.profile_memory)
    tracker = Tracker(set(keys))
    listed = await api.request(
        "GET", f"apis/{GROUP_VERSION}/{PLURAL}", query={"labelSelector": f"{BENCH_LABEL}={run_id}"}
    )
    rv = str((listed or {}).get("metadata", {}).get("resourceVersion", "0"))
    watch = asyncio.create_task(
        api.watch(
            f"apis/{GROUP_VERSION}/{PLURAL}",
            {"labelSelector": f"{BENCH_LABEL}={run_id}"},
            rv,
            tracker.handle,
        )
    )
    timeout = args.timeout
    try:
        op.start("converge")
        await op.wait_ready()
        await asyncio.sleep(2)  # let kopf open its watches before the clock starts
        m0 = await op.metrics()
        a0 = await apiserver_metrics(api)
        cpu0 = op.cpu_seconds()

        # -- convergence
        t0 = time.monotonic()
        posted = await create_services(api, keys, run_id)
        res.create_s = time.monotonic() - t0
        log(f"operator: {len(posted)} TornadoServices created in {res.create_s:.2f}s")
        await wait_converged(op, tracker, timeout, args.stall)
        end = max(tracker.done.values())
        deadline = time.monotonic() + 120
        while (missing := await missing_children(api, keys, res.child_kinds)) > 0:
            if time.monotonic() > deadline:
                raise BenchError(f"{missing} children still missing 120s after Ready")
            await asyncio.sleep(0.5)
            end = time.monotonic()
        res.operator_s = end - t0
        lat = [tracker.done[k] - tracker.added.get(k, t0) for k in keys]
        res.latency_p50_s, res.latency_p99_s = quantile(lat, 0.5), quantile(lat, 0.99)
        res.latency_max_s = max(lat)
        log(
            f"operator: converged in {res.operator_s:.2f}s "
            f"(p50 {res.latency_p50_s:.2f}s, p99 {res.latency_p99_s:.2f}s)"
        )
        _, m1 = await op.settle(args.quiet, timeout)
        a1 = await apiserver_metrics(api)
        cpu1 = op.cpu_seconds()
        res.cpu_s = cpu1 - cpu0
        res.peak_rss_mib = op.peak_rss_mib()
        w = op_writes(m0, m1)
        res.writes_per_service = None if w is None else w / res.n
        res.api_writes_per_service = api_writes(a0, a1) / res.n
        rec = grew(m0, m1, RECONCILES)
        res.reconciles_per_service = None if rec is None else rec / res.n
        res.requests_by_verb_kind = breakdown(m0, m1, API_REQUESTS)
        if total(m1, API_REQUESTS) is None:
            res.notes.append(f"the operator exports no {API_REQUESTS}: its writes are n/a")
        res.api_writes_by_verb_resource = api_breakdown(a0, a1)

        # -- resume
        op.stop()
        a2 = await apiserver_metrics(api)
        op.start("resume")
        await op.wait_ready()
        last, m3 = await op.settle(args.quiet, timeout, at_least=res.n)
        a3 = await apiserver_metrics(api)
        res.resume_s = last - op.started
        res.resume_writes = op_writes(None, m3)
        res.resume_api_writes = api_writes(a2, a3)
        res.resume_reconciles = total(m3, RECONCILES)
        res.resume_requests_by_verb_kind = breakdown({}, m3, API_REQUESTS)
        res.resume_api_writes_by_verb_resource = api_breakdown(a2, a3)
        log(f"resume: caught up in {res.resume_s:.2f}s, {res.resume_api_writes:.0f} API writes")

        # -- idle
        c0, i0 = op.cpu_seconds(), time.monotonic()
        await asyncio.sleep(args.idle_seconds)
        res.idle_cpu_percent = 100 * (op.cpu_seconds() - c0) / (time.monotonic() - i0)
        res.resume_peak_rss_mib = op.peak_rss_mib()
        res.idle_rss_mib = op.rss_mib()
        log(f"idle: {res.idle_cpu_percent:.2f}% of one core over {args.idle_seconds:.0f}s")

        # -- deletion
        m4 = await op.metrics()
        a4 = await apiserver_metrics(api)
        res.deletion_s = await delete_namespaces(api, namespaces, args.timeout)
        await asyncio.sleep(2)  # anything the operator still had in flight
        m5 = await op.metrics()
        a5 = await apiserver_metrics(api)
        res.deletion_writes = op_writes(m4, m5)
        res.deletion_child_applies_changed = grew(m4, m5, APPLIES, changed="true")
        res.deletion_api_writes = api_writes(a4, a5)
        res.deletion_api_creates = api_writes(a4, a5, code="201")

        def creating(verb: str) -> bool:
            return verb in ("apply", "create")

        def child(kind: str) -> bool:
            return kind in CHILD_PATHS

        res.deletion_recreated = grew(m4, m5, API_REQUESTS, verb=creating, kind=child, code="201")
        if res.deletion_recreated is None:
            res.deletion_recreated = res.deletion_api_creates
        res.deletion_api_writes_by_verb_resource = api_breakdown(a4, a5)
        res.deletion_temporary_failures = grew(m4, m5, RECONCILES, result="temporary")
        log(
            f"deletion: gone in {res.deletion_s:.1f}s, {res.deletion_recreated:.0f} children "
            f"created after it began, {res.deletion_temporary_failures} temporary failures"
        )
    finally:
        watch.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await watch
        if res.operator_s is None and op.proc is not None and op.proc.poll() is None:
            with contextlib.suppress(OSError):
                res.peak_rss_mib = op.peak_rss_mib()  # how far it got is worth knowing
                res.notes.append(
                    f"did not converge: {len(tracker.done)}/{res.n} services; peak RSS "
                    f"{res.peak_rss_mib:.0f} MiB when it stopped"
                )
        await op.close()


# ---------------------------------------------------------------- setup and teardown


def kubectl(kubeconfig: Path, *args: str, timeout: float = 120) -> str:
    r = subprocess.run(
        [binary("kubectl"), "--kubeconfig", str(kubeconfig), *args],
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip
    if r.returncode != 0:
        raise BenchError(f"kubectl {' '.join(args)}: {r.stderr.strip()[-300:]}")
    return r.stdout


def check_cluster(args: argparse.Namespace) -> Path:
    p = paths()
    if args.fake_nodes:
        log("setting up fake nodes: python -m hack.cluster up --provider local --fake-nodes 10")
        up = [sys.executable, "-m", "hack.cluster", "up", "--provider", "local"]
        r = subprocess.run(
            [*up, "--fake-nodes", "10"],
            cwd=REPO, capture_output=True, text=True, timeout=900, check=False,
        )  # fmt: skip
        if r.returncode != 0:
            raise BenchError(
                f"`python -m hack.cluster up --fake-nodes 10` failed: {r.stderr[-800:]}"
            )
    if not local.is_up(p):
        raise BenchError(
            "the local cluster is not up: run `python -m hack.cluster up --fake-nodes 10`"
        )
    if fakenodes.pid(p) is None:
        raise BenchError("kwok is not running: run `python -m hack.cluster up --fake-nodes 10`")
    ready = sum(fakenodes.fake_nodes(p).values())
    need = math.ceil(max(args.n) * REPLICAS / (fakenodes.PODS_PER_NODE * 0.8))
    if ready < need:
        raise BenchError(
            f"{ready} fake nodes Ready, {max(args.n)} services x {REPLICAS} pods need {need}: "
            f"run `python -m hack.cluster up --fake-nodes {max(need, 10)}`"
        )
    return p.kubeconfig


def crd_installed(kubeconfig: Path) -> None:
    r = subprocess.run(
        [binary("kubectl"), "--kubeconfig", str(kubeconfig), "get", "crd", CRD_NAME],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    if r.returncode != 0:
        crds = REPO / "charts" / "tornado-operator" / "files" / "crds"
        kubectl(kubeconfig, "apply", "--server-side", "-f", str(crds))
        kubectl(
            kubeconfig, "wait", "--for=condition=Established", f"crd/{PLURAL}.tornado-operator.dev"
        )
        log("installed the TornadoService CRD from the chart")


# ---------------------------------------------------------------- the report


def fmt(value: float | None, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def ratio_to(baseline: float | None, r: Result) -> float | None:
    return None if r.operator_s is None or not baseline else r.operator_s / baseline


def ready_ratio(r: Result) -> float | None:
    """The operator's convergence over the baseline's: both until every service is Ready (the
    operator's includes it, so the baseline's writes alone would compare unlike with like)."""
    return ratio_to(r.baseline_ready_s, r)


def table(results: list[Result]) -> str:
    head = [
        "N", "layout", "baseline s", "baseline→Ready s", "kubectl s", "operator s",
        "ratio (→Ready / writes)",
        "p50 s", "p99 s", "writes/svc (op / api)", "reconciles/svc", "CPU s",
        "RSS MiB (peak / idle)",
        "resume s (writes op / api)", "idle CPU %",
        "delete s (writes op / api, re-created, temp fails)",
    ]  # fmt: skip
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        ratio = f"{fmt(ready_ratio(r))} / {fmt(ratio_to(r.baseline_s, r))}"
        rss = max(
            (x for x in (r.peak_rss_mib, r.resume_peak_rss_mib) if x is not None), default=None
        )
        cells = [
            str(r.n), r.layout, fmt(r.baseline_s), fmt(r.baseline_ready_s), fmt(r.kubectl_s),
            fmt(r.operator_s), ratio, fmt(r.latency_p50_s), fmt(r.latency_p99_s),
            f"{fmt(r.writes_per_service)} / {fmt(r.api_writes_per_service)}",
            fmt(r.reconciles_per_service), fmt(r.cpu_s),
            f"{fmt(rss, 0)} / {fmt(r.idle_rss_mib, 0)}",
            f"{fmt(r.resume_s)} ({fmt(r.resume_writes, 0)} / {fmt(r.resume_api_writes, 0)})",
            fmt(r.idle_cpu_percent),
            f"{fmt(r.deletion_s, 1)} ({fmt(r.deletion_writes, 0)} / "
            f"{fmt(r.deletion_api_writes, 0)}, {fmt(r.deletion_recreated, 0)}, "
            f"{fmt(r.deletion_temporary_failures, 0)})",
        ]  # fmt: skip
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def write_budget(r: Result) -> int:
    """The issue's write budget for a create, as the operator's own metric counts it: one per
    child and one status write (kopf's own bookkeeping patches are not in that metric)."""
    return len(r.child_kinds or ("Deployment", "Service", "PodDisruptionBudget")) + 1


def targets(results: list[Result]) -> list[str]:
    """The issue's targets, checked on the N >= 1000 runs (and shown for smaller ones)."""
    out = []
    for r in results:
        checks: list[tuple[str, bool | None]] = [
            (
                "convergence <= 1.5x baseline (both until Ready)",
                None if ready_ratio(r) is None else (ready_ratio(r) or 0) <= 1.5,
            ),
            (
                f"writes/service <= {write_budget(r)}",
                None if r.writes_per_service is None else r.writes_per_service <= write_budget(r),
            ),
            ("0 writes on resume", None if r.resume_writes is None else r.resume_writes == 0),
            (
                "p99 <= baseline total (until Ready)",
                None
                if r.latency_p99_s is None or r.baseline_ready_s is None
                else r.latency_p99_s <= r.baseline_ready_s,
            ),
            (
                "peak RSS <= 150 MiB",
                None
                if r.peak_rss_mib is None
                else max(r.peak_rss_mib, r.resume_peak_rss_mib or 0) <= 150,
            ),
            ("idle RSS <= 150 MiB", None if r.idle_rss_mib is None else r.idle_rss_mib <= 150),
            ("idle CPU <= 1%", None if r.idle_cpu_percent is None else r.idle_cpu_percent <= 1),
            (
                "deletion: 0 children re-created",
                None if r.deletion_recreated is None else r.deletion_recreated == 0,
            ),
            (
                "deletion: 0 temporary failures",
                None
                if r.deletion_temporary_failures is None
                else r.deletion_temporary_failures == 0,
            ),
        ]
        verdicts = ", ".join(
            f"{name}: {'n/a' if ok is None else ('PASS' if ok else 'FAIL')}" for name, ok in checks
        )
        out.append(f"N={r.n} {r.layout}: {verdicts}")
    return out


# ---------------------------------------------------------------- main


async def run(args: argparse.Namespace, kubeconfig: Path, workdir: Path) -> list[Result]:
    renderer = load_renderer()
    learn_child_kinds()
    with tempfile.TemporaryDirectory(prefix="operator-scale-creds-") as secrets:
        creds = load_credentials(kubeconfig, Path(secrets))  # read at once; files removed
    api = Api(creds, args.concurrency)
    run_id = time.strftime("%Y%m%d%H%M%S")
    results: list[Result] = []
    try:
        await api.request("GET", "version")  # one verified request before any loop
        stale = await leftover_namespaces(api)
        if stale:
            log(f"deleting {len(stale)} namespaces left by an earlier run")
            await delete_namespaces(api, stale, args.timeout)
        sample = renderer.render("probe", "probe", "00000000-0000-0000-0000-000000000000",
                                 tornadoservice("probe", "probe", run_id)["spec"])  # fmt: skip
        kinds = [m["kind"] for m in sample]
        unknown = [k for k in kinds if k not in CHILD_PATHS]
        if unknown:
            raise BenchError(f"no API path known for child kind(s) {', '.join(unknown)}")
        log(f"rendering with {renderer.where}: {', '.join(kinds)} per service")
        for n in args.n:
            for layout in args.layouts:
                res = Result(n=n, layout=layout, scope=args.scope, renderer=renderer.where)
                res.child_kinds = kinds
                results.append(res)
                log(f"=== N={n}, layout={layout}")
                try:
                    if not args.skip_baseline:
                        await phase_baseline(api, renderer, res, run_id, args.timeout)
                        await phase_kubectl(api, renderer, res, run_id, args.timeout, workdir)
                    await phase_operator(api, renderer, res, run_id, args, workdir)
                except (BenchError, ApiError) as exc:
                    res.notes.append(f"failed: {exc}")
                    log(f"N={n} {layout} failed: {exc}")
                except Exception as exc:  # a bug here or in the operator's code: record, go on
                    res.notes.append(f"failed: {type(exc).__name__}: {exc}")
                    log(f"N={n} {layout} failed:\n{traceback.format_exc()}")
                finally:
                    left = await leftover_namespaces(api)
                    if left:
                        await delete_namespaces(api, left, args.timeout)
    finally:
        with contextlib.suppress(Exception):
            left = await leftover_namespaces(api)
            for ns in left:
                await api.request("DELETE", f"api/v1/namespaces/{ns}", missing_ok=True)
        await api.close()
    return results


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--n", type=int, action="append", help="services (repeatable; default 100)")
    ap.add_argument("--layouts", default="one,ten", help="comma list of one, ten (default both)")
    ap.add_argument(
        "--skip-baseline", action="store_true", help="skip the baseline and kubectl runs"
    )
    ap.add_argument(
        "--fake-nodes", action="store_true", help="run `hack.cluster up --fake-nodes 10` first"
    )
    ap.add_argument("--concurrency", type=int, default=64, help="requests in flight (default 64)")
    ap.add_argument("--idle-seconds", type=float, default=60)
    ap.add_argument("--quiet", type=float, default=5, help="seconds without a reconcile = settled")
    ap.add_argument("--timeout", type=float, default=900, help="bound of every wait, seconds")
    ap.add_argument(
        "--stall",
        type=float,
        default=330,
        help="give up when nothing moves this long, seconds (default 330: longer than the "
        "operator's longest retry backoff, 300 s)",
    )
    ap.add_argument("--scope", choices=["namespaced", "cluster"], default="namespaced")
    ap.add_argument("--out", type=Path, help="write the results as JSON here")
    ap.add_argument(
        "--profile-memory",
        type=Path,
        metavar="DIR",
        help="run the operator under memray, one capture per start in DIR (slower: the CPU "
        "and RSS numbers of such a run are not the operator's own)",
    )
    ap.add_argument(
        "--workdir", type=Path, help="operator logs and rendered manifests (default: a temp dir)"
    )
    args = ap.parse_args(argv)
    args.n = args.n or [100]
    args.layouts = [x.strip() for x in args.layouts.split(",") if x.strip()]
    bad = [x for x in args.layouts if x not in ("one", "ten")]
    if bad or any(n < 1 for n in args.n):
        ap.error(f"layouts are one and ten, N >= 1 (got {args.layouts}, {args.n})")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="operator-scale-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        kubeconfig = check_cluster(args)
        crd_installed(kubeconfig)
        with operator_lock(600), other_operators_paused(kubeconfig=kubeconfig, log=log):
            results = asyncio.run(run(args, kubeconfig, workdir))
    except (BenchError, LockTimeout) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(table(results))
    print()
    for line in targets(results):
        print(f"- {line}")
    for r in results:
        for note in r.notes:
            print(f"- N={r.n} {r.layout}: {note}")
    print(f"\noperator logs and manifests: {workdir}")
    if args.out:
        args.out.write_text(json.dumps([asdict(r) for r in results], indent=2))
        print(f"results: {args.out}")
    return 0 if all(not any(n.startswith("failed") for n in r.notes) for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
