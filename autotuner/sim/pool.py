"""Database connection pools: per-replica M/M/c pools against a database of limited concurrency.

Each API pod holds a pool of P connections; queries (cache misses plus uncached reads) are split
evenly over the R pods, so each pool is an M/M/P queue with arrival rate λ/R and service time Q
(the query time). Figures per pool (Gross & Harris §2.3): busy connections a = λQ/R,
Lq = C(P, a)·ρ/(1 - ρ), Wq = C(P, a)/(Pμ - λ/R). Little's law L = λW holds for the whole set of
pools (tests check it).

The database runs at most K queries at once (its cores); open connections are capped by its
max_connections. While busy connections stay within K, a query takes Q0. Past that the database
time-slices and thrashes: with A > K connections active, Q = Q0·(A/K)^β with β > 1, so its
throughput A/Q = (K/Q0)·(A/K)^(1-β) falls as connections grow — the HikariCP pool-sizing lesson
that an oversized pool is slower. When demand exceeds what the pools and database can serve, all
connections are busy and the excess waits as a fluid backlog, as in `service`; a query that
would wait longer than the acquire timeout fails instead, which bounds the backlog.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from autotuner.sim.queueing import erlang_c

SATURATED = 0.98


@dataclass(frozen=True, slots=True)
class DatabaseSpec:
    pool_size: int = 10
    max_connections: int = 500
    # Queries the database runs at once without slowing down (about its core count).
    concurrency: int = 64
    query_seconds: float = 0.01
    contention_exponent: float = 1.5
    # A query waits at most this long for a connection, then fails (acquireTimeoutMillis).
    acquire_timeout: float = 30.0
    # Queries per API request that no cache serves, and per cache miss.
    queries_per_request: float = 1.0
    queries_per_miss: float = 1.0


class PoolReading(NamedTuple):
    # Mean share of pool connections busy.
    usage: float
    # Mean time a query waits for a connection, seconds.
    wait: float
    query_seconds: float
    # Connections the pods ask for, and whether that breaks the database's max_connections.
    connections: int
    over_budget: bool
    # Little's law terms for the whole set of pools: queries present, throughput, time in pool.
    in_system: float
    throughput: float
    time_in_system: float
    backlog: float


def pool_step(
    spec: DatabaseSpec,
    query_rate: float,
    pods: int,
    pool_size: int,
    slowdown: float,
    backlog: float,
    dt: float,
) -> PoolReading:
    """One step of `dt` seconds for `pods` pools of `pool_size` at `query_rate` queries/s."""
    requested = pods * pool_size
    max_connections = spec.max_connections
    # min() and max() written as comparisons: a builtin call costs several times as much, and
    # this runs every simulated step.
    open_connections = max_connections if max_connections < requested else requested
    over_budget = requested > max_connections
    base_query = spec.query_seconds * slowdown
    if pods <= 0 or open_connections <= 0:
        return PoolReading(1.0, 0.0, base_query, requested, over_budget, 0.0, 0.0, 0.0, backlog)
    per_pool = open_connections // pods
    per_pool = per_pool if per_pool > 1 else 1
    demand = query_rate * base_query
    concurrency = spec.concurrency
    busy_limit = concurrency if concurrency < open_connections else open_connections
    saturated = backlog > 0.0 or demand >= SATURATED * busy_limit
    if not saturated:
        offered = demand / pods
        utilisation = offered / per_pool
        wait_probability = erlang_c(per_pool, offered)
        per_pool_rate = query_rate / pods
        wait = wait_probability / (per_pool / base_query - per_pool_rate) if query_rate else 0.0
        queued = pods * wait_probability * utilisation / (1.0 - utilisation)
        in_system = queued + demand
        return PoolReading(
            usage=utilisation,
            wait=wait,
            query_seconds=base_query,
            connections=requested,
            over_budget=over_budget,
            in_system=in_system,
            throughput=query_rate,
            time_in_system=wait + base_query,
            backlog=0.0,
        )
    active = open_connections
    query_time = base_query * max(1.0, active / spec.concurrency) ** spec.contention_exponent
    throughput = active / query_time
    backlog = max(0.0, backlog + (query_rate - throughput) * dt)
    backlog = min(backlog, throughput * spec.acquire_timeout)
    wait = backlog / throughput
    served = min(query_rate, throughput) if backlog == 0.0 else throughput
    return PoolReading(
        usage=1.0 if backlog > 0 else min(1.0, query_rate * query_time / active),
        wait=wait,
        query_seconds=query_time,
        connections=requested,
        over_budget=over_budget,
        in_system=backlog + active,
        throughput=served,
        time_in_system=wait + query_time,
        backlog=backlog,
    )
