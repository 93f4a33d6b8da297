"""Objective rules' targets: always in control, each steered by its capacity model.

Every tick each target joins its three metrics (autotuner.core.objectives), folds them into
what it has learned of its capacity (autotuner.core.learn.capacity) and asks the model for a
replica count. A count it already has is a HOLD at once; any other goes through the per-rule
policies and the per-knob resolution like a threshold rule's proposal.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from autotuner.core import objectives, threshold_targets
from autotuner.core.cycle import Cycle
from autotuner.core.learn import capacity, replicas
from autotuner.core.learn.capacity import CapacityState
from autotuner.core.model import (
    KnobRef,
    KnobUnreadable,
    Labels,
    MetricAnswer,
    NoData,
    Phase,
    Verdict,
    format_labels,
)
from autotuner.core.records import evaluation, target_state
from autotuner.core.rules import Rule
from autotuner.core.state import INITIAL_TARGET, TargetKey

_NEW_MODEL = CapacityState()


def run(cycle: Cycle, rule: Rule, answer: MetricAnswer, known: Sequence[TargetKey]) -> None:
    """An objective rule: every target is in control; its capacity model proposes."""
    objective = rule.objective
    assert objective is not None
    if isinstance(answer, NoData) or not answer.samples:
        threshold_targets.run_rule(cycle, rule, answer, known)
        return
    samples = answer.samples
    repeated = (
        threshold_targets.NONE_REPEATED
        if len(samples) == 1
        else frozenset(label for label, n in Counter(s.labels for s in samples).items() if n > 1)
    )
    knob_for = rule.action.knob.knob_for
    knobs: dict[Labels, KnobRef] = {}
    current: dict[Labels, float] = {}
    for sample in answer.samples:
        knob = knob_for(sample.labels)
        if isinstance(knob, str):
            continue
        knobs[sample.labels] = knob
        reading = cycle.readings.get(knob)
        if reading is not None and not isinstance(reading, KnobUnreadable):
            current[sample.labels] = reading.value
    parameters = objectives.parameters(objective)
    cycle.rule_knobs[rule.name] = tuple(sorted(knob.id for knob in knobs.values()))
    seen: set[Labels] = set()
    for inputs in objectives.join(
        objective,
        answer,
        cycle.answers,
        current,
        cycle.now,
        cycle.ruleset.max_sample_age,
    ):
        labels = inputs.labels
        seen.add(labels)
        key = (rule.name, labels)
        if labels in repeated:
            threshold_targets.no_data(
                cycle, rule, labels, f"duplicate series {format_labels(labels)}"
            )
            continue
        if inputs.no_data is not None or inputs.latency is None:
            threshold_targets.no_data(cycle, rule, labels, inputs.no_data or "no value")
            continue
        chosen = knobs.get(labels)
        previous = cycle.state.targets.get(key, INITIAL_TARGET)
        if chosen is None:
            why = knob_for(labels)
            cycle.keep(key, previous)
            cycle.evaluations.append(
                evaluation(
                    rule.name,
                    labels,
                    previous.phase,
                    inputs.latency,
                    f"cannot name the knob: {why}",
                    None,
                )
            )
            continue
        if rule.action.stabilization_window > 0:
            cycle.windowed_knobs[chosen.id] = chosen
        since = previous.active_since if previous.active_since is not None else cycle.now
        target = target_state(Phase.FIRING, since, cycle.now, previous.last_action, chosen.id)
        cycle.keep(key, target)
        cycle.evaluations.append(
            evaluation(rule.name, labels, Phase.FIRING, inputs.latency, None, chosen)
        )
        start = cycle.current_value(rule, labels, chosen, inputs.latency)
        if start is None or inputs.observation is None:
            continue
        model = capacity.observe(
            cycle.capacity.get(key, _NEW_MODEL), cycle.now, inputs.observation, parameters
        )
        cycle.capacity[key] = model
        advice = replicas.recommend(model, cycle.now, inputs.observation, parameters)
        cycle.explanations[key] = (advice, parameters)
        current_value, from_default = start
        if advice.replicas == current_value and not from_default:
            # Content with the count it has, as most ticks are: no policy can change
            # that, and the stabilization window records the current value anyway.
            cycle.decisions.append(
                cycle.decision(
                    rule,
                    labels,
                    chosen,
                    Verdict.HOLD,
                    inputs.latency,
                    current_value,
                    current_value,
                    current_value,
                    (),
                    f"{chosen.id} stays {current_value:g}",
                )
            )
            continue
        cycle.shape(
            rule,
            labels,
            chosen,
            inputs.latency,
            target,
            current_value,
            advice.replicas,
            from_default,
        )
    for _, labels in known:
        if labels not in seen:
            threshold_targets.no_data(
                cycle, rule, labels, "the series is absent from the answer", resolve=True
            )
