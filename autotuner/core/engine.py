"""The decision engine: pure functions from (time, readings, knob values, state) to decisions.

No clock, no I/O. The daemon, the simulator and rule tests all call it through `tick`:
1. `knobs_to_read` says which knob values the tick must read for these metric answers;
2. `evaluate` runs every rule target's state machine and the policies, and returns decisions
   with their reasons and the new state;
3. `record_outcomes` folds what actually happened (applied, dry run, failed) into the state,
   so cooldowns and rate limits count only real changes.

`evaluate` works through one `Cycle` (autotuner.core.cycle): threshold rules' targets
(`threshold_targets`), objective rules' targets (`objective_targets`), then one change per knob
(`knob_resolution`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import NamedTuple

from autotuner.core import knob_resolution, objective_targets, threshold_targets
from autotuner.core.cycle import Cycle
from autotuner.core.model import (
    Decision,
    Evaluation,
    KnobReading,
    KnobRef,
    MetricAnswer,
    NoData,
    Outcome,
    OutcomeStatus,
    Phase,
    Series,
    Verdict,
)
from autotuner.core.rules import RuleSet
from autotuner.core.state import INITIAL_TARGET, EngineState, KnobState, TargetKey


class TickResult(NamedTuple):
    decisions: tuple[Decision, ...]
    evaluations: tuple[Evaluation, ...]
    state: EngineState


def _answer(answers: Mapping[str, MetricAnswer], metric: str) -> MetricAnswer:
    return answers.get(metric) or NoData(f"metric {metric!r} was not fetched")


def knobs_to_read(ruleset: RuleSet, answers: Mapping[str, MetricAnswer]) -> tuple[KnobRef, ...]:
    """Every knob whose current value `evaluate` may need for these answers, in id order."""
    knobs: dict[str, KnobRef] = {}
    for rule in ruleset.active_rules:
        answer = answers.get(rule.metric)
        if not isinstance(answer, Series):
            continue
        knob_for = rule.action.knob.knob_for
        for sample in answer.samples:
            knob = knob_for(sample.labels)
            if not isinstance(knob, str):
                knobs[knob.id] = knob
    for budget in ruleset.budgets:
        for knob in budget.knobs:
            knobs[knob.id] = knob
    return tuple(knobs[knob_id] for knob_id in sorted(knobs))


def evaluate(
    now: float,
    ruleset: RuleSet,
    answers: Mapping[str, MetricAnswer],
    readings: Mapping[KnobRef, KnobReading],
    state: EngineState,
    *,
    dry_run: bool = False,
) -> TickResult:
    """One tick of every enabled rule: decisions with reasons, and the state after them."""
    cycle = Cycle(now, ruleset, readings, state, dry_run, answers)
    known: dict[str, list[TargetKey]] = defaultdict(list)
    # In a fixed order, so that a restored state decides exactly as the one it was saved from.
    for key in sorted(state.targets):
        known[key[0]].append(key)
    for rule in ruleset.active_rules:
        answer = _answer(answers, rule.metric)
        if rule.objective is None:
            threshold_targets.run_rule(cycle, rule, answer, known.get(rule.name, ()))
        else:
            objective_targets.run(cycle, rule, answer, known.get(rule.name, ()))
    # A disabled rule keeps only its cooldowns, so that enabling it again cannot act at once.
    for key, target in state.targets.items():
        owner = cycle.rules_by_name.get(key[0])
        if owner is not None and not owner.enabled and target.last_action is not None:
            cycle.keep(key, target._replace(phase=Phase.INACTIVE, active_since=None))
    recommendations = knob_resolution.resolve(cycle)
    new_state = EngineState(
        targets=cycle.targets,
        knobs=knob_resolution.knob_states(cycle, recommendations),
        rule_knobs=cycle.rule_knobs,
        capacity=cycle.capacity,
    )
    return TickResult(tuple(cycle.decisions), tuple(cycle.evaluations), new_state)


def record_outcomes(state: EngineState, results: Iterable[tuple[Decision, Outcome]]) -> EngineState:
    """Fold what was done into the state: cooldowns start and rate limits count real changes.

    A dry run starts the cooldown as if it had applied, so that a dry run reports what the
    controller would do, not the same change every tick.
    """
    done = [
        (decision, outcome)
        for decision, outcome in results
        if decision.verdict is Verdict.CHANGE
        and outcome.status in (OutcomeStatus.APPLIED, OutcomeStatus.DRY_RUN)
    ]
    if not done:
        return state
    targets = dict(state.targets)
    knobs = dict(state.knobs)
    for decision, outcome in done:
        key = (decision.rule, decision.labels)
        target = targets.get(key, INITIAL_TARGET)
        targets[key] = target._replace(last_action=decision.time, knob=decision.knob.id)
        if outcome.status is OutcomeStatus.APPLIED:
            old = outcome.old if outcome.old is not None else decision.current
            new = outcome.new if outcome.new is not None else decision.final
            if old is not None and new is not None:
                knob_state = knobs.get(decision.knob.id, KnobState())
                knobs[decision.knob.id] = knob_state._replace(
                    changes=(*knob_state.changes, (decision.time, new - old))
                )
    return EngineState(
        targets=targets, knobs=knobs, rule_knobs=state.rule_knobs, capacity=state.capacity
    )
