"""The API service: pods with a few CPU cores and more workers (concurrent requests) each.

A request holds a worker for its service time S and needs `cpu_seconds` of CPU on the way. The
pods' cores are shared by the requests in progress (processor sharing, Kleinrock vol. 2 §4.4):
with CPU utilisation u = λ·cpu / (ready pods · cores), the CPU part of a request stretches to
cpu / (1 - u), so latency rises smoothly with load, as it does on real hosts. S adds the time
spent waiting on the database and the ML service. Workers are the servers of an M/M/c queue
(c = ready pods x workers, see `service`); p95 is that queue's response-time quantile.

At u >= `SATURATED` the CPU cannot keep up: the excess becomes a backlog served at the CPU's
capacity, adding backlog / capacity to every request, and drains when capacity returns.
"""

from __future__ import annotations

from dataclasses import dataclass

from autotuner.sim.queueing import mean_wait, response_quantile

SATURATED = 0.95


@dataclass(frozen=True, slots=True)
class APISpec:
    replicas: int = 4
    workers: int = 16
    cores: float = 2.0
    cpu_seconds: float = 0.02
    startup_delay: float = 60.0
    timeout: float = 30.0


@dataclass(frozen=True, slots=True)
class APIReading:
    p95: float
    mean: float
    # CPU utilisation of the ready pods (what metrics-server reports to an HPA), capped at 1.
    utilisation: float
    backlog: float
    dropped: float


def api_step(
    spec: APISpec,
    rps: float,
    ready: int,
    cpu_seconds: float,
    downstream_seconds: float,
    backlog: float,
    dt: float,
) -> APIReading:
    if ready <= 0:
        queued = backlog + rps * dt
        dropped = max(0.0, queued - rps * spec.timeout)
        return APIReading(spec.timeout, spec.timeout, 1.0, queued - dropped, dropped)
    capacity = ready * spec.cores / cpu_seconds
    utilisation = rps / capacity
    overloaded = backlog > 0.0 or utilisation >= SATURATED
    stretched = min(utilisation, SATURATED)
    service = cpu_seconds / (1.0 - stretched) + downstream_seconds
    servers = ready * spec.workers
    arrival = min(rps, 0.95 * servers / service)
    p95 = response_quantile(arrival, 1.0 / service, servers)
    mean = mean_wait(arrival, 1.0 / service, servers) + service
    dropped = 0.0
    if overloaded:
        backlog = max(0.0, backlog + (rps - SATURATED * capacity) * dt)
        limit = capacity * spec.timeout
        dropped = max(0.0, backlog - limit)
        backlog -= dropped
        delay = backlog / capacity
        p95 += delay
        mean += delay
    return APIReading(
        min(p95, spec.timeout), min(mean, spec.timeout), min(1.0, utilisation), backlog, dropped
    )
