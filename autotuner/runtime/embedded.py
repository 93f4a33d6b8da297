"""The embedded default: the bundled modelled system, live in process, on an accelerated clock.

`autotuner run` without a Prometheus URL drives this instead of Prometheus, Kubernetes and Redis:
the same `Controller` and `tick`, with the simulator's metric source and actuator. The model is
advanced to the controller's clock just before each fetch, so that, as in production, the
controller sees the world as it is at the moment it looks.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from autotuner.core.model import MetricAnswer, MetricQuery, Series
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
