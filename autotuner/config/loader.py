"""Rule files in, a compiled RuleSet out, or every problem with its file, line and field.

All validation of rule files happens here, once: the daemon, the simulator, `autotuner check`
and `autotuner test` all load rules through `load_rules`.
"""

from __future__ import annotations

import contextlib
import gc
import math
import types
import typing
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from autotuner.config import promql
from autotuner.config.errors import ConfigError, Problem, did_you_mean
from autotuner.config.lint import kubernetes_name_problem
from autotuner.config.schema import (
    BudgetSpec,
    ChangeFields,
    KnobSpec,
    RuleFileSpec,
    RuleSpec,
    ScaleSpec,
    SetKeySpec,
)
from autotuner.config.yaml_positions import Located, load_located, read_located
from autotuner.core.model import KnobKind, KnobRef, MetricQuery, labels_of
from autotuner.core.rules import (
    Action,
    Budget,
    Change,
    ChangeMode,
    Comparison,
    Condition,
    KnobTemplate,
    Objective,
    RateLimit,
    RateLimitKind,
    Rule,
    RuleSet,
    SelectPolicy,
    SourceLocation,
    Template,
    TemplateError,
)

RULE_FILE_SUFFIXES = (".yaml", ".yml")


def rule_files(paths: Iterable[str | Path]) -> list[Path]:
    """Files as given, and the *.yaml / *.yml files directly inside each directory given."""
    found: list[Path] = []
    problems: list[Problem] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            inside = sorted(
                p for p in path.iterdir() if p.is_file() and p.suffix in RULE_FILE_SUFFIXES
            )
            if not inside:
                problems.append(
                    Problem(str(path), 1, 1, "", "this directory holds no *.yaml or *.yml file")
                )
            found.extend(inside)
        elif path.exists():
            # Not only regular files: /dev/null, a pipe or a process substitution read alike.
            found.append(path)
        else:
            problems.append(Problem(str(path), 1, 1, "", "no such file or directory"))
    if problems:
        raise ConfigError(problems)
    return found


def load_rules(paths: Iterable[str | Path]) -> RuleSet:
    """Load and validate rule files and directories into one RuleSet; ConfigError lists all
    problems of all files, and nothing is returned unless every file is sound."""
    files = rule_files(paths)
    rulesets: list[RuleSet] = []
    problems: list[Problem] = []
    for file in files:
        try:
            rulesets.append(load_file(file))
        except ConfigError as error:
            problems.extend(error.problems)
    if problems:
        raise ConfigError(problems)
    return merge(rulesets)


def load_file(path: str | Path) -> RuleSet:
    with _no_cycle_collection():
        return _compile_located(read_located(path))


def load_text(text: str, file: str) -> RuleSet:
    with _no_cycle_collection():
        return _compile_located(load_located(text, file))


