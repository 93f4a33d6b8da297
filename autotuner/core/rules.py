"""Compiled rules: what the loader hands the engine once a rule file has been validated.

Durations are seconds, thresholds plain floats; nothing here knows about YAML.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from autotuner.core.model import Direction, KnobKind, KnobRef, Labels, MetricQuery

_PLACEHOLDER = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
_LABEL_REF = re.compile(r"labels\.([A-Za-z_][A-Za-z0-9_]*)$")


class TemplateError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Template:
    """A string with `{{ labels.NAME }}` placeholders, filled by plain substitution.

    Nothing in a template is ever evaluated: a placeholder names a label, and its value is
    copied in as it is.
    """

    parts: tuple[str, ...]  # literal, label name, literal, label name, ..., literal

    @staticmethod
    def parse(text: str) -> Template:
        parts: list[str] = []
        position = 0
        for match in _PLACEHOLDER.finditer(text):
            ref = _LABEL_REF.match(match.group(1))
            if ref is None:
                raise TemplateError(
                    f"placeholder {match.group(0)!r} is not a label reference; "
                    "write {{ labels.NAME }}"
                )
            parts.append(text[position : match.start()])
            parts.append(ref.group(1))
            position = match.end()
        parts.append(text[position:])
        return Template(tuple(parts))

    @property
    def label_names(self) -> tuple[str, ...]:
        return self.parts[1::2]

    @property
    def is_static(self) -> bool:
        return len(self.parts) == 1

    def render(self, labels: Mapping[str, str]) -> str:
        if self.is_static:
            return self.parts[0]
        out = []
        for index, part in enumerate(self.parts):
            if index % 2 == 0:
                out.append(part)
            elif part in labels:
                out.append(labels[part])
            else:
                raise TemplateError(f"the series has no label {part!r}")
        return "".join(out)


# How many label sets a knob template remembers the knob of; past it, it starts over, so that
# series that come and go (pods, say) cannot grow the memo without bound.
KNOB_MEMO_LIMIT = 1 << 14


@dataclass(frozen=True, slots=True)
class KnobTemplate:
    kind: KnobKind
    name: Template
    namespace: Template = Template(("",))
    field: Template = Template(("",))
    # The knob each label set named: the same series come back tick after tick, and rendering
    # is pure, so each is rendered once. Not part of the template's value.
    _named: dict[Labels, KnobRef | str] = dataclasses.field(
        init=False, repr=False, compare=False, default_factory=dict
    )

    def render(self, labels: Mapping[str, str]) -> KnobRef:
        """The knob a series names; raises TemplateError when a placeholder's label is absent."""
        return KnobRef(
            self.kind,
            self.name.render(labels),
            self.namespace.render(labels),
            self.field.render(labels),
        )

    def knob_for(self, labels: Labels) -> KnobRef | str:
        """The knob a series' labels name, or why they name none (memoized `render`)."""
        named = self._named.get(labels)
        if named is None:
            try:
                named = self.render(dict(labels))
            except TemplateError as error:
                named = str(error)
            if len(self._named) >= KNOB_MEMO_LIMIT:
                self._named.clear()
            self._named[labels] = named
        return named

    @property
    def label_names(self) -> tuple[str, ...]:
        return self.name.label_names + self.namespace.label_names + self.field.label_names

    @property
    def is_static(self) -> bool:
        return self.name.is_static and self.namespace.is_static and self.field.is_static


class Comparison(StrEnum):
    ABOVE = "above"
    BELOW = "below"


@dataclass(frozen=True, slots=True)
class Condition:
    """`above`/`below` a threshold, with an optional clear threshold for hysteresis.

    A target starts firing when the value crosses `threshold`, and keeps firing until it
    crosses back over `clear` (which defaults to `threshold`), like a thermostat.
    """

    comparison: Comparison
    threshold: float
    clear: float
    # Derived once: the comparison runs for every target of every tick.
    above: bool = dataclasses.field(init=False, repr=False, compare=False, default=True)

    def __post_init__(self) -> None:
        object.__setattr__(self, "above", self.comparison is Comparison.ABOVE)

    def starts(self, value: float) -> bool:
        return value > self.threshold if self.above else value < self.threshold

    def holds(self, value: float) -> bool:
        return value > self.clear if self.above else value < self.clear


class ChangeMode(StrEnum):
    FACTOR = "factor"  # current x amount
    STEP = "step"  # current + amount
    PROPORTIONAL = "proportional"  # current x value / amount, as the HPA computes replicas
    OBJECTIVE = "objective"  # the rule's objective and its learned model decide the value


# The HPA's default tolerance: a ratio within 10% of 1 changes nothing.
PROPORTIONAL_TOLERANCE = 0.1


@dataclass(frozen=True, slots=True)
class Change:
    mode: ChangeMode
    amount: float
    # Derived once: the direction this change always moves in; None when the metric decides.
    direction: Direction | None = dataclasses.field(
        init=False, repr=False, compare=False, default=None
    )

    def __post_init__(self) -> None:
        if self.mode is ChangeMode.FACTOR:
            direction: Direction | None = Direction.UP if self.amount > 1 else Direction.DOWN
        elif self.mode is ChangeMode.STEP:
            direction = Direction.UP if self.amount > 0 else Direction.DOWN
        else:
            direction = None
        object.__setattr__(self, "direction", direction)

    @property
    def describe(self) -> str:
        return {
            ChangeMode.FACTOR: f"x{self.amount:g}",
            ChangeMode.STEP: f"{self.amount:+g}",
            ChangeMode.PROPORTIONAL: f"proportional to {self.amount:g}",
            ChangeMode.OBJECTIVE: "to the objective",
        }[self.mode]

    def propose(self, current: float, value: float, integer: bool) -> float:
        if self.mode is ChangeMode.FACTOR:
            raw = current * self.amount
        elif self.mode is ChangeMode.STEP:
            raw = current + self.amount
        else:
            ratio = value / self.amount
            if abs(ratio - 1.0) <= PROPORTIONAL_TOLERANCE:
                return current
            raw = current * ratio
        if not integer:
            return raw
        # Round away from the current value so that a small factor still moves an integer knob.
        return float(math.ceil(raw - 1e-9) if raw > current else math.floor(raw + 1e-9))


