"""`autotuner check config FILE...`: validate the daemon's settings files, as `promtool check
config` does (see autotuner.runtime.settings_check for what is checked).

`check` reads its first word as the mode, as promtool's `check config` and `check rules`
subcommands: `config` here, `rules` for rule files (also the default, `check FILE...`). A rule
directory named `config` is checked as `./config`; `check rules` alone checks the directory
./rules, the one thing it can mean.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from autotuner.runtime.settings_check import check_settings_file

MODES = ("config", "rules")


def rule_paths(paths: list[str]) -> list[str] | None:
    """The rule files and directories of `check [rules] PATH...`; None for `check config`."""
    if paths[0] == "config":
        return None
    if paths[0] == "rules" and len(paths) > 1:
        return paths[1:]
    return paths


def run_config(paths: list[str], output: str) -> int:
    """Check each settings file; 0 when all are sound, 1 otherwise."""
    if not paths:
        print(
            "autotuner check config: name the settings FILE to check; to check rule files in a "
            "directory named config, write ./config",
            file=sys.stderr,
        )
        return 2
    results = [(path, check_settings_file(Path(path))) for path in paths]
    failed = any(problems for _, problems in results)
    if output == "json":
        document = {
            "success": not failed,
            "files": [
                {"file": path, "problems": [p.to_dict() for p in problems]}
                for path, problems in results
            ],
        }
        print(json.dumps(document, indent=2))
        return 1 if failed else 0
    for path, problems in results:
        print(f"Checking {path}")
        if not problems:
            print("  SUCCESS: the settings are valid")
        for problem in problems:
            print(f"  FAILED: {problem}", file=sys.stderr)
        print()
    return 1 if failed else 0
