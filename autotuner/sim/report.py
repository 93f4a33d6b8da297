"""The figures of one run, as a nested mapping that serialises to byte-identical JSON per seed."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from autotuner.sim.actuators import AppliedChange
from autotuner.sim.faults import FaultKind
from autotuner.sim.load import describe
from autotuner.sim.runner import RunResult
from autotuner.sim.scenario import Expectation, Scenario

# A reversal of a knob's direction counts as a flap when it follows the change it undoes within
# the knob's window. Deployments, pools and batch sizes show a change within minutes (a start-up
# delay, one 5-minute metric window): 10 minutes.
FLAP_WINDOW = 600.0
# A TTL change shows in the hit rate only after about one TTL (entries written under the old TTL
# keep it); judging it needs about another. A TTL reversed within twice the TTL it undoes, or
# within an hour (what a 5-minute hit-rate window, `for:` and a cooldown need at the least), was
# reversed before the change could be seen.
TTL_FLAP_WINDOW = 3600.0
TTL_KEY_MARK = ":cache:ttl:"
DAY = 86400.0
# Back to normal means: under the SLO and staying there this long.
RECOVERED_FOR = 300.0

Report = dict[str, Any]


def _round(value: float) -> float:
    return float(round(value, 4)) if math.isfinite(value) else value


def _violation_minutes(values: np.ndarray, limit: float, tick: float) -> float:
    return float(np.count_nonzero(values > limit)) * tick / 60.0


def flap_window(knob: str, value: float) -> float:
    """How soon a change of `knob` away from `value` (what the change before set) is a flap."""
    if TTL_KEY_MARK in knob:
        return max(TTL_FLAP_WINDOW, 2.0 * value)
    return FLAP_WINDOW


def flap_times(changes: Sequence[AppliedChange]) -> dict[str, list[float]]:
    """Per knob, the moments its direction reversed within the knob's `flap_window`."""
    last: dict[str, tuple[float, int]] = {}
    moments: dict[str, list[float]] = {}
    for change in changes:
        direction = 1 if change.new > change.old else -1
        previous = last.get(change.knob)
        if (
            previous is not None
            and previous[1] != direction
            and change.time - previous[0] <= flap_window(change.knob, change.old)
        ):
            moments.setdefault(change.knob, []).append(change.time)
        last[change.knob] = (change.time, direction)
    return moments


def flaps(changes: Sequence[AppliedChange]) -> dict[str, int]:
    """Direction reversals per knob, each within the knob's window of the change it undoes."""
    return {knob: len(moments) for knob, moments in flap_times(changes).items()}


