"""PromQL as the rule files use it: parsed by a real PromQL parser, and the labels that a
query's result series can carry worked out where the query's shape says.

Knowing the labels lets `autotuner check` reject a template such as `{{ labels.deployment }}`
on a query whose result cannot have that label, before the rule ever runs.
"""

from __future__ import annotations

from typing import Any

import promql_parser

# Functions whose result keeps the labels of their vector argument (minus the metric name).
_LABEL_KEEPING = {
    "abs",
    "absent_over_time",
    "avg_over_time",
    "ceil",
    "changes",
    "clamp",
    "clamp_max",
    "clamp_min",
    "count_over_time",
    "delta",
    "deriv",
    "exp",
    "floor",
    "holt_winters",
    "idelta",
    "increase",
    "irate",
    "last_over_time",
    "ln",
    "log10",
    "log2",
    "max_over_time",
    "min_over_time",
    "predict_linear",
    "present_over_time",
    "quantile_over_time",
    "rate",
    "resets",
    "round",
    "sort",
    "sort_desc",
    "sqrt",
    "stddev_over_time",
    "stdvar_over_time",
    "sum_over_time",
    "timestamp",
    "double_exponential_smoothing",
    "sgn",
    "mad_over_time",
}


class PromQLError(ValueError):
    pass


def parse(expr: str) -> Any:
    try:
        return promql_parser.parse(expr)
    except ValueError as error:
        raise PromQLError(f"PromQL does not parse: {error}") from None


def result_labels(expr: str) -> frozenset[str] | None:
    """The labels every result series has, or None when the query's shape does not say."""
    return _labels(parse(expr))


def _labels(node: Any) -> frozenset[str] | None:
    if isinstance(node, promql_parser.NumberLiteral):
        return frozenset()
    if isinstance(
        node, promql_parser.ParenExpr | promql_parser.UnaryExpr | promql_parser.SubqueryExpr
    ):
        return _labels(node.expr)
    if isinstance(node, promql_parser.AggregateExpr):
        return _aggregate(node)
    if isinstance(node, promql_parser.Call):
        return _call(node)
    if isinstance(node, promql_parser.BinaryExpr):
        return _binary(node)
    return None


def _aggregate(node: Any) -> frozenset[str] | None:
    op = str(node.op)
    if op in ("topk", "bottomk", "limitk", "limit_ratio"):
        return _labels(node.expr)
    modifier = node.modifier
    if modifier is None:
        return frozenset()
    if modifier.type == promql_parser.AggModifierType.By:
        extra = {"value"} if op == "count_values" and node.param is not None else set()
        return frozenset(modifier.labels) | frozenset(extra)
    return None


def _call(node: Any) -> frozenset[str] | None:
    name = node.func.name
    if name == "histogram_quantile":
        inner = _labels(node.args[1])
        return None if inner is None else inner - {"le"}
    if name in ("label_replace", "label_join"):
        inner = _labels(node.args[0])
        destination = getattr(node.args[1], "val", None)
        return None if inner is None or destination is None else inner | {destination}
    if name in ("scalar", "time", "pi", "vector"):
        return frozenset()
    if name in _LABEL_KEEPING:
        for arg in node.args:
            if not isinstance(arg, promql_parser.NumberLiteral | promql_parser.StringLiteral):
                return _labels(arg)
    return None


def _binary(node: Any) -> frozenset[str] | None:
    left, right = _labels(node.lhs), _labels(node.rhs)
    if isinstance(node.lhs, promql_parser.NumberLiteral):
        return right
    if isinstance(node.rhs, promql_parser.NumberLiteral):
        return left
    modifier = node.modifier
    if modifier is None or modifier.matching is None:
        return left
    cardinality = modifier.card
    matching = frozenset(modifier.matching.labels)
    on = modifier.matching.type == promql_parser.LabelModifierType.Include
    if cardinality == promql_parser.VectorMatchCardinality.OneToOne:
        if on:
            return matching
        return None if left is None else left - matching
    if cardinality == promql_parser.VectorMatchCardinality.ManyToOne:
        return None if left is None else left | frozenset(modifier.group_labels or ())
    if cardinality == promql_parser.VectorMatchCardinality.OneToMany:
        return None if right is None else right | frozenset(modifier.group_labels or ())
    return None
