"""`autotuner sim SCENARIO`: run a scenario against the modelled system and report on it."""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import replace
from pathlib import Path
from typing import TextIO

from tqdm import tqdm

from autotuner.cli.input_errors import reporting_input_errors
from autotuner.config.durations import format_duration
from autotuner.config.loader import load_rules
from autotuner.core.rules import RuleSet
from autotuner.sim import runner
from autotuner.sim.replay import replay_trace
from autotuner.sim.report import (
    Report,
    against_oracle,
    build_report,
    check,
    lookup,
    table,
    to_json,
)
from autotuner.sim.runner import Policy, RunResult
from autotuner.sim.scenario import Scenario, load_scenario
from autotuner.sim.trace_file import TraceError, read_trace_csv

POLICIES = [p.value for p in Policy]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("scenario", type=Path, help="a scenario file (see sim/scenarios/)")
    parser.add_argument("--policy", choices=POLICIES, help="override the scenario's policy")
    parser.add_argument(
        "--vs",
        type=_policy_list,
        action="extend",
        default=[],
        metavar="POLICY[,POLICY]",
        help=f"also run these policies ({', '.join(POLICIES)}), side by side; repeat or list "
        "with commas. With oracle, every other run shows how far it is from that lower bound "
        "(vs_oracle)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--plot", type=Path, metavar="OUT.png", help="write a plot of the run")
    parser.add_argument("--seed", type=int, help="override the scenario's seed")
    parser.add_argument(
        "--trace",
        type=Path,
        metavar="FILE.csv",
        help="replay this per-minute trace instead of the scenario's load base (see "
        "`autotuner trace fetch`); by default as recorded, requests per minute / 60",
    )
    scaling = parser.add_mutually_exclusive_group()
    scaling.add_argument(
        "--peak-rps", type=float, help="with --trace: scale it so its busiest minute is this rps"
    )
    scaling.add_argument(
        "--scale", type=float, help="with --trace: multiply its recorded rate by this (1 = as is)"
    )


def _policy_list(text: str) -> list[str]:
    """`--vs hpa,oracle`: policy names separated by commas, each one of POLICIES."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in POLICIES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"{text!r}: name one or more of {', '.join(POLICIES)}, separated by commas"
        )
    return names


class _Progress:
    """A one-line progress bar (tqdm): the share done, the simulated time reached, the wall
    time elapsed and the ETA. Drawn only when stderr is a terminal (see _run_one)."""

    def __init__(self, label: str, duration: float, stream: TextIO | None = None) -> None:
        self._label = label
        self._duration = duration
        self._total = format_duration(duration)
        self._bar = tqdm(
            total=100,
            desc=self._description(0.0),
            file=stream or sys.stderr,
            leave=True,
            bar_format="{desc} {percentage:3.0f}%|{bar:20}| elapsed {elapsed}, ETA {remaining}",
        )

    def _description(self, fraction: float) -> str:
        # Whole minutes, padded: seconds would only flicker, and the bar must not move.
        simulated = format_duration(round(fraction * self._duration / 60) * 60)
        return f"{self._label}: simulated {simulated:>10} of {self._total}"

    def __call__(self, fraction: float) -> None:
        self._bar.set_description_str(self._description(fraction), refresh=False)
        self._bar.update(fraction * 100 - self._bar.n)
        if fraction >= 1.0:
            self._bar.close()


def _run_one(scenario: Scenario, policy: Policy, ruleset: RuleSet | None) -> RunResult:
    progress = (
        _Progress(f"{scenario.name} ({policy.value})", scenario.settings.duration)
        if sys.stderr.isatty()
        else None
    )
    return runner.run(scenario, policy, ruleset, progress)


def run_command(args: argparse.Namespace) -> int:
    if args.plot:
        from autotuner.sim.plot import plot_target_problem

        problem = plot_target_problem(args.plot)
        if problem is not None:
            print(f"autotuner sim: --plot {problem}", file=sys.stderr)
            return 2
    scenario = load_scenario(args.scenario)
    if args.trace is not None:
        scenario = _with_trace(scenario, args)
    elif args.peak_rps is not None or args.scale is not None:
        print("autotuner sim: --peak-rps and --scale apply to a --trace only", file=sys.stderr)
        return 2
    if args.seed is not None:
        scenario = replace(scenario, settings=replace(scenario.settings, seed=args.seed))
    policies = [Policy(args.policy or scenario.policy)]
    for name in args.vs:
        if Policy(name) not in policies:
            policies.append(Policy(name))
    ruleset = load_rules(scenario.rule_paths) if scenario.rule_paths else None
    results = [_run_one(scenario, policy, ruleset) for policy in policies]
    reports: list[Report] = [build_report(scenario, result) for result in results]
    oracle = next((r for r in reports if r["policy"] == Policy.ORACLE.value), None)
    if oracle is not None:
        for report in reports:
            if report is not oracle:
                report["vs_oracle"] = against_oracle(report, oracle)
    if args.json:
        sys.stdout.write(to_json(reports[0] if len(reports) == 1 else _several(reports)))
    else:
        sys.stdout.write(table(reports))
    if args.plot:
        from autotuner.sim.plot import plot_runs

        plot_runs(scenario, results, args.plot)
        print(f"autotuner sim: wrote the plot to {args.plot.resolve()}", file=sys.stderr)
    return _check_expectations(scenario, reports, overridden=args.policy is not None)


def _check_expectations(scenario: Scenario, reports: list[Report], overridden: bool) -> int:
    """The scenario's expectations hold for its own policy (or --policy's): the first run. The
    --vs runs are there to compare, so they are not held to them; say so, and list each one."""
    if not scenario.expectations:
        return 0
    policy = reports[0]["policy"]
    whose = "given with --policy" if overridden else "the scenario's own policy"
    others = [str(r["policy"]) for r in reports[1:]]
    unchecked = f"; not checked against {', '.join(others)} (--vs)" if others else ""
    print(f"expectations checked against policy {policy} ({whose}){unchecked}:", file=sys.stderr)
    failures = check(reports[0], scenario.expectations)
    for expectation in scenario.expectations:
        actual = lookup(reports[0], expectation.path)
        if actual is not None and expectation.holds(actual):
            print(f"  holds: {expectation.text} (actual {actual:g})", file=sys.stderr)
    for failure in failures:
        print(f"FAILED {failure}", file=sys.stderr)
    if not failures:
        print(f"all {len(scenario.expectations)} expectations hold", file=sys.stderr)
    return 1 if failures else 0


def _with_trace(scenario: Scenario, args: argparse.Namespace) -> Scenario:
    for flag, value in (("--peak-rps", args.peak_rps), ("--scale", args.scale)):
        if value is not None and not (math.isfinite(value) and value > 0):
            raise TraceError(f"{flag} must be a number above 0, got {value:g}")
    replay = replay_trace(
        scenario,
        read_trace_csv(args.trace),
        str(args.trace),
        peak_rps=args.peak_rps,
        scale=args.scale if args.scale is not None else 1.0,
    )
    if replay.shortened:
        print(f"autotuner sim: {replay.shortened}", file=sys.stderr)
    return replay.scenario


def _several(reports: list[Report]) -> Report:
    """Several runs of one scenario: the policies in the order run, and each one's report."""
    return {
        "scenario": reports[0]["scenario"],
        "policies": [r["policy"] for r in reports],
        "runs": {r["policy"]: r for r in reports},
    }


def run(args: argparse.Namespace) -> int:
    return reporting_input_errors("sim", run_command, args)
