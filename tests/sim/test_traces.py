"""Trace files: reading with file:line errors, writing all or nothing, replay as recorded or
scaled, and the minute arithmetic of a fetched range query (against a stand-in source)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from autotuner.adapters.prometheus_trace import (
    MinuteRates,
    TraceFetchError,
    TraceQuery,
    check_bounds,
    fetch_minute_rates,
    filled,
)
from autotuner.config.errors import ConfigError
from autotuner.core.model import NoData, labels_of
from autotuner.sim.load import LoadSpec, Trace, offered_rps, tick_times
from autotuner.sim.scenario import load_scenario
from autotuner.sim.trace_file import TraceError, read_trace_csv, write_trace_csv

WORLDCUP_HEAD = "minute_utc,requests\n1998-06-01 00:00:00,2410\n1998-06-01 00:01:00,2074\n"


def trace_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "trace.csv"
    path.write_text(text)
    return path


def trace_error(path: Path) -> str:
    with pytest.raises(TraceError) as caught:
        read_trace_csv(path)
    return str(caught.value)


def test_comments_a_header_and_blank_lines_are_skipped(tmp_path: Path) -> None:
    path = trace_file(tmp_path, '# query: "sum(rate(x[1m]))"\n\n' + WORLDCUP_HEAD + "\n")
    assert read_trace_csv(path) == (2410.0, 2074.0)


def test_a_bare_column_of_counts_is_one_a_minute(tmp_path: Path) -> None:
    assert read_trace_csv(trace_file(tmp_path, "5\n6\n7.5\n")) == (5.0, 6.0, 7.5)


def test_a_requests_per_second_header_is_read_as_requests_per_minute(tmp_path: Path) -> None:
    path = trace_file(tmp_path, "minute_utc,requests_per_second\n2026-11-01T00:00Z,2\n"
                      "2026-11-01T00:01Z,2.5\n")  # fmt: skip
    assert read_trace_csv(path) == (120.0, 150.0)


@pytest.mark.parametrize(
    ("rows", "line", "message"),
    [
        ("1998-06-01 00:02:00,many\n", 4, "the last column must be a request count, got 'many'"),
        ("1998-06-01 00:02:00,-3\n", 4, "a request count must be >= 0, got -3"),
        ("1998-06-01 00:02:00,nan\n", 4, "a request count must be >= 0, got nan"),
        ("1998-06-01 00:05:00,10\n", 4, "(3 minutes are missing)"),
        ("1998-06-01 00:01:00,10\n", 4, "does not come after the previous row's"),
        ("1998-06-01 00:01:30,10\n", 4, "comes 30 s after the previous row's 1998-06-01 00:01:00"),
        ("yesterday,10\n", 4, "'yesterday' is not a time, as the first row's first column is"),
    ],
)
def test_a_bad_row_is_named_by_file_and_line(
    tmp_path: Path, rows: str, line: int, message: str
) -> None:
    path = trace_file(tmp_path, WORLDCUP_HEAD + rows)
    error = trace_error(path)
    assert error.startswith(f"{path}:{line}: ")
    assert message in error


def test_a_comment_before_the_rows_counts_in_the_line_numbers(tmp_path: Path) -> None:
    path = trace_file(tmp_path, "# fetched\n" + WORLDCUP_HEAD + "1998-06-01 00:02:00,x\n")
    assert trace_error(path).startswith(f"{path}:5: ")


def test_too_short_missing_and_binary_files_are_refused(tmp_path: Path) -> None:
    assert "at least two minutes" in trace_error(trace_file(tmp_path, "minute,requests\n1\n"))
    assert "cannot read the trace" in trace_error(tmp_path / "absent.csv")
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"\xff\xfe\x00")
    assert "not a text file" in trace_error(binary)


def test_the_bundled_worldcup98_trace_has_one_row_a_minute() -> None:
    # Read through the same checks: 30,240 consecutive minutes.
    from autotuner.sim.trace_file import bundled_trace

    assert len(bundled_trace("worldcup98")) == 30240


def test_a_written_trace_reads_back_with_its_comments(tmp_path: Path) -> None:
    path = tmp_path / "written.csv"
    start = 1_793_491_200.0  # 2026-11-01T00:00Z
    write_trace_csv(path, start, [1200.0, 1234.5678, 0.0], ['query: "up"', "step: 1m"])
    assert path.read_text() == (
        '# query: "up"\n# step: 1m\nminute_utc,requests\n'
        "2026-11-01 00:00:00,1200\n2026-11-01 00:01:00,1234.568\n2026-11-01 00:02:00,0\n"
    )
    assert read_trace_csv(path) == (1200.0, 1234.568, 0.0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["written.csv"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary_one(tmp_path: Path) -> None:
    path = tmp_path / "kept.csv"
    path.write_text("old\n")
    with pytest.raises(ValueError, match="finite"):
        write_trace_csv(path, 0.0, [1.0, math.nan])
    with pytest.raises(ValueError, match="one line"):
        write_trace_csv(path, 0.0, [1.0, 2.0], ["two\nlines"])
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["kept.csv"]


def test_a_trace_replays_as_recorded_times_its_scale() -> None:
    recorded = Trace((600.0, 1200.0, 300.0), peak_rps=None)
    times = tick_times(180.0, 60.0)
    assert offered_rps(LoadSpec(recorded), times, np.random.default_rng(0)).tolist() == [
        10.0, 20.0, 5.0,
    ]  # fmt: skip
    doubled = Trace(recorded.per_minute, peak_rps=None, scale=2.0)
    assert offered_rps(LoadSpec(doubled), times, np.random.default_rng(0)).tolist() == [
        20.0, 40.0, 10.0,
    ]  # fmt: skip


SCENARIO = """\
duration: 2m
policy: static
load:
  base:
    trace: {file: trace.csv, TRACE_SCALE}
