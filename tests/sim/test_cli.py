"""`autotuner sim` end to end: table, --vs, --json, --plot and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autotuner.cli import sim as sim_command
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
rules: [RULES]
policy: rules
expect:
  - replicas.max <= 20
"""


@pytest.fixture
def scenario(tmp_path: Path) -> Path:
    rules = Path(__file__).resolve().parents[2] / "rules"
    path = tmp_path / "short.yaml"
    path.write_text(SCENARIO.replace("RULES", str(rules)))
    return path


def test_table_side_by_side_with_a_plot(
    scenario: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plot = tmp_path / "run.png"
    assert main(["sim", str(scenario), "--vs", "hpa", "--plot", str(plot)]) == 0
    out = capsys.readouterr()
    policy_row = next(line for line in out.out.splitlines() if line.startswith("policy "))
    assert policy_row.split()[1:] == ["rules", "hpa"]
    assert "all 1 expectations hold" in out.err
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_json_is_identical_run_to_run(scenario: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", str(scenario), "--json"]) == 0
    first = capsys.readouterr().out
    assert main(["sim", str(scenario), "--json"]) == 0
    assert capsys.readouterr().out == first
    report = json.loads(first)
    assert report["policy"] == "rules"
    assert report["replicas"]["max"] <= 20


def test_bad_file_exits_2_with_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("duration: 1h\nload:\n  base: {constant: -5}\npolicy: static\n")
    assert main(["sim", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:3:" in err and "load.base.constant" in err


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("missing-folder/run.png", "missing-folder does not exist; create it"),
        ("run.pgn", "cannot tell the image format from .pgn; end the name with one of"),
        ("run", "cannot tell the image format from a name without a suffix"),
    ],
)
def test_a_plot_that_cannot_be_written_fails_before_the_run(
    scenario: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    message: str,
) -> None:
    def no_run(*args: object) -> None:
        raise AssertionError("the simulation ran before the plot's file name was checked")

    monkeypatch.setattr(sim_command.runner, "run", no_run)
    assert main(["sim", str(scenario), "--plot", str(tmp_path / name)]) == 2
    err = capsys.readouterr().err
    assert f"autotuner sim: --plot {tmp_path / name}: " in err
    assert message in err
    assert ".png" in err or "folder" in err
