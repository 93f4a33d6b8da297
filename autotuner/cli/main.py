"""The `autotuner` command: one subcommand per module, loaded only when it is used."""

from __future__ import annotations

import argparse
import difflib
import importlib
import importlib.metadata
import sys
from collections.abc import Sequence
from typing import Protocol, cast

from autotuner.config.errors import did_you_mean

# name -> (module, one-line help). Each module has `add_arguments(parser)` and `run(args) -> int`.
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("autotuner.cli.run", "run the controller (the bundled simulated system by default)"),
    "check": ("autotuner.cli.check", "validate rule files, like `promtool check rules`"),
    "test": ("autotuner.cli.test", "run unit tests for rule files, like `promtool test rules`"),
    "sim": ("autotuner.cli.sim", "run a simulation scenario against a modelled system"),
    "trace": ("autotuner.cli.trace", "fetch a request rate from Prometheus as a trace to replay"),
    "tune": ("autotuner.cli.tune", "search rule parameters on recorded traffic: the Pareto front"),
    "history": ("autotuner.cli.history", "list recorded decisions"),
    "explain": ("autotuner.cli.explain", "say in plain words why a target last changed, or not"),
}


class Command(Protocol):
    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


def _load(name: str) -> Command:
    return cast(Command, importlib.import_module(COMMANDS[name][0]))


def version() -> str:
    """The installed package's version, as `autotuner --version` prints it."""
    try:
        return importlib.metadata.version("autotuner")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed; run `pip install -e .`)"


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # No abbreviated flags: `--redis-password X` must never be taken for `--redis-password-file X`.
    parser = argparse.ArgumentParser(
        prog="autotuner",
        allow_abbrev=False,
        description="A self-tuning performance controller with explained, audited decisions.",
    )
    # Top level only, as `promtool --version`.
    parser.add_argument("--version", action="version", version=f"autotuner {version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    chosen = next((a for a in argv if not a.startswith("-")), None)
    if chosen is not None and chosen not in COMMANDS:
        parser.error(
            f"{chosen!r} is not a command; the commands are "
            f"{', '.join(COMMANDS)}{did_you_mean(chosen, COMMANDS)}"
        )
    command_parser: argparse.ArgumentParser = parser
    for name, (_, help_text) in COMMANDS.items():
        added = sub.add_parser(name, help=help_text, description=help_text, allow_abbrev=False)
        if name == chosen:
            _load(name).add_arguments(added)
            command_parser = added
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        # The usage of the command the flag was typed after, with the flag it resembles.
        command_parser.error(_unrecognized(unknown, command_parser))
    try:
        return _load(args.command).run(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, as other command-line tools do.
        sys.stderr.close()
        return 141


def _unrecognized(unknown: list[str], command_parser: argparse.ArgumentParser) -> str:
    # Name only the flags: a value typed after a wrong flag may be a secret.
    flags = [word.split("=", 1)[0] for word in unknown if word.startswith("-")]
    if not flags:
        return "unrecognized arguments: values without a flag"
    known = [
        option
        for action in command_parser._actions
        for option in action.option_strings
        if option.startswith("--")
    ]
    named = []
    for flag in flags:
        close = difflib.get_close_matches(flag, known, n=1, cutoff=0.6)
        named.append(f"{flag} (did you mean {close[0]}?)" if close else flag)
    return "unrecognized arguments: " + ", ".join(named)


if __name__ == "__main__":
    sys.exit(main())
