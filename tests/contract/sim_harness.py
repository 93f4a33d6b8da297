"""The simulator's harnesses for the MetricSource and Actuator contract suites (tests/contract).

The side door to the simulator's backend is the modelled system itself: a knob is set up, or
changed by "another writer", by writing the model's state directly, and the stored value is
read from it. Known metric values are the model's own signals after a step, read through a
window one step long, without noise, so the value the backend holds is the signal itself.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import numpy as np

from autotuner.core.model import KnobKind, KnobRef, Labels, MetricQuery, labels_of
from autotuner.sim.actuators import SimActuator
from autotuner.sim.cache import CacheClass
from autotuner.sim.faults import Fault, FaultKind
from autotuner.sim.metrics import SimMetricSource, catalogue
from autotuner.sim.system import System, SystemSpec

NAMESPACE = "crm"
TICK = 15.0
WARM_UP_STEPS = 8
REQUESTS_PER_SECOND = 200.0
# The simulated metrics backend stops answering from this moment: a metric outage fault.
STOPPED_AT = 1_000_000.0

# Two classes with traffic, and one that no request reads: its hit ratio is 0/0. Listed out of
# label order, as answers must come sorted however the model lists its series.
SERVED = ("session", "profile")
UNREAD = "cold"
CACHES = (
    CacheClass("profile", 900.0, keys=5000, share=0.3),
    CacheClass("session", 1800.0, keys=5000, share=0.2),
    CacheClass(UNREAD, 600.0, keys=5000, share=0.0),
)


class SimMetricSourceHarness:
    """A simulated system stepped a few times, its cache hit ratios exposed under four names."""

    def __init__(self) -> None:
        self._system = System(SystemSpec(namespace=NAMESPACE, caches=CACHES))
        hit_ratio = "cache_hit_ratio"
        series = {
            hit_ratio: catalogue(NAMESPACE, SERVED)[hit_ratio],
            "hit_ratio_with_unread": catalogue(NAMESPACE, (*SERVED, UNREAD))[hit_ratio],
            "unread_hit_ratio": catalogue(NAMESPACE, (UNREAD,))[hit_ratio],
            # As the shipped rules' query does on a system without cache classes.
            "hit_ratio_without_caches": catalogue(NAMESPACE, ())[hit_ratio],
        }
        columns = sum(len(definitions) for definitions in series.values())
        outage = Fault(FaultKind.METRIC_OUTAGE, at=STOPPED_AT, duration=math.inf)
        self.source = SimMetricSource(
            series, TICK, TICK, np.zeros((WARM_UP_STEPS, columns)), 0.0, [outage]
        )
        self._now = 0.0
        self._signals: Mapping[str, float] = {}
        for step in range(WARM_UP_STEPS):
            self._now = step * TICK
            self._signals = self._system.step(self._now, REQUESTS_PER_SECOND, TICK)
            self.source.observe(step, self._signals)

    def now(self) -> float:
        return self._now

    def _held(self, caches: tuple[str, ...]) -> dict[Labels, float]:
        return {labels_of({"cache": cache}): self._signals[f"hit:{cache}"] for cache in caches}

    def labelled(self) -> tuple[MetricQuery, Mapping[Labels, float]]:
        return MetricQuery("cache_hit_ratio", "hits / requests per cache"), self._held(SERVED)

    def empty(self) -> MetricQuery:
        return MetricQuery("hit_ratio_without_caches", "hits / requests per cache")

    def not_a_number(self) -> MetricQuery:
        return MetricQuery("unread_hit_ratio", "hits / requests of a cache no request reads")

    def partly_undefined(self) -> tuple[MetricQuery, Mapping[Labels, float], Labels]:
        query = MetricQuery("hit_ratio_with_unread", "hits / requests per cache")
        return query, self._held(SERVED), labels_of({"cache": UNREAD})

    def broken(self) -> MetricQuery:
        return MetricQuery("no_such_metric", "a metric the simulated system does not expose")

    def stop_backend(self) -> None:
        self._now = STOPPED_AT


@contextmanager
def sim_metric_source_harness() -> Iterator[SimMetricSourceHarness]:
    yield SimMetricSourceHarness()


class SimActuatorHarness:
    """The modelled system's knobs, handed out in a set order as the checks ask for new ones.

    The model has two deployments and seven config keys, so one order starts with the
    deployments and one with the keys: between them every check meets both kinds.
    """

    def __init__(self, deployments_first: bool) -> None:
        self._system = System(SystemSpec(namespace=NAMESPACE))
        self.actuator = SimActuator(self._system)
        deployments = [KnobRef(KnobKind.DEPLOYMENT, name, NAMESPACE) for name in ("api", "ml")]
        keys = [
            KnobRef(KnobKind.CONFIG_KEY, f"{NAMESPACE}:cache:ttl:{cache}")
            for cache in self._system.caches
        ] + [
            KnobRef(KnobKind.CONFIG_KEY, f"{NAMESPACE}:db:pool_size"),
            KnobRef(KnobKind.CONFIG_KEY, f"{NAMESPACE}:ml:batch_size"),
        ]
        self._unused = deployments + keys if deployments_first else keys + deployments
        self._deployments_first = deployments_first

    def new_knob(self, value: float) -> KnobRef:
        knob = self._unused.pop(0)
        self.write_behind(knob, value)
        return knob

    def absent_knob(self) -> KnobRef:
        name = f"absent-{uuid.uuid4().hex[:8]}"
        if self._deployments_first:
            return KnobRef(KnobKind.DEPLOYMENT, name, NAMESPACE)
        return KnobRef(KnobKind.CONFIG_KEY, f"{NAMESPACE}:cache:ttl:{name}")

    def foreign_knob(self) -> KnobRef:
        return KnobRef(KnobKind.STATEFULSET, "api", NAMESPACE)

    def write_behind(self, knob: KnobRef, value: float) -> None:
        system = self._system
        deployment = system.deployment(knob.name) if knob.is_workload else None
        if deployment is not None:
            deployment.scale(int(value), now=0.0)
        elif knob.name.endswith(":db:pool_size"):
            system.pool_size = int(value)
        elif knob.name.endswith(":ml:batch_size"):
            system.batch_size = int(value)
        else:
            system.caches[knob.name.rpartition(":")[2]].set_ttl(value)

    def value_of(self, knob: KnobRef) -> float | None:
        system = self._system
        if knob.is_workload:
            deployment = system.deployment(knob.name)
            return None if deployment is None else float(deployment.desired)
        if knob.name.endswith(":db:pool_size"):
            return float(system.pool_size)
        if knob.name.endswith(":ml:batch_size"):
            return float(system.batch_size)
        cache = system.caches.get(knob.name.rpartition(":")[2])
        return None if cache is None else cache.target_ttl


@contextmanager
def sim_deployments_first_harness() -> Iterator[SimActuatorHarness]:
    yield SimActuatorHarness(deployments_first=True)


@contextmanager
def sim_keys_first_harness() -> Iterator[SimActuatorHarness]:
    yield SimActuatorHarness(deployments_first=False)
