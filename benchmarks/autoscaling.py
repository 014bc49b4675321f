#!/usr/bin/env python3
"""The concurrency autoscaler against the CPU HPA on one load step (issue 10's benchmark).

    .venv/bin/python benchmarks/autoscaling.py --out /tmp/autoscaling.json   # about 8 minutes

Not a test: it prints one table and writes every number, and the timeline it sampled, as JSON
(--out). It needs a cluster (the project's local one, or $KUBECONFIG's) with the template image
in its node (`make demo` loads it), and measures the operator in the tree, started as a separate
process on the host (`python -m tornado_operator run --standalone --namespace NS`) so that its
CPU comes from /proc and its scrape counter from its own /metrics. It takes the e2e lock (so it
waits its turn behind a test session that runs an operator) and scales helm-installed operators
to 0 meanwhile, restored at the end.

In one fresh namespace, deleted at the end also on failure:

  upstream   a pod answering every GET after --delay seconds (0.2).
  services   two TornadoServices with the same pods (template image, /compose calls the
             upstream, CPU request --cpu-request), bounds 1..--max-replicas and a scale-down
             stabilization window of --window seconds; one `metric: concurrency,
             targetConcurrency: --target`, one `metric: cpu` (an HPA at 80 % of the request).
             Their NetworkPolicies let the load pods in (`spec.ingress.from`).
  load       one pod per service, inside the cluster: it checks its target once (status 200,
             a green /compose answer; the benchmark fails if either never verifies), then keeps
             --in-flight requests in flight for --hold seconds and stops: a step from 0 up to
             --in-flight and back to 0. Bounded in time and in count (hack/workloads.py).

Per service, with the step up at the loader's first request after its check and the step down
at its last answer (the loaders' own clocks; the node is this machine, or shares its clock):

  needed       ceil(in flight / target): what serves the load at the target concurrency.
  first up     seconds until the autoscaler first asked for more than 1 replica.
  needed Ready seconds until the Deployment had `needed` Ready pods (n/a: never, during the load).
  peak         the most replicas asked for, from the step up until back at 1, and its overshoot
               over `needed`; peak Ready: seconds until that many pods were Ready.
  down         seconds from the step down until spec.replicas was 1 again.
  requests     completed, failed (non-200, not green, error or timeout) and queued (answered
               after more than 2x the upstream's latency), latency p50 and p99: the loader's count.
  signals      the HPA's highest CPU reading (% of the request), the concurrency autoscaler's
               highest observedConcurrency per pod (status.autoscaling).

For the operator: CPU seconds and scrapes (tornado_operator_autoscaler_scrapes_total) from the
creation of the load pods until both services were back at 1. The cluster is sampled once a
second (one `kubectl get`), so times are +- about 1.5 s. Every wait is bounded.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from hack.images import TEMPLATE_IMAGE  # noqa: E402
from hack.kubetools import (  # noqa: E402
    LockTimeout,
    kubectl,
    kubectl_json,
    operator_lock,
    other_operators_paused,
)
from hack.workloads import (  # noqa: E402
    LOADER_INGRESS,
    VERIFY_SECONDS,
    loader,
    loader_lines,
    slow_upstream,
)

JSONDict = dict[str, Any]
T = TypeVar("T")
CRD_DIR = REPO / "charts/tornado-operator/files/crds"
SCRAPES = "tornado_operator_autoscaler_scrapes_total"
# The two services, by the autoscaler each one uses.
CONCURRENCY, CPU = "by-concurrency", "by-cpu"
SERVICES = (CONCURRENCY, CPU)


class BenchError(RuntimeError):
    """Something the benchmark needs is missing or did not happen in time; one sentence."""


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


@dataclass
class Config:
    in_flight: int = 30
    hold: float = 120.0  # seconds the load stays on
    target: int = 5  # targetConcurrency
    max_replicas: int = 10
    window: int = 60  # behavior.scaleDown.stabilizationWindowSeconds, both services
    delay: float = 0.2  # the upstream's latency
    cpu_request: str = "50m"  # both services' pods; the HPA's utilization is relative to it
    down_limit: float = 360.0  # seconds after the step down to wait for 1 replica

    @property
    def needed(self) -> int:
        return math.ceil(self.in_flight / self.target)


@dataclass
class ServiceResult:
    name: str
    autoscaler: str
    needed: int
    step_up: float | None = None  # epoch seconds, the loader's clock
    step_down: float | None = None
    first_up_s: float | None = None
    needed_ready_s: float | None = None
    peak_replicas: int = 1
    overshoot: int = 0
    peak_ready_s: float | None = None
    replicas_at_step_down: int | None = None
    down_s: float | None = None
    completed: int = 0
    failed: int = 0
    queued: int = 0
    p50_s: float | None = None
    p99_s: float | None = None
    max_s: float | None = None
    hpa_max_cpu_percent: int | None = None
    max_observed_concurrency: float | None = None
    max_pending_pods: int = 0


@dataclass
class OperatorResult:
    cpu_run_s: float | None = None  # from the load pods' creation until both are back at 1
    cpu_total_s: float | None = None  # since it started
    run_seconds: float | None = None
    scrapes_ok: int = 0
    scrapes_error: int = 0


@dataclass
class Report:
    config: JSONDict
    services: dict[str, ServiceResult] = field(default_factory=dict)
    operator: OperatorResult = field(default_factory=OperatorResult)
    notes: list[str] = field(default_factory=list)
    timeline: list[JSONDict] = field(default_factory=list)


# ---------------------------------------------------------------- small tools


def wait_until(what: str, probe: Callable[[], T | None], limit: float, interval: float = 1) -> T:
    """Poll `probe` until it returns something truthy, at most `limit` seconds."""
    deadline = time.monotonic() + limit
    last: object = None
    while True:
        try:
            value = probe()
        except (RuntimeError, OSError, ValueError, subprocess.TimeoutExpired) as exc:
            last = exc
        else:
            if value:
                return value
            last = value
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {limit:.0f}s waiting for {what}; last: {last!r}")
        time.sleep(interval)


def apply(obj: JSONDict, namespace: str) -> None:
    kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(obj))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def find_kubeconfig() -> Path:
    env = os.environ.get("KUBECONFIG")
    if env and Path(env).exists():
        return Path(env)
    from hack.cluster.providers import kubeconfig_in_use

    found = kubeconfig_in_use()
    if found is None:
        raise BenchError("no cluster: set KUBECONFIG or start one (`python -m hack.cluster up`)")
    return found


# ---------------------------------------------------------------- the operator process


class Operator:
    """The operator in the tree as a host process watching one namespace."""

    def __init__(self, namespace: str, logfile: Path) -> None:
        self.metrics_port, self.health_port = free_port(), free_port()
        self.logfile = logfile
        argv = [sys.executable, "-m", "tornado_operator", "run", "--standalone"]
        argv += ["--namespace", namespace, "--default-image", TEMPLATE_IMAGE]
        argv += ["--metrics-port", str(self.metrics_port), "--health-port", str(self.health_port)]
        path = os.pathsep.join(
            [str(REPO / "operator"), str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
        )
        with open(logfile, "wb") as out:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONPATH": path},
                start_new_session=True,
            )
        self.started = time.monotonic()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def get(self, port: int, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as rsp:
                return int(rsp.status), rsp.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as exc:
            return int(exc.code), exc.read().decode("utf-8", "replace")

    def wait_healthy(self, limit: float = 90) -> None:
        """/healthz answers 200, then one verified /metrics answer before anything polls it."""

        def healthy() -> bool:
            if not self.alive():
                raise BenchError(f"the operator exited ({self.proc.returncode}): {self.tail()}")
            try:
                return self.get(self.health_port, "/healthz")[0] == 200
            except OSError:
                return False

        wait_until("the operator's /healthz", healthy, limit, interval=0.5)
        status, body = self.get(self.metrics_port, "/metrics")
        if status != 200 or SCRAPES not in body:
            raise BenchError(f"the operator's /metrics answered {status} without {SCRAPES}")

    def scrapes(self) -> dict[str, int]:
        _, text = self.get(self.metrics_port, "/metrics")
        out: dict[str, int] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == SCRAPES:
                    result = sample.labels.get("result", "?")
                    out[result] = out.get(result, 0) + int(sample.value)
        return out

    def tail(self, lines: int = 8) -> str:
        text = self.logfile.read_text(errors="replace").splitlines()
        return " | ".join(line[:300] for line in text[-lines:])

    def close(self) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


# ---------------------------------------------------------------- the cluster, once a second


def snapshot(namespace: str) -> JSONDict:
    """Each service's replicas, Ready pods and autoscaler signals, and the pods' phases."""
    items = kubectl_json(
        "get", "tornadoservices,deployments,horizontalpodautoscalers,pods", "-n", namespace,
        timeout=20,
    )["items"]  # fmt: skip
    sample: JSONDict = {"t": round(time.time(), 2), "pods": {}}
    for name in SERVICES:
        sample[name] = {"replicas": None, "ready": 0, "pending": 0}
    for obj in items:
        kind, name = obj["kind"], obj["metadata"]["name"]
        status = obj.get("status") or {}
        if kind == "Pod":
            sample["pods"][name] = status.get("phase")
            owner = obj["metadata"].get("labels", {}).get("app.kubernetes.io/name")
            if owner in SERVICES and status.get("phase") == "Pending":
                sample[owner]["pending"] += 1
            continue
        if name not in SERVICES:
            continue
        row = sample[name]
        if kind == "TornadoService":
            row["replicas"] = obj["spec"].get("replicas")
            auto = status.get("autoscaling") or {}
            if auto.get("observedConcurrency") is not None:
                row["concurrency"] = auto["observedConcurrency"]
        elif kind == "Deployment":
            row["ready"] = int(status.get("readyReplicas") or 0)
        elif kind == "HorizontalPodAutoscaler":
            for metric in status.get("currentMetrics") or []:
                value = metric.get("resource", {}).get("current", {}).get("averageUtilization")
                if value is not None:
                    row["cpu_percent"] = int(value)
    return sample


class Sampler:
    """snapshot() once a second in a thread, until stopped or `limit` seconds passed."""

    def __init__(self, namespace: str, limit: float) -> None:
        self.namespace, self.limit = namespace, limit
        self.samples: list[JSONDict] = []
        self.errors = 0
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, name="sampler", daemon=True)

    def _run(self) -> None:
        deadline = time.monotonic() + self.limit
        while not self.stop_event.is_set() and time.monotonic() < deadline:
            began = time.monotonic()
            try:
                self.samples.append(snapshot(self.namespace))
            except (RuntimeError, OSError, ValueError, subprocess.TimeoutExpired):
                self.errors += 1
            self.stop_event.wait(max(0.0, 1.0 - (time.monotonic() - began)))

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(30)

    def last(self) -> JSONDict | None:
        return self.samples[-1] if self.samples else None


# ---------------------------------------------------------------- the workload


def install_crd() -> None:
    kubectl(
        "apply", "--server-side", "--force-conflicts", "--field-manager=tornado-operator-tests",
        "-f", str(CRD_DIR / "tornadoservices.tornado-operator.dev.yaml"),
    )  # fmt: skip
    kubectl(
        "wait", "--for=condition=Established", "crd/tornadoservices.tornado-operator.dev",
        "--timeout=60s", timeout=70,
    )  # fmt: skip


def tornadoservice(name: str, namespace: str, metric: str, cfg: Config) -> JSONDict:
    autoscaling: JSONDict = {
        "enabled": True,
        "metric": metric,
        "minReplicas": 1,
        "maxReplicas": cfg.max_replicas,
        "behavior": {"scaleDown": {"stabilizationWindowSeconds": cfg.window}},
    }
    if metric == "concurrency":
        autoscaling["targetConcurrency"] = cfg.target
    return {
        "apiVersion": "tornado-operator.dev/v1alpha1",
        "kind": "TornadoService",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "env": [{"name": "UPSTREAMS", "value": f"slow=http://slow.{namespace}.svc/"}],
            "resources": {
                "requests": {"cpu": cfg.cpu_request, "memory": "48Mi"},
                "limits": {"memory": "128Mi"},
            },
            "ingress": LOADER_INGRESS,
            "autoscaling": autoscaling,
        },
    }


def loader_pod(service: str) -> str:
    return f"load-{service}"


def why_not(namespace: str, pod: str) -> str:
    """A pod's state and its log's tail, for an error message."""
    state = kubectl("get", "pod", pod, "-n", namespace, "-o", "wide", check=False).stdout
    tail = kubectl("logs", pod, "-n", namespace, "--tail", "10", check=False).stdout
    return f"{state.strip()}\nlog:\n{tail.strip()}"


def wait_verified(namespace: str, limit: float) -> dict[str, float]:
    """Each loader's step-up time, once every loader checked its target; fail loudly if one
    never did, or its check failed."""
    starts: dict[str, float] = {}
    deadline = time.monotonic() + limit
    while len(starts) < len(SERVICES):
        for name in SERVICES:
            if name in starts:
                continue
            for line in loader_lines(loader_pod(name), namespace):
                if line.get("verified") is False:
                    raise BenchError(
                        f"the loader of {name} got a wrong answer from its target: {line}\n"
                        + why_not(namespace, loader_pod(name))
                    )
                if line.get("verified") is True:
                    starts[name] = float(line["start"])
                    log(f"{loader_pod(name)} verified its target; load on")
        if len(starts) < len(SERVICES):
            if time.monotonic() > deadline:
                missing = [n for n in SERVICES if n not in starts]
                raise BenchError(
                    f"the loaders of {missing} never verified their target in {limit:.0f}s:\n"
                    + "\n".join(why_not(namespace, loader_pod(n)) for n in missing)
                )
            time.sleep(2)
    return starts


def loader_summary(namespace: str, service: str) -> JSONDict:
    for line in reversed(loader_lines(loader_pod(service), namespace)):
        if line.get("done"):
            return line
    raise BenchError(
        f"the loader of {service} printed no summary:\n{why_not(namespace, loader_pod(service))}"
    )


# ---------------------------------------------------------------- the numbers


def analyse(result: ServiceResult, samples: list[JSONDict], end: float) -> None:
    """Fill in the times and peaks of one service from the samples between its step up and
    `end` (when both services were back at 1, or the wait gave up)."""
    up, down = result.step_up, result.step_down
    if up is None or down is None:
        return
    during = [s for s in samples if up <= s["t"] <= end and s[result.name]["replicas"]]
    for s in during:
        row, since = s[result.name], s["t"] - up
        replicas = int(row["replicas"])
        if replicas > 1 and result.first_up_s is None:
            result.first_up_s = since
        if s["t"] <= down and row["ready"] >= result.needed and result.needed_ready_s is None:
            result.needed_ready_s = since
        result.peak_replicas = max(result.peak_replicas, replicas)
        result.max_pending_pods = max(result.max_pending_pods, int(row["pending"]))
        if "cpu_percent" in row:
            result.hpa_max_cpu_percent = max(result.hpa_max_cpu_percent or 0, row["cpu_percent"])
        if "concurrency" in row:
            result.max_observed_concurrency = max(
                result.max_observed_concurrency or 0.0, float(row["concurrency"])
            )
    result.overshoot = result.peak_replicas - result.needed
    for s in during:
        if s[result.name]["ready"] >= result.peak_replicas:
            result.peak_ready_s = s["t"] - up
            break
    before_down = [s for s in during if s["t"] <= down]
    if before_down:
        result.replicas_at_step_down = int(before_down[-1][result.name]["replicas"])
    if result.peak_replicas == 1:
        return  # never scaled: nothing to come down from
    for s in during:
        if s["t"] > down and int(s[result.name]["replicas"]) == 1:
            result.down_s = s["t"] - down
            break


def fmt(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def table(report: Report) -> str:
    cfg = report.config
    a, b = report.services[CONCURRENCY], report.services[CPU]

    def row(label: str, get: Callable[[ServiceResult], str]) -> tuple[str, str, str]:
        return label, get(a), get(b)

    def requests(r: ServiceResult) -> str:
        total = r.completed + r.failed
        share = f" ({100 * r.queued / total:.1f} %)" if total else ""
        return f"{r.completed} / {r.failed} / {r.queued}{share}"

    rows = [
        row("needed replicas (in flight / target)", lambda r: str(r.needed)),
        row("first scale-up after the step up (s)", lambda r: fmt(r.first_up_s)),
        row("needed replicas Ready after (s)", lambda r: fmt(r.needed_ready_s)),
        row("peak replicas (overshoot)", lambda r: f"{r.peak_replicas} ({r.overshoot:+d})"),
        row("peak replicas Ready after (s)", lambda r: fmt(r.peak_ready_s)),
        row("replicas when the load stopped", lambda r: str(r.replicas_at_step_down)),
        row("back to 1 replica after the step down (s)", lambda r: fmt(r.down_s)),
        row(
            f"requests completed / failed / queued (> {2 * cfg['delay']:g} s)",
            requests,
        ),
        row(
            "latency p50 / p99 / max (s)",
            lambda r: f"{fmt(r.p50_s, 3)} / {fmt(r.p99_s, 3)} / {fmt(r.max_s, 3)}",
        ),
        row(
            "highest HPA CPU reading (% of request)",
            lambda r: "-" if r.hpa_max_cpu_percent is None else str(r.hpa_max_cpu_percent),
        ),
        row("highest observedConcurrency per pod", lambda r: fmt(r.max_observed_concurrency)),
        row("most pods still starting (Pending) at once", lambda r: str(r.max_pending_pods)),
    ]
    head = ("", "concurrency (operator)", "cpu (HPA at 80 %)")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(3)]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)) + " |"]
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        lines.append("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |")
    op = report.operator
    lines.append("")
    lines.append(
        f"operator, from the load pods' start until both were back at 1 "
        f"({fmt(op.run_seconds, 0)} s): "
        f"{fmt(op.cpu_run_s, 2)} CPU s, {op.scrapes_ok} scrapes ok, {op.scrapes_error} failed; "
        f"{fmt(op.cpu_total_s, 2)} CPU s since it started"
    )
    return "\n".join(lines)


# ---------------------------------------------------------------- the run


def run(cfg: Config, workdir: Path) -> Report:
    report = Report(config=asdict(cfg))
    namespace = f"bench-autoscaling-{uuid.uuid4().hex[:6]}"
    op: Operator | None = None
    sampler: Sampler | None = None
    try:
        install_crd()
        kubectl("create", "namespace", namespace)
        log(f"namespace {namespace}; the operator's log: {workdir / 'operator.log'}")
        op = Operator(namespace, workdir / "operator.log")
        op.wait_healthy()
        for obj in slow_upstream("slow", delay=cfg.delay):
            apply(obj, namespace)
        r = kubectl(
            "wait", "--for=condition=Ready", "pod/slow", "-n", namespace, "--timeout=180s",
            check=False, timeout=190,
        )  # fmt: skip
        if r.returncode != 0:
            raise BenchError(
                f"the upstream pod was not Ready (is {TEMPLATE_IMAGE} in the node? "
                f"`make demo` loads it):\n{why_not(namespace, 'slow')}"
            )
        apply(tornadoservice(CONCURRENCY, namespace, "concurrency", cfg), namespace)
        apply(tornadoservice(CPU, namespace, "cpu", cfg), namespace)
        for name in SERVICES:
            r = kubectl(
                "wait", "--for=condition=Ready", f"tornadoservice/{name}", "-n", namespace,
                "--timeout=240s", check=False, timeout=250,
            )  # fmt: skip
            if r.returncode != 0:
                pods = kubectl("get", "pods", "-n", namespace, "-o", "wide", check=False).stdout
                raise BenchError(f"{name} not Ready in 240s: {r.stderr.strip()}\n{pods}")
        # Both autoscalers at work before the step: the operator's reports one Ready pod, the
        # HPA has a CPU reading (metrics-server needs a scrape or two of a new pod).
        wait_until(
            f"{CONCURRENCY}'s autoscaler to report",
            lambda: snapshot(namespace)[CONCURRENCY].get("concurrency") is not None,
            60,
        )
        try:
            wait_until(
                "the HPA's first CPU reading",
                lambda: "cpu_percent" in snapshot(namespace)[CPU],
                150,
                interval=3,
            )
        except BenchError as exc:
            report.notes.append(f"the HPA had no CPU reading before the load: {exc}")
        log("both services Ready at 1 replica; starting the load pods")

        limit = VERIFY_SECONDS + cfg.hold + cfg.down_limit + 300
        sampler = Sampler(namespace, limit)
        sampler.start()
        cpu0, scrapes0, applied = cpu_seconds(op.pid), op.scrapes(), time.time()
        for name in SERVICES:
            apply(
                loader(
                    loader_pod(name),
                    f"http://{name}.{namespace}.svc/compose",
                    concurrency=cfg.in_flight,
                    duration=cfg.hold,
                    max_requests=int(cfg.in_flight / cfg.delay * cfg.hold * 2),
                    slow_seconds=2 * cfg.delay,
                ),
                namespace,
            )
        starts = wait_verified(namespace, VERIFY_SECONDS + 60)
        for name in SERVICES:
            report.services[name] = ServiceResult(
                name=name,
                autoscaler="concurrency" if name == CONCURRENCY else "cpu",
                needed=cfg.needed,
                step_up=starts[name],
            )

        def loaders_done() -> bool:
            last = sampler.last() if sampler else None
            phases = (last or {}).get("pods", {})
            return all(phases.get(loader_pod(n)) in ("Succeeded", "Failed") for n in SERVICES)

        wait_until("the loaders to finish", loaders_done, cfg.hold + 90, interval=2)
        for name in SERVICES:
            summary = loader_summary(namespace, name)
            res = report.services[name]
            res.step_down = float(summary["end"])
            res.completed, res.failed = int(summary["completed"]), int(summary["failed"])
            res.queued = int(summary["slow"])
            res.p50_s, res.p99_s, res.max_s = summary.get("p50"), summary.get("p99"), summary["max"]
        log(f"load off; waiting up to {cfg.down_limit:.0f}s for both services to be back at 1")

        def both_at_one() -> bool:
            last = (sampler.last() if sampler else None) or {}
            return all(last.get(n, {}).get("replicas") == 1 for n in SERVICES)

        try:
            wait_until("both services back at 1 replica", both_at_one, cfg.down_limit, 2)
        except BenchError as exc:
            report.notes.append(str(exc))
        end = time.time()
        report.operator.run_seconds = end - applied
        report.operator.cpu_run_s = cpu_seconds(op.pid) - cpu0
        report.operator.cpu_total_s = cpu_seconds(op.pid)
        scrapes = op.scrapes()
        report.operator.scrapes_ok = scrapes.get("ok", 0) - scrapes0.get("ok", 0)
        report.operator.scrapes_error = scrapes.get("error", 0) - scrapes0.get("error", 0)
        sampler.stop()
        for res in report.services.values():
            analyse(res, sampler.samples, end)
        if sampler.errors:
            report.notes.append(f"{sampler.errors} samples failed (kubectl errors or timeouts)")
        if not op.alive():
            report.notes.append(f"the operator exited ({op.proc.returncode}): {op.tail()}")
        return report
    finally:
        if sampler is not None:
            sampler.stop()
            report.timeline = sampler.samples
        if op is not None:
            op.close()
        kubectl("delete", "namespace", namespace, "--wait=false", "--ignore-not-found", check=False)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    d = Config()
    ap.add_argument("--in-flight", type=int, default=d.in_flight, help="requests in flight")
    ap.add_argument("--hold", type=float, default=d.hold, help="seconds the load stays on")
    ap.add_argument("--target", type=int, default=d.target, help="targetConcurrency")
    ap.add_argument("--max-replicas", type=int, default=d.max_replicas)
    ap.add_argument("--window", type=int, default=d.window, help="scale-down window, seconds")
    ap.add_argument("--delay", type=float, default=d.delay, help="the upstream's latency")
    ap.add_argument("--cpu-request", default=d.cpu_request, help="CPU request of every pod")
    ap.add_argument("--down-limit", type=float, default=d.down_limit)
    ap.add_argument("--lock-timeout", type=float, default=3600, help="wait for the e2e lock")
    ap.add_argument("--out", type=Path, help="write the numbers and the timeline as JSON")
    ap.add_argument("--workdir", type=Path, help="keep the operator's log here")
    args = ap.parse_args(argv)
    if not (1 <= args.in_flight <= 200 and 10 <= args.hold <= 900 and args.target >= 1):
        ap.error("--in-flight 1..200, --hold 10..900 s, --target >= 1")
    if not (2 <= args.max_replicas <= 20 and 0 <= args.window <= 600 and 0 < args.delay <= 2):
        ap.error("--max-replicas 2..20, --window 0..600 s, --delay (0, 2] s")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = Config(
        in_flight=args.in_flight,
        hold=args.hold,
        target=args.target,
        max_replicas=args.max_replicas,
        window=args.window,
        delay=args.delay,
        cpu_request=args.cpu_request,
        down_limit=args.down_limit,
    )
    try:
        kubeconfig = find_kubeconfig()
        os.environ["KUBECONFIG"] = str(kubeconfig)  # hack.kubetools' kubectl reads it
        with contextlib.ExitStack() as stack:
            if args.workdir:
                args.workdir.mkdir(parents=True, exist_ok=True)
                workdir = args.workdir
            else:
                workdir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            log("taking the e2e lock (waits while a test session runs an operator)")
            stack.enter_context(operator_lock(args.lock_timeout))
            paused = stack.enter_context(other_operators_paused(kubeconfig=kubeconfig, log=log))
            log(f"e2e lock held; paused: {', '.join(paused) or 'none'}")
            report = run(cfg, workdir)
    except (BenchError, LockTimeout) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(table(report))
    for note in report.notes:
        print(f"- {note}")
    if args.out:
        args.out.write_text(
            json.dumps(
                {
                    "config": report.config,
                    "services": {k: asdict(v) for k, v in report.services.items()},
                    "operator": asdict(report.operator),
                    "notes": report.notes,
                    "timeline": report.timeline,
                },
                indent=1,
            )
        )
        print(f"results: {args.out}")
    complete = all(r.step_down is not None for r in report.services.values())
    return 0 if complete and not report.notes else 1


if __name__ == "__main__":
    sys.exit(main())
