"""Threshold rules' targets: the Prometheus alert state machine, one target at a time.

A target is one series of a rule's metric. It is inactive, pending (its condition has held for
less than `for:`) or firing; a firing target proposes a new value for its knob, which the
per-rule policies shape (`Cycle.shape`) and the per-knob resolution settles. Missing data never
acts: `no_data` is also what an objective rule's target meets when its inputs are missing.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

from autotuner.core import policies
from autotuner.core.cycle import Cycle
from autotuner.core.model import (
    KnobRef,
    Labels,
    MetricAnswer,
    NoData,
    Phase,
    Series,
    Verdict,
    format_labels,
    usable,
)
from autotuner.core.records import evaluation, target_state
from autotuner.core.rules import Rule
from autotuner.core.state import INITIAL_TARGET, TargetKey, TargetState

NONE_REPEATED: frozenset[Labels] = frozenset()


def run_rule(cycle: Cycle, rule: Rule, answer: MetricAnswer, known: Sequence[TargetKey]) -> None:
    if isinstance(answer, Series) and not answer.samples:
        answer = NoData("the query returned no series")
    if isinstance(answer, NoData):
        # The knobs this rule's series named when it last had data: none may be lowered.
        for knob_id in cycle.state.rule_knobs.get(rule.name, ()):
            cycle.starved_knobs.setdefault(knob_id, rule.name)
        if not known:
            template = rule.action.knob
            static = template.render({}) if template.is_static else None
            if static is not None:
                cycle.starved_knobs.setdefault(static.id, rule.name)
            cycle.evaluations.append(
                evaluation(rule.name, (), Phase.INACTIVE, None, answer.reason, static)
            )
        for _, labels in known:
            no_data(cycle, rule, labels, answer.reason)
        return
    samples = answer.samples
    seen = {sample.labels for sample in samples}
    repeated: frozenset[Labels] = (
        NONE_REPEATED
        if len(seen) == len(samples)
        else frozenset(labels for labels, n in Counter(s.labels for s in samples).items() if n > 1)
    )
    named: set[str] = set()
    duplicates: set[Labels] = set()
    template = rule.action.knob
    now = cycle.now
    max_age = cycle.ruleset.max_sample_age
    # Hoisted for the common case below: most targets are inactive and stay so. Objects, not
    # bound methods: compiled, a method called on its object is a direct call.
    name = rule.name
    condition = rule.condition
    known_targets = cycle.state.targets
    windowed = cycle.windowed_knobs if rule.action.stabilization_window > 0 else None
    evaluations = cycle.evaluations
    for labels, value, timestamp in samples:
        knob = template.knob_for(labels)
        if not isinstance(knob, str):
            named.add(knob.id)
            if (
                not repeated
                and math.isfinite(value)
                and now - timestamp <= max_age
                and (name, labels) not in known_targets
                and not condition.starts(value)
            ):
                if windowed is not None:
                    windowed[knob.id] = knob
                evaluations.append(evaluation(name, labels, Phase.INACTIVE, value, None, knob))
                continue
        if labels in repeated:
            # Two series with one label set: neither can be trusted, so neither acts.
            if labels not in duplicates:
                duplicates.add(labels)
                no_data(cycle, rule, labels, f"duplicate series {format_labels(labels)}")
            continue
        if not usable(value):
            no_data(cycle, rule, labels, f"the value is {value}")
        elif now - timestamp > max_age:
            age = policies.fmt(round(now - timestamp, 3))
            no_data(cycle, rule, labels, f"the sample is stale ({age}s old)")
        else:
            observe(cycle, rule, labels, value, knob)
    cycle.rule_knobs[rule.name] = tuple(named) if len(named) < 2 else tuple(sorted(named))
    # A series gone from an answer that has others resolves, as in Prometheus.
    for _, labels in known:
        if labels not in seen:
            no_data(cycle, rule, labels, "the series is absent from the answer", resolve=True)


def no_data(cycle: Cycle, rule: Rule, labels: Labels, reason: str, resolve: bool = False) -> None:
    """Missing data never acts and never counts toward `for:`.

    A pending target starts over. A firing target holds through an outage of its metric,
    but resolves (after keep_firing_for) when its own series is gone from the answer.
    """
    key = (rule.name, labels)
    previous = cycle.state.targets.get(key, INITIAL_TARGET)
    knob = knob_of(cycle, rule, labels, previous)
    kept = previous.last_true is not None and cycle.now - previous.last_true < rule.keep_firing_for
    if previous.phase is Phase.PENDING or (previous.phase is Phase.FIRING and resolve and not kept):
        previous = previous._replace(phase=Phase.INACTIVE, active_since=None)
    cycle.keep(key, previous)
    cycle.evaluations.append(evaluation(rule.name, labels, previous.phase, None, reason, knob))
    if knob is None:
        return
    cycle.starved_knobs.setdefault(knob.id, rule.name)
    if previous.phase is Phase.FIRING:
        cycle.decisions.append(
            cycle.decision(
                rule,
                labels,
                knob,
                Verdict.BLOCKED,
                None,
                None,
                None,
                None,
                (),
                f"{reason}; nothing is done on missing data",
            )
        )


def knob_of(cycle: Cycle, rule: Rule, labels: Labels, previous: TargetState) -> KnobRef | None:
    knob = rule.action.knob.knob_for(labels)
    if isinstance(knob, str):
        return KnobRef.parse(previous.knob) if previous.knob else None
    return knob


def observe(cycle: Cycle, rule: Rule, labels: Labels, value: float, knob: KnobRef | str) -> None:
    key = (rule.name, labels)
    previous = cycle.state.targets.get(key, INITIAL_TARGET)
    if isinstance(knob, str):
        cycle.keep(key, previous)
        cycle.evaluations.append(
            evaluation(
                rule.name, labels, previous.phase, value, f"cannot name the knob: {knob}", None
            )
        )
        return
    if rule.action.stabilization_window > 0:
        cycle.windowed_knobs[knob.id] = knob
    target, acting = alert_step(cycle, rule, previous, value, knob.id)
    if target is not INITIAL_TARGET:
        cycle.keep(key, target)
    cycle.evaluations.append(evaluation(rule.name, labels, target.phase, value, None, knob))
    if acting:
        try:
            propose(cycle, rule, labels, knob, value, target)
        except ArithmeticError as error:
            # One target's numbers (an overflow, say) must not stop the cycle for the rest.
            why = f"cannot compute a new value for {knob.id}: {error}; nothing is done"
            cycle.decisions.append(
                cycle.decision(
                    rule, labels, knob, Verdict.BLOCKED, value, None, None, None, (), why
                )
            )


def alert_step(
    cycle: Cycle, rule: Rule, previous: TargetState, value: float, knob: str
) -> tuple[TargetState, bool]:
    """The Prometheus alert state machine, with hysteresis and keep_firing_for.

    Allocation-free when nothing changes: most targets stay inactive most of the time.
    """
    condition = rule.condition
    phase = previous.phase
    was_firing = phase is Phase.FIRING
    holds = condition.holds(value) if was_firing else condition.starts(value)
    now = cycle.now
    if holds:
        since = previous.active_since if phase is not Phase.INACTIVE else None
        since = now if since is None else since
        firing = was_firing or now - since >= rule.for_
        new_phase = Phase.FIRING if firing else Phase.PENDING
        return target_state(new_phase, since, now, previous.last_action, knob), firing
    if phase is Phase.INACTIVE:
        return previous, False
    if (
        was_firing
        and previous.last_true is not None
        and now - previous.last_true < rule.keep_firing_for
    ):
        # Kept firing, so a relapse acts without a new `for:`; but it does not act now.
        return previous, False
    return target_state(Phase.INACTIVE, None, previous.last_true, previous.last_action, knob), False


def propose(
    cycle: Cycle, rule: Rule, labels: Labels, knob: KnobRef, value: float, target: TargetState
) -> None:
    start = cycle.current_value(rule, labels, knob, value)
    if start is None:
        return
    current, from_default = start
    action = rule.action
    proposed = action.change.propose(current, value, action.integer)
    cycle.shape(rule, labels, knob, value, target, current, proposed, from_default)
