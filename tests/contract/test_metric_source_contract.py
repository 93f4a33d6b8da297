"""The MetricSource contract, checked against every implementation of the port.

Each implementation comes with a harness: the source plus the queries that, on its backend,
give a known labelled answer, no series, NaN, or an error, and a way to stop the backend. The
checks use only the harness, so an implementation joins the suite with one line in
`IMPLEMENTATIONS`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Protocol

import pytest

from autotuner.adapters.prometheus import PrometheusSettings, PrometheusSource
from autotuner.control.ports import MetricSource
from autotuner.core.model import Labels, MetricAnswer, MetricQuery, NoData, Series, labels_of
from tests.contract.sim_harness import sim_metric_source_harness
from tests.integration.prometheus_server import PrometheusServer


class MetricSourceHarness(Protocol):
    @property
    def source(self) -> MetricSource: ...

    def now(self) -> float:
        """The moment to ask about: the backend's present."""
        ...

    def labelled(self) -> tuple[MetricQuery, Mapping[Labels, float]]:
        """A query and the value the backend holds for each of its label sets (two or more)."""
        ...

    def empty(self) -> MetricQuery:
        """A well-formed query that matches no series."""
        ...

    def not_a_number(self) -> MetricQuery:
        """A query whose every value is undefined, as a ratio of two zero rates (0/0) is."""
        ...

    def partly_undefined(self) -> tuple[MetricQuery, Mapping[Labels, float], Labels]:
        """A query with a value for some label sets (as `labelled`) and 0/0 for one more."""
        ...

    def broken(self) -> MetricQuery:
        """A query the backend cannot evaluate."""
        ...

    def stop_backend(self) -> None:
        """The backend becomes unreachable."""
        ...


@dataclass(frozen=True, slots=True)
class Implementation:
    name: str
    harness: Callable[[], AbstractContextManager[MetricSourceHarness]]
    # Whether the backend can be stopped, for that check.
    can_stop: bool = True


class PrometheusHarness:
    """A private Prometheus (it starts in a fraction of a second without scrape targets); the
    known values are PromQL literals, so no scrape has to be waited for."""

    def __init__(self, server: PrometheusServer) -> None:
        self._server = server
        self.source = PrometheusSource(PrometheusSettings(server.url, timeout_seconds=2))

    def close(self) -> None:
        self.source.close()

    def now(self) -> float:
        return time.time()

    def labelled(self) -> tuple[MetricQuery, Mapping[Labels, float]]:
        held = {"profile": 0.75, "session": 0.5}
        expr = " or ".join(
            f'label_replace(vector({value}), "cache", "{cache}", "", "")'
            for cache, value in held.items()
        )
        expected = {labels_of({"cache": cache}): value for cache, value in held.items()}
        return MetricQuery("hit_ratio", expr), expected

    def empty(self) -> MetricQuery:
        return MetricQuery("nothing", 'cache_lookups_total{cache="no-such-cache"}')

    def not_a_number(self) -> MetricQuery:
        return MetricQuery("zero_over_zero", "vector(0) / vector(0)")

    def partly_undefined(self) -> tuple[MetricQuery, Mapping[Labels, float], Labels]:
        labelled, held = self.labelled()
        undefined = 'label_replace(vector(0) / vector(0), "cache", "cold", "", "")'
        query = MetricQuery("partly_undefined", f"{labelled.expr} or {undefined}")
        return query, held, labels_of({"cache": "cold"})

    def broken(self) -> MetricQuery:
        return MetricQuery("broken", "rate(cache_lookups_total[1m]")

    def stop_backend(self) -> None:
        self._server.stop()


@contextmanager
def prometheus_harness() -> Iterator[MetricSourceHarness]:
    with PrometheusServer() as server:
        harness = PrometheusHarness(server)
        try:
            yield harness
        finally:
            harness.close()


IMPLEMENTATIONS = [
    Implementation("prometheus", prometheus_harness),
    # Its backend stops as the simulator's metric outage fault stops it: every query, no data.
    Implementation("sim", sim_metric_source_harness),
]


