"""Control quality of the shipped scaling rules against the Kubernetes HPA, with equal floors.

Replays the bundled 21-day WorldCup98 trace, three one-week slices of it, and the synthetic
scenarios, each with the shipped rules (rules/), with the HPA baseline given the same replica
floors and ceilings as the rules give each Deployment, and with the oracle (the lower bound). Prints, for the API and the ML
service: SLO-violation minutes, replica-hours, and their ratios to the HPA's. The goal (issue
"Self-tuning scaling"): violation minutes at most 0.5x the HPA's at no more than 1.0x its
replica-hours, for API and for ML.

The week slices replay the trace at the full run's scale (the busiest minute of the 21 days is
1,800 requests per second), so a quiet week stays quiet.

    python bench/bench_scaling.py [--only NAME] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

from autotuner.config.loader import load_rules
from autotuner.sim.replay import day_slice
from autotuner.sim.report import build_report
from autotuner.sim.runner import Policy, run
from autotuner.sim.scenario import Scenario, load_scenario

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ROOT / "sim/scenarios"
SYNTHETIC = ("flash-crowd", "steady-day", "bad-deploy", "slow-deploy", "quiet-day")
VIOLATION_GOAL = 0.5
REPLICA_HOURS_GOAL = 1.0


def cases() -> list[Scenario]:
    worldcup = load_scenario(SCENARIOS / "worldcup98.yaml")
    found = [worldcup]
    found += [day_slice(worldcup, first, 7) for first in (0, 7, 14)]
    found += [load_scenario(SCENARIOS / f"{name}.yaml") for name in SYNTHETIC]
    return found


def _ratio(ours: float, theirs: float) -> float | None:
    if theirs == 0:
        return None if ours > 0 else 1.0
    return ours / theirs


def measure(scenario: Scenario) -> dict[str, Any]:
    ruleset = load_rules([ROOT / "rules"])
    figures: dict[str, Any] = {"scenario": scenario.name}
    reports = {}
    started = time.perf_counter()
    for policy in (Policy.RULES, Policy.HPA, Policy.ORACLE):
        # Given the rules, the HPA takes their floors and ceilings (autotuner/sim/hpa_config.py).
        result = run(scenario, policy, ruleset)
        reports[policy.value] = build_report(scenario, result)
    figures["seconds"] = round(time.perf_counter() - started, 1)
    for service, slo, replicas in (("api", "api_p95", "replicas"), ("ml", "ml_p95", "ml_replicas")):
        ours, theirs, bound = reports["rules"], reports["hpa"], reports["oracle"]
        row = {
            "oracle_violation_minutes": bound[slo]["violation_minutes"],
            "oracle_replica_hours": bound[replicas]["replica_hours"],
            "floors": (ours[replicas].get("floor"), theirs[replicas].get("floor")),
            "violation_minutes": ours[slo]["violation_minutes"],
            "hpa_violation_minutes": theirs[slo]["violation_minutes"],
            "replica_hours": ours[replicas]["replica_hours"],
            "hpa_replica_hours": theirs[replicas]["replica_hours"],
        }
        row["violation_ratio"] = _ratio(row["violation_minutes"], row["hpa_violation_minutes"])
        row["replica_hours_ratio"] = _ratio(row["replica_hours"], row["hpa_replica_hours"])
        violations_met = row["violation_minutes"] <= VIOLATION_GOAL * row["hpa_violation_minutes"]
        hours_met = row["replica_hours"] <= REPLICA_HOURS_GOAL * row["hpa_replica_hours"]
        row["goal_met"] = bool(violations_met and hours_met)
        figures[service] = row
    return figures


def _cell(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}x" if math.isfinite(value) else "inf"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="run only the cases whose name contains this")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    chosen = [c for c in cases() if args.only is None or args.only in c.name]
    print(__doc__.split("\n\n")[0])
    print()
    header = (
        f"{'scenario':<24} {'svc':<4} {'viol min':>9} {'hpa':>9} {'oracle':>7} {'ratio':>7} "
        f"{'rep-h':>9} {'hpa':>9} {'oracle':>8} {'ratio':>7} {'floors':>6}  goal"
    )
    print(header)
    print("-" * len(header))
    results = []
    for scenario in chosen:
        figures = measure(scenario)
        results.append(figures)
        for service in ("api", "ml"):
            row = figures[service]
            print(
                f"{figures['scenario']:<24} {service:<4} {row['violation_minutes']:>9.2f} "
                f"{row['hpa_violation_minutes']:>9.2f} {row['oracle_violation_minutes']:>7.2f} "
                f"{_cell(row['violation_ratio']):>7} "
                f"{row['replica_hours']:>9.1f} {row['hpa_replica_hours']:>9.1f} "
                f"{row['oracle_replica_hours']:>8.1f} "
                f"{_cell(row['replica_hours_ratio']):>7} {'/'.join(map(str, row['floors'])):>6}  "
                f"{'met' if row['goal_met'] else 'MISSED'}"
            )
        sys.stdout.flush()
    if args.json:
        print(json.dumps(results, indent=2))
    print()
    print(
        f"goal: violation minutes <= {VIOLATION_GOAL}x the HPA's at <= {REPLICA_HOURS_GOAL}x its "
        "replica-hours; the HPA has the rules' floors and ceilings (autoscaling/v2 defaults, "
        "CPU target 0.7); ratios are to the HPA; the oracle (autotuner/sim/oracle.py) knows the "
        "load ahead and is the lower bound: its violation minutes no controller avoids"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