class RateLimitKind(StrEnum):
    ABSOLUTE = "absolute"  # `Pods` in an HPA policy: units per period
    PERCENT = "percent"


class SelectPolicy(StrEnum):
    MAX = "max"  # the policy allowing the largest change wins, as in the HPA
    MIN = "min"


@dataclass(frozen=True, slots=True)
class RateLimit:
    kind: RateLimitKind
    value: float
    period: float


@dataclass(frozen=True, slots=True)
class Action:
    knob: KnobTemplate
    change: Change
    minimum: float
    maximum: float
    integer: bool = True
    rate_limits: tuple[RateLimit, ...] = ()
    select: SelectPolicy = SelectPolicy.MAX
    stabilization_window: float = 0.0
    default: float | None = None
    # Whether the stabilization window also holds back increases (threshold rules) or only
    # decreases (objective rules, as the HPA's default scale-up has no window).
    stabilize_increases: bool = True
    # Derived once: every decision on this action explains its bounds.
    bounds_note: str = dataclasses.field(init=False, repr=False, compare=False, default="")

    def __post_init__(self) -> None:
        object.__setattr__(self, "bounds_note", f"min {self.minimum:g}, max {self.maximum:g}")


@dataclass(frozen=True, slots=True)
class Objective:
    """Keep `metric` at or under `at_most`, steering to `aim`, by a learned capacity model.

    `load` names the metric of the requests per second the target serves, `utilisation` the
    metric of its replicas' mean utilisation (0..1); both are joined to the objective's series
    by their labels. See `autotuner.core.learn.capacity` for the model and its parameters.
    """

    at_most: float
    aim: float
    load: str
    utilisation: str
    settle: float = 360.0
    lead: float = 90.0
    fallback_utilisation: float = 0.7


@dataclass(frozen=True, slots=True)
class SourceLocation:
    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    metric: str
    condition: Condition
    action: Action
    for_: float = 0.0
    keep_firing_for: float = 0.0
    cooldown: float = 0.0
    enabled: bool = True
    labels: Labels = ()
    annotations: Labels = ()
    location: SourceLocation | None = None
    # A rule with an objective is always in control of its knob: its condition is the SLO
    # (`metric` above `at_most`) and only describes; the capacity model decides.
    objective: Objective | None = None

    @property
    def inputs(self) -> tuple[str, ...]:
        """Every metric this rule reads."""
        if self.objective is None:
            return (self.metric,)
        return (self.metric, self.objective.load, self.objective.utilisation)


@dataclass(frozen=True, slots=True)
class Budget:
    """A shared resource: sum over terms of the product of each term's knobs <= limit.

    `pool_size x api replicas <= max_connections` is one term of two knobs.
    """

    name: str
    limit: float
    terms: tuple[tuple[KnobRef, ...], ...]
    location: SourceLocation | None = dataclasses.field(default=None, compare=False)
    # Derived once: every tick asks which knobs a budget holds.
    knobs: frozenset[KnobRef] = dataclasses.field(
        init=False, repr=False, compare=False, default=frozenset()
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "knobs", frozenset(k for term in self.terms for k in term))


# A sample older than this is stale: Prometheus's own lookback delta.
DEFAULT_MAX_SAMPLE_AGE = 300.0


@dataclass(frozen=True, slots=True)
class RuleSet:
    metrics: tuple[MetricQuery, ...]
    rules: tuple[Rule, ...]
    budgets: tuple[Budget, ...] = ()
    max_sample_age: float = DEFAULT_MAX_SAMPLE_AGE
    files: tuple[str, ...] = field(default=())
    # Derived once per rule set, not once per tick (and not properties: compiled by mypyc, a
    # cached_property would be computed at every access).
    active_rules: tuple[Rule, ...] = field(init=False, repr=False, compare=False)
    rules_by_name: Mapping[str, Rule] = field(init=False, repr=False, compare=False)
    # The metrics that enabled rules use: the only ones worth fetching.
    queries: tuple[MetricQuery, ...] = field(init=False, repr=False, compare=False)
    # How far back any stabilization window looks.
    longest_window: float = field(init=False, repr=False, compare=False)
    # How far back any rate limit counts changes.
    longest_rate_period: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        active = tuple(rule for rule in self.rules if rule.enabled)
        used = {metric for rule in active for metric in rule.inputs}
        derived = {
            "active_rules": active,
            "rules_by_name": {rule.name: rule for rule in self.rules},
            "queries": tuple(query for query in self.metrics if query.name in used),
            "longest_window": max((r.action.stabilization_window for r in self.rules), default=0.0),
            "longest_rate_period": max(
                (p.period for r in self.rules for p in r.action.rate_limits), default=0.0
            ),
        }
        for name, value in derived.items():
            object.__setattr__(self, name, value)

    def metric(self, name: str) -> MetricQuery:
        for query in self.metrics:
            if query.name == name:
                return query
        raise KeyError(name)
