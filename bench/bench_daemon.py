"""The daemon's cycle with 1,000 rules against a real Prometheus holding their series.

Run: .venv/bin/python bench/bench_daemon.py [--rules 1000] [--cycles 5]

Setup: an exporter serves one gauge series per rule (`bench_latency_seconds{service="sNNNN"}`,
values spread over [0, 1)); Debian's prometheus scrapes it every second; a real redis-server
holds one config key per rule (`bench:ttl:sNNNN`). Each rule queries its own series and raises
its own key when the value is above 0.9, so about a tenth of the rules fire, change their key
once, then sit in a one-hour cooldown.

Measured:
- the daemon (`autotuner run` as a child process, interval 10 s) cycle wall time, from its own
  `autotuner_cycle_duration_seconds` histogram: the first cycle (which writes ~100 intents and
  outcomes) and the median of the next `--cycles` (the steady state: fetch, engine, state save);
- the same 1,000 instant queries issued directly with `requests`, on the same number of
  concurrent connections as the daemon's Prometheus source (4), median of 5 rounds after a
  warm-up, timed with time.perf_counter;
- the daemon's resident memory (VmRSS) and peak (VmHWM) from /proc after those cycles.

Goals (issue 5): a steady cycle within 1.2x the direct query time, and under 150 MB resident.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# The server helpers live in the test tree, which is not an installed package.
sys.path.insert(0, str(REPO))

import requests  # noqa: E402
from prometheus_client import CollectorRegistry, start_http_server  # noqa: E402
from prometheus_client.core import GaugeMetricFamily, Metric  # noqa: E402

from tests.integration.prometheus_server import PrometheusServer  # noqa: E402
from tests.integration.redis_server import RedisServer, free_port  # noqa: E402

CONCURRENCY = 4  # the Prometheus source's default max_concurrency
INTERVAL_SECONDS = 10
GOAL_RATIO = 1.2
GOAL_RSS_MB = 150


class Series:
    """One gauge per rule, with fixed values spread over [0, 1)."""

    def __init__(self, count: int) -> None:
        self.names = [f"s{i:04d}" for i in range(count)]

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily("bench_latency_seconds", "p95", labels=["service"])
        for index, name in enumerate(self.names):
            family.add_metric([name], (index * 0.6180339887) % 1.0)
        return [family]


def rule_file(names: list[str]) -> str:
    lines = ["metrics:"]
    lines += [f'  m_{n}: bench_latency_seconds{{service="{n}"}}' for n in names]
    lines.append("rules:")
    for n in names:
        lines += [
            f"  - name: raise-{n}",
            f"    metric: m_{n}",
            "    above: 0.9",
            "    cooldown: 1h",
            "    action:",
            "      set_key:",
            f'        key: "bench:ttl:{n}"',
            "        factor: 1.5",
            "        min: 10",
            "        max: 1000000",
        ]
    return "\n".join(lines) + "\n"


def metrics_text(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        return str(reply.read().decode())


def sample(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def memory_mb(pid: int) -> tuple[float, float]:
    status = Path(f"/proc/{pid}/status").read_text()
    rss = int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1))  # type: ignore[union-attr]
    peak = int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1))  # type: ignore[union-attr]
    return rss / 1024, peak / 1024


def cycle_durations(port: int, wanted: int, timeout: float) -> list[float]:
    """Each cycle's duration, from the histogram's sum and count as they grow."""
    durations: list[float] = []
    text = metrics_text(port)
    last_count = sample(text, "autotuner_cycle_duration_seconds_count")
    last_sum = sample(text, "autotuner_cycle_duration_seconds_sum")
    deadline = time.monotonic() + timeout
    while len(durations) < wanted and time.monotonic() < deadline:
        time.sleep(0.2)
        text = metrics_text(port)
        count = sample(text, "autotuner_cycle_duration_seconds_count")
        total = sample(text, "autotuner_cycle_duration_seconds_sum")
        if count == last_count + 1:
            durations.append(total - last_sum)
        elif count > last_count + 1:
            durations.extend([(total - last_sum) / (count - last_count)] * int(count - last_count))
        last_count, last_sum = count, total
    return durations


def direct_queries(url: str, exprs: list[str], rounds: int) -> list[float]:
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_maxsize=CONCURRENCY)
    session.mount("http://", adapter)

    def ask(expr: str) -> None:
        reply = session.get(f"{url}/api/v1/query", params={"query": expr}, timeout=10)
        reply.raise_for_status()
        reply.json()

    timings = []
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        list(pool.map(ask, exprs))  # warm-up
        for _ in range(rounds):
            started = time.perf_counter()
            list(pool.map(ask, exprs))
            timings.append(time.perf_counter() - started)
    return timings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", type=int, default=1000)
    parser.add_argument("--cycles", type=int, default=5)
    args = parser.parse_args()

    series = Series(args.rules)
    registry = CollectorRegistry()
    registry.register(series)
    exporter_port = free_port()
    exporter, _ = start_http_server(exporter_port, addr="127.0.0.1", registry=registry)
    workdir = Path(tempfile.mkdtemp(prefix="autotuner-bench-daemon-"))
    rules = workdir / "rules"
    rules.mkdir()
    (rules / "bench.yaml").write_text(rule_file(series.names))
    exprs = [f'bench_latency_seconds{{service="{n}"}}' for n in series.names]
    print(f"{args.rules} rules, one series and one Redis key each; {os.cpu_count()} CPUs")
    try:
        with RedisServer() as redis_server, PrometheusServer(
            [f"127.0.0.1:{exporter_port}"]
        ) as prometheus:
            client = redis_server.client()
            client.mset({f"bench:ttl:{n}": 100 for n in series.names})
            http_port = free_port()
            env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOTUNER_")}
            env["KUBECONFIG"] = str(workdir / "no-kubeconfig")
            daemon = subprocess.Popen(
                [
                    sys.executable, "-m", "autotuner", "run",
                    "--prometheus-url", prometheus.url,
                    "--redis-url", redis_server.url,
                    "--rules", str(rules),
                    "--database-url", f"sqlite:///{workdir / 'audit.sqlite'}",
                    "--interval-seconds", str(INTERVAL_SECONDS),
                    "--allow-key-prefixes", "bench:",
                    "--http-host", "127.0.0.1",
                    "--http-port", str(http_port),
                    "--log-level", "WARNING",
                ],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=(workdir / "daemon.log").open("w"),
            )  # fmt: skip
            try:
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    try:
                        metrics_text(http_port)
                        break
                    except OSError:
                        time.sleep(0.2)
                wanted = args.cycles + 1
                durations = cycle_durations(
                    http_port, wanted, timeout=(wanted + 2) * INTERVAL_SECONDS + 60
                )
                if len(durations) < wanted:
                    print(f"the daemon ran only {len(durations)} cycles; see {workdir}/daemon.log")
                    return 1
                rss, peak = memory_mb(daemon.pid)
                changed = sum(1 for n in series.names if float(client.get(f"bench:ttl:{n}")) != 100)
            finally:
                daemon.terminate()
                daemon.wait(30)
            direct = direct_queries(prometheus.url, exprs, rounds=5)
    finally:
        exporter.shutdown()

    first, steady = durations[0], statistics.median(durations[1:])
    direct_median = statistics.median(direct)
    ratio = steady / direct_median
    print(f"  keys changed by the daemon             {changed} (rules firing, then in cooldown)")
    print(f"  first cycle (writes the intents)       {first * 1000:8.1f} ms")
    print(
        f"  steady cycle, median of {len(durations) - 1}            {steady * 1000:8.1f} ms"
        f"   ({', '.join(f'{d * 1000:.0f}' for d in durations[1:])})"
    )
    print(
        f"  same queries direct, {CONCURRENCY} connections   {direct_median * 1000:8.1f} ms"
        f"   ({', '.join(f'{d * 1000:.0f}' for d in direct)})"
    )
    print(f"  steady cycle / direct queries          {ratio:8.2f}x   (goal <= {GOAL_RATIO}x)")
    print(f"  daemon resident memory                 {rss:8.1f} MB   (peak {peak:.1f} MB,"
          f" goal < {GOAL_RSS_MB} MB)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
