"""`autotuner tune SEARCH.yaml`: search rule parameters on recorded traffic, print the front."""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from pathlib import Path

import optuna

from autotuner.cli.input_errors import reporting_input_errors
from autotuner.tune import front
from autotuner.tune.space import TuneFile, load_tune_file
from autotuner.tune.study import (
    Search,
    TrafficChoice,
    done,
    load,
    optimize,
    optimize_in_processes,
    scenario_for,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "search", type=Path, help="a search-space file (see rules/tuning/), naming the rules"
    )
    parser.add_argument("--trace", type=Path, help="tune on this per-minute trace file")
    parser.add_argument(
        "--validate", type=Path, help="check the front on this trace file, never tuned on"
    )
    scaling = parser.add_mutually_exclusive_group()
    scaling.add_argument("--peak-rps", type=float, help="scale the traces to this busiest minute")
    scaling.add_argument("--scale", type=float, help="multiply the traces' recorded rates")
    parser.add_argument("--trials", type=int, help="trials in all (default: the file's trials)")
    parser.add_argument("--seed", type=int, default=1, help="the sampler's seed (default 1)")
    parser.add_argument(
        "--jobs", type=int, default=1, help="worker processes on this machine (default 1)"
    )
    parser.add_argument(
        "--storage",
        help="an Optuna storage shared by workers and kept for resuming: a database URL "
        "(postgresql+psycopg://user@host/db) or journal:FILE",
    )
    parser.add_argument("--study", help="the study's name in the storage (default: the file's)")
    parser.add_argument(
        "--worker",
        action="store_true",
        help="only run trials for the study in --storage until it has --trials, then stop",
    )
    parser.add_argument("--out", type=Path, help="write the chosen point's rule files here")
    parser.add_argument("--plot", type=Path, metavar="FRONT.png", help="draw the front")
    parser.add_argument("--json", action="store_true", help="print the outcome as JSON")


def _choices(
    tune: TuneFile, args: argparse.Namespace
) -> tuple[TrafficChoice, TrafficChoice | None]:
    scale = args.scale if args.scale is not None else 1.0
    tuning = TrafficChoice(args.trace, None if args.trace else tune.tune_days, args.peak_rps, scale)
    validation: TrafficChoice | None = None
    if args.validate is not None:
        validation = TrafficChoice(args.validate, None, args.peak_rps, scale)
    elif tune.validate_days is not None and args.trace is None:
        validation = TrafficChoice(None, tune.validate_days, None, 1.0)
    return tuning, validation


class _Progress:
    """One line per finished trial on stderr: done, the front's size, time left."""

    def __init__(self, total: int) -> None:
        self._total = total
        self._started = time.monotonic()
        self._shown = -1

    def show(self, finished: int, study: optuna.Study | None = None) -> None:
        if finished == self._shown:
            return
        self._shown = finished
        elapsed = time.monotonic() - self._started
        left = elapsed / finished * max(0, self._total - finished) if finished else 0.0
        best = ""
        if study is not None and study.best_trials:
            lowest = min(t.values[0] for t in study.best_trials if t.values)
            best = f", best first objective {lowest:.4g}"
        sys.stderr.write(
            f"tune: {finished}/{self._total} trials{best}, {elapsed:.0f}s elapsed, "
            f"about {left:.0f}s left\n"
        )
        sys.stderr.flush()

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        self.show(done(study), study)


def run_command(args: argparse.Namespace) -> int:
    tune = load_tune_file(args.search)
    total = args.trials or tune.trials
    if args.jobs < 1 or total < 1:
        print("autotuner tune: --jobs and --trials must be at least 1", file=sys.stderr)
        return 2
    if args.worker and args.storage is None:
        print("autotuner tune: --worker needs the shared --storage", file=sys.stderr)
        return 2
    tuning, validation = _choices(tune, args)
    storage = args.storage
    if args.jobs > 1 and storage is None:
        # Processes on one machine share a journal file; it also lets the search resume.
        storage = f"journal:{Path(args.search).with_suffix('.journal')}"
    study_name = args.study or Path(args.search).stem
    if storage is None:
        study_name = f"{study_name}-{uuid.uuid4().hex[:8]}"
    search = Search(Path(args.search), tuning, validation, args.seed, study_name, storage)
    progress = _Progress(total)
    if args.worker:
        optimize(search, total, progress)
        return 0
    if args.jobs > 1:
        optimize_in_processes(search, total, args.jobs, progress.show)
        study = load(search)
    else:
        study = optimize(search, total, progress)
    tuning_scenario = scenario_for(tune, tuning)
    validation_scenario = None if validation is None else scenario_for(tune, validation)
    result = front.outcome(study, tune, tuning_scenario, validation_scenario)
    if args.json:
        sys.stdout.write(json.dumps(result.to_dict(), indent=2, sort_keys=True) + "\n")
    else:
        sys.stdout.write(front.table(result))
    if args.out is not None:
        diff = front.write_chosen(tune, result, args.out)
        print(f"autotuner tune: the chosen point's rules are in {args.out}", file=sys.stderr)
        if not args.json:
            sys.stdout.write(diff or "(the chosen point is the rules as they are)\n")
    if args.plot is not None:
        front.plot(result, study, args.plot)
        print(f"autotuner tune: the front is drawn in {args.plot}", file=sys.stderr)
    return 0


def run(args: argparse.Namespace) -> int:
    return reporting_input_errors("tune", run_command, args)