"""


@pytest.mark.parametrize(
    ("scaling", "expected"),
    [("peak_rps: 50", (50.0, None)), ("scale: 1", (None, 1.0)), ("scale: 0.5", (None, 0.5))],
)
def test_a_scenario_trace_is_scaled_to_a_peak_or_by_a_factor(
    tmp_path: Path, scaling: str, expected: tuple[float | None, float | None]
) -> None:
    trace_file(tmp_path, "6000\n3000\n")
    path = tmp_path / "scenario.yaml"
    path.write_text(SCENARIO.replace("TRACE_SCALE", scaling))
    base = load_scenario(path).load.base
    assert isinstance(base, Trace)
    peak_rps, scale = expected
    assert base.peak_rps == peak_rps
    assert base.scale == (scale if scale is not None else 1.0)


@pytest.mark.parametrize("scaling", ["peak_rps: 50, scale: 1", "start_minute: 0"])
def test_a_scenario_trace_needs_exactly_one_way_of_scaling(tmp_path: Path, scaling: str) -> None:
    trace_file(tmp_path, "6000\n3000\n")
    path = tmp_path / "scenario.yaml"
    path.write_text(SCENARIO.replace("TRACE_SCALE", scaling))
    with pytest.raises(ConfigError) as caught:
        load_scenario(path)
    problem = str(caught.value.problems[0])
    assert problem.startswith(f"{path}:5:") and "either `peak_rps`" in problem


# ---- the minutes of a range query --------------------------------------------------------

START = 1_793_491_200.0  # 2026-11-01T00:00Z, a whole minute


class StandInSource:
    """Answers query_range from a function of the sample's time, recording each request."""

    def __init__(self, rate_at: object, series: Sequence[dict[str, str]] = ({},)) -> None:
        self._rate_at = rate_at
        self._series = series
        self.requests: list[tuple[float, float, float]] = []

    def query_range(self, expr: str, start: float, end: float, step: float) -> object:
        self.requests.append((start, end, step))
        stamps = np.arange(start, end + step / 2, step)
        return tuple(
            (labels_of(labels), tuple((float(t), self._rate_at(float(t))) for t in stamps))  # type: ignore[operator]
            for labels in self._series
        )


