"""The policies that shape a proposed value, each a pure function of plain numbers.

The engine applies them in this order (docs/rules.md says why):
per rule: bounds -> rate limits -> stabilization window -> cooldown;
per knob: conflict resolution -> missing-data guard -> shared budgets.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from autotuner.core.model import Direction, KnobRef, PolicyStep
from autotuner.core.records import policy_step
from autotuner.core.rules import Action, Budget, RateLimitKind, SelectPolicy


def fmt(value: float) -> str:
    return f"{value:g}"


def bounds(action: Action, current: float, proposed: float, direction: Direction) -> PolicyStep:
    """Clamp to [min, max], never moving against the rule's direction.

    A knob already outside its bounds (set by hand, say) is not pulled further out, and a rule
    that raises never lowers it, nor one that lowers ever raises it.
    """
    clamped = min(max(proposed, action.minimum), action.maximum)
    value = max(current, clamped) if direction is Direction.UP else min(current, clamped)
    return policy_step("bounds", proposed, value, action.bounds_note)


def rate_limit(
    action: Action,
    current: float,
    value: float,
    direction: Direction,
    changes: Iterable[tuple[float, float]],
    now: float,
) -> PolicyStep | None:
    """HPA-style rate policies: at most N units or N percent per period.

    As the HPA computes it (horizontal.go, calculateScaleUpLimitWithScalingRules and
    calculateScaleDownLimitWithBehaviors): each policy's limit counts from the value at the
    start of its period, and `select: max` takes the policy that allows the largest change.
    """
    if not action.rate_limits:
        return None
    history = tuple(changes)
    limits = []
    for policy in action.rate_limits:
        since = now - policy.period
        if direction is Direction.UP:
            added = sum(delta for t, delta in history if t > since and delta > 0)
            start = current - added
            if policy.kind is RateLimitKind.ABSOLUTE:
                limit = start + policy.value
            else:
                limit = start * (1 + policy.value / 100)
                limit = math.ceil(limit) if action.integer else limit
        else:
            removed = sum(-delta for t, delta in history if t > since and delta < 0)
            start = current + removed
            if policy.kind is RateLimitKind.ABSOLUTE:
                limit = start - policy.value
            else:
                limit = start * (1 - policy.value / 100)
                limit = math.floor(limit) if action.integer else limit
        limits.append(limit)
    if direction is Direction.UP:
        chosen = max(limits) if action.select is SelectPolicy.MAX else min(limits)
        limited = max(current, min(value, chosen))
    else:
        chosen = min(limits) if action.select is SelectPolicy.MAX else max(limits)
        limited = min(current, max(value, chosen))
    return policy_step(
        "rate_limit", value, limited, f"{action.select} of policies allows {chosen:g}"
    )


def stabilize(
    action: Action,
    current: float,
    value: float,
    direction: Direction,
    recommendations: Iterable[tuple[float, float]],
    now: float,
) -> PolicyStep | None:
    """A change may go no further than every recommendation of its window allows.

    A decrease takes the highest recommendation of the window and an increase the lowest, as
    the HPA's stabilization window does, so one quiet minute does not undo a busy hour.
    """
    window = action.stabilization_window
    if window <= 0 or (direction is Direction.UP and not action.stabilize_increases):
        return None
    since = now - window
    recent = [value, *(rec for t, rec in recommendations if t > since)]
    if direction is Direction.DOWN:
        highest = max(recent)
        stabilized = min(current, highest)
        note = f"highest recommendation of the last {window:g}s is {highest:g}"
    else:
        lowest = min(recent)
        stabilized = max(current, lowest)
        note = f"lowest recommendation of the last {window:g}s is {lowest:g}"
    return policy_step("stabilization", value, stabilized, note)


def cooldown(
    cooldown_seconds: float, last_action: float | None, current: float, value: float, now: float
) -> PolicyStep | None:
    if cooldown_seconds <= 0 or last_action is None:
        return None
    remaining = last_action + cooldown_seconds - now
    if remaining <= 0:
        return None
    return policy_step("cooldown", value, current, f"in cooldown for {round(remaining, 3):g}s more")


def budget_headroom(budget: Budget, knob: KnobRef, values: Mapping[KnobRef, float]) -> float:
    """The largest value `knob` may take with every other knob of the budget at `values`.

    Usage is linear in one knob (the loader allows a knob once per term), so this solves
    a * v + b <= limit for v.
    """
    slope = 0.0
    rest = 0.0
    for term in budget.terms:
        product = 1.0
        for member in term:
            if member != knob:
                product *= values[member]
        if knob in term:
            slope += product
        else:
            rest += product
    if slope <= 0:
        return math.inf
    return (budget.limit - rest) / slope


def budget_usage(budget: Budget, values: Mapping[KnobRef, float]) -> float:
    return sum(math.prod(values[member] for member in term) for term in budget.terms)
