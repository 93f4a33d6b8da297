"""Load shapes, trace replay, pods starting and dying, and the metric source's windows."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from autotuner.core.model import MetricQuery, NoData, Series
from autotuner.sim.faults import Fault, FaultKind
from autotuner.sim.load import (
    Constant,
    Diurnal,
    FlashCrowd,
    LoadSpec,
    Step,
    Trace,
    bundled_trace,
    offered_rps,
    tick_times,
)
from autotuner.sim.metrics import SimMetricSource, catalogue
from autotuner.sim.system import Deployment, System, SystemSpec


def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def test_the_bundled_trace_is_the_21_day_worldcup98_file() -> None:
    counts = bundled_trace("worldcup98")
    assert len(counts) == 30240
    assert counts[0] == 2410.0


def test_trace_replay_is_scaled_to_the_peak_and_can_be_sped_up() -> None:
    trace = Trace((10.0, 20.0, 40.0, 20.0, 10.0, 10.0), peak_rps=400.0)
    times = tick_times(240.0, 60.0)
    assert offered_rps(LoadSpec(trace), times, rng()).tolist() == [100.0, 200.0, 400.0, 200.0]
    # Twice as fast: minutes 0 and 2 of the trace, and that slice's busiest minute is the peak.
    fast = Trace(trace.per_minute, peak_rps=400.0, speedup=2.0)
    assert offered_rps(LoadSpec(fast), tick_times(120.0, 60.0), rng()).tolist() == [100.0, 400.0]


def test_diurnal_peaks_at_its_hour_and_flash_crowds_ramp_hold_and_decay() -> None:
    times = tick_times(86400.0, 3600.0)
    daily = offered_rps(LoadSpec(Diurnal(100.0, 0.5, peak_hour=14)), times, rng())
    assert int(np.argmax(daily)) == 14
    assert daily.max() == pytest.approx(150.0)
    crowd = FlashCrowd(start=600.0, multiplier=5.0, ramp=100.0, hold=300.0, decay=100.0)
    spec = LoadSpec(Constant(10.0), (crowd, Step(2000.0, 2.0)))
    values = offered_rps(spec, np.array([0.0, 650.0, 800.0, 1100.0, 3000.0]), rng())
    assert values.tolist() == pytest.approx([10.0, 30.0, 50.0, 10.0 + 40.0 * np.exp(-1), 20.0])


def test_load_noise_is_seeded_and_keeps_the_mean() -> None:
    spec = LoadSpec(Constant(100.0), noise=0.1)
    times = tick_times(15.0 * 20000, 15.0)
    first = offered_rps(spec, times, np.random.default_rng(3))
    assert np.array_equal(first, offered_rps(spec, times, np.random.default_rng(3)))
    assert first.mean() == pytest.approx(100.0, rel=0.01)
    assert first.std() == pytest.approx(10.0, rel=0.05)


def test_new_pods_wait_for_start_up_and_removed_pods_go_at_once() -> None:
    deployment = Deployment("api", 2, startup_delay=60.0)
    deployment.scale(5, now=0.0)
    assert (deployment.ready, deployment.desired) == (2, 5)
    deployment.advance(59.0)
    assert deployment.ready == 2
    deployment.advance(60.0)
    assert deployment.ready == 5
    deployment.scale(3, now=70.0)
    assert (deployment.ready, deployment.desired) == (3, 3)
    deployment.lose(2, now=80.0)
    assert (deployment.ready, deployment.desired) == (1, 3)
    deployment.advance(140.0)
    assert deployment.ready == 3


def test_overload_builds_a_backlog_that_drains_when_capacity_returns() -> None:
    system = System(SystemSpec())
    quiet = system.step(0.0, 100.0, 15.0)
    overloaded = [system.step(15.0 * k, 500.0, 15.0) for k in range(1, 5)]
    assert all(b["api_p95"] > a["api_p95"] for a, b in itertools.pairwise(overloaded))
    assert overloaded[-1]["api_p95"] > 1.0
    system.api.scale(20, 60.0)
    system.api.advance(1e9)
    after = [system.step(15.0 * k, 100.0, 15.0) for k in range(5, 10)]
    assert after[-1]["api_p95"] == pytest.approx(quiet["api_p95"], rel=0.2)


def test_metrics_lag_the_model_and_an_outage_answers_no_data() -> None:
    outage = Fault(FaultKind.METRIC_OUTAGE, at=300.0, duration=60.0)
    series = catalogue("crm", ["user_sessions"])
    noise = np.zeros((100, sum(len(d) for d in series.values())))
    source = SimMetricSource(series, 15.0, 300.0, noise, 0.0, [outage])
    system = System(SystemSpec())
    query = [MetricQuery("api_p95_seconds", "unused by the simulator")]
    for step in range(10):
        source.observe(step, system.step(15.0 * step, 100.0, 15.0))
    calm = source.fetch(query, 150.0)["api_p95_seconds"]
    for step in range(10, 14):
        source.observe(step, system.step(15.0 * step, 2000.0, 15.0))
    busy = source.fetch(query, 210.0)["api_p95_seconds"]
    assert isinstance(calm, Series) and isinstance(busy, Series)
    # A 5-minute window: four slow steps move the mean, but less than the raw signal.
    assert calm.samples[0].value < busy.samples[0].value < system.step(210.0, 2000.0, 15.0)[
        "api_p95"
    ]
    assert isinstance(source.fetch(query, 320.0)["api_p95_seconds"], NoData)
    unknown = source.fetch([MetricQuery("nope", "x")], 0.0)["nope"]
    assert isinstance(unknown, NoData) and "no metric 'nope'" in unknown.reason
