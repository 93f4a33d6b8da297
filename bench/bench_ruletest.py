"""How long the tests of all shipped rules take: the goal is well under a second.

Run: .venv/bin/python bench/bench_ruletest.py [--repeat N]

Measures, with time.perf_counter:
- in process: loading every rules/tests/*.yaml (YAML, validation, the rule files it names) and
  running every test group through `tick`, repeated N times after one warm-up run; the median
  and the slowest run are reported, with the number of groups and engine evaluations;
- end to end: `python -m autotuner test rules/tests/*.yaml` as a fresh process, interpreter
  start-up and imports included (what CI and an SRE actually wait for), median of N runs.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

from autotuner.ruletest.runner import run_file
from autotuner.ruletest.testfile import load_test_file

REPO = Path(__file__).resolve().parents[1]
GOAL_SECONDS = 1.0


def run_all(files: list[Path]) -> tuple[int, int, bool]:
    groups = evaluations = 0
    passed = True
    for path in files:
        result = run_file(load_test_file(path))
        groups += len(result.groups)
        evaluations += sum(g.evaluations for g in result.groups)
        passed = passed and result.passed
    return groups, evaluations, passed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20, help="timed runs (default 20)")
    args = parser.parse_args()
    files = sorted((REPO / "rules" / "tests").glob("*.yaml"))
    if not files:
        print("no rule tests found under rules/tests/", file=sys.stderr)
        return 1

    groups, evaluations, passed = run_all(files)  # warm-up: imports, caches
    timings = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        run_all(files)
        timings.append(time.perf_counter() - start)
    median = statistics.median(timings)

    command = [sys.executable, "-m", "autotuner", "test", *map(str, files)]
    process_timings = []
    for _ in range(max(3, args.repeat // 4)):
        start = time.perf_counter()
        completed = subprocess.run(command, cwd=REPO, capture_output=True, check=False)
        process_timings.append(time.perf_counter() - start)
        passed = passed and completed.returncode == 0
    process_median = statistics.median(process_timings)

    print(f"rule tests: {len(files)} files, {groups} test groups, {evaluations} evaluations")
    print(f"all passed: {passed}")
    print(
        f"in process (load + run, {args.repeat} runs after a warm-up): "
        f"median {median * 1000:.1f} ms, slowest {max(timings) * 1000:.1f} ms, "
        f"{median / evaluations * 1e6:.0f} us per evaluation"
    )
    print(
        f"end to end (`python -m autotuner test`, {len(process_timings)} fresh processes): "
        f"median {process_median * 1000:.0f} ms"
    )
    within = process_median < GOAL_SECONDS
    print(f"goal: under {GOAL_SECONDS:g} s end to end: {'met' if within else 'NOT met'}")
    return 0 if passed and within else 1


if __name__ == "__main__":
    sys.exit(main())
