"""How long the pure decision engine takes per rule target: the goal is under 20 us.

Run: .venv/bin/python bench/bench_engine.py [--ticks N] [--repeat N] [--profile]

The rule set is 1,000 rules written as YAML and compiled by the real loader, each watching one
metric whose answer has 10 series (10,000 rule targets; a scale pair shares its latency metric,
as the shipped rules do):
- 300 pairs of scale rules on 3,000 Deployments: latency above 0.5 -> x1.5 (rate limits, 1m
  `for:`, 2m cooldown) and latency below 0.2 -> x0.8 (5m stabilization window, 5m cooldown);
- 200 pairs of set_key rules on 2,000 TTL keys: hit ratio below 0.7 -> x1.5 (rate limit, a
  default for keys that do not exist) and stale ratio above 0.05 -> x0.75.
Ticks are 15 s apart; each target drifts between a quiet value and a breaching one (about a
quarter breach at any time, in episodes of about 100 s), about 1% of the samples are NaN or
stale and 0.2% of the answers are missing, so targets go pending, fire, act, cool down and
resolve; changes are applied to an in-memory knob table and folded into the state with
`record_outcomes`, as `tick` does.

Measured with time.perf_counter around `evaluate` alone (answers, knob readings and state are
prepared beforehand): each tick's inputs are evaluated once to warm up, then `--repeat` times;
a tick's figure is the median of its repeats, and the result is the median over the ticks
(after the first two, whose states are nearly empty), divided by 10,000 targets.
`knobs_to_read`, and saving and restoring the last tick's state through JSON, are timed the same
way and reported beside it. `--profile` runs cProfile over one evaluation of every tick and
prints the functions with the most own time.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import math
import os
import platform
import pstats
import random
import statistics
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial

from autotuner.config.loader import load_text
from autotuner.core.engine import evaluate, knobs_to_read, record_outcomes
from autotuner.core.model import (
    KnobReading,
    KnobRef,
    KnobUnreadable,
    KnobValue,
    Labels,
    MetricAnswer,
    NoData,
    Outcome,
    OutcomeStatus,
    Sample,
    Series,
    Verdict,
    labels_of,
)
from autotuner.core.rules import RuleSet
from autotuner.core.state import EngineState

GOAL_MICROSECONDS = 20.0
SCALE_PAIRS = 300
TTL_PAIRS = 200
SERIES_PER_METRIC = 10
TARGETS = (SCALE_PAIRS + TTL_PAIRS) * 2 * SERIES_PER_METRIC
TICK_SECONDS = 15.0
START_TIME = 1_800_000_000.0
SEED = 20261126
# Per tick, the chance that a quiet target starts to breach and that a breach ends: about a
# quarter of the targets breach at any time, in episodes of about 100 s.
BREACH_STARTS = 0.05
BREACH_ENDS = 0.15


def rule_file() -> str:
    """1,000 rules in the rule language, as an SRE team serving 500 services would write them."""
    lines = ["metrics:"]
    for service in range(SCALE_PAIRS):
        lines.append(
            f"  latency_{service}: histogram_quantile(0.95, sum by (le, namespace, deployment) "
            f'(rate(http_request_duration_seconds_bucket{{service="svc-{service}"}}[5m])))'
        )
    for service in range(TTL_PAIRS):
        selector = f'{{service="cache-{service}"}}'
        lines.append(
            f"  hits_{service}: sum by (cache) (rate(cache_hits_total{selector}[5m])) "
            f"/ sum by (cache) (rate(cache_requests_total{selector}[5m]))"
        )
        lines.append(
            f"  stale_{service}: sum by (cache) (rate(cache_stale_hits_total{selector}[5m])) "
            f"/ sum by (cache) (rate(cache_hits_total{selector}[5m]))"
        )
    lines.append("rules:")
    workload = (
        'deployment: "{{ labels.deployment }}", namespace: "{{ labels.namespace }}", '
        "min: 2, max: 50"
    )
    ttl_key = 'key: "ttl:{{ labels.cache }}", min: 60, max: 86400'
    for service in range(SCALE_PAIRS):
        lines += [
            f"  - {{name: latency-high-{service}, metric: latency_{service}, above: 0.5,",
            "     clear_below: 0.45, for: 1m, cooldown: 2m,",
            f"     action: {{scale: {{{workload}, factor: 1.5,",
            "       rate_limits: [{pods: 4, period: 1m}, {percent: 100, period: 1m}]}}}",
            f"  - {{name: latency-low-{service}, metric: latency_{service}, below: 0.2,",
            "     clear_above: 0.25, for: 2m, cooldown: 5m,",
            f"     action: {{scale: {{{workload}, factor: 0.8, stabilization_window: 5m}}}}}}",
        ]
    for service in range(TTL_PAIRS):
        lines += [
            f"  - {{name: hit-rate-low-{service}, metric: hits_{service}, below: 0.7,",
            "     clear_above: 0.75, for: 1m, cooldown: 5m,",
            f"     action: {{set_key: {{{ttl_key}, factor: 1.5, default: 300,",
            "       rate_limits: [{percent: 100, period: 30m}]}}}",
            f"  - {{name: data-stale-{service}, metric: stale_{service}, above: 0.05,",
            "     clear_below: 0.03, for: 1m, cooldown: 5m,",
            f"     action: {{set_key: {{{ttl_key}, factor: 0.75}}}}}}",
        ]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class TickInputs:
    now: float
    answers: Mapping[str, MetricAnswer]
    readings: Mapping[KnobRef, KnobReading]
    state: EngineState


class Workload:
    """Metric answers that drift tick by tick, and the knob values the decisions change."""

    def __init__(self, ruleset: RuleSet) -> None:
        self.ruleset = ruleset
        self.random = random.Random(SEED)
        self.knobs: dict[KnobRef, float] = {}
        self.breaching: dict[tuple[str, Labels], float] = {}
        self.labels = {
            name: tuple(
                labels_of({"namespace": "crm", "deployment": f"svc-{name.split('_')[1]}-{i}"})
                if name.startswith("latency")
                else labels_of({"cache": f"{name.split('_')[1]}-{i}"})
                for i in range(SERIES_PER_METRIC)
            )
            for name in (query.name for query in ruleset.metrics)
        }
        for name, series in self.labels.items():
            for labels in series:
                if name.startswith("latency"):
                    knob = KnobRef.parse(f"deployment/crm/{dict(labels)['deployment']}")
                    self.knobs[knob] = 4.0
                elif self.random.random() < 0.9:  # some TTL keys do not exist yet
                    self.knobs[KnobRef.parse(f"key/ttl:{dict(labels)['cache']}")] = 300.0

    def value(self, metric: str, labels: Labels) -> float:
        """The target's value in its current episode: quiet, or breaching for a while."""
        key = (metric, labels)
        breaching = key in self.breaching
        if self.random.random() < (BREACH_ENDS if breaching else BREACH_STARTS):
            breaching = not breaching
            if breaching:
                self.breaching[key] = self.breach_value(metric)
            else:
                del self.breaching[key]
        if breaching:
            return self.breaching[key]
        return {"latency": 0.35, "hits": 0.9, "stale": 0.01}[metric.split("_")[0]]

    def breach_value(self, metric: str) -> float:
        if metric.startswith("latency"):
            return 0.7 if self.random.random() < 2 / 3 else 0.1
        return 0.5 if metric.startswith("hits") else 0.1

    def answers(self, now: float) -> dict[str, MetricAnswer]:
        answers: dict[str, MetricAnswer] = {}
        for name, series in self.labels.items():
            if self.random.random() < 0.002:
                answers[name] = NoData("the query timed out")
                continue
            samples = []
            for labels in series:
                roll = self.random.random()
                if roll < 0.005:
                    samples.append(Sample(labels, math.nan, now))
                elif roll < 0.01:
                    samples.append(Sample(labels, self.value(name, labels), now - 900))
                else:
                    samples.append(Sample(labels, self.value(name, labels), now - 7))
            answers[name] = Series(tuple(samples))
        return answers

    def read(self, knobs: frozenset[KnobRef]) -> dict[KnobRef, KnobReading]:
        return {
            knob: KnobValue(self.knobs[knob])
            if knob in self.knobs
            else KnobUnreadable(f"{knob.id} does not exist", missing=True)
            for knob in knobs
        }


