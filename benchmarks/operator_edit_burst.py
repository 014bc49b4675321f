#!/usr/bin/env python3
"""Load on the operator itself (issue 13, item 7): a burst of TornadoService edits.

    .venv/bin/python benchmarks/operator_edit_burst.py                      # 200 edits/s for 30 s
    .venv/bin/python benchmarks/operator_edit_burst.py --rate 50 --seconds 10 --services 20

Not a test (tests/e2e/test_operator_edit_burst.py runs it small, with assertions): it prints one
table and writes every number as JSON (--out). The operator in the tree runs as a real process on
the host (`tornado-operator run --standalone --namespace NS`), so its memory and CPU come from
/proc/PID; it watches only the benchmark's namespace.

  setup      --services TornadoServices with replicas 0 (children but no pods: the load is the
             operator's, not the nodes'), converged before the burst.
  baseline   the same burst before the operator starts (skip with --no-baseline): the rate
             and PATCH latency the API server gives with nobody reacting to the edits.
  burst      --rate merge patches per second for --seconds, each setting spec.env BURST=<k> on
             service k mod --services, paced on a clock, at most --concurrency in flight (when the
             API server is slower than that, the achieved rate drops: it is reported). Each edit
             is a new generation.
  converged  seconds after the last edit until every service has observedGeneration ==
             generation and its Deployment carries the BURST value its spec holds (edits of one
             service overlap in flight, so the API server may apply them out of order).
  memory     VmRSS sampled every 0.25 s: before the burst, its peak (and VmHWM, the kernel's
             high-water mark), after convergence, and after --settle more seconds.
  cpu        the operator's CPU seconds during the burst and until converged.
  health     the process is still running, answered /healthz after the burst, and its log has no
             traceback; its reconcile counters come from its own /metrics.

The benchmark takes the lock the e2e tests and the scale benchmark take, scales helm-installed
operators to 0 meanwhile (they would reconcile the same services) and restores them; every wait
is bounded and its namespace is deleted at the end, also on failure.
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
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from hack.kubetools import (  # noqa: E402
    LockTimeout,
    binary,
    operator_lock,
    other_operators_paused,
)

JSONDict = dict[str, Any]
GROUP_VERSION = "tornado-operator.dev/v1alpha1"
CRD_FILE = REPO / "charts/tornado-operator/files/crds/tornadoservices.tornado-operator.dev.yaml"
ENV_NAME = "BURST"
RECONCILES = "tornado_operator_reconciles_total"


class BenchError(RuntimeError):
    """Something the benchmark needs is missing or did not happen in time; one sentence."""


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


@dataclass
class Config:
    services: int = 50
    rate: float = 200.0  # edits per second
    seconds: float = 30.0
    concurrency: int = 64  # edits in flight at most
    converge_limit: float = 300.0
    settle: float = 10.0  # seconds after convergence before the last memory sample
    baseline: bool = False  # first the same burst with no operator running


@dataclass
class Result:
    services: int
    rate_asked: float
    seconds_asked: float
    edits_sent: int = 0
    edits_ok: int = 0
    edit_errors: dict[str, int] = field(default_factory=dict)
    rate_achieved: float = 0.0
    burst_seconds: float = 0.0
    patch_p50_ms: float = math.nan
    patch_p99_ms: float = math.nan
    baseline_rate: float = math.nan  # the same burst with no operator running
    baseline_p50_ms: float = math.nan
    baseline_p99_ms: float = math.nan
    converged_after_s: float | None = None  # after the last edit; None: not within the limit
    not_converged: int = 0
    rss_before_mib: float = math.nan
    rss_peak_mib: float = math.nan  # the highest VmRSS sample
    hwm_mib: float = math.nan  # VmHWM: the kernel's high-water mark over the process's life
    rss_converged_mib: float = math.nan
    rss_settled_mib: float = math.nan
    cpu_burst_s: float = math.nan
    cpu_until_converged_s: float = math.nan
    reconciles: dict[str, float] = field(default_factory=dict)
    alive: bool = False
    exit_code: int | None = None
    healthy_after: bool = False
    log_problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (
            self.alive
            and self.healthy_after
            and not self.log_problems
            and self.converged_after_s is not None
        )


# ---------------------------------------------------------------- a plain async API client


class Api:
    """JSON requests to the API server with the kubeconfig's credentials (kept in memory)."""

    def __init__(self, kubeconfig: Path, concurrency: int) -> None:
        cfg = yaml.safe_load(kubeconfig.read_text())
        ctx_name = cfg.get("current-context")
        ctx = next(c["context"] for c in cfg["contexts"] if c["name"] == ctx_name)
        cluster = next(c["cluster"] for c in cfg["clusters"] if c["name"] == ctx["cluster"])
        user = next(u["user"] for u in cfg["users"] if u["name"] == ctx["user"])
        self.server = str(cluster["server"]).rstrip("/")
        self.ssl = _ssl_context(cluster, user)
        headers = {"Accept": "application/json"}
        if user.get("token"):
            headers["Authorization"] = f"Bearer {user['token']}"
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=self.ssl, limit=concurrency + 8),
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=60),
        )

    async def close(self) -> None:
        await self.session.close()

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str = "application/json",
        query: dict[str, str] | None = None,
    ) -> tuple[int, JSONDict]:
        async with self.session.request(
            method,
            f"{self.server}/{path.lstrip('/')}",
            data=None if body is None else json.dumps(body),
            headers={"Content-Type": content_type},
            params=query,
        ) as resp:
            text = await resp.text()
        try:
            data = json.loads(text) if text else {}
        except json.JSONDecodeError:
            data = {"message": text[:300]}
        return resp.status, data

    async def ok(self, method: str, path: str, body: Any = None, **kw: Any) -> JSONDict:
        status, data = await self.request(method, path, body, **kw)
        if status >= 300:
            raise BenchError(f"{method} {path}: HTTP {status}: {str(data)[:300]}")
        return data


