"""A real Prometheus for tests, scraping an exporter the test runs, plus small fake query APIs.

`prometheus_server` (module-scoped fixture) starts Debian's /usr/bin/prometheus on a free port
with a generated config and a temporary data directory. It scrapes `exporter` every second and
is ready once the exporter has been scraped often enough that `rate(...[RATE_WINDOW])` is exact.

The exporter serves the CRM app's metrics under the names the shipped rules query. Its counters
grow linearly with wall-clock time at the rates in `LATENCY` and `CACHES`, so `rate()`, ratios
and `histogram_quantile()` give values a test can work out by hand, however long the server
has been running.

`FakeQueryApi` answers the instant-query endpoint itself, for what a real Prometheus cannot be
made to do on demand: answer slowly, show the headers it received, or speak TLS.
"""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from urllib.parse import parse_qs, urlsplit
from wsgiref.simple_server import WSGIServer

import pytest
import requests
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

SCRAPE_INTERVAL_SECONDS = 1.0

# The window tests give rate(): Prometheus divides by the whole window, so it is exact only
# once samples cover the window, which SCRAPES_BEFORE_READY scrapes guarantee.
RATE_WINDOW = "4s"
SCRAPES_BEFORE_READY = 6

NAMESPACE = "crm"

# Histogram bucket bounds of the latency histograms.
BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5)


@dataclass(frozen=True)
class LatencyTraffic:
    """One deployment's requests per second at or below each bound of BUCKETS (cumulative, as
    Prometheus buckets are), and in all."""

    histogram: str
    deployment: str
    cumulative: tuple[float, ...]
    total: float


LATENCY = (
    # Every API request takes between 0.25 s and 0.5 s.
    LatencyTraffic("http_request_duration_seconds", "api", (0, 0, 20, 20, 20), 20),
    # 18 of 20 predictions take under 0.1 s, the other 2 between 1 s and 2.5 s.
    LatencyTraffic("ml_prediction_duration_seconds", "ml", (18, 18, 18, 18, 20), 20),
)


@dataclass(frozen=True)
class CacheTraffic:
    """Per second: lookups, hits among them, and stale hits among those."""

    requests: float
    hits: float
    stale_hits: float


# "cold" sees no traffic: its ratios are 0/0.
CACHES: Mapping[str, CacheTraffic] = {
    "profile": CacheTraffic(40, 30, 3),
    "session": CacheTraffic(20, 10, 0),
    "cold": CacheTraffic(0, 0, 0),
}

# Per deployment: CPU cores in use, and the cores its pods request (utilisation = the ratio).
CPU: Mapping[str, tuple[float, float]] = {"api": (1.2, 2.0), "ml": (0.5, 1.0)}

