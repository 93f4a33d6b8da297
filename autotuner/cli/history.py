"""`autotuner history`: the recorded decisions, newest first.

    autotuner history [--rule R] [--target T] [--since 1h] [--limit N] [--json]

A decision whose outcome was never recorded (the process stopped while acting) is shown as
`unfinished`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from autotuner.adapters.sql_store import AuditRecord, StoreError
from autotuner.cli.audit_store import AuditUnavailable, add_store_arguments, open_store
from autotuner.config.durations import parse_duration


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rule", metavar="R", help="only decisions of this rule")
    parser.add_argument(
        "--target",
        metavar="T",
        help="only decisions about this knob: an id such as deployment/crm/api or "
        "key/crm:db:pool_size, or the start of one followed by *",
    )
    parser.add_argument(
        "--since", metavar="DURATION", help="only decisions this recent, e.g. 30m, 1h, 7d"
    )
    parser.add_argument(
        "--limit", metavar="N", type=int, default=100, help="at most N decisions (default 100)"
    )
    parser.add_argument("--json", action="store_true", help="one JSON array, for scripts")
    add_store_arguments(parser)


def run(args: argparse.Namespace) -> int:
    since = None
    if args.since is not None:
        try:
            since = time.time() - parse_duration(args.since)
        except ValueError as error:
            print(f"autotuner history: --since: {error}", file=sys.stderr)
            return 2
    if args.limit < 1:
        print("autotuner history: --limit must be at least 1", file=sys.stderr)
        return 2
    target: str | None = args.target
    prefix = target[:-1] if target is not None and target.endswith("*") else None
    try:
        store = open_store(args)
    except AuditUnavailable as error:
        print(f"autotuner history: {error}", file=sys.stderr)
        return 2
    try:
        records = store.history(
            rule=args.rule,
            knob=None if prefix is not None else target,
            knob_prefix=prefix,
            since=since,
            limit=args.limit,
        )
    except StoreError as error:
        print(f"autotuner history: {error}", file=sys.stderr)
        return 2
    finally:
        store.close()
    if args.json:
        print(json.dumps([record_as_dict(r) for r in records], indent=2))
    elif not records:
        print("no decisions recorded" + (" that match" if _filtered(args) else ""))
    else:
        print(format_table(records))
    return 0


def _filtered(args: argparse.Namespace) -> bool:
    return any(v is not None for v in (args.rule, args.target, args.since))


def _when(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(timestamp))


def _number(value: float | None) -> str:
    return "?" if value is None else f"{value:g}"


def _outcome(record: AuditRecord) -> str:
    if record.outcome is None:
        return "unfinished"
    return record.outcome.status.value


def format_table(records: list[AuditRecord]) -> str:
    header = ("TIME (UTC)", "RULE", "TARGET", "CHANGE", "OUTCOME", "WHY")
    rows = [
        (
            _when(r.decision.time),
            r.decision.rule,
            r.decision.knob.id,
            f"{_number(r.decision.current)} -> {_number(r.decision.final)}",
            _outcome(r) + (" (dry run)" if r.decision.dry_run else ""),
            r.decision.reason
            + (f"; {r.outcome.detail}" if r.outcome is not None and r.outcome.detail else ""),
        )
        for r in records
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]
    lines = []
    for row in [header, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        lines.append("  ".join([*cells, row[-1]]))
    return "\n".join(lines)


def record_as_dict(record: AuditRecord) -> dict[str, Any]:
    decision = record.decision
    return {
        "id": record.id,
        "time": decision.time,
        "recorded_at": record.recorded_at,
        "completed_at": record.completed_at,
        "rule": decision.rule,
        "labels": dict(decision.labels),
        "target": decision.knob.id,
        "verdict": decision.verdict.value,
        "metric": decision.metric,
        "value": decision.value,
        "threshold": decision.threshold,
        "current": decision.current,
        "proposed": decision.proposed,
        "final": decision.final,
        "limited_by": decision.limited_by,
        "reason": decision.reason,
        "dry_run": decision.dry_run,
        "outcome": None
        if record.outcome is None
        else {
            "status": record.outcome.status.value,
            "detail": record.outcome.detail,
            "old": record.outcome.old,
            "new": record.outcome.new,
        },
    }
