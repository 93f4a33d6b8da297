"""Log events with a stable name and fields, for every layer that logs (stdlib only).

An event name is a dotted key an alert can match (`prometheus.unreachable`), never a sentence;
what happened in words goes in a field (`reason`). autotuner.runtime.logging writes these
records as JSON lines; docs/operations.md ("Logs") lists the names and their levels.
"""

from __future__ import annotations

import logging
from typing import Any

# The attribute on a LogRecord that carries the event's fields.
FIELDS_ATTRIBUTE = "autotuner_fields"


def log_event(
    logger: logging.Logger,
    event: str,
    level: int = logging.INFO,
    *,
    exc_info: bool = False,
    **fields: Any,
) -> None:
    """Log `event` with `fields` as structured data (and the traceback being handled, if asked)."""
    if logger.isEnabledFor(level):
        logger.log(level, event, exc_info=exc_info, extra={FIELDS_ATTRIBUTE: fields})
