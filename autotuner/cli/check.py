"""`autotuner check FILE|DIR...`: validate rule files as `promtool check rules` does."""

from __future__ import annotations

import argparse
import json
import sys

from autotuner.config.errors import ConfigError, Problem
from autotuner.config.loader import load_file, merge, rule_files
from autotuner.core.rules import RuleSet


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "paths", nargs="+", metavar="FILE|DIR", help="rule files, or directories of *.yaml"
    )
    parser.add_argument("--format", choices=("text", "json"), default="text", help="output format")


def run(args: argparse.Namespace) -> int:
    results: list[tuple[str, RuleSet | None, tuple[Problem, ...]]] = []
    try:
        files = rule_files(args.paths)
    except ConfigError as error:
        return _report([(p.file, None, (p,)) for p in error.problems], args.format)
    for file in files:
        try:
            results.append((str(file), load_file(file), ()))
        except ConfigError as error:
            results.append((str(file), None, error.problems))
    sound = [ruleset for _, ruleset, _ in results if ruleset is not None]
    try:
        merge(sound)
    except ConfigError as error:
        results.append(("<all files>", None, error.problems))
    return _report(results, args.format)


def _report(results: list[tuple[str, RuleSet | None, tuple[Problem, ...]]], output: str) -> int:
    failed = any(problems for _, _, problems in results)
    if output == "json":
        document = {
            "success": not failed,
            "files": [
                {
                    "file": file,
                    "rules": len(ruleset.rules) if ruleset else 0,
                    "metrics": len(ruleset.metrics) if ruleset else 0,
                    "problems": [p.to_dict() for p in problems],
                }
                for file, ruleset, problems in results
            ],
        }
        print(json.dumps(document, indent=2))
        return 1 if failed else 0
    for file, ruleset, problems in results:
        print(f"Checking {file}")
        if ruleset is not None:
            print(f"  SUCCESS: {len(ruleset.rules)} rules, {len(ruleset.metrics)} metrics found")
        for problem in problems:
            print(f"  FAILED: {problem}", file=sys.stderr)
        print()
    return 1 if failed else 0
