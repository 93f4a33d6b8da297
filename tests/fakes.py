"""In-memory ports for tests of the engine and `tick`: a source fed by hand, knobs in a dict."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

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
    labels_of,
)

Value = float | NoData | Mapping[tuple[tuple[str, str], ...], float]


@dataclass
class FakeSource:
    """Answers each metric with what the test set; one unlabelled series for a plain float."""

    values: dict[str, Value] = field(default_factory=dict)
    timestamps: dict[str, float] = field(default_factory=dict)
    labels: dict[str, dict[str, str]] = field(default_factory=dict)

    def fetch(self, queries: Sequence[MetricQuery], at: float) -> Mapping[str, MetricAnswer]:
        answers: dict[str, MetricAnswer] = {}
        for query in queries:
            value = self.values.get(query.name, NoData("no value set in the test"))
            stamp = self.timestamps.get(query.name, at)
            if isinstance(value, NoData):
                answers[query.name] = value
            elif isinstance(value, Mapping):
                answers[query.name] = Series(
                    tuple(Sample(labels, v, stamp) for labels, v in value.items())
                )
            else:
                labels = labels_of(self.labels.get(query.name, {}))
                answers[query.name] = Series((Sample(labels, value, stamp),))
        return answers


@dataclass
class FakeActuator:
    """Holds knob values by id; records what it applied."""

    knobs: dict[str, float] = field(default_factory=dict)
    unreadable: dict[str, KnobUnreadable] = field(default_factory=dict)
    applied: list[Decision] = field(default_factory=list)
    fail: bool = False

    def handles(self, knob: KnobRef) -> bool:
        return True

    def read(self, knobs: Sequence[KnobRef]) -> Mapping[KnobRef, KnobReading]:
        out: dict[KnobRef, KnobReading] = {}
        for knob in knobs:
            if knob.id in self.unreadable:
                out[knob] = self.unreadable[knob.id]
            elif knob.id in self.knobs:
                out[knob] = KnobValue(self.knobs[knob.id])
            else:
                out[knob] = KnobUnreadable(f"{knob.id} does not exist", missing=True)
        return out

    def apply(self, decision: Decision) -> Outcome:
        if self.fail:
            return Outcome(OutcomeStatus.FAILED, "the test made it fail")
        assert decision.final is not None
        old = self.knobs.get(decision.knob.id)
        self.knobs[decision.knob.id] = decision.final
        self.applied.append(decision)
        return Outcome(OutcomeStatus.APPLIED, "", old, decision.final)
