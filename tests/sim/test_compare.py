"""`autotuner sim --vs`: several policies side by side, and each one's distance to the oracle."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autotuner.cli.main import main

SCENARIO = """\
name: short
duration: 1h
tick: 15s
seed: 4
load:
  base: {constant: 300}
  events:
    - flash_crowd: {at: 20m, multiplier: 2, ramp: 1m, hold: 10m, decay: 5m}
policy: static
"""


@pytest.fixture
def scenario(tmp_path: Path) -> Path:
    path = tmp_path / "short.yaml"
    path.write_text(SCENARIO)
    return path


def test_vs_takes_a_comma_list_or_repeats(
    scenario: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["sim", str(scenario), "--vs", "hpa,oracle"]) == 0
    listed = capsys.readouterr().out
    assert main(["sim", str(scenario), "--vs", "hpa", "--vs", "oracle", "--vs", "static"]) == 0
    repeated = capsys.readouterr().out
    # The scenario's own policy is not run twice.
    assert listed == repeated
    rows = {line.split()[0]: line.split()[1:] for line in listed.splitlines() if line.strip()}
    assert rows["policy"] == ["static", "hpa", "oracle"]
    # Every run but the oracle's shows how far it is from it; the oracle's column has none.
    assert len(rows["vs_oracle.replica_hours_ratio"]) == 3
    assert rows["vs_oracle.replica_hours_ratio"][2] == "-"
    # Static holds its 4 pods through the crowd: fewer replica-hours than the bound, and the
    # violations that buys.
    assert float(rows["vs_oracle.replica_hours_ratio"][0]) < 1.0
    assert float(rows["vs_oracle.api_violation_minutes_extra"][0]) > 0.0


def test_json_of_several_runs_is_keyed_by_policy(
    scenario: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["sim", str(scenario), "--json", "--vs", "oracle"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["scenario"] == "short"
    assert document["policies"] == ["static", "oracle"]
    static, oracle = document["runs"]["static"], document["runs"]["oracle"]
    assert "vs_oracle" not in oracle
    comparison = static["vs_oracle"]
    hours = static["replicas"]["replica_hours"] - oracle["replicas"]["replica_hours"]
    assert comparison["replica_hours_extra"] == pytest.approx(hours, abs=1e-3)
    minutes = static["api_p95"]["violation_minutes"] - oracle["api_p95"]["violation_minutes"]
    assert comparison["api_violation_minutes_extra"] == pytest.approx(minutes, abs=1e-3)
    assert set(comparison) == {
        "replica_hours_ratio",
        "replica_hours_extra",
        "ml_replica_hours_ratio",
        "ml_replica_hours_extra",
        "api_violation_minutes_extra",
        "ml_violation_minutes_extra",
    }


def test_an_unknown_policy_is_named_with_the_choices(
    scenario: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["sim", str(scenario), "--vs", "hpa,orcale"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "orcale" in err and "oracle" in err


def test_a_scenario_may_name_the_oracle_as_its_policy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "oracle.yaml"
    path.write_text(SCENARIO.replace("policy: static", "policy: oracle"))
    assert main(["sim", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["policy"] == "oracle"
