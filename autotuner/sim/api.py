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

from autotuner.sim.queueing import response_time

SATURATED = 0.95


@dataclass(frozen=True, slots=True)
class APISpec:
    replicas: int = 4
    workers: int = 16
    cores: float = 2.0
    cpu_seconds: float = 0.02
    startup_delay: float = 60.0
    timeout: float = 30.0


# A step of the API, in this order: p95 and mean response time (s); CPU utilisation of the ready
# pods (what metrics-server reports to an HPA), capped at 1; the backlog carried forward and the
# requests dropped. A plain tuple: one is made every simulated step.
APIReading = tuple[float, float, float, float, float]


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
        return spec.timeout, spec.timeout, 1.0, queued - dropped, dropped
    capacity = ready * spec.cores / cpu_seconds
    utilisation = rps / capacity
    overloaded = backlog > 0.0 or utilisation >= SATURATED
    # min() and max() written as comparisons: a builtin call costs several times as much, and
    # this runs every simulated step.
    stretched = SATURATED if utilisation > SATURATED else utilisation
    service = cpu_seconds / (1.0 - stretched) + downstream_seconds
    servers = ready * spec.workers
    stable_arrival = 0.95 * servers / service
    arrival = stable_arrival if stable_arrival < rps else rps
    p95, wait = response_time(arrival, 1.0 / service, servers)
    mean = wait + service
    dropped = 0.0
    if overloaded:
        backlog = max(0.0, backlog + (rps - SATURATED * capacity) * dt)
        limit = capacity * spec.timeout
        dropped = max(0.0, backlog - limit)
        backlog -= dropped
        delay = backlog / capacity
        p95 += delay
        mean += delay
    timeout = spec.timeout
    return (
        timeout if timeout < p95 else p95,
        timeout if timeout < mean else mean,
        utilisation if utilisation < 1.0 else 1.0,
        backlog,
        dropped,
    )
