"""The fast record constructors build exactly what the classes' own constructors build."""

from __future__ import annotations

from autotuner.core import records
from autotuner.core.model import (
    Decision,
    Evaluation,
    KnobKind,
    KnobRef,
    Phase,
    PolicyStep,
    Sample,
    Series,
    Verdict,
)
from autotuner.core.state import KnobState, TargetState

KNOB = KnobRef(KnobKind.DEPLOYMENT, "api", "crm")
LABELS = (("deployment", "api"), ("namespace", "crm"))
STEP = PolicyStep("bounds", 3.0, 2.0, "min 2, max 20")


def test_each_record_equals_its_class_built_from_the_same_fields() -> None:
    built = [
        (records.sample(LABELS, 0.5, 10.0), Sample(LABELS, 0.5, 10.0)),
        (
            records.series((Sample(LABELS, 0.5, 10.0),)),
            Series((Sample(LABELS, 0.5, 10.0),)),
        ),
        (
            records.evaluation("r", LABELS, Phase.FIRING, 0.5, "why", KNOB),
            Evaluation("r", LABELS, Phase.FIRING, 0.5, "why", KNOB),
        ),
        (
            records.target_state(Phase.PENDING, 1.0, 2.0, 3.0, KNOB.id),
            TargetState(Phase.PENDING, 1.0, 2.0, 3.0, KNOB.id),
        ),
        (
            records.knob_state(((1.0, 2.0),), ((3.0, 4.0),)),
            KnobState(((1.0, 2.0),), ((3.0, 4.0),)),
        ),
        (records.policy_step("bounds", 3.0, 2.0, "note"), PolicyStep("bounds", 3.0, 2.0, "note")),
    ]
    decision_fields = (
        *(15.0, "r", LABELS, KNOB, Verdict.CHANGE, Phase.FIRING, "m", 0.5, 0.4),
        *(2.0, 3.0, 3.0, (STEP,), "reason", True, True),
    )
    built.append((records.decision(*decision_fields), Decision(*decision_fields)))
    for fast, plain in built:
        assert type(fast) is type(plain)
        assert fast == plain
        assert fast._asdict() == plain._asdict()


def test_the_decision_fields_are_passed_in_order() -> None:
    decision = records.decision(
        15.0, "r", LABELS, KNOB, Verdict.HOLD, Phase.FIRING, "m", 0.5, 0.4,
        2.0, 3.0, 2.0, (STEP,), "reason", False, True,
    )  # fmt: skip
    assert (decision.time, decision.rule, decision.metric, decision.threshold) == (
        15.0,
        "r",
        "m",
        0.4,
    )
    assert (decision.current, decision.proposed, decision.final) == (2.0, 3.0, 2.0)
    assert (decision.reason, decision.dry_run, decision.from_default) == ("reason", False, True)
    assert decision.limited_by == "bounds"