def _ssl_context(cluster: JSONDict, user: JSONDict) -> ssl.SSLContext:
    """An SSL context from inline or file credentials; inline ones touch the disk only while
    they are loaded, in a private temporary directory."""
    with tempfile.TemporaryDirectory() as tmp:

        def material(obj: JSONDict, key: str) -> str | None:
            if obj.get(f"{key}-data"):
                path = Path(tmp) / key
                path.write_bytes(base64.b64decode(obj[f"{key}-data"]))
                path.chmod(0o600)
                return str(path)
            value = obj.get(key)
            return str(value) if value else None

        ctx = ssl.create_default_context(cafile=material(cluster, "certificate-authority"))
        cert, key = material(user, "client-certificate"), material(user, "client-key")
        if cert and key:
            ctx.load_cert_chain(cert, key)
    return ctx


def tsvc_path(namespace: str, name: str | None = None) -> str:
    base = f"apis/{GROUP_VERSION}/namespaces/{namespace}/tornadoservices"
    return f"{base}/{name}" if name else base


# ---------------------------------------------------------------- the operator process


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def proc_status(pid: int) -> dict[str, str]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        out[key] = value.strip()
    return out


def mib(value: str) -> float:
    return int(value.split()[0]) / 1024  # "123456 kB"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Operator:
    """`tornado-operator run --standalone --namespace NS` as a separate host process."""

    def __init__(self, kubeconfig: Path, namespace: str, logfile: Path) -> None:
        self.metrics_port, self.health_port = free_port(), free_port()
        self.logfile = logfile
        exe = Path(sys.executable).parent / "tornado-operator"
        argv = [str(exe) if exe.exists() else "tornado-operator", "run", "--standalone"]
        argv += ["--namespace", namespace, "--metrics-port", str(self.metrics_port)]
        argv += ["--health-port", str(self.health_port)]
        with open(logfile, "wb") as out:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "KUBECONFIG": str(kubeconfig)},
                start_new_session=True,
            )
        self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    async def get(self, port: int, path: str) -> tuple[int, str]:
        async with self.http.get(f"http://127.0.0.1:{port}{path}") as r:
            return r.status, await r.text()

    async def wait_healthy(self, limit: float = 60) -> None:
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if not self.alive():
                raise BenchError(f"the operator exited ({self.proc.returncode}): {self.tail()}")
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                if (await self.get(self.health_port, "/healthz"))[0] == 200:
                    status, _ = await self.get(self.metrics_port, "/metrics")
                    if status != 200:  # one verified request before polling it
                        raise BenchError(f"operator /metrics answered {status}")
                    return
            await asyncio.sleep(0.25)
        raise BenchError(f"the operator was not healthy in {limit:.0f}s: {self.tail()}")

    async def reconciles(self) -> dict[str, float]:
        """tornado_operator_reconciles_total by result, summed over triggers."""
        _, text = await self.get(self.metrics_port, "/metrics")
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line.startswith(RECONCILES + "{"):
                labels, value = line[len(RECONCILES) + 1 :].rsplit("} ", 1)
                result = next(
                    (p.split("=", 1)[1].strip('"') for p in labels.split(",") if "result=" in p),
                    "?",
                )
                out[result] = out.get(result, 0.0) + float(value)
        return out

    def tail(self, lines: int = 5) -> str:
        text = self.logfile.read_text(errors="replace").splitlines()
        return " | ".join(line[:300] for line in text[-lines:])

    def problems(self) -> list[str]:
        """Log lines that show a crash or a dead kopf task."""
        bad = ("Traceback", "has failed", "Root task", '"severity": "critical"')
        text = self.logfile.read_text(errors="replace").splitlines()
        return [line[:300] for line in text if any(b in line for b in bad)]

    async def close(self) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        await self.http.close()


