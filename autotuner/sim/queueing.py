"""The M/M/c queue in closed form: Erlang B, Erlang C, waiting and response-time tails.

Formulas (Kleinrock, *Queueing Systems* vol. 1, §3.5; Gross & Harris, *Fundamentals of
Queueing Theory*, §2.3), with offered load a = λ/μ and c servers, ρ = a/c < 1:

- Erlang B by the stable recursion B(0) = 1, B(k) = a·B(k-1) / (k + a·B(k-1)), which never forms
  a^c or c! and so neither overflows nor loses precision for hundreds of servers.
- Erlang C from Erlang B: C = B / (1 - ρ·(1 - B)), the probability an arrival waits.
- Waiting time Wq: P(Wq > t) = C·exp(-(cμ - λ)·t); mean E[Wq] = C / (cμ - λ).
- Response time T = Wq + S with S ~ Exp(μ) independent of Wq:
  P(T > t) = (1 - C)·e^{-μt} + C·P(Exp(θ) + Exp(μ) > t), θ = cμ - λ, where the hypoexponential
  tail is (θ·e^{-μt} - μ·e^{-θt}) / (θ - μ), or (1 + μt)·e^{-μt} when θ = μ. The quantile is
  found by safeguarded Newton steps on log P(T > t).
"""

from __future__ import annotations

import math


def erlang_b(servers: int, offered_load: float) -> float:
    """Blocking probability of M/M/c/c with `servers` servers and `offered_load` erlangs."""
    if servers < 0 or offered_load < 0:
        raise ValueError("erlang_b needs servers >= 0 and offered_load >= 0")
    if offered_load == 0:
        return 0.0 if servers > 0 else 1.0
    # 1/B(k) = 1 + (k/a)·1/B(k-1): one multiply-add per server, no overflow.
    inverse = 1.0
    for k in range(1, servers + 1):
        inverse = 1.0 + inverse * k / offered_load
        # Past k > a the sequence only grows, so B(c) < 1e-15 from here on: stop early.
        if inverse > 1e15 and k > offered_load:
            return 0.0
    return 1.0 / inverse


def erlang_c(servers: int, offered_load: float) -> float:
    """Probability an arrival must wait in M/M/c; 1.0 when the queue is unstable (ρ >= 1)."""
    if servers <= 0 or offered_load >= servers:
        return 1.0
    if offered_load <= 0:
        return 0.0
    blocking = erlang_b(servers, offered_load)
    utilisation = offered_load / servers
    return blocking / (1.0 - utilisation * (1.0 - blocking))


def mean_wait(arrival_rate: float, service_rate: float, servers: int) -> float:
    """E[Wq] of a stable M/M/c queue, in the time unit of the rates."""
    capacity = servers * service_rate
    if arrival_rate >= capacity:
        return math.inf
    if arrival_rate <= 0:
        return 0.0
    return erlang_c(servers, arrival_rate / service_rate) / (capacity - arrival_rate)


def wait_quantile(arrival_rate: float, service_rate: float, servers: int, q: float) -> float:
    """The q-quantile of the waiting time Wq (0 when fewer than 1-q of arrivals wait)."""
    capacity = servers * service_rate
    if arrival_rate >= capacity:
        return math.inf
    wait_probability = erlang_c(servers, arrival_rate / service_rate)
    tail = 1.0 - q
    if wait_probability <= tail:
        return 0.0
    return math.log(wait_probability / tail) / (capacity - arrival_rate)


def response_tail(t: float, wait_probability: float, theta: float, service_rate: float) -> float:
    """P(T > t) for M/M/c: the waiting mixture convolved with one exponential service."""
    no_wait = math.exp(-service_rate * t)
    if abs(theta - service_rate) < 1e-9 * service_rate:
        both = (1.0 + service_rate * t) * no_wait
    else:
        both = (theta * no_wait - service_rate * math.exp(-theta * t)) / (theta - service_rate)
    return (1.0 - wait_probability) * no_wait + wait_probability * both


def _response_density(
    t: float, wait_probability: float, theta: float, service_rate: float
) -> float:
    no_wait = math.exp(-service_rate * t)
    if abs(theta - service_rate) < 1e-9 * service_rate:
        both = service_rate * service_rate * t * no_wait
    else:
        both = theta * service_rate * (no_wait - math.exp(-theta * t)) / (theta - service_rate)
    return (1.0 - wait_probability) * service_rate * no_wait + wait_probability * both


def response_quantile(
    arrival_rate: float, service_rate: float, servers: int, q: float = 0.95
) -> float:
    """The q-quantile of the response time (waiting plus service) of a stable M/M/c queue."""
    capacity = servers * service_rate
    if arrival_rate >= capacity:
        return math.inf
    wait_probability = erlang_c(servers, arrival_rate / service_rate) if arrival_rate > 0 else 0.0
    theta = capacity - arrival_rate
    tail = 1.0 - q
    log_tail = math.log(tail)
    # The quantile lies between the service-time quantile alone and that plus the wait quantile.
    low = -log_tail / service_rate
    if wait_probability <= 0.0:
        return low
    high = low + max(0.0, math.log(max(wait_probability, tail) / tail)) / theta + 1.0 / theta
    while response_tail(high, wait_probability, theta, service_rate) > tail:
        high *= 2.0
    # Newton on log P(T > t) = log(1 - q), kept inside the bracket (bisection when it leaves).
    t = low
    for _ in range(60):
        survival = response_tail(t, wait_probability, theta, service_rate)
        if survival > tail:
            low = t
        else:
            high = t
        density = _response_density(t, wait_probability, theta, service_rate)
        step = (math.log(survival) - log_tail) * survival / density if density > 0 else math.inf
        candidate = t + step
        if not low < candidate < high:
            candidate = 0.5 * (low + high)
        if abs(candidate - t) <= 1e-9 * candidate or high - low <= 1e-9 * high:
            return candidate
        t = candidate
    return t
