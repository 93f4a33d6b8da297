"""Offered load: requests per second at each simulated tick, computed for the whole run at once.

A load is a base shape (constant, diurnal or a replayed trace) times any number of events (steps
and flash crowds), times multiplicative noise in the load itself. Everything is a numpy array over
the tick times, so a three-week run costs one vectorised pass.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

# Re-exported: the trace file format lives in trace_file, its readers are used from here too.
from autotuner.sim.trace_file import TraceError as TraceError
from autotuner.sim.trace_file import bundled_trace as bundled_trace
from autotuner.sim.trace_file import read_trace_csv as read_trace_csv

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Constant:
    rps: float


@dataclass(frozen=True, slots=True)
class Diurnal:
    """mean·(1 + amplitude·cos(2π(t/86400 - peak_hour/24))): one peak a day at `peak_hour`."""

    mean_rps: float
    amplitude: float = 0.5
    peak_hour: float = 14.0


@dataclass(frozen=True, slots=True)
class Trace:
    """Replay of per-minute request counts, scaled so the slice's busiest minute is `peak_rps`,
    or, with `peak_rps` None, as recorded times `scale` (requests per minute / 60 x scale).

    `start_minute` skips into the trace; `speedup` > 1 plays it faster (one simulated second
    covers `speedup` seconds of the trace).
    """

    per_minute: tuple[float, ...]
    peak_rps: float | None
    start_minute: float = 0.0
    speedup: float = 1.0
    name: str = "trace"
    scale: float = 1.0


@dataclass(frozen=True, slots=True)
class Step:
    """Multiplies the load by `factor` from `at` seconds on."""

    at: float
    factor: float


@dataclass(frozen=True, slots=True)
class FlashCrowd:
    """A spike: linear ramp to `multiplier`x, a hold, then exponential decay back to 1x."""

    start: float
    multiplier: float
    ramp: float = 120.0
    hold: float = 600.0
    decay: float = 600.0


Base = Constant | Diurnal | Trace
Event = Step | FlashCrowd


@dataclass(frozen=True, slots=True)
class LoadSpec:
    base: Base
    events: tuple[Event, ...] = ()
    # Relative standard deviation of independent lognormal noise per tick (0 = none).
    noise: float = 0.0


def _base_rps(base: Base, times: FloatArray) -> FloatArray:
    if isinstance(base, Constant):
        return np.full_like(times, base.rps)
    if isinstance(base, Diurnal):
        phase = 2.0 * math.pi * (times / 86400.0 - base.peak_hour / 24.0)
        return np.asarray(base.mean_rps * (1.0 + base.amplitude * np.cos(phase)))
    counts = np.asarray(base.per_minute, dtype=np.float64)
    trace_minutes = base.start_minute + times * base.speedup / 60.0
    if trace_minutes[-1] > len(counts):
        raise TraceError(
            f"trace {base.name!r} has {len(counts)} minutes; the run needs minute "
            f"{trace_minutes[-1]:.0f} (shorten the run, lower start_minute or speedup)"
        )
    per_minute = np.interp(trace_minutes, np.arange(len(counts), dtype=np.float64), counts)
    if base.peak_rps is None:
        return np.asarray(per_minute * (base.scale / 60.0))
    peak = float(per_minute.max())
    if peak <= 0:
        raise TraceError(f"trace {base.name!r} has no requests in the replayed slice")
    return np.asarray(per_minute * (base.peak_rps / peak))


def _event_factor(event: Event, times: FloatArray) -> FloatArray:
    if isinstance(event, Step):
        return np.where(times >= event.at, event.factor, 1.0)
    since = times - event.start
    extra = event.multiplier - 1.0
    ramp = np.clip(since / max(event.ramp, 1e-9), 0.0, 1.0)
    after_hold = since - event.ramp - event.hold
    decay = np.exp(-np.maximum(after_hold, 0.0) / max(event.decay, 1e-9))
    shape = np.where(since < 0, 0.0, np.where(after_hold < 0, ramp, decay))
    return np.asarray(1.0 + extra * shape)


def offered_rps(spec: LoadSpec, times: FloatArray, rng: np.random.Generator) -> FloatArray:
    """Requests per second at each of `times` (seconds from the start of the run)."""
    rps = _base_rps(spec.base, times)
    for event in spec.events:
        rps = rps * _event_factor(event, times)
    if spec.noise > 0:
        # Lognormal with mean 1 so noise does not shift the average load.
        sigma = math.sqrt(math.log(1.0 + spec.noise**2))
        rps = rps * rng.lognormal(-0.5 * sigma**2, sigma, size=rps.shape)
    return np.asarray(np.maximum(rps, 0.0))


def tick_times(duration: float, tick: float) -> FloatArray:
    return np.arange(0.0, duration, tick, dtype=np.float64)


def describe(events: Sequence[Event]) -> list[tuple[float, str]]:
    """The moments where a load change begins, for recovery times in the report."""
    moments: list[tuple[float, str]] = []
    for event in events:
        if isinstance(event, FlashCrowd):
            moments.append((event.start, f"flash crowd x{event.multiplier:g}"))
        elif event.factor > 1:
            moments.append((event.at, f"load step x{event.factor:g}"))
    return moments
