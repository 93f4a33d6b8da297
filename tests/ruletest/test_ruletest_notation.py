"""The series notation agrees with Prometheus's documentation and promtool's parser."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from autotuner.ruletest.notation import (
    Marker,
    NotationError,
    Point,
    SeriesSelector,
    expand_values,
    parse_series,
)

_ = Marker.MISSING
STALE = Marker.STALE


# Every example of the `<series>` section of docs/configuration/unit_testing_rules.md.
@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ("-2+4x3", (-2, 2, 6, 10)),
        (" 1-2x4", (1, -1, -3, -5, -7)),
        (" 1x4", (1, 1, 1, 1, 1)),
        (" 1 _x3 stale", (1, _, _, _, STALE)),
        # The doc's example test file, with the expansions its comments give.
        ("0 0 0 0 0 0 0 0 0 0 0 0 0 0 0", (0,) * 15),
        ("1+0x6 0 0 0 0 0 0 0 0", (1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0)),
        ("10+10x2 30+20x5", (10, 20, 30, 30, 50, 70, 90, 110, 130)),
        ("10+10x7 10+30x4", (10, 20, 30, 40, 50, 60, 70, 80, 10, 40, 70, 100, 130)),
    ],
)
def test_documented_examples(values: str, expected: tuple[Point, ...]) -> None:
    assert expand_values(values) == expected


# The value parts of promtool's own parser tests (promql/parser/parse_test.go, testSeries).
@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ("1 2 3", (1, 2, 3)),
        ("-1 2 3", (-1, 2, 3)),
        ("1 2 3-10x4", (1, 2, 3, -7, -17, -27, -37)),
        ("1 2 3-0x4", (1, 2, 3, 3, 3, 3, 3)),
        ("1 3 _ 5 _x4", (1, 3, _, 5, _, _, _, _)),
        ("1 -1", (1, -1)),
        ("1 +1", (1, 1)),
        ("1 -1 -3-10x4 7 9 +5", (1, -1, -3, -13, -23, -33, -43, 7, 9, 5)),
        ("1 +1 +4 -6 -2 8", (1, 1, 4, -6, -2, 8)),
        ("1 2 3    ", (1, 2, 3)),
    ],
)
def test_promtool_parser_examples(values: str, expected: tuple[Point, ...]) -> None:
    assert expand_values(values) == expected


@pytest.mark.parametrize("values", ["1 3 _ 5 _a4", "-3-3 -3", "-3 -3-3", "-3 _-2", "-3 3+3x4-4"])
def test_promtool_parser_rejections(values: str) -> None:
    with pytest.raises(NotationError):
        expand_values(values)


def test_step_accumulates_as_promtool_does() -> None:
    # promtool adds the step repeatedly, so 0.1 steps carry the usual float error.
    assert expand_values("0.1+0.1x3") == (0.1, 0.2, 0.1 + 0.1 + 0.1, 0.1 + 0.1 + 0.1 + 0.1)


def test_special_values() -> None:
    points = expand_values("Inf -Inf +inf NaN nan Inf+0x1 stale")
    assert points[:3] == (math.inf, -math.inf, math.inf)
    assert all(isinstance(p, float) and math.isnan(p) for p in points[3:5])
    assert points[5:] == (math.inf, math.inf, STALE)


def test_number_forms() -> None:
    assert expand_values(".5 5. 1e3 1E-2 1_000 2.5e+1x1") == (
        0.5,
        5.0,
        1000.0,
        0.01,
        1000.0,
        25.0,
        25.0,
    )


def test_empty_values_are_no_points() -> None:
    assert expand_values("") == ()
    assert expand_values("   ") == ()


def test_zero_repetitions() -> None:
    assert expand_values("_x0") == ()
    assert expand_values("7x0") == (7,)


@pytest.mark.parametrize(
    ("values", "column", "fragment"),
    [
        ("1 2 1m", 4, "bad number"),
        ("1 sum", 2, "'sum' is not a value"),
        ("1 010", 2, "octal"),
        ("5 1+2", 5, "no repetition count"),
        ("1x", 2, "whole number"),
        ("1x2.5", 2, "whole number"),
        ("1 1e400", 2, "too large"),
        ("Stale", 0, "'Stale' is not a value"),
        ("stalex2", 0, "is not a value"),
        ("Infx2", 0, "is not a value"),
        ("1 _3", 2, "'_xN'"),
        ("1 *", 2, "expected a number"),
    ],
)
def test_errors_say_where_and_what(values: str, column: int, fragment: str) -> None:
    with pytest.raises(NotationError) as raised:
        expand_values(values)
    assert raised.value.column == column
    assert fragment in raised.value.message


def test_runaway_expansion_is_refused() -> None:
    with pytest.raises(NotationError, match="more than"):
        expand_values("1x1000000000")


# Property tests.
finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False).map(lambda v: round(v, 3))
small_ints = st.integers(min_value=-10_000, max_value=10_000)
counts = st.integers(min_value=0, max_value=200)


def _literal(value: float) -> str:
    return repr(float(value)).replace("inf", "Inf")


@given(start=finite, step=finite.map(abs), count=counts, sign=st.sampled_from("+-"))
def test_expansion_has_n_plus_one_values(start: float, step: float, count: int, sign: str) -> None:
    points = expand_values(f"{_literal(start)}{sign}{_literal(step)}x{count}")
    assert len(points) == count + 1
    assert points[0] == start
    delta = step if sign == "+" else -step
    for index, point in enumerate(points):
        assert isinstance(point, float)
        assert math.isclose(point, start + index * delta, rel_tol=1e-9, abs_tol=1e-6)


@given(start=small_ints, step=small_ints.map(abs), count=counts, sign=st.sampled_from("+-"))
def test_integer_expansions_are_exact(start: int, step: int, count: int, sign: str) -> None:
    delta = step if sign == "+" else -step
    points = expand_values(f"{start}{sign}{step}x{count}")
    assert points == tuple(float(start + i * delta) for i in range(count + 1))


@given(value=finite, count=counts)
def test_repeat_is_plus_zero(value: float, count: int) -> None:
    literal = _literal(value)
    assert expand_values(f"{literal}x{count}") == expand_values(f"{literal}+0x{count}")
    assert expand_values(f"{literal}x{count}") == (value,) * (count + 1)


@given(count=counts)
def test_missing_expansion_has_n_values(count: int) -> None:
    assert expand_values(f"_x{count}") == (Marker.MISSING,) * count


items = st.one_of(
    small_ints.map(str),
    st.tuples(small_ints, small_ints.map(abs), counts.map(lambda c: c % 20)).map(
        lambda t: f"{t[0]}+{t[1]}x{t[2]}"
    ),
    st.just("_"),
    counts.map(lambda c: f"_x{c % 20}"),
    st.just("stale"),
)


@given(parts=st.lists(items, max_size=12), gap=st.sampled_from([" ", "  ", "\t", " \n "]))
def test_sequence_is_the_concatenation_of_its_items(parts: list[str], gap: str) -> None:
    joined = expand_values(gap.join(parts))
    assert joined == tuple(point for part in parts for point in expand_values(part))


@given(text=st.text(max_size=30))
def test_arbitrary_text_parses_or_raises_notation_error(text: str) -> None:
    try:
        points = expand_values(text)
    except NotationError as error:
        assert 0 <= error.column <= len(text)
    else:
        assert all(isinstance(p, float | Marker) for p in points)


def test_series_selector_forms() -> None:
    assert parse_series('up{job="prometheus", instance="localhost:9090"}') == SeriesSelector(
        "up", (("instance", "localhost:9090"), ("job", "prometheus"))
    )
    assert parse_series("my_metric") == SeriesSelector("my_metric", ())
    assert parse_series("my_metric{}") == SeriesSelector("my_metric", ())
    assert parse_series("my_metric{a='b',}") == SeriesSelector("my_metric", (("a", "b"),))
    assert parse_series('{__name__="m", a="b"}') == SeriesSelector("m", (("a", "b"),))
    assert parse_series('my_metric{a="\\u70ac = torch"}') == SeriesSelector(
        "my_metric", (("a", "炬 = torch"),)
    )
    assert parse_series('m{a="say \\"hi\\""}') == SeriesSelector("m", (("a", 'say "hi"'),))


@pytest.mark.parametrize(
    ("series", "fragment"),
    [
        ('{a="b"}', "no metric name"),
        ('m{a="b"', "expected ',' or '}'"),
        ("m{a=b}", "quoted label value"),
        ('m{a="b", a="c"}', "given twice"),
        ('m{a="b} 1', "not closed"),
        ('m{a="b"} 1', "after the series"),
        ('m{1a="b"}', "label name"),
        ('m{a="\\q"}', "unknown escape"),
    ],
)
def test_series_selector_errors(series: str, fragment: str) -> None:
    with pytest.raises(NotationError, match=fragment.replace("(", r"\(")):
        parse_series(series)
