"""The M/M/c formulas against published tables and closed forms."""

from __future__ import annotations

import math

import pytest

from autotuner.sim.queueing import erlang_b, erlang_c, mean_wait, response_quantile, wait_quantile


# Offered load that gives 1% blocking, from the standard Erlang B table (e.g. Kleinrock vol. 1,
# or any teletraffic handbook's table): N servers -> erlangs.
@pytest.mark.parametrize(("servers", "erlangs"), [(5, 1.361), (10, 4.461), (20, 12.031)])
def test_erlang_b_matches_the_published_one_percent_table(servers: int, erlangs: float) -> None:
    assert erlang_b(servers, erlangs) == pytest.approx(0.01, rel=0.01)


# Probability of waiting from published Erlang C tables (call-centre staffing tables):
# 5 agents at 4 erlangs wait 55.4% of the time, 10 agents at 8 erlangs 40.9%.
@pytest.mark.parametrize(("servers", "erlangs", "waits"), [(5, 4.0, 0.554), (10, 8.0, 0.409)])
def test_erlang_c_matches_published_values(servers: int, erlangs: float, waits: float) -> None:
    assert erlang_c(servers, erlangs) == pytest.approx(waits, abs=0.0005)


def test_erlang_c_closed_forms() -> None:
    # M/M/1: an arrival waits with probability rho; M/M/2 at a = 1: C = a^2 / (2 + a) = 1/3.
    assert erlang_c(1, 0.7) == pytest.approx(0.7)
    assert erlang_c(2, 1.0) == pytest.approx(1.0 / 3.0)


def test_erlang_c_agrees_with_the_textbook_sum() -> None:
    servers, load = 12, 9.5
    head = sum(load**k / math.factorial(k) for k in range(servers))
    tail = load**servers / math.factorial(servers) * servers / (servers - load)
    assert erlang_c(servers, load) == pytest.approx(tail / (head + tail), rel=1e-12)


def test_the_recursion_is_stable_for_hundreds_of_servers() -> None:
    value = erlang_c(800, 780.0)
    assert 0.0 < value < 1.0
    assert math.isfinite(value)


def test_mm1_response_time_quantile_is_exponential() -> None:
    # M/M/1 response time is Exp(mu - lambda): p95 = ln(20) / (mu - lambda).
    assert response_quantile(8.0, 10.0, 1) == pytest.approx(math.log(20) / 2.0, rel=1e-5)


def test_waiting_quantile_and_mean() -> None:
    wait_probability = erlang_c(4, 3.0)
    expected = math.log(wait_probability / 0.05) / (4 * 1.0 - 3.0)
    assert wait_quantile(3.0, 1.0, 4, 0.95) == pytest.approx(expected)
    assert mean_wait(3.0, 1.0, 4) == pytest.approx(wait_probability / 1.0)
    assert mean_wait(5.0, 1.0, 4) == math.inf


def recursion_step_by_step(servers: int, load: float) -> float:
    """Erlang B by its recursion alone, stopping once 1/B(k) > 1e15 past k = a."""
    inverse = 1.0
    for k in range(1, servers + 1):
        inverse = 1.0 + inverse * k / load
        if inverse > 1e15 and k > load:
            return 0.0
    return 1.0 / inverse


@pytest.mark.parametrize("servers", [1, 2, 10, 17, 40, 64, 160, 320, 1500])
def test_erlang_b_equals_its_recursion_also_where_a_bound_skips_it(servers: int) -> None:
    loads = [servers * share for share in (1e-4, 0.05, 0.2, 0.4, 0.6, 0.8, 0.95, 1.0, 1.3)]
    # And around the load where the recursion starts answering 0, found by bisection.
    low, high = 1e-9, float(servers)
    for _ in range(100):
        middle = 0.5 * (low + high)
        if recursion_step_by_step(servers, middle) == 0.0:
            low = middle
        else:
            high = middle
    loads += [low * (1.0 + d) for d in (-1e-3, -1e-9, 0.0, 1e-9, 1e-3)] + [high]
    for load in loads:
        assert erlang_b(servers, load) == recursion_step_by_step(servers, load)
