"""How a metric source turns the samples it got into an answer, the same for every source.

Production's Prometheus source and the simulator's both call `answer_from`, so that "no data"
means one thing wherever the engine's input comes from.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from operator import attrgetter

from autotuner.core.model import Labels, MetricAnswer, NoData, Sample, format_labels
from autotuner.core.records import sample, series

# How many unusable series a reason names before it summarises the rest.
REASONS_SHOWN = 3


def unusable_reason(labels: Labels, timestamp: float, value: float, at: float, limit: float) -> str:
    """Why a sample that is not finite, or older than `limit`, cannot be acted on."""
    where = format_labels(labels) if labels else "the value"
    if math.isnan(value):
        return f"{where} is NaN (for example 0/0)"
    if math.isinf(value):
        return f"{where} is {'+' if value > 0 else '-'}Inf (a division by zero)"
    return f"{where} is {at - timestamp:.0f} s old, older than the {limit:g} s staleness limit"


def summary(reasons: Sequence[str]) -> str:
    rest = len(reasons) - REASONS_SHOWN
    return "; ".join(reasons[:REASONS_SHOWN]) + (f"; and {rest} more" if rest > 0 else "")


def answer_from(
    points: Iterable[tuple[Labels, float, float]], at: float, staleness_limit: float
) -> tuple[MetricAnswer, tuple[str, ...]]:
    """(labels, timestamp, value) points as an answer, and the reasons any were unusable.

    No series, or none usable, is NoData with the reason. Otherwise every sample is passed on
    as it is, sorted by labels as Prometheus returns them: the engine holds each unusable
    target with its own reason rather than resolving it.
    """
    samples: list[Sample] = []
    unusable: list[str] = []
    for labels, timestamp, value in points:
        samples.append(sample(labels, value, timestamp))
        if math.isfinite(value) and at - timestamp <= staleness_limit:
            continue
        unusable.append(unusable_reason(labels, timestamp, value, at, staleness_limit))
    if not samples:
        return NoData("the query returned no series"), ()
    if len(unusable) == len(samples):
        return NoData("no usable value: " + summary(unusable)), tuple(unusable)
    if len(samples) > 1:
        samples.sort(key=_LABELS)
    return series(tuple(samples)), tuple(unusable)


_LABELS = attrgetter("labels")
