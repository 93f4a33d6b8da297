"""What Prometheus would show of the modelled system: windowed, noisy, named as rule files name it.

A rule's `rate(x[5m])` or `histogram_quantile(..., rate(..[5m]))` averages the last five minutes,
so it lags a change. Each series here is the weighted mean of the model's signal over the last
`window` seconds (ratios weighted by their denominators, as sum(rate(a))/sum(rate(b)) is; latency
quantiles weighted by request rate, approximating a quantile over the window's merged histogram),
times (1 + σ·z) measurement noise with z drawn once per tick and series from the run's seeded
generator, so the noise is the same however often a tick asks.

Answers take the shape the Prometheus source gives them (autotuner/adapters/prometheus.py), so
the engine meets the same cases in simulation as in production: a series shows up once its
window holds a step; a ratio whose denominator was zero over the whole window (a cache without
traffic) is NaN, as 0/0 is in PromQL; samples come sorted by labels. While one sample is usable
the NaN ones are passed on beside it, and the engine holds those targets; when none is, the
answer is `NoData` saying why. Samples carry the tick's time, so none is ever stale.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from autotuner.core.answers import answer_from
from autotuner.core.model import (
    Labels,
    MetricAnswer,
    MetricQuery,
    NoData,
    labels_of,
)
from autotuner.sim.faults import Fault, FaultKind


@dataclass(frozen=True, slots=True)
class SeriesDef:
    """One exposed series: its labels, the signal it shows and the signal that weights it."""

    labels: Labels
    signal: str
    weight: str = ""
    # Seconds this series averages over; 0 means the source's default (a 5m rate window).
    window: float = 0.0


def catalogue(namespace: str, caches: Sequence[str]) -> dict[str, tuple[SeriesDef, ...]]:
    """The metric names the shipped rule files use, answered from the model's signals."""
    api = labels_of({"namespace": namespace, "deployment": "api"})
    ml = labels_of({"namespace": namespace, "deployment": "ml"})
    return {
        "api_p95_seconds": (SeriesDef(api, "api_p95", "load_rps"),),
        "ml_p95_seconds": (SeriesDef(ml, "ml_p95", "ml_rps"),),
        "cache_hit_ratio": tuple(
            SeriesDef(labels_of({"cache": c}), f"hit:{c}", f"requests:{c}") for c in caches
        ),
        "cache_stale_ratio": tuple(
            SeriesDef(labels_of({"cache": c}), f"stale:{c}", f"requests:{c}") for c in caches
        ),
        "db_pool_usage": (SeriesDef((), "pool_usage"),),
        # As metrics-server reports CPU to the HPA: a one-minute average.
        "api_cpu_utilisation": (SeriesDef(api, "api_utilisation", window=60.0),),
        "ml_cpu_utilisation": (SeriesDef(ml, "ml_utilisation", window=60.0),),
        # Request rates as the shipped objective rules read them: a one-minute rate.
        "api_requests_per_second": (SeriesDef(api, "load_rps", window=60.0),),
        "ml_requests_per_second": (SeriesDef(ml, "ml_rps", window=60.0),),
    }


class _Window:
    """Running weighted sums over the last `size` steps (a ring buffer, O(1) per step)."""

    __slots__ = ("_count", "_index", "_sum", "_values", "_weight", "_weighted", "_weights")

    def __init__(self, size: int) -> None:
        self._values = [0.0] * size
        self._weights = [0.0] * size
        self._index = 0
        self._sum = 0.0
        self._weight = 0.0
        self._count = 0
        # Steps in the window with a positive weight: running sums keep rounding residue, so
        # "no weight at all" is counted, not read off the sum.
        self._weighted = 0

    def push(self, value: float, weight: float) -> None:
        i = self._index
        self._weighted += (weight > 0.0) - (self._weights[i] > 0.0)
        if self._weighted == 0:
            self._sum = self._weight = 0.0
        else:
            self._sum += value * weight - self._values[i] * self._weights[i]
            self._weight += weight - self._weights[i]
        self._values[i] = value
        self._weights[i] = weight
        self._index = (i + 1) % len(self._values)
        self._count += 1

    def mean(self) -> float | None:
        """None before the first step; NaN when no step in the window had weight (0/0)."""
        if self._count == 0:
            return None
        if self._weighted == 0 or self._weight <= 1e-12:
            return math.nan
        return self._sum / self._weight


