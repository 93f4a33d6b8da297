"""How much load one replica carries at a latency target, learned from what the fleet does.

Two relations, each measured where it is easy to see:

- **Saturation per replica.** Utilisation is load per replica over what one replica serves at
  full use (the HPA's premise): u = (load / replicas) / s, so s = load / (replicas · u). Each
  steady minute gives one estimate; the model keeps the median of the last few, so one odd
  reading moves nothing and a release that halves s is known within a few minutes.
- **Latency against utilisation.** Latency rises with utilisation, smoothly while the CPU is
  shared (processor sharing stretches a request by 1 / (1 - u); Kleinrock vol. 2 §4.4) and as a
  cliff where workers or a downstream saturate first. No one formula fits both, so the model
  keeps the curve as measured: the mean latency in utilisation bands of 0.025, with exponential
  forgetting (recent hours count most), made non-decreasing (the running maximum from the
  lowest band up). Readings far off their band are set aside; a run of them means the relation
  changed (a release, a slower database), and the curve starts over from the new readings.

From both: the utilisation where the measured curve reaches the aim, less the tolerance as
headroom (the load may rise that much before latency reaches the aim: on a cliff, a latency
margin is no load margin), but never more than `reach` past the busiest band measured, is the
target utilisation u* (`target_utilisation`). What the model does with it, the replicas a load
needs, is `autotuner.core.learn.replicas`.

Observations count only once the replica count has been steady for `settle` seconds (the
metric windows then describe the fleet as it is). With too few of them the model says so
(`confidence`) and the caller falls back.
"""

from __future__ import annotations

import math
from typing import Any, Final, NamedTuple

# Saturation estimates kept; their median is the model's value.
RATIOS_KEPT = 9
# Consecutive observations far off their band that mean the relation changed.
SURPRISES_TO_RELEARN = 4
# An observation is far off its band past this share of the band's latency.
SURPRISE_SHARE = 0.5
BANDS = 40
BAND_WIDTH = 1.0 / BANDS
# A band counts once it holds this much weight (about two observations).
BAND_EVIDENCE = 1.5
# Target utilisations outside this range are not trusted: below it the fleet would be mostly
# idle whatever the curve says, above it no curve is flat enough to ride.
LOWEST_TARGET = 0.3
HIGHEST_TARGET = 0.9
# An observation counts only while utilisation is this close to its window's average.
UTILISATION_STEADY = 0.05
# Time constants of the two load averages whose gap gives the load's trend, seconds.
FAST_LOAD = 60.0
SLOW_LOAD = 300.0

_EMPTY_BANDS: tuple[float, ...] = (0.0,) * BANDS
# Held once: compiled, `tuple.__new__` written out looks the method up on every call.
_new: Final = tuple.__new__


class CapacityParameters(NamedTuple):
    aim: float  # the latency the controller steers to
    at_most: float  # the SLO
    settle: float = 360.0
    sample_every: float = 60.0
    memory: float = 6 * 3600.0  # half-life of an observation's weight
    min_observations: int = 12
    fallback_utilisation: float = 0.7
    lead: float = 90.0
    # A count within this share of the need is kept (the HPA's tolerance); the target keeps
    # this much load headroom below the aim's crossing, and a scale-in this much above it.
    tolerance: float = 0.1
    # How far past the busiest utilisation it has measured the model may aim.
    reach: float = 0.15


class Observation(NamedTuple):
    load: float  # requests per second to the whole target
    latency: float  # the objective's metric, seconds
    utilisation: float  # the replicas' mean utilisation, 0..1
    replicas: float  # the replica count the knob holds now


