"""Structured logs: one JSON object per line, with secrets redacted before anything is written.

Call sites log an event name and fields (autotuner.log_events, which every layer may use):

    log_event(logger, "cycle.done", duration=0.12, decisions=3)

and the formatter writes `{"ts": ..., "level": "info", "logger": ..., "event": "cycle.done",
"duration": 0.12, "decisions": 3}`.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import IO, Any

from autotuner.log_events import FIELDS_ATTRIBUTE, log_event

__all__ = ["REDACTED", "JsonFormatter", "Redactor", "configure_logging", "log_event"]

# Field names whose values are secrets whatever they hold.
_SECRET_NAME = re.compile(r"(password|passwd|token|secret|authorization|api[_-]?key)", re.I)
# `scheme://user:password@host`: the password part of a URL. Linear in the text's length,
# because log lines carry label values of any length: a scheme is tried only where a run of
# scheme characters starts (the lookbehind), and its possessive quantifiers never give back,
# so no run is scanned more than once. The user and the password exclude `/`, so each scan
# after a `://` stops at the next one.
_URL_PASSWORD = re.compile(
    r"(?P<head>(?<![a-z0-9+.-])[0-9+.-]*+[a-z][a-z0-9+.-]*+://[^:/@\s]*+:)"
    r"(?P<secret>[^@/\s]++)(?=@)",
    re.I,
)
_BEARER = re.compile(r"(?P<head>bearer\s+)(?P<secret>[A-Za-z0-9._~+/=-]+)", re.I)

REDACTED = "***"


class Redactor:
    """Hides known secret values, secret-named fields, URL passwords and bearer tokens."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # Longest first, so that a secret containing another is hidden whole.
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def text(self, value: str) -> str:
        for secret in self._secrets:
            value = value.replace(secret, REDACTED)
        value = _URL_PASSWORD.sub(lambda m: m.group("head") + REDACTED, value)
        return _BEARER.sub(lambda m: m.group("head") + REDACTED, value)

    def value(self, name: str, value: object) -> object:
        if _SECRET_NAME.search(name) and value is not None:
            return REDACTED
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {str(k): self.value(str(k), v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.value(name, item) for item in value]
        if isinstance(value, bool | int | float) or value is None:
            return value
        return self.text(str(value))


class JsonFormatter(logging.Formatter):
    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self._redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": self._redactor.text(record.getMessage()),
        }
        fields = getattr(record, FIELDS_ATTRIBUTE, None)
        if isinstance(fields, Mapping):
            for name, value in fields.items():
                if name not in event:
                    event[name] = self._redactor.value(name, value)
        if record.exc_info:
            event["error"] = self._redactor.text(self.formatException(record.exc_info))
        # One event per line: json.dumps escapes every newline inside values.
        return json.dumps(event, default=str, ensure_ascii=False)


def configure_logging(
    level: str = "INFO", secrets: Iterable[str] = (), stream: IO[str] | None = None
) -> logging.Handler:
    """Send the `autotuner` loggers (and warnings from libraries) to `stream` as JSON lines.

    Returns the handler so that a caller (a test, a second configure) can remove it.
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(Redactor(secrets)))
    root = logging.getLogger()
    for existing in list(root.handlers):
        if isinstance(existing.formatter, JsonFormatter):
            root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("autotuner").setLevel(level)
    # The daemon reports skipped and overrunning cycles itself, as structured events.
    logging.getLogger("apscheduler").setLevel(logging.ERROR)
    return handler
