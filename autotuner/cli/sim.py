"""`autotuner sim SCENARIO`: run a scenario against the modelled system and report on it."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from autotuner.config.errors import ConfigError
from autotuner.config.loader import load_rules
from autotuner.core.rules import RuleSet
from autotuner.sim import runner
from autotuner.sim.report import Report, build_report, check, table, to_json
from autotuner.sim.runner import Policy, RunResult
from autotuner.sim.scenario import Scenario, load_scenario

POLICIES = [p.value for p in Policy]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("scenario", type=Path, help="a scenario file (see sim/scenarios/)")
    parser.add_argument("--policy", choices=POLICIES, help="override the scenario's policy")
    parser.add_argument("--vs", choices=POLICIES, help="also run this policy, side by side")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--plot", type=Path, metavar="OUT.png", help="write a plot of the run")
    parser.add_argument("--seed", type=int, help="override the scenario's seed")


class _Progress:
    """A one-line progress bar on stderr, drawn only when stderr is a terminal."""

    def __init__(self, label: str) -> None:
        self._label = label
        self._shown = -1

    def __call__(self, fraction: float) -> None:
        percent = int(fraction * 100)
        if percent == self._shown:
            return
        self._shown = percent
        filled = percent // 4
        bar = "#" * filled + "." * (25 - filled)
        end = "\n" if percent >= 100 else ""
        sys.stderr.write(f"\r{self._label} [{bar}] {percent:3d}%{end}")
        sys.stderr.flush()


def _run_one(scenario: Scenario, policy: Policy, ruleset: RuleSet | None) -> RunResult:
    progress = _Progress(f"{scenario.name} ({policy.value})") if sys.stderr.isatty() else None
    return runner.run(scenario, policy, ruleset, progress)


def run_command(args: argparse.Namespace) -> int:
    scenario = load_scenario(args.scenario)
    if args.seed is not None:
        scenario = replace(scenario, settings=replace(scenario.settings, seed=args.seed))
    policies = [Policy(args.policy or scenario.policy)]
    if args.vs:
        policies.append(Policy(args.vs))
    ruleset = load_rules(scenario.rule_paths) if scenario.rule_paths else None
    results = [_run_one(scenario, policy, ruleset) for policy in policies]
    reports: list[Report] = [build_report(scenario, result) for result in results]
    if args.json:
        sys.stdout.write(to_json(reports[0] if len(reports) == 1 else {"runs": reports}))
    else:
        sys.stdout.write(table(reports))
    if args.plot:
        from autotuner.sim.plot import plot_runs

        plot_runs(scenario, results, args.plot)
    failures = check(reports[0], scenario.expectations)
    for failure in failures:
        print(f"FAILED {failure}", file=sys.stderr)
    if scenario.expectations and not failures:
        print(f"all {len(scenario.expectations)} expectations hold", file=sys.stderr)
    return 1 if failures else 0


def run(args: argparse.Namespace) -> int:
    try:
        return run_command(args)
    except ConfigError as error:
        for problem in error.problems:
            print(problem, file=sys.stderr)
        return 2
