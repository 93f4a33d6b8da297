"""Running a search: each trial replays the traffic through the simulator with candidate rules.

Optuna (optuna/optuna) proposes the values: its TPE sampler, multivariate and seeded, handles
several objectives at once and keeps the Pareto front (`Study.best_trials`). The first trial is
always the rules as they are, so the front is judged against today. A study lives in Optuna's
storage: in memory for one process, a journal file for several processes on one machine, or a
database (`--storage postgresql+psycopg://...`) shared by workers on many machines; a search
that was interrupted resumes from its storage, counting the trials already done.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import socket
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.storages.journal import JournalFileBackend

from autotuner.config.errors import ConfigError, Problem
from autotuner.config.loader import load_rules, rule_files
from autotuner.core.rules import RuleSet
from autotuner.sim.replay import day_slice, replay_trace
from autotuner.sim.report import Report, build_report, lookup
from autotuner.sim.runner import Policy, run
from autotuner.sim.scenario import Scenario, load_scenario
from autotuner.sim.trace_file import read_trace_csv
from autotuner.tune.space import Parameter, TuneFile, load_tune_file

# A candidate the rule language refuses, or whose run fails, scores this on every objective.
REFUSED = math.inf


@dataclass(frozen=True, slots=True)
class TrafficChoice:
    """Where a search's traffic comes from: a trace file, or days of the scenario's trace."""

    trace: Path | None = None
    days: tuple[float, float] | None = None
    peak_rps: float | None = None
    scale: float = 1.0


@dataclass(frozen=True, slots=True)
class Search:
    """Everything a process needs to run trials: picklable, so workers can be spawned."""

    tune_path: Path
    tuning: TrafficChoice
    validation: TrafficChoice | None
    seed: int
    study: str
    storage: str | None


def scenario_for(tune: TuneFile, choice: TrafficChoice) -> Scenario:
    base = load_scenario(tune.scenario)
    if choice.trace is not None:
        label = str(choice.trace)
        return replay_trace(
            base, read_trace_csv(choice.trace), label, choice.peak_rps, choice.scale
        ).scenario
    if choice.days is not None:
        first, end = choice.days
        return day_slice(base, first, end - first)
    return base


def _other_rule_files(tune: TuneFile, scenario: Scenario) -> list[Path]:
    """The scenario's rule files that the search does not tune: they run unchanged."""
    tuned = {path.resolve() for path in tune.rule_files}
    return [p for p in rule_files(scenario.rule_paths) if p.resolve() not in tuned]


def candidate_rules(tune: TuneFile, values: dict[str, Any], scenario: Scenario) -> RuleSet:
    """The rules with `values` written in; ConfigError when the rule language refuses them."""
    with tempfile.TemporaryDirectory(prefix="autotuner-tune-") as directory:
        written = tune.write(values, Path(directory))
        return load_rules([*written, *_other_rule_files(tune, scenario)])


def figures(tune: TuneFile, report: Report) -> tuple[float, ...]:
    values = []
    for objective in tune.objectives:
        total = 0.0
        for term in objective.terms:
            value = lookup(report, term)
            if value is None:
                raise ConfigError(
                    [
                        Problem(
                            tune.file,
                            1,
                            1,
                            "objectives",
                            f"{term!r} is not a number in the report (see `autotuner sim --json`)",
                        )
                    ]
                )
            total += value
        values.append(total)
    return tuple(values)


def measure(tune: TuneFile, values: dict[str, Any], scenario: Scenario) -> tuple[float, ...]:
    """The objectives for the rules with `values`, on `scenario`'s traffic."""
    try:
        ruleset = candidate_rules(tune, values, scenario)
    except ConfigError:
        return tuple(REFUSED for _ in tune.objectives)
    return figures(tune, build_report(scenario, run(scenario, Policy.RULES, ruleset)))


def hpa_figures(tune: TuneFile, scenario: Scenario) -> tuple[float, ...]:
    """The HPA baseline with the current rules' floors and ceilings, on `scenario`."""
    ruleset = candidate_rules(tune, tune.current(), scenario)
    return figures(tune, build_report(scenario, run(scenario, Policy.HPA, ruleset)))