@pytest.fixture(params=IMPLEMENTATIONS, ids=lambda i: i.name)
def harness(request: pytest.FixtureRequest) -> Iterator[MetricSourceHarness]:
    with request.param.harness() as opened:
        yield opened


@pytest.fixture(params=[i for i in IMPLEMENTATIONS if i.can_stop], ids=lambda i: i.name)
def stoppable_harness(request: pytest.FixtureRequest) -> Iterator[MetricSourceHarness]:
    with request.param.harness() as opened:
        yield opened


def assert_plain_reason(answer: MetricAnswer) -> str:
    assert isinstance(answer, NoData), f"expected no data, got {answer}"
    assert answer.reason.strip(), "a NoData must say why"
    assert "\n" not in answer.reason and "Traceback" not in answer.reason
    return answer.reason


def test_no_queries_give_no_answers(harness: MetricSourceHarness) -> None:
    assert dict(harness.source.fetch([], harness.now())) == {}


def test_every_named_query_gets_exactly_one_answer(harness: MetricSourceHarness) -> None:
    labelled, _ = harness.labelled()
    queries = [labelled, harness.empty(), harness.not_a_number(), harness.broken(), labelled]

    answers = harness.source.fetch(queries, harness.now())

    assert set(answers) == {query.name for query in queries}


def test_a_labelled_answer_has_one_finite_sample_per_label_set(
    harness: MetricSourceHarness,
) -> None:
    query, held = harness.labelled()
    at = harness.now()

    answer = harness.source.fetch([query], at)[query.name]

    assert isinstance(answer, Series), answer
    assert {sample.labels: sample.value for sample in answer.samples} == pytest.approx(held)
    labels = [sample.labels for sample in answer.samples]
    assert labels == sorted(labels), "samples come sorted by their labels"
    for sample in answer.samples:
        assert sample.labels == tuple(sorted(sample.labels))
        assert math.isfinite(sample.value)
        assert sample.timestamp <= at + 1e-3


def test_no_series_is_no_data_with_a_reason(harness: MetricSourceHarness) -> None:
    query = harness.empty()

    assert_plain_reason(harness.source.fetch([query], harness.now())[query.name])


def test_an_undefined_value_is_no_data_never_a_number(harness: MetricSourceHarness) -> None:
    query = harness.not_a_number()

    assert_plain_reason(harness.source.fetch([query], harness.now())[query.name])


def test_an_undefined_value_beside_defined_ones_is_passed_on_never_dropped(
    harness: MetricSourceHarness,
) -> None:
    # Dropped, the engine would take the series for gone and resolve its target; passed on,
    # the engine holds that target as having no data.
    query, held, undefined = harness.partly_undefined()

    answer = harness.source.fetch([query], harness.now())[query.name]

    assert isinstance(answer, Series), answer
    values = {sample.labels: sample.value for sample in answer.samples}
    assert set(values) == {*held, undefined}
    assert not math.isfinite(values.pop(undefined))
    assert values == pytest.approx(held)


def test_a_failing_query_fails_only_its_own_metric(harness: MetricSourceHarness) -> None:
    labelled, held = harness.labelled()
    broken = harness.broken()

    answers = harness.source.fetch([broken, labelled], harness.now())

    assert_plain_reason(answers[broken.name])
    still_answered = answers[labelled.name]
    assert isinstance(still_answered, Series)
    assert len(still_answered.samples) == len(held)


def test_a_stopped_backend_gives_no_data_not_exceptions(
    stoppable_harness: MetricSourceHarness,
) -> None:
    harness = stoppable_harness
    labelled, _ = harness.labelled()
    assert isinstance(harness.source.fetch([labelled], harness.now())[labelled.name], Series)
    harness.stop_backend()

    answers = harness.source.fetch([labelled, harness.empty()], harness.now())

    for answer in answers.values():
        assert_plain_reason(answer)
