"""Runs a rule test group through the same `tick` as the daemon and the simulator.

The engine ticks every evaluation_interval from time 0 to the group's last eval_time, with a
metric source replaying the input series and an actuator that holds the knob values, so
state (pending timers, cooldowns, rate limits, stabilization windows) carries from tick to
tick exactly as it would in production. At each eval_time the changes made and the phases of
rule targets are compared with what the test expects.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from dataclasses import dataclass

from autotuner.config.durations import format_duration
from autotuner.control.tick import TickReport, tick
from autotuner.core.model import (
    Decision,
    Evaluation,
    Labels,
    Outcome,
    Phase,
    format_labels,
)
from autotuner.core.policies import fmt
from autotuner.core.state import EngineState
from autotuner.ruletest.replay import RecordingActuator, ReplaySource
from autotuner.ruletest.testfile import (
    Expectation,
    ExpectedAction,
    ExpectedPhase,
    TestFile,
    TestGroup,
)


@dataclass(frozen=True, slots=True)
class Mismatch:
    """One expectation that did not hold, as diff lines: `-` expected, `+` got, ` ` both."""

    line: int
    eval_time: float
    subject: str
    diff: tuple[str, ...]
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class GroupResult:
    name: str
    line: int
    evaluations: int
    mismatches: tuple[Mismatch, ...]

    @property
    def passed(self) -> bool:
        return not self.mismatches


@dataclass(frozen=True, slots=True)
class FileResult:
    path: str
    groups: tuple[GroupResult, ...]

    @property
    def passed(self) -> bool:
        return all(group.passed for group in self.groups)


def run_file(test_file: TestFile, only: re.Pattern[str] | None = None) -> FileResult:
    """Run every test group of the file, or those whose name `only` matches."""
    groups = tuple(
        run_group(test_file, group)
        for group in test_file.groups
        if only is None or only.search(group.name)
    )
    return FileResult(test_file.path, groups)


def run_group(test_file: TestFile, group: TestGroup) -> GroupResult:
    interval = test_file.evaluation_interval
    expected: dict[int, list[Expectation]] = defaultdict(list)
    for expectation in group.expectations:
        expected[round(expectation.eval_time / interval)].append(expectation)
    source = ReplaySource(group.series, group.interval)
    actuator = RecordingActuator(group.initial)
    state = EngineState()
    mismatches: list[Mismatch] = []
    last_step = max(expected)
    for step in range(last_step + 1):
        report = tick(step * interval, test_file.ruleset, state, source, [actuator])
        state = report.state
        for expectation in expected.get(step, ()):
            mismatches.extend(_check(expectation, report))
    return GroupResult(group.name, group.line, last_step + 1, tuple(mismatches))


def _check(expectation: Expectation, report: TickReport) -> list[Mismatch]:
    mismatches = []
    if expectation.actions is not None:
        mismatch = _check_actions(expectation, expectation.actions, report)
        if mismatch is not None:
            mismatches.append(mismatch)
    for phase in expectation.phases or ():
        mismatch = _check_phase(phase, report)
        if mismatch is not None:
            mismatches.append(mismatch)
    return mismatches


def _labels_match(wanted: Labels | None, actual: Labels) -> bool:
    """Expected labels match a target that carries at least those labels."""
    return wanted is None or set(wanted) <= set(actual)


def _same(expected: float, actual: float | None) -> bool:
    return actual is not None and math.isclose(expected, actual, rel_tol=1e-9, abs_tol=1e-12)


def _action_matches(wanted: ExpectedAction, decision: Decision) -> bool:
    return (
        wanted.rule == decision.rule
        and wanted.knob == decision.knob
        and _labels_match(wanted.labels, decision.labels)
        and (wanted.from_value is None or _same(wanted.from_value, decision.current))
        and _same(wanted.to_value, decision.final)
    )


def describe_expected(action: ExpectedAction) -> str:
    labels = format_labels(action.labels) if action.labels else ""
    start = "?" if action.from_value is None else fmt(action.from_value)
    return f"{action.rule} {action.knob.id}{labels}: {start} -> {fmt(action.to_value)}"


def describe_change(decision: Decision, outcome: Outcome) -> str:
    labels = format_labels(decision.labels) if decision.labels else ""
    start = "?" if decision.current is None else fmt(decision.current)
    end = "?" if decision.final is None else fmt(decision.final)
    text = f"{decision.rule} {decision.knob.id}{labels}: {start} -> {end}"
    return text if outcome.changed else f"{text} ({outcome.status.value}: {outcome.detail})"


def _check_actions(
    expectation: Expectation, wanted: tuple[ExpectedAction, ...], report: TickReport
) -> Mismatch | None:
    changes = list(report.changes)
    unmatched = list(range(len(changes)))
    diff: list[str] = []
    failed = False
    for action in wanted:
        hit = next((i for i in unmatched if _action_matches(action, changes[i][0])), None)
        if hit is None:
            diff.append(f"- {describe_expected(action)}  (line {action.line})")
            failed = True
        else:
            unmatched.remove(hit)
            diff.append(f"  {describe_change(*changes[hit])}")
    for index in unmatched:
        diff.append(f"+ {describe_change(*changes[index])}")
        failed = True
    if not failed:
        return None
    if not changes:
        diff.append("+ (nothing was changed)")
    rules = {a.rule for a in wanted} | {changes[i][0].rule for i in unmatched}
    notes = [
        f"{decision.rule}: {decision.reason}"
        for decision, _ in report.decisions
        if decision.rule in rules
    ]
    notes += [
        _describe_evaluation(evaluation)
        for evaluation in report.evaluations
        if evaluation.rule in rules and evaluation.phase is not Phase.FIRING
    ]
    return Mismatch(expectation.line, report.now, "actions", tuple(diff), tuple(notes))


def _check_phase(wanted: ExpectedPhase, report: TickReport) -> Mismatch | None:
    targets = [
        e
        for e in report.evaluations
        if e.rule == wanted.rule and _labels_match(wanted.labels, e.labels)
    ]
    subject = f"phase of {wanted.rule}" + (format_labels(wanted.labels) if wanted.labels else "")
    if len(targets) > 1:
        shown = ", ".join(format_labels(t.labels) for t in targets)
        return Mismatch(
            wanted.line,
            report.now,
            subject,
            (f"- {wanted.phase.value}", f"+ {len(targets)} targets: {shown}"),
            ("give `labels:` to say which target is meant",),
        )
    got = targets[0].phase if targets else Phase.INACTIVE
    if got is wanted.phase:
        return None
    notes = (
        (_describe_evaluation(targets[0]),)
        if targets
        else (f"{wanted.rule} has no target with these labels at {format_duration(report.now)}",)
    )
    return Mismatch(
        wanted.line, report.now, subject, (f"- {wanted.phase.value}", f"+ {got.value}"), notes
    )


def _describe_evaluation(evaluation: Evaluation) -> str:
    labels = format_labels(evaluation.labels) if evaluation.labels else ""
    if evaluation.no_data is not None:
        return f"{evaluation.rule}{labels} is {evaluation.phase.value}: {evaluation.no_data}"
    value = "no value" if evaluation.value is None else fmt(evaluation.value)
    return f"{evaluation.rule}{labels} is {evaluation.phase.value} at value {value}"
