"""The search-space file: which fields of which rules to tune, over which ranges, against what.

```yaml
rules: [../api.yaml, ../ml.yaml]                  # the rule files tuned (relative to this file)
scenario: ../../sim/scenarios/worldcup98.yaml     # the modelled system and its settings
tune_days: [0, 14]                                # days of the scenario's trace to tune on
validate_days: [14, 21]                           # days never tuned on, to check the front
trials: 40
parameters:
  - {rule: api-latency-slo, field: objective.aim, low: 0.25, high: 0.48}
  - {rule: api-latency-slo, field: action.scale.stabilization_window, choices: [2m, 5m, 10m]}
objectives:                                       # report paths, each minimised; `a + b` sums
  - api_p95.violation_minutes + ml_p95.violation_minutes
  - replicas.replica_hours + ml_replicas.replica_hours
```

A candidate is the rule files with the trial's values written into them; it goes through the
same loader as `autotuner check`, so a candidate the rule language refuses is never run.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, model_validator

from autotuner.config.errors import ConfigError, Problem
from autotuner.config.loader import validate
from autotuner.config.schema import Strict
from autotuner.config.yaml_positions import read_located

_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_REPORT_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:/-]*$")


class ParameterSpec(Strict):
    rule: str = Field(min_length=1)
    field: str = Field(pattern=_PATH.pattern)
    low: float | None = None
    high: float | None = None
    step: float | None = Field(default=None, gt=0)
    log: bool = False
    choices: tuple[str | float | int, ...] | None = None

    @model_validator(mode="after")
    def _range_or_choices(self) -> ParameterSpec:
        ranged = self.low is not None or self.high is not None
        if ranged == (self.choices is not None):
            raise ValueError("give either low and high, or choices")
        if ranged and (self.low is None or self.high is None or self.low >= self.high):
            raise ValueError("low must be given and be under high")
        if self.choices is not None and len(self.choices) < 2:
            raise ValueError("give at least two choices")
        return self


class TuneFileSpec(Strict):
    rules: tuple[str, ...] = Field(min_length=1)
    scenario: str = Field(min_length=1)
    tune_days: tuple[float, float] | None = None
    validate_days: tuple[float, float] | None = None
    trials: int = Field(default=40, gt=0, le=100_000)
    parameters: tuple[ParameterSpec, ...] = Field(min_length=1)
    objectives: tuple[str, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _days(self) -> TuneFileSpec:
        for name in ("tune_days", "validate_days"):
            days = getattr(self, name)
            if days is not None and not 0 <= days[0] < days[1]:
                raise ValueError(f"{name} is [first day, end day], the first under the end")
        return self


@dataclass(frozen=True, slots=True)
class Parameter:
    name: str  # RULE.FIELD, as a trial names it
    rule: str
    path: tuple[str, ...]
    low: float | None
    high: float | None
    step: float | None
    log: bool
    choices: tuple[str | float | int, ...] | None
    integer: bool


@dataclass(frozen=True, slots=True)
class Objective:
    text: str
    terms: tuple[str, ...]  # report paths summed


@dataclass(frozen=True, slots=True)
class TuneFile:
    file: str
    rule_files: tuple[Path, ...]
    documents: tuple[Any, ...]  # each rule file's YAML, as read
    scenario: Path
    tune_days: tuple[float, float] | None
    validate_days: tuple[float, float] | None
    trials: int
    parameters: tuple[Parameter, ...]
    objectives: tuple[Objective, ...]

    def current(self) -> dict[str, Any]:
        """The values the rule files hold today, per parameter name."""
        values: dict[str, Any] = {}
        for parameter in self.parameters:
            _, rule = self._rule(parameter.rule)
            values[parameter.name] = _get(rule, parameter.path)
        return values

    def _rule(self, name: str) -> tuple[int, dict[str, Any]]:
        for index, document in enumerate(self.documents):
            for rule in document.get("rules", ()) if isinstance(document, dict) else ():
                if isinstance(rule, dict) and rule.get("name") == name:
                    return index, rule
        raise KeyError(name)

    def candidate(self, values: dict[str, Any]) -> list[Any]:
        """The rule files' documents with `values` written in."""
        documents = copy.deepcopy(list(self.documents))
        for parameter in self.parameters:
            if parameter.name not in values:
                continue
            index, _ = self._rule(parameter.rule)
            for rule in documents[index]["rules"]:
                if rule.get("name") == parameter.rule:
                    _set(rule, parameter.path, values[parameter.name])
        return documents

    def write(self, values: dict[str, Any], directory: Path) -> list[Path]:
        """The candidate's rule files in `directory`, named as the originals."""
        directory.mkdir(parents=True, exist_ok=True)
        written = []
        for source, document in zip(self.rule_files, self.candidate(values), strict=True):
            target = directory / source.name
            target.write_text(yaml.safe_dump(document, sort_keys=False, allow_unicode=True))
            written.append(target)
        return written