@contextlib.contextmanager
def _no_cycle_collection() -> Iterator[None]:
    """Reading a large rule file allocates millions of objects and no reference cycles (a
    recursive anchor is refused): the cyclic collector would walk them again and again for
    nothing, a third of the time of a 10 MB file. Reference counting frees them as usual."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _compile_located(located: Located) -> RuleSet:
    if located.data is None:
        # An empty file holds no rules, as an empty promtool rule file holds no groups.
        return RuleSet(metrics=(), rules=(), files=(located.file,))
    spec = validate(RuleFileSpec, located)
    return _Compiler(located, spec).compile()


M = typing.TypeVar("M", bound=BaseModel)


def validate(model: type[M], located: Located, path: tuple[str | int, ...] = ()) -> M:
    """Validate a located document (or the part at `path`) against a pydantic model."""
    data = located.data
    for part in path:
        data = data[part]
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise ConfigError(
            [_problem(model, located, path, item) for item in error.errors(include_url=False)]
        ) from None


def _problem(
    model: type[BaseModel], located: Located, base: tuple[str | int, ...], item: Any
) -> Problem:
    path = _data_path(located.data, base, item["loc"])
    kind = item["type"]
    message = str(item["msg"]).removeprefix("Value error, ")
    if kind == "extra_forbidden":
        allowed = _fields_at(model, path[len(base) : -1])
        message = f"unknown field {path[-1]!r}{did_you_mean(str(path[-1]), allowed)}"
        if allowed:
            message += f" (expected one of: {', '.join(sorted(allowed))})"
        return located.problem(path, message, key=True)
    if kind == "finite_number":
        message = (
            "must be a finite number; YAML reads .inf, .nan and numbers past 1.8e308 as "
            "infinite or not a number"
        )
    if kind in _SHAPE_MESSAGES:
        message = f"{_SHAPE_MESSAGES[kind]}, not {_yaml_kind(_value_at(located.data, path))}"
    if kind == "missing":
        message = f"the field {path[-1]!r} is required"
        return located.problem(path[:-1], message) if path else located.problem(path, message)
    return located.problem(path, message)


# Pydantic's words for a value of the wrong shape name the model's class ("a valid dictionary
# or instance of ActionSpec"); these say it in the file's terms.
_SHAPE_MESSAGES = {
    "model_type": "expected a mapping of fields (name: value)",
    "model_attributes_type": "expected a mapping of fields (name: value)",
    "dict_type": "expected a mapping (name: value)",
    "tuple_type": "expected a list",
    "list_type": "expected a list",
}


def _value_at(data: Any, path: Sequence[str | int]) -> Any:
    for part in path:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return data
    return data


def _yaml_kind(value: Any) -> str:
    if value is None:
        return "an empty value"
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, str):
        return f"the text {value!r}"
    if isinstance(value, list):
        return "a list"
    return "a mapping"


def _data_path(data: Any, base: tuple[str | int, ...], loc: Sequence[Any]) -> tuple[str | int, ...]:
    """Pydantic's error location, less the union tags that are not part of the document."""
    for part in base:
        data = data[part]
    path: list[str | int] = list(base)
    pending_missing = None
    for part in loc:
        if (isinstance(data, dict) and part in data) or (
            isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data)
        ):
            path.append(part)
            data = data[part]
        elif (
            isinstance(part, str)
            and isinstance(data, dict)
            and part.isidentifier()
            and not part[0].isupper()
        ):
            pending_missing = part
    if pending_missing is not None:
        path.append(pending_missing)
    return tuple(path)


def _fields_at(model: type[BaseModel], path: Sequence[str | int]) -> set[str]:
    """The field names a model accepts at `path` in the document, for did-you-mean hints."""
    current: Any = model
    remaining = list(path)
    while True:
        models = _models_in(current)
        if not remaining:
            return {field.alias or name for m in models for name, field in m.model_fields.items()}
        part = remaining.pop(0)
        if isinstance(part, int):
            continue  # an item of a tuple field: _models_in already looks inside tuples
        annotations = [m.model_fields[part].annotation for m in models if part in m.model_fields]
        annotations += [
            field.annotation
            for m in models
            for field in m.model_fields.values()
            if field.alias == part
        ]
        if not annotations:
            return set()
        if any(typing.get_origin(a) is dict for a in annotations) and remaining:
            remaining.pop(0)
            annotations = [
                typing.get_args(a)[1] for a in annotations if typing.get_origin(a) is dict
            ]
        current = annotations


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, list):
        return [m for a in annotation for m in _models_in(a)]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType, tuple):
        return [m for a in typing.get_args(annotation) if a is not Ellipsis for m in _models_in(a)]
    return []


