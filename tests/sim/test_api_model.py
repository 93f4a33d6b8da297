"""The API model's shapes: worker-bound overload, per-request overhead, a fixed service part."""

from __future__ import annotations

import heapq
import itertools
from dataclasses import replace

import numpy as np
import pytest

from autotuner.sim.api import QUEUE_SATURATED, APISpec, api_step
from autotuner.sim.queueing import fixed_plus_exponential_response, response_time

# One pod of 4 sync workers whose requests sleep 20 ms on a host with CPU to spare: the shape of
# a gunicorn service with sleep-based service times, measured against on loopback.
SLEEPER = APISpec(replicas=1, workers=4, cores=8.0, cpu_seconds=0.0005, overhead=0.0)
SLEEP = 0.02


def step(spec: APISpec, rps: float, backlog: float = 0.0, dt: float = 1.0) -> tuple[float, ...]:
    return api_step(spec, rps, spec.replicas, spec.cpu_seconds, SLEEP, backlog, dt)


def run(spec: APISpec, loads: list[float], dt: float = 1.0) -> list[tuple[float, ...]]:
    backlog = 0.0
    readings: list[tuple[float, ...]] = []
    for rps in loads:
        reading = api_step(spec, rps, spec.replicas, spec.cpu_seconds, SLEEP, backlog, dt)
        backlog = reading[3]
        readings.append(reading)
    return readings


def test_worker_bound_overload_grows_step_after_step_and_drains() -> None:
    readings = run(SLEEPER, [250.0] * 10 + [100.0] * 10)
    p95 = [r[0] for r in readings]
    overloaded, after = p95[:10], p95[10:]
    assert all(b > a for a, b in itertools.pairwise(overloaded))
    # The workers serve about c / S requests a second; the backlog adds (λ - capacity)/capacity
    # seconds of delay per second of overload.
    capacity = SLEEPER.workers / (SLEEP + SLEEPER.cpu_seconds)
    growth = np.diff(overloaded)
    assert growth == pytest.approx((250.0 - capacity) / capacity, rel=0.02)
    assert overloaded[-1] > 2.5
    # The CPU is nearly idle throughout: the workers, not the CPU, are what saturates.
    assert max(r[2] for r in readings) < 0.05
    assert all(b < a for a, b in itertools.pairwise(after[:3]))
    assert after[-1] == pytest.approx(step(SLEEPER, 100.0)[0])
    assert readings[-1][3] == 0.0


def test_a_cpu_bound_service_builds_its_backlog_at_the_cpu_capacity() -> None:
    # Many workers on one core: the CPU saturates first, at cores / cpu = 100 requests a second.
    cpu_bound = APISpec(replicas=1, workers=64, cores=1.0, cpu_seconds=0.01, overhead=0.0)
    readings = [
        api_step(cpu_bound, 120.0, 1, 0.01, 0.0, backlog, 1.0) for backlog in (0.0, 20.0, 40.0)
    ]
    assert [r[3] for r in readings] == pytest.approx([20.0, 40.0, 60.0])
    assert all(r[2] == 1.0 for r in readings)


def test_the_backlog_is_bounded_by_the_timeout() -> None:
    short = replace(SLEEPER, timeout=2.0)
    readings = run(short, [400.0] * 20)
    assert readings[-1][0] == pytest.approx(2.0)
    assert readings[-1][4] > 0.0
    capacity = short.workers / (SLEEP + short.cpu_seconds)
    assert readings[-1][3] == pytest.approx(capacity * short.timeout, rel=0.01)


def test_latency_is_continuous_where_the_backlog_begins() -> None:
    capacity = SLEEPER.workers / (SLEEP + SLEEPER.cpu_seconds)
    # In one 15 s step, from well below the saturation point to just past the capacity.
    loads = np.linspace(0.9 * capacity, 1.01 * capacity, 2001)
    p95 = np.array([step(SLEEPER, rps, dt=15.0)[0] for rps in loads])
    assert np.all(np.diff(p95) >= -1e-12)
    assert np.max(np.diff(p95)) < 0.01
    # Either side of the point where the queue's own part stops growing, the same p95.
    edge = QUEUE_SATURATED * capacity
    below, above = step(SLEEPER, edge * (1 - 1e-9))[0], step(SLEEPER, edge * (1 + 1e-9))[0]
    assert above == pytest.approx(below, rel=1e-5)


def test_overhead_turns_nominal_utilisation_095_into_about_1() -> None:
    # Nominal utilisation λ·S/c = 0.95 for a 20 ms sleep on 4 workers; 1 ms of the server's own
    # work per request makes it 0.95 x 21/20, almost 1.
    sleeper = replace(SLEEPER, cpu_seconds=1e-6)
    rps = 0.95 * sleeper.workers / SLEEP
    lean = step(sleeper, rps, dt=15.0)
    loaded = step(replace(sleeper, overhead=0.001), rps, dt=15.0)
    assert lean[3] == 0.0
    assert loaded[0] > 2.0 * lean[0]
    # The overhead is CPU work, so the CPU utilisation rises with it.
    assert loaded[2] == pytest.approx(lean[2] * 1.001e-3 / 1e-6, rel=1e-6)


