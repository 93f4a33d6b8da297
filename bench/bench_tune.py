"""How fast `autotuner tune` searches: trials per minute with 1 and 2 worker processes.

Runs the tests' small search (tests/tune/search.yaml: six hours of WorldCup98 traffic a trial,
1,440 ticks of 15 s) through the command itself, once with one process in memory and once with
two processes sharing a journal file, and times each from start to the printed front (the
front's validation runs included, as a user waits for them).

    python bench/bench_tune.py [--trials N]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SEARCH = ROOT / "tests/tune/search.yaml"


def timed(trials: int, jobs: int, workdir: Path) -> float:
    command = [sys.executable, "-m", "autotuner", "tune", str(SEARCH), "--trials", str(trials)]
    if jobs > 1:
        command += ["--jobs", str(jobs), "--storage", f"journal:{workdir / f'{jobs}.journal'}"]
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, text=True)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=12)
    args = parser.parse_args()
    print(__doc__.split("\n\n")[0])
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at the start")
    with tempfile.TemporaryDirectory() as directory:
        for jobs in (1, 2):
            seconds = timed(args.trials, jobs, Path(directory))
            print(
                f"{jobs} worker process{'es' if jobs > 1 else ''}: {args.trials} trials in "
                f"{seconds:.1f} s, {args.trials / seconds * 60:.1f} trials per minute"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
