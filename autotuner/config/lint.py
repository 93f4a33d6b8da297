"""Lint warnings for a sound rule set, in the manner of `promtool check rules --lint`.

A rule set that loads is valid; these are the things in it that are valid but almost
certainly not what was meant: a budget that limits nothing, a budget its own minimums
break, a scale-up rule that can never raise, and two rules that push one knob up and down
with nothing to damp them. `autotuner check` prints them as warnings; `--lint-fatal` makes
them fail the check (exit 3, as promtool).
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterator

from autotuner.config.errors import Problem
from autotuner.core.model import Direction, KnobKind, KnobRef
from autotuner.core.rules import Budget, KnobTemplate, Rule, RuleSet, Template

# RFC 1123, as Kubernetes validates object names (a DNS subdomain) and namespaces (a label).
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def kubernetes_name_problem(kind: str, name: str) -> str | None:
    """Why Kubernetes would refuse `name` for a namespace or a workload, or None."""
    if kind == "namespace":
        if len(name) <= 63 and _DNS_LABEL.fullmatch(name):
            return None
        return (
            f"namespace {name!r} is not a name Kubernetes accepts: at most 63 lowercase "
            "letters, digits and '-', starting and ending with a letter or digit (RFC 1123 label)"
        )
    if len(name) <= 253 and _DNS_SUBDOMAIN.fullmatch(name):
        return None
    return (
        f"{kind} name {name!r} is not a name Kubernetes accepts: at most 253 lowercase "
        "letters, digits, '-' and '.', starting and ending with a letter or digit "
        "(RFC 1123 subdomain)"
    )


def lint(ruleset: RuleSet) -> tuple[Problem, ...]:
    """Every lint warning of a rule set, in file order."""
    rules = ruleset.active_rules
    warnings = [
        *_budget_warnings(ruleset.budgets, rules),
        *_rule_warnings(rules),
        *_opposing_rules(rules),
    ]
    return tuple(sorted(warnings, key=lambda p: (p.file, p.line, p.column, p.message)))


def _rule_problem(rule: Rule, field: str, message: str) -> Problem:
    file, line = (rule.location.file, rule.location.line) if rule.location else ("<rules>", 1)
    return Problem(file, line, 1, f"rule {rule.name}: {field}", message)


def _budget_problem(budget: Budget, message: str) -> Problem:
    location = budget.location
    file, line = (location.file, location.line) if location else ("<rules>", 1)
    return Problem(file, line, 1, f"budget {budget.name}", message)


def _describe(knob: KnobRef) -> str:
    if knob.kind is KnobKind.CONFIG_KEY:
        return f"key {knob.name!r}" + (f" field {knob.field!r}" if knob.field else "")
    return f"{knob.kind.value.lower()} {knob.namespace}/{knob.name}"


@functools.lru_cache(maxsize=4096)
def _pattern(template: Template) -> re.Pattern[str]:
    parts = [re.escape(p) if i % 2 == 0 else ".+" for i, p in enumerate(template.parts)]
    return re.compile("".join(parts))


def _names(template: KnobTemplate, knob: KnobRef) -> bool:
    """Whether some series could render `template` as `knob`."""
    return (
        template.kind is knob.kind
        and _pattern(template.name).fullmatch(knob.name) is not None
        and _pattern(template.namespace).fullmatch(knob.namespace) is not None
        and _pattern(template.field).fullmatch(knob.field) is not None
    )


def _budget_warnings(budgets: tuple[Budget, ...], rules: tuple[Rule, ...]) -> Iterator[Problem]:
    for budget in budgets:
        lowest: dict[KnobRef, float] = {}
        for knob in sorted(budget.knobs):
            acting = [r for r in rules if _names(r.action.knob, knob)]
            if not acting:
                yield _budget_problem(
                    budget,
                    f"no enabled rule acts on {_describe(knob)}, so the budget limits nothing "
                    "there; check the name against the rules' actions, or remove it",
                )
            else:
                lowest[knob] = min(r.action.minimum for r in acting)
        # A knob no rule moves is left out: its value is whatever it is, not a minimum.
        floor = math.fsum(
            math.prod(lowest[k] for k in term)
            for term in budget.terms
            if all(k in lowest for k in term)
        )
        if floor > budget.limit:
            yield _budget_problem(
                budget,
                f"the rules' minimums alone use {floor:g} of the limit {budget.limit:g}, so "
                "the budget is broken whatever the rules do; raise the limit or lower the "
                "rules' min",
            )


def _rule_warnings(rules: tuple[Rule, ...]) -> Iterator[Problem]:
    for rule in rules:
        action = rule.action
        if action.maximum == 0 and Direction.UP in _directions(rule):
            yield _rule_problem(
                rule,
                "max",
                "0 on a rule that raises its knob: it can never raise it above 0; "
                "give the highest value it may set",
            )


def _directions(rule: Rule) -> frozenset[Direction]:
    direction = rule.action.change.direction
    # Proportional changes and objectives follow the metric, so they move both ways.
    return frozenset((Direction.UP, Direction.DOWN) if direction is None else (direction,))


_BOTH = (Direction.DOWN, Direction.UP)
_OPPOSITE = {Direction.UP: Direction.DOWN, Direction.DOWN: Direction.UP}


def _opposing_rules(rules: tuple[Rule, ...]) -> Iterator[Problem]:
    """Each rule that can undo an earlier rule on the same knob (the same static knob or the
    same template), neither having a stabilization window: linear in the rules, as a file
    may hold tens of thousands."""
    # Per knob, the first earlier rule without a window that can raise it, and that can lower it.
    earlier: dict[KnobTemplate, dict[Direction, Rule]] = {}
    for rule in rules:
        if rule.action.stabilization_window > 0:
            continue
        knob = rule.action.knob
        seen = earlier.setdefault(knob, {})
        directions = _directions(rule)
        opposite = next(
            (seen[_OPPOSITE[d]] for d in _BOTH if d in directions and _OPPOSITE[d] in seen),
            None,
        )
        if opposite is not None:
            where = f" at {opposite.location}" if opposite.location else ""
            yield _rule_problem(
                rule,
                "action",
                f"this rule and {opposite.name!r}{where} move the same knob in opposite "
                "directions with no stabilization_window on either, so they can undo each other "
                "tick after tick; give the lowering rule a stabilization_window (the HPA's "
                "default is 5m)",
            )
        for direction in directions:
            seen.setdefault(direction, rule)
