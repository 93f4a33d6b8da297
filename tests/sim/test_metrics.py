"""The simulated metric source over time: series appear with the first step, a ratio whose
traffic stopped turns NaN once its window holds no traffic, and returns with the traffic."""

from __future__ import annotations

import math

import numpy as np
import pytest

from autotuner.core.model import MetricQuery, NoData, Series, labels_of
from autotuner.sim.metrics import SeriesDef, SimMetricSource

TICK = 15.0
WINDOW = 60.0  # four steps
HIT_RATIO = MetricQuery("cache_hit_ratio", "hits / requests per cache")
CACHES = ("orders", "profile", "session", "users")


def source() -> SimMetricSource:
    series = {
        HIT_RATIO.name: tuple(
            SeriesDef(labels_of({"cache": c}), f"hit:{c}", f"requests:{c}") for c in CACHES
        )
    }
    noise = np.zeros((1, len(CACHES)))
    return SimMetricSource(series, TICK, WINDOW, noise, 0.0)


def signals(hit: float, requests: dict[str, float]) -> dict[str, float]:
    return {f"hit:{c}": hit for c in CACHES} | {f"requests:{c}": requests[c] for c in CACHES}


def busy(step: int) -> dict[str, float]:
    return {c: 1000.0 + 137.1 * ((7 * step + 3 * k) % 11) for k, c in enumerate(CACHES)}


def values(answer: Series | NoData) -> dict[str, float]:
    assert isinstance(answer, Series), answer
    return {dict(s.labels)["cache"]: s.value for s in answer.samples}


def test_before_the_first_step_there_is_no_series() -> None:
    answer = source().fetch([HIT_RATIO], 0.0)[HIT_RATIO.name]

    assert answer == NoData("the query returned no series")


def test_a_cache_whose_traffic_stopped_turns_nan_after_its_window_and_comes_back() -> None:
    metrics = source()
    # Uneven traffic, so that running sums keep rounding residue once it has stopped.
    for step in range(40):
        metrics.observe(step, signals(0.9, busy(step)))
    busy_now = busy(40)
    quiet_orders = busy_now | {"orders": 0.0}
    for step in range(40, 43):
        metrics.observe(step, signals(0.8, quiet_orders))

    # Three quiet steps of four: the window still holds the last busy one.
    assert values(metrics.fetch([HIT_RATIO], 645.0)[HIT_RATIO.name])["orders"] == pytest.approx(0.9)

    metrics.observe(43, signals(0.8, quiet_orders))
    quiet = values(metrics.fetch([HIT_RATIO], 660.0)[HIT_RATIO.name])
    assert math.isnan(quiet.pop("orders"))
    assert quiet == pytest.approx(dict.fromkeys(("profile", "session", "users"), 0.8))
    assert metrics.value(HIT_RATIO.name, labels_of({"cache": "orders"}), 660.0) is None

    metrics.observe(44, signals(0.7, busy_now))
    assert values(metrics.fetch([HIT_RATIO], 675.0)[HIT_RATIO.name])["orders"] == pytest.approx(0.7)


def test_no_traffic_anywhere_is_no_data_naming_the_undefined_series() -> None:
    metrics = source()
    metrics.observe(0, signals(0.9, dict.fromkeys(CACHES, 0.0)))

    answer = metrics.fetch([HIT_RATIO], 0.0)[HIT_RATIO.name]

    assert isinstance(answer, NoData)
    assert answer.reason == (
        'no usable value: {cache="orders"} is NaN (for example 0/0); '
        '{cache="profile"} is NaN (for example 0/0); {cache="session"} is NaN (for example '
        "0/0); and 1 more"
    )
