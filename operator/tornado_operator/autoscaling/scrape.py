"""Reading requests in flight from the pods: the metric contract, target selection, scraping.

The contract a service meets to be autoscaled on concurrency (the bundled template meets it,
a service of one's own opts in by exporting the same):

* `GET /metrics` on the container port named `http` answers 200 with the Prometheus text
  exposition format (version 0.0.4), within `SCRAPE_TIMEOUT_SECONDS`.
* `http_requests_in_flight`, type gauge (or untyped): the HTTP requests being handled at the
  moment of the scrape, the scrape request itself included, as a gauge that counts every
  request does. The operator subtracts that one request (`SCRAPE_COUNTS_ITSELF`), never
  going below 0. Labels are allowed; all series are summed (per-handler gauges add up).
* Optional, for status only: `http_requests_total`, type counter (or untyped), any labels, all
  series summed except those whose `handler` label is one of `EXCLUDED_HANDLERS` (probes and
  the scrape itself). Its rate becomes status.autoscaling.requestRate.

A ready pod whose scrape fails (refused, timed out, non-200, too large, unparsable, no gauge)
counts as missing: the autoscaler reports it and does not scale down while it lasts.

Two ways to reach the pods (`tornado-operator run --scrape-via`): `direct` (the default) GETs
http://POD_IP:PORT/metrics, so the operator must reach pod IPs on the `http` port (a
NetworkPolicy must let it in); `apiserver` GETs the API server's pod proxy,
/api/v1/namespaces/NS/pods/NAME:PORT/proxy/metrics, for an operator that runs outside the
cluster network (it needs RBAC `get` on `pods/proxy`, and costs the API server one request per
pod per scrape).
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any
from urllib.parse import quote

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from tornado_operator import labels, rendering
from tornado_operator.errors import APIConnectionError, APIError

JSONDict = dict[str, Any]

IN_FLIGHT_METRIC = "http_requests_in_flight"
REQUESTS_METRIC = "http_requests_total"
METRICS_PATH = "/metrics"
SCRAPE_COUNTS_ITSELF = 1.0
EXCLUDED_HANDLERS = frozenset({"metrics", "livez", "readyz", "startupz"})

SCRAPE_TIMEOUT_SECONDS = 1.0
# Scrapes in flight at once, for the whole operator (one Scraper is shared by all services).
SCRAPE_CONCURRENCY = 32
# How the operator reaches the pods: their IPs, or the API server's pod proxy.
DIRECT = "direct"
APISERVER = "apiserver"
SCRAPE_VIA = (DIRECT, APISERVER)
MAX_BODY_BYTES = 4 * 1024 * 1024
ACCEPT = "text/plain;version=0.0.4;q=1.0, */*;q=0.1"

# The reasons a scrape fails, a closed set (a metrics label).
TIMEOUT = "timeout"
CONNECTION = "connection"
HTTP_STATUS = "http_status"
TOO_LARGE = "too_large"
PARSE = "parse"
NO_GAUGE = "no_gauge"
NO_ADDRESS = "no_address"
ERROR_REASONS = (TIMEOUT, CONNECTION, HTTP_STATUS, TOO_LARGE, PARSE, NO_GAUGE, NO_ADDRESS)

_FAMILY_NAMES = frozenset(
    {IN_FLIGHT_METRIC, REQUESTS_METRIC, REQUESTS_METRIC.removesuffix("_total")}
)


class ScrapeError(Exception):
    """A pod's metrics could not be used; `reason` is one of ERROR_REASONS."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class PodMetrics:
    in_flight: float  # the scrape itself already subtracted
    requests_total: float | None  # None when the service does not export the counter


def _relevant_lines(text: str) -> str:
    """Only the lines of the two families: the parser is pure Python and an exposition has
    hundreds of lines the autoscaler does not need (process, GC, histograms)."""
    kept: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("#"):
            parts = stripped.split(None, 3)
            if len(parts) >= 3 and parts[1] in ("TYPE", "HELP") and parts[2] in _FAMILY_NAMES:
                kept.append(stripped)
            continue
        name = stripped.split("{", 1)[0].split(None, 1)[0]
        if name in (IN_FLIGHT_METRIC, REQUESTS_METRIC):
            kept.append(stripped)
    return "\n".join(kept) + "\n"


def parse_exposition(text: str) -> PodMetrics:
    """The contract's values from one Prometheus text exposition (raises ScrapeError)."""
    in_flight: float | None = None
    requests: float | None = None
    try:
        families = list(text_string_to_metric_families(_relevant_lines(text)))
    except ValueError as exc:
        raise ScrapeError(PARSE, f"cannot parse the metrics: {exc}") from None
    for family in families:
        if family.type == "counter" and family.name == REQUESTS_METRIC.removesuffix("_total"):
            requests = requests or 0.0  # declared, maybe without series yet: 0 so far
        for sample in family.samples:
            value = float(sample.value)
            if sample.name == IN_FLIGHT_METRIC:
                if family.type not in ("gauge", "unknown"):
                    raise ScrapeError(
                        PARSE, f"{IN_FLIGHT_METRIC} has type {family.type}, not gauge"
                    )
                if not math.isfinite(value) or value < 0:
                    raise ScrapeError(PARSE, f"{IN_FLIGHT_METRIC} is {value}")
                in_flight = (in_flight or 0.0) + value
            elif sample.name == REQUESTS_METRIC and family.type in ("counter", "unknown"):
                if sample.labels.get("handler") in EXCLUDED_HANDLERS:
                    continue
                if math.isfinite(value) and value >= 0:
                    requests = (requests or 0.0) + value
    if in_flight is None:
        raise ScrapeError(NO_GAUGE, f"no {IN_FLIGHT_METRIC} gauge in the metrics")
    return PodMetrics(max(0.0, in_flight - SCRAPE_COUNTS_ITSELF), requests)