def _get(mapping: Any, path: tuple[str, ...]) -> Any:
    node = mapping
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _set(mapping: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = mapping
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node[path[-1]] = value


def load_tune_file(path: str | Path) -> TuneFile:
    """Read and check a search-space file; ConfigError names the file, line and field."""
    located = read_located(path)
    if not isinstance(located.data, dict):
        raise ConfigError(
            [Problem(located.file, 1, 1, "", "a search-space file is a mapping with rules:")]
        )
    spec = validate(TuneFileSpec, located)
    directory = Path(path).parent
    problems: list[Problem] = []
    rule_files = tuple(directory / name for name in spec.rules)
    documents: list[Any] = []
    for index, rule_file in enumerate(rule_files):
        if not rule_file.is_file():
            problems.append(located.problem(("rules", index), f"no such file: {rule_file}"))
            documents.append({})
            continue
        documents.append(yaml.safe_load(rule_file.read_text()) or {})
    scenario = directory / spec.scenario
    if not scenario.is_file():
        problems.append(located.problem(("scenario",), f"no such file: {scenario}"))
    parameters = []
    names = {
        rule.get("name"): rule
        for document in documents
        if isinstance(document, dict)
        for rule in document.get("rules", ())
        if isinstance(rule, dict)
    }
    for index, given in enumerate(spec.parameters):
        where = ("parameters", index)
        rule = names.get(given.rule)
        if rule is None:
            known = ", ".join(sorted(str(n) for n in names)) or "none"
            problems.append(
                located.problem(
                    (*where, "rule"), f"no rule {given.rule!r} in the files (have {known})"
                )
            )
            continue
        field_path = tuple(given.field.split("."))
        now = _get(rule, field_path)
        if now is None:
            problems.append(
                located.problem(
                    (*where, "field"),
                    f"rule {given.rule!r} does not set {given.field}: write it in the rule file, "
                    "so that the search starts from the value it has today",
                )
            )
            continue
        outside = (
            now not in given.choices
            if given.choices is not None
            else not (
                isinstance(now, int | float)
                and given.low is not None
                and given.high is not None
                and given.low <= now <= given.high
            )
        )
        if outside:
            problems.append(
                located.problem(
                    (*where, "field"),
                    f"today's {given.field} of {given.rule!r}, {now!r}, is outside the range: "
                    "the search must be able to keep it",
                )
            )
            continue
        integer = (
            given.choices is None
            and isinstance(now, int)
            and not isinstance(now, bool)
            and float(given.low or 0).is_integer()
            and float(given.high or 0).is_integer()
        )
        parameters.append(
            Parameter(
                f"{given.rule}.{given.field}",
                given.rule,
                field_path,
                given.low,
                given.high,
                given.step,
                given.log,
                given.choices,
                integer,
            )
        )
    objectives = []
    for index, text in enumerate(spec.objectives):
        terms = tuple(term.strip() for term in text.split("+"))
        if not all(_REPORT_PATH.match(term) for term in terms):
            problems.append(
                located.problem(
                    ("objectives", index),
                    f"{text!r} is not a report path or a sum of them, e.g. "
                    "`api_p95.violation_minutes + ml_p95.violation_minutes`",
                )
            )
            continue
        objectives.append(Objective(text, terms))
    if problems:
        raise ConfigError(problems)
    return TuneFile(
        file=located.file,
        rule_files=rule_files,
        documents=tuple(documents),
        scenario=scenario,
        tune_days=spec.tune_days,
        validate_days=spec.validate_days,
        trials=spec.trials,
        parameters=tuple(parameters),
        objectives=tuple(objectives),
    )
