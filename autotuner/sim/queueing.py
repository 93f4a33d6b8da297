"""The M/M/c queue in closed form: Erlang B, Erlang C, waiting and response-time tails.

Formulas (Kleinrock, *Queueing Systems* vol. 1, §3.5; Gross & Harris, *Fundamentals of
Queueing Theory*, §2.3), with offered load a = λ/μ and c servers, ρ = a/c < 1:

- Erlang B by the stable recursion B(0) = 1, B(k) = a·B(k-1) / (k + a·B(k-1)), which never forms
  a^c or c! and so neither overflows nor loses precision for hundreds of servers. B is taken as 0
  once 1/B(k) > 1e15 past k = a; the largest term of 1/B(c) = Σ_j c!/(j!·a^(c-j)) often shows
  that in advance (see `_surely_negligible`).
- Erlang C from Erlang B: C = B / (1 - ρ·(1 - B)), the probability an arrival waits.
- Waiting time Wq: P(Wq > t) = C·exp(-(cμ - λ)·t); mean E[Wq] = C / (cμ - λ).
- Response time T = Wq + S with S ~ Exp(μ) independent of Wq:
  P(T > t) = (1 - C)·e^{-μt} + C·P(Exp(θ) + Exp(μ) > t), θ = cμ - λ, where the hypoexponential
  tail is (θ·e^{-μt} - μ·e^{-θt}) / (θ - μ), or (1 + μt)·e^{-μt} when θ = μ. The quantile is
  found by safeguarded Newton steps on log P(T > t).

The simulator asks for a queue's p95 and mean wait together every step; `response_time` gives
both from one Erlang C.
"""

from __future__ import annotations

import math

# 1.0, 2.0, ...: the Erlang B recursion multiplies by the server count k, and a float k keeps that
# on the interpreter's float fast path, where an int k costs a conversion every time (the product
# is the same).
_SERVER_COUNTS = tuple(float(k) for k in range(1, 1025))


def erlang_b(servers: int, offered_load: float) -> float:
    """Blocking probability of M/M/c/c with `servers` servers and `offered_load` erlangs."""
    if servers < 0 or offered_load < 0:
        raise ValueError("erlang_b needs servers >= 0 and offered_load >= 0")
    if offered_load == 0:
        return 0.0 if servers > 0 else 1.0
    return _erlang_b(servers, offered_load)


def _erlang_b(servers: int, offered_load: float) -> float:
    # The bound costs about ten steps of the recursion: worth trying only with many servers
    # beyond the load (with few, the recursion is short or B is not negligible).
    if servers - offered_load > 16 and _surely_negligible(servers, offered_load):
        return 0.0
    counts = (
        _SERVER_COUNTS
        if servers <= len(_SERVER_COUNTS)
        else tuple(float(k) for k in range(1, servers + 1))
    )
    # Up to k <= a a term may be smaller than the one before; past k > a the sequence only grows,
    # so once 1/B(k) > 1e15 there, B(c) < 1e-15: stop early.
    growing_from = int(offered_load) if offered_load < servers else servers
    # 1/B(k) = 1 + (k/a)·1/B(k-1): one multiply-add per server, no overflow.
    inverse = 1.0
    for k in counts[:growing_from]:
        inverse = 1.0 + inverse * k / offered_load
    for k in counts[growing_from:servers]:
        inverse = 1.0 + inverse * k / offered_load
        if inverse > 1e15:
            return 0.0
    return 1.0 / inverse


# The recursion answers 0 once 1/B(k) passes 1e15 at some k > a. Its rounding error is at most
# about 3c units in the last place (each step multiplies and adds positive numbers only), so a
# lower bound on 1/B(c) above 1e15 by a factor e shows that it would, without running it.
_LOG_NEGLIGIBLE = math.log(1e15) + 1.0


def _surely_negligible(servers: int, offered_load: float) -> bool:
    """Whether the recursion for B(c) would stop early with 0: B(c) is far below 1e-15.

    1/B(c) = Σ_{j=0..c} c! / (j!·a^(c-j)) (from B = (a^c/c!) / Σ_{j=0..c} a^j/j!), so any one
    term bounds it from below; the largest, at j = ⌊a⌋, costs two log-gamma values.
    """
    j = int(offered_load)
    log_term = (
        math.lgamma(servers + 1) - math.lgamma(j + 1) - (servers - j) * math.log(offered_load)
    )
    return log_term > _LOG_NEGLIGIBLE


def erlang_c(servers: int, offered_load: float) -> float:
    """Probability an arrival must wait in M/M/c; 1.0 when the queue is unstable (ρ >= 1)."""
    if servers <= 0 or offered_load >= servers:
        return 1.0
    if offered_load <= 0:
        return 0.0
    blocking = _erlang_b(servers, offered_load)
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


def response_quantile(
    arrival_rate: float, service_rate: float, servers: int, q: float = 0.95
) -> float:
    """The q-quantile of the response time (waiting plus service) of a stable M/M/c queue."""
    capacity = servers * service_rate
    if arrival_rate >= capacity:
        return math.inf
    wait_probability = erlang_c(servers, arrival_rate / service_rate) if arrival_rate > 0 else 0.0
    return _response_quantile(wait_probability, capacity - arrival_rate, service_rate, q)


