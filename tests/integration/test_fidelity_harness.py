"""The fidelity benchmark's harness (bench/fidelity_http.py, bench/fidelity_cache.py) in small.

Seconds instead of minutes: a two-worker gunicorn under open-loop load, and a Redis
cache-aside on 127.0.0.1:6379 under its own key prefix. The goals are the benchmark's to judge;
these tests check that the harness measures the shapes the real servers have: an overloaded
worker pool's p95 grows window over window, and a raised TTL changes nothing for one old TTL.
"""

from __future__ import annotations

import uuid
from itertools import pairwise

import pytest
import redis

from bench.fidelity_cache import cache_aside, steady_hit_rate
from bench.fidelity_http import (
    measure_overhead,
    measure_overload,
    measure_steady,
    measure_worker_overhead,
)
from bench.fidelity_server import Gunicorn

pytestmark = pytest.mark.integration

MEAN_SLEEP = 0.02


def test_an_overloaded_worker_pool_grows_its_p95_window_over_window() -> None:
    with Gunicorn(workers=2) as server:
        overhead, low = measure_overhead(server, MEAN_SLEEP, 1.5, seed=1, utilisation=0.2)
        held = measure_worker_overhead(server, MEAN_SLEEP, 2.5)
        steady = measure_steady(server, MEAN_SLEEP, overhead, held, 0.5, 2.0, 0.5, seed=2)
        overload = measure_overload(server, MEAN_SLEEP, overhead, held, 1.5, 6.0, 2.0, seed=3)
    # Each request's response time includes its sleep, so the overhead is positive; a few ms.
    assert 0.0 < overhead < 0.05, overhead
    assert 0.0 < held < 0.05, held
    assert low.response_times.min() >= low.sleeps.min()
    assert steady.requests > 20
    assert 0.5 < steady.modelled_p95 / steady.measured_p95 < 2.0, steady
    measured = overload.measured_p95
    assert all(later > earlier for earlier, later in pairwise(measured)), measured
    modelled = overload.modelled_p95
    assert all(later > earlier for earlier, later in pairwise(modelled)), modelled
    # 1.5x capacity: the wait grows about 0.5 s per second.
    assert 0.25 < overload.measured_growth < 1.0, overload


def test_a_raised_ttl_changes_nothing_for_one_old_ttl() -> None:
    client = redis.Redis(host="127.0.0.1", port=6379, socket_timeout=5)
    prefix = f"autotuner-test:{uuid.uuid4().hex}:"
    keys, exponent, rate = 4000, 0.9, 2000.0
    try:
        run = cache_aside(
            client, keys, exponent, rate, ((0.0, 2.0), (4.0, 6.0)), 10.0, seed=4, prefix=prefix
        )
        left = list(client.scan_iter(match=f"{prefix}*", count=1000))
    finally:
        client.close()
    assert left == [], "the harness must delete the keys of its run"
    before = run.hit_rate(0.0, 4.0)
    within_old_ttl = run.hit_rate(4.0, 6.0)
    after_old_ttl = run.hit_rate(7.0, 10.0)
    # The cache starts in its steady state, so the model's steady hit rate holds from the start.
    assert abs(before - steady_hit_rate(keys, exponent, rate, 2.0)) < 0.03, before
    # Entries written under the old TTL expire on its schedule: no change for one old TTL...
    assert abs(within_old_ttl - before) < 0.03, (before, within_old_ttl)
    # ...then every entry has the new TTL and the hit rate rises (it overshoots at first).
    assert after_old_ttl > before + 0.08, (before, after_old_ttl)
