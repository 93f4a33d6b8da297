"""The capacity model against fleets whose answer is known: the simulator's own API model."""

from __future__ import annotations

import numpy as np
import pytest

from autotuner.core.learn.capacity import (
    CapacityParameters,
    CapacityState,
    Observation,
    _with_averages,
    curve,
    observe,
    saturation,
)
from autotuner.core.learn.replicas import explain, recommend
from autotuner.sim.api import APISpec, api_step

AIM = 0.4
PARAMETERS = CapacityParameters(aim=AIM, at_most=0.5)
DOWNSTREAM = 0.03
TICK = 15.0


def p95_and_utilisation(spec: APISpec, rps: float, pods: int, cpu: float) -> tuple[float, float]:
    p95, _, utilisation, _, _ = api_step(spec, rps, pods, cpu, DOWNSTREAM, 0.0, TICK)
    return p95, utilisation


def true_capacity(spec: APISpec, pods: int, cpu: float) -> float:
    """Requests per second per pod at which the model's p95 meets the aim (bisection)."""
    low, high = 1.0, spec.cores / cpu
    for _ in range(60):
        middle = 0.5 * (low + high)
        p95, _ = p95_and_utilisation(spec, middle * pods, pods, cpu)
        low, high = (middle, high) if p95 <= AIM else (low, middle)
    return low


def true_saturation(spec: APISpec, cpu: float) -> float:
    """Requests per second per pod at full utilisation, as the model's utilisation implies."""
    pods, rps = 4, 0.5 * spec.cores / cpu * 4
    _, utilisation = p95_and_utilisation(spec, rps, pods, cpu)
    return rps / (pods * utilisation)


def run_fleet(
    state: CapacityState,
    start: float,
    hours: float,
    cpu: float,
    seed: int,
) -> tuple[CapacityState, float]:
    """A fleet whose pods change every 10 minutes and whose load wanders over the range."""
    spec = APISpec()
    rng = np.random.default_rng(seed)
    now = start
    steps = int(hours * 3600 / TICK)
    pods = 5
    saturated_rps = spec.cores / cpu
    share = 0.6
    for step in range(steps):
        if step % 40 == 0:
            pods = int(rng.integers(3, 9))
            share = float(rng.uniform(0.35, 0.88))
        rps = share * saturated_rps * pods
        p95, utilisation = p95_and_utilisation(spec, rps, pods, cpu)
        noisy = Observation(
            rps * (1 + 0.02 * rng.standard_normal()),
            p95 * (1 + 0.02 * rng.standard_normal()),
            utilisation * (1 + 0.02 * rng.standard_normal()),
            float(pods),
        )
        state = observe(state, now, noisy, PARAMETERS)
        now += TICK
    return state, now


def capacity_learned(state: CapacityState, now: float, pods: int) -> float:
    seen = Observation(load=300.0, latency=0.2, utilisation=0.5, replicas=float(pods))
    advice = recommend(state, now, seen, PARAMETERS)
    assert advice.mode == "model", explain(advice, PARAMETERS)
    assert advice.capacity_at_aim is not None and advice.capacity_per_replica is not None
    # The target keeps the tolerance as load headroom below the aim's crossing.
    assert advice.capacity_per_replica == pytest.approx(advice.capacity_at_aim / 1.1)
    return advice.capacity_at_aim


def test_learned_capacity_is_within_ten_percent_of_the_true_one() -> None:
    spec = APISpec()
    state, now = run_fleet(CapacityState(), 0.0, 6.0, spec.cpu_seconds, seed=1)
    truth = true_capacity(spec, 5, spec.cpu_seconds)
    learned = capacity_learned(state, now, 5)
    assert learned == pytest.approx(truth, rel=0.10)
    assert saturation(state) == pytest.approx(true_saturation(spec, spec.cpu_seconds), rel=0.05)


def test_a_release_that_halves_capacity_is_relearned_within_minutes() -> None:
    spec = APISpec()
    state, now = run_fleet(CapacityState(), 0.0, 4.0, spec.cpu_seconds, seed=2)
    slower = 2 * spec.cpu_seconds
    state, now = run_fleet(state, now, 0.5, slower, seed=3)
    assert saturation(state) == pytest.approx(true_saturation(spec, slower), rel=0.1)
    state, now = run_fleet(state, now, 1.5, slower, seed=4)
    truth = true_capacity(spec, 5, slower)
    assert capacity_learned(state, now, 5) == pytest.approx(truth, rel=0.15)


def test_with_nothing_learned_it_falls_back_and_says_so() -> None:
    seen = Observation(load=300.0, latency=0.9, utilisation=0.95, replicas=4.0)
    state = observe(CapacityState(), 0.0, seen, PARAMETERS)
    advice = recommend(state, 0.0, seen, PARAMETERS)
    assert advice.mode == "reactive"
    assert advice.confidence == 0.0
    assert advice.replicas == 4.0  # not steady yet: nothing to react with
    assert "too little learned" in explain(advice, PARAMETERS)
    state = observe(state, 400.0, seen, PARAMETERS)
    advice = recommend(state, 400.0, seen, PARAMETERS)
    assert advice.replicas == 8  # latency / aim is 2.25: at most doubled in one step


def test_observations_wait_for_the_fleet_to_settle() -> None:
    state = CapacityState()
    for minute in range(4):
        seen = Observation(300.0, 0.2, 0.6, float(3 + minute))
        state = observe(state, minute * 60.0, seen, PARAMETERS)
    assert state.observations == 0
    assert curve(state, AIM).bands == 0


def test_the_model_round_trips_through_its_dict() -> None:
    spec = APISpec()
    state, _ = run_fleet(CapacityState(), 0.0, 1.0, spec.cpu_seconds, seed=5)
    assert CapacityState.from_dict(state.to_dict()) == state


def test_a_fleet_seen_saturating_short_of_full_cpu_is_never_aimed_past_it() -> None:
    """Workers saturate at utilisation 0.8: latency is flat below it and a cliff at it."""
    state = CapacityState()
    now = 0.0
    for minute in range(120):
        # Calm steady minutes up to u 0.7, then a quarter of an hour of overload at 0.8.
        overloaded = 60 <= minute < 75
        utilisation = 0.8 if overloaded else 0.4 + 0.3 * (minute % 30) / 30
        latency = 5.0 if overloaded else 0.15
        for _ in range(4):
            seen = Observation(utilisation * 100.0 * 5, latency, utilisation, 5.0)
            state = observe(state, now, seen, PARAMETERS)
            now += TICK
    assert state.overload_utilisation == pytest.approx(0.8, abs=0.01)
    advice = recommend(state, now, Observation(300.0, 0.15, 0.6, 5.0), PARAMETERS)
    assert advice.target_utilisation is not None
    assert advice.target_utilisation <= 0.8 / 1.1 + 1e-9


def test_the_per_tick_averages_change_only_their_own_fields() -> None:
    """The field-by-field copy that replaces `_replace` on every tick keeps every other field."""
    distinct = CapacityState(
        *(
            (float(i), float(i) + 0.5)
            if isinstance(default, tuple)
            else i
            if isinstance(default, int)
            else float(i)
            for i, default in enumerate(CapacityState())
        )
    )
    assert _with_averages(distinct, 100.0, 101.0, 102.0, 103.0) == distinct._replace(
        load_time=100.0, fast_load=101.0, slow_load=102.0, window_utilisation=103.0
    )
