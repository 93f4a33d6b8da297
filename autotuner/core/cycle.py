"""One tick's work in progress: what the engine has read, and what it has decided so far.

`evaluate` (autotuner.core.engine) makes one `Cycle` per tick and hands it to the target
modules in turn: threshold rules' targets (`threshold_targets`), objective rules' targets
(`objective_targets`), then the per-knob resolution (`knob_resolution`). What they share lives
here: the records being collected, and the steps every firing target goes through (the knob's
current value, the per-rule policies, a decision with its reason).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final, NamedTuple

from autotuner.core import objectives, policies, records
from autotuner.core.learn import replicas
from autotuner.core.learn.capacity import CapacityParameters, CapacityState
from autotuner.core.learn.replicas import Recommendation
from autotuner.core.model import (
    Decision,
    Direction,
    Evaluation,
    KnobReading,
    KnobRef,
    KnobUnreadable,
    Labels,
    MetricAnswer,
    Phase,
    PolicyStep,
    Verdict,
)
from autotuner.core.rules import Comparison, Rule, RuleSet
from autotuner.core.state import EngineState, TargetKey, TargetState


class Proposal(NamedTuple):
    """A firing target's wish for its knob, after the per-rule policies."""

    rule: Rule
    labels: Labels
    knob: KnobRef
    value: float  # the metric value
    current: float
    proposed: float
    bounded: float  # after bounds: what is recorded for stabilization windows
    after_rule: float
    steps: tuple[PolicyStep, ...]
    from_default: bool

    @property
    def order(self) -> tuple[float, str, Labels]:
        # The proposal asking for more capacity first; ties broken by rule name, then labels.
        return (-self.after_rule, self.rule.name, self.labels)


# Every field given, with `tuple.__new__`: see autotuner.core.records.
_new: Final = tuple.__new__


def describe_threshold(rule: Rule, value: float | None) -> str:
    """A threshold rule's condition at `value`, as its decisions' reasons open."""
    condition = rule.condition
    if value is None:
        return f"{rule.metric} has no data"
    shown = policies.fmt(value)
    above = condition.comparison is Comparison.ABOVE
    sign = ">" if above else "<"
    if condition.starts(value):
        return f"{rule.metric} {shown} {sign} {condition.threshold:g}"
    # Firing inside the hysteresis band: past the clear threshold, not the firing one.
    side = "above" if above else "below"
    return (
        f"{rule.metric} {shown} is still {side} the clear threshold "
        f"{condition.clear:g} (fired {side} {condition.threshold:g})"
    )


