"""`autotuner test FILE...`: run unit tests for rule files, as `promtool test rules` does.

The report goes to stdout (text, or JSON with `--format json`), and with `--junit FILE` also
to FILE as JUnit XML; stderr carries only problems with the command line itself.

Exit status: 0 when every test passes, 1 when any fails, 2 when a test file (or a rule file it
names) is not valid, with the file, line and field of each problem.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from autotuner.config.errors import ConfigError
from autotuner.ruletest.export import FileOutcome, to_document, to_junit
from autotuner.ruletest.report import format_file, format_problems
from autotuner.ruletest.runner import run_file
from autotuner.ruletest.testfile import load_test_file

EXIT_PASSED = 0
EXIT_FAILED = 1
EXIT_BAD_FILE = 2
TEST_FILE_SUFFIXES = (".yaml", ".yml")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "paths",
        nargs="+",
        metavar="FILE|DIR",
        help="rule test files, or directories of them (*.yaml, *.yml)",
    )
    parser.add_argument(
        "--run",
        metavar="REGEX",
        help="run only the test groups whose name matches this regular expression "
        "(promtool's --run)",
    )
    parser.add_argument(
        "--format",
        choices=("text", "json"),
        default="text",
        help="the report on stdout: text, or JSON as `autotuner check --format json`",
    )
    parser.add_argument(
        "--junit",
        type=Path,
        metavar="FILE",
        help="also write the results to FILE as JUnit XML, one test case per test group "
        "(promtool's --junit)",
    )


def run(args: argparse.Namespace) -> int:
    try:
        only = re.compile(args.run) if args.run else None
    except re.error as error:
        print(f"--run: not a regular expression: {error}", file=sys.stderr)
        return EXIT_BAD_FILE
    if args.junit is not None and not args.junit.parent.is_dir():
        print(
            f"--junit {args.junit}: the folder {args.junit.parent} does not exist", file=sys.stderr
        )
        return EXIT_BAD_FILE
    files, empty = _test_files(args.paths)
    for directory in empty:
        print(f"{directory}: this directory holds no *.yaml or *.yml file", file=sys.stderr)
    outcomes = []
    for path in files:
        outcome = _run_file(path, only)
        outcomes.append(outcome)
        if args.format == "text":
            # File by file, as each one finishes.
            print("\n".join(_text(outcome)), flush=True)
    if args.format == "json":
        print(json.dumps(to_document(outcomes), indent=2))
    if args.junit is not None:
        try:
            args.junit.write_bytes(to_junit(outcomes))
        except OSError as error:
            print(f"--junit {args.junit}: cannot write it: {error.strerror}", file=sys.stderr)
            return EXIT_BAD_FILE
    if empty or any(outcome.result is None for outcome in outcomes):
        return EXIT_BAD_FILE
    return EXIT_PASSED if all(outcome.passed for outcome in outcomes) else EXIT_FAILED


def _text(outcome: FileOutcome) -> list[str]:
    if outcome.result is None:
        return format_problems(outcome.path, outcome.problems)
    return format_file(outcome.result)


def _run_file(path: str, only: re.Pattern[str] | None) -> FileOutcome:
    try:
        test_file = load_test_file(path)
    except ConfigError as error:
        return FileOutcome(path, None, error.problems)
    return FileOutcome(path, run_file(test_file, only))


def _test_files(paths: list[str]) -> tuple[list[str], list[str]]:
    """Files as given; a directory stands for the test files directly inside it.

    Returns the files and the directories that hold none.
    """
    files: list[str] = []
    empty: list[str] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            inside = [str(p) for p in sorted(path.iterdir()) if p.suffix in TEST_FILE_SUFFIXES]
            files.extend(inside)
            if not inside:
                empty.append(raw)
        else:
            files.append(raw)
    return files, empty
