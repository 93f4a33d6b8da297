"""The replicas a load needs, from what the capacity model has learned, and why, in words.

The model (`autotuner.core.learn.capacity`) knows what one replica serves at full use and the
utilisation at which latency meets the aim; this turns it into a count for the load now,
projected over `lead` seconds along its recent rise (new replicas take that long to serve),
with the fallbacks for a model that knows too little, the guards on scaling in, and the
reactions to what the model did not expect.
"""

from __future__ import annotations

import math
from typing import Final, NamedTuple

from autotuner.core.learn.capacity import (
    UTILISATION_STEADY,
    CapacityParameters,
    CapacityState,
    Curve,
    Observation,
    confidence,
    learned_curve,
    overload_remembered,
    saturation,
    target_utilisation,
    trend,
)

# Held once: compiled, `tuple.__new__` written out looks the method up on every call.
_new: Final = tuple.__new__


class Recommendation(NamedTuple):
    """The replicas the model asks for, and what they rest on (`explain` puts it in words)."""

    replicas: float
    mode: str  # "model", "capacity" or "reactive"
    confidence: float  # 0..1
    seen: Observation
    observations: int
    capacity_per_replica: float | None = None
    # Load per replica at which latency reaches the aim, before the headroom.
    capacity_at_aim: float | None = None
    target_utilisation: float | None = None
    projected_load: float | None = None
    curve: Curve | None = None
    saturation: float | None = None
    # What raised the count past the load's need, if anything: "utilisation" (the HPA's
    # ratio) or "saturation" (latency over the SLO the model did not expect).
    raised_by: str = ""


def _fmt(value: float) -> str:
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"


def recommend(
    state: CapacityState,
    now: float,
    seen: Observation,
    parameters: CapacityParameters,
) -> Recommendation:
    """The replicas that meet the aim at the load `seen`, with how sure the model is and why.

    - **model**: enough observations over enough of the curve: replicas for the projected
      load at the learned capacity per replica.
    - **capacity**: the saturation per replica is known but the curve is not yet: the same at
      `fallback_utilisation`, a conservative target, as an HPA would hold.
    - **reactive**: nothing learned yet (or just relearned): scale by latency / aim when over
      the aim, once per settle period, and never in.
    While the fleet is steady and its utilisation is past the target, the count also covers
    that utilisation (the HPA's ratio), so a change the model has not seen yet is met at once.
    """
    s = saturation(state)
    steady = state.steady_since is not None and now - state.steady_since >= parameters.settle
    current = seen.replicas
    projected = seen.load + trend(state) * parameters.lead
    if s is None or (state.relearned_at is not None and state.observations < 3):
        # Latency with idle replicas is not for more replicas to mend (or is the minutes
        # before the last change, still in its window).
        busy = seen.utilisation >= parameters.fallback_utilisation
        wanted = current
        if seen.latency > parameters.aim and steady and busy and current > 0:
            wanted = float(math.ceil(current * min(2.0, seen.latency / parameters.aim)))
        return Recommendation(wanted, "reactive", 0.0, seen, state.observations)
    shape = learned_curve(state)
    sure = confidence(state, parameters, shape)
    learned = state.observations >= parameters.min_observations and sure >= 0.99
    mode = "model" if learned else "capacity"
    utilisation = (
        target_utilisation(state, shape, parameters, now)
        if learned
        else parameters.fallback_utilisation
    )
    per_replica = utilisation * s
    needed = math.ceil(projected / per_replica - 1e-9) if projected > 0 else 0
    # Scale in only to a count that keeps the tolerance as headroom.
    after_scale_in = (
        math.ceil(projected * (1.0 + parameters.tolerance) / per_replica - 1e-9)
        if projected > 0
        else 0
    )
    if needed > current:
        count = needed
    elif after_scale_in < current and seen.latency <= parameters.at_most:
        # Never lower than the utilisation measured now says the target needs (the HPA's
        # ratio): a stale estimate of what one replica serves must not scale in.
        by_ratio = math.ceil(
            current * seen.utilisation * (1.0 + parameters.tolerance) / utilisation - 1e-9
        )
        count = min(int(current), max(after_scale_in, by_ratio))
    else:
        # Never in while the SLO is broken, whatever the model says.
        count = int(current)
    raised_by = ""
    if steady and seen.utilisation > utilisation * (1.0 + parameters.tolerance) and current > 0:
        by_ratio = math.ceil(current * seen.utilisation / utilisation - 1e-9)
        if by_ratio > count:
            count, raised_by = by_ratio, "utilisation"
    # Past the SLO while saturated, on a settled fleet (its latency window describes it): the
    # model is wrong about this fleet (a release, say). React as a saturated HPA would,
    # doubling at most. Saturated: as busy as when last over the SLO, or busier than ever
    # while settled; latency over the SLO at a lower utilisation is not for more replicas to
    # mend (a slow database, say).
    saturated = seen.utilisation >= state.highest_utilisation or (
        overload_remembered(state, now, parameters)
        and seen.utilisation >= state.overload_utilisation - UTILISATION_STEADY
    )
    if seen.latency > parameters.at_most and saturated and steady and current > 0:
        by_latency = math.ceil(current * min(2.0, seen.latency / parameters.aim) - 1e-9)
        if by_latency > count:
            count, raised_by = by_latency, "saturation"
    at_aim = shape.crossing * s if shape.crossing is not None else None
    # Every tick of every target asks: built with `tuple.__new__`, as `_with_averages` explains.
    return _new(
        Recommendation,
        (
            float(count),
            mode,
            sure,
            seen,
            state.observations,
            per_replica,
            at_aim,
            utilisation,
            projected,
            shape,
            s,
            raised_by,
        ),
    )