class _Compiler:
    def __init__(self, located: Located, spec: RuleFileSpec) -> None:
        self.located = located
        self.spec = spec
        self.problems: list[Problem] = []
        self.metric_labels: dict[str, frozenset[str] | None] = {}

    def problem(self, path: tuple[str | int, ...], message: str, key: bool = False) -> None:
        self.problems.append(self.located.problem(path, message, key))

    def compile(self) -> RuleSet:
        metrics = self.metrics()
        rules = []
        names: dict[str, int] = {}
        for index in range(len(self.spec.rules)):
            try:
                rule_spec = validate(RuleSpec, self.located, ("rules", index))
            except ConfigError as error:
                self.problems.extend(error.problems)
                continue
            if rule_spec.name in names:
                self.problem(
                    ("rules", index, "name"),
                    f"rule {rule_spec.name!r} is already defined at rules[{names[rule_spec.name]}]",
                )
            names.setdefault(rule_spec.name, index)
            rule = self.rule(index, rule_spec)
            if rule is not None:
                rules.append(rule)
        budgets = [self.budget(i, b) for i, b in enumerate(self.spec.budgets)]
        seen_budgets: set[str] = set()
        for index, budget_spec in enumerate(self.spec.budgets):
            if budget_spec.name in seen_budgets:
                self.problem(
                    ("budgets", index, "name"), f"budget {budget_spec.name!r} is defined twice"
                )
            seen_budgets.add(budget_spec.name)
        if self.problems:
            raise ConfigError(self.problems)
        return RuleSet(
            metrics=tuple(metrics),
            rules=tuple(rules),
            budgets=tuple(b for b in budgets if b is not None),
            max_sample_age=self.spec.settings.max_sample_age,
            files=(self.located.file,),
        )

    def metrics(self) -> list[MetricQuery]:
        queries = []
        for name, metric in self.spec.metrics.items():
            query = metric if isinstance(metric, str) else metric.query
            path: tuple[str | int, ...] = (
                ("metrics", name) if isinstance(metric, str) else ("metrics", name, "query")
            )
            try:
                inferred = promql.result_labels(query)
            except promql.PromQLError as error:
                self.problem(path, str(error))
                continue
            declared = (
                None
                if isinstance(metric, str) or metric.labels is None
                else frozenset(metric.labels)
            )
            if declared is not None and inferred is not None and not declared <= inferred:
                missing = ", ".join(sorted(declared - inferred))
                self.problem(
                    ("metrics", name, "labels"),
                    f"the query's result series cannot carry {missing}; they have only "
                    f"{', '.join(sorted(inferred)) or 'no labels'}",
                )
            self.metric_labels[name] = declared if declared is not None else inferred
            queries.append(MetricQuery(name, query))
        return queries

    def rule(self, index: int, spec: RuleSpec) -> Rule | None:
        base: tuple[str | int, ...] = ("rules", index)
        if spec.metric not in self.metric_labels and spec.metric not in self.spec.metrics:
            hint = did_you_mean(spec.metric, self.spec.metrics)
            self.problem(
                (*base, "metric"),
                f"no metric named {spec.metric!r} is declared under metrics:{hint}",
            )
            return None
        objective = self.objective(base, spec)
        action = self.action((*base, "action"), spec)
        if action is None:
            return None
        if spec.objective is not None:
            if objective is None:
                return None
            condition = Condition(Comparison.ABOVE, objective.at_most, objective.at_most)
        elif spec.above is not None:
            condition = Condition(
                Comparison.ABOVE,
                spec.above,
                spec.clear_below if spec.clear_below is not None else spec.above,
            )
        else:
            assert spec.below is not None
            condition = Condition(
                Comparison.BELOW,
                spec.below,
                spec.clear_above if spec.clear_above is not None else spec.below,
            )
        line, _ = self.located.position((*base, "name"))
        return Rule(
            name=spec.name,
            metric=spec.metric,
            condition=condition,
            action=action,
            for_=spec.for_,
            keep_firing_for=spec.keep_firing_for,
            cooldown=spec.cooldown,
            enabled=spec.enabled,
            labels=labels_of(spec.labels),
            annotations=labels_of(spec.annotations),
            location=SourceLocation(self.located.file, line),
            objective=objective,
        )

    def objective(self, base: tuple[str | int, ...], spec: RuleSpec) -> Objective | None:
        given = spec.objective
        if given is None:
            return None
        path = (*base, "objective")
        known = True
        for field_name in ("load", "utilisation"):
            metric = getattr(given, field_name)
            if metric not in self.spec.metrics:
                hint = did_you_mean(metric, self.spec.metrics)
                self.problem(
                    (*path, field_name),
                    f"no metric named {metric!r} is declared under metrics:{hint}",
                )
                known = False
        if spec.action.scale is None:
            self.problem(
                (*base, "action"),
                "an objective scales a workload: write the action as scale: "
                "(deployment or statefulset), without factor, step or proportional_to",
            )
            known = False
        if not known:
            return None
        return Objective(
            at_most=given.at_most,
            aim=given.aim,
            load=given.load,
            utilisation=given.utilisation,
            settle=given.settle,
            lead=given.lead,
            fallback_utilisation=given.fallback_utilisation,
        )

    def template(self, path: tuple[str | int, ...], text: str, metric: str) -> Template | None:
        if "{" not in text and "}" not in text:
            return Template((text,))  # no placeholder: most names in large files
        try:
            template = Template.parse(text)
        except TemplateError as error:
            self.problem(path, str(error))
            return None
        literal = "".join(template.parts[0::2])
        if "{{" in literal or "}}" in literal:
            self.problem(
                path,
                f"{text!r} has an unclosed placeholder; write {{{{ labels.NAME }}}} with both "
                "braces",
            )
            return None
        available = self.metric_labels.get(metric)
        if available is not None:
            for label in template.label_names:
                if label not in available:
                    have = ", ".join(sorted(available)) or "no labels"
                    self.problem(
                        path,
                        f"label {label!r} cannot be on a series of {metric!r} "
                        f"(its query gives {have}){did_you_mean(label, available)}",
                    )
                    return None
        return template

    def action(self, path: tuple[str | int, ...], rule: RuleSpec) -> Action | None:
        spec = rule.action
        fields: ChangeFields
        if spec.scale is not None:
            scale: ScaleSpec = spec.scale
            fields, path = scale, (*path, "scale")
            kind = KnobKind.DEPLOYMENT if scale.deployment is not None else KnobKind.STATEFULSET
            name_field = "deployment" if scale.deployment is not None else "statefulset"
            name = self.template(
                (*path, name_field), scale.deployment or scale.statefulset or "", rule.metric
            )
            namespace = self.template((*path, "namespace"), scale.namespace, rule.metric)
            if name is None or namespace is None:
                return None
            # A static name is known now: one Kubernetes refuses would fail every write.
            for field_name, template, what in (
                (name_field, name, name_field),
                ("namespace", namespace, "namespace"),
            ):
                refused = (
                    kubernetes_name_problem(what, template.parts[0]) if template.is_static else None
                )
                if refused is not None:
                    self.problem((*path, field_name), refused)
                    return None
            knob = KnobTemplate(kind, name, namespace)
            integer, default = True, None
        else:
            assert spec.set_key is not None
            key: SetKeySpec = spec.set_key
            fields, path = key, (*path, "set_key")
            key_name = self.template((*path, "key"), key.key, rule.metric)
            key_field = self.template((*path, "field"), key.field, rule.metric)
            if key_name is None or key_field is None:
                return None
            knob = KnobTemplate(KnobKind.CONFIG_KEY, key_name, field=key_field)
            integer, default = key.integer, key.default
            if default is not None and not key.min <= default <= key.max:
                self.problem(
                    (*path, "default"),
                    f"default {default:g} is outside min {key.min:g} and max {key.max:g}",
                )
                return None
        if fields.min > fields.max:
            self.problem(
                (*path, "min"), f"min ({fields.min:g}) is greater than max ({fields.max:g})"
            )
            return None
        if fields.factor is not None and not math.isfinite(fields.factor * fields.max):
            self.problem(
                (*path, "factor"),
                f"factor {fields.factor:g} times max {fields.max:g} is too large to compute "
                "with; a factor is a ratio such as 1.5 (up) or 0.8 (down)",
            )
            return None
        given = fields.changes_given
        if rule.objective is not None and given:
            self.problem(
                (*path, given[0]),
                f"the rule's objective decides the value: remove {given[0]}, or the objective",
            )
            return None
        if rule.objective is None and not given:
            self.problem(path, "give exactly one of factor, step or proportional_to")
            return None
        if rule.objective is not None:
            change = Change(ChangeMode.OBJECTIVE, 0.0)
        elif fields.factor is not None:
            change = Change(ChangeMode.FACTOR, fields.factor)
        elif fields.step is not None:
            change = Change(ChangeMode.STEP, fields.step)
        else:
            assert fields.proportional_to is not None
            change = Change(ChangeMode.PROPORTIONAL, fields.proportional_to)
        limits = []
        for limit in fields.rate_limits:
            if limit.percent is not None:
                limits.append(RateLimit(RateLimitKind.PERCENT, limit.percent, limit.period))
            else:
                amount = limit.pods if limit.pods is not None else limit.change
                assert amount is not None
                limits.append(RateLimit(RateLimitKind.ABSOLUTE, amount, limit.period))
        return Action(
            knob=knob,
            change=change,
            minimum=fields.min,
            maximum=fields.max,
            integer=integer,
            rate_limits=tuple(limits),
            select=SelectPolicy(fields.select),
            stabilization_window=fields.stabilization_window,
            default=default,
            stabilize_increases=rule.objective is None,
        )

    def budget(self, index: int, spec: BudgetSpec) -> Budget | None:
        terms = []
        for term_index, term in enumerate(spec.terms):
            knobs = [_knob(k) for k in term]
            if len(set(knobs)) != len(knobs):
                self.problem(
                    ("budgets", index, "terms", term_index),
                    "a knob appears twice in one term; write its square as two knobs is not supported",
                )
                return None
            terms.append(tuple(knobs))
        for term_index, term in enumerate(spec.terms):
            for knob_index, knob in enumerate(terms[term_index]):
                if knob.kind is KnobKind.CONFIG_KEY:
                    continue
                refused = kubernetes_name_problem("namespace", knob.namespace) or (
                    kubernetes_name_problem(knob.kind.value.lower(), knob.name)
                )
                if refused:
                    field_name = "deployment" if term[knob_index].deployment else "statefulset"
                    self.problem(
                        ("budgets", index, "terms", term_index, knob_index, field_name), refused
                    )
                    return None
        line, _ = self.located.position(("budgets", index, "name"))
        return Budget(
            spec.name, spec.limit, tuple(terms), location=SourceLocation(self.located.file, line)
        )


