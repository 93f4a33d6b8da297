"""The simulation loop: step the modelled system, then let a policy look and act, every tick.

The `rules` policy is the product itself: `autotuner.control.tick.tick` with the modelled system
as the metric source and the actuator, exactly as the daemon calls it against Prometheus and
Kubernetes. The simulator holds no decision logic for it. `hpa` is the Kubernetes HPA port on
the API and ML deployments, for comparison; `static` never changes anything.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

import numpy as np

from autotuner.control.tick import tick
from autotuner.core.model import KnobKind, KnobRef, Verdict, labels_of
from autotuner.core.rules import RuleSet
from autotuner.core.state import EngineState
from autotuner.sim.actuators import AppliedChange, SimActuator
from autotuner.sim.hpa import SYNC_PERIOD, HorizontalPodAutoscaler, HPASpec
from autotuner.sim.load import offered_rps, tick_times
from autotuner.sim.metrics import SimMetricSource, catalogue
from autotuner.sim.scenario import Scenario
from autotuner.sim.system import System

FloatArray = np.ndarray


class Policy(StrEnum):
    RULES = "rules"
    HPA = "hpa"
    STATIC = "static"


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


class HPAController:
    """One HPA per deployment on CPU utilisation, synced every 15 s as the controller is."""

    def __init__(
        self,
        specs: dict[str, HPASpec],
        system: System,
        source: SimMetricSource,
        actuator: SimActuator,
    ) -> None:
        self._hpas = {name: HorizontalPodAutoscaler(spec) for name, spec in specs.items()}
        self._system = system
        self._source = source
        self._actuator = actuator
        self._namespace = system.spec.namespace
        self._last_sync = -SYNC_PERIOD

    def control(self, now: float) -> None:
        if now - self._last_sync < SYNC_PERIOD - 1e-9:
            return
        self._last_sync = now
        for name, hpa in self._hpas.items():
            deployment = self._system.deployment(name)
            if deployment is None:
                continue
            labels = labels_of({"namespace": self._namespace, "deployment": name})
            utilisation = self._source.value(f"{name}_cpu_utilisation", labels, now)
            current = deployment.desired
            desired = hpa.reconcile(
                now, current, deployment.ready, len(deployment.starting), utilisation
            )
            if desired != current:
                self._actuator.set(KnobRef(KnobKind.DEPLOYMENT, name, self._namespace), desired)


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
    if policy is Policy.RULES:
        if ruleset is None:
            raise ValueError("the rules policy needs rule files: set `rules:` in the scenario")
        controller = RulesController(ruleset, source, actuator)
    elif policy is Policy.HPA:
        controller = HPAController(scenario.hpa_specs(), system, source, actuator)
    else:
        controller = StaticController()

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
    )