# -- which pods ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Target:
    pod: str
    url: str  # http://POD_IP:PORT/metrics
    namespace: str = ""
    port: int = 0

    @property
    def proxy_path(self) -> str:
        """The same /metrics through the API server's pod proxy."""
        pod = quote(f"{self.pod}:{self.port}", safe=":")
        return f"/api/v1/namespaces/{quote(self.namespace, safe='')}/pods/{pod}/proxy{METRICS_PATH}"


@dataclasses.dataclass(frozen=True)
class Targets:
    """Ready pods of one TornadoService: those to scrape, and those without an address."""

    scrape: tuple[Target, ...]
    unreachable: tuple[str, ...]

    @property
    def ready(self) -> int:
        return len(self.scrape) + len(self.unreachable)


def _is_ready(pod: JSONDict) -> bool:
    status = pod.get("status") or {}
    if status.get("phase") != "Running":
        return False
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )


def belongs_to(pod: JSONDict, namespace: str, name: str) -> bool:
    """Whether a pod is one of this TornadoService's: in its namespace, with all of its
    selector labels, and controlled by the ReplicaSet its Deployment names after the pod's
    template hash. A pod someone labelled by hand is never scraped."""
    meta = pod.get("metadata") or {}
    if meta.get("namespace") != namespace:
        return False
    pod_labels = meta.get("labels") or {}
    if any(pod_labels.get(k) != v for k, v in labels.selector_labels(name).items()):
        return False
    template_hash = pod_labels.get("pod-template-hash")
    if not template_hash:
        return False
    return any(
        ref.get("controller") is True
        and ref.get("kind") == "ReplicaSet"
        and ref.get("apiVersion") == "apps/v1"
        and ref.get("name") == f"{name}-{template_hash}"
        for ref in meta.get("ownerReferences") or []
    )


def _http_port(pod: JSONDict) -> int | None:
    """The pod's own `http` port: during a change of spec.port old pods keep the old one."""
    for container in (pod.get("spec") or {}).get("containers") or []:
        if container.get("name") != rendering.CONTAINER_NAME:
            continue
        for port in container.get("ports") or []:
            if port.get("name") == rendering.PORT_NAME and isinstance(
                port.get("containerPort"), int
            ):
                return int(port["containerPort"])
    return None


def metrics_url(ip: str, port: int) -> str:
    host = f"[{ip}]" if ":" in ip else ip
    return f"http://{host}:{port}{METRICS_PATH}"


def scrape_targets(pods: Iterable[JSONDict], *, namespace: str, name: str) -> Targets:
    """The Ready, non-terminating pods of one TornadoService and their metrics URLs."""
    scrape: list[Target] = []
    unreachable: list[str] = []
    for pod in pods:
        meta = pod.get("metadata") or {}
        if meta.get("deletionTimestamp") or not belongs_to(pod, namespace, name):
            continue
        if not _is_ready(pod):
            continue
        pod_name = str(meta.get("name"))
        ip = (pod.get("status") or {}).get("podIP")
        port = _http_port(pod)
        if not ip or port is None:
            unreachable.append(pod_name)
            continue
        scrape.append(Target(pod_name, metrics_url(str(ip), port), namespace, port))
    scrape.sort(key=lambda t: t.pod)
    unreachable.sort()
    return Targets(tuple(scrape), tuple(unreachable))


# -- scraping --------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ScrapeResult:
    pod: str
    time: float  # monotonic, when the answer arrived (or the scrape failed)
    seconds: float
    metrics: PodMetrics | None = None
    reason: str | None = None  # one of ERROR_REASONS when metrics is None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.metrics is not None


# GET an API path (the pod proxy) and give the body as text; raises errors.APIError.
TextFetcher = Callable[[str], Awaitable[str]]


