"""The shipped rules driving the modelled system through `tick`, end to end."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from autotuner.cli.main import main
from autotuner.config.errors import ConfigError
from autotuner.config.loader import load_rules
from autotuner.sim.report import build_report, check, flaps, to_json
from autotuner.sim.runner import Policy, run
from autotuner.sim.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "sim" / "scenarios"


def test_flash_crowd_recovers_within_20_replicas_without_flapping() -> None:
    scenario = load_scenario(SCENARIOS / "flash-crowd.yaml")
    result = run(scenario, Policy.RULES, load_rules(scenario.rule_paths))
    report = build_report(scenario, result)
    p95 = result.signals["api_p95"]
    # The crowd overwhelms 4 pods at first, then p95 comes back under the 500 ms target.
    assert p95.max() > scenario.slos.api_p95
    assert report["recovery"]["unrecovered"] == 0
    after_crowd = result.times >= 3600 + 30 * 60
    assert (p95[after_crowd] <= scenario.slos.api_p95).mean() > 0.97
    assert result.signals["api_replicas"].max() <= 20
    assert flaps(result.changes) == {}
    assert any(c.knob == "deployment/crm/api" and c.new > c.old for c in result.changes)
    assert check(report, scenario.expectations) == []


def test_no_action_is_taken_while_the_metrics_are_out() -> None:
    scenario = load_scenario(SCENARIOS / "metric-outage.yaml")
    result = run(scenario, Policy.RULES, load_rules(scenario.rule_paths))
    outage = scenario.faults[0]
    during = [c for c in result.changes if outage.at <= c.time < outage.at + outage.duration]
    assert during == []
    # The load rose during the outage; once metrics return the controller does act.
    assert any(c.time >= outage.at + outage.duration for c in result.changes)
    assert result.no_data_ticks == outage.duration / scenario.settings.tick


def test_same_seed_gives_byte_identical_json_and_another_seed_differs() -> None:
    scenario = load_scenario(SCENARIOS / "cache-flush.yaml")
    ruleset = load_rules(scenario.rule_paths)
    first = to_json(build_report(scenario, run(scenario, Policy.RULES, ruleset)))
    second = to_json(build_report(scenario, run(scenario, Policy.RULES, ruleset)))
    assert first == second
    reseeded = replace(scenario, settings=replace(scenario.settings, seed=12345))
    other = to_json(build_report(reseeded, run(reseeded, Policy.RULES, ruleset)))
    assert other != first


def test_hpa_and_static_policies_run_the_same_scenario() -> None:
    scenario = load_scenario(SCENARIOS / "flash-crowd.yaml")
    hpa = run(scenario, Policy.HPA)
    static = run(scenario, Policy.STATIC)
    assert static.changes == ()
    assert static.signals["api_replicas"].max() == scenario.system.api.replicas
    assert hpa.signals["api_replicas"].max() > scenario.system.api.replicas
    assert all(c.source == "hpa" for c in hpa.changes)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "scenario.yaml"
    path.write_text(text)
    return path


def test_a_bad_scenario_names_file_line_and_field(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "duration: 1h\nload:\n  base: {constant: 100}\npolicy: static\nfaults:\n"
        "  - {kind: slow_databse, at: 10m}\n",
    )
    with pytest.raises(ConfigError) as error:
        load_scenario(path)
    problem = error.value.problems[0]
    assert (problem.file, problem.line) == (str(path), 6)
    assert problem.field == "faults[0].kind"


def test_a_bad_expectation_is_reported_with_its_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "duration: 1h\nload:\n  base: {constant: 100}\npolicy: static\nexpect:\n"
        "  - replicas.max is small\n",
    )
    with pytest.raises(ConfigError) as error:
        load_scenario(path)
    assert error.value.problems[0].line == 6
    assert "REPORT.PATH OP NUMBER" in error.value.problems[0].message


def test_a_failed_expectation_makes_the_command_exit_1(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "duration: 30m\nload:\n  base: {constant: 100}\npolicy: static\nexpect:\n"
        "  - replicas.max >= 50\n",
    )
    assert main(["sim", str(path), "--json"]) == 1