def _suggest(trial: optuna.Trial, parameter: Parameter) -> Any:
    if parameter.choices is not None:
        return trial.suggest_categorical(parameter.name, list(parameter.choices))
    assert parameter.low is not None and parameter.high is not None
    if parameter.integer:
        step = int(parameter.step) if parameter.step else 1
        return trial.suggest_int(
            parameter.name, int(parameter.low), int(parameter.high), step=step, log=parameter.log
        )
    return trial.suggest_float(
        parameter.name, parameter.low, parameter.high, step=parameter.step, log=parameter.log
    )


def _storage(search: Search) -> optuna.storages.BaseStorage | str | None:
    """None for a study in this process's memory."""
    if search.storage is None:
        return None
    if search.storage.startswith("journal:"):
        path = search.storage.removeprefix("journal:")
        return optuna.storages.JournalStorage(JournalFileBackend(path))
    return search.storage


def open_study(search: Search, tune: TuneFile) -> optuna.Study:
    """Create the study, or load it to resume; the first trial is today's rules."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=search.study,
        storage=_storage(search),
        directions=["minimize"] * len(tune.objectives),
        sampler=optuna.samplers.TPESampler(seed=search.seed, multivariate=True),
        load_if_exists=True,
    )
    if not study.trials:
        study.enqueue_trial(tune.current(), user_attrs={"current": True})
    return study


def done(study: optuna.Study) -> int:
    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL)
    return len(study.get_trials(deepcopy=False, states=finished))


def optimize(
    search: Search,
    total: int,
    progress: Callable[[optuna.Study, optuna.trial.FrozenTrial], None] | None = None,
) -> optuna.Study:
    """Run trials in this process until the study holds `total` finished ones."""
    tune = load_tune_file(search.tune_path)
    scenario = scenario_for(tune, search.tuning)
    study = open_study(search, tune)

    def objective(trial: optuna.Trial) -> tuple[float, ...]:
        # Which process ran it: workers on many machines share one study.
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        values = {p.name: _suggest(trial, p) for p in tune.parameters}
        return measure(tune, values, scenario)

    remaining = total - done(study)
    if remaining > 0:
        callbacks: list[Callable[[optuna.Study, optuna.trial.FrozenTrial], None]] = [
            optuna.study.MaxTrialsCallback(total)
        ]
        if progress is not None:
            callbacks.append(progress)
        study.optimize(objective, n_trials=remaining, callbacks=callbacks)
    return study


def _worker(search: Search, total: int) -> None:
    optimize(search, total)


def optimize_in_processes(
    search: Search, total: int, processes: int, poll: Callable[[int], None] | None = None
) -> None:
    """`processes` workers sharing the search's storage until it holds `total` trials."""
    if search.storage is None:
        raise ValueError("several processes share a study through a storage")
    tune = load_tune_file(search.tune_path)
    open_study(search, tune)
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=_worker, args=(_with_seed(search, index), total))
        for index in range(processes)
    ]
    for worker in workers:
        worker.start()
    while any(worker.is_alive() for worker in workers):
        time.sleep(1.0)
        if poll is not None:
            poll(done(load(search)))
    failed = [w.exitcode for w in workers if w.exitcode]
    if failed:
        raise RuntimeError(f"{len(failed)} of {processes} tune workers failed (exit {failed})")


def _with_seed(search: Search, index: int) -> Search:
    # Each worker samples with its own seed; otherwise all would propose the same points.
    return Search(
        search.tune_path,
        search.tuning,
        search.validation,
        search.seed + index,
        search.study,
        search.storage,
    )


def load(search: Search) -> optuna.Study:
    """The study as its shared storage holds it now."""
    storage = _storage(search)
    if storage is None:
        raise ValueError("a study in another process's memory cannot be loaded")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.load_study(study_name=search.study, storage=storage)


def front(study: optuna.Study) -> Sequence[optuna.trial.FrozenTrial]:
    """The Pareto front, without refused candidates, in trial order."""
    trials = [
        t for t in study.best_trials if t.values is not None and all(map(math.isfinite, t.values))
    ]
    return sorted(trials, key=lambda t: t.number)
