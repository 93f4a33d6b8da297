"""`tick` around the engine: intent before acting, no action without its record, one
actuator's failure never stops the others."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from autotuner.config.loader import load_text
from autotuner.control.tick import read_knobs, tick
from autotuner.core.model import (
    Decision,
    KnobKind,
    KnobReading,
    KnobRef,
    Outcome,
    OutcomeStatus,
)
from autotuner.core.state import EngineState
from tests.fakes import FakeActuator, FakeSource

RULES = """
metrics:
  p95: histogram_quantile(0.95, sum by (le) (rate(h_bucket[5m])))
rules:
  - name: up
    metric: p95
    above: 0.5
    action:
      scale: {deployment: api, namespace: crm, factor: 2, max: 20}
"""


class RecordingStore:
    def __init__(self, refuse: bool = False) -> None:
        self.events: list[str] = []
        self.refuse = refuse

    def record_intent(self, decision: Decision) -> int:
        if self.refuse:
            raise RuntimeError("database is down")
        self.events.append(f"intent {decision.knob.id} -> {decision.final:g}")
        return len(self.events)

    def record_outcome(self, intent_id: int, outcome: Outcome) -> None:
        self.events.append(f"outcome {intent_id} {outcome.status.value}")


def _run(store: RecordingStore) -> tuple[FakeActuator, Outcome]:
    actuator = FakeActuator({"deployment/crm/api": 3})
    report = tick(0, load_text(RULES, "t.yaml"), EngineState(), FakeSource({"p95": 0.9}), [actuator], store=store)
    ((_, outcome),) = report.changes
    return actuator, outcome


def test_the_intent_is_recorded_before_the_action_and_the_outcome_after() -> None:
    store = RecordingStore()
    actuator, outcome = _run(store)
    assert outcome.status is OutcomeStatus.APPLIED and actuator.knobs["deployment/crm/api"] == 6
    assert store.events == ["intent deployment/crm/api -> 6", "outcome 1 applied"]


def test_no_action_without_its_intent_on_record() -> None:
    actuator, outcome = _run(RecordingStore(refuse=True))
    assert outcome.status is OutcomeStatus.FAILED and "database is down" in outcome.detail
    assert actuator.knobs["deployment/crm/api"] == 3 and not actuator.applied


class ExplodingActuator:
    def handles(self, knob: KnobRef) -> bool:
        return knob.kind is KnobKind.CONFIG_KEY

    def read(self, knobs: Sequence[KnobRef]) -> Mapping[KnobRef, KnobReading]:
        raise ConnectionError("boom")

    def apply(self, decision: Decision) -> Outcome:
        raise ConnectionError("boom")


def test_a_broken_actuator_fails_only_its_own_knobs() -> None:
    key = KnobRef(KnobKind.CONFIG_KEY, "ttl")
    deployment = KnobRef(KnobKind.DEPLOYMENT, "api", "crm")
    readings = read_knobs([key, deployment], [ExplodingActuator(), FakeActuator({"deployment/crm/api": 3})])
    assert "reading failed: boom" in str(readings[key])
    assert readings[deployment].value == 3  # type: ignore[union-attr]


def test_a_guard_refuses_knobs_outside_the_allow_list() -> None:
    deployment = KnobRef(KnobKind.DEPLOYMENT, "api", "kube-system")
    readings = read_knobs([deployment], [FakeActuator()], guard=lambda k: f"namespace {k.namespace} is not allowed")
    reading = readings[deployment]
    assert getattr(reading, "skip", False) and "not allowed" in getattr(reading, "reason", "")
