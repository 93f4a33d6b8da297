"""How long the Prometheus source takes to answer a tick: the goal is a small part of the interval.

Run: .venv/bin/python bench/bench_prometheus.py [--repeat N]

Starts Debian's prometheus (the test fixture's) scraping the test exporter of the CRM app's
metrics every second, waits until it has a few scrapes, then measures with time.perf_counter,
N times after one warm-up fetch, reporting the median, 95th percentile and slowest:
- the shipped rules' queries (rules/*.yaml) in one fetch, with 1 and with 4 workers;
- forty queries (the shipped expressions repeated under other names) with 1, 4 and 10 workers,
  which shows what the bounded pool buys on this machine (2 cores, Prometheus on the same host);
- parsing: one fetch whose answer has 10,000 series, from a fake query API (no PromQL work);
- the timeout bound: one query that the fake API answers after 5 s, with a 0.5 s timeout.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# The fixture helpers live in the test tree, which is not an installed package.
sys.path.insert(0, str(REPO))

from autotuner.adapters.prometheus import PrometheusSettings, PrometheusSource  # noqa: E402
from autotuner.config.loader import load_rules  # noqa: E402
from autotuner.core.model import MetricQuery, NoData  # noqa: E402
from tests.integration.prometheus_server import (  # noqa: E402
    Exporter,
    FakeQueryApi,
    PrometheusServer,
)

GOAL_SECONDS = 0.25


def measure(action: Callable[[], object], repeat: int) -> list[float]:
    action()  # warm-up: connections, Prometheus's caches
    timings = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        timings.append(time.perf_counter() - started)
    return timings


def report(label: str, timings: Sequence[float]) -> float:
    ordered = sorted(timings)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    median = statistics.median(ordered)
    print(
        f"  {label:<44} median {median * 1000:7.1f} ms   p95 {p95 * 1000:7.1f} ms"
        f"   max {ordered[-1] * 1000:7.1f} ms   (n={len(ordered)})"
    )
    return median


def fetch_all(
    source: PrometheusSource, queries: Sequence[MetricQuery], at: float | None = None
) -> Callable[[], None]:
    def action() -> None:
        answers = source.fetch(queries, time.time() if at is None else at)
        failed = {name: a.reason for name, a in answers.items() if isinstance(a, NoData)}
        if failed:
            raise SystemExit(f"a query failed, the figures would mean nothing: {failed}")

    return action


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=50, help="timed fetches (default 50)")
    args = parser.parse_args()
    shipped = list(load_rules([REPO / "rules"]).queries)
    many = [
        MetricQuery(f"{query.name}_{copy}", query.expr) for copy in range(8) for query in shipped
    ]

    exporter = Exporter()
    exporter.start()
    try:
        with PrometheusServer([exporter.target]) as server:
            print(f"Prometheus {server.url}, scraping the test exporter every second")
            medians = []
            for label, queries, workers in [
                (f"shipped rules ({len(shipped)} queries), 1 worker", shipped, 1),
                (f"shipped rules ({len(shipped)} queries), 4 workers", shipped, 4),
                (f"{len(many)} queries, 1 worker", many, 1),
                (f"{len(many)} queries, 4 workers", many, 4),
                (f"{len(many)} queries, 10 workers", many, 10),
            ]:
                settings = PrometheusSettings(server.url, max_concurrency=workers)
                with PrometheusSource(settings) as source:
                    timings = measure(fetch_all(source, queries), args.repeat)
                    medians.append(report(label, timings))
    finally:
        exporter.stop()

    series = 10_000
    big_vector = {
        "status": "success",
        "data": {
            "resultType": "vector",
            "result": [
                {"metric": {"pod": f"pod-{i}", "namespace": "crm"}, "value": [1e9, str(i)]}
                for i in range(series)
            ],
        },
    }
    with FakeQueryApi(answers={"big": big_vector}, slow=frozenset({"slow"})) as api:
        with PrometheusSource(PrometheusSettings(api.url)) as source:
            big = [MetricQuery("big", "big")]
            report(
                f"one answer of {series} series (fake API)",
                measure(fetch_all(source, big, 1e9), 10),
            )
        with PrometheusSource(PrometheusSettings(api.url, timeout_seconds=0.5)) as source:
            slow = [MetricQuery("slow", "slow")]
            report("a 5 s answer with a 0.5 s timeout", measure(lambda: source.fetch(slow, 0), 3))

    verdict = "meets" if medians[1] < GOAL_SECONDS else "MISSES"
    print(
        f"shipped rules with the default 4 workers: median {medians[1] * 1000:.1f} ms, "
        f"{verdict} the goal of {GOAL_SECONDS * 1000:.0f} ms"
    )
    return 0 if medians[1] < GOAL_SECONDS else 1


if __name__ == "__main__":
    raise SystemExit(main())