class CapacityState(NamedTuple):
    replicas: float = 0.0
    steady_since: float | None = None
    last_sample: float | None = None
    ratios: tuple[float, ...] = ()
    # Per utilisation band: forgetting weight and weighted latency sum.
    band_weight: tuple[float, ...] = _EMPTY_BANDS
    band_latency: tuple[float, ...] = _EMPTY_BANDS
    observations: int = 0
    # What the bands say of the aim, worked out when they change (see `curve`), since they
    # change once a minute at most and are read every tick.
    crossing: float | None = None
    bands: int = 0
    # The busiest utilisation observed since the curve (re)started: how far it is known.
    highest_utilisation: float = 0.0
    surprises: int = 0
    relearned_at: float | None = None
    # Two moving averages of the load; their gap gives its trend.
    load_time: float | None = None
    fast_load: float = 0.0
    slow_load: float = 0.0
    # Utilisation averaged over about the latency metric's window, to pair with it.
    window_utilisation: float = 0.0
    # The busiest utilisation seen while latency was over the SLO: where the fleet saturates.
    # A server whose workers (or a downstream) saturate first stops short of full CPU use,
    # and its latency curve turns into a cliff there, which steady minutes rarely show.
    overload_utilisation: float = 0.0
    overload_seen: float | None = None

    def to_dict(self) -> dict[str, Any]:
        data = self._asdict()
        for name in ("ratios", "band_weight", "band_latency"):
            data[name] = list(data[name])
        return data

    @staticmethod
    def from_dict(data: dict[str, Any]) -> CapacityState:
        values = dict(data)
        for name in ("ratios", "band_weight", "band_latency"):
            values[name] = tuple(float(v) for v in values.get(name, ()))
        return CapacityState(**values)


class Curve(NamedTuple):
    """What the measured latency curve says about the aim."""

    crossing: float | None  # utilisation where latency reaches the aim; None: not reached
    highest: float  # the busiest utilisation observed
    bands: int  # bands with enough evidence
    observations: int