def _knob(spec: KnobSpec) -> KnobRef:
    if spec.key is not None:
        return KnobRef(KnobKind.CONFIG_KEY, spec.key, field=spec.field)
    kind = KnobKind.DEPLOYMENT if spec.deployment is not None else KnobKind.STATEFULSET
    namespace, _, name = (spec.deployment or spec.statefulset or "").partition("/")
    return KnobRef(kind, name, namespace)


def merge(rulesets: Sequence[RuleSet]) -> RuleSet:
    """One RuleSet from several files: rule, metric and budget names must not clash."""
    problems: list[Problem] = []
    metrics: dict[str, tuple[MetricQuery, str]] = {}
    rules: dict[str, Rule] = {}
    budgets: dict[str, tuple[Budget, str]] = {}
    for ruleset in rulesets:
        file = ruleset.files[0] if ruleset.files else "<rules>"
        for query in ruleset.metrics:
            if query.name in metrics and metrics[query.name][0].expr != query.expr:
                problems.append(
                    Problem(
                        file,
                        1,
                        1,
                        f"metrics.{query.name}",
                        f"metric {query.name!r} is declared with another query in {metrics[query.name][1]}",
                    )
                )
            metrics.setdefault(query.name, (query, file))
        for rule in ruleset.rules:
            if rule.name in rules:
                where = rules[rule.name].location
                line = rule.location.line if rule.location else 1
                problems.append(
                    Problem(
                        file, line, 1, "name", f"rule {rule.name!r} is already defined at {where}"
                    )
                )
            rules.setdefault(rule.name, rule)
        for budget in ruleset.budgets:
            if budget.name in budgets:
                problems.append(
                    Problem(
                        file,
                        1,
                        1,
                        "budgets",
                        f"budget {budget.name!r} is already defined in {budgets[budget.name][1]}",
                    )
                )
            budgets.setdefault(budget.name, (budget, file))
    if problems:
        raise ConfigError(problems)
    return RuleSet(
        metrics=tuple(q for q, _ in metrics.values()),
        rules=tuple(rules.values()),
        budgets=tuple(b for b, _ in budgets.values()),
        max_sample_age=min((r.max_sample_age for r in rulesets), default=300.0),
        files=tuple(f for r in rulesets for f in r.files),
    )
