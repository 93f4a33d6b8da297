"""`autotuner test FILE...`: run unit tests for rule files, as `promtool test rules` does.

Exit status: 0 when every test passes, 1 when any fails, 2 when a test file (or a rule file it
names) is not valid, with the file, line and field of each problem.
"""

from __future__ import annotations

import argparse
import re
import sys

from autotuner.config.errors import ConfigError
from autotuner.ruletest.report import format_file, format_problems
from autotuner.ruletest.runner import run_file
from autotuner.ruletest.testfile import load_test_file

EXIT_PASSED = 0
EXIT_FAILED = 1
EXIT_BAD_FILE = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE", help="rule test files")
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
    status = EXIT_PASSED
    for path in args.files:
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
