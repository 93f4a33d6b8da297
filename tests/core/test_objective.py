"""Objective rules through `tick`: the capacity model decides, the policies shape, no data stops."""

from __future__ import annotations

import json
import math

import pytest

from autotuner.config.errors import ConfigError
from autotuner.config.loader import load_text
from autotuner.control.tick import TickReport, tick
from autotuner.core.model import NoData, Verdict
from autotuner.core.state import EngineState
from tests.fakes import FakeActuator, FakeSource

API = "deployment/crm/api"
SATURATION = 100.0  # requests per second one pod serves at full utilisation

RULES = """
metrics:
  p95: histogram_quantile(0.95, sum by (le) (rate(h_bucket[5m])))
  rps: sum(rate(h_count[1m]))
  cpu: avg(rate(cpu_seconds_total[1m]))
rules:
  - name: api-slo
    metric: p95
    objective: {at_most: 0.5, aim: 0.4, load: rps, utilisation: cpu}
    action:
      scale: {deployment: api, namespace: crm, min: 2, max: 20, stabilization_window: 10m}
"""


def fleet_latency(utilisation: float) -> float:
    """A processor-sharing fleet: 0.1 s of work stretched by 1 / (1 - u), 95th percentile."""
    return 3 * 0.03 / (1.0 - min(utilisation, 0.97))


class Fleet:
    """Drives the rules against a fleet whose pods each serve SATURATION rps at full use."""

    def __init__(self, rules: str = RULES, replicas: int = 4) -> None:
        self.ruleset = load_text(rules, "api.yaml")
        self.actuator = FakeActuator({API: float(replicas)})
        self.state = EngineState()
        self.now = 0.0

    def values(self, rps: float) -> dict[str, float | NoData]:
        replicas = self.actuator.knobs[API]
        utilisation = rps / (replicas * SATURATION)
        return {"p95": fleet_latency(utilisation), "rps": rps, "cpu": min(1.0, utilisation)}

    def step(self, rps: float, values: dict[str, float | NoData] | None = None) -> TickReport:
        source = FakeSource(values if values is not None else self.values(rps))
        report = tick(self.now, self.ruleset, self.state, source, [self.actuator])
        self.state = report.state
        self.now += 15.0
        return report

    def run(self, rps: float, minutes: float) -> list[TickReport]:
        return [self.step(rps) for _ in range(int(minutes * 4))]


def learn(fleet: Fleet, hours: float = 3.0) -> None:
    """A load that rises slowly from 100 to 340 rps and falls back, every hour: between
    replica changes the fleet sees its utilisation climb, and the model learns how far."""
    for minute in range(int(hours * 60)):
        phase = (minute % 60) / 30.0
        rps = 100.0 + 240.0 * (phase if phase <= 1.0 else 2.0 - phase)
        fleet.run(rps, 1)


