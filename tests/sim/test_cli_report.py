"""`autotuner sim`: where the plot went, which policy the expectations were checked against,
and the progress bar's elapsed, simulated time and ETA."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib.pyplot as plt
import pytest

from autotuner.cli import sim as sim_command
from autotuner.cli.main import main
from autotuner.sim import plot as plot_module

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
  - flaps.total <= 100
"""


@pytest.fixture
def scenario(tmp_path: Path) -> Path:
    rules = Path(__file__).resolve().parents[2] / "rules"
    path = tmp_path / "short.yaml"
    path.write_text(SCENARIO.replace("RULES", str(rules)))
    return path


def test_vs_says_which_policy_the_expectations_were_checked_against(
    scenario: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["sim", str(scenario), "--vs", "hpa,static"]) == 0
    err = capsys.readouterr().err
    assert (
        "expectations checked against policy rules (the scenario's own policy); "
        "not checked against hpa, static (--vs):"
    ) in err
    assert "  holds: replicas.max <= 20 (actual " in err
    assert "  holds: flaps.total <= 100 (actual " in err


def test_policy_override_is_named_as_such_and_a_failure_is_listed(
    scenario: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scenario.write_text(scenario.read_text().replace("replicas.max <= 20", "replicas.max <= 1"))
    assert main(["sim", str(scenario), "--policy", "hpa"]) == 1
    err = capsys.readouterr().err
    assert "expectations checked against policy hpa (given with --policy):" in err
    assert f"FAILED {scenario}:" in err and "expected replicas.max <= 1" in err


def test_the_plot_says_where_it_was_written_and_shares_y_axes_across_columns(
    scenario: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    figures: list[plt.Figure] = []
    real_close = plt.close

    def keep(figure: plt.Figure) -> None:
        figures.append(figure)
        real_close(figure)

    monkeypatch.setattr(plot_module.plt, "close", keep)
    out = tmp_path / "run.png"
    assert main(["sim", str(scenario), "--vs", "hpa", "--plot", str(out)]) == 0
    assert f"autotuner sim: wrote the plot to {out.resolve()}" in capsys.readouterr().err
    [figure] = figures
    # Row by row, left then right; the pool panels' twin axes come after.
    grid = figure.axes[: 2 * plot_module.ROWS]
    by_title = {axis.get_ylabel(): axis for axis in grid}
    ttl, pool = by_title["effective TTL (min)"], by_title["pool size"]
    assert ttl.get_legend() is not None
    pool_usage = [a for a in figure.axes if a.get_legend() and a is not pool]
    labels = {t.get_text() for a in pool_usage for t in a.get_legend().get_texts()}
    assert {"pool size", "pool usage"} <= labels
    for left, right in zip(grid[0::2], grid[1::2], strict=True):
        assert left.get_shared_y_axes().joined(left, right)
        assert left.get_ylim() == right.get_ylim()


def test_progress_shows_elapsed_simulated_time_and_eta() -> None:
    stream = io.StringIO()
    progress = sim_command._Progress("flash (rules)", 21 * 86400, stream)
    progress(0.5)
    progress(1.0)
    last = stream.getvalue().split("\r")[-1]
    assert "flash (rules): simulated" in last
    assert "21d of 21d" in last
    assert "100%" in last
    assert "elapsed 00:00" in last and "ETA 00:00" in last


def test_no_progress_bar_off_a_terminal(scenario: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", str(scenario)]) == 0
    assert "elapsed" not in capsys.readouterr().err
