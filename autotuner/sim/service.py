"""A service that is an M/M/c queue while it keeps up and a draining backlog when it does not.

While λ < cμ the response time is M/M/c's (see `queueing`). When λ >= cμ a steady state does not
exist; instead the excess accumulates as a fluid backlog B (dB/dt = λ - cμ) that drains when
capacity returns, and an arrival waits B/(cμ) on top of a nearly saturated queue's response time
(utilisation capped at `SATURATED` for the stochastic part, so latency is continuous across the
boundary). Requests that would wait longer than the timeout are dropped, which bounds B.
"""

from __future__ import annotations

from autotuner.sim.queueing import response_time

SATURATED = 0.98


# A step of the service, in this order: p95 and mean response time (s), utilisation, the backlog
# carried forward and the requests dropped. A plain tuple: one is made every simulated step.
ServiceReading = tuple[float, float, float, float, float]


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
        return timeout, timeout, 1.0, queued - dropped, dropped
    service_rate = 1.0 / service_seconds
    capacity = servers * service_rate
    if backlog <= 0.0 and arrival_rate < SATURATED * capacity:
        p95, wait = response_time(arrival_rate, service_rate, servers)
        mean = wait + service_seconds
        # min() written as a comparison: a builtin call costs several times as much, and this
        # runs every simulated step.
        return (
            timeout if timeout < p95 else p95,
            timeout if timeout < mean else mean,
            arrival_rate / capacity,
            0.0,
            0.0,
        )
    backlog = max(0.0, backlog + (arrival_rate - capacity) * dt)
    limit = capacity * timeout
    dropped = max(0.0, backlog - limit)
    backlog -= dropped
    queue_delay = backlog / capacity
    stochastic_rate = min(arrival_rate, SATURATED * capacity)
    stochastic_p95, stochastic_wait = response_time(stochastic_rate, service_rate, servers)
    p95 = queue_delay + stochastic_p95
    mean = queue_delay + stochastic_wait + service_seconds
    utilisation = 1.0 if backlog > 0 else arrival_rate / capacity
    return min(p95, timeout), min(mean, timeout), utilisation, backlog, dropped