def test_an_objective_rule_reads_its_three_metrics() -> None:
    ruleset = load_text(RULES, "api.yaml")
    assert {q.name for q in ruleset.queries} == {"p95", "rps", "cpu"}
    (rule,) = ruleset.rules
    assert rule.objective is not None and rule.objective.aim == 0.4


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("factor: 1.5, ", "the rule's objective decides the value: remove factor"),
        ("", ""),
    ],
)
def test_an_objective_takes_no_factor(change: str, message: str) -> None:
    text = RULES.replace("scale: {", "scale: {" + change)
    if not message:
        load_text(text, "api.yaml")
        return
    with pytest.raises(ConfigError) as error:
        load_text(text, "api.yaml")
    assert message in str(error.value)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "load: rps",
            "load: rsp",
            "no metric named 'rsp' is declared under metrics:; did you mean 'rps'?",
        ),
        ("aim: 0.4", "aim: 0.6", "aim (0.6) must not exceed at_most (0.5)"),
        (
            "    objective:",
            "    above: 0.5\n    objective:",
            "a rule with an objective needs no condition",
        ),
        (
            "scale: {deployment: api, namespace: crm, ",
            "set_key: {key: k, ",
            "an objective scales a workload",
        ),
    ],
)
def test_objective_mistakes_are_named(old: str, new: str, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_text(RULES.replace(old, new), "api.yaml")
    assert message in str(error.value)


def test_nothing_learned_yet_reacts_to_latency_over_the_aim_and_never_scales_in() -> None:
    fleet = Fleet(replicas=4)
    # 380 rps on 4 pods: utilisation 0.95, p95 1.8 s; the model has seen nothing settle yet.
    reports = fleet.run(380.0, 4)
    assert fleet.actuator.knobs[API] == 4
    decisions = [d for r in reports for d, _ in r.decisions]
    assert decisions and all(d.verdict is Verdict.HOLD for d in decisions)
    assert "reactive: needs 4" in decisions[-1].reason
    fleet.run(380.0, 3)
    # Settled (6 minutes): latency / aim is 4.5, at most doubled in one step.
    assert fleet.actuator.knobs[API] == 8


def test_a_learned_model_scales_out_in_one_step_to_the_needed_count() -> None:
    fleet = Fleet()
    learn(fleet)
    before = len(fleet.actuator.applied)
    fleet.run(900.0, 1)
    # The first step goes all the way; later ones only follow the load's projected rise.
    scale_out = fleet.actuator.applied[before]
    assert scale_out.final is not None and scale_out.current is not None
    # The fleet's latency meets the aim 0.4 s at u 0.775: 90 rps per pod less the 10% headroom.
    target = scale_out.final
    utilisation_after = 900.0 / (target * SATURATION)
    assert fleet_latency(utilisation_after) <= 0.4
    assert fleet_latency(900.0 / ((target - 2) * SATURATION)) > 0.3
    assert "model:" in scale_out.reason and "capacity" in scale_out.reason


def test_scale_in_waits_for_the_window_and_keeps_headroom() -> None:
    fleet = Fleet()
    learn(fleet)
    fleet.run(900.0, 15)
    high = fleet.actuator.knobs[API]
    fleet.run(300.0, 5)
    held = fleet.actuator.knobs[API]  # the 10 minute window still holds about the high count
    fleet.run(300.0, 10)
    low = fleet.actuator.knobs[API]
    assert high - 1 <= held and low < held / 2
    assert fleet_latency(300.0 / (low * SATURATION)) < 0.4


def test_missing_load_blocks_and_never_scales_in() -> None:
    fleet = Fleet()
    learn(fleet, 1.0)
    fleet.run(900.0, 10)
    high = fleet.actuator.knobs[API]
    values = fleet.values(100.0)
    values["rps"] = NoData("prometheus is down")
    reports = [fleet.step(100.0, values) for _ in range(60)]
    assert fleet.actuator.knobs[API] == high
    blocked = [d for r in reports for d, _ in r.decisions if d.verdict is Verdict.BLOCKED]
    assert blocked and "prometheus is down" in blocked[-1].reason


@pytest.mark.parametrize("load", [5.0, 5000.0])
def test_the_count_stays_within_min_and_max(load: float) -> None:
    fleet = Fleet()
    learn(fleet, 1.0)
    fleet.run(load, 30)
    assert 2 <= fleet.actuator.knobs[API] <= 20


def test_a_state_saved_mid_run_restores_to_the_same_decisions() -> None:
    original = Fleet()
    learn(original, 1.5)
    saved = json.loads(json.dumps(original.state.to_dict()))
    restored = Fleet()
    restored.state = EngineState.from_dict(saved)
    restored.actuator.knobs = dict(original.actuator.knobs)
    restored.now = original.now
    assert restored.state == original.state
    for load in (400.0, 900.0, 250.0, 600.0):
        a = [d for r in original.run(load, 5) for d, _ in r.decisions]
        b = [d for r in restored.run(load, 5) for d, _ in r.decisions]
        assert a == b


def test_the_learned_model_is_in_the_saved_state() -> None:
    fleet = Fleet()
    learn(fleet, 1.0)
    saved = fleet.state.to_dict()
    (entry,) = saved["capacity"]
    assert entry["rule"] == "api-slo"
    assert entry["model"]["observations"] > 10
    assert math.isclose(
        sorted(entry["model"]["ratios"])[len(entry["model"]["ratios"]) // 2], SATURATION
    )
