"""Objective rules' inputs: the objective's series joined with its load and utilisation.

An objective rule reads three metrics. Its targets are the objective metric's series; each is
joined to the load and utilisation series with the same labels, or to the only series of a
metric that has one (a fleet-wide load, say). A target whose inputs are not all present,
finite and fresh has no data, and the engine does nothing with it, as for any rule.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Final, NamedTuple

from autotuner.core.learn.capacity import CapacityParameters, Observation
from autotuner.core.model import Labels, MetricAnswer, NoData, Sample, Series
from autotuner.core.rules import Objective, Rule


class Inputs(NamedTuple):
    """One target's readings, or why it has none."""

    labels: Labels
    latency: float | None
    observation: Observation | None
    no_data: str | None


class _Derived(NamedTuple):
    objective: Objective
    parameters: CapacityParameters
    bounds: str  # how a reason states the objective: "(at most 0.5, aim 0.4)"


# Per objective, by identity: both are asked for on every tick of every target. An entry holds
# its objective, so the id cannot be reused while the entry lives.
_DERIVED: dict[int, _Derived] = {}
_DERIVED_LIMIT = 256


def _derived(objective: Objective) -> _Derived:
    known = _DERIVED.get(id(objective))
    if known is not None and known.objective is objective:
        return known
    made = _Derived(
        objective,
        CapacityParameters(
            aim=objective.aim,
            at_most=objective.at_most,
            settle=objective.settle,
            fallback_utilisation=objective.fallback_utilisation,
            lead=objective.lead,
        ),
        f"(at most {objective.at_most:g}, aim {objective.aim:g})",
    )
    if len(_DERIVED) >= _DERIVED_LIMIT:
        _DERIVED.clear()
    _DERIVED[id(objective)] = made
    return made


def parameters(objective: Objective) -> CapacityParameters:
    return _derived(objective).parameters


def _index(answer: MetricAnswer) -> Mapping[Labels, Sample] | str:
    if isinstance(answer, NoData):
        return answer.reason
    if not answer.samples:
        return "the query returned no series"
    return {sample.labels: sample for sample in answer.samples}


def _value(
    name: str, index: Mapping[Labels, Sample] | str, labels: Labels, now: float, max_age: float
) -> float | str:
    if isinstance(index, str):
        return f"{name}: {index}"
    sample = index.get(labels)
    if sample is None:
        if len(index) != 1:
            return f"{name} has no series with these labels"
        sample = next(iter(index.values()))
    if not math.isfinite(sample.value):
        return f"{name} is {sample.value}"
    if now - sample.timestamp > max_age:
        return f"{name} is stale ({now - sample.timestamp:g}s old)"
    return sample.value


_NOT_FETCHED: MetricAnswer = NoData("the metric was not fetched")
# Every tick of every target builds its inputs: with `tuple.__new__`, every field given, as
# autotuner.core.records does (a named tuple's own constructor runs as Python code).
_new: Final = tuple.__new__


def join(
    objective: Objective,
    latency: Series,
    answers: Mapping[str, MetricAnswer],
    current: Mapping[Labels, float],
    now: float,
    max_age: float,
) -> list[Inputs]:
    """Each target's observation; `current` holds each target's replica count, where read."""
    load_index = _index(answers.get(objective.load, _NOT_FETCHED))
    utilisation_index = _index(answers.get(objective.utilisation, _NOT_FETCHED))
    joined = []
    for sample in latency.samples:
        labels = sample.labels
        if not math.isfinite(sample.value):
            joined.append(_new(Inputs, (labels, None, None, f"the value is {sample.value}")))
            continue
        if now - sample.timestamp > max_age:
            age = round(now - sample.timestamp, 3)
            joined.append(_new(Inputs, (labels, None, None, f"the sample is stale ({age:g}s old)")))
            continue
        load = _value(objective.load, load_index, labels, now, max_age)
        utilisation = _value(objective.utilisation, utilisation_index, labels, now, max_age)
        if isinstance(load, str) or isinstance(utilisation, str):
            reason = load if isinstance(load, str) else str(utilisation)
            joined.append(_new(Inputs, (labels, sample.value, None, reason)))
            continue
        replicas = current.get(labels)
        observation = (
            None
            if replicas is None
            else _new(Observation, (load, sample.value, min(1.0, max(0.0, utilisation)), replicas))
        )
        joined.append(_new(Inputs, (labels, sample.value, observation, None)))
    return joined


def describe(rule: Rule, value: float | None) -> str:
    objective = rule.objective
    assert objective is not None
    if value is None:
        return f"{rule.metric} has no data"
    return f"{rule.metric} {value:.3g} {_derived(objective).bounds}"
