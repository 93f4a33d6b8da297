"""The `autotuner` command: one subcommand per module, loaded only when it is used."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Protocol, cast

# name -> (module, one-line help). Each module has `add_arguments(parser)` and `run(args) -> int`.
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("autotuner.cli.run", "run the controller (the bundled simulated system by default)"),
    "check": ("autotuner.cli.check", "validate rule files, like `promtool check rules`"),
    "test": ("autotuner.cli.test", "run unit tests for rule files, like `promtool test rules`"),
    "sim": ("autotuner.cli.sim", "run a simulation scenario against a modelled system"),
    "trace": ("autotuner.cli.trace", "fetch a request rate from Prometheus as a trace to replay"),
    "history": ("autotuner.cli.history", "list recorded decisions"),
    "explain": ("autotuner.cli.explain", "say in plain words why a target last changed, or not"),
}


class Command(Protocol):
    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


def _load(name: str) -> Command:
    return cast(Command, importlib.import_module(COMMANDS[name][0]))


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # No abbreviated flags: `--redis-password X` must never be taken for `--redis-password-file X`.
    parser = argparse.ArgumentParser(
        prog="autotuner",
        allow_abbrev=False,
        description="A self-tuning performance controller with explained, audited decisions.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (_, help_text) in COMMANDS.items():
        command_parser = sub.add_parser(
            name, help=help_text, description=help_text, allow_abbrev=False
        )
        if name == chosen:
            _load(name).add_arguments(command_parser)
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        # Name only the flags: a value typed after a wrong flag may be a secret.
        flags = " ".join(word.split("=", 1)[0] for word in unknown if word.startswith("-"))
        parser.error(f"unrecognized arguments: {flags or 'values without a flag'}")
    try:
        return _load(args.command).run(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, as other command-line tools do.
        sys.stderr.close()
        return 141


if __name__ == "__main__":
    sys.exit(main())