class Sampler:
    """VmRSS of a process every `interval` seconds, until stopped."""

    def __init__(self, pid: int, interval: float = 0.25) -> None:
        self.pid, self.interval = pid, interval
        self.samples: list[float] = []
        self.task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(OSError, KeyError):
                self.samples.append(mib(proc_status(self.pid)["VmRSS"]))
            await asyncio.sleep(self.interval)

    def start(self) -> None:
        self.task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task


# ---------------------------------------------------------------- the phases


def tornadoservice(name: str) -> JSONDict:
    return {
        "apiVersion": GROUP_VERSION,
        "kind": "TornadoService",
        "metadata": {"name": name},
        "spec": {"replicas": 0, "env": [{"name": ENV_NAME, "value": "setup"}]},
    }


async def converged_count(api: Api, namespace: str, expected: dict[str, str]) -> int:
    """How many services have observedGeneration == generation and their expected BURST value
    in the Deployment (two list requests)."""
    services = (await api.ok("GET", tsvc_path(namespace)))["items"]
    deployments = (await api.ok("GET", f"apis/apps/v1/namespaces/{namespace}/deployments"))["items"]
    env_of: dict[str, Any] = {}
    for dep in deployments:
        containers = dep["spec"]["template"]["spec"]["containers"]
        env = {e["name"]: e.get("value") for e in containers[0].get("env") or []}
        env_of[dep["metadata"]["name"]] = env.get(ENV_NAME)
    done = 0
    for obj in services:
        name = obj["metadata"]["name"]
        observed = (obj.get("status") or {}).get("observedGeneration")
        if observed == obj["metadata"]["generation"] and env_of.get(name) == expected.get(name):
            done += 1
    return done


async def wait_converged(
    api: Api, op: Operator, namespace: str, expected: dict[str, str], limit: float
) -> float | None:
    start = time.monotonic()
    next_log = start + 15
    while time.monotonic() - start < limit:
        if not op.alive():
            return None
        done = await converged_count(api, namespace, expected)
        if done == len(expected):
            return time.monotonic() - start
        if time.monotonic() >= next_log:
            log(f"converged {done}/{len(expected)} after {time.monotonic() - start:.0f}s")
            next_log += 15
        await asyncio.sleep(0.5)
    return None


