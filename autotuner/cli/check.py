"""`autotuner check [rules] FILE|DIR...`: validate rule files as `promtool check rules` does;
`autotuner check config FILE...` validates settings files (autotuner.cli.check_config).

Errors exit 1. Lint warnings (`--lint=all`, the default) are printed and exit 0, or 3 with
`--lint-fatal`, promtool's exit code for lint problems.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass

from autotuner.cli.check_config import rule_paths, run_config
from autotuner.config.errors import ConfigError, Problem
from autotuner.config.lint import lint
from autotuner.config.loader import load_file, merge, rule_files
from autotuner.core.rules import RuleSet

EXIT_ERRORS = 1
EXIT_LINT = 3  # promtool check rules --lint-fatal


@dataclass
class _Result:
    file: str
    ruleset: RuleSet | None
    problems: tuple[Problem, ...]
    warnings: list[Problem]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "paths",
        nargs="+",
        metavar="FILE|DIR",
        help="rule files, or directories of *.yaml",
    )
    parser.epilog = (
        "`check [rules] FILE|DIR...` checks rule files (promtool check rules); "
        "`check config FILE...` checks the daemon's settings files (promtool check config). "
        "A rule directory named config is checked as ./config. Flags go before the mode or "
        "after the files."
    )
    parser.add_argument("--format", choices=("text", "json"), default="text", help="output format")
    parser.add_argument(
        "--lint",
        choices=("all", "none"),
        default="all",
        help="lint warnings to report (promtool's --lint): all, or none",
    )
    parser.add_argument(
        "--lint-fatal",
        action="store_true",
        help=f"exit {EXIT_LINT} when there are lint warnings (promtool's --lint-fatal)",
    )


def run(args: argparse.Namespace) -> int:
    paths = rule_paths(args.paths)
    if paths is None:
        return run_config(args.paths[1:], args.format)
    results: list[_Result] = []
    try:
        files = rule_files(paths)
    except ConfigError as error:
        return _report([_Result(p.file, None, (p,), []) for p in error.problems], args)
    for file in files:
        try:
            results.append(_Result(str(file), load_file(file), (), []))
        except ConfigError as error:
            results.append(_Result(str(file), None, error.problems, []))
    sound = [result.ruleset for result in results if result.ruleset is not None]
    try:
        merged = merge(sound)
    except ConfigError as error:
        results.append(_Result("<all files>", None, error.problems, []))
    else:
        if args.lint == "all":
            by_file = {result.file: result for result in results}
            for warning in lint(merged):
                by_file.get(warning.file, results[-1]).warnings.append(warning)
    return _report(results, args)


def _exit_code(results: list[_Result], lint_fatal: bool) -> int:
    if any(result.problems for result in results):
        return EXIT_ERRORS
    if lint_fatal and any(result.warnings for result in results):
        return EXIT_LINT
    return 0


def _report(results: list[_Result], args: argparse.Namespace) -> int:
    code = _exit_code(results, args.lint_fatal)
    if args.format == "json":
        document = {
            "success": code == 0,
            "files": [
                {
                    "file": result.file,
                    "rules": len(result.ruleset.rules) if result.ruleset else 0,
                    "metrics": len(result.ruleset.metrics) if result.ruleset else 0,
                    "problems": [p.to_dict() for p in result.problems],
                    "warnings": [w.to_dict() for w in result.warnings],
                }
                for result in results
            ],
        }
        print(json.dumps(document, indent=2))
        return code
    for result in results:
        print(f"Checking {result.file}")
        if result.ruleset is not None:
            ruleset = result.ruleset
            print(f"  SUCCESS: {len(ruleset.rules)} rules, {len(ruleset.metrics)} metrics found")
        for problem in result.problems:
            print(f"  FAILED: {problem}", file=sys.stderr)
        for warning in result.warnings:
            print(f"  WARNING: {warning}", file=sys.stderr)
        print()
    return code