class Cycle:
    """One tick's inputs and the records made from them so far."""

    def __init__(
        self,
        now: float,
        ruleset: RuleSet,
        readings: Mapping[KnobRef, KnobReading],
        state: EngineState,
        dry_run: bool,
        answers: Mapping[str, MetricAnswer],
    ) -> None:
        self.now = now
        self.answers = answers
        self.ruleset = ruleset
        self.readings = readings
        self.state = state
        self.dry_run = dry_run
        self.targets: dict[TargetKey, TargetState] = {}
        self.evaluations: list[Evaluation] = []
        self.decisions: list[Decision] = []
        self.proposals: dict[KnobRef, list[Proposal]] = {}
        # Knob ids, with a rule whose input is missing: none of these knobs may be lowered.
        self.starved_knobs: dict[str, str] = {}
        # Knobs under a stabilization window, by id: each records a recommendation every tick.
        self.windowed_knobs: dict[str, KnobRef] = {}
        self.rules_by_name = ruleset.rules_by_name
        self.rule_knobs: dict[str, tuple[str, ...]] = {
            name: knobs for name, knobs in state.rule_knobs.items() if name in ruleset.rules_by_name
        }
        # What objective rules' targets have learned: kept through outages, dropped with the rule.
        self.capacity: dict[TargetKey, CapacityState] = {
            key: model for key, model in state.capacity.items() if key[0] in self.rules_by_name
        }
        # Each objective target's recommendation, put in words for its decision's reason.
        self.explanations: dict[TargetKey, tuple[Recommendation, CapacityParameters]] = {}

    def keep(self, key: TargetKey, target: TargetState) -> None:
        """Keep a target's state only while it carries something worth remembering."""
        in_cooldown = (
            target.last_action is not None
            and self.now - target.last_action < self.rules_by_name[key[0]].cooldown
        )
        if target.phase is not Phase.INACTIVE or in_cooldown:
            self.targets[key] = target

    def current_value(
        self, rule: Rule, labels: Labels, knob: KnobRef, value: float
    ) -> tuple[float, bool] | None:
        """The knob's value to start from and whether it is the rule's default; None (and a
        BLOCKED decision) when it cannot be read."""
        action = rule.action
        reading = self.readings.get(knob) or KnobUnreadable("its current value was not read")
        if not isinstance(reading, KnobUnreadable):
            return reading.value, False
        if reading.missing and action.default is not None:
            return action.default, True
        self.decisions.append(
            self.decision(
                rule,
                labels,
                knob,
                Verdict.BLOCKED,
                value,
                None,
                None,
                None,
                (),
                f"cannot act on {knob.id}: {reading.reason}",
            )
        )
        return None

    def shape(
        self,
        rule: Rule,
        labels: Labels,
        knob: KnobRef,
        value: float,
        target: TargetState,
        current: float,
        proposed: float,
        from_default: bool,
    ) -> None:
        """The per-rule policies on a proposal: bounds, rate limits, stabilization, cooldown."""
        action = rule.action
        direction = action.change.direction or (
            Direction.UP if proposed > current else Direction.DOWN
        )
        steps = [policies.bounds(action, current, proposed, direction)]
        bounded = steps[0].after
        knob_state = self.state.knobs.get(knob.id)
        limited = policies.rate_limit(
            action, current, bounded, direction, knob_state.changes if knob_state else (), self.now
        )
        if limited is not None:
            steps.append(limited)
        stabilized = policies.stabilize(
            action,
            current,
            steps[-1].after,
            direction,
            knob_state.recommendations if knob_state else (),
            self.now,
        )
        if stabilized is not None:
            steps.append(stabilized)
        cooled = policies.cooldown(
            rule.cooldown, target.last_action, current, steps[-1].after, self.now
        )
        if cooled is not None:
            steps.append(cooled)
        self.proposals.setdefault(knob, []).append(
            _new(
                Proposal,
                (
                    rule,
                    labels,
                    knob,
                    value,
                    current,
                    proposed,
                    bounded,
                    steps[-1].after,
                    tuple(steps),
                    from_default,
                ),
            )
        )

    def decision(
        self,
        rule: Rule,
        labels: Labels,
        knob: KnobRef,
        verdict: Verdict,
        value: float | None,
        current: float | None,
        proposed: float | None,
        final: float | None,
        steps: Iterable[PolicyStep],
        why: str,
        from_default: bool = False,
    ) -> Decision:
        return records.decision(
            self.now,
            rule.name,
            labels,
            knob,
            verdict,
            Phase.FIRING,
            rule.metric,
            value,
            rule.condition.threshold,
            current,
            proposed,
            final,
            tuple(steps),
            self.reason(rule, labels, value, why, proposed != current),
            self.dry_run,
            from_default,
        )

    def reason(
        self, rule: Rule, labels: Labels, value: float | None, why: str, wished: bool
    ) -> str:
        if rule.objective is None:
            return f"{describe_threshold(rule, value)}: {why}"
        described = objectives.describe(rule, value)
        explained = self.explanations.get((rule.name, labels))
        if explained is None:
            return f"{described}: {why}"
        advice, parameters = explained
        if not wished:
            # Content with the count it has: the short form, every tick of every target.
            return f"{described}; {advice.mode}: needs {advice.replicas:g}: {why}"
        return f"{described}; {replicas.explain(advice, parameters)}: {why}"
