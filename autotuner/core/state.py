"""The engine's memory between ticks, as plain data that round-trips exactly through JSON.

The daemon saves it every cycle and restores it on start, so that a restart neither forgets a
cooldown nor loses a pending timer or a stabilization window. The per-target and per-knob
records are named tuples, as the per-tick records of `autotuner.core.model` are: the engine
builds them every tick.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

from autotuner.core.learn.capacity import CapacityState
from autotuner.core.model import Labels, Phase

STATE_FORMAT = 1

TargetKey = tuple[str, Labels]  # (rule name, series labels)


class TargetState(NamedTuple):
    phase: Phase = Phase.INACTIVE
    active_since: float | None = None  # when the condition started to hold (pending start)
    last_true: float | None = None  # the last tick the condition held (for keep_firing_for)
    last_action: float | None = None  # the last change this rule made to its knob (cooldown)
    knob: str | None = None  # the knob id, remembered so that a no-data tick still knows it

    def to_dict(self) -> dict[str, Any]:
        return {
            "phase": self.phase.value,
            "active_since": self.active_since,
            "last_true": self.last_true,
            "last_action": self.last_action,
            "knob": self.knob,
        }

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> TargetState:
        return TargetState(
            phase=Phase(data["phase"]),
            active_since=data.get("active_since"),
            last_true=data.get("last_true"),
            last_action=data.get("last_action"),
            knob=data.get("knob"),
        )


INITIAL_TARGET = TargetState()


# (time, value) pairs in time order.
TimedValues = tuple[tuple[float, float], ...]


def with_recommendation(recommendations: TimedValues, now: float, value: float) -> TimedValues:
    """`recommendations` with `value` recommended at `now`.

    A run of equal recommendations keeps only its latest time. That loses nothing: a
    stabilization window asks only which values were recommended after its start, and a run
    had one after it exactly when its latest time is after it. So a knob's history is as long
    as the number of distinct values in its window, not the number of ticks.
    """
    if recommendations and recommendations[-1][1] == value:
        return (*recommendations[:-1], (now, value))
    return (*recommendations, (now, value))


class KnobState(NamedTuple):
    # (time, recommended value) for stabilization windows, a run of one value at its latest time.
    recommendations: TimedValues = ()
    # (time, applied change) of past changes, for rate limits.
    changes: TimedValues = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "recommendations": [list(pair) for pair in self.recommendations],
            "changes": [list(pair) for pair in self.changes],
        }

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> KnobState:
        return KnobState(
            recommendations=tuple((float(t), float(v)) for t, v in data["recommendations"]),
            changes=tuple((float(t), float(d)) for t, d in data["changes"]),
        )


@dataclass(frozen=True, slots=True)
class EngineState:
    targets: Mapping[TargetKey, TargetState] = field(default_factory=dict)
    knobs: Mapping[str, KnobState] = field(default_factory=dict)
    # The knob ids each rule's series named at its last answer with data, so that an outage of
    # a rule's metric still knows which knobs lack an input (and must not be lowered).
    rule_knobs: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # What each objective rule's target has learned of its capacity.
    capacity: Mapping[TargetKey, CapacityState] = field(default_factory=dict)

    def target(self, rule: str, labels: Labels) -> TargetState:
        return self.targets.get((rule, labels), INITIAL_TARGET)

    def with_targets(self, targets: Mapping[TargetKey, TargetState]) -> EngineState:
        return replace(self, targets=targets)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": STATE_FORMAT,
            "targets": [
                {"rule": rule, "labels": dict(labels), **target.to_dict()}
                for (rule, labels), target in sorted(self.targets.items())
            ],
            "knobs": {knob: state.to_dict() for knob, state in sorted(self.knobs.items())},
            "rule_knobs": {rule: list(knobs) for rule, knobs in sorted(self.rule_knobs.items())},
            "capacity": [
                {"rule": rule, "labels": dict(labels), "model": model.to_dict()}
                for (rule, labels), model in sorted(self.capacity.items())
            ],
        }

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> EngineState:
        if data.get("format") != STATE_FORMAT:
            raise ValueError(
                f"engine state format {data.get('format')!r} is not {STATE_FORMAT}; "
                "it was written by another version of autotuner"
            )
        targets = {
            (str(item["rule"]), tuple(sorted(item["labels"].items()))): TargetState.from_dict(item)
            for item in data["targets"]
        }
        knobs = {str(knob): KnobState.from_dict(item) for knob, item in data["knobs"].items()}
        rule_knobs = {
            str(rule): tuple(str(k) for k in knob_ids)
            for rule, knob_ids in data.get("rule_knobs", {}).items()
        }
        capacity = {
            (str(item["rule"]), tuple(sorted(item["labels"].items()))): CapacityState.from_dict(
                item["model"]
            )
            for item in data.get("capacity", ())
        }
        return EngineState(targets=targets, knobs=knobs, rule_knobs=rule_knobs, capacity=capacity)
