"""The test doubles a rule test runs `tick` with: recorded series in, recorded changes out."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence

from autotuner.config.durations import format_duration
from autotuner.core.model import (
    Decision,
    KnobReading,
    KnobRef,
    KnobUnreadable,
    KnobValue,
    MetricAnswer,
    MetricQuery,
    NoData,
    Outcome,
    OutcomeStatus,
    Sample,
    Series,
)
from autotuner.ruletest.notation import Marker
from autotuner.ruletest.testfile import InputSeries


class ReplaySource:
    """Answers each metric with the input series' points at the evaluation time.

    A metric's answer holds one sample per input series that has a value at that step. A `_`,
    a `stale` or a step past the end of the values is no sample; when no series of a metric
    has a sample, the answer is NoData, so the engine treats it as the outage it models.
    """

    def __init__(self, series: Sequence[InputSeries], interval: float) -> None:
        self.interval = interval
        self.by_metric: dict[str, list[InputSeries]] = defaultdict(list)
        for item in series:
            self.by_metric[item.metric].append(item)

    def step_at(self, at: float) -> int:
        # The latest step at or before `at`, forgiving float error in `at / interval`.
        return int(at / self.interval + 1e-9)

    def fetch(self, queries: Sequence[MetricQuery], at: float) -> Mapping[str, MetricAnswer]:
        step = self.step_at(at)
        answers: dict[str, MetricAnswer] = {}
        for query in queries:
            given = self.by_metric.get(query.name)
            if not given:
                answers[query.name] = NoData(f"the test gives no input series for {query.name}")
                continue
            samples = []
            gaps = []
            for item in given:
                point = item.points[step] if step < len(item.points) else None
                if isinstance(point, float):
                    samples.append(Sample(item.labels, point, step * self.interval))
                else:
                    gaps.append(f"{item} {_gap(point)}")
            if samples:
                answers[query.name] = Series(tuple(samples))
            else:
                when = format_duration(at)
                answers[query.name] = NoData(f"no sample at {when}: " + "; ".join(gaps))
        return answers


def _gap(point: Marker | None) -> str:
    if point is Marker.STALE:
        return "is stale"
    if point is Marker.MISSING:
        return "has no sample (_)"
    return "has no more values"


class RecordingActuator:
    """Holds every knob's value, starting from the test's `initial`, and records changes.

    A knob the test gives no initial value for reads as missing, as an absent Redis key or
    Deployment would.
    """

    def __init__(self, initial: Mapping[KnobRef, float]) -> None:
        self.values: dict[KnobRef, float] = dict(initial)
        self.applied: list[tuple[Decision, Outcome]] = []

    def handles(self, knob: KnobRef) -> bool:
        return True

    def read(self, knobs: Sequence[KnobRef]) -> Mapping[KnobRef, KnobReading]:
        readings: dict[KnobRef, KnobReading] = {}
        for knob in knobs:
            if knob in self.values:
                readings[knob] = KnobValue(self.values[knob])
            else:
                readings[knob] = KnobUnreadable(
                    f"{knob.id} has no value under the test's `initial`", missing=True
                )
        return readings

    def apply(self, decision: Decision) -> Outcome:
        if decision.final is None:
            return Outcome(OutcomeStatus.FAILED, "the decision has no value to write")
        old = self.values.get(decision.knob)
        if decision.dry_run:
            return Outcome(OutcomeStatus.DRY_RUN, "dry run: not applied", old, decision.final)
        self.values[decision.knob] = decision.final
        outcome = Outcome(OutcomeStatus.APPLIED, "recorded by the rule test", old, decision.final)
        self.applied.append((decision, outcome))
        return outcome
