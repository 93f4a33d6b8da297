"""Offered load: requests per second at each simulated tick, computed for the whole run at once.

A load is a base shape (constant, diurnal or a replayed trace) times any number of events (steps
and flash crowds), times multiplicative noise in the load itself. Everything is a numpy array over
the tick times, so a three-week run costs one vectorised pass.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

BUNDLED_TRACES = {"worldcup98": "worldcup98-1998-06-01_06-21.csv"}


class TraceError(ValueError):
    """A trace file that cannot be replayed; the message names the file and line."""


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
    """Replay of per-minute request counts, scaled so the slice's busiest minute is `peak_rps`.

    `start_minute` skips into the trace; `speedup` > 1 plays it faster (one simulated second
    covers `speedup` seconds of the trace).
    """

    per_minute: tuple[float, ...]
    peak_rps: float
    start_minute: float = 0.0
    speedup: float = 1.0
    name: str = "trace"


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


def read_trace_csv(path: Path) -> tuple[float, ...]:
    """Per-minute counts from a CSV whose last column is the count (a header row is allowed)."""
    try:
        with path.open(newline="") as handle:
            rows = list(csv.reader(handle))
    except OSError as error:
        raise TraceError(f"{path}: cannot read the trace: {error.strerror}") from error
    counts: list[float] = []
    for line_number, row in enumerate(rows, start=1):
        if not row:
            continue
        try:
            value = float(row[-1])
        except ValueError:
            if line_number == 1:
                continue
            raise TraceError(
                f"{path}:{line_number}: the last column must be a request count, got {row[-1]!r}"
            ) from None
        if not math.isfinite(value) or value < 0:
            raise TraceError(f"{path}:{line_number}: a request count must be >= 0, got {value}")
        counts.append(value)
    if len(counts) < 2:
        raise TraceError(f"{path}: a trace needs at least two minutes of counts")
    return tuple(counts)


def bundled_trace(name: str) -> tuple[float, ...]:
    if name not in BUNDLED_TRACES:
        known = ", ".join(sorted(BUNDLED_TRACES))
        raise TraceError(f"no bundled trace named {name!r} (bundled: {known})")
    resource = resources.files("autotuner").joinpath("data", "traces", BUNDLED_TRACES[name])
    with resources.as_file(resource) as path:
        return read_trace_csv(Path(path))


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