def response_time(
    arrival_rate: float, service_rate: float, servers: int, q: float = 0.95
) -> tuple[float, float]:
    """`response_quantile` and `mean_wait` of one stable M/M/c queue, from one Erlang C."""
    capacity = servers * service_rate
    if arrival_rate >= capacity:
        return math.inf, math.inf
    theta = capacity - arrival_rate
    if arrival_rate <= 0:
        return _response_quantile(0.0, theta, service_rate, q), 0.0
    wait_probability = erlang_c(servers, arrival_rate / service_rate)
    return _response_quantile(wait_probability, theta, service_rate, q), wait_probability / theta


def _response_quantile(
    wait_probability: float, theta: float, service_rate: float, q: float
) -> float:
    tail = 1.0 - q
    log_tail = math.log(tail)
    # The quantile lies between the service-time quantile alone and that plus the wait quantile.
    low = -log_tail / service_rate
    if wait_probability <= 0.0:
        return low
    # max() written as a comparison: a builtin call costs several times as much, and this runs
    # twice every simulated step.
    waits_beyond = math.log((tail if tail > wait_probability else wait_probability) / tail)
    high = low + (waits_beyond if waits_beyond > 0.0 else 0.0) / theta + 1.0 / theta
    while response_tail(high, wait_probability, theta, service_rate) > tail:
        high *= 2.0
    # Newton on log P(T > t) = log(1 - q), kept inside the bracket (bisection when it leaves).
    # P(T > t) and its density -dP/dt are written out here (as in `response_tail`) so that both
    # share the two exponentials at t.
    no_wait_share = 1.0 - wait_probability
    no_wait_density = no_wait_share * service_rate
    equal_rates = abs(theta - service_rate) < 1e-9 * service_rate
    rate_gap = theta - service_rate
    rate_product = theta * service_rate
    service_rate_squared = service_rate * service_rate
    minus_service_rate, minus_theta = -service_rate, -theta
    t = low
    for _ in range(60):
        no_wait = math.exp(minus_service_rate * t)
        if equal_rates:
            both = (1.0 + service_rate * t) * no_wait
            both_density = service_rate_squared * t * no_wait
        else:
            queued = math.exp(minus_theta * t)
            both = (theta * no_wait - service_rate * queued) / rate_gap
            both_density = rate_product * (no_wait - queued) / rate_gap
        survival = no_wait_share * no_wait + wait_probability * both
        density = no_wait_density * no_wait + wait_probability * both_density
        if survival > tail:
            low = t
        else:
            high = t
        step = (math.log(survival) - log_tail) * survival / density if density > 0 else math.inf
        candidate = t + step
        # A Newton step this small has converged, even where it lands on the bracket's edge
        # (where bisection would otherwise take over for a few more steps).
        if -1e-9 * t <= step <= 1e-9 * t:
            return candidate
        if not low < candidate < high:
            candidate = 0.5 * (low + high)
        if abs(candidate - t) <= 1e-9 * candidate or high - low <= 1e-9 * high:
            return candidate
        t = candidate
    return t


def fixed_plus_exponential_response(
    arrival_rate: float,
    fixed_seconds: float,
    exponential_seconds: float,
    servers: int,
    q: float = 0.95,
) -> tuple[float, float]:
    """The q-quantile of the response time and the mean wait of M/G/c, S = fixed + Exp(mean).

    Allen-Cunneen: E[Wq] ≈ E[Wq of M/M/c with the same mean S]·(1 + cs²)/2, cs² = Var S / E[S]²
    = (exponential / S)². The wait keeps M/M/c's probability C and an exponential tail with the
    scaled mean: P(Wq > t) ≈ C·exp(-θt/k), θ = c/S - λ, k = (1 + cs²)/2. A request's own
    service is independent of its wait, so T - fixed = Wq + Exp is the M/M/c mixture of
    `response_tail` with rates θ/k and 1/exponential. With fixed = 0, k = 1: M/M/c exactly.
    """
    # Rates formed as `response_time` forms them, so that fixed = 0 gives its figures to the bit.
    service = fixed_seconds + exponential_seconds
    service_rate = 1.0 / service
    capacity = servers * service_rate
    if arrival_rate >= capacity:
        return math.inf, math.inf
    theta = capacity - arrival_rate
    variation = exponential_seconds / service
    scale = 0.5 * (1.0 + variation * variation)
    wait_probability = erlang_c(servers, arrival_rate / service_rate) if arrival_rate > 0 else 0.0
    wait_rate = theta / scale
    mean = wait_probability / wait_rate
    if exponential_seconds <= 0.0:
        # Deterministic service: T = fixed + Wq, whose quantile is the wait's.
        tail = 1.0 - q
        waits = math.log(wait_probability / tail) / wait_rate if wait_probability > tail else 0.0
        return fixed_seconds + waits, mean
    quantile = _response_quantile(wait_probability, wait_rate, 1.0 / exponential_seconds, q)
    return fixed_seconds + quantile, mean
