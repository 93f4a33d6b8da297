"""The embedded default: the bundled modelled system, live in process, on an accelerated clock.

`autotuner run` without a Prometheus URL drives this instead of Prometheus, Kubernetes and Redis:
the same `Controller` and `tick`, with the simulator's metric source and actuator. The model is
advanced to the controller's clock just before each fetch, so that, as in production, the
controller sees the world as it is at the moment it looks.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np

from autotuner.adapters.sql_store import ENGINE_STATE, AuditRecord, SqlStore
from autotuner.core.model import Decision, MetricAnswer, MetricQuery, Outcome, Series
from autotuner.runtime.settings import AllowList
from autotuner.sim.actuators import SimActuator
from autotuner.sim.load import Constant, FlashCrowd, LoadSpec, offered_rps, tick_times
from autotuner.sim.metrics import SimMetricSource, catalogue
from autotuner.sim.scenario import Scenario, SimSettings
from autotuner.sim.system import System, SystemSpec


def default_scenario() -> Scenario:
    """Two hours of steady traffic with a fourfold flash crowd after twenty minutes."""
    return Scenario(
        name="embedded-flash-crowd",
        settings=SimSettings(duration=2 * 3600.0, tick=15.0, seed=7),
        load=LoadSpec(
            base=Constant(300.0),
            events=(FlashCrowd(start=1200.0, multiplier=4.0, ramp=120.0, hold=1200.0),),
            noise=0.05,
        ),
        system=SystemSpec(),
        description="the embedded default of `autotuner run`",
    )


def embedded_allow_list(scenario: Scenario) -> AllowList:
    """Everything the modelled system has, for when no allow-list was configured."""
    namespace = scenario.system.namespace
    return AllowList(namespaces=(namespace,), workloads=("*",), key_prefixes=(f"{namespace}:",))


class AcceleratedClock:
    """Wall time at start, then `speed` simulated seconds per real second.

    Time starts to run at the first reading (the first cycle), so that however long the start
    takes, the simulation is seen from its beginning.
    """

    def __init__(self, speed: float, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.origin = time.time()
        self._speed = speed
        self._monotonic = monotonic
        self._started: float | None = None

    def now(self) -> float:
        current = self._monotonic()
        if self._started is None:
            self._started = current
        return self.origin + (current - self._started) * self._speed

    def wall_time(self, simulated: float) -> float:
        """The wall time at which the clock read `simulated`."""
        return self.origin + (simulated - self.origin) / self._speed

    def simulated_time(self, wall: float) -> float:
        return self.origin + (wall - self.origin) * self._speed


SIMULATED_TIME = "simulated_time"


class WallTimeAudit:
    """The audit store of an accelerated run: decisions in wall time, simulated time as data.

    The controller runs on the simulated clock, hours ahead of the wall after a while; the
    audit is read by `autotuner history --since 30m` and by people, on the wall's. Each
    decision is written at the wall time it was made, its outcome carries the simulated
    time it was made at (`simulated_time`, UTC), and what the controller reads back is on
    its own clock again.
    """

    def __init__(self, store: SqlStore, clock: AcceleratedClock) -> None:
        self._store = store
        self._clock = clock
        self._simulated: dict[int, float] = {}

    def record_intent(self, decision: Decision) -> int:
        intent = self._store.record_intent(
            decision._replace(time=self._clock.wall_time(decision.time))
        )
        self._simulated[intent] = decision.time
        return intent

    def record_outcome(self, intent_id: int, outcome: Outcome) -> None:
        simulated = self._simulated.pop(intent_id, None)
        if simulated is not None:
            stamp = datetime.fromtimestamp(simulated, UTC).isoformat(timespec="seconds")
            outcome = outcome._replace(extra={**outcome.extra, SIMULATED_TIME: stamp})
        self._store.record_outcome(intent_id, outcome)

    def history(self, *, since: float | None = None) -> list[AuditRecord]:
        wall_since = None if since is None else self._clock.wall_time(since)
        return [
            dataclasses.replace(
                record,
                decision=record.decision._replace(
                    time=self._clock.simulated_time(record.decision.time)
                ),
            )
            for record in self._store.history(since=wall_since)
        ]

    def delete_older_than(self, cutoff: float) -> int:
        return self._store.delete_older_than(self._clock.wall_time(cutoff))

    def load_state(self) -> Mapping[str, Any] | None:
        return self._store.load_state()

    def save_state(
        self, document: Mapping[str, Any], saved_at: float, name: str = ENGINE_STATE
    ) -> None:
        self._store.save_state(document, self._clock.wall_time(saved_at), name)


class LiveSimulation:
    """The modelled system of a scenario, stepped forward on demand.

    Times given to it are the controller's clock; scenario time is that minus `origin`.
    """

    def __init__(self, scenario: Scenario, origin: float) -> None:
        settings = scenario.settings
        rng = np.random.default_rng(settings.seed)
        self.scenario = scenario
        self.origin = origin
        self._times: list[float] = tick_times(settings.duration, settings.tick).tolist()
        self._load: list[float] = offered_rps(scenario.load, np.asarray(self._times), rng).tolist()
        self._dt = settings.tick
        self.system = System(scenario.system, scenario.faults)
        series = catalogue(self.system.spec.namespace, list(self.system.caches))
        series_count = sum(len(definitions) for definitions in series.values())
        noise = rng.standard_normal((len(self._times), series_count))
        self._source = SimMetricSource(
            series,
            settings.tick,
            settings.metric_window,
            noise,
            settings.metric_noise,
            scenario.faults,
        )
        self.actuator = SimActuator(self.system, "rules")
        self._step = 0

    @property
    def finished(self) -> bool:
        return self._step >= len(self._times)

    @property
    def namespace(self) -> str:
        return self.system.spec.namespace

    def advance_to(self, now: float) -> None:
        scenario_now = now - self.origin
        while self._step < len(self._times) and self._times[self._step] <= scenario_now:
            step_time = self._times[self._step]
            signals = self.system.step(step_time, self._load[self._step], self._dt)
            self._source.observe(self._step, signals)
            self._step += 1
        self.actuator.now = scenario_now

    def fetch(self, queries: Sequence[MetricQuery], at: float) -> Mapping[str, MetricAnswer]:
        """The MetricSource port, on the controller's clock."""
        self.advance_to(at)
        answers = self._source.fetch(queries, at - self.origin)
        return {name: _shifted(answer, self.origin) for name, answer in answers.items()}


def _shifted(answer: MetricAnswer, offset: float) -> MetricAnswer:
    if not isinstance(answer, Series):
        return answer
    return Series(tuple(s._replace(timestamp=s.timestamp + offset) for s in answer.samples))