def explain(advice: Recommendation, parameters: CapacityParameters) -> str:
    """The recommendation in the words of a decision's reason."""
    seen = advice.seen
    wanted = f"{advice.replicas:g}"
    if advice.mode == "reactive" or advice.saturation is None or advice.curve is None:
        learned = f"too little learned yet ({advice.observations} observations)"
        if advice.replicas > seen.replicas:
            ratio = min(2.0, seen.latency / parameters.aim)
            return (
                f"reactive: {learned}; latency {_fmt(seen.latency)}s over the aim "
                f"{parameters.aim:g}s: x{ratio:.2f}"
            )
        return (
            f"reactive: {learned}; latency {_fmt(seen.latency)}s at utilisation "
            f"{seen.utilisation:.2f}: hold"
        )
    shape = advice.curve
    utilisation = advice.target_utilisation or 0.0
    if advice.mode == "model":
        reaches = (
            f"latency reaches the aim at u {shape.crossing:.2f}"
            if shape.crossing is not None
            else f"latency under the aim up to u {shape.highest:.2f}, the busiest measured"
        )
        basis = f"{reaches} ({shape.observations} observations over {shape.bands} bands)"
    else:
        basis = (
            f"latency curve not yet learned ({shape.observations} observations over "
            f"{shape.bands} bands): fallback utilisation {utilisation:g}"
        )
    projected = advice.projected_load or 0.0
    rising = f" rising, {_fmt(projected)} in {parameters.lead:g}s" if projected > seen.load else ""
    why = (
        f"{advice.mode}: load {_fmt(seen.load)} rps{rising}; capacity "
        f"{_fmt(advice.capacity_per_replica or 0.0)} rps per replica at u {utilisation:.2f} "
        f"(saturation {_fmt(advice.saturation)} rps); {basis}"
    )
    if advice.raised_by == "utilisation":
        return f"{why}; utilisation {seen.utilisation:.2f} is over the target: needs {wanted}"
    if advice.raised_by == "saturation":
        ratio = min(2.0, seen.latency / parameters.aim)
        return (
            f"{why}; latency {_fmt(seen.latency)}s is over the SLO at saturation "
            f"(u {seen.utilisation:.2f}), which the model did not expect: x{ratio:.2f}, "
            f"needs {wanted}"
        )
    return f"{why}; needs {wanted}"


class Figures(NamedTuple):
    """What a target's model knows, for /metrics and explanations."""

    saturation: float | None
    target_utilisation: float | None
    capacity_per_replica: float | None
    observations: int
    confidence: float


def figures(state: CapacityState, parameters: CapacityParameters, now: float) -> Figures:
    s = saturation(state)
    sure = confidence(state, parameters)
    if s is None:
        return Figures(None, None, None, state.observations, sure)
    learned = state.observations >= parameters.min_observations and sure >= 0.99
    utilisation = (
        target_utilisation(state, learned_curve(state), parameters, now)
        if learned
        else parameters.fallback_utilisation
    )
    return Figures(s, utilisation, utilisation * s, state.observations, sure)