# Per API pod: database connections in use, and the pool's size.
DB_POOLS: Mapping[str, tuple[float, float]] = {"api-0": (17, 20), "api-1": (15, 20)}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class CrmAppCollector(Collector):
    """The CRM app's metrics, under the names the shipped rules query.

    Counters equal rate x seconds since the collector was made, at every scrape.
    """

    def __init__(self) -> None:
        self._start = time.time()

    def collect(self) -> Iterable[Metric]:
        elapsed = time.time() - self._start
        families: list[Metric] = []
        for traffic in LATENCY:
            histogram = HistogramMetricFamily(
                traffic.histogram, "Latency.", labels=("namespace", "deployment")
            )
            buckets = [
                (f"{bound:g}", per_second * elapsed)
                for bound, per_second in zip(BUCKETS, traffic.cumulative, strict=True)
            ]
            buckets.append(("+Inf", traffic.total * elapsed))
            histogram.add_metric(
                [NAMESPACE, traffic.deployment], buckets, sum_value=0.3 * traffic.total * elapsed
            )
            families.append(histogram)
        counters = {
            kind: CounterMetricFamily(f"crm_cache_{kind}", f"Cache {kind}.", labels=("cache",))
            for kind in ("requests", "hits", "stale_hits")
        }
        for cache, cache_traffic in CACHES.items():
            for kind, counter in counters.items():
                counter.add_metric([cache], getattr(cache_traffic, kind) * elapsed)
        families.extend(counters.values())
        in_use = GaugeMetricFamily("crm_db_pool_connections_in_use", "In use.", labels=("pod",))
        size = GaugeMetricFamily("crm_db_pool_connections_max", "Pool size.", labels=("pod",))
        for pod, (used, most) in DB_POOLS.items():
            in_use.add_metric([pod], used)
            size.add_metric([pod], most)
        families.extend((in_use, size))
        labels = ("namespace", "deployment")
        cpu_used = CounterMetricFamily(
            "container_cpu_usage_seconds", "CPU seconds used.", labels=labels
        )
        cpu_requested = GaugeMetricFamily(
            "kube_pod_container_resource_requests", "Requested.", labels=(*labels, "resource")
        )
        for deployment, (cores, requested) in CPU.items():
            cpu_used.add_metric([NAMESPACE, deployment], cores * elapsed)
            cpu_requested.add_metric([NAMESPACE, deployment, "cpu"], requested)
        families.extend((cpu_used, cpu_requested))
        return families


