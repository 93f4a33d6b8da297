"""`autotuner explain TARGET`: in plain words, why a knob last changed, and why it is not
changing now (below threshold, pending, in cooldown, at a bound, paused, owned by an HPA, no
data from Prometheus).

The last change comes from the audit; the present from the per-target summary the daemon
saves every cycle.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Mapping
from typing import Any

from autotuner.adapters.sql_store import AuditRecord, SqlStore, StoreError
from autotuner.cli.audit_store import AuditUnavailable, add_store_arguments, open_store
from autotuner.cli.history import record_as_dict
from autotuner.config.durations import format_duration
from autotuner.config.errors import did_you_mean
from autotuner.core.model import Verdict
from autotuner.runtime.controller import LAST_CYCLE


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "target", metavar="TARGET", help="a knob id: deployment/crm/api, key/crm:db:pool_size"
    )
    parser.add_argument("--json", action="store_true", help="the same facts as JSON")
    add_store_arguments(parser)


def run(args: argparse.Namespace) -> int:
    try:
        store = open_store(args)
    except AuditUnavailable as error:
        print(f"autotuner explain: {error}", file=sys.stderr)
        return 2
    try:
        return _explain(store, args.target, args.json)
    except StoreError as error:
        print(f"autotuner explain: {error}", file=sys.stderr)
        return 2
    finally:
        store.close()


def _explain(store: SqlStore, target: str, as_json: bool) -> int:
    changes = [
        r for r in store.last_decisions(target, limit=20) if r.decision.verdict is Verdict.CHANGE
    ]
    last_change = changes[0] if changes else None
    cycle = store.load_state(LAST_CYCLE) or {}
    entries = [t for t in cycle.get("targets", []) if t.get("knob") == target]
    if last_change is None and not entries:
        known = sorted({str(t.get("knob")) for t in cycle.get("targets", [])})
        hint = did_you_mean(target, known)
        listing = f" Known targets: {', '.join(known)}." if known and not hint else ""
        print(
            f"autotuner explain: no rule has looked at {target!r} in the last cycle and no "
            f"change to it is recorded{hint or '.'}{listing}",
            file=sys.stderr,
        )
        return 1
    now = float(cycle.get("time", time.time()))
    if as_json:
        print(
            json.dumps(
                {
                    "target": target,
                    "last_change": record_as_dict(last_change) if last_change else None,
                    "last_cycle_time": cycle.get("time"),
                    "now": [dict(e, explanation=explain_entry(e, now)) for e in entries],
                },
                indent=2,
            )
        )
        return 0
    print(target)
    print("  Last change: " + (describe_change(last_change) if last_change else "none recorded."))
    if entries:
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(now))
        print(f"  At the last cycle ({when}):")
        for entry in entries:
            print(f"    - {entry['rule']}{_labels(entry)}: {explain_entry(entry, now)}")
    else:
        print("  No loaded rule looked at it in the last cycle.")
    return 0


def _labels(entry: Mapping[str, Any]) -> str:
    labels = entry.get("labels") or {}
    if not labels:
        return ""
    return " {" + ", ".join(f"{k}={v}" for k, v in sorted(labels.items())) + "}"


def _value(value: Any) -> str:
    return f"{value:g}" if isinstance(value, int | float) else "?"


def describe_change(record: AuditRecord) -> str:
    decision = record.decision
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(decision.time))
    if record.outcome is None:
        result = (
            "its outcome was never recorded (the daemon stopped while acting); check the "
            "target's current value"
        )
    else:
        result = {
            "applied": "applied",
            "dry_run": "not applied (dry run)",
            "skipped": "skipped",
            "failed": "it failed",
            "uncertain": "no answer came, so it may have taken effect",
        }[record.outcome.status.value]
        if record.outcome.detail:
            result += f": {record.outcome.detail}"
    return (
        f"{when}, rule {decision.rule} asked for {_value(decision.current)} -> "
        f"{_value(decision.final)}, {result}. Why: {decision.reason}."
    )


def explain_entry(entry: Mapping[str, Any], now: float) -> str:
    """One target's situation in plain words."""
    if entry.get("no_data"):
        return f"nothing is done: no data from the metric source ({entry['no_data']})."
    metric = entry.get("metric", "the metric")
    value = _value(entry.get("value"))
    side = "above" if entry.get("comparison") == "above" else "below"
    threshold = _value(entry.get("threshold"))
    phase = entry.get("phase")
    if phase == "inactive":
        return f"nothing to do: {metric} is {value}, not {side} {threshold}."
    if phase == "pending":
        since = entry.get("active_since")
        needed = float(entry.get("for_seconds") or 0)
        held = now - float(since) if since is not None else 0.0
        return (
            f"pending: {metric} is {value}, {side} {threshold}, for "
            f"{format_duration(round(held))} of the {format_duration(needed)} it must hold "
            "before acting."
        )
    verdict = entry.get("verdict")
    reason = entry.get("reason", "")
    if verdict == "change":
        outcome = entry.get("outcome", "")
        detail = entry.get("detail")
        return f"changed it in that cycle ({outcome}{': ' + detail if detail else ''}): {reason}."
    if verdict == "hold":
        return f"firing, but nothing to change: {reason}."
    if verdict == "blocked":
        return f"firing, but the controller will not act: {reason}."
    return (
        f"firing ({metric} is {value}, {side} {threshold}) but not acting now: kept firing "
        "after the condition cleared."
    )
