"""The connection-pool model: Little's law, the budget, and why an oversized pool hurts."""

from __future__ import annotations

import pytest

from autotuner.sim.pool import DatabaseSpec, pool_step


@pytest.mark.parametrize(("rate", "pods", "size"), [(200.0, 4, 10), (900.0, 10, 12), (50.0, 2, 3)])
def test_littles_law_holds_for_the_pools(rate: float, pods: int, size: int) -> None:
    reading = pool_step(DatabaseSpec(), rate, pods, size, 1.0, 0.0, 15.0)
    assert reading.backlog == 0.0
    # L = lambda W: queries present = throughput x time in the pool (waiting plus running).
    assert reading.in_system == pytest.approx(reading.throughput * reading.time_in_system, rel=1e-9)


def test_connections_over_the_database_maximum_are_a_budget_breach() -> None:
    spec = DatabaseSpec(max_connections=100)
    assert pool_step(spec, 10.0, 10, 12, 1.0, 0.0, 15.0).over_budget
    assert not pool_step(spec, 10.0, 10, 10, 1.0, 0.0, 15.0).over_budget


def test_an_oversized_pool_serves_fewer_queries_when_the_database_is_saturated() -> None:
    spec = DatabaseSpec(concurrency=32, max_connections=1000, query_seconds=0.05)
    demand = 1000.0  # 50 busy connections wanted: more than the database runs at once
    right = pool_step(spec, demand, 4, 8, 1.0, 0.0, 15.0)
    oversized = pool_step(spec, demand, 4, 60, 1.0, 0.0, 15.0)
    assert oversized.throughput < right.throughput
    assert oversized.query_seconds > right.query_seconds
