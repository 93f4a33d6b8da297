"""The simulated CRM system as a Prometheus exporter, for end-to-end tests of the daemon.

It advances the modelled system (autotuner.sim) in real time, `speed` times faster than the
wall clock, and reads its knobs back from where the daemon writes them: replicas from the test
Kubernetes API, TTLs and the pool size from Redis keys. A real Prometheus scrapes it.

Exposed (names chosen for the end-to-end rule files, not the shipped ones, whose 5-minute
windows would make a test slow):
  crm_sim_api_p95_seconds{namespace, deployment}   gauge
  crm_sim_ml_p95_seconds{namespace, deployment}    gauge
  crm_cache_requests_total{cache}, crm_cache_hits_total{cache}   counters (real-time rates)
  crm_db_pool_usage                                gauge
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from wsgiref.simple_server import WSGIServer

import redis
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from autotuner.core.model import KnobKind, KnobRef
from autotuner.sim.actuators import SimActuator
from autotuner.sim.system import System, SystemSpec
from tests.integration.redis_server import free_port
from tests.kube_api.server import FakeKubeApi

NAMESPACE = "crm"
DEPLOYMENTS = ("api", "ml")


class SimExporter:
    def __init__(
        self,
        kube: FakeKubeApi,
        redis_client: redis.Redis,
        *,
        base_rps: float = 300.0,
        speed: float = 20.0,
        step_seconds: float = 0.25,
    ) -> None:
        self.system = System(SystemSpec(namespace=NAMESPACE))
        self._actuator = SimActuator(self.system, "exporter")
        self._kube = kube
        self._redis = redis_client
        self.base_rps = base_rps
        self.load_factor = 1.0
        self._speed = speed
        self._step = step_seconds
        self._lock = threading.Lock()
        self._signals: dict[str, float] = {}
        self._requests = dict.fromkeys(self.system.caches, 0.0)
        self._hits = dict.fromkeys(self.system.caches, 0.0)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._server: WSGIServer | None = None
        self.registry = CollectorRegistry()
        self.registry.register(self)
        self.port = free_port()
        self.sim_time = 0.0

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def seed(self) -> None:
        """Write the model's starting knob values where the daemon will read them."""
        for name in DEPLOYMENTS:
            deployment = self.system.deployment(name)
            assert deployment is not None
            self._kube.set_replicas("deployments", NAMESPACE, name, deployment.desired)
        for cache, state in self.system.caches.items():
            self._redis.set(f"{NAMESPACE}:cache:ttl:{cache}", int(state.target_ttl))
        self._redis.set(f"{NAMESPACE}:db:pool_size", int(self.system.pool_size))

    def flush_cache(self, cache: str) -> None:
        with self._lock:
            self.system.caches[cache].flush()

    def start(self) -> None:
        self._advance()  # one step, so that the first scrape has every series
        self._server, _ = start_http_server(self.port, addr="127.0.0.1", registry=self.registry)
        self._thread = threading.Thread(target=self._run, name="sim-exporter", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def _run(self) -> None:
        while not self._stop.wait(self._step):
            self._advance()

    def _advance(self) -> None:
        knobs = self._read_knobs()
        with self._lock:
            self._actuator.now = self.sim_time
            for knob, value in knobs.items():
                current = self._actuator.read([knob])[knob]
                if value is not None and getattr(current, "value", None) != value:
                    self._actuator.set(knob, value)
            dt = self._step * self._speed
            signals = self.system.step(self.sim_time, self.base_rps * self.load_factor, dt)
            self.sim_time += dt
            self._signals = signals
            for cache in self._requests:
                # Counters grow at real-time rates, as a real app's would.
                requests = signals[f"requests:{cache}"] * self._step
                self._requests[cache] += requests
                self._hits[cache] += requests * signals[f"hit:{cache}"]

    def _read_knobs(self) -> dict[KnobRef, float | None]:
        knobs: dict[KnobRef, float | None] = {}
        for name in DEPLOYMENTS:
            knob = KnobRef(KnobKind.DEPLOYMENT, name, NAMESPACE)
            knobs[knob] = float(self._kube.replicas("deployments", NAMESPACE, name))
        keys = [f"{NAMESPACE}:cache:ttl:{cache}" for cache in self.system.caches]
        keys.append(f"{NAMESPACE}:db:pool_size")
        try:
            values = self._redis.mget(keys)
        except redis.RedisError:
            # Redis is down: the application keeps its last configuration.
            values = [None] * len(keys)
        for key, raw in zip(keys, values, strict=True):
            knobs[KnobRef(KnobKind.CONFIG_KEY, key)] = None if raw is None else float(raw)
        return knobs

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            signals = dict(self._signals)
            requests = dict(self._requests)
            hits = dict(self._hits)
        labels = ["namespace", "deployment"]
        api = GaugeMetricFamily("crm_sim_api_p95_seconds", "API p95 latency", labels=labels)
        api.add_metric([NAMESPACE, "api"], signals.get("api_p95", 0.0))
        ml = GaugeMetricFamily("crm_sim_ml_p95_seconds", "ML p95 latency", labels=labels)
        ml.add_metric([NAMESPACE, "ml"], signals.get("ml_p95", 0.0))
        requested = CounterMetricFamily("crm_cache_requests", "cache requests", labels=["cache"])
        hit = CounterMetricFamily("crm_cache_hits", "cache hits", labels=["cache"])
        for cache in requests:
            requested.add_metric([cache], requests[cache])
            hit.add_metric([cache], hits[cache])
        pool = GaugeMetricFamily("crm_db_pool_usage", "DB pool usage")
        pool.add_metric([], signals.get("pool_usage", 0.0))
        return [api, ml, requested, hit, pool]
