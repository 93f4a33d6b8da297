"""Prometheus's series notation, as `promtool test rules` reads it.

Two parts make an input series: the series selector (`name{label="value", ...}`) and the values
in expanding notation:

    a+bxn   a, a+b, a+2b ... a+nb   (n+1 values; the step is added n times, as promtool does)
    a-bxn   a, a-b, a-2b ... a-nb
    axn     a repeated n+1 times (shorthand for a+0xn)
    _       no sample at this step
    _xn     n steps without a sample (n, not n+1: a missing sample cannot increment)
    stale   a staleness marker
    Inf, NaN (any case, with an optional sign) are numbers

The grammar follows promtool's parser (promql/parser: lexValueSequence, scanNumber and the
`series_item` rules of generated_parser.y). Where promtool would read an input in a way an SRE
is unlikely to mean, this parser refuses it with an explanation instead of guessing: an
integer with a leading zero (promtool reads `010` as octal 8).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from enum import Enum

from autotuner.core.model import Labels, labels_of

# A guard against a typo such as `1x1000000000` exhausting memory; no rule test needs more.
MAX_POINTS_PER_SERIES = 100_000


class Marker(Enum):
    """A step without a usable value."""

    MISSING = "_"
    STALE = "stale"


Point = float | Marker


class NotationError(ValueError):
    """A series or values string that does not parse; `column` is a 0-based offset into it."""

    def __init__(self, message: str, column: int) -> None:
        super().__init__(message)
        self.message = message
        self.column = column


_SPACE = " \t\r\n"
_DIGITS = r"\d(?:_?\d)*"
# A decimal literal as promtool's lexer and Go's strconv accept it in a series description
# (hexadecimal is disallowed there because `x` means repetition).
_NUMBER = re.compile(rf"(?:{_DIGITS}(?:\.(?:{_DIGITS})?)?|\.{_DIGITS})(?:[eE][+-]?{_DIGITS})?")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_:]*")
_UINT = re.compile(r"\d+")
_SPECIAL_NUMBERS = {"inf": math.inf, "nan": math.nan}


def expand_values(text: str) -> tuple[Point, ...]:
    """Expand a `values:` string into one point per step."""
    points: list[Point] = []
    position = 0
    while True:
        while position < len(text) and text[position] in _SPACE:
            position += 1
        if position >= len(text):
            return tuple(points)
        end = position
        while end < len(text) and text[end] not in _SPACE:
            end += 1
        points.extend(_expand_item(text[position:end], position))
        if len(points) > MAX_POINTS_PER_SERIES:
            raise NotationError(
                f"the values expand to more than {MAX_POINTS_PER_SERIES} points; "
                "a rule test needs far fewer",
                position,
            )
        position = end


def _expand_item(item: str, offset: int) -> list[Point]:
    """One space-separated item: `_`, `_xn`, or a value with an optional expansion."""
    if item == "_":
        return [Marker.MISSING]
    if item.startswith("_x"):
        return [Marker.MISSING] * _repetitions(item, 2, offset)
    if item.startswith("_"):
        raise NotationError(
            f"{item!r}: a missing sample is written '_', or '_xN' for N of them", offset
        )
    start, position = _value(item, 0, offset)
    if position == len(item):
        return [start]
    if item[position] == "x":
        return [start] * (_repetitions(item, position + 1, offset) + 1)
    if item[position] not in "+-":
        raise NotationError(
            f"unexpected {item[position]!r} in {item!r}: expected a space, 'x', '+' or '-'",
            offset + position,
        )
    step, after_step = _unsigned_number(item, position + 1, offset, signed_by=item[position])
    if after_step >= len(item) or item[after_step] != "x":
        raise NotationError(
            f"{item!r} has a step but no repetition count: write it as "
            f"{item[:after_step]}xN (N further values)",
            offset + after_step,
        )
    count = _repetitions(item, after_step + 1, offset)
    if isinstance(start, Marker):
        return [start] * (count + 1)
    values: list[Point] = []
    current = start
    for _ in range(count + 1):
        values.append(current)
        # Accumulated addition, as promtool does, so the values agree bit for bit.
        current += step
    return values


def _value(item: str, position: int, offset: int) -> tuple[Point, int]:
    """A series value: `stale`, or a number with an optional sign."""
    word = _WORD.match(item, position)
    if word is not None and word.group() == "stale":
        return Marker.STALE, word.end()
    if position < len(item) and item[position] in "+-":
        return _unsigned_number(item, position + 1, offset, signed_by=item[position])
    return _unsigned_number(item, position, offset, signed_by="")


def _unsigned_number(item: str, position: int, offset: int, signed_by: str) -> tuple[float, int]:
    sign = -1.0 if signed_by == "-" else 1.0
    word = _WORD.match(item, position)
    if word is not None:
        special = _SPECIAL_NUMBERS.get(word.group().lower())
        if special is None:
            raise NotationError(
                f"{word.group()!r} is not a value: expected a number, Inf, NaN, 'stale' "
                "or '_' (repetition is written without spaces, as 1x3 or 1+2x3)",
                offset + position,
            )
        return sign * special, word.end()
    number = _NUMBER.match(item, position)
    if number is None:
        what = repr(item[position]) if position < len(item) else "the end"
        raise NotationError(
            f"expected a number at {what} in {item!r}", offset + min(position, len(item))
        )
    literal = number.group()
    end = number.end()
    if end < len(item) and item[end] not in "x+-":
        raise NotationError(
            f"bad number {item[position:]!r} in {item!r}: a number ends at a space, "
            "or at 'x', '+' or '-' in an expansion",
            offset + position,
        )
    digits = literal.replace("_", "")
    if len(digits) > 1 and digits[0] == "0" and digits.isdigit():
        raise NotationError(
            f"{literal!r} has a leading zero, which promtool reads as octal; "
            f"write {int(digits)} if that is what you mean",
            offset + position,
        )
    value = float(digits)
    if math.isinf(value):
        raise NotationError(
            f"{literal!r} is too large for a 64-bit float (promtool refuses it too)",
            offset + position,
        )
    return sign * value, end


def _repetitions(item: str, position: int, offset: int) -> int:
    count = _UINT.fullmatch(item, position)
    if count is None:
        raise NotationError(
            f"the repetition count after 'x' in {item!r} must be a whole number, as in 1x3",
            offset + min(position, len(item)),
        )
    repetitions = int(count.group())
    if repetitions >= MAX_POINTS_PER_SERIES:
        raise NotationError(
            f"{item!r} expands to more than {MAX_POINTS_PER_SERIES} points; "
            "a rule test needs far fewer",
            offset,
        )
    return repetitions


@dataclass(frozen=True, slots=True)
class SeriesSelector:
    """A series' identity: its metric name and its labels (without `__name__`)."""

    name: str
    labels: Labels


