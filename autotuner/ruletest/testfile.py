"""Rule test files: read, validated against the rules they test, compiled to plain data.

```yaml
rule_files: [../api.yaml]          # relative to this file; globs allowed
evaluation_interval: 1m            # how often the engine ticks (default 1m)
tests:
  - name: latency high for 2m scales the API up
    interval: 1m                   # the step of input_series values (default evaluation_interval)
    input_series:
      - series: 'api_p95_seconds{namespace="crm", deployment="api"}'
        values: '0.2 0.9x10'
    initial:                       # knob values at the start
      deployment/crm/api: 4
    expect:
      - eval_time: 1m
        actions: []                # nothing is changed at 1m
        phases:
          - {rule: api-latency-high, phase: pending}
      - eval_time: 3m
        actions:
          - {rule: api-latency-high, knob: deployment/crm/api, from: 4, to: 6}
```

Every problem is reported with its file, line, column and field, as `autotuner check` does.
"""

from __future__ import annotations

import glob
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, model_validator

from autotuner.config import promql
from autotuner.config.durations import format_duration
from autotuner.config.errors import ConfigError, Problem, did_you_mean
from autotuner.config.loader import load_rules, validate
from autotuner.config.schema import Duration, Strict
from autotuner.config.yaml_positions import Located, dotted, load_located
from autotuner.core.model import KnobRef, Labels, Phase, format_labels, labels_of
from autotuner.core.rules import RuleSet
from autotuner.ruletest.notation import NotationError, Point, expand_values, parse_series

DEFAULT_EVALUATION_INTERVAL = 60.0
# Evaluation times are compared after this rounding, so that 90s and 1m30s are the same time.
_TIME_RESOLUTION = 1e-6


