"""Per knob: one change out of the proposals for it, then the missing-data guard and budgets.

Every firing target's proposal has been through its own rule's policies (`Cycle.shape`); here
they meet. The proposal asking for the most capacity wins, a knob whose inputs are missing is
never lowered, and a shared budget caps what an increase may take. Then each knob's history
(stabilization recommendations, applied changes) is carried into the new state.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from operator import attrgetter

from autotuner.core import policies
from autotuner.core.cycle import Cycle, Proposal
from autotuner.core.model import KnobRef, KnobUnreadable, PolicyStep, Verdict
from autotuner.core.records import knob_state, policy_step
from autotuner.core.rules import Budget
from autotuner.core.state import KnobState, TimedValues, with_recommendation

_ORDER = attrgetter("order")
_NO_HISTORY: tuple[TimedValues, TimedValues] = ((), ())


def resolve(cycle: Cycle) -> dict[KnobRef, float]:
    """Pick one change per knob, apply the missing-data guard and budgets.

    Returns each knob's recommendation for this tick (for stabilization windows).
    """
    planned: dict[KnobRef, float] = {}
    recommendations: dict[KnobRef, float] = {}
    for knob in sorted(cycle.proposals):
        proposals = cycle.proposals[knob]
        ordered = proposals if len(proposals) == 1 else sorted(proposals, key=_ORDER)
        current = ordered[0].current
        ups = [p for p in ordered if p.after_rule > p.current]
        downs = [p for p in ordered if p.after_rule < p.current]
        winner = ups[0] if ups else downs[0] if downs else None
        recommendations[knob] = winner.bounded if winner else max(p.bounded for p in ordered)
        for proposal in ordered:
            if proposal is not winner:
                steps = proposal.steps
                if winner is not None and proposal.after_rule != proposal.current:
                    steps += (
                        policy_step(
                            "conflict",
                            proposal.after_rule,
                            proposal.current,
                            f"rule {winner.rule.name} asks for {winner.after_rule:g}",
                        ),
                    )
                finish(cycle, proposal, steps, proposal.current)
        if winner is None:
            continue
        steps = winner.steps
        final = winner.after_rule
        if final < current and knob.id in cycle.starved_knobs:
            steps += (
                policy_step(
                    "missing_data",
                    final,
                    current,
                    f"rule {cycle.starved_knobs[knob.id]} has no data: never scale down",
                ),
            )
            final = current
        for budget in cycle.ruleset.budgets:
            if final > current and knob in budget.knobs:
                step = budget_step(cycle, budget, knob, current, final, planned)
                steps += (step,)
                final = step.after
        planned[knob] = final
        finish(cycle, winner, steps, final)
    return recommendations


def budget_step(
    cycle: Cycle,
    budget: Budget,
    knob: KnobRef,
    current: float,
    value: float,
    planned: Mapping[KnobRef, float],
) -> PolicyStep:
    values: dict[KnobRef, float] = {}
    for member in budget.knobs:
        reading = cycle.readings.get(member)
        if reading is None or isinstance(reading, KnobUnreadable):
            why = reading.reason if reading else "not read"
            return policy_step(
                "budget",
                value,
                current,
                f"budget {budget.name}: cannot read {member.id} ({why})",
            )
        # A decrease decided this tick frees nothing until it has been applied.
        values[member] = max(reading.value, planned.get(member, reading.value))
    headroom = policies.budget_headroom(budget, knob, values)
    integer_knob = knob.is_workload or float(values[knob]).is_integer()
    cap = math.floor(headroom + 1e-9) if integer_knob else headroom
    limited = max(current, min(value, cap))
    values[knob] = limited
    usage = policies.budget_usage(budget, values)
    return policy_step(
        "budget",
        value,
        limited,
        f"budget {budget.name}: {usage:g} of {budget.limit:g} used",
    )


def finish(cycle: Cycle, proposal: Proposal, steps: tuple[PolicyStep, ...], final: float) -> None:
    verdict = Verdict.CHANGE if final != proposal.current else Verdict.HOLD
    rule = proposal.rule
    if verdict is Verdict.CHANGE:
        why = f"{proposal.knob.id} {proposal.current:g} -> {final:g}"
    else:
        limiting = [s for s in steps if s.limited]
        why = f"{proposal.knob.id} stays {proposal.current:g}" + (
            f": {limiting[-1].policy} ({limiting[-1].note})" if limiting else ""
        )
    cycle.decisions.append(
        cycle.decision(
            rule,
            proposal.labels,
            proposal.knob,
            verdict,
            proposal.value,
            proposal.current,
            proposal.proposed,
            final,
            steps,
            why,
            proposal.from_default,
        )
    )


def knob_states(cycle: Cycle, recommendations: Mapping[KnobRef, float]) -> dict[str, KnobState]:
    now = cycle.now
    window_start = now - cycle.ruleset.longest_window
    rate_start = now - cycle.ruleset.longest_rate_period
    # Per knob id, (recommendations, changes): the old ones still inside their horizon,
    # then this tick's; each knob's new state is built once, from its final pair.
    history: dict[str, tuple[TimedValues, TimedValues]] = {
        knob_id: (_recent(old.recommendations, window_start), _recent(old.changes, rate_start))
        for knob_id, old in cycle.state.knobs.items()
    }
    for knob_id, knob in cycle.windowed_knobs.items():
        if knob in recommendations:
            recommended = recommendations[knob]
        else:
            reading = cycle.readings.get(knob)
            if reading is None or isinstance(reading, KnobUnreadable):
                continue
            recommended = reading.value
        kept, changes = history.get(knob_id, _NO_HISTORY)
        history[knob_id] = (with_recommendation(kept, now, recommended), changes)
    # A knob whose inputs are missing keeps its last recommendation alive, so that an
    # outage as long as a window does not empty it and let the first tick back act at once.
    for knob_id in cycle.starved_knobs:
        held = history.get(knob_id)
        if held is not None and held[0] and knob_id not in cycle.windowed_knobs:
            kept, changes = held
            history[knob_id] = (with_recommendation(kept, now, kept[-1][1]), changes)
    knobs: dict[str, KnobState] = {}
    for knob_id, (kept, changes) in history.items():
        old = cycle.state.knobs.get(knob_id)
        if old is not None and kept is old.recommendations and changes is old.changes:
            knobs[knob_id] = old
        elif kept or changes:
            knobs[knob_id] = knob_state(kept, changes)
    return knobs


def _recent(pairs: TimedValues, since: float) -> TimedValues:
    """The pairs after `since`.

    They are in time order and a tick expires one or two, so the head is scanned, not bisected.
    """
    if not pairs or pairs[0][0] > since:
        return pairs
    start = 1
    while start < len(pairs) and pairs[start][0] <= since:
        start += 1
    return pairs[start:]