class Exporter:
    """prometheus_client's HTTP exporter on a free port, serving its own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(CrmAppCollector())
        self.port = free_port()
        self._server: WSGIServer | None = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self._server, _ = start_http_server(self.port, addr="127.0.0.1", registry=self.registry)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class PrometheusServer:
    """Debian's prometheus scraping `targets` every second; `stop()` ends it for fault tests.

    `openmetrics`, an OpenMetrics text ending in `# EOF`, is backfilled into the data directory
    with `promtool tsdb create-blocks-from openmetrics` before the server starts: series with
    values and times a test chooses, in the past.
    """

    def __init__(
        self, targets: Iterable[str] = (), startup_timeout: float = 30.0, openmetrics: str = ""
    ) -> None:
        binary = shutil.which("prometheus") or "/usr/bin/prometheus"
        if not Path(binary).exists():
            raise RuntimeError("prometheus is not installed: run `make system-deps`")
        self._binary = binary
        self._targets = tuple(targets)
        self._startup_timeout = startup_timeout
        self._openmetrics = openmetrics
        self._workdir = Path(tempfile.mkdtemp(prefix="autotuner-prometheus-"))
        self.port = free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> PrometheusServer:
        try:
            self.start()
        except BaseException:
            shutil.rmtree(self._workdir, ignore_errors=True)
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
        shutil.rmtree(self._workdir, ignore_errors=True)

    def start(self) -> None:
        # Once: a restarted server keeps its data directory, and with it the backfilled blocks.
        if self._openmetrics and not (self._workdir / "data").exists():
            self._backfill()
        config = self._workdir / "prometheus.yml"
        config.write_text(
            json.dumps(
                {
                    "global": {
                        "scrape_interval": f"{SCRAPE_INTERVAL_SECONDS:g}s",
                        "scrape_timeout": f"{SCRAPE_INTERVAL_SECONDS:g}s",
                    },
                    "scrape_configs": [
                        {"job_name": "app", "static_configs": [{"targets": list(self._targets)}]}
                    ],
                }
            )
        )
        log = (self._workdir / "prometheus.log").open("wb")
        self._process = subprocess.Popen(
            [
                self._binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={self._workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self._wait_until_ready()

    def _backfill(self) -> None:
        promtool = shutil.which("promtool") or "/usr/bin/promtool"
        source = self._workdir / "backfill.om"
        source.write_text(self._openmetrics)
        subprocess.run(
            [
                promtool,
                "tsdb",
                "create-blocks-from",
                "openmetrics",
                str(source),
                str(self._workdir / "data"),
            ],
            check=True,
            capture_output=True,
        )

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None

    def query(self, expr: str) -> list[dict[str, object]]:
        """The raw instant-query result, for waiting on data (tests use the real source)."""
        response = requests.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=5)
        response.raise_for_status()
        result: list[dict[str, object]] = response.json()["data"]["result"]
        return result

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self._startup_timeout
        # Prometheus applies new targets on a 5 s tick, so the first scrape takes a while.
        history = f"count_over_time(up{{job='app'}}[1m]) >= {SCRAPES_BEFORE_READY}"
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise RuntimeError(f"prometheus exited at startup:\n{self._log_tail()}")
            try:
                ready = requests.get(f"{self.url}/-/ready", timeout=1).ok
                if ready and len(self.query(history)) == len(self._targets):
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(
            f"prometheus was not ready within {self._startup_timeout:g} s:\n{self._log_tail()}"
        )

    def _log_tail(self) -> str:
        log = self._workdir / "prometheus.log"
        return log.read_text(errors="replace")[-2000:] if log.exists() else "(no log)"


@dataclass(frozen=True)
class RecordedQuery:
    expr: str
    time: str
    headers: Mapping[str, str]


@dataclass
class FakeQueryApi:
    """A stand-in for /api/v1/query that records requests and answers `answers[expr]`, and for
    /api/v1/query_range when `answers` holds the expression's answer (404 otherwise).

    An expression not in `answers` gets a one-sample vector of value 1; one in `raw` gets that
    (HTTP status, body) as it is, for the answers of broken proxies. Expressions listed in
    `slow` are answered after `slow_seconds`. With `tls=(certfile, keyfile)` it speaks HTTPS.
    """

    answers: Mapping[str, object] = field(default_factory=dict)
    raw: Mapping[str, tuple[int, bytes]] = field(default_factory=dict)
    slow: frozenset[str] = frozenset()
    slow_seconds: float = 5.0
    tls: tuple[Path, Path] | None = None
    received: list[RecordedQuery] = field(default_factory=list)
    # The most requests it was handling at one moment.
    peak_in_flight: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._in_flight = 0
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        # A sleeping handler must not hold up the test's teardown.
        self._server.block_on_close = False
        if self.tls is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(*self.tls)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        # A short poll interval makes shutdown quick.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FakeQueryApi:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _arrived(self, query: RecordedQuery) -> None:
        with self._lock:
            self.received.append(query)
            self._in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self._in_flight)

    def _left(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlsplit(self.path)
                params = {name: values[-1] for name, values in parse_qs(url.query).items()}
                expr, at = params.get("query", ""), params.get("time", "0")
                api._arrived(RecordedQuery(expr, at, dict(self.headers.items())))
                self._answer(url.path, expr, at)

            def _answer(self, path: str, expr: str, at: str) -> None:
                try:
                    if expr in api.slow:
                        time.sleep(api.slow_seconds)
                finally:
                    # Before the answer is written: once the client has it, it may send the
                    # next query before this thread runs again.
                    api._left()
                default = {
                    "status": "success",
                    "data": {
                        "resultType": "vector",
                        "result": [{"metric": {}, "value": [float(at), "1"]}],
                    },
                }
                # A range query is answered only when the test gave its answer.
                ranged = path == "/api/v1/query_range" and expr in api.answers
                status = 200 if path == "/api/v1/query" or ranged else 404
                body = json.dumps(api.answers.get(expr, default)).encode()
                if expr in api.raw:
                    status, body = api.raw[expr]
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up waiting, which is what a slow test wants

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, made with the openssl command line."""
    certificate, key = directory / "server.crt", directory / "server.key"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(key), "-out", str(certificate),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return certificate, key


@pytest.fixture(scope="module")
def exporter() -> Iterator[Exporter]:
    served = Exporter()
    served.start()
    yield served
    served.stop()


@pytest.fixture(scope="module")
def prometheus_server(exporter: Exporter) -> Iterator[PrometheusServer]:
    with PrometheusServer([exporter.target]) as server:
        yield server