def flaps_per_day(changes: Sequence[AppliedChange]) -> dict[str, int]:
    """Per knob, the most flaps in one day of the run (days counted from its start)."""
    worst: dict[str, int] = {}
    for knob, moments in flap_times(changes).items():
        days: dict[int, int] = {}
        for moment in moments:
            day = int(moment // DAY)
            days[day] = days.get(day, 0) + 1
        worst[knob] = max(days.values())
    return worst


def recovery_minutes(
    times: np.ndarray, p95: np.ndarray, limit: float, start: float, tick: float
) -> float | None:
    """Minutes from `start` until p95 is under `limit` and stays so for RECOVERED_FOR seconds.

    0 when p95 never left the SLO; None when it had not recovered by the end of the run.
    """
    after = times >= start
    bad = (p95 > limit) & after
    if not bad.any():
        return 0.0
    needed = max(1, round(RECOVERED_FOR / tick))
    first_bad = int(np.argmax(bad))
    run = 0
    for index in range(first_bad, len(times)):
        run = run + 1 if p95[index] <= limit else 0
        if run >= needed:
            recovered_at = times[index - needed + 1]
            return float(recovered_at - start) / 60.0
    return None


def disturbances(scenario: Scenario) -> list[tuple[float, str]]:
    moments = describe(scenario.load.events)
    for fault in scenario.faults:
        if fault.kind is not FaultKind.METRIC_OUTAGE:
            moments.append((fault.at, fault.describe()))
    return sorted(moments)


def _floor(result: RunResult, deployment: str) -> dict[str, int]:
    """The fewest replicas the policy would keep, where it says (`floor`)."""
    floors = dict(result.floors)
    return {"floor": floors[deployment]} if deployment in floors else {}


def build_report(scenario: Scenario, result: RunResult) -> Report:
    tick = scenario.settings.tick
    s = result.signals
    times = result.times
    hours = tick / 3600.0
    slos = scenario.slos
    cache_names = [c.name for c in scenario.system.caches]
    caches: dict[str, Any] = {}
    total_hits = 0.0
    total_stale = 0.0
    for name in cache_names:
        requests = s[f"requests:{name}"]
        hits = requests * s[f"hit:{name}"]
        stale = hits * s[f"stale:{name}"]
        total_hits += float(hits.sum())
        total_stale += float(stale.sum())
        served = float(requests.sum())
        caches[name] = {
            "mean_ttl_seconds": _round(float(s[f"ttl_target:{name}"].mean())),
            "hit_rate": _round(float(hits.sum()) / served if served else 0.0),
            "stale_hit_share": _round(
                float(stale.sum()) / float(hits.sum()) if hits.sum() else 0.0
            ),
            "mean_memory_mb": _round(float(s[f"memory:{name}"].mean()) / 1e6),
        }
    knob_flaps = flaps(result.changes)
    by_knob: dict[str, int] = {}
    for change in result.changes:
        by_knob[change.knob] = by_knob.get(change.knob, 0) + 1
    recovery: list[dict[str, Any]] = [
        {
            "at_minute": _round(at / 60.0),
            "event": label,
            "minutes": (
                None
                if (m := recovery_minutes(times, s["api_p95"], slos.api_p95, at, tick)) is None
                else _round(m)
            ),
        }
        for at, label in disturbances(scenario)
    ]
    recovered = [float(r["minutes"]) for r in recovery if r["minutes"] is not None]
    return {
        "scenario": scenario.name,
        "policy": result.policy.value,
        "seed": scenario.settings.seed,
        "duration_hours": _round(scenario.settings.duration / 3600.0),
        "load": {
            "mean_rps": _round(float(s["load_rps"].mean())),
            "peak_rps": _round(float(s["load_rps"].max())),
            "dropped_requests": _round(float(s["api_dropped"].sum())),
        },
        "api_p95": {
            "slo_seconds": slos.api_p95,
            "violation_minutes": _round(_violation_minutes(s["api_p95"], slos.api_p95, tick)),
            "mean_seconds": _round(float(s["api_p95"].mean())),
            "max_seconds": _round(float(s["api_p95"].max())),
        },
        "ml_p95": {
            "slo_seconds": slos.ml_p95,
            "violation_minutes": _round(_violation_minutes(s["ml_p95"], slos.ml_p95, tick)),
            "mean_seconds": _round(float(s["ml_p95"].mean())),
            "max_seconds": _round(float(s["ml_p95"].max())),
        },
        "replicas": {
            **_floor(result, "api"),
            "max": _round(float(s["api_replicas"].max())),
            "mean": _round(float(s["api_replicas"].mean())),
            "replica_hours": _round(float(s["api_replicas"].sum()) * hours),
        },
        "ml_replicas": {
            **_floor(result, "ml"),
            "max": _round(float(s["ml_replicas"].max())),
            "mean": _round(float(s["ml_replicas"].mean())),
            "replica_hours": _round(float(s["ml_replicas"].sum()) * hours),
        },
        "caches": caches,
        "stale_hit_share": _round(total_stale / total_hits if total_hits else 0.0),
        "pool": {
            "mean_size": _round(float(s["pool_size"].mean())),
            "max_size": _round(float(s["pool_size"].max())),
            "mean_usage": _round(float(s["pool_usage"].mean())),
            "mean_wait_ms": _round(float(s["pool_wait"].mean()) * 1000.0),
            "wait_minutes": _round(float(np.count_nonzero(s["pool_wait"] > 0.01)) * tick / 60.0),
            "budget_breach_minutes": _round(float(s["over_budget"].sum()) * tick / 60.0),
        },
        "actions": {"total": len(result.changes), "by_knob": dict(sorted(by_knob.items()))},
        "flaps": {
            "total": sum(knob_flaps.values()),
            "by_knob": dict(sorted(knob_flaps.items())),
            "per_day": dict(sorted(flaps_per_day(result.changes).items())),
        },
        "recovery": {
            "events": recovery,
            "max_minutes": _round(max(recovered)) if recovered else 0.0,
            "unrecovered": sum(1 for r in recovery if r["minutes"] is None),
        },
        "controller": {
            "blocked_decisions": result.blocked_decisions,
            "ticks_with_missing_data": result.no_data_ticks,
        },
    }


def to_json(report: Mapping[str, Any]) -> str:
    return json.dumps(report, indent=2, sort_keys=True) + "\n"


def against_oracle(report: Mapping[str, Any], oracle: Mapping[str, Any]) -> dict[str, float | None]:
    """How far a run is from the oracle's lower bound: cost as ratios and extra replica-hours,
    SLO violations as extra minutes (the oracle's are often 0, where a ratio says nothing)."""

    def figure(run: Mapping[str, Any], path: str) -> float:
        value = lookup(run, path)
        return 0.0 if value is None else value

    comparison: dict[str, float | None] = {}
    for name, path in (
        ("replica_hours", "replicas.replica_hours"),
        ("ml_replica_hours", "ml_replicas.replica_hours"),
    ):
        mine, bound = figure(report, path), figure(oracle, path)
        comparison[f"{name}_ratio"] = _round(mine / bound) if bound > 0 else None
        comparison[f"{name}_extra"] = _round(mine - bound)
    for name, path in (
        ("api_violation_minutes", "api_p95.violation_minutes"),
        ("ml_violation_minutes", "ml_p95.violation_minutes"),
    ):
        comparison[f"{name}_extra"] = _round(figure(report, path) - figure(oracle, path))
    return comparison


def lookup(report: Mapping[str, Any], path: str) -> float | None:
    node: Any = report
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return float(node) if isinstance(node, int | float) and not isinstance(node, bool) else None


def check(report: Mapping[str, Any], expectations: Sequence[Expectation]) -> list[str]:
    """Failed expectations, each as `file:line: text (actual VALUE)`."""
    failures = []
    for expectation in expectations:
        where = f"{expectation.file}:{expectation.line}"
        value = lookup(report, expectation.path)
        if value is None:
            failures.append(
                f"{where}: expect: {expectation.path!r} is not a number in the report "
                "(see `autotuner sim --json` for the paths)"
            )
        elif not expectation.holds(value):
            failures.append(f"{where}: expected {expectation.text} (actual {value:g})")
    return failures


def flatten(report: Mapping[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    for key, value in report.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            rows.extend(flatten(value, path + "."))
        elif isinstance(value, list):
            for index, item in enumerate(value):
                text = ", ".join(f"{k}={v}" for k, v in item.items())
                rows.append((f"{path}[{index}]", text))
        else:
            rows.append((path, f"{value:g}" if isinstance(value, float) else str(value)))
    return rows


def table(reports: Sequence[Mapping[str, Any]]) -> str:
    """The reports side by side, one row per figure."""
    columns = [dict(flatten(r)) for r in reports]
    keys: list[str] = []
    for column in columns:
        keys.extend(k for k in column if k not in keys)
    width = max(len(k) for k in keys)
    widths = [max([len(c.get(k, "")) for k in keys] + [8]) for c in columns]
    lines = []
    for key in keys:
        cells = [c.get(key, "-").ljust(w) for c, w in zip(columns, widths, strict=True)]
        lines.append(f"{key.ljust(width)}  " + "  ".join(cells).rstrip())
    return "\n".join(lines) + "\n"