def _text(value: Any) -> Any:
    """`values: 5` is the text "5" to an SRE; YAML reads it as a number."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


def _number(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("expected a number, not true or false")
    return value


Number = Annotated[float, BeforeValidator(_number)]


class SeriesSpec(Strict):
    series: str = Field(min_length=1)
    values: Annotated[str, BeforeValidator(_text)]


class ActionSpec(Strict):
    rule: str = Field(min_length=1)
    knob: str = Field(min_length=1)
    labels: dict[str, str] | None = None
    from_: Number | None = Field(default=None, alias="from")
    to: Number


class PhaseSpec(Strict):
    rule: str = Field(min_length=1)
    labels: dict[str, str] | None = None
    phase: Literal["inactive", "pending", "firing"]


class ExpectSpec(Strict):
    eval_time: Duration
    actions: tuple[ActionSpec, ...] | None = None
    phases: tuple[PhaseSpec, ...] | None = None

    @model_validator(mode="after")
    def _says_something(self) -> ExpectSpec:
        if self.actions is None and self.phases is None:
            raise ValueError(
                "an expectation needs actions (write `actions: []` for none) or phases"
            )
        return self


class TestGroupSpec(Strict):
    name: str = ""
    interval: Duration | None = None
    input_series: tuple[SeriesSpec, ...] = ()
    initial: dict[str, Number] = Field(default_factory=dict)
    expect: tuple[ExpectSpec, ...]


class TestFileSpec(Strict):
    rule_files: tuple[str, ...]
    evaluation_interval: Duration = DEFAULT_EVALUATION_INTERVAL
    tests: tuple[TestGroupSpec, ...]


@dataclass(frozen=True, slots=True)
class InputSeries:
    metric: str
    labels: Labels
    points: tuple[Point, ...]
    line: int

    def __str__(self) -> str:
        return self.metric + (format_labels(self.labels) if self.labels else "")


@dataclass(frozen=True, slots=True)
class ExpectedAction:
    rule: str
    knob: KnobRef
    labels: Labels | None
    from_value: float | None
    to_value: float
    line: int


@dataclass(frozen=True, slots=True)
class ExpectedPhase:
    rule: str
    labels: Labels | None
    phase: Phase
    line: int


@dataclass(frozen=True, slots=True)
class Expectation:
    eval_time: float
    actions: tuple[ExpectedAction, ...] | None
    phases: tuple[ExpectedPhase, ...] | None
    line: int


@dataclass(frozen=True, slots=True)
class TestGroup:
    name: str
    interval: float
    series: tuple[InputSeries, ...]
    initial: Mapping[KnobRef, float]
    expectations: tuple[Expectation, ...]
    line: int


@dataclass(frozen=True, slots=True)
class TestFile:
    path: str
    ruleset: RuleSet
    evaluation_interval: float
    groups: tuple[TestGroup, ...]


def load_test_file(path: str | Path) -> TestFile:
    """Read and validate a test file and the rule files it names; ConfigError otherwise."""
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError([Problem(file, 1, 1, "", f"cannot read the file: {error}")]) from None
    located = load_located(text, file)
    if located.data is None:
        raise ConfigError(
            [
                Problem(
                    file, 1, 1, "", "the file is empty; a rule test file has rule_files and tests"
                )
            ]
        )
    spec = validate(TestFileSpec, located)
    ruleset = _load_rule_files(located, spec, Path(path).parent)
    return _Compiler(located, text, spec, ruleset).compile()


def _load_rule_files(located: Located, spec: TestFileSpec, base: Path) -> RuleSet:
    paths: list[str] = []
    problems: list[Problem] = []
    if not spec.rule_files:
        problems.append(located.problem(("rule_files",), "name at least one rule file to test"))
    for index, pattern in enumerate(spec.rule_files):
        full = base / pattern
        matches = sorted(glob.glob(str(full))) if glob.has_magic(pattern) else [str(full)]
        if not matches or not all(Path(m).exists() for m in matches):
            problems.append(
                located.problem(("rule_files", index), f"no rule file matches {str(full)!r}")
            )
        paths.extend(matches)
    if problems:
        raise ConfigError(problems)
    return load_rules(paths)


class _Compiler:
    def __init__(self, located: Located, text: str, spec: TestFileSpec, ruleset: RuleSet) -> None:
        self.located = located
        self.lines = text.splitlines()
        self.spec = spec
        self.ruleset = ruleset
        self.rule_names = {rule.name for rule in ruleset.rules}
        self.metric_names = {query.name for query in ruleset.metrics}
        self.labels_by_metric: dict[str, frozenset[str] | None] = {}
        self.problems: list[Problem] = []

    def problem(self, path: tuple[str | int, ...], message: str, key: bool = False) -> None:
        self.problems.append(self.located.problem(path, message, key))

    def line(self, path: tuple[str | int, ...]) -> int:
        return self.located.position(path)[0]

    def compile(self) -> TestFile:
        if self.spec.evaluation_interval <= 0:
            self.problem(("evaluation_interval",), "must be longer than 0s")
        if not self.spec.tests:
            self.problem(("tests",), "there are no test groups; add at least one under tests:")
        groups = [self.group(index, group) for index, group in enumerate(self.spec.tests)]
        if self.problems:
            raise ConfigError(self.problems)
        return TestFile(
            self.located.file,
            self.ruleset,
            self.spec.evaluation_interval,
            tuple(g for g in groups if g is not None),
        )

    def group(self, index: int, spec: TestGroupSpec) -> TestGroup | None:
        base: tuple[str | int, ...] = ("tests", index)
        interval = spec.interval if spec.interval is not None else self.spec.evaluation_interval
        if interval <= 0:
            self.problem((*base, "interval"), "must be longer than 0s")
        if not spec.expect:
            self.problem((*base, "expect"), "there is nothing to check; add an expectation")
        series = [
            self.series((*base, "input_series", i), s) for i, s in enumerate(spec.input_series)
        ]
        seen: dict[tuple[str, Labels], int] = {}
        for position, item in enumerate(series):
            if item is None:
                continue
            identity = (item.metric, item.labels)
            if identity in seen:
                self.problem(
                    (*base, "input_series", position, "series"),
                    f"{item} is already given at input_series[{seen[identity]}]",
                )
            seen.setdefault(identity, position)
        initial: dict[KnobRef, float] = {}
        for knob_id, value in spec.initial.items():
            knob = self.knob((*base, "initial", knob_id), knob_id, key=True)
            if knob is not None:
                initial[knob] = value
        expectations = [
            self.expectation((*base, "expect", i), e) for i, e in enumerate(spec.expect)
        ]
        if any(item is None for item in series) or any(e is None for e in expectations):
            return None
        return TestGroup(
            name=spec.name or f"tests[{index}]",
            interval=interval,
            series=tuple(s for s in series if s is not None),
            initial=initial,
            expectations=tuple(e for e in expectations if e is not None),
            line=self.line(base),
        )

    def series(self, path: tuple[str | int, ...], spec: SeriesSpec) -> InputSeries | None:
        try:
            selector = parse_series(spec.series)
        except NotationError as error:
            self.notation_problem((*path, "series"), spec.series, error)
            return None
        try:
            points = expand_values(spec.values)
        except NotationError as error:
            self.notation_problem((*path, "values"), spec.values, error)
            return None
        if selector.name not in self.metric_names:
            self.problem(
                (*path, "series"),
                f"no rule file declares a metric {selector.name!r}"
                f"{did_you_mean(selector.name, self.metric_names)}; input series are the "
                "answers of the metrics under `metrics:`",
            )
            return None
        possible = self.result_labels(selector.name)
        impossible = sorted({name for name, _ in selector.labels} - (possible or set()))
        if possible is not None and impossible:
            have = ", ".join(sorted(possible)) or "no labels"
            self.problem(
                (*path, "series"),
                f"a series of {selector.name!r} cannot carry {', '.join(impossible)}: its query "
                f"gives {have}{did_you_mean(impossible[0], possible)}",
            )
            return None
        return InputSeries(selector.name, selector.labels, points, self.line(path))

    def result_labels(self, metric: str) -> frozenset[str] | None:
        """The labels the metric's query can give, or None where its shape does not say."""
        if metric not in self.labels_by_metric:
            try:
                labels = promql.result_labels(self.ruleset.metric(metric).expr)
            except promql.PromQLError:
                labels = None
            self.labels_by_metric[metric] = labels
        return self.labels_by_metric[metric]

    def notation_problem(
        self, path: tuple[str | int, ...], text: str, error: NotationError
    ) -> None:
        """Point at the offending character when the value sits on one line of the file."""
        line, column = self.located.position(path)
        source = self.lines[line - 1] if 0 < line <= len(self.lines) else ""
        found = source.find(text, column - 1)
        if text and found >= 0:
            column = found + 1 + error.column
        self.problems.append(Problem(self.located.file, line, column, dotted(path), error.message))

    def knob(self, path: tuple[str | int, ...], text: str, key: bool = False) -> KnobRef | None:
        try:
            return KnobRef.parse(text)
        except ValueError as error:
            self.problem(path, str(error), key=key)
            return None

    def rule(self, path: tuple[str | int, ...], name: str) -> bool:
        if name in self.rule_names:
            return True
        self.problem(
            path, f"no rule named {name!r} in the rule files{did_you_mean(name, self.rule_names)}"
        )
        return False

    def expectation(self, path: tuple[str | int, ...], spec: ExpectSpec) -> Expectation | None:
        interval = self.spec.evaluation_interval
        if spec.eval_time < 0:
            self.problem((*path, "eval_time"), "must not be negative")
        elif interval > 0 and not _is_multiple(spec.eval_time, interval):
            self.problem(
                (*path, "eval_time"),
                "the engine evaluates only every evaluation_interval "
                f"({format_duration(interval)}); this time falls between two evaluations",
            )
        actions = None
        if spec.actions is not None:
            actions = [self.action((*path, "actions", i), a) for i, a in enumerate(spec.actions)]
        phases = None
        if spec.phases is not None:
            phases = [self.phase((*path, "phases", i), p) for i, p in enumerate(spec.phases)]
        if any(a is None for a in actions or ()) or any(p is None for p in phases or ()):
            return None
        return Expectation(
            eval_time=round(spec.eval_time / _TIME_RESOLUTION) * _TIME_RESOLUTION,
            actions=None if actions is None else tuple(a for a in actions if a is not None),
            phases=None if phases is None else tuple(p for p in phases if p is not None),
            line=self.line(path),
        )

    def action(self, path: tuple[str | int, ...], spec: ActionSpec) -> ExpectedAction | None:
        known = self.rule((*path, "rule"), spec.rule)
        knob = self.knob((*path, "knob"), spec.knob)
        if not known or knob is None:
            return None
        return ExpectedAction(
            rule=spec.rule,
            knob=knob,
            labels=None if spec.labels is None else labels_of(spec.labels),
            from_value=spec.from_,
            to_value=spec.to,
            line=self.line(path),
        )

    def phase(self, path: tuple[str | int, ...], spec: PhaseSpec) -> ExpectedPhase | None:
        if not self.rule((*path, "rule"), spec.rule):
            return None
        return ExpectedPhase(
            rule=spec.rule,
            labels=None if spec.labels is None else labels_of(spec.labels),
            phase=Phase(spec.phase),
            line=self.line(path),
        )


def _is_multiple(value: float, step: float) -> bool:
    ratio = value / step
    return math.isclose(ratio, round(ratio), abs_tol=1e-9)
