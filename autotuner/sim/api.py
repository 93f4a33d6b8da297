"""The API service: pods with a few CPU cores and more workers (concurrent requests) each.

A request holds a worker for its service time S and needs CPU on the way: `cpu_seconds` of its
own work plus the server's `overhead` per request (parsing, dispatch, logging: 1-3 ms for
gunicorn). The pods' cores are shared by the requests in progress (processor sharing, Kleinrock
vol. 2 §4.4): with CPU utilisation u = x·cpu / (ready pods · cores) at served rate x, the CPU
part of a request stretches to cpu / (1 - u). S adds the time spent waiting on the database and
the ML service. The overhead and a share `cpu_fixed_share` of the CPU work are the same for every
request (the fixed part); the rest of the CPU work and the downstream waits are exponential.
Workers are the servers of an M/G/c queue (c = ready pods x workers), whose p95 comes from the
Allen-Cunneen approximation in `queueing.fixed_plus_exponential_response`.

Capacity is whichever of CPU and workers saturates first: CPU serves ready·cores/cpu requests a
second, workers c/S(u) with S stretched at the rate they serve, the root of x·S(x) = c. Arrivals
beyond capacity become a fluid backlog (dB/dt = λ - capacity) that drains when capacity returns,
adding B/capacity to every request; past the timeout requests are dropped. The queue's own part
is evaluated at arrivals of at most `QUEUE_SATURATED` x capacity, so latency is continuous where
the backlog begins.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from autotuner.sim.queueing import fixed_plus_exponential_response

# The CPU stretch 1/(1 - u) is taken at u <= SATURATED, so it stays finite (at most 20x).
SATURATED = 0.95
# The workers' queue is evaluated at arrivals up to QUEUE_SATURATED x capacity (as in `service`):
# its p95 stays finite, and the backlog takes over from there.
QUEUE_SATURATED = 0.98


@dataclass(frozen=True, slots=True)
class APISpec:
    replicas: int = 4
    workers: int = 16
    cores: float = 2.0
    cpu_seconds: float = 0.02
    startup_delay: float = 60.0
    timeout: float = 30.0
    overhead: float = 0.002
    cpu_fixed_share: float = 1.0


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
    timeout = spec.timeout
    if ready <= 0:
        queued = backlog + rps * dt
        dropped = max(0.0, queued - rps * timeout)
        return timeout, timeout, 1.0, queued - dropped, dropped
    cpu = cpu_seconds + spec.overhead
    fixed_cpu = spec.cpu_fixed_share * cpu_seconds + spec.overhead
    cpu_capacity = ready * spec.cores / cpu
    servers = ready * spec.workers
    capacity = _capacity(cpu, downstream_seconds, servers, cpu_capacity)
    # min() and max() written as comparisons: a builtin call costs several times as much, and
    # this runs every simulated step.
    backlog += (rps - capacity) * dt
    if backlog < 0.0:
        backlog = 0.0
    dropped = backlog - capacity * timeout
    if dropped > 0.0:
        backlog -= dropped
    else:
        dropped = 0.0
    stable = QUEUE_SATURATED * capacity
    arrival = stable if stable < rps else rps
    utilisation = arrival / cpu_capacity
    idle = 1.0 - utilisation if utilisation < SATURATED else 1.0 - SATURATED
    stretched = cpu / idle
    fixed = fixed_cpu / idle
    p95, wait = fixed_plus_exponential_response(
        arrival, fixed, stretched - fixed + downstream_seconds, servers
    )
    delay = backlog / capacity
    p95 += delay
    mean = wait + stretched + downstream_seconds + delay
    served = capacity if backlog > 0.0 or rps > capacity else rps
    busy = served / cpu_capacity
    return (
        timeout if timeout < p95 else p95,
        timeout if timeout < mean else mean,
        busy if busy < 1.0 else 1.0,
        backlog,
        dropped,
    )


def _capacity(cpu: float, downstream: float, servers: int, cpu_capacity: float) -> float:
    """Requests a second the pods can serve: CPU's or the workers', whichever is fewer.

    Workers serve x = c / S(x), S(x) = cpu / (1 - x/K) + downstream with K the CPU's capacity:
    x·cpu + x·downstream·(1 - x/K) = c(1 - x/K), a quadratic whose smaller root is taken in the
    form without cancellation, 2c / (b + sqrt(b² - 4c·downstream/K)), b = cpu + downstream + c/K.
    Past u = SATURATED the stretch is capped, and there workers serve c / (cpu/(1-SATURATED) +
    downstream).
    """
    linear = cpu + downstream + servers / cpu_capacity
    workers = (
        2.0
        * servers
        / (linear + math.sqrt(linear * linear - 4.0 * servers * downstream / cpu_capacity))
    )
    if workers > SATURATED * cpu_capacity:
        workers = servers / (cpu / (1.0 - SATURATED) + downstream)
    return workers if workers < cpu_capacity else cpu_capacity
