"""The modelled system: API, caches, database pools and ML service, advanced one step at a time.

Each step, in order: instant faults fire, starting pods that are due become ready, then load flows
through the caches (misses become queries), the pools and database, the ML service, and last the
API, whose service time includes the time it spends waiting on the database and the ML service.
Knob changes made between steps act from the next step.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from autotuner.sim.api import APISpec, api_step
from autotuner.sim.cache import ORIGIN_TTLS, CacheClass, CacheState
from autotuner.sim.faults import Fault, FaultKind
from autotuner.sim.ml import MLSpec, ml_step
from autotuner.sim.pool import DatabaseSpec, PoolReading, pool_step


def origin_caches() -> tuple[CacheClass, ...]:
    """The origin document's L2 cache classes with their TTLs, and plausible traffic shapes."""
    # keys, Zipf exponent, share of API requests, update interval (s)
    shapes = {
        "user_sessions": (50000, 0.8, 0.35, 3600.0),
        "api_responses": (20000, 1.0, 0.30, 1200.0),
        "ml_predictions": (30000, 0.9, 0.15, 7200.0),
        "campaign_data": (2000, 1.1, 0.10, 3600.0),
        "transaction_summary": (20000, 0.8, 0.10, 1800.0),
    }
    return tuple(
        CacheClass(name, ttl, keys, zipf, share, update)
        for name, ttl in ORIGIN_TTLS.items()
        for keys, zipf, share, update in [shapes[name]]
    )


@dataclass(frozen=True, slots=True)
class SystemSpec:
    namespace: str = "crm"
    api: APISpec = field(default_factory=APISpec)
    ml: MLSpec = field(default_factory=MLSpec)
    ml_startup_delay: float = 90.0
    caches: tuple[CacheClass, ...] = field(default_factory=origin_caches)
    database: DatabaseSpec = field(default_factory=DatabaseSpec)


class Deployment:
    """Replicas of one workload: ready pods, and pods starting that will be ready at set times."""

    __slots__ = ("name", "ready", "starting", "startup_delay")

    def __init__(self, name: str, replicas: int, startup_delay: float) -> None:
        self.name = name
        self.ready = replicas
        self.starting: list[float] = []
        self.startup_delay = startup_delay

    @property
    def desired(self) -> int:
        return self.ready + len(self.starting)

    def scale(self, replicas: int, now: float) -> None:
        """Add pods that start now, or remove pods: starting ones first, as a ReplicaSet does."""
        change = replicas - self.desired
        if change > 0:
            self.starting.extend([now + self.startup_delay] * change)
            return
        for _ in range(-change):
            if self.starting:
                self.starting.pop()
            elif self.ready > 0:
                self.ready -= 1

    def lose(self, count: int, now: float) -> None:
        """Pods die; the controller recreates them, so they come back after the start-up delay."""
        lost = min(count, self.ready)
        self.ready -= lost
        for _ in range(lost):
            bisect.insort(self.starting, now + self.startup_delay)

    def advance(self, now: float) -> None:
        due = bisect.bisect_right(self.starting, now)
        if due:
            self.ready += due
            del self.starting[:due]


