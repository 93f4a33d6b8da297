"""How the commands that run the simulator report bad input: file:line problems, then exit 2."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from autotuner.config.errors import ConfigError
from autotuner.sim.trace_file import TraceError


def reporting_input_errors(
    command: str, run_command: Callable[[argparse.Namespace], int], args: argparse.Namespace
) -> int:
    """`run_command(args)`, with a scenario's, a rule file's or a trace's problems printed as
    the rule checker prints them (exit 2), never as a traceback."""
    try:
        return run_command(args)
    except ConfigError as error:
        for problem in error.problems:
            print(problem, file=sys.stderr)
        return 2
    except TraceError as error:
        print(f"autotuner {command}: {error}", file=sys.stderr)
        return 2
