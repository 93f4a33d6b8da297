"""The TTL-cache model against an event-by-event simulation of a Zipf request stream."""

from __future__ import annotations

import numpy as np
import pytest

from autotuner.sim.cache import CacheClass, CacheState, cache_tables, stale_share, zipf_popularity


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
