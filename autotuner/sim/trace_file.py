"""Trace files: requests per minute, one row a minute, read for replay and written by a fetch.

The format, as the bundled WorldCup98 trace has it and `autotuner trace fetch` writes it:

    # query: "sum(rate(http_requests_total[1m]))"      <- lines starting with # are comments
    minute_utc,requests                                 <- an optional header row
    2026-11-01 00:00:00,1234.5                          <- the count is the last column

- The last column is the number of requests in the minute. A header whose last column is
  `requests_per_second` says the values are rates instead; they are read as rate x 60.
- When the first column of the first row is a time (ISO 8601, UTC unless it says otherwise),
  every row's must be, each exactly one minute after the one before: a trace with a missing or
  repeated minute would replay time squeezed or stretched, so it is refused with its line.
- Rows without a time column (a bare column of counts) are taken one a minute as they come.
"""

from __future__ import annotations

import csv
import math
import os
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

BUNDLED_TRACES = {"worldcup98": "worldcup98-1998-06-01_06-21.csv"}

# The last column's header when the values are requests per second rather than per minute.
PER_SECOND_HEADER = "requests_per_second"


# A time without an offset is UTC.
_NAIVE_EPOCH = datetime(1970, 1, 1)


class TraceError(ValueError):
    """A trace file that cannot be replayed; the message names the file and line."""


def _parse_minute(text: str) -> float | None:
    """Seconds since the epoch of a time like `1998-06-01 00:00:00` or `2026-11-01T00:00Z`."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    if moment.tzinfo is None:
        return (moment - _NAIVE_EPOCH).total_seconds()
    return moment.timestamp()


def format_minute(epoch_seconds: float) -> str:
    return datetime.fromtimestamp(epoch_seconds, UTC).strftime("%Y-%m-%d %H:%M:%S")


def read_trace_csv(path: Path) -> tuple[float, ...]:
    """Requests per minute, in order; TraceError names the file and line of the first problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise TraceError(f"{path}: cannot read the trace: {error.strerror}") from error
    except UnicodeDecodeError as error:
        raise TraceError(f"{path}: not a text file (UTF-8): {error.reason}") from None
    counts: list[float] = []
    per_minute_factor = 1.0
    header_possible = True
    timed: bool | None = None
    previous: float | None = None
    for line_number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        # Quotes are rare in a trace; only a line holding one needs the csv module's parsing.
        row = next(csv.reader([line])) if '"' in line else line.split(",")
        try:
            value = float(row[-1])
        except ValueError:
            if header_possible:
                header_possible = False
                if row[-1].strip() == PER_SECOND_HEADER:
                    per_minute_factor = 60.0
                continue
            raise TraceError(
                f"{path}:{line_number}: the last column must be a request count, got {row[-1]!r}"
            ) from None
        header_possible = False
        if not math.isfinite(value) or value < 0:
            raise TraceError(
                f"{path}:{line_number}: a request count must be >= 0, got {row[-1].strip()}"
            )
        minute = _parse_minute(row[0]) if len(row) >= 2 else None
        if timed is None:
            timed = minute is not None
        elif timed:
            _check_next_minute(path, line_number, row[0], minute, previous)
        previous = minute
        counts.append(value * per_minute_factor)
    if len(counts) < 2:
        raise TraceError(f"{path}: a trace needs at least two minutes of counts")
    return tuple(counts)


def _check_next_minute(
    path: Path, line_number: int, text: str, minute: float | None, previous: float | None
) -> None:
    if minute is not None and previous is not None and minute - previous == 60.0:
        return
    where = f"{path}:{line_number}"
    if minute is None or previous is None:
        raise TraceError(
            f"{where}: {text.strip()!r} is not a time, as the first row's first column is"
        )
    shown = format_minute(previous)
    if minute <= previous:
        problem = f"does not come after the previous row's {shown}"
    else:
        gap = round((minute - previous) / 60.0 - 1)
        problem = f"comes {minute - previous:g} s after the previous row's {shown}" + (
            f" ({gap} minutes are missing)" if gap >= 1 else ""
        )
    raise TraceError(
        f"{where}: {text.strip()!r} {problem}; a trace has one row per minute "
        "(fill the gap, or drop the time column to replay the rows as they come)"
    )


def bundled_trace(name: str) -> tuple[float, ...]:
    if name not in BUNDLED_TRACES:
        known = ", ".join(sorted(BUNDLED_TRACES))
        raise TraceError(f"no bundled trace named {name!r} (bundled: {known})")
    resource = resources.files("autotuner").joinpath("data", "traces", BUNDLED_TRACES[name])
    with resources.as_file(resource) as path:
        return read_trace_csv(Path(path))


def _count_text(count: float) -> str:
    return f"{count:.3f}".rstrip("0").rstrip(".")


def write_trace_csv(
    path: Path, first_minute: float, counts: Sequence[float], comments: Sequence[str] = ()
) -> None:
    """Write `minute_utc,requests` rows, `comments` first as `# ` lines, all or nothing.

    The rows go to a temporary file beside `path`, which is renamed over it only once complete,
    so an interrupted write leaves the old file (or none), never half of a new one.
    """
    if any(not math.isfinite(c) or c < 0 for c in counts):
        raise ValueError("request counts must be finite and >= 0")
    if any("\n" in comment or "\r" in comment for comment in comments):
        raise ValueError("a comment is one line")
    lines = [f"# {comment}" for comment in comments]
    lines.append("minute_utc,requests")
    lines.extend(
        f"{format_minute(first_minute + 60.0 * index)},{_count_text(count)}"
        for index, count in enumerate(counts)
    )
    descriptor, temporary = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
    )
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write("\n".join(lines) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
