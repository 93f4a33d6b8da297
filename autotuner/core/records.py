"""Constructors for the records every tick makes many of, at a fraction of the cost.

A named tuple's own constructor is Python code that the class generates (`collections.
namedtuple`), so even compiled each call runs the interpreter: in the simulator a quarter of a
tick went to it. `tuple.__new__` with every field, in order, builds the same tuple without it
(as the class's own `_make` does). Each function here takes every field, so none relies on a
default; tests/core/test_records.py checks each against its class's constructor.
"""

from __future__ import annotations

from typing import Final

from autotuner.core.model import (
    Decision,
    Evaluation,
    KnobRef,
    Labels,
    Phase,
    PolicyStep,
    Sample,
    Series,
    Verdict,
)
from autotuner.core.state import KnobState, TargetState, TimedValues

# Held once: compiled, `tuple.__new__` written out looks the method up on every call.
_new: Final = tuple.__new__


def sample(labels: Labels, value: float, timestamp: float) -> Sample:
    return _new(Sample, (labels, value, timestamp))


def series(samples: tuple[Sample, ...]) -> Series:
    return _new(Series, (samples,))


def evaluation(
    rule: str,
    labels: Labels,
    phase: Phase,
    value: float | None,
    no_data: str | None,
    knob: KnobRef | None,
) -> Evaluation:
    return _new(Evaluation, (rule, labels, phase, value, no_data, knob))


def target_state(
    phase: Phase,
    active_since: float | None,
    last_true: float | None,
    last_action: float | None,
    knob: str | None,
) -> TargetState:
    return _new(TargetState, (phase, active_since, last_true, last_action, knob))


def knob_state(recommendations: TimedValues, changes: TimedValues) -> KnobState:
    return _new(KnobState, (recommendations, changes))


def policy_step(policy: str, before: float, after: float, note: str) -> PolicyStep:
    return _new(PolicyStep, (policy, before, after, note))


def decision(
    time: float,
    rule: str,
    labels: Labels,
    knob: KnobRef,
    verdict: Verdict,
    phase: Phase,
    metric: str,
    value: float | None,
    threshold: float,
    current: float | None,
    proposed: float | None,
    final: float | None,
    steps: tuple[PolicyStep, ...],
    reason: str,
    dry_run: bool,
    from_default: bool,
) -> Decision:
    return _new(
        Decision,
        (
            time,
            rule,
            labels,
            knob,
            verdict,
            phase,
            metric,
            value,
            threshold,
            current,
            proposed,
            final,
            steps,
            reason,
            dry_run,
            from_default,
        ),
    )
