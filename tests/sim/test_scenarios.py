"""Every shipped scenario runs with its own policy and meets its own expectations."""

from __future__ import annotations

from pathlib import Path

import pytest

from autotuner.config.loader import load_rules
from autotuner.sim.report import build_report, check
from autotuner.sim.runner import Policy, run
from autotuner.sim.scenario import load_scenario

SCENARIOS = sorted((Path(__file__).resolve().parents[2] / "sim" / "scenarios").glob("*.yaml"))


def test_the_issue_s_scenarios_are_all_there() -> None:
    names = {path.stem for path in SCENARIOS}
    assert {
        "steady-day",
        "flash-crowd",
        "worldcup98",
        "cache-flush",
        "slow-database",
        "metric-outage",
    } <= names


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_scenario_meets_its_expectations(path: Path) -> None:
    scenario = load_scenario(path)
    assert scenario.expectations, f"{path} has no expect: section"
    ruleset = load_rules(scenario.rule_paths) if scenario.rule_paths else None
    result = run(scenario, Policy(scenario.policy), ruleset)
    assert check(build_report(scenario, result), scenario.expectations) == []
