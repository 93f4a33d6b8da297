"""`autotuner trace fetch` against a real Prometheus holding a known series, and the replay of
the saved file with `autotuner sim --trace`.

The series is backfilled with promtool before the server starts: a counter scraped every 15 s
whose rate in minute m is `rate_in(m)` requests per second, over three hours ending an hour
ago, with no samples for three minutes in its second half. A second counter, of another job,
makes a query that forgets to aggregate return two series.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from autotuner.adapters.prometheus import PrometheusSettings, PrometheusSource
from autotuner.adapters.prometheus_trace import TraceQuery, fetch_minute_rates
from autotuner.cli.main import main
from autotuner.sim.trace_file import read_trace_csv
from tests.integration.prometheus_server import (
    FakeQueryApi,
    PrometheusServer,
    self_signed_certificate,
)

pytestmark = pytest.mark.integration

MINUTES = 180
SCRAPE_SECONDS = 15
# No samples stamped within (GAP_AFTER, GAP_AFTER + 3 minutes): minutes 100-102 have no rate.
GAP_MINUTE = 100
GAP_MINUTES = 3
# The first minute of the series, on a whole minute, four hours ago.
START = (int(time.time()) // 60 - 4 * 60) * 60
QUERY = 'sum(rate(http_requests_total{job="web"}[1m]))'


def rate_in(minute: int) -> float:
    return 10.0 + 5.0 * (minute % 7) + 0.25 * (minute % 3)


def backfill() -> str:
    lines = ["# HELP http_requests_total Requests.", "# TYPE http_requests_total counter"]
    web, batch = 1000.0, 0.0
    gap = (START + 60 * GAP_MINUTE, START + 60 * (GAP_MINUTE + GAP_MINUTES))
    for scrape in range(MINUTES * 60 // SCRAPE_SECONDS + 1):
        stamp = START + SCRAPE_SECONDS * scrape
        if not gap[0] < stamp < gap[1]:
            lines.append(f'http_requests_total{{job="web"}} {web} {stamp}')
            lines.append(f'http_requests_total{{job="batch"}} {batch} {stamp}')
        web += SCRAPE_SECONDS * rate_in(SCRAPE_SECONDS * scrape // 60)
        batch += SCRAPE_SECONDS * 1.0
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


def iso(minute: int) -> str:
    return datetime.fromtimestamp(START + 60 * minute, UTC).strftime("%Y-%m-%dT%H:%MZ")


@pytest.fixture(scope="module")
def prometheus() -> Iterator[PrometheusServer]:
    with PrometheusServer(openmetrics=backfill()) as server:
        yield server


def fetch(prometheus: PrometheusServer, output: Path, *flags: str, query: str = QUERY) -> int:
    return main(
        [
            "trace", "fetch", "--prometheus-url", prometheus.url, "--query", query,
            "-o", str(output), *flags,
        ]
    )  # fmt: skip


def test_the_saved_trace_holds_the_known_requests_per_minute_and_where_they_came_from(
    prometheus: PrometheusServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "known.csv"

    status = fetch(prometheus, output, "--start", iso(0), "--end", iso(90))

    assert status == 0, capsys.readouterr().err
    assert read_trace_csv(output) == pytest.approx([60 * rate_in(m) for m in range(90)], abs=1e-3)
    text = output.read_text()
    assert f"# query: {json.dumps(QUERY)}\n" in text
    assert f"# prometheus: {prometheus.url}\n" in text
    assert f"# period: {iso(0)[:-1]}:00Z to {iso(90)[:-1]}:00Z (90 minutes)\n" in text
    assert "# step: 1m " in text and "# gaps: none\n" in text
    first_row = datetime.fromtimestamp(START, UTC).strftime("%Y-%m-%d %H:%M:%S")
    assert f"minute_utc,requests\n{first_row},{60 * rate_in(0):g}\n" in text
    assert "in 1 request," in capsys.readouterr().out


def test_a_period_asked_in_pieces_gives_what_one_request_gives(
    prometheus: PrometheusServer,
) -> None:
    query = TraceQuery(QUERY, START, START + 90 * 60)
    with PrometheusSource(PrometheusSettings(prometheus.url, timeout_seconds=10)) as source:
        whole = fetch_minute_rates(source, query)
        pieces = fetch_minute_rates(source, query, points_per_request=7)

    assert (whole.requests, pieces.requests) == (1, math.ceil(90 / 7))
    assert pieces.rates == whole.rates
    assert whole.labels == ()


def test_missing_minutes_are_counted_and_refused_unless_filled(
    prometheus: PrometheusServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "gaps.csv"
    period = ("--start", iso(0), "--end", iso(MINUTES))

    assert fetch(prometheus, output, *period) == 2
    err = capsys.readouterr().err
    assert f"{GAP_MINUTES} of {MINUTES} minutes have no usable sample" in err
    assert f"gaps from {iso(GAP_MINUTE)[:-1]}:00Z ({GAP_MINUTES} min)" in err
    assert "--fill-gaps" in err
    assert not output.exists() and list(tmp_path.iterdir()) == []

    assert fetch(prometheus, output, *period, "--fill-gaps", "linear") == 0
    counts = read_trace_csv(output)
    before, after = 60 * rate_in(GAP_MINUTE - 1), 60 * rate_in(GAP_MINUTE + GAP_MINUTES)
    step = (after - before) / (GAP_MINUTES + 1)
    assert counts[GAP_MINUTE : GAP_MINUTE + GAP_MINUTES] == pytest.approx(
        [before + step * (k + 1) for k in range(GAP_MINUTES)], abs=1e-3
    )
    assert counts[GAP_MINUTE + GAP_MINUTES :] == pytest.approx(
        [60 * rate_in(m) for m in range(GAP_MINUTE + GAP_MINUTES, MINUTES)], abs=1e-3
    )
    assert f"# gaps: {GAP_MINUTES} minutes filled (linear)" in output.read_text()


def test_a_query_of_several_series_or_of_nothing_is_refused_and_writes_nothing(
    prometheus: PrometheusServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "refused.csv"
    period = ("--start", iso(0), "--end", iso(30))

    assert fetch(prometheus, output, *period, query="rate(http_requests_total[1m])") == 2
    err = capsys.readouterr().err
    assert "returns 2 series" in err and 'job="batch"' in err and "sum(" in err

    assert fetch(prometheus, output, *period, query="sum(rate(no_such_metric[1m]))") == 2
    assert "no data" in capsys.readouterr().err

    assert fetch(prometheus, output, *period, query=f"{QUERY} * 0 / 0") == 2
    assert "no usable sample" in capsys.readouterr().err

    assert fetch(prometheus, output, *period, query="sum(rate(http_requests_total[1m]") == 2
    assert "could not evaluate the query" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


SCENARIO = """\
name: replay
duration: 2h
tick: 15s
seed: 3
load:
  base: {constant: 100}
