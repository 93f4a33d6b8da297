"""`autotuner check config FILE`: the daemon's settings file on its own, as `promtool check
config` checks prometheus.yml.

Each problem names the file, line, column and field, in the form of rule-file problems. The
environment and flags are left out, so the verdict is the file's whatever shell runs it. Once
the file is sound, the rule files it names under `rules:` are checked too (relative paths from
the working directory, as the daemon reads them), and against its `allow:` list if it has one;
a deployment that sets those in the environment has them checked by `autotuner check rules`
and at start.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from autotuner.config.errors import ConfigError, Problem, did_you_mean
from autotuner.config.loader import load_rules
from autotuner.runtime.settings import (
    ENV_PREFIX,
    SECRET_FIELDS,
    AllowListError,
    Settings,
    check_ruleset,
)

# (line, column), 1-based, of each top-level key and of each `allow.<key>`.
_Positions = dict[str, tuple[int, int]]


def check_settings_file(path: Path) -> tuple[Problem, ...]:
    """Every problem of the settings file at `path`; none when the daemon would accept it."""
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "it is not UTF-8 text"
        return (Problem(file, 1, 1, "", f"cannot read the file: {reason}"),)
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        values = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = getattr(error, "problem", None) or str(error)
        return (Problem(file, line, column, "", f"not valid YAML: {problem}"),)
    if values is None:
        values = {}
    elif not isinstance(values, dict) or not isinstance(node, yaml.MappingNode):
        return (Problem(file, 1, 1, "", "expected a mapping of setting: value"),)
    positions = _positions(node) if isinstance(node, yaml.MappingNode) else {}
    refused = [
        Problem(
            file,
            *positions[key],
            key,
            f"secrets are not accepted in the settings file; use {ENV_PREFIX}{key.upper()} "
            f"or `{key}_file: /path/to/secret`",
        )
        for key in values
        if key in SECRET_FIELDS
    ]
    if refused:
        return tuple(refused)
    try:
        settings = Settings.model_validate(values)
    except ValidationError as error:
        return tuple(_problems(file, error, positions))
    return _rule_problems(file, settings, positions)


def _positions(node: yaml.MappingNode) -> _Positions:
    positions: _Positions = {}
    for key_node, value_node in node.value:
        key = str(key_node.value)
        positions[key] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
        if key == "allow" and isinstance(value_node, yaml.MappingNode):
            for sub_key, _ in value_node.value:
                mark = sub_key.start_mark
                positions[f"allow.{sub_key.value}"] = (mark.line + 1, mark.column + 1)
    return positions


def _problems(file: str, error: ValidationError, positions: _Positions) -> list[Problem]:
    problems = []
    for item in error.errors():
        location = [str(part) for part in item["loc"]]
        message = item["msg"].removeprefix("Value error, ")
        if location[:1] == ["allow"]:
            field = ".".join(location[:2])
            known: Any = ("allow." + name for name in ("namespaces", "workloads", "key_prefixes"))
        elif location:
            field = location[0]
            known = Settings.model_fields
        else:
            # A rule over several settings: placed at the first of them that the file sets.
            involved = getattr(item.get("ctx", {}).get("error"), "fields", ())
            field = next((name for name in involved if name in positions), "")
            known = ()
        if item["type"] == "extra_forbidden":
            message = f"not a setting{did_you_mean(field, known)}"
        line, column = positions.get(field) or positions.get(field.split(".")[0]) or (1, 1)
        problems.append(Problem(file, line, column, field, message))
    return problems


def _rule_problems(file: str, settings: Settings, positions: _Positions) -> tuple[Problem, ...]:
    if "rules" not in positions:
        return ()
    try:
        ruleset = load_rules(settings.rules)
    except ConfigError as error:
        return error.problems
    try:
        if "allow" in positions:
            check_ruleset(ruleset, settings.allow)
    except AllowListError as error:
        line, column = positions["allow"]
        return tuple(
            Problem(file, line, column, "allow", f"{violation}") for violation in error.violations
        )
    return ()
