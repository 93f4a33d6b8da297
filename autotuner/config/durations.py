"""Durations as Prometheus writes them: `1h30m`, `90s`, `500ms`, `0`."""

from __future__ import annotations

import functools
import math
import re

_UNITS = {
    "y": 365 * 86400.0,
    "w": 7 * 86400.0,
    "d": 86400.0,
    "h": 3600.0,
    "m": 60.0,
    "s": 1.0,
    "ms": 0.001,
}
_DURATION = re.compile(
    r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$"
)


# Rule files repeat a few durations (1m, 5m) tens of thousands of times.
@functools.lru_cache(maxsize=1024)
def parse_duration(text: str) -> float:
    """Seconds in a Prometheus duration; ValueError with the accepted form otherwise."""
    text = text.strip()
    if text == "0":
        return 0.0
    match = _DURATION.match(text)
    if not text or match is None or not any(match.groups()):
        raise ValueError(
            f"{text!r} is not a duration; write it as Prometheus does, e.g. 30s, 5m, 1h30m, 500ms"
        )
    try:
        seconds = sum(
            int(amount) * _UNITS[unit]
            for amount, unit in zip(
                match.groups(), ("y", "w", "d", "h", "m", "s", "ms"), strict=True
            )
            if amount
        )
    except OverflowError:
        seconds = math.inf
    if not math.isfinite(seconds):
        raise ValueError(f"{text[:40]!r} is too long a duration to compute with")
    return seconds


def format_duration(seconds: float) -> str:
    if seconds == 0:
        return "0s"
    parts = []
    remaining = seconds
    for unit in ("d", "h", "m", "s"):
        size = _UNITS[unit]
        count = int(remaining // size)
        if count:
            parts.append(f"{count}{unit}")
            remaining -= count * size
    millis = round(remaining * 1000)
    if millis:
        parts.append(f"{millis}ms")
    return "".join(parts)
