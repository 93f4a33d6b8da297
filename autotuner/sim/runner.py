"""The simulation loop: step the modelled system, then let a policy look and act, every tick.

The `rules` policy is the product itself: `autotuner.control.tick.tick` with the modelled system
as the metric source and the actuator, exactly as the daemon calls it against Prometheus and
Kubernetes. The simulator holds no decision logic for it. `hpa` is the Kubernetes HPA port on
the API and ML deployments, for comparison; `static` never changes anything; `oracle` knows the
load ahead and is the lower bound the others are measured against (`oracle`).
"""

from __future__ import annotations

from array import array
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

import numpy as np

from autotuner.control.tick import tick
from autotuner.core.model import Verdict
from autotuner.core.rules import RuleSet
from autotuner.core.state import EngineState
from autotuner.sim.actuators import AppliedChange, SimActuator
from autotuner.sim.hpa_config import hpa_specs, rule_bounds
from autotuner.sim.hpa_controller import HPAController
from autotuner.sim.load import offered_rps, tick_times
from autotuner.sim.metrics import SimMetricSource, catalogue
from autotuner.sim.oracle import OracleController
from autotuner.sim.scenario import Scenario
from autotuner.sim.system import System

FloatArray = np.ndarray


class Policy(StrEnum):
    RULES = "rules"
    HPA = "hpa"
    STATIC = "static"
    ORACLE = "oracle"


class Controller(Protocol):
    def control(self, now: float) -> None: ...


class RulesController:
    """The product's own control cycle, through the same `tick` the daemon runs."""

    def __init__(self, ruleset: RuleSet, source: SimMetricSource, actuator: SimActuator) -> None:
        self._ruleset = ruleset
        self._source = source
        self._actuator = actuator
        self.state = EngineState()
        self.blocked = 0
        self.no_data_ticks = 0

    def control(self, now: float) -> None:
        report = tick(now, self._ruleset, self.state, self._source, [self._actuator])
        self.state = report.state
        self.blocked += sum(1 for d, _ in report.decisions if d.verdict is Verdict.BLOCKED)
        if any(e.no_data is not None for e in report.evaluations):
            self.no_data_ticks += 1


class StaticController:
    """Leaves every knob where the scenario set it: the cost of doing nothing."""

    def control(self, now: float) -> None:
        return None


@dataclass(frozen=True, slots=True)
class RunResult:
    scenario: str
    policy: Policy
    times: FloatArray
    signals: dict[str, FloatArray]
    changes: tuple[AppliedChange, ...]
    blocked_decisions: int
    no_data_ticks: int
    # The fewest replicas the policy would keep, per deployment it governs.
    floors: tuple[tuple[str, int], ...] = ()


def run(
    scenario: Scenario,
    policy: Policy,
    ruleset: RuleSet | None = None,
    progress: Callable[[float], None] | None = None,
) -> RunResult:
    """Simulate `scenario` under `policy`; `ruleset` is required for the `rules` policy."""
    settings = scenario.settings
    rng = np.random.default_rng(settings.seed)
    times = tick_times(settings.duration, settings.tick)
    load = offered_rps(scenario.load, times, rng)
    system = System(scenario.system, scenario.faults)
    series = catalogue(system.spec.namespace, list(system.caches))
    series_count = sum(len(defs) for defs in series.values())
    noise = rng.standard_normal((len(times), series_count))
    source = SimMetricSource(
        series, settings.tick, settings.metric_window, noise, settings.metric_noise, scenario.faults
    )
    actuator = SimActuator(system, policy.value)
    controller: Controller
    floors: tuple[tuple[str, int], ...] = ()
    if policy is Policy.RULES:
        if ruleset is None:
            raise ValueError("the rules policy needs rule files: set `rules:` in the scenario")
        controller = RulesController(ruleset, source, actuator)
        bounds = rule_bounds(ruleset, series, system.spec.namespace)
        floors = tuple((name, low) for name, (low, _) in sorted(bounds.items()))
    elif policy is Policy.HPA:
        specs = hpa_specs(scenario, ruleset, series)
        controller = HPAController(specs, system, source, actuator, series)
        floors = tuple((name, spec.min_replicas) for name, spec in specs.items())
    elif policy is Policy.ORACLE:
        # The HPA's bounds: the rules' unless the scenario sets them, so all compare alike.
        limits = {
            name: (spec.min_replicas, spec.max_replicas)
            for name, spec in hpa_specs(scenario, ruleset, series).items()
        }
        oracle = OracleController(scenario, times, load, system, actuator, limits)
        controller = oracle
        floors = oracle.floors
    else:
        controller = StaticController()
        floors = (("api", scenario.system.api.replicas), ("ml", scenario.system.ml.replicas))

    # Every step's signals, one step after another (the system names the same signals in the
    # same order each step), split into one array per signal at the end.
    names: list[str] = []
    rows = array("d")
    report_every = max(1, len(times) // 100)
    dt = settings.tick
    for step, (now, rps) in enumerate(zip(times.tolist(), load.tolist(), strict=True)):
        signals = system.step(now, rps, dt)
        if not names:
            names = list(signals)
        rows.extend(signals.values())
        source.observe(step, signals)
        actuator.now = now
        controller.control(now)
        if progress is not None and step % report_every == 0:
            progress(step / len(times))
    if progress is not None:
        progress(1.0)
    by_step = np.frombuffer(rows, dtype=np.float64).reshape(len(times), len(names))
    recorded: dict[str, FloatArray] = dict(zip(names, by_step.T.copy(), strict=True))
    return RunResult(
        scenario=scenario.name,
        policy=policy,
        times=times,
        signals=recorded,
        changes=tuple(actuator.changes),
        blocked_decisions=controller.blocked if isinstance(controller, RulesController) else 0,
        no_data_ticks=controller.no_data_ticks if isinstance(controller, RulesController) else 0,
        floors=floors,
    )
