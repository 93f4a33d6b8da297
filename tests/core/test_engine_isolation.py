"""One target's arithmetic failing must not stop the cycle for the other rules."""

from __future__ import annotations

from autotuner.config.loader import load_text
from autotuner.control.tick import tick
from autotuner.core.model import OutcomeStatus, Verdict
from autotuner.core.state import EngineState
from tests.fakes import FakeActuator, FakeSource

TWO_RULES = """
metrics:
  p95: sum(rate(h_sum[5m]))
  usage: sum(pool_used)
rules:
  - name: pool-grows
    metric: usage
    above: 0.8
    action:
      set_key: {key: pool, factor: 2, max: 1000}
  - name: api-scales
    metric: p95
    above: 0.5
    action:
      scale: {deployment: api, namespace: crm, factor: 1.5, max: 20}
"""


def test_a_target_whose_new_value_overflows_is_blocked_and_the_other_rule_still_acts() -> None:
    ruleset = load_text(TWO_RULES, "test.yaml")
    # Written by hand outside the controller: doubling it overflows to infinity, which no
    # integer knob can take.
    actuator = FakeActuator({"key/pool": 1e308, "deployment/crm/api": 4})
    source = FakeSource({"p95": 0.9, "usage": 0.95})

    report = tick(0.0, ruleset, EngineState(), source, [actuator])

    by_rule = {decision.rule: (decision, outcome) for decision, outcome in report.decisions}
    overflowed, _ = by_rule["pool-grows"]
    assert overflowed.verdict is Verdict.BLOCKED
    assert "cannot compute a new value for key/pool" in overflowed.reason
    assert "nothing is done" in overflowed.reason
    acted, outcome = by_rule["api-scales"]
    assert acted.verdict is Verdict.CHANGE and acted.final == 6
    assert outcome is not None and outcome.status is OutcomeStatus.APPLIED
    assert actuator.knobs == {"key/pool": 1e308, "deployment/crm/api": 6}