class Scraper:
    """Scrapes metrics URLs with bounded concurrency and a timeout on each request.

    One instance for the whole operator, so the bound holds across services. It must be
    created, used and closed on one event loop. With `via_api` (a TextFetcher through the API
    server) it reads each pod's /metrics through the API server's pod proxy instead of the
    pod's IP.
    """

    def __init__(
        self,
        *,
        concurrency: int = SCRAPE_CONCURRENCY,
        timeout: float = SCRAPE_TIMEOUT_SECONDS,
        max_bytes: int = MAX_BODY_BYTES,
        via_api: TextFetcher | None = None,
    ) -> None:
        if concurrency < 1 or timeout <= 0 or max_bytes < 1:
            raise ValueError("concurrency, timeout and max_bytes must be positive")
        self.concurrency = concurrency
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.via = DIRECT if via_api is None else APISERVER
        self._via_api = via_api
        self._semaphore = asyncio.Semaphore(concurrency)
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.concurrency),
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                headers={"Accept": ACCEPT, "User-Agent": "tornado-operator-autoscaler"},
                # Pod IPs are reached directly, never through an HTTP(S)_PROXY of the operator.
                trust_env=False,
                auto_decompress=True,
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> Scraper:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def scrape(self, targets: Sequence[Target]) -> list[ScrapeResult]:
        """One result per target, in the same order; never raises for a pod's failure."""
        return list(await asyncio.gather(*(self._scrape_one(t) for t in targets)))

    async def _scrape_one(self, target: Target) -> ScrapeResult:
        async with self._semaphore:
            started = time.monotonic()
            try:
                text = await self._text(target)
                metrics = parse_exposition(text)
            except ScrapeError as exc:
                return self._failed(target, started, exc.reason, str(exc))
            except TimeoutError:
                return self._failed(target, started, TIMEOUT, f"no answer within {self.timeout}s")
            except (aiohttp.ClientError, OSError) as exc:
                return self._failed(target, started, CONNECTION, str(exc) or type(exc).__name__)
            done = time.monotonic()
            return ScrapeResult(target.pod, done, done - started, metrics)

    async def scrape_text(self, targets: Sequence[Target]) -> list[tuple[str, str | None]]:
        """(pod, its whole /metrics text or None when the scrape failed) per target, in order,
        under the same bound and timeout: for readers of other metrics than the autoscaler's
        (the upstream monitor, composition.monitor)."""
        return list(await asyncio.gather(*(self._text_one(t) for t in targets)))

    async def _text_one(self, target: Target) -> tuple[str, str | None]:
        async with self._semaphore:
            try:
                return target.pod, await self._text(target)
            except (ScrapeError, TimeoutError, aiohttp.ClientError, OSError):
                return target.pod, None

    async def _text(self, target: Target) -> str:
        if self._via_api is None:
            return await self._fetch(target.url)
        return await self._fetch_via_api(target)

    def _failed(self, target: Target, started: float, reason: str, error: str) -> ScrapeResult:
        done = time.monotonic()
        return ScrapeResult(target.pod, done, done - started, None, reason, error)

    async def _fetch(self, url: str) -> str:
        # ClientTimeout covers connect, send and the whole body; asyncio.timeout is the belt
        # to its braces (a stalled body read, DNS: none here, pods are IPs).
        async with (
            asyncio.timeout(self.timeout),
            self._client().get(url, allow_redirects=False) as response,
        ):
            if response.status != 200:
                raise ScrapeError(HTTP_STATUS, f"GET {METRICS_PATH} answered {response.status}")
            if (response.content_length or 0) > self.max_bytes:
                raise ScrapeError(TOO_LARGE, f"metrics larger than {self.max_bytes} bytes")
            body = bytearray()
            async for chunk in response.content.iter_chunked(65536):
                body += chunk
                if len(body) > self.max_bytes:
                    raise ScrapeError(TOO_LARGE, f"metrics larger than {self.max_bytes} bytes")
            try:
                return body.decode(response.charset or "utf-8", "replace")
            except LookupError:  # a charset Python does not know
                return body.decode("utf-8", "replace")

    async def _fetch_via_api(self, target: Target) -> str:
        assert self._via_api is not None
        try:
            async with asyncio.timeout(self.timeout):
                text = await self._via_api(target.proxy_path)
        except APIConnectionError as exc:
            raise ScrapeError(CONNECTION, f"API server: {exc.message}") from None
        except APIError as exc:
            # The proxy answers 503 when it cannot reach the pod, else the pod's own status.
            if exc.status == 503 and "error trying to reach" in exc.message:
                raise ScrapeError(CONNECTION, exc.message[:200]) from None
            raise ScrapeError(
                HTTP_STATUS, f"GET {METRICS_PATH} through the API server answered {exc.status}"
            ) from None
        if len(text) > self.max_bytes:
            raise ScrapeError(TOO_LARGE, f"metrics larger than {self.max_bytes} bytes")
        return text


# -- request rate ----------------------------------------------------------------------------


class RateTracker:
    """Per-pod request rates from successive readings of the requests counter."""

    def __init__(self) -> None:
        self._last: dict[str, tuple[float, float]] = {}

    def observe(self, pod: str, when: float, total: float | None) -> float | None:
        """Requests per second since this pod's previous reading (None on the first one)."""
        if total is None:
            self._last.pop(pod, None)
            return None
        previous = self._last.get(pod)
        self._last[pod] = (when, total)
        if previous is None or when <= previous[0]:
            return None
        increase = total - previous[1]
        if increase < 0:  # the counter was reset (the container restarted)
            increase = total
        return increase / (when - previous[0])

    def forget_except(self, pods: Iterable[str]) -> None:
        keep = set(pods)
        for pod in list(self._last):
            if pod not in keep:
                del self._last[pod]