class SimMetricSource:
    """The MetricSource port over the modelled system's signals."""

    def __init__(
        self,
        series: Mapping[str, tuple[SeriesDef, ...]],
        tick: float,
        window: float,
        noise: np.ndarray,
        relative_noise: float,
        faults: Sequence[Fault] = (),
    ) -> None:
        self._series = dict(series)
        self._noise = noise
        self._relative_noise = relative_noise
        self._outages = tuple(f for f in faults if f.kind is FaultKind.METRIC_OUTAGE)
        self._windows: dict[tuple[str, int], _Window] = {
            (name, i): _Window(max(1, round((definition.window or window) / tick)))
            for name, defs in self._series.items()
            for i, definition in enumerate(defs)
        }
        columns = {key: column for column, key in enumerate(self._windows)}
        # Answers list samples sorted by labels, as Prometheus does; the windows and noise
        # columns keep the catalogue's order, so a seed gives the same noise per series.
        self._answer_plans: dict[str, tuple[tuple[Labels, _Window, int], ...]] = {
            name: tuple(
                (defs[index].labels, self._windows[(name, index)], columns[(name, index)])
                for index in sorted(range(len(defs)), key=lambda index: defs[index].labels)
            )
            for name, defs in self._series.items()
        }
        # Per window: the window and the signals it records, in the catalogue's order.
        self._inputs = tuple(
            (window, definition.signal, definition.weight)
            for (name, index), window in self._windows.items()
            for definition in [self._series[name][index]]
        )
        self._noise_row: list[float] = []

    @property
    def series_count(self) -> int:
        return len(self._windows)

    def observe(self, step: int, signals: Mapping[str, float]) -> None:
        """Record one model step's signals into every series' window."""
        self._noise_row = self._noise[step % len(self._noise)].tolist()
        for window, signal, weight in self._inputs:
            window.push(signals[signal], signals[weight] if weight else 1.0)

    def _outage(self, name: str, at: float) -> Fault | None:
        for fault in self._outages:
            if fault.active(at) and (not fault.metrics or name in fault.metrics):
                return fault
        return None

    def fetch(self, queries: Sequence[MetricQuery], at: float) -> Mapping[str, MetricAnswer]:
        return {query.name: self._answer(query.name, at) for query in queries}

    def _answer(self, name: str, at: float) -> MetricAnswer:
        plan = self._answer_plans.get(name)
        if plan is None:
            known = ", ".join(sorted(self._series))
            return NoData(f"the simulated system exposes no metric {name!r} (it has: {known})")
        if self._outages and self._outage(name, at) is not None:
            return NoData("metric outage (simulated): the query returned no data")
        noise = self._noise_row
        relative_noise = self._relative_noise
        points: list[tuple[Labels, float, float]] = []
        for labels, window, column in plan:
            mean = window.mean()
            if mean is None:
                continue
            if math.isnan(mean):
                points.append((labels, at, mean))
                continue
            points.append((labels, at, max(0.0, mean * (1.0 + relative_noise * noise[column]))))
        # Samples carry the tick's time, so none is ever stale here.
        answer, _ = answer_from(points, at, math.inf)
        return answer

    def value(self, name: str, labels: Labels, at: float) -> float | None:
        """One series' current answer, for the built-in policies (HPA) that read metrics too."""
        answer = self._answer(name, at)
        if isinstance(answer, NoData):
            return None
        for sample in answer.samples:
            if sample.labels == labels:
                return sample.value if math.isfinite(sample.value) else None
        return None
