"""`tick`: the one orchestration of a control cycle, shared by the daemon, the simulator and
rule tests. Only the clock, the metric source and the actuators differ between them.

fetch metrics -> read the knobs they concern -> engine -> for each change: intent, act,
outcome -> state with the outcomes folded in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Final, NamedTuple

from autotuner.control.ports import Actuator, AuditStore, MetricSource
from autotuner.core.engine import evaluate, knobs_to_read, record_outcomes
from autotuner.core.model import (
    NO_EXTRA,
    Decision,
    Evaluation,
    KnobReading,
    KnobRef,
    KnobUnreadable,
    MetricAnswer,
    Outcome,
    OutcomeStatus,
    Verdict,
)
from autotuner.core.rules import RuleSet
from autotuner.core.state import EngineState

# Says why a knob must not be touched (outside the allow-list, say), or None when it may be.
KnobGuard = Callable[[KnobRef], str | None]


class TickReport(NamedTuple):
    now: float
    answers: Mapping[str, MetricAnswer]
    evaluations: tuple[Evaluation, ...]
    decisions: tuple[tuple[Decision, Outcome], ...]
    state: EngineState

    @property
    def changes(self) -> tuple[tuple[Decision, Outcome], ...]:
        return tuple(pair for pair in self.decisions if pair[0].verdict is Verdict.CHANGE)


def read_knobs(
    knobs: Iterable[KnobRef], actuators: Sequence[Actuator], guard: KnobGuard | None = None
) -> dict[KnobRef, KnobReading]:
    """Each knob's value from the first actuator that handles it, batched per actuator."""
    readings: dict[KnobRef, KnobReading] = {}
    batches: list[tuple[Actuator, list[KnobRef]]] = [(actuator, []) for actuator in actuators]
    for knob in knobs:
        refusal = guard(knob) if guard is not None else None
        if refusal is not None:
            readings[knob] = KnobUnreadable(refusal, skip=True)
            continue
        for actuator, batch in batches:
            if actuator.handles(knob):
                batch.append(knob)
                break
        else:
            readings[knob] = KnobUnreadable(
                f"no actuator is configured for {knob.kind.value} knobs"
            )
    for actuator, batch in batches:
        if not batch:
            continue
        try:
            answered = actuator.read(batch)
        except (
            Exception
        ) as error:  # an adapter that breaks its contract still must not stop the cycle
            answered = {knob: KnobUnreadable(f"reading failed: {error}") for knob in batch}
        for knob in batch:
            readings[knob] = answered.get(knob) or KnobUnreadable("the actuator returned no value")
    return readings


def act(decision: Decision, actuators: Sequence[Actuator], dry_run: bool) -> Outcome:
    if dry_run:
        return Outcome(
            OutcomeStatus.DRY_RUN, "dry run: not applied", decision.current, decision.final
        )
    actuator = next((a for a in actuators if a.handles(decision.knob)), None)
    if actuator is None:
        return Outcome(OutcomeStatus.FAILED, f"no actuator is configured for {decision.knob.id}")
    try:
        return actuator.apply(decision)
    except Exception as error:  # as above: one target's failure never stops the others
        return Outcome(OutcomeStatus.FAILED, f"the actuator failed: {error}")


def _act_recorded(
    decision: Decision, actuators: Sequence[Actuator], store: AuditStore | None, dry_run: bool
) -> Outcome:
    """Intent first, then the action, then its outcome: no action without its audit record."""
    if store is None:
        return act(decision, actuators, dry_run)
    try:
        intent = store.record_intent(decision)
    except Exception as error:  # the store's own error type is the adapter's business
        return Outcome(
            OutcomeStatus.FAILED, f"not applied: the audit store refused the intent: {error}"
        )
    outcome = act(decision, actuators, dry_run)
    try:
        store.record_outcome(intent, outcome)
    except Exception as error:
        # The change happened; its record stays visibly unfinished and the outcome says why.
        return outcome._replace(extra={**outcome.extra, "audit": f"outcome not recorded: {error}"})
    return outcome


def _as_folded(pair: tuple[Decision, Outcome]) -> tuple[Decision, Outcome]:
    """A write that may have taken effect is folded in as one that did: its cooldown starts and
    it counts toward rate limits, so that the knob is read afresh before it is moved again."""
    decision, outcome = pair
    if outcome.status is not OutcomeStatus.UNCERTAIN:
        return pair
    return decision, outcome._replace(status=OutcomeStatus.APPLIED)


_new: Final = tuple.__new__


def skipped(reason: str) -> Outcome:
    """`Outcome(OutcomeStatus.SKIPPED, reason)`, made for most decisions of every tick: built
    with `tuple.__new__` and every field, as autotuner.core.records builds the engine's."""
    return _new(Outcome, (OutcomeStatus.SKIPPED, reason, None, None, NO_EXTRA))


def tick(
    now: float,
    ruleset: RuleSet,
    state: EngineState,
    source: MetricSource,
    actuators: Sequence[Actuator],
    *,
    store: AuditStore | None = None,
    dry_run: bool = False,
    guard: KnobGuard | None = None,
) -> TickReport:
    answers = source.fetch(ruleset.queries, now)
    readings = read_knobs(knobs_to_read(ruleset, answers), actuators, guard)
    result = evaluate(now, ruleset, answers, readings, state, dry_run=dry_run)
    pairs: list[tuple[Decision, Outcome]] = []
    for decision in result.decisions:
        if decision.verdict is not Verdict.CHANGE:
            pairs.append((decision, skipped(decision.reason)))
            continue
        pairs.append((decision, _act_recorded(decision, actuators, store, dry_run)))
    new_state = record_outcomes(result.state, [_as_folded(pair) for pair in pairs])
    return TickReport(now, answers, result.evaluations, tuple(pairs), new_state)
