"""Requests per second in each minute of a period, from a Prometheus range query, bounded.

What `autotuner trace fetch` saves as a trace file. The query is a request rate, one series
(`sum(rate(http_requests_total[1m]))`), asked with `query_range` every `step` seconds, where
`step` divides a minute. Prometheus stamps a range query's sample at its evaluation time t and
`rate(x[w])` looks back over (t - w, t], so minute M (from M to M + 60 s) gets the mean of the
samples stamped in (M, M + 60 s]: at step 1m, the one at M + 60 s.

Bounds, all checked before anything is sent: the period is at most `max_span` seconds and
`max_points` samples. Prometheus itself refuses a range query of more than 11,000 points per
series, so the period is asked in requests of at most `POINTS_PER_REQUEST` points each, on
whole minutes, one after the other.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from autotuner.adapters.prometheus import PrometheusSource
from autotuner.config.durations import format_duration
from autotuner.core.model import Labels, NoData, format_labels

# Under Prometheus's own limit of 11,000 points per series and query.
POINTS_PER_REQUEST = 10_000

GapFill = Literal["linear", "zero"]


class TraceFetchError(ValueError):
    """The trace cannot be fetched as asked; the message says why and what to change."""


def _utc(epoch_seconds: float) -> str:
    return datetime.fromtimestamp(epoch_seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class TraceQuery:
    """The query and the period [start, end), in Unix seconds on whole minutes."""

    expr: str
    start: float
    end: float
    step: float = 60.0

    def __post_init__(self) -> None:
        if not self.expr.strip():
            raise TraceFetchError("the query is empty; give a request-rate query")
        for name, moment in (("start", self.start), ("end", self.end)):
            if not math.isfinite(moment) or moment % 60 != 0:
                raise TraceFetchError(
                    f"the {name} {_utc(moment)} is not on a whole minute; a trace has one "
                    "row per minute, so give a time like 2026-11-01T00:00Z"
                )
        if self.end <= self.start:
            raise TraceFetchError(f"the end {_utc(self.end)} must come after the start")
        if not (0 < self.step <= 60 and (60 / self.step).is_integer()):
            raise TraceFetchError(
                f"the step {format_duration(self.step)} does not divide a minute; use 1m "
                "(one sample a minute), 30s, 15s, 10s ..."
            )

    @property
    def minutes(self) -> int:
        return round((self.end - self.start) / 60)

    @property
    def samples_per_minute(self) -> int:
        return round(60 / self.step)

    @property
    def points(self) -> int:
        return self.minutes * self.samples_per_minute

    def describe(self) -> str:
        return f"{_utc(self.start)} to {_utc(self.end)} ({self.minutes} minutes)"


def check_bounds(query: TraceQuery, max_points: int, max_span: float) -> None:
    """TraceFetchError when the period is longer than `max_span` s or has over `max_points`."""
    if query.end - query.start > max_span:
        raise TraceFetchError(
            f"the period {query.describe()} is longer than the most allowed, "
            f"{format_duration(max_span)}; shorten it, or raise --max-span"
        )
    if query.points > max_points:
        raise TraceFetchError(
            f"the period {query.describe()} at a step of {format_duration(query.step)} is "
            f"{query.points:,} points, more than the most allowed, {max_points:,}; shorten "
            "it, use a longer --step, or raise --max-points"
        )


@dataclass(frozen=True, slots=True)
class MinuteRates:
    """Requests per second in each minute of the period; NaN where no usable sample was."""

    query: TraceQuery
    rates: tuple[float, ...]
    labels: Labels
    requests: int

    @property
    def missing(self) -> int:
        return sum(1 for rate in self.rates if math.isnan(rate))

    def gaps(self) -> tuple[tuple[int, int], ...]:
        """(first minute, minutes) of each run of missing minutes."""
        runs: list[tuple[int, int]] = []
        for index, rate in enumerate(self.rates):
            if not math.isnan(rate):
                continue
            if runs and runs[-1][0] + runs[-1][1] == index:
                runs[-1] = (runs[-1][0], runs[-1][1] + 1)
            else:
                runs.append((index, 1))
        return tuple(runs)

    def describe_gaps(self, most: int = 3) -> str:
        shown = [
            f"{_utc(self.query.start + 60 * first)} ({length} min)"
            for first, length in self.gaps()[:most]
        ]
        more = len(self.gaps()) - most
        return ", ".join(shown) + (f" and {more} more" if more > 0 else "")


def fetch_minute_rates(
    source: PrometheusSource, query: TraceQuery, points_per_request: int = POINTS_PER_REQUEST
) -> MinuteRates:
    """Ask the period in requests of at most `points_per_request` points; TraceFetchError if
    Prometheus fails, the answer is not one series of rates, or holds nothing in the period."""
    per_minute = query.samples_per_minute
    minutes_per_request = max(1, points_per_request // per_minute)
    requests = math.ceil(query.minutes / minutes_per_request)
    totals = [0.0] * query.minutes
    counts = [0] * query.minutes
    label_sets: set[Labels] = set()
    for index in range(requests):
        first = index * minutes_per_request
        last = min(query.minutes, first + minutes_per_request)
        answer = source.query_range(
            query.expr,
            query.start + 60 * first + query.step,
            query.start + 60 * last,
            query.step,
        )
        if isinstance(answer, NoData):
            part = f"request {index + 1} of {requests}: " if requests > 1 else ""
            raise TraceFetchError(f"{part}{answer.reason}")
        for labels, samples in answer:
            label_sets.add(labels)
            for stamp, value in samples:
                _add(query, stamp, value, totals, counts)
    if not label_sets:
        raise TraceFetchError(
            f"the query returned no data from {query.describe()}; check it over that period "
            "in Prometheus's own UI"
        )
    if len(label_sets) > 1:
        shown = ", ".join(format_labels(labels) or "{}" for labels in sorted(label_sets)[:3])
        raise TraceFetchError(
            f"the query returns {len(label_sets)} series ({shown}); a trace is one series: "
            "aggregate them, e.g. sum(rate(http_requests_total[1m]))"
        )
    if not any(counts):
        raise TraceFetchError(
            f"the query's series {format_labels(next(iter(label_sets))) or '{}'} has no "
            f"usable sample (only NaN or infinite values) from {query.describe()}"
        )
    rates = tuple(
        total / count if count else math.nan for total, count in zip(totals, counts, strict=True)
    )
    return MinuteRates(query, rates, next(iter(label_sets)), requests)


def _add(
    query: TraceQuery, stamp: float, value: float, totals: list[float], counts: list[int]
) -> None:
    """Count a sample stamped `stamp` toward the minute it closes; unusable ones are skipped."""
    if not math.isfinite(value):
        return
    if value < 0:
        raise TraceFetchError(
            f"the query gave {value:g} at {_utc(stamp)}; a request rate is never negative: "
            "give a rate such as sum(rate(http_requests_total[1m]))"
        )
    sample = round((stamp - query.start) / query.step)
    minute = (sample - 1) // query.samples_per_minute
    if 0 <= minute < len(totals):
        totals[minute] += value
        counts[minute] += 1


def filled(rates: MinuteRates, how: GapFill) -> tuple[float, ...]:
    """The rates with each missing minute filled: on the line between the minutes either side
    of the gap (`linear`; a gap at an end takes the nearest minute's rate), or with 0 (`zero`).

    `fetch_minute_rates` never returns a trace without one usable minute, so every gap has a
    neighbour on at least one side.
    """
    values = list(rates.rates)
    for first, length in rates.gaps():
        before = values[first - 1] if first > 0 else math.nan
        after = values[first + length] if first + length < len(values) else math.nan
        for offset in range(length):
            if how == "zero":
                value = 0.0
            elif math.isnan(before):
                value = after
            elif math.isnan(after):
                value = before
            else:
                value = before + (after - before) * (offset + 1) / (length + 1)
            values[first + offset] = value
    return tuple(values)
