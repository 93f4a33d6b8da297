"""The report's flaps: direction reversals per knob within a window that fits the knob."""

from __future__ import annotations

from pathlib import Path

from autotuner.sim.actuators import AppliedChange
from autotuner.sim.report import (
    FLAP_WINDOW,
    TTL_FLAP_WINDOW,
    check,
    flap_window,
    flaps,
    flaps_per_day,
)
from autotuner.sim.scenario import load_scenario

TTL = "key/crm:cache:ttl:transaction_summary"
API = "deployment/crm/api"


def change(time: float, knob: str, old: float, new: float) -> AppliedChange:
    return AppliedChange(time, knob, old, new, "rules")


def ping_pong(knob: str, start: float, every: float, count: int) -> list[AppliedChange]:
    """A raise 600 -> 900 s, a cut back, and so on, one change every `every` seconds."""
    return [
        change(start + i * every, knob, *((600.0, 900.0) if i % 2 == 0 else (900.0, 600.0)))
        for i in range(count)
    ]


def test_a_ttl_ping_pong_every_33_minutes_is_counted() -> None:
    changes = ping_pong(TTL, 0.0, 33 * 60.0, 12)
    # Every change after the first reverses the one 33 minutes before it.
    assert flaps(changes) == {TTL: 11}
    # The 10-minute window, which deployments keep, sees none of them.
    assert flaps(ping_pong(API, 0.0, 33 * 60.0, 12)) == {}


def test_a_ttl_raised_then_cut_five_hours_later_is_not_a_flap() -> None:
    changes = [change(0.0, TTL, 600.0, 900.0), change(5 * 3600.0, TTL, 900.0, 675.0)]
    assert flaps(changes) == {}


def test_a_long_ttl_s_window_is_twice_the_ttl_it_undoes() -> None:
    # Raised to 4 hours, cut 5 hours later: the 4-hour TTL had barely shown by then.
    changes = [
        change(0.0, TTL, 3 * 3600.0, 4 * 3600.0),
        change(5 * 3600.0, TTL, 4 * 3600.0, 3600.0),
    ]
    assert flaps(changes) == {TTL: 1}
    assert flap_window(TTL, 600.0) == TTL_FLAP_WINDOW
    assert flap_window(TTL, 4 * 3600.0) == 8 * 3600.0
    assert flap_window(API, 4.0) == FLAP_WINDOW


def test_deployments_keep_the_10_minute_window() -> None:
    quick = [change(0.0, API, 4, 6), change(540.0, API, 6, 5)]
    slow = [change(0.0, API, 4, 6), change(900.0, API, 6, 5)]
    assert flaps(quick) == {API: 1}
    assert flaps(slow) == {}
    # Two moves the same way are no reversal, however close.
    assert flaps([change(0.0, API, 4, 6), change(15.0, API, 6, 9)]) == {}


def test_per_day_is_the_worst_day() -> None:
    first_day = ping_pong(TTL, 3600.0, 33 * 60.0, 4)  # 3 reversals on day 0
    second_day = ping_pong(TTL, 86400.0 + 3600.0, 33 * 60.0, 8)  # 7 on day 1
    deployment = [change(100.0, API, 4, 6), change(200.0, API, 6, 4)]
    changes = sorted(first_day + second_day + deployment, key=lambda c: c.time)
    assert flaps(changes) == {TTL: 10, API: 1}
    assert flaps_per_day(changes) == {TTL: 7, API: 1}


def test_an_expectation_can_bound_one_knob_s_flaps_per_day(tmp_path: Path) -> None:
    path = tmp_path / "ttl.yaml"
    path.write_text(
        "duration: 1h\nload:\n  base: {constant: 100}\npolicy: static\nexpect:\n"
        f"  - flaps.per_day.{TTL} <= 4\n"
    )
    (expectation,) = load_scenario(path).expectations
    assert expectation.path == f"flaps.per_day.{TTL}"
    report = {"flaps": {"per_day": flaps_per_day(ping_pong(TTL, 0.0, 33 * 60.0, 12))}}
    assert check(report, [expectation]) == [
        f"{path}:6: expected flaps.per_day.{TTL} <= 4 (actual 11)"
    ]
