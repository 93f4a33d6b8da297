"""The oracle: a lower bound on replicas and violations, not a controller to ship.

It knows what no controller can: the run's whole offered-load array and its faults. For every
step it finds, with the model's own functions (`api_step`, `ml_step`, `pool_step`), the fewest
ready replicas, within the HPA's bounds (the rules' unless the scenario sets them), that keep up
(build no backlog) with p95 within the SLO at that step:

- ML: the fewest replicas whose `ml_step` keeps up within the ML SLO.
- API: the fewest pods whose `api_step` keeps up within the API SLO, with the database and ML
  waits that pod count would see: the pool for that many pods (below) through `pool_step`, and
  the ML mean at the ML replicas above, combined by the system's own `downstream_seconds`.
- Pods lost to a `lose_replicas` fault are added on top for the start-up delay the Deployment
  takes to recreate them.

Where no count meets the SLO (a database slowed past what any pool can serve, a peak past the
maximum), the one with the lowest p95 is taken, the fewest among equals. Counts are searched
from the previous step's answer up or down, which is exact while p95 falls as replicas are added.

Pods asked for at t are ready at t + start-up delay, and removed pods go at once; so at each tick
the oracle asks for the largest need over the coming start-up window, which pre-scales exactly one
delay before a rise and scales in as soon as fewer pods meet the SLO over the whole window. When
the system carries a backlog anyway (at the start of a run, after an infeasible spell), it asks
for at least the fewest that clear it within the SLO once new pods are ready.

The query rate each step reaches the database with is known ahead too: caches depend only on the
load, their TTLs and flushes, so a shadow copy of the system, run once over the whole load with
the oracle's TTLs, gives it. TTLs: each class's update interval, within the shipped rules'
bounds, the longest TTL with no stale hits and so the highest hit rate at none. Pool size: the
one whose pool time (wait plus query time, what a request pays) is least within the connection
budget (max_connections / pods), searched with `pool_step`; gains under a microsecond count as
ties, broken toward the pool already set, then toward the smaller.

It acts through the simulator's actuator like the other policies, so its changes are recorded
and counted. It is a bound, not a controller: it reads the future, sees the model's exact
state without noise or windows, and re-plans for free every tick.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import numpy as np

from autotuner.core.model import KnobKind, KnobRef
from autotuner.sim.actuators import SimActuator
from autotuner.sim.api import api_step
from autotuner.sim.cache import CacheClass
from autotuner.sim.faults import Fault, FaultKind
from autotuner.sim.ml import MLReading, ml_step
from autotuner.sim.pool import PoolReading, pool_step
from autotuner.sim.scenario import Scenario
from autotuner.sim.system import Deployment, System, downstream_seconds, span_factor

# The bounds the shipped cache rules keep every TTL within (rules/cache.yaml), seconds.
MIN_TTL = 60.0
MAX_TTL = 86400.0
# A larger pool must shorten the pool time by more than this (seconds) to be preferred.
POOL_TIE = 1e-6


def best_ttl(cache: CacheClass) -> float:
    """The longest TTL that serves no stale hit: the update interval, within the bounds."""
    return min(MAX_TTL, max(MIN_TTL, cache.update_interval))


# A candidate replica count's p95 at one step, and whether it keeps up (builds no backlog).
Evaluation = tuple[float, bool]


def fewest_meeting(
    evaluate: Callable[[int], Evaluation], slo: float, low: int, high: int, start: int
) -> int:
    """The fewest replicas in [low, high] that keep up with p95 within `slo`, from `start` on.

    A count that builds a backlog does not meet the SLO even while one step's p95 is within it:
    the backlog carries into the next steps. When no count meets it, the one with the lowest
    p95 is taken (the fewest among equals).
    """

    def meets(count: int) -> bool:
        p95, keeps_up = evaluate(count)
        return keeps_up and p95 <= slo

    count = min(high, max(low, start))
    if meets(count):
        while count > low and meets(count - 1):
            count -= 1
        return count
    while count < high:
        count += 1
        if meets(count):
            return count
    return min(range(low, high + 1), key=lambda n: evaluate(n)[0])


def _limits(limits: Mapping[str, tuple[int, int]], name: str) -> tuple[int, int]:
    if name not in limits:
        raise ValueError(f"the oracle has no replica limits for deployment {name!r}")
    return limits[name]


def _lost_pods(
    faults: tuple[Fault, ...], target: str, times: np.ndarray, delay: float
) -> np.ndarray:
    """Per step, pods of `target` lost to faults and not yet recreated."""
    lost = np.zeros(len(times), dtype=np.int64)
    for fault in faults:
        if fault.kind is not FaultKind.LOSE_REPLICAS or (fault.target or "api") != target:
            continue
        # The fault fires at the first step at or after its moment; the recreated pods are ready
        # at the first step at or after that step plus the start-up delay.
        fired = int(np.searchsorted(times, fault.at, side="left"))
        if fired >= len(times):
            continue
        back = int(np.searchsorted(times, times[fired] + delay, side="left"))
        lost[fired:back] += fault.count
    return lost


def _shadow_query_rates(
    scenario: Scenario, times: list[float], load: list[float], dt: float
) -> list[float]:
    """Every step's query rate with the oracle's TTLs, set after the first step as the oracle does."""
    shadow = System(scenario.system, scenario.faults)
    rates: list[float] = []
    for step, (now, rps) in enumerate(zip(times, load, strict=True)):
        rates.append(shadow.step(now, rps, dt)["query_rate"])
        if step == 0:
            for cache in shadow.caches.values():
                cache.set_ttl(best_ttl(cache.spec))
    return rates


class OracleController:
    """Sets each tick the fewest API and ML replicas that meet the SLOs, knowing the load ahead."""

    def __init__(
        self,
        scenario: Scenario,
        times: np.ndarray,
        load: np.ndarray,
        system: System,
        actuator: SimActuator,
        limits: Mapping[str, tuple[int, int]],
    ) -> None:
        self._system = system
        self._actuator = actuator
        self._dt = scenario.settings.tick
        self._spec = system.spec
        self._slos = scenario.slos
        self._api_limits = _limits(limits, "api")
        self._ml_limits = _limits(limits, "ml")
        # The fewest replicas it keeps, per deployment, as the report shows for every policy.
        self.floors = (("api", self._api_limits[0]), ("ml", self._ml_limits[0]))
        namespace = system.spec.namespace
        self._api_knob = KnobRef(KnobKind.DEPLOYMENT, "api", namespace)
        self._ml_knob = KnobRef(KnobKind.DEPLOYMENT, "ml", namespace)
        self._pool_knob = KnobRef(KnobKind.CONFIG_KEY, f"{namespace}:db:pool_size")
        self._ttl_knobs = tuple(
            (KnobRef(KnobKind.CONFIG_KEY, f"{namespace}:cache:ttl:{c.name}"), best_ttl(c))
            for c in system.spec.caches
        )
        self._ttls_set = False
        self._times = [float(t) for t in times]
        self._load = [float(r) for r in load]
        self._query_rates = _shadow_query_rates(scenario, self._times, self._load, self._dt)
        faults = scenario.faults
        slow_database = tuple(f for f in faults if f.kind is FaultKind.SLOW_DATABASE)
        slow_deploy = tuple(f for f in faults if f.kind is FaultKind.SLOW_DEPLOY)
        self._slowdowns = [span_factor(slow_database, t) for t in self._times]
        self._cpu_seconds = [
            system.spec.api.cpu_seconds * span_factor(slow_deploy, t) for t in self._times
        ]
        # The pool size found last for each pod count: where the next search starts.
        self._pool_hints: dict[int, int] = {}
        api_delay = system.spec.api.startup_delay
        ml_delay = system.spec.ml_startup_delay
        self._api_ahead = self._steps_ahead(api_delay)
        self._ml_ahead = self._steps_ahead(ml_delay)
        # Per step: the fewest ML replicas and their mean response time, then the fewest API
        # pods given those; pods lost to faults and not yet back are added on top.
        self._ml_fewest: list[int] = []
        self._ml_means: list[float] = []
        count = self._ml_limits[0]
        for step in range(len(self._load)):
            count = self._fewest_ml(step, 0.0, count)
            self._ml_fewest.append(count)
            self._ml_means.append(self._ml_reading(step, count, 0.0)[1])
        self._api_fewest: list[int] = []
        count = self._api_limits[0]
        for step in range(len(self._load)):
            count = self._fewest_api(step, 0.0, count)
            self._api_fewest.append(count)
        self._ml_need = self._with_lost(self._ml_fewest, faults, "ml", times, ml_delay)
        self._api_need = self._with_lost(self._api_fewest, faults, "api", times, api_delay)

    def _steps_ahead(self, delay: float) -> int:
        """Steps from asking for a pod to the first step it is ready in."""
        return max(1, math.ceil(delay / self._dt - 1e-9))

    def _with_lost(
        self,
        fewest: list[int],
        faults: tuple[Fault, ...],
        target: str,
        times: np.ndarray,
        delay: float,
    ) -> list[int]:
        high = self._ml_limits[1] if target == "ml" else self._api_limits[1]
        lost = _lost_pods(faults, target, times, delay).tolist()
        return [min(high, count + extra) for count, extra in zip(fewest, lost, strict=True)]

    def _ml_reading(self, step: int, replicas: int, backlog: float) -> MLReading:
        rate = self._load[step] * self._spec.ml.share
        return ml_step(self._spec.ml, rate, replicas, self._system.batch_size, backlog, self._dt)

    def _fewest_ml(self, step: int, backlog: float, start: int) -> int:
        def evaluate(replicas: int) -> Evaluation:
            p95, _, _, left, _ = self._ml_reading(step, replicas, backlog)
            return p95, left <= 0.0 or left < backlog

        low, high = self._ml_limits
        return fewest_meeting(evaluate, self._slos.ml_p95, low, high, start)

    def _fewest_api(self, step: int, backlog: float, start: int) -> int:
        rps = self._load[step]
        query_rate = self._query_rates[step]
        per_request = query_rate / rps if rps > 0 else 0.0
        slowdown = self._slowdowns[step]
        cpu_seconds = self._cpu_seconds[step]
        ml_share = self._spec.ml.share
        ml_mean = self._ml_means[step]
        spec = self._spec.api
        dt = self._dt

        def evaluate(pods: int) -> Evaluation:
            _, pool = self._best_pool(pods, pods, query_rate, slowdown)
            downstream = downstream_seconds(per_request, pool, ml_share, ml_mean)
            p95, _, _, left, _ = api_step(spec, rps, pods, cpu_seconds, downstream, backlog, dt)
            return p95, (left <= 0.0 or left < backlog) and pool.backlog == 0.0

        low, high = self._api_limits
        return fewest_meeting(evaluate, self._slos.api_p95, low, high, start)

    def _best_pool(
        self, pods: int, asked: int, query_rate: float, slowdown: float, backlog: float = 0.0
    ) -> tuple[int, PoolReading]:
        """The pool size with the least pool time for `pods` ready pods, within the budget of
        `asked` pods, and its reading; searched down, then up, from the last answer."""
        database = self._spec.database
        budget = max(1, database.max_connections // max(1, asked))
        dt = self._dt

        def reading(size: int) -> PoolReading:
            return pool_step(database, query_rate, pods, size, slowdown, backlog, dt)

        start = min(budget, max(1, self._pool_hints.get(pods, database.pool_size)))
        size = start
        best = reading(size)
        while size > 1:
            smaller = reading(size - 1)
            if smaller.time_in_system > best.time_in_system + POOL_TIE:
                break
            size -= 1
            best = smaller
        if size == start:
            while size < budget:
                larger = reading(size + 1)
                if larger.time_in_system >= best.time_in_system - POOL_TIE:
                    break
                size += 1
                best = larger
        self._pool_hints[pods] = size
        return size, best

    def _wanted(
        self,
        need: list[int],
        step: int,
        ahead: int,
        backlog: float,
        fewest: Callable[[int, float, int], int],
    ) -> int:
        """The largest need over the coming start-up window; with a backlog to clear, at least
        the fewest replicas that clear it once new ones are ready."""
        wanted = max(need[step + 1 : step + 1 + ahead])
        if backlog > 0.0:
            ready_at = min(len(need) - 1, step + ahead)
            wanted = max(wanted, fewest(ready_at, backlog, need[ready_at]))
        return wanted

    def _scale(self, knob: KnobRef, deployment: Deployment, wanted: int) -> None:
        if deployment.desired != wanted:
            self._actuator.set(knob, wanted)

    def control(self, now: float) -> None:
        step = round(now / self._dt)
        if not self._ttls_set:
            self._ttls_set = True
            for knob, ttl in self._ttl_knobs:
                self._actuator.set(knob, ttl)
        if step >= len(self._load) - 1:
            return
        system = self._system
        self._scale(
            self._ml_knob,
            system.ml,
            self._wanted(self._ml_need, step, self._ml_ahead, system.ml_backlog, self._fewest_ml),
        )
        self._scale(
            self._api_knob,
            system.api,
            self._wanted(
                self._api_need, step, self._api_ahead, system.api_backlog, self._fewest_api
            ),
        )
        # The pool for the pods ready at the next step and the queries waiting now, within the
        # budget of all pods asked for; the current one stays while it is as good (within
        # POOL_TIE), so the pool does not follow every change of the pod count.
        following = self._times[step + 1]
        ready_next = system.api.ready + sum(1 for due in system.api.starting if due <= following)
        if ready_next <= 0:
            return
        query_rate = self._query_rates[step + 1]
        slowdown = self._slowdowns[step + 1]
        backlog = system.pool_backlog
        size, best = self._best_pool(ready_next, system.api.desired, query_rate, slowdown, backlog)
        current = system.pool_size
        if size == current:
            return
        budget = self._spec.database.max_connections // max(1, system.api.desired)
        if current <= budget:
            held = pool_step(
                self._spec.database, query_rate, ready_next, current, slowdown, backlog, self._dt
            )
            if held.time_in_system <= best.time_in_system + POOL_TIE:
                return
        self._actuator.set(self._pool_knob, size)
