"""How fast the simulator runs: simulated seconds per wall-clock second.

Runs sim/scenarios/worldcup98.yaml (the 21-day WorldCup98 trace, 15 s tick, 120,960 ticks) with
the shipped rules, and again with the `static` policy to show how the time splits between the
modelled system and the decision engine. Measured with time.perf_counter around `run` only
(rule loading and scenario parsing excluded; the cache tables are built before timing), three
runs per policy: each run is printed, then the median and the best (the run least disturbed by
other work on the machine, as timeit reports).

The simulator runs in one thread, so OpenBLAS is held to one (OPENBLAS_NUM_THREADS=1, unless
set otherwise) before numpy loads. Its only work is the matrix-vector products that build the
cache tables, before timing; its worker threads busy-wait for a while after such work, taking
the other core from whatever else the machine runs.

    python bench/bench_sim.py [SCENARIO] [--runs N]
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

from autotuner.config.loader import load_rules
from autotuner.core import engine
from autotuner.sim.cache import cache_tables
from autotuner.sim.runner import Policy, run
from autotuner.sim.scenario import load_scenario

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SCENARIO = ROOT / "sim/scenarios/worldcup98.yaml"


def build_description() -> str:
    compiled = engine.__file__ is not None and not engine.__file__.endswith(".py")
    if compiled:
        return "the decision core and the model compiled with mypyc (`make native`)"
    return "interpreted from their sources (`make native` compiles them)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", nargs="?", type=Path, default=DEFAULT_SCENARIO)
    parser.add_argument("--runs", type=int, default=3, help="runs per policy (default 3)")
    args = parser.parse_args()
    scenario = load_scenario(args.scenario)
    ruleset = load_rules(scenario.rule_paths)
    for cache in scenario.system.caches:
        cache_tables(cache.keys, cache.zipf)
    simulated = scenario.settings.duration
    ticks = int(simulated / scenario.settings.tick)
    print(f"scenario {scenario.name}: {simulated / 86400:.1f} simulated days, {ticks} ticks")
    print(f"python {platform.python_version()} on {platform.machine()}, one process")
    print(f"modules: {build_description()}; load average {os.getloadavg()[0]:.2f} at the start")
    for policy in (Policy.RULES, Policy.STATIC):
        walls = []
        for number in range(1, args.runs + 1):
            started = time.perf_counter()
            run(scenario, policy, ruleset)
            walls.append(time.perf_counter() - started)
            print(f"policy {policy.value:6s} run {number}: {figures(walls[-1], simulated, ticks)}")
        print(
            f"policy {policy.value:6s} median: {figures(statistics.median(walls), simulated, ticks)}"
        )
        print(f"policy {policy.value:6s} best:   {figures(min(walls), simulated, ticks)}")
    return 0


def figures(wall: float, simulated: float, ticks: int) -> str:
    return (
        f"{wall:7.2f} s wall, {simulated / wall:10,.0f} simulated s per wall s, "
        f"{wall / ticks * 1e6:6.0f} us per tick"
    )


if __name__ == "__main__":
    sys.exit(main())
