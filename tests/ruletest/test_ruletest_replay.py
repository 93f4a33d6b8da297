"""The replaying metric source and the recording actuator a rule test runs `tick` with."""

from __future__ import annotations

import math

from autotuner.core.model import (
    Decision,
    KnobKind,
    KnobRef,
    KnobUnreadable,
    KnobValue,
    MetricQuery,
    NoData,
    OutcomeStatus,
    Phase,
    Sample,
    Series,
    Verdict,
)
from autotuner.ruletest.notation import expand_values
from autotuner.ruletest.replay import RecordingActuator, ReplaySource
from autotuner.ruletest.testfile import InputSeries

LATENCY = MetricQuery("latency", "histogram_quantile(...)")
HITS = MetricQuery("hits", "sum(...)")
API = KnobRef(KnobKind.DEPLOYMENT, "api", "crm")
TTL = KnobRef(KnobKind.CONFIG_KEY, "crm:cache:ttl:users")


def series(metric: str, labels: dict[str, str], values: str) -> InputSeries:
    return InputSeries(metric, tuple(sorted(labels.items())), expand_values(values), line=1)


def test_each_step_answers_the_value_at_or_before_the_time() -> None:
    source = ReplaySource([series("latency", {"pod": "a"}, "1 2 3")], interval=60)
    assert source.fetch([LATENCY], 0)["latency"] == Series((Sample((("pod", "a"),), 1.0, 0),))
    assert source.fetch([LATENCY], 60)["latency"] == Series((Sample((("pod", "a"),), 2.0, 60),))
    # Between two steps the latest one answers, stamped with its own time.
    assert source.fetch([LATENCY], 150)["latency"] == Series((Sample((("pod", "a"),), 3.0, 120),))


def test_missing_stale_and_past_the_end_are_no_data() -> None:
    source = ReplaySource([series("latency", {}, "1 _ stale")], interval=60)
    missing = source.fetch([LATENCY], 60)["latency"]
    stale = source.fetch([LATENCY], 120)["latency"]
    ended = source.fetch([LATENCY], 180)["latency"]
    assert isinstance(missing, NoData) and "no sample (_)" in missing.reason
    assert isinstance(stale, NoData) and "is stale" in stale.reason
    assert isinstance(ended, NoData) and "no more values" in ended.reason
    assert "at 3m" in ended.reason


def test_a_metric_without_input_series_is_no_data() -> None:
    source = ReplaySource([series("latency", {}, "1")], interval=60)
    answer = source.fetch([LATENCY, HITS], 0)
    assert isinstance(answer["hits"], NoData)
    assert "no input series for hits" in answer["hits"].reason
    assert isinstance(answer["latency"], Series)


def test_only_series_with_a_value_are_in_the_answer() -> None:
    source = ReplaySource(
        [series("hits", {"cache": "a"}, "0.5 _"), series("hits", {"cache": "b"}, "0.6 0.7")],
        interval=60,
    )
    first = source.fetch([HITS], 0)["hits"]
    second = source.fetch([HITS], 60)["hits"]
    assert isinstance(first, Series) and len(first.samples) == 2
    assert second == Series((Sample((("cache", "b"),), 0.7, 60),))


def test_nan_and_inf_are_passed_on_for_the_engine_to_refuse() -> None:
    source = ReplaySource([series("latency", {}, "NaN Inf")], interval=60)
    first = source.fetch([LATENCY], 0)["latency"]
    assert isinstance(first, Series) and math.isnan(first.samples[0].value)


def decision(knob: KnobRef, current: float | None, final: float, dry_run: bool = False) -> Decision:
    return Decision(
        time=0,
        rule="r",
        labels=(),
        knob=knob,
        verdict=Verdict.CHANGE,
        phase=Phase.FIRING,
        metric="latency",
        value=1.0,
        threshold=0.5,
        current=current,
        proposed=final,
        final=final,
        dry_run=dry_run,
    )


def test_actuator_reads_initial_values_and_reports_missing_knobs() -> None:
    actuator = RecordingActuator({API: 4})
    readings = actuator.read([API, TTL])
    assert readings[API] == KnobValue(4)
    unknown = readings[TTL]
    assert isinstance(unknown, KnobUnreadable) and unknown.missing and not unknown.skip
    assert "key/crm:cache:ttl:users" in unknown.reason


def test_actuator_applies_and_records_changes() -> None:
    actuator = RecordingActuator({API: 4})
    outcome = actuator.apply(decision(API, 4, 6))
    assert outcome.status is OutcomeStatus.APPLIED
    assert (outcome.old, outcome.new) == (4, 6)
    assert actuator.read([API])[API] == KnobValue(6)
    created = actuator.apply(decision(TTL, None, 300))
    assert created.old is None and actuator.read([TTL])[TTL] == KnobValue(300)
    assert [d.knob for d, _ in actuator.applied] == [API, TTL]


def test_actuator_dry_run_changes_nothing() -> None:
    actuator = RecordingActuator({API: 4})
    outcome = actuator.apply(decision(API, 4, 6, dry_run=True))
    assert outcome.status is OutcomeStatus.DRY_RUN
    assert actuator.read([API])[API] == KnobValue(4)
    assert actuator.applied == []
