"""`autotuner test FILE...`: run unit tests for rule files, as `promtool test rules` does.

Exit status: 0 when every test passes, 1 when any fails, 2 when a test file (or a rule file it
names) is not valid, with the file, line and field of each problem.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from autotuner.config.errors import ConfigError
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
        help="run only the test groups whose name matches this regular expression",
    )


def run(args: argparse.Namespace) -> int:
    try:
        only = re.compile(args.run) if args.run else None
    except re.error as error:
        print(f"--run: not a regular expression: {error}", file=sys.stderr)
        return EXIT_BAD_FILE
    files, empty = _test_files(args.paths)
    for directory in empty:
        print(f"{directory}: this directory holds no *.yaml or *.yml file", file=sys.stderr)
    status = EXIT_BAD_FILE if empty else EXIT_PASSED
    for path in files:
        try:
            test_file = load_test_file(path)
        except ConfigError as error:
            print("\n".join(format_problems(path, error.problems)), file=sys.stderr)
            status = EXIT_BAD_FILE
            continue
        result = run_file(test_file, only)
        print("\n".join(format_file(result)))
        if not result.passed and status == EXIT_PASSED:
            status = EXIT_FAILED
    return status


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
