"""A service that is an M/M/c queue while it keeps up and a draining backlog when it does not.

While λ < cμ the response time is M/M/c's (see `queueing`). When λ >= cμ a steady state does not
exist; instead the excess accumulates as a fluid backlog B (dB/dt = λ - cμ) that drains when
capacity returns, and an arrival waits B/(cμ) on top of a nearly saturated queue's response time
(utilisation capped at `SATURATED` for the stochastic part, so latency is continuous across the
boundary). Requests that would wait longer than the timeout are dropped, which bounds B.
"""

from __future__ import annotations

from dataclasses import dataclass

from autotuner.sim.queueing import mean_wait, response_quantile

SATURATED = 0.98


@dataclass(frozen=True, slots=True)
class ServiceReading:
    p95: float
    mean: float
    utilisation: float
    backlog: float
    dropped: float


def serve(
    arrival_rate: float,
    service_seconds: float,
    servers: int,
    backlog: float,
    dt: float,
    timeout: float,
) -> ServiceReading:
    """One step of `dt` seconds; returns latency figures and the backlog carried forward."""
    if servers <= 0:
        # Nothing serves: everything queues until the timeout drops it.
        queued = backlog + arrival_rate * dt
        dropped = max(0.0, queued - arrival_rate * timeout)
        return ServiceReading(timeout, timeout, 1.0, queued - dropped, dropped)
    service_rate = 1.0 / service_seconds
    capacity = servers * service_rate
    if backlog <= 0.0 and arrival_rate < SATURATED * capacity:
        p95 = response_quantile(arrival_rate, service_rate, servers)
        mean = mean_wait(arrival_rate, service_rate, servers) + service_seconds
        return ServiceReading(
            min(p95, timeout), min(mean, timeout), arrival_rate / capacity, 0.0, 0.0
        )
    backlog = max(0.0, backlog + (arrival_rate - capacity) * dt)
    limit = capacity * timeout
    dropped = max(0.0, backlog - limit)
    backlog -= dropped
    queue_delay = backlog / capacity
    stochastic_rate = min(arrival_rate, SATURATED * capacity)
    p95 = queue_delay + response_quantile(stochastic_rate, service_rate, servers)
    mean = queue_delay + mean_wait(stochastic_rate, service_rate, servers) + service_seconds
    utilisation = 1.0 if backlog > 0 else arrival_rate / capacity
    return ServiceReading(min(p95, timeout), min(mean, timeout), utilisation, backlog, dropped)

