"""Properties of objective rules over random runs: bounds, missing data, determinism, restore.

Hypothesis draws a run of ticks: load, latency and utilisation readings (some missing, NaN or
infinite), and the knob's writes failing now and then. Each test checks one promise over the
whole run.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autotuner.config.loader import load_text
from autotuner.control.tick import TickReport, tick
from autotuner.core.model import NoData, Verdict
from autotuner.core.state import EngineState
from tests.fakes import FakeActuator, FakeSource

PROPERTY_SETTINGS = settings(
    derandomize=True,
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
API = "deployment/crm/api"
MINIMUM, MAXIMUM = 2, 12

RULES = f"""
metrics:
  p95: histogram_quantile(0.95, sum by (le) (rate(h_bucket[5m])))
  rps: sum(rate(h_count[1m]))
  cpu: avg(rate(cpu_seconds_total[1m]))
rules:
  - name: api-slo
    metric: p95
    objective: {{at_most: 0.5, aim: 0.4, load: rps, utilisation: cpu, settle: 2m}}
    action:
      scale:
        deployment: api
        namespace: crm
        min: {MINIMUM}
        max: {MAXIMUM}
        stabilization_window: 5m
"""
RULESET = load_text(RULES, "api.yaml")

reading = st.one_of(
    st.floats(min_value=0.0, max_value=3000.0),
    st.sampled_from([math.nan, math.inf, -math.inf]),
    st.none(),
)


@dataclass(frozen=True)
class Step:
    load: float | None
    latency: float | None
    utilisation: float | None
    fail: bool

    def values(self) -> dict[str, float | NoData]:
        def answer(value: float | None) -> float | NoData:
            return NoData("missing in this run") if value is None else value

        return {
            "rps": answer(self.load),
            "p95": answer(self.latency),
            "cpu": answer(None if self.utilisation is None else min(1.0, self.utilisation)),
        }

    @property
    def complete(self) -> bool:
        readings = (self.load, self.latency, self.utilisation)
        return all(v is not None and math.isfinite(v) for v in readings)


steps = st.lists(
    st.builds(
        Step,
        load=reading,
        latency=st.one_of(st.floats(min_value=0.0, max_value=30.0), st.none()),
        utilisation=st.one_of(st.floats(min_value=0.0, max_value=1.0), st.none()),
        fail=st.booleans(),
    ),
    min_size=1,
    max_size=60,
)
# Long calm stretches let the model settle and learn; the random steps then test it.
calm = Step(300.0, 0.2, 0.6, False)


def run(
    run_steps: list[Step], start: int = 4, state: EngineState | None = None, at: float = 0.0
) -> tuple[list[TickReport], FakeActuator]:
    actuator = FakeActuator({API: float(start)})
    state = state or EngineState()
    reports = []
    for index, step in enumerate(run_steps):
        actuator.fail = step.fail
        report = tick(at + 15.0 * index, RULESET, state, FakeSource(step.values()), [actuator])
        state = report.state
        reports.append(report)
    return reports, actuator


def with_calm(run_steps: list[Step]) -> list[Step]:
    return [calm] * 80 + run_steps


@PROPERTY_SETTINGS
@given(steps, st.integers(min_value=MINIMUM, max_value=MAXIMUM))
def test_changes_stay_within_min_and_max(run_steps: list[Step], start: int) -> None:
    reports, actuator = run(with_calm(run_steps), start)
    for report in reports:
        for decision, _ in report.decisions:
            if decision.verdict is Verdict.CHANGE:
                assert decision.final is not None
                assert MINIMUM <= decision.final <= MAXIMUM
    assert MINIMUM <= actuator.knobs[API] <= MAXIMUM


@PROPERTY_SETTINGS
@given(steps)
def test_nothing_is_changed_on_a_tick_with_an_input_missing(run_steps: list[Step]) -> None:
    reports, _ = run(with_calm(run_steps))
    for step, report in zip(with_calm(run_steps), reports, strict=True):
        if not step.complete:
            assert all(d.verdict is not Verdict.CHANGE for d, _ in report.decisions)


@PROPERTY_SETTINGS
@given(steps)
def test_the_same_inputs_give_the_same_decisions(run_steps: list[Step]) -> None:
    first, _ = run(with_calm(run_steps))
    second, _ = run(with_calm(run_steps))
    assert [r.decisions for r in first] == [r.decisions for r in second]


@PROPERTY_SETTINGS
@given(steps, steps)
def test_a_state_saved_mid_run_restores_exactly(before: list[Step], after: list[Step]) -> None:
    whole, _ = run(with_calm(before) + after)
    head, actuator = run(with_calm(before))
    saved = EngineState.from_dict(json.loads(json.dumps(head[-1].state.to_dict())))
    assert saved == head[-1].state
    tail, _ = run(
        after, start=int(actuator.knobs[API]), state=saved, at=15.0 * len(with_calm(before))
    )
    assert [r.decisions for r in whole[len(head) :]] == [r.decisions for r in tail]