async def burst(
    api: Api, namespace: str, names: list[str], cfg: Config, result: Result
) -> dict[str, str]:
    """The paced edits; returns each service's last BURST value."""
    total = int(cfg.rate * cfg.seconds)
    sem = asyncio.Semaphore(cfg.concurrency)
    latencies: list[float] = []
    tasks: list[asyncio.Task[None]] = []

    async def edit(k: int, name: str) -> None:
        body = {"spec": {"env": [{"name": ENV_NAME, "value": str(k)}]}}
        t = time.monotonic()
        try:
            status, _ = await api.request(
                "PATCH", tsvc_path(namespace, name), body, "application/merge-patch+json"
            )
        except (aiohttp.ClientError, TimeoutError) as exc:
            key = type(exc).__name__
        else:
            key = "ok" if status < 300 else f"HTTP {status}"
            if status < 300:
                latencies.append(time.monotonic() - t)
                result.edits_ok += 1
        finally:
            sem.release()
        if key != "ok":
            result.edit_errors[key] = result.edit_errors.get(key, 0) + 1

    t0 = time.monotonic()
    for k in range(total):
        delay = t0 + k / cfg.rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        await sem.acquire()  # at most `concurrency` in flight: a slow API server lowers the rate
        name = names[k % len(names)]
        tasks.append(asyncio.create_task(edit(k, name)))
        result.edits_sent += 1
    await asyncio.gather(*tasks)
    result.burst_seconds = time.monotonic() - t0
    result.rate_achieved = result.edits_ok / result.burst_seconds
    if latencies:
        latencies.sort()
        result.patch_p50_ms = 1000 * latencies[len(latencies) // 2]
        result.patch_p99_ms = 1000 * latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    # The edits of one service overlap in flight, so the API server may apply them in another
    # order than they were sent, and a failed one changed nothing: each service's last edit is
    # what its spec holds now.
    last: dict[str, str] = {}
    for obj in (await api.ok("GET", tsvc_path(namespace)))["items"]:
        env = {e["name"]: e.get("value") for e in obj["spec"].get("env") or []}
        last[obj["metadata"]["name"]] = str(env.get(ENV_NAME))
    return last


async def run(cfg: Config, kubeconfig: Path, workdir: Path) -> Result:
    """One benchmark run in its own namespace, deleted at the end."""
    result = Result(services=cfg.services, rate_asked=cfg.rate, seconds_asked=cfg.seconds)
    namespace = f"bench-burst-{uuid.uuid4().hex[:6]}"
    names = [f"burst-{i}" for i in range(cfg.services)]
    api = Api(kubeconfig, cfg.concurrency)
    op: Operator | None = None
    try:
        await api.ok(
            "POST",
            "api/v1/namespaces",
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        )
        created = time.monotonic()
        await asyncio.gather(
            *(api.ok("POST", tsvc_path(namespace), tornadoservice(name)) for name in names)
        )
        log(f"created {cfg.services} services in {time.monotonic() - created:.1f}s")
        if cfg.baseline:
            # The same burst with no operator running: what the API server alone sustains.
            log(f"baseline (no operator): {cfg.rate:g} edits/s for {cfg.seconds:g}s")
            alone = Result(services=cfg.services, rate_asked=cfg.rate, seconds_asked=cfg.seconds)
            await burst(api, namespace, names, cfg, alone)
            result.baseline_rate = alone.rate_achieved
            result.baseline_p50_ms, result.baseline_p99_ms = alone.patch_p50_ms, alone.patch_p99_ms
        op = Operator(kubeconfig, namespace, workdir / "operator.log")
        await op.wait_healthy()
        expected = dict.fromkeys(names, "setup")
        if await wait_converged(api, op, namespace, expected, cfg.converge_limit) is None:
            raise BenchError(f"the {cfg.services} services did not converge: {op.tail()}")
        await asyncio.sleep(2)  # let the start-up garbage go
        result.rss_before_mib = mib(proc_status(op.pid)["VmRSS"])
        cpu0 = cpu_seconds(op.pid)
        sampler = Sampler(op.pid)
        sampler.start()
        log(f"burst: {cfg.rate:g} edits/s for {cfg.seconds:g}s over {cfg.services} services")
        expected = await burst(api, namespace, names, cfg, result)
        result.cpu_burst_s = cpu_seconds(op.pid) - cpu0
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            result.healthy_after = (await op.get(op.health_port, "/healthz"))[0] == 200
        log(f"sent {result.edits_sent} edits at {result.rate_achieved:.0f}/s; converging")
        result.converged_after_s = await wait_converged(
            api, op, namespace, expected, cfg.converge_limit
        )
        if result.converged_after_s is None:
            result.not_converged = cfg.services - await converged_count(api, namespace, expected)
        if op.alive():
            result.cpu_until_converged_s = cpu_seconds(op.pid) - cpu0
            result.rss_converged_mib = mib(proc_status(op.pid)["VmRSS"])
            await asyncio.sleep(cfg.settle)
        await sampler.stop()
        result.rss_peak_mib = max(sampler.samples, default=math.nan)
        result.alive = op.alive()
        if result.alive:
            status = proc_status(op.pid)
            result.rss_settled_mib = mib(status["VmRSS"])
            result.hwm_mib = mib(status["VmHWM"])
            result.reconciles = await op.reconciles()
        result.exit_code = op.proc.returncode
        result.log_problems = op.problems()
        return result
    finally:
        if op is not None:
            await op.close()
        with contextlib.suppress(aiohttp.ClientError, TimeoutError, BenchError):
            await api.request("DELETE", f"api/v1/namespaces/{namespace}")
        await api.close()


# ---------------------------------------------------------------- exclusive use of the cluster


@contextlib.contextmanager
def exclusive(kubeconfig: Path, limit: float = 1800) -> Iterator[None]:
    """The e2e lock (no test runs an operator meanwhile) and helm-installed operators scaled to
    0, restored afterwards."""
    with operator_lock(limit), other_operators_paused(kubeconfig=kubeconfig, log=log):
        yield


def kubectl(kubeconfig: Path, *args: str, timeout: float = 120) -> str:
    proc = subprocess.run(
        [binary("kubectl"), "--kubeconfig", str(kubeconfig), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        raise BenchError(f"kubectl {' '.join(args)}: {proc.stderr.strip()[:300]}")
    return proc.stdout


def install_crd(kubeconfig: Path) -> None:
    kubectl(kubeconfig, "apply", "--server-side", "--force-conflicts",
            "--field-manager=tornado-operator-tests", "-f", str(CRD_FILE))  # fmt: skip
    kubectl(kubeconfig, "wait", "--for=condition=Established",
            "crd/tornadoservices.tornado-operator.dev", "--timeout=60s")  # fmt: skip


def find_kubeconfig() -> Path:
    env = os.environ.get("KUBECONFIG")
    if env and Path(env).exists():
        return Path(env)
    from hack.cluster import local
    from hack.paths import paths

    p = paths()
    if local.is_up(p):
        return p.kubeconfig
    raise BenchError("no cluster: set KUBECONFIG or start one (`python -m hack.cluster up`)")


# ---------------------------------------------------------------- output


def fmt(value: float | None, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def table(r: Result) -> str:
    rows: list[tuple[str, str]] = [
        ("services (replicas 0)", str(r.services)),
        ("edits asked", f"{r.rate_asked:g}/s for {r.seconds_asked:g}s"),
        ("edits sent / ok", f"{r.edits_sent} / {r.edits_ok}"),
        ("edit errors", ", ".join(f"{k}: {v}" for k, v in r.edit_errors.items()) or "none"),
        ("achieved rate (edits/s)", fmt(r.rate_achieved)),
        ("burst took (s)", fmt(r.burst_seconds)),
        ("PATCH latency p50 / p99 (ms)", f"{fmt(r.patch_p50_ms)} / {fmt(r.patch_p99_ms)}"),
        ("no operator: rate (edits/s)", fmt(r.baseline_rate)),
        (
            "no operator: PATCH p50 / p99 (ms)",
            f"{fmt(r.baseline_p50_ms)} / {fmt(r.baseline_p99_ms)}",
        ),
        ("converged after the last edit (s)", fmt(r.converged_after_s)),
        ("RSS before the burst (MiB)", fmt(r.rss_before_mib)),
        ("RSS peak, sampled every 0.25 s (MiB)", fmt(r.rss_peak_mib)),
        ("VmHWM (MiB)", fmt(r.hwm_mib)),
        (
            "RSS when converged / after settling (MiB)",
            f"{fmt(r.rss_converged_mib)} / {fmt(r.rss_settled_mib)}",
        ),
        (
            "operator CPU: burst / until converged (s)",
            f"{fmt(r.cpu_burst_s)} / {fmt(r.cpu_until_converged_s)}",
        ),
        ("reconciles", ", ".join(f"{k}: {v:g}" for k, v in sorted(r.reconciles.items()))),
        ("alive, healthy after the burst", f"{r.alive}, {r.healthy_after}"),
        ("log problems", str(len(r.log_problems))),
    ]
    width = max(len(k) for k, _ in rows)
    lines = [f"| {'':{width}} | value |", f"|{'-' * (width + 2)}|-------|"]
    lines += [f"| {k:{width}} | {v} |" for k, v in rows]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--services", type=int, default=Config.services)
    ap.add_argument("--rate", type=float, default=Config.rate, help="edits per second")
    ap.add_argument("--seconds", type=float, default=Config.seconds)
    ap.add_argument("--concurrency", type=int, default=Config.concurrency)
    ap.add_argument("--converge-limit", type=float, default=Config.converge_limit)
    ap.add_argument("--settle", type=float, default=Config.settle)
    ap.add_argument(
        "--no-baseline", action="store_true", help="skip the burst with no operator running"
    )
    ap.add_argument("--out", type=Path, help="write the numbers as JSON")
    ap.add_argument("--workdir", type=Path, help="keep the operator's log here")
    args = ap.parse_args(argv)
    if args.services < 1 or args.rate <= 0 or args.seconds <= 0 or args.concurrency < 1:
        ap.error("--services, --rate, --seconds and --concurrency must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = Config(
        services=args.services,
        rate=args.rate,
        seconds=args.seconds,
        concurrency=args.concurrency,
        converge_limit=args.converge_limit,
        settle=args.settle,
        baseline=not args.no_baseline,
    )
    try:
        kubeconfig = find_kubeconfig()
        install_crd(kubeconfig)
        with contextlib.ExitStack() as stack:
            if args.workdir:
                args.workdir.mkdir(parents=True, exist_ok=True)
                workdir = args.workdir
            else:
                workdir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            stack.enter_context(exclusive(kubeconfig))
            result = asyncio.run(run(cfg, kubeconfig, workdir))
    except (BenchError, LockTimeout) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(table(result))
    for line in result.log_problems[:5]:
        print(f"log: {line}")
    if args.out:
        args.out.write_text(json.dumps({**asdict(result), "ok": result.ok}, indent=1))
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