policy: static
"""


def test_a_replay_of_the_saved_trace_gives_the_same_report_twice(
    prometheus: PrometheusServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = tmp_path / "replayed.csv"
    assert fetch(prometheus, trace, "--start", iso(0), "--end", iso(90)) == 0
    scenario = tmp_path / "replay.yaml"
    scenario.write_text(SCENARIO)
    capsys.readouterr()

    assert main(["sim", str(scenario), "--trace", str(trace), "--json"]) == 0
    first = capsys.readouterr()
    assert main(["sim", str(scenario), "--trace", str(trace), "--json"]) == 0
    second = capsys.readouterr()

    assert second.out == first.out
    report = json.loads(first.out)
    # As recorded: the busiest minute's requests / 60, for the 90 minutes the trace covers.
    assert report["load"]["peak_rps"] == pytest.approx(max(rate_in(m) for m in range(90)))
    assert report["duration_hours"] == 1.5
    assert "the run lasts 1h30m" in first.err


def test_the_fetch_uses_the_daemons_tls_token_and_headers_and_records_no_secret(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    certificate, key = self_signed_certificate(tmp_path)
    samples = [[START + 60 * (m + 1), str(rate_in(m))] for m in range(3)]
    matrix = {"status": "success", "data": {"resultType": "matrix",
              "result": [{"metric": {}, "values": samples}]}}  # fmt: skip
    monkeypatch.setenv("AUTOTUNER_PROMETHEUS_TOKEN", "s3cret-token")
    output = tmp_path / "tenant.csv"
    with FakeQueryApi(answers={QUERY: matrix}, tls=(certificate, key)) as api:
        status = main(
            [
                "trace", "fetch", "--prometheus-url", api.url, "--query", QUERY,
                "--start", iso(0), "--end", iso(3), "-o", str(output),
                "--prometheus-ca-bundle", str(certificate),
                "--prometheus-extra-headers", "X-Scope-OrgID=crm",
            ]
        )  # fmt: skip

    assert status == 0, capsys.readouterr().err
    (request,) = api.received
    assert request.headers["Authorization"] == "Bearer s3cret-token"
    assert request.headers["X-Scope-OrgID"] == "crm"
    assert read_trace_csv(output) == pytest.approx([60 * rate_in(m) for m in range(3)])
    text = output.read_text()
    assert "# headers: X-Scope-OrgID (values not recorded)\n" in text
    assert "s3cret" not in text and "crm" not in text.split("minute_utc")[0]