def test_overhead_holds_a_worker_as_long_as_it_takes() -> None:
    # Workers bound: 2 ms more per request is 10% fewer requests a second.
    lean = run(SLEEPER, [300.0] * 3)
    loaded = run(replace(SLEEPER, overhead=0.002), [300.0] * 3)
    lean_capacity = SLEEPER.workers / (SLEEP + 0.0005)
    loaded_capacity = SLEEPER.workers / (SLEEP + 0.0025)
    assert lean[-1][3] == pytest.approx(3 * (300.0 - lean_capacity), rel=0.01)
    assert loaded[-1][3] == pytest.approx(3 * (300.0 - loaded_capacity), rel=0.01)


# CPU work dominates the service time: 20 ms of CPU, 3 ms waiting downstream.
CPU_HEAVY = APISpec(replicas=2, workers=32, cores=4.0, cpu_seconds=0.02, overhead=0.0)


@pytest.mark.parametrize("rps", [50.0, 150.0, 250.0, 330.0])
def test_a_fixed_cpu_part_lowers_p95_below_the_all_exponential_model(rps: float) -> None:
    def p95(share: float) -> float:
        spec = replace(CPU_HEAVY, cpu_fixed_share=share)
        return api_step(spec, rps, 2, 0.02, 0.003, 0.0, 15.0)[0]

    assert p95(1.0) < 0.85 * p95(0.0)
    assert p95(0.5) < p95(0.0)


@pytest.mark.parametrize("rps", [0.0, 50.0, 150.0, 250.0, 330.0])
def test_without_a_fixed_part_the_api_is_the_mm_c_queue(rps: float) -> None:
    downstream = 0.003
    spec = replace(CPU_HEAVY, cpu_fixed_share=0.0)
    p95, mean, *_ = api_step(spec, rps, 2, 0.02, downstream, 0.0, 15.0)
    utilisation = rps / (2 * CPU_HEAVY.cores / 0.02)
    service = 0.02 / (1.0 - utilisation) + downstream
    expected_p95, expected_wait = response_time(rps, 1.0 / service, 2 * CPU_HEAVY.workers)
    assert p95 == expected_p95
    assert mean == expected_wait + service


@pytest.mark.parametrize("servers", [1, 4, 16, 200])
@pytest.mark.parametrize("load", [0.0, 0.3, 0.7, 0.95])
def test_the_mgc_formula_is_mmc_exactly_when_the_fixed_part_is_0(servers: int, load: float) -> None:
    service = 0.037
    rps = load * servers / service
    assert fixed_plus_exponential_response(rps, 0.0, service, servers) == response_time(
        rps, 1.0 / service, servers
    )


def test_mg1_mean_wait_is_pollaczek_khinchine() -> None:
    # Allen-Cunneen is exact for one server: E[Wq] = λ·E[S²] / (2(1 - ρ)).
    fixed, exponential, rps = 0.012, 0.004, 50.0
    second_moment = (fixed + exponential) ** 2 + exponential**2
    utilisation = rps * (fixed + exponential)
    _, wait = fixed_plus_exponential_response(rps, fixed, exponential, 1)
    assert wait == pytest.approx(rps * second_moment / (2.0 * (1.0 - utilisation)), rel=1e-12)


def simulated_p95(
    rps: float, fixed: float, exponential: float, servers: int, seed: int, count: int = 120_000
) -> float:
    """p95 response time of a FCFS M/G/c queue, S = fixed + Exp(exponential), event by event."""
    rng = np.random.default_rng(seed)
    arrivals = np.cumsum(rng.exponential(1.0 / rps, count)).tolist()
    services = (fixed + rng.exponential(exponential, count)).tolist()
    free_at = [0.0] * servers
    responses = []
    for arrival, service in zip(arrivals, services, strict=True):
        start = max(arrival, heapq.heappop(free_at))
        heapq.heappush(free_at, start + service)
        responses.append(start + service - arrival)
    # The first tenth is the warm-up from an empty queue.
    return float(np.quantile(responses[count // 10 :], 0.95))


@pytest.mark.parametrize(
    ("servers", "fixed", "exponential"),
    [(1, 0.015, 0.005), (4, 0.015, 0.005), (4, 0.01, 0.01), (16, 0.03, 0.01)],
)
@pytest.mark.parametrize("utilisation", [0.5, 0.7, 0.9])
def test_the_mgc_p95_agrees_with_an_event_simulation(
    servers: int, fixed: float, exponential: float, utilisation: float
) -> None:
    rps = utilisation * servers / (fixed + exponential)
    simulated = simulated_p95(rps, fixed, exponential, servers, seed=servers)
    modelled, _ = fixed_plus_exponential_response(rps, fixed, exponential, servers)
    assert modelled == pytest.approx(simulated, rel=0.10)
    # The all-exponential model of the same mean overstates it where the fixed part dominates.
    if fixed >= 3 * exponential:
        exponential_only, _ = response_time(rps, 1.0 / (fixed + exponential), servers)
        assert exponential_only > 1.15 * simulated