def _median(values: tuple[float, ...]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return 0.5 * (ordered[middle - 1] + ordered[middle])


def _with_ratio(ratios: tuple[float, ...], ratio: float) -> tuple[float, ...]:
    """The last estimates with `ratio`; when the newest three all lie a quarter or more to one
    side of the median before them, what one replica serves has changed: keep only those."""
    kept = (*ratios, ratio)[-RATIOS_KEPT:]
    if len(kept) < 6:
        return kept
    before, recent = _median(kept[:-3]), kept[-3:]
    if all(r < 0.75 * before for r in recent) or all(r > before / 0.75 for r in recent):
        return recent
    return kept


def saturation(state: CapacityState) -> float | None:
    """Requests per second one replica serves at full utilisation, once three minutes agree."""
    if len(state.ratios) < 3:
        return None
    return _median(state.ratios)


def _band(utilisation: float) -> int:
    return min(BANDS - 1, max(0, int(utilisation / BAND_WIDTH)))


def _centre(band: int) -> float:
    return (band + 0.5) * BAND_WIDTH


def band_latency(state: CapacityState, band: int) -> float | None:
    weight = state.band_weight[band]
    return state.band_latency[band] / weight if weight >= BAND_EVIDENCE else None


def curve(state: CapacityState, aim: float) -> Curve:
    """Walk the bands from the lowest up on the running maximum of their latency."""
    crossing, bands = _crossing(state.band_weight, state.band_latency, aim)
    return Curve(crossing, state.highest_utilisation, bands, state.observations)


def _crossing(
    band_weight: tuple[float, ...], band_latency: tuple[float, ...], aim: float
) -> tuple[float | None, int]:
    """`curve`'s crossing and band count, from the bands alone."""
    envelope = 0.0
    previous_centre: float | None = None
    bands = 0
    crossing: float | None = None
    for band in range(BANDS):
        weight = band_weight[band]
        if not weight >= BAND_EVIDENCE:  # as `band_latency` has it
            continue
        latency = band_latency[band] / weight
        bands += 1
        centre = _centre(band)
        if crossing is not None:
            continue
        if max(envelope, latency) > aim:
            if previous_centre is None:
                crossing = centre - 0.5 * BAND_WIDTH
            else:
                share = (aim - envelope) / (latency - envelope) if latency > envelope else 0.0
                crossing = previous_centre + share * (centre - previous_centre)
            continue
        envelope = max(envelope, latency)
        previous_centre = centre
    return crossing, bands


def learned_curve(state: CapacityState) -> Curve:
    """`curve` as the last observation left it."""
    return _new(Curve, (state.crossing, state.highest_utilisation, state.bands, state.observations))


def trend(state: CapacityState) -> float:
    """The load's recent rise in requests per second per second (0 when falling)."""
    return max(0.0, (state.fast_load - state.slow_load) / (SLOW_LOAD - FAST_LOAD))


def _with_readings(
    state: CapacityState, now: float, seen: Observation, parameters: CapacityParameters
) -> CapacityState:
    """The moving averages: the load's two, and utilisation over about `settle` / 2."""
    load, utilisation = seen.load, seen.utilisation
    if state.load_time is None:
        return _with_averages(state, now, load, load, utilisation)
    dt = max(0.0, now - state.load_time)
    fast = state.fast_load + (load - state.fast_load) * (1.0 - math.exp(-dt / FAST_LOAD))
    slow = state.slow_load + (load - state.slow_load) * (1.0 - math.exp(-dt / SLOW_LOAD))
    share = 1.0 - math.exp(-dt / max(dt, 0.5 * parameters.settle))
    averaged = state.window_utilisation + (utilisation - state.window_utilisation) * share
    return _with_averages(state, now, fast, slow, averaged)


def _with_averages(
    state: CapacityState, load_time: float, fast: float, slow: float, utilisation: float
) -> CapacityState:
    """`state._replace(load_time=..., fast_load=..., slow_load=..., window_utilisation=...)`.

    Every tick of every target makes one, so it is built field by field with `tuple.__new__`:
    `_replace` and the class's own constructor run as Python code even compiled, and cost
    several times as much (see autotuner.core.records).
    """
    return _new(
        CapacityState,
        (
            state.replicas,
            state.steady_since,
            state.last_sample,
            state.ratios,
            state.band_weight,
            state.band_latency,
            state.observations,
            state.crossing,
            state.bands,
            state.highest_utilisation,
            state.surprises,
            state.relearned_at,
            load_time,
            fast,
            slow,
            utilisation,
            state.overload_utilisation,
            state.overload_seen,
        ),
    )


def observe(
    state: CapacityState, now: float, seen: Observation, parameters: CapacityParameters
) -> CapacityState:
    """Fold one tick's readings into the model."""
    state = _with_readings(state, now, seen, parameters)
    # Only on a settled fleet: while new replicas start, latency still shows the minutes
    # before them and utilisation already the fleet after.
    settled_utilisation = min(seen.utilisation, state.window_utilisation)
    if (
        seen.latency > parameters.at_most
        and seen.replicas == state.replicas
        and state.steady_since is not None
        and now - state.steady_since >= parameters.settle
        and abs(seen.utilisation - state.window_utilisation) <= UTILISATION_STEADY
        and settled_utilisation > state.overload_utilisation
    ):
        state = state._replace(overload_utilisation=settled_utilisation, overload_seen=now)
    if seen.replicas != state.replicas or state.steady_since is None:
        return state._replace(replicas=seen.replicas, steady_since=now)
    if now - state.steady_since < parameters.settle:
        return state
    if state.last_sample is not None and now - state.last_sample < parameters.sample_every:
        return state
    # The latency metric averages minutes that the utilisation metric has forgotten: pair it
    # with the utilisation over about its window, and only while that has held still.
    u = state.window_utilisation
    now_u = seen.utilisation
    if not (
        0.02 < now_u < 0.995
        and abs(now_u - u) <= UTILISATION_STEADY
        and seen.latency > 0.0
        and seen.load > 0.0
        and seen.replicas > 0
    ):
        return state
    # Overloaded, a fleet serves what it can, not what arrives: its utilisation then says
    # nothing of what one replica serves.
    overloaded = seen.latency > parameters.at_most
    ratios = (
        state.ratios
        if overloaded
        else _with_ratio(state.ratios, seen.load / (seen.replicas * now_u))
    )
    band = _band(u)
    expected = band_latency(state, band)
    # Judged only where the curve is flat enough to predict: past the aim latency swings
    # with every queue that builds and drains.
    if (
        expected is not None
        and expected <= parameters.aim
        and state.observations >= parameters.min_observations
        and abs(seen.latency - expected) > SURPRISE_SHARE * expected
    ):
        surprises = state.surprises + 1
        if surprises < SURPRISES_TO_RELEARN:
            return state._replace(last_sample=now, ratios=ratios, surprises=surprises)
        # The relation changed: start over from here.
        state = CapacityState(
            replicas=state.replicas,
            steady_since=state.steady_since,
            ratios=ratios[-SURPRISES_TO_RELEARN:],
            relearned_at=now,
            load_time=state.load_time,
            fast_load=state.fast_load,
            slow_load=state.slow_load,
            window_utilisation=state.window_utilisation,
        )
    decay = (
        0.5 ** ((now - state.last_sample) / parameters.memory)
        if state.last_sample is not None
        else 1.0
    )
    weights = [w * decay for w in state.band_weight]
    sums = [s * decay for s in state.band_latency]
    weights[band] += 1.0
    sums[band] += seen.latency
    band_weights, band_sums = tuple(weights), tuple(sums)
    crossing, bands = _crossing(band_weights, band_sums, parameters.aim)
    return state._replace(
        last_sample=now,
        ratios=ratios,
        band_weight=band_weights,
        band_latency=band_sums,
        observations=state.observations + 1,
        highest_utilisation=max(state.highest_utilisation, u),
        surprises=0,
        crossing=crossing,
        bands=bands,
    )


def confidence(
    state: CapacityState, parameters: CapacityParameters, shape: Curve | None = None
) -> float:
    """0 with nothing learned; 1 with enough observations over at least three bands."""
    if len(state.ratios) < 3:  # no saturation yet (see `saturation`)
        return 0.0
    if shape is None:
        shape = learned_curve(state)
    amount = min(1.0, state.observations / parameters.min_observations)
    spread = min(1.0, shape.bands / 3.0)
    return round(amount * spread, 3)


def overload_remembered(state: CapacityState, now: float, parameters: CapacityParameters) -> bool:
    """An overload counts for one `memory`: a release rolled back need not be paid for."""
    return state.overload_seen is not None and now - state.overload_seen < parameters.memory


def target_utilisation(
    state: CapacityState, shape: Curve, parameters: CapacityParameters, now: float
) -> float:
    """Where latency reaches the aim, less the tolerance as load headroom, and never more than
    `reach` past the busiest utilisation observed. Where latency was once seen over the SLO,
    the crossing is no busier than that.

    Where the curve has not reached the aim yet, the crossing is extrapolated from the busiest
    band as processor sharing would have it through the origin, latency ∝ 1 / (1 - u): with a
    latency floor that overstates latency, so the step it allows is on the safe side.
    """
    crossing = shape.crossing
    if crossing is None:
        busiest = _band(shape.highest)
        while busiest > 0 and band_latency(state, busiest) is None:
            busiest -= 1
        latency = band_latency(state, busiest)
        if latency is not None and latency > 0:
            crossing = 1.0 - latency * (1.0 - _centre(busiest)) / parameters.aim
        else:
            crossing = shape.highest
    if 0.0 < state.overload_utilisation < crossing and overload_remembered(state, now, parameters):
        crossing = state.overload_utilisation
    target = min(shape.highest + parameters.reach, crossing / (1.0 + parameters.tolerance))
    return min(HIGHEST_TARGET, max(LOWEST_TARGET, target))