def prepare(ruleset: RuleSet, ticks: int) -> tuple[list[TickInputs], dict[str, int]]:
    """Run the sequence once, applying every change, and keep each tick's inputs."""
    workload = Workload(ruleset)
    state = EngineState()
    inputs: list[TickInputs] = []
    verdicts = {verdict.value: 0 for verdict in Verdict}
    for index in range(ticks):
        now = START_TIME + index * TICK_SECONDS
        answers = workload.answers(now)
        readings = workload.read(knobs_to_read(ruleset, answers))
        inputs.append(TickInputs(now, answers, readings, state))
        result = evaluate(now, ruleset, answers, readings, state)
        outcomes = []
        for decision in result.decisions:
            verdicts[decision.verdict.value] += 1
            if decision.verdict is Verdict.CHANGE and decision.final is not None:
                workload.knobs[decision.knob] = decision.final
                outcomes.append(
                    (decision, Outcome(OutcomeStatus.APPLIED, "", decision.current, decision.final))
                )
        state = record_outcomes(result.state, outcomes)
    return inputs, verdicts


def median_seconds(function: Callable[[], object], repeat: int) -> float:
    function()  # warm-up
    timings = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        timings.append(time.perf_counter() - start)
    return statistics.median(timings)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=20, help="ticks in the sequence (default 20)")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per tick (default 5)")
    parser.add_argument("--profile", action="store_true", help="also print a cProfile summary")
    args = parser.parse_args()
    if args.ticks < 3 or args.repeat < 1:
        parser.error("--ticks must be at least 3 and --repeat at least 1")

    started = time.perf_counter()
    ruleset = load_text(rule_file(), "bench-rules.yaml")
    load_seconds = time.perf_counter() - started
    inputs, verdicts = prepare(ruleset, args.ticks)

    per_tick = []
    reading = []
    for tick in inputs:
        run_engine = partial(evaluate, tick.now, ruleset, tick.answers, tick.readings, tick.state)
        per_tick.append(median_seconds(run_engine, args.repeat))
        reading.append(median_seconds(partial(knobs_to_read, ruleset, tick.answers), args.repeat))
    steady = per_tick[2:]
    evaluate_seconds = statistics.median(steady)
    micros = evaluate_seconds / TARGETS * 1e6
    load = os.getloadavg()

    print(f"machine: {os.cpu_count()} CPUs, {platform.machine()}, {platform.system()}")
    print(f"python: {platform.python_implementation()} {platform.python_version()}")
    print(f"load average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(
        f"rule set: {len(ruleset.rules)} rules, {len(ruleset.metrics)} metrics, "
        f"{TARGETS} rule targets; compiled by the loader in {load_seconds:.2f} s"
    )
    print(
        f"sequence: {args.ticks} ticks {TICK_SECONDS:g} s apart; decisions: "
        + ", ".join(f"{count} {verdict}" for verdict, count in verdicts.items())
    )
    last = inputs[-1].state
    saved = json.dumps(last.to_dict())
    save_seconds = median_seconds(lambda: json.dumps(last.to_dict()), args.repeat)
    restore_seconds = median_seconds(lambda: EngineState.from_dict(json.loads(saved)), args.repeat)
    print(
        f"state at the last tick: {len(last.targets)} targets, {len(last.knobs)} knobs, "
        f"{len(saved) / 1e6:.1f} MB as JSON; to_dict + json.dumps {save_seconds * 1e3:.0f} ms, "
        f"json.loads + from_dict {restore_seconds * 1e3:.0f} ms (median of {args.repeat})"
    )
    print(
        "method: time.perf_counter around evaluate(); 1 warm-up + "
        f"{args.repeat} runs per tick, median per tick, median over ticks 3..{args.ticks}"
    )
    print("evaluate per tick (ms): " + " ".join(f"{seconds * 1e3:.0f}" for seconds in per_tick))
    print(f"knobs_to_read per tick: {statistics.median(reading[2:]) * 1e3:.1f} ms (median)")
    verdict = "meets" if micros < GOAL_MICROSECONDS else "misses"
    print(
        f"evaluate: {evaluate_seconds * 1e3:.1f} ms per tick = {micros:.2f} us per rule-target "
        f"evaluation ({verdict} the goal of {GOAL_MICROSECONDS:g} us)"
    )

    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        for tick in inputs:
            evaluate(tick.now, ruleset, tick.answers, tick.readings, tick.state)
        profiler.disable()
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        stats.sort_stats("tottime").print_stats(18)
        print(f"\ncProfile of one evaluate() per tick ({args.ticks} ticks), by own time:")
        print(out.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(main())