_METRIC_NAME = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_LABEL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}


def parse_series(text: str) -> SeriesSelector:
    """Parse `name{label="value", ...}`; `{__name__="name", ...}` is accepted too."""
    position = _skip_space(text, 0)
    name = ""
    metric = _METRIC_NAME.match(text, position)
    if metric is not None:
        name = metric.group()
        position = _skip_space(text, metric.end())
    labels: dict[str, str] = {}
    if position < len(text) and text[position] == "{":
        position = _label_set(text, position + 1, labels)
    position = _skip_space(text, position)
    if position != len(text):
        raise NotationError(
            f'unexpected {text[position:]!r} after the series: expected name{{label="value", ...}}',
            position,
        )
    if "__name__" in labels:
        if name and labels["__name__"] != name:
            raise NotationError("the series names two different metrics", 0)
        name = labels.pop("__name__")
    if not name:
        raise NotationError('the series has no metric name: expected name{label="value", ...}', 0)
    return SeriesSelector(name, labels_of(labels))


def _label_set(text: str, position: int, labels: dict[str, str]) -> int:
    """Parse the labels after `{`; return the position after `}`."""
    while True:
        position = _skip_space(text, position)
        if position < len(text) and text[position] == "}":
            return position + 1
        label = _LABEL_NAME.match(text, position)
        if label is None:
            raise NotationError("expected a label name or '}'", position)
        position = _skip_space(text, label.end())
        if position >= len(text) or text[position] != "=":
            raise NotationError(f"expected '=' after the label {label.group()!r}", position)
        value, position = _quoted(text, _skip_space(text, position + 1))
        if label.group() in labels:
            raise NotationError(f"the label {label.group()!r} is given twice", label.start())
        labels[label.group()] = value
        position = _skip_space(text, position)
        if position < len(text) and text[position] == ",":
            position += 1
        elif position >= len(text) or text[position] != "}":
            raise NotationError("expected ',' or '}' after a label", position)


def _quoted(text: str, position: int) -> tuple[str, int]:
    if position >= len(text) or text[position] not in "\"'`":
        raise NotationError("expected a quoted label value", position)
    quote = text[position]
    chars: list[str] = []
    index = position + 1
    while index < len(text):
        char = text[index]
        if char == quote:
            return "".join(chars), index + 1
        if char == "\\" and quote != "`":
            escaped, index = _escape(text, index + 1, quote)
            chars.append(escaped)
            continue
        chars.append(char)
        index += 1
    raise NotationError("the label value's quote is not closed", position)


def _escape(text: str, position: int, quote: str) -> tuple[str, int]:
    if position >= len(text):
        raise NotationError("an escape sequence is not finished", position - 1)
    char = text[position]
    if char in _ESCAPES:
        return _ESCAPES[char], position + 1
    if char in ("\\", quote):
        return char, position + 1
    widths = {"x": 2, "u": 4, "U": 8}
    if char in widths:
        digits = text[position + 1 : position + 1 + widths[char]]
        if len(digits) == widths[char] and all(c in "0123456789abcdefABCDEF" for c in digits):
            code = int(digits, 16)
            if code <= 0x10FFFF and not 0xD800 <= code < 0xE000:
                return chr(code), position + 1 + widths[char]
        raise NotationError(f"a bad \\{char} escape in a label value", position - 1)
    raise NotationError(f"an unknown escape \\{char} in a label value", position - 1)


def _skip_space(text: str, position: int) -> int:
    while position < len(text) and text[position] in _SPACE:
        position += 1
    return position
