"""The TTL-cache model against an event-by-event simulation of a Zipf request stream."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from autotuner.sim.cache import (
    CacheClass,
    CacheState,
    cache_tables,
    stale_share,
    ttl_step_response,
    zipf_popularity,
)
from autotuner.sim.cache_cohorts import Cohorts, popularity_nodes, steady_held


def simulated_hit_rate(
    keys: int, exponent: float, rate: float, ttl: float, seconds: float
) -> float:
    """Poisson requests over Zipf keys through a non-reset TTL cache, one request at a time."""
    rng = np.random.default_rng(11)
    count = rng.poisson(rate * seconds)
    times = np.sort(rng.uniform(0.0, seconds, count))
    chosen = rng.choice(keys, size=count, p=zipf_popularity(keys, exponent))
    expires = np.full(keys, -1.0)
    hits = 0
    warmup = seconds * 0.2
    counted = 0
    for time, key in zip(times.tolist(), chosen.tolist(), strict=True):
        hit = time < expires[key]
        if not hit:
            expires[key] = time + ttl
        if time >= warmup:
            counted += 1
            hits += hit
    return hits / counted


@pytest.mark.parametrize(("ttl", "rate"), [(30.0, 40.0), (120.0, 40.0), (600.0, 10.0)])
def test_model_hit_rate_within_one_point_of_event_simulation(ttl: float, rate: float) -> None:
    keys, exponent = 2000, 0.9
    model = cache_tables(keys, exponent).hit_rate(rate * ttl)
    simulated = simulated_hit_rate(keys, exponent, rate, ttl, seconds=max(40 * ttl, 4000.0))
    assert abs(model - simulated) < 0.01


def test_stale_share_grows_with_the_ttl_beyond_the_update_interval() -> None:
    assert stale_share(600.0, 900.0) == 0.0
    assert stale_share(1800.0, 900.0) == pytest.approx(0.5)
    assert stale_share(3600.0, 900.0) > stale_share(1800.0, 900.0)


def test_a_ttl_change_acts_gradually_and_a_flush_empties_the_cache() -> None:
    cache = CacheState(CacheClass("c", ttl=600.0, keys=2000, share=1.0))
    hit_rate_before, _, memory_before, _ = cache.step(20.0, 15.0)
    ttl_before = cache.effective_ttl
    cache.set_ttl(2400.0)
    cache.step(20.0, 15.0)
    assert ttl_before < cache.effective_ttl < 700.0
    for _ in range(1200):
        hit_rate, _, memory, _ = cache.step(20.0, 15.0)
    assert cache.effective_ttl == pytest.approx(2400.0, rel=0.01)
    assert hit_rate > hit_rate_before
    assert memory > memory_before
    cache.flush()
    hit_rate_flushed, _, _, _ = cache.step(20.0, 15.0)
    assert hit_rate_flushed < 0.5 * hit_rate


@dataclass(frozen=True)
class Observed:
    """Per bin of the event simulation: hit rate, stale share of hits, keys held at its end."""

    hit_rate: np.ndarray
    stale_share: np.ndarray
    keys_held: np.ndarray


def ttl_cache_events(
    spec: CacheClass,
    rate: float,
    ttl_changes: tuple[tuple[float, float], ...],
    seconds: float,
    bin_seconds: float,
    seeds: int = 6,
    flush_at: float | None = None,
) -> Observed:
    """A real TTL cache, request by request: every entry expires on the TTL it was written with.

    Starts from the steady state of `spec.ttl` (each key held with probability x/(1 + x), the
    entry's age uniform), so that no warm-up synchronises the keys; `ttl_changes` are
    (time, new TTL); the runs of `seeds` seeds are pooled.
    """
    bins = int(seconds // bin_seconds)
    requests, hits, stale, held = np.zeros(bins), np.zeros(bins), np.zeros(bins), np.zeros(bins)
    popularity = zipf_popularity(spec.keys, spec.zipf)
    change_times = np.array([-np.inf] + [t for t, _ in ttl_changes])
    change_ttls = np.array([spec.ttl] + [ttl for _, ttl in ttl_changes])
    for seed in range(seeds):
        flush_pending = flush_at
        rng = np.random.default_rng(seed)
        count = rng.poisson(rate * seconds)
        times = np.sort(rng.uniform(0.0, seconds, count))
        keys = rng.choice(spec.keys, size=count, p=popularity)
        ttls = change_ttls[np.searchsorted(change_times, times, side="right") - 1]
        x = rate * popularity * spec.ttl
        age = rng.uniform(0.0, spec.ttl, spec.keys)
        is_held = rng.uniform(size=spec.keys) < x / (1.0 + x)
        written = np.where(is_held, -age, -np.inf)
        expires = np.where(is_held, spec.ttl - age, -np.inf)
        bin_end = bin_seconds
        index = 0
        for time, key, ttl in zip(times.tolist(), keys.tolist(), ttls.tolist(), strict=True):
            while time >= bin_end and index < bins:
                held[index] += np.count_nonzero(expires > bin_end)
                index += 1
                bin_end += bin_seconds
            if index >= bins:
                break
            if flush_pending is not None and time >= flush_pending:
                expires[:] = -np.inf
                flush_pending = None
            requests[index] += 1
            if time < expires[key]:
                hits[index] += 1
                stale[index] += time - written[key] > spec.update_interval
            else:
                written[key] = time
                expires[key] = time + ttl
        for last in range(index, bins):
            held[last] += np.count_nonzero(expires > bin_seconds * (last + 1))
    return Observed(hits / requests, stale / np.maximum(hits, 1.0), held / seeds)


def modelled(
    spec: CacheClass,
    rate: float,
    ttl_changes: tuple[tuple[float, float], ...],
    seconds: float,
    bin_seconds: float,
    dt: float = 15.0,
) -> Observed:
    """The simulator's model over the same schedule, averaged over the same bins."""
    steps = int(seconds / dt)
    ttls = []
    for step in range(steps):
        in_force = [ttl for at, ttl in ttl_changes if at <= step * dt]
        ttls.append(in_force[-1] if in_force else spec.ttl)
    rows = np.array(ttl_step_response(spec, [rate] * steps, ttls, dt))
    per_bin = int(bin_seconds / dt)
    hit = rows[:, 0].reshape(-1, per_bin)
    stale = (rows[:, 0] * rows[:, 1]).reshape(-1, per_bin)
    memory = rows[:, 2].reshape(-1, per_bin)
    return Observed(
        hit.mean(axis=1),
        stale.sum(axis=1) / hit.sum(axis=1),
        memory[:, -1] / spec.object_bytes,
    )


def five_minutes(per_minute: np.ndarray) -> np.ndarray:
    return per_minute[: len(per_minute) // 5 * 5].reshape(-1, 5).mean(axis=1)


RESPONSE_CLASS = CacheClass("c", ttl=300.0, keys=5000, zipf=0.9, share=1.0, update_interval=600.0)


def test_a_raise_shows_nothing_for_the_old_ttl_then_overshoots_as_a_real_cache_does() -> None:
    spec, rate, change = RESPONSE_CLASS, 20.0, 600.0
    schedule = ((change, 900.0),)
    model = modelled(spec, rate, schedule, 3600.0, 60.0)
    before = cache_tables(spec.keys, spec.zipf).hit_rate(rate * 300.0)
    after = cache_tables(spec.keys, spec.zipf).hit_rate(rate * 900.0)
    # Flat for the old TTL: the entries written under it expire on their old schedule.
    assert np.abs(model.hit_rate[10:15] - before).max() < 0.005
    # Then the new entries, written together, outlast the steady state, and it rings.
    assert model.hit_rate[16:21].mean() > before + 0.05
    assert model.hit_rate.max() > after + 0.03
    observed = ttl_cache_events(spec, rate, schedule, 3600.0, 60.0, seeds=12)
    assert np.abs(model.hit_rate - observed.hit_rate).max() < 0.03
    # A hot key's hits are all stale or all fresh for minutes on end, so the observed stale
    # share is noisy minute by minute (4 points between seed sets): compared over 5 minutes.
    assert np.abs(five_minutes(model.stale_share - observed.stale_share)).max() < 0.03
    assert np.abs(model.keys_held / observed.keys_held - 1.0).max() < 0.05


def test_a_cut_falls_about_linearly_over_the_old_ttl_as_a_real_cache_does() -> None:
    spec = CacheClass("c", ttl=900.0, keys=5000, zipf=0.9, share=1.0, update_interval=600.0)
    rate, change = 20.0, 600.0
    schedule = ((change, 60.0),)
    model = modelled(spec, rate, schedule, 3000.0, 60.0)
    before = cache_tables(spec.keys, spec.zipf).hit_rate(rate * 900.0)
    after = cache_tables(spec.keys, spec.zipf).hit_rate(rate * 60.0)
    # From a minute after the cut to the old TTL after it: a straight line, within 1.5 points.
    falling = model.hit_rate[11:25]
    line = np.polyval(np.polyfit(np.arange(len(falling)), falling, 1), np.arange(len(falling)))
    assert np.abs(falling - line).max() < 0.015
    assert falling[0] < before - 0.01
    assert abs(model.hit_rate[27:].mean() - after) < 0.005
    observed = ttl_cache_events(spec, rate, schedule, 3000.0, 60.0)
    assert np.abs(model.hit_rate - observed.hit_rate).max() < 0.03
    # A hot key's hits are all stale or all fresh for minutes on end, so the observed stale
    # share is noisy minute by minute (4 points between seed sets): compared over 5 minutes.
    assert np.abs(five_minutes(model.stale_share - observed.stale_share)).max() < 0.03


def test_a_flush_refills_as_a_real_cache_does() -> None:
    spec, rate = RESPONSE_CLASS, 20.0
    cache = CacheState(spec)
    rows = []
    for step in range(120):
        if step == 40:
            cache.flush()
        rows.append(cache.step(rate, 15.0)[0])
    assert rows[40] < 0.5 * rows[39]
    model = np.array(rows).reshape(-1, 4).mean(axis=1)
    observed = ttl_cache_events(spec, rate, (), 1800.0, 60.0, flush_at=600.0)
    assert np.abs(model - observed.hit_rate).max() < 0.03


def test_in_steady_state_the_model_is_within_a_point_of_the_event_simulation() -> None:
    spec, rate = CacheClass("c", 600.0, 5000, 0.9, 1.0, 300.0), 20.0
    model = modelled(spec, rate, (), 1800.0, 300.0)
    observed = ttl_cache_events(spec, rate, (), 1800.0, 300.0)
    assert np.abs(model.hit_rate - observed.hit_rate).max() < 0.01
    assert np.abs(model.stale_share - observed.stale_share).max() < 0.01


@pytest.mark.parametrize("exponent", [0.6, 0.9, 1.2])
def test_popularity_nodes_stand_for_two_million_keys_within_a_fifth_of_a_point(
    exponent: float,
) -> None:
    keys = 2_000_000
    popularity = zipf_popularity(keys, exponent)
    nodes = popularity_nodes(keys, exponent)
    assert len(nodes.popularity) <= 25
    for rate_times_ttl in np.logspace(0.0, 9.0, 19).tolist():
        per_key = popularity * rate_times_ttl / (1.0 + popularity * rate_times_ttl)
        held = np.array(steady_held(list(nodes.popularity), rate_times_ttl))
        assert abs(float(per_key @ popularity) - float(held @ nodes.hit_weight)) < 0.002
        keys_held = float(per_key.sum())
        assert abs(float(held @ nodes.key_weight) / keys_held - 1.0) < 0.02


def test_steady_state_takes_the_closed_form_and_returns_to_it_after_a_change() -> None:
    spec, rate = CacheClass("c", 900.0, 20000, 0.8, 1.0, 600.0), 40.0
    tables = cache_tables(spec.keys, spec.zipf)
    cache = CacheState(spec)
    hit_rate, stale, memory, misses = cache.step(rate, 15.0)
    assert cache.cohorts is None
    assert hit_rate == tables.hit_rate(rate * 900.0)
    assert memory == pytest.approx(tables.keys_held(rate * 900.0) * spec.object_bytes)
    assert stale == stale_share(900.0, 600.0)
    assert misses == pytest.approx(rate * (1.0 - hit_rate))
    # The cohorts start from the same steady state, within the popularity nodes' error.
    nodes = popularity_nodes(spec.keys, spec.zipf)
    cohorts = Cohorts.steady(nodes, spec.update_interval, 0.0, rate, 900.0)
    cohort_hit, cohort_stale, _ = cohorts.step(rate, 900.0, 15.0)
    assert cohort_hit == pytest.approx(hit_rate, abs=0.001)
    assert cohort_stale == pytest.approx(stale, abs=1e-9)
    cache.set_ttl(1350.0)
    for _ in range(int(6 * 1350 / 15)):
        cache.step(rate, 15.0)
    assert cache.cohorts is None
    assert cache.effective_ttl == 1350.0
    assert cache.step(rate, 15.0)[0] == tables.hit_rate(rate * 1350.0)
