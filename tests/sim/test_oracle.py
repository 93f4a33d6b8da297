"""The oracle policy: the fewest replicas that meet the SLOs, knowing the load ahead."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from autotuner.config.loader import load_rules
from autotuner.sim.cache import CacheClass
from autotuner.sim.oracle import MAX_TTL, MIN_TTL, Evaluation, best_ttl, fewest_meeting
from autotuner.sim.report import build_report, to_json
from autotuner.sim.runner import Policy, RunResult, run
from autotuner.sim.scenario import Scenario, load_scenario

ROOT = Path(__file__).resolve().parents[2]
API = "deployment/crm/api"


def scenario(tmp_path: Path, text: str) -> Scenario:
    path = tmp_path / "oracle.yaml"
    path.write_text(text)
    return load_scenario(path)


def api_changes(result: RunResult) -> list[tuple[float, float, float]]:
    return [(c.time, c.old, c.new) for c in result.changes if c.knob == API]


def test_a_constant_load_it_can_meet_never_violates_either_slo(tmp_path: Path) -> None:
    constant = scenario(
        tmp_path,
        "duration: 2h\nseed: 3\nload:\n  base: {constant: 500}\n  noise: 0.05\n"
        "system:\n  api: {replicas: 10}\n  ml: {replicas: 3}\npolicy: oracle\n",
    )
    result = run(constant, Policy.ORACLE)
    assert (result.signals["api_p95"] <= constant.slos.api_p95).all()
    assert (result.signals["ml_p95"] <= constant.slos.ml_p95).all()
    # It is the fewest that meet the SLO: it gives back pods the scenario started with.
    assert result.signals["api_replicas"].min() < 10
    assert all(c.source == "oracle" for c in result.changes)


def test_on_the_flash_crowd_it_costs_no_more_than_the_hpa_or_the_rules() -> None:
    flash = load_scenario(ROOT / "sim" / "scenarios" / "flash-crowd.yaml")
    oracle = build_report(flash, run(flash, Policy.ORACLE))
    others = [
        build_report(flash, run(flash, Policy.HPA)),
        build_report(flash, run(flash, Policy.RULES, load_rules(flash.rule_paths))),
    ]
    for other in others:
        for section in ("replicas", "ml_replicas"):
            assert oracle[section]["replica_hours"] <= other[section]["replica_hours"]
        for slo in ("api_p95", "ml_p95"):
            assert oracle[slo]["violation_minutes"] <= other[slo]["violation_minutes"]
    assert oracle["api_p95"]["violation_minutes"] == 0


STEP = """\
duration: 3h
seed: 5
load:
  base: {constant: 300}
  events:
    - step: {at: 1h, factor: 3}
    - step: {at: 2h, factor: 0.3333333}
system:
  api: {replicas: 4, startup_delay: 60s}
policy: oracle
"""


def test_it_pre_scales_one_start_up_delay_before_a_step_and_scales_in_at_once(
    tmp_path: Path,
) -> None:
    stepped = scenario(tmp_path, STEP)
    result = run(stepped, Policy.ORACLE)
    delay = stepped.system.api.startup_delay
    tick = stepped.settings.tick
    rises = [time for time, old, new in api_changes(result) if new > old]
    falls = [time for time, old, new in api_changes(result) if new < old]
    # Nothing moves on the constant load but the first tick's fit; the rise is asked for exactly
    # one start-up delay ahead, and the pods are ready the step the load triples.
    assert [time for time in rises if time > 0] == [3600 - delay]
    ready = result.signals["api_ready"]
    at_step = int(np.searchsorted(result.times, 3600))
    assert ready[at_step] > ready[at_step - 1]
    assert (result.signals["api_p95"] <= stepped.slos.api_p95).all()
    # Scaled in at the last tick before the load falls: the pods go at once.
    assert [time for time in falls if time > 0] == [7200 - tick]


def test_the_same_scenario_gives_the_same_run() -> None:
    flash = load_scenario(ROOT / "sim" / "scenarios" / "cache-flush.yaml")
    first = run(flash, Policy.ORACLE)
    second = run(flash, Policy.ORACLE)
    assert first.changes == second.changes
    assert to_json(build_report(flash, first)) == to_json(build_report(flash, second))


def test_ttls_are_the_update_intervals_within_the_bounds() -> None:
    assert best_ttl(CacheClass("a", 600.0, update_interval=1800.0)) == 1800.0
    assert best_ttl(CacheClass("a", 600.0, update_interval=10.0)) == MIN_TTL
    assert best_ttl(CacheClass("a", 600.0, update_interval=10 * MAX_TTL)) == MAX_TTL
    flash = load_scenario(ROOT / "sim" / "scenarios" / "flash-crowd.yaml")
    report = build_report(flash, run(flash, Policy.ORACLE))
    assert report["stale_hit_share"] == 0
    assert report["pool"]["budget_breach_minutes"] == 0


def test_fewest_meeting_searches_up_and_down_and_falls_back_to_the_lowest_p95() -> None:
    def falling(count: int) -> Evaluation:
        return 1.0 / count, True

    # p95 = 1/n within 0.2 from n = 5 on, whichever side the search starts.
    assert fewest_meeting(falling, 0.2, 1, 20, 2) == 5
    assert fewest_meeting(falling, 0.2, 1, 20, 12) == 5
    assert fewest_meeting(falling, 0.2, 6, 20, 1) == 6

    def behind_until_eight(count: int) -> Evaluation:
        return 0.1, count >= 8

    # Within the SLO for one step but building a backlog does not meet it.
    assert fewest_meeting(behind_until_eight, 0.2, 1, 20, 3) == 8

    def never(count: int) -> Evaluation:
        return abs(count - 7) + 1.0, True

    assert fewest_meeting(never, 0.5, 1, 20, 3) == 7


def test_pods_lost_to_a_fault_are_covered_ahead_until_they_are_back(tmp_path: Path) -> None:
    crash = scenario(
        tmp_path,
        "duration: 2h\nload:\n  base: {constant: 500}\nsystem:\n  api: {replicas: 10}\n"
        "faults:\n  - {kind: lose_replicas, at: 1h, target: api, count: 2}\npolicy: oracle\n",
    )
    result = run(crash, Policy.ORACLE)
    delay = crash.system.api.startup_delay
    assert (result.signals["api_p95"] <= crash.slos.api_p95).all()
    changes = [(time, new - old) for time, old, new in api_changes(result) if time > 0]
    # Two more pods asked for one start-up delay before the crash, given back once the lost
    # ones are recreated.
    assert changes == [(3600 - delay, 2), (3600 + delay - crash.settings.tick, -2)]