def test_each_minute_is_the_mean_of_the_samples_that_close_in_it() -> None:
    # At a 15 s step minute M gets the samples at M+15, +30, +45 and +60 s.
    source = StandInSource(lambda t: (t - START) / 15.0)
    rates = fetch_minute_rates(source, TraceQuery("x", START, START + 180, 15.0))  # type: ignore[arg-type]
    assert rates.rates == (2.5, 6.5, 10.5)
    assert source.requests == [(START + 15, START + 180, 15.0)]


def test_a_long_period_is_asked_in_pieces_of_whole_minutes() -> None:
    source = StandInSource(lambda t: 1.0)
    query = TraceQuery("x", START, START + 60 * 10, 30.0)
    rates = fetch_minute_rates(source, query, points_per_request=7)  # type: ignore[arg-type]
    # 7 points hold 3 whole minutes at two samples a minute: 4 requests for 10 minutes.
    assert rates.requests == 4 and rates.rates == (1.0,) * 10
    assert [(s - START, e - START) for s, e, _ in source.requests] == [
        (30, 180), (210, 360), (390, 540), (570, 600),
    ]  # fmt: skip


def test_minutes_without_a_usable_sample_are_gaps_to_fill() -> None:
    source = StandInSource(lambda t: math.nan if START + 60 < t <= START + 180 else 8.0)
    rates = fetch_minute_rates(source, TraceQuery("x", START, START + 300))  # type: ignore[arg-type]
    assert rates.missing == 2 and rates.gaps() == ((1, 2),)
    assert rates.describe_gaps() == "2026-11-01T00:01:00Z (2 min)"
    ramp = MinuteRates(rates.query, (2.0, math.nan, math.nan, 8.0, math.nan), (), 1)
    assert filled(ramp, "linear") == (2.0, 4.0, 6.0, 8.0, 8.0)
    assert filled(ramp, "zero") == (2.0, 0.0, 0.0, 8.0, 0.0)


def test_answers_a_trace_cannot_be_made_of_are_refused() -> None:
    query = TraceQuery("x", START, START + 120)
    two = StandInSource(lambda t: 1.0, [{"job": "a"}, {"job": "b"}])
    with pytest.raises(TraceFetchError, match=r"returns 2 series \(\{job=\"a\"\}"):
        fetch_minute_rates(two, query)  # type: ignore[arg-type]
    with pytest.raises(TraceFetchError, match="returned no data"):
        fetch_minute_rates(StandInSource(lambda t: 1.0, []), query)  # type: ignore[arg-type]
    with pytest.raises(TraceFetchError, match="never negative"):
        fetch_minute_rates(StandInSource(lambda t: -1.0), query)  # type: ignore[arg-type]
    with pytest.raises(TraceFetchError, match="no usable sample"):
        fetch_minute_rates(StandInSource(lambda t: math.inf), query)  # type: ignore[arg-type]

    class Failing(StandInSource):
        def query_range(self, expr: str, start: float, end: float, step: float) -> object:
            return NoData("cannot reach Prometheus at http://x: connection refused")

    with pytest.raises(TraceFetchError, match=r"^request 1 of 2: cannot reach"):
        fetch_minute_rates(Failing(None), query, points_per_request=1)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("start", "end", "step", "message"),
    [
        (START + 30, START + 600, 60.0, "not on a whole minute"),
        (START, START, 60.0, "must come after the start"),
        (START, START + 600, 45.0, "does not divide a minute"),
        (START, START + 600, 120.0, "does not divide a minute"),
    ],
)
def test_a_period_that_is_not_whole_minutes_is_refused(
    start: float, end: float, step: float, message: str
) -> None:
    with pytest.raises(TraceFetchError, match=message):
        TraceQuery("x", start, end, step)


def test_the_bounds_name_the_points_and_the_span() -> None:
    week = TraceQuery("x", START, START + 7 * 86400, 15.0)
    with pytest.raises(TraceFetchError, match=r"40,320 points, more than the most allowed, 10,000"):
        check_bounds(week, max_points=10_000, max_span=35 * 86400)
    with pytest.raises(TraceFetchError, match="longer than the most allowed, 1d"):
        check_bounds(week, max_points=100_000, max_span=86400)
    check_bounds(week, max_points=40_320, max_span=7 * 86400)
