"""`autotuner sim --trace` and `autotuner trace fetch`'s refusals, end to end through main().

The fetch against a real Prometheus is in tests/integration/test_trace_fetch.py; these are the
refusals that need no server (bounds, times, an unreachable one) and the replay of a hand-made
trace."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from autotuner.cli.main import main

SCENARIO = """\
name: replay
duration: 3h
tick: 15s
seed: 5
load:
  base: {constant: 100}
policy: static
"""


@pytest.fixture
def scenario(tmp_path: Path) -> Path:
    path = tmp_path / "replay.yaml"
    path.write_text(SCENARIO)
    return path


@pytest.fixture
def trace(tmp_path: Path) -> Path:
    path = tmp_path / "hour.csv"
    rows = [f"2026-11-01 00:{minute:02d}:00,{600 + 60 * (minute % 10)}" for minute in range(60)]
    path.write_text("# a hand-made hour\nminute_utc,requests\n" + "\n".join(rows) + "\n")
    return path


def json_report(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[str, dict[str, object]]:
    assert main(list(argv)) == 0
    out = capsys.readouterr().out
    return out, json.loads(out)


def test_a_replayed_trace_gives_a_byte_identical_report_twice(
    scenario: Path, trace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first, report = json_report(capsys, "sim", str(scenario), "--trace", str(trace), "--json")
    second, _ = json_report(capsys, "sim", str(scenario), "--trace", str(trace), "--json")
    assert first == second
    load = report["load"]
    assert isinstance(load, dict)
    # As recorded: the busiest minute, 1,140 requests, is 19 requests per second.
    assert load["peak_rps"] == 19.0
    # The trace is an hour long, the scenario three: the run is the trace's hour.
    assert report["duration_hours"] == 1.0


def test_the_run_is_cut_to_the_trace_and_says_so(
    scenario: Path, trace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["sim", str(scenario), "--trace", str(trace)]) == 0
    err = capsys.readouterr().err
    assert f"the trace {trace} covers 1h, less than the scenario's 3h: the run lasts 1h" in err


@pytest.mark.parametrize(
    ("flags", "peak"), [(["--peak-rps", "380"], 380.0), (["--scale", "2"], 38.0)]
)
def test_a_replayed_trace_can_be_scaled_to_a_peak_or_by_a_factor(
    scenario: Path,
    trace: Path,
    capsys: pytest.CaptureFixture[str],
    flags: list[str],
    peak: float,
) -> None:
    _, report = json_report(capsys, "sim", str(scenario), "--trace", str(trace), "--json", *flags)
    load = report["load"]
    assert isinstance(load, dict) and load["peak_rps"] == pytest.approx(peak)


def test_a_bad_trace_exits_2_naming_its_file_and_line(
    scenario: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("minute_utc,requests\n2026-11-01 00:00:00,5\n2026-11-01 00:01:00,five\n")
    assert main(["sim", str(scenario), "--trace", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:3: the last column must be a request count, got 'five'" in err


def test_scaling_flags_need_a_trace(scenario: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", str(scenario), "--peak-rps", "100"]) == 2
    assert "apply to a --trace only" in capsys.readouterr().err


# ---- trace fetch: what is refused before and without a Prometheus --------------------------


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def fetch(output: Path, *flags: str, url: str | None = None) -> int:
    return main(
        [
            "trace", "fetch", "--prometheus-url", url or closed_port_url(),
            "--query", "sum(rate(http_requests_total[1m]))", "-o", str(output), *flags,
        ]
    )  # fmt: skip


WEEK = ("--start", "2026-11-01T00:00Z", "--end", "2026-11-08T00:00Z")


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            (*WEEK, "--max-points", "5000"),
            "at a step of 1m is 10,080 points, more than the most allowed, 5,000; shorten it, "
            "use a longer --step, or raise --max-points",
        ),
        ((*WEEK, "--step", "15s", "--max-points", "40000"), "at a step of 15s is 40,320 points"),
        ((*WEEK, "--max-span", "2d"), "is longer than the most allowed, 2d"),
        (("--start", "2026-11-01T00:00:30Z", "--end", "2026-11-02"), "not on a whole minute"),
        (("--start", "last tuesday", "--end", "2026-11-02"), "is not a time; write it in ISO"),
        ((*WEEK, "--step", "7s"), "does not divide a minute"),
        ((*WEEK, "--step", "soon"), "--step: 'soon' is not a duration"),
    ],
)
def test_a_period_beyond_the_bounds_is_refused_before_anything_is_sent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: tuple[str, ...], message: str
) -> None:
    output = tmp_path / "week.csv"
    # The URL has no server behind it: the refusal comes before any request.
    assert fetch(output, *flags) == 2
    err = capsys.readouterr().err
    assert err.startswith("autotuner trace fetch: ") and message in err
    assert list(tmp_path.iterdir()) == []


def test_an_unreachable_prometheus_exits_2_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "day.csv"
    url = closed_port_url()
    assert fetch(output, "--start", "2026-11-01", "--end", "2026-11-02", url=url) == 2
    err = capsys.readouterr().err
    assert f"cannot reach Prometheus at {url}: connection refused" in err
    assert list(tmp_path.iterdir()) == []


def test_connection_settings_are_those_of_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    output = tmp_path / "day.csv"
    day = ("--start", "2026-11-01", "--end", "2026-11-02")
    monkeypatch.delenv("AUTOTUNER_PROMETHEUS_URL", raising=False)
    assert main(["trace", "fetch", "--query", "up", "-o", str(output), *day]) == 2
    assert "give --prometheus-url or AUTOTUNER_PROMETHEUS_URL" in capsys.readouterr().err

    assert fetch(output, *day, url="http://user:secret@127.0.0.1:9") == 2
    err = capsys.readouterr().err
    assert "credentials in the URL" in err and "secret" not in err

    assert fetch(output, *day, "--prometheus-token-file", str(tmp_path / "absent")) == 2
    assert "field prometheus_token_file: cannot read file" in capsys.readouterr().err
    assert fetch(tmp_path / "no" / "such" / "folder.csv", *day) == 2
    assert "does not exist" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