class System:
    """The modelled system's mutable state and one `step` that advances it."""

    def __init__(self, spec: SystemSpec, faults: tuple[Fault, ...] = ()) -> None:
        self.spec = spec
        self.faults = faults
        self.api = Deployment("api", spec.api.replicas, spec.api.startup_delay)
        self.ml = Deployment("ml", spec.ml.replicas, spec.ml_startup_delay)
        self.caches = {c.name: CacheState(c) for c in spec.caches}
        self.pool_size = spec.database.pool_size
        self.batch_size = spec.ml.batch_size
        self.api_backlog = 0.0
        self.ml_backlog = 0.0
        self.pool_backlog = 0.0
        self.last_step = -1.0
        self._slow_database = tuple(f for f in faults if f.kind is FaultKind.SLOW_DATABASE)
        self._slow_deploy = tuple(f for f in faults if f.kind is FaultKind.SLOW_DEPLOY)
        self._instant_faults = tuple(f for f in faults if f.kind not in _SPAN_EFFECTS)
        # Per cache class: its state, its share of requests, and its signals' names, so that a
        # step does not format them again.
        self._cache_signals = tuple(
            (
                cache,
                cache.spec.share,
                f"hit:{name}",
                f"stale:{name}",
                f"ttl:{name}",
                f"ttl_target:{name}",
                f"memory:{name}",
                f"requests:{name}",
            )
            for name, cache in self.caches.items()
        )

    def deployment(self, name: str) -> Deployment | None:
        return {"api": self.api, "ml": self.ml}.get(name)

    def _fire_instant_faults(self, now: float) -> None:
        for fault in self._instant_faults:
            if not fault.fires_between(self.last_step, now):
                continue
            if fault.kind is FaultKind.LOSE_REPLICAS:
                target = self.deployment(fault.target or "api")
                if target is not None:
                    target.lose(fault.count, now)
            elif fault.kind is FaultKind.FLUSH_CACHE:
                for name, cache in self.caches.items():
                    if not fault.target or fault.target == name:
                        cache.flush()

    def step(self, now: float, rps: float, dt: float) -> dict[str, float]:
        """Advance to `now` at `rps` offered requests per second; returns this step's signals."""
        self._fire_instant_faults(now)
        self.last_step = now
        self.api.advance(now)
        self.ml.advance(now)
        spec = self.spec
        signals: dict[str, float] = {"load_rps": rps}

        misses = 0.0
        for cache, share, hit, stale, ttl, ttl_target, memory, requests in self._cache_signals:
            class_rps = rps * share
            hit_rate, stale_share, memory_bytes, misses_per_second = cache.step(class_rps, dt)
            misses += misses_per_second
            signals[hit] = hit_rate
            signals[stale] = stale_share
            signals[ttl] = cache.effective_ttl
            signals[ttl_target] = cache.target_ttl
            signals[memory] = memory_bytes
            signals[requests] = class_rps

        database = spec.database
        query_rate = rps * database.queries_per_request + misses * database.queries_per_miss
        pool = pool_step(
            database,
            query_rate,
            self.api.ready,
            self.pool_size,
            span_factor(self._slow_database, now),
            self.pool_backlog,
            dt,
        )
        self.pool_backlog = pool.backlog

        ml_rps = rps * spec.ml.share
        ml_p95, ml_mean, ml_utilisation, self.ml_backlog, _ = ml_step(
            spec.ml, ml_rps, self.ml.ready, self.batch_size, self.ml_backlog, dt
        )

        queries_per_request = query_rate / rps if rps > 0 else 0.0
        downstream = downstream_seconds(queries_per_request, pool, spec.ml.share, ml_mean)
        api_p95, api_mean, api_utilisation, self.api_backlog, api_dropped = api_step(
            spec.api,
            rps,
            self.api.ready,
            spec.api.cpu_seconds * span_factor(self._slow_deploy, now),
            downstream,
            self.api_backlog,
            dt,
        )

        api_replicas = self.api.desired
        connections = api_replicas * self.pool_size
        signals["api_p95"] = api_p95
        signals["api_mean"] = api_mean
        signals["api_utilisation"] = api_utilisation
        signals["api_dropped"] = api_dropped
        signals["api_ready"] = float(self.api.ready)
        signals["api_replicas"] = float(api_replicas)
        signals["ml_p95"] = ml_p95
        signals["ml_rps"] = ml_rps
        signals["ml_utilisation"] = ml_utilisation
        signals["ml_ready"] = float(self.ml.ready)
        signals["ml_replicas"] = float(self.ml.desired)
        signals["ml_batch"] = float(self.batch_size)
        signals["pool_size"] = float(self.pool_size)
        signals["pool_usage"] = pool.usage
        signals["pool_wait"] = pool.wait
        signals["query_seconds"] = pool.query_seconds
        signals["query_rate"] = query_rate
        signals["connections"] = float(connections)
        signals["over_budget"] = 1.0 if connections > database.max_connections else 0.0
        return signals


def downstream_seconds(
    queries_per_request: float, pool: PoolReading, ml_share: float, ml_mean: float
) -> float:
    """Seconds an API request spends waiting on the database and the ML service."""
    return queries_per_request * (pool.wait + pool.query_seconds) + ml_share * ml_mean


def span_factor(faults: tuple[Fault, ...], now: float) -> float:
    """The product of the factors of those `faults` in effect at `now` (1.0 when none is)."""
    factor = 1.0
    for fault in faults:
        if fault.active(now):
            factor *= fault.factor
    return factor


_SPAN_EFFECTS = frozenset({FaultKind.SLOW_DATABASE, FaultKind.SLOW_DEPLOY, FaultKind.METRIC_OUTAGE})
