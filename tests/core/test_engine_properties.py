"""Properties of the decision engine over random metric sequences.

Hypothesis writes a rule file (several rules per knob, templated and static knobs, rate limits,
stabilization windows, cooldowns, a shared budget), picks start values inside the bounds and
then feeds a sequence of ticks through `tick` with an in-memory cluster: answers with good
values, NaN, ±Inf, stale samples, absent series, whole metrics missing, and actuator
failures. Each test checks one promise of the engine over the whole run.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autotuner.config.loader import load_text
from autotuner.control.tick import TickReport, tick
from autotuner.core import policies
from autotuner.core.model import (
    Decision,
    KnobReading,
    KnobRef,
    KnobUnreadable,
    KnobValue,
    Labels,
    MetricAnswer,
    MetricQuery,
    NoData,
    Outcome,
    OutcomeStatus,
    Phase,
    Sample,
    Series,
    Verdict,
    labels_of,
)
from autotuner.core.rules import RateLimitKind, Rule, RuleSet, SelectPolicy
from autotuner.core.state import EngineState

# Fixed seed and a modest budget: the file must stay reproducible and take seconds on 2 cores.
PROPERTY_SETTINGS = settings(
    derandomize=True,
    max_examples=80,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

START_TIME = 1_800_000_000.0
MAX_SAMPLE_AGE = 300.0
POOL_KEY = "crm:db:pool_size"
TOLERANCE = 1e-9

# The modelled system: two workloads, two caches and one pool, watched by four metrics.
# `latency` and `queue` both describe the workloads, so two metrics can drive one knob.
METRICS = {
    "latency": "sum by (namespace, deployment) (rate(request_seconds_sum[5m]))",
    "queue": "sum by (namespace, deployment) (avg_over_time(queue_depth[5m]))",
    "hit_ratio": "sum by (cache) (rate(hits_total[5m])) / sum by (cache) (rate(requests_total[5m]))",
    "pool_usage": "sum(db_pool_in_use) / sum(db_pool_max)",
}
WORKLOAD_SERIES = tuple(
    labels_of({"namespace": "crm", "deployment": name}) for name in ("api", "ml")
)
SERIES: dict[str, tuple[Labels, ...]] = {
    "latency": WORKLOAD_SERIES,
    "queue": WORKLOAD_SERIES,
    "hit_ratio": tuple(labels_of({"cache": name}) for name in ("users", "orders")),
    "pool_usage": ((),),
}
KNOB_IDS = (
    "deployment/crm/api",
    "deployment/crm/ml",
    "key/crm:cache:ttl:users",
    "key/crm:cache:ttl:orders",
    f"key/{POOL_KEY}",
)


@dataclass(frozen=True)
class Family:
    """Rules that act on the same kind of knob; `bounds` names the knob's shared min/max."""

    metrics: tuple[str, ...]
    bounds: str
    knob: Mapping[str, Any]
    action: str


FAMILIES = (
    Family(
        ("latency", "queue"),
        "replicas",
        {"deployment": "{{ labels.deployment }}", "namespace": "{{ labels.namespace }}"},
        "scale",
    ),
    # A static knob watched through a labelled metric: two targets on one knob.
    Family(
        ("pool_usage", "latency"), "replicas", {"deployment": "api", "namespace": "crm"}, "scale"
    ),
    Family(("hit_ratio",), "ttl", {"key": "crm:cache:ttl:{{ labels.cache }}"}, "set_key"),
    Family(("pool_usage", "hit_ratio"), "pool", {"key": POOL_KEY}, "set_key"),
)
BOUNDS_OF_KNOB = {
    "deployment/crm/api": "replicas",
    "deployment/crm/ml": "replicas",
    "key/crm:cache:ttl:users": "ttl",
    "key/crm:cache:ttl:orders": "ttl",
    f"key/{POOL_KEY}": "pool",
}

# --- inputs --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reading:
    """One series of one answer: a good value, or one of the ways data goes bad."""

    kind: str  # value, nan, inf, -inf, stale or absent
    value: float = 0.0
    age: float = 0.0

    @property
    def usable(self) -> bool:
        return self.kind == "value"


@dataclass(frozen=True)
class TickInput:
    gap: float
    # metric -> one reading per series of SERIES[metric], or None for "no answer at all"
    answers: Mapping[str, tuple[Reading, ...] | None]
    failing: frozenset[str]


@dataclass(frozen=True)
class World:
    rule_file: str
    bounds: Mapping[str, tuple[int, int]]  # replicas, ttl, pool -> (min, max) of every rule
    start: Mapping[str, float]  # knob id -> value; a key left out does not exist yet
    ticks: tuple[TickInput, ...]
    dry_run: bool
    restore_at: int


VALUES = (0.0, 0.05, 0.1, 0.2, 0.3, 0.45, 0.5, 0.55, 0.7, 0.8, 0.9, 1.0, 1.5)
THRESHOLDS = (0.2, 0.3, 0.5, 0.7, 0.8)
DURATIONS = ("0s", "15s", "30s", "1m", "2m", "5m")

GOOD_READINGS = tuple(
    Reading("value", value, age) for age in (0.0, 60.0, MAX_SAMPLE_AGE) for value in VALUES
)
BAD_READINGS = (
    Reading("nan"),
    Reading("inf"),
    Reading("-inf"),
    Reading("absent"),
    Reading("stale", 0.9, MAX_SAMPLE_AGE + 1),
    Reading("stale", 0.1, 3600.0),
)
# One flat table, mostly good data so that rules fire, act and meet their limits; a single
# draw per reading keeps generation cheap enough for long sequences.
readings = st.sampled_from(GOOD_READINGS + BAD_READINGS[:3] + GOOD_READINGS + BAD_READINGS[3:])
# Which metrics get no answer at all this tick, as a bit mask over METRICS.
dropped_masks = st.sampled_from((0,) * 12 + (1, 2, 4, 8, 5, 15))
failing_knobs = st.sampled_from(
    (frozenset(),) * 6 + tuple(frozenset({knob}) for knob in KNOB_IDS) + (frozenset(KNOB_IDS),)
)
SERIES_COUNT = sum(len(labels) for labels in SERIES.values())


@st.composite
def tick_inputs(draw: st.DrawFn) -> TickInput:
    gap = draw(st.sampled_from((10.0, 15.0, 30.0, 30.0, 60.0, 60.0, 120.0, 400.0)))
    flat = iter(draw(st.tuples(*(readings for _ in range(SERIES_COUNT)))))
    dropped = draw(dropped_masks)
    answers = {
        metric: None if dropped & (1 << position) else tuple(next(flat) for _ in SERIES[metric])
        for position, metric in enumerate(METRICS)
    }
    return TickInput(gap, answers, draw(failing_knobs))


@st.composite
def bounds_strategy(draw: st.DrawFn) -> dict[str, tuple[int, int]]:
    # Mostly roomy bounds, so that rules move knobs and meet rate limits, windows and budgets;
    # sometimes a single allowed value.
    low = draw(st.sampled_from((2, 1, 3)))
    ttl_low = draw(st.sampled_from((60, 30)))
    pool_low = draw(st.sampled_from((10, 5, 20)))
    return {
        "replicas": (low, draw(st.sampled_from((20, 10, low + 3, low)))),
        "ttl": (ttl_low, draw(st.sampled_from((3600, 600, 86400, ttl_low)))),
        "pool": (pool_low, draw(st.sampled_from((100, 50, pool_low)))),
    }


changes = st.one_of(
    st.builds(lambda f: {"factor": f}, st.sampled_from((0.5, 0.75, 0.8, 1.25, 1.5, 2.0))),
    st.builds(lambda s: {"step": s}, st.sampled_from((-3, -1, 1, 2, 5))),
    st.builds(lambda p: {"proportional_to": p}, st.sampled_from((0.3, 0.5, 0.8))),
)
rate_limit_specs = st.lists(
    st.builds(
        lambda kind, amount, period: {kind: amount, "period": period},
        st.sampled_from(("units", "percent")),
        st.sampled_from((1, 2, 4, 10, 50, 100)),
        st.sampled_from(("30s", "1m", "2m", "5m")),
    ),
    max_size=2,
)


@st.composite
def rule_specs(draw: st.DrawFn, name: str, bounds: Mapping[str, tuple[int, int]]) -> dict[str, Any]:
    family = draw(st.sampled_from(FAMILIES))
    threshold = draw(st.sampled_from(THRESHOLDS))
    above = draw(st.booleans())
    hysteresis = draw(st.sampled_from((0.0, 0.0, 0.05, 0.1)))
    spec: dict[str, Any] = {
        "name": name,
        "metric": draw(st.sampled_from(family.metrics)),
        "above" if above else "below": threshold,
    }
    if hysteresis:
        spec["clear_below" if above else "clear_above"] = round(
            threshold - hysteresis if above else threshold + hysteresis, 3
        )
    spec["for"] = draw(st.sampled_from(DURATIONS[:4]))
    spec["keep_firing_for"] = draw(st.sampled_from(("0s", "0s", "1m")))
    spec["cooldown"] = draw(st.sampled_from(DURATIONS))
    spec["enabled"] = draw(st.sampled_from((True, True, True, True, False)))
    low, high = bounds[family.bounds]
    body: dict[str, Any] = {**family.knob, **draw(changes), "min": low, "max": high}
    limits = draw(rate_limit_specs)
    if limits:
        units = "pods" if family.action == "scale" else "change"
        body["rate_limits"] = [
            {(units if k == "units" else k): v for k, v in limit.items()} for limit in limits
        ]
        body["select"] = draw(st.sampled_from(("max", "min")))
    body["stabilization_window"] = draw(st.sampled_from(("0s", "0s", "1m", "5m")))
    if family.action == "set_key":
        body["integer"] = draw(st.booleans())
        if draw(st.booleans()):
            body["default"] = draw(st.integers(low, high))
    spec["action"] = {family.action: body}
    return spec


@st.composite
def worlds(draw: st.DrawFn, *, budget: bool | None = None, dry_run: bool | None = None) -> World:
    """A rule file, start values and ticks; `budget` and `dry_run` fix those choices."""
    bounds = draw(bounds_strategy())
    count = draw(st.integers(2, 7))
    rules = [draw(rule_specs(f"rule-{index}", bounds)) for index in range(count)]
    document: dict[str, Any] = {
        "metrics": METRICS,
        "settings": {"max_sample_age": f"{MAX_SAMPLE_AGE:g}s"},
        "rules": rules,
    }
    if draw(st.booleans()) if budget is None else budget:
        members = [[{"key": POOL_KEY}, {"deployment": "crm/api"}]]
        if draw(st.booleans()):
            members.append([{"key": POOL_KEY}, {"deployment": "crm/ml"}])
        document["budgets"] = [
            {
                "name": "db-connections",
                "limit": draw(st.sampled_from((40, 100, 400, 2000))),
                "terms": members,
            }
        ]
    start: dict[str, float] = {}
    for knob_id in KNOB_IDS:
        low, high = bounds[BOUNDS_OF_KNOB[knob_id]]
        if knob_id.startswith("key/") and draw(st.integers(0, 5)) == 0:
            continue  # the key does not exist yet
        start[knob_id] = draw(st.sampled_from(((low + high) // 2, low, high, min(low + 1, high))))
    ticks = tuple(draw(st.lists(tick_inputs(), min_size=8, max_size=30)))
    return World(
        rule_file=yaml.safe_dump(document, sort_keys=False),
        bounds=bounds,
        start=start,
        ticks=ticks,
        dry_run=draw(st.sampled_from((False, False, False, True))) if dry_run is None else dry_run,
        restore_at=draw(st.integers(1, len(ticks) - 1)),
    )


# --- the in-memory cluster ------------------------------------------------------------------


@dataclass
class ScriptedSource:
    """Answers each tick with the readings the test scripted for it."""

    script: TickInput | None = None

    def fetch(self, queries: Sequence[MetricQuery], at: float) -> Mapping[str, MetricAnswer]:
        assert self.script is not None
        answers: dict[str, MetricAnswer] = {}
        for query in queries:
            scripted = self.script.answers[query.name]
            if scripted is None:
                answers[query.name] = NoData("the test dropped this answer")
                continue
            samples: list[Sample] = []
            for labels, reading in zip(SERIES[query.name], scripted, strict=True):
                samples.extend(_samples(labels, reading, at))
            # As the Prometheus source does: a result without any series is no data.
            answers[query.name] = (
                Series(tuple(samples)) if samples else NoData("the query returned no series")
            )
        return answers


def _samples(labels: Labels, reading: Reading, at: float) -> list[Sample]:
    if reading.kind == "absent":
        return []
    value = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}.get(reading.kind, reading.value)
    return [Sample(labels, value, at - reading.age)]


@dataclass
class InMemoryKnobs:
    """Knob values by id; fails the knobs the tick's script names."""

    values: dict[str, float]
    failing: frozenset[str] = frozenset()

    def handles(self, knob: KnobRef) -> bool:
        return knob.id in BOUNDS_OF_KNOB

    def read(self, knobs: Sequence[KnobRef]) -> Mapping[KnobRef, KnobReading]:
        return {
            knob: KnobValue(self.values[knob.id])
            if knob.id in self.values
            else KnobUnreadable(f"{knob.id} does not exist", missing=True)
            for knob in knobs
        }

    def apply(self, decision: Decision) -> Outcome:
        if decision.knob.id in self.failing:
            return Outcome(OutcomeStatus.FAILED, "the test made this write fail")
        assert decision.final is not None
        old = self.values.get(decision.knob.id)
        self.values[decision.knob.id] = decision.final
        return Outcome(OutcomeStatus.APPLIED, "", old, decision.final)


@dataclass(frozen=True)
class Step:
    now: float
    script: TickInput
    after: Mapping[str, float]  # knob values once the tick's changes were applied
    report: TickReport


@dataclass
class Trace:
    ruleset: RuleSet
    steps: list[Step] = field(default_factory=list)

    def rule(self, name: str) -> Rule:
        return next(rule for rule in self.ruleset.rules if rule.name == name)

    def applied(self) -> list[tuple[Step, Decision, Outcome]]:
        return [
            (step, decision, outcome)
            for step in self.steps
            for decision, outcome in step.report.decisions
            if decision.verdict is Verdict.CHANGE and outcome.status is OutcomeStatus.APPLIED
        ]


def run(world: World, restore_at: int | None = None) -> Trace:
    """Every tick of the world through `tick`; the state is saved to JSON and read back
    before tick `restore_at`, as a daemon restart would."""
    ruleset = load_text(world.rule_file, "generated.yaml")
    source = ScriptedSource()
    knobs = InMemoryKnobs(dict(world.start))
    state = EngineState()
    trace = Trace(ruleset)
    now = START_TIME
    for index, script in enumerate(world.ticks):
        now += script.gap
        if index == restore_at:
            state = EngineState.from_dict(json.loads(json.dumps(state.to_dict())))
        source.script = script
        knobs.failing = script.failing
        report = tick(now, ruleset, state, source, [knobs], dry_run=world.dry_run)
        state = report.state
        trace.steps.append(Step(now, script, dict(knobs.values), report))
    return trace


def lacking_targets(
    trace: Trace, step: Step, *, absent_lacks: bool = True
) -> set[tuple[str, Labels]]:
    """The (rule, series) targets of enabled rules that had no usable value at this tick.

    With `absent_lacks=False` a series missing from an otherwise sound answer does not count:
    its target resolves, as an alert does, rather than lacking data.
    """
    lacking = set()
    for rule in trace.ruleset.active_rules:
        scripted = step.script.answers[rule.metric]
        everything_absent = scripted is not None and all(r.kind == "absent" for r in scripted)
        for position, labels in enumerate(SERIES[rule.metric]):
            reading = None if scripted is None or everything_absent else scripted[position]
            if reading is None or (
                not reading.usable and (absent_lacks or reading.kind != "absent")
            ):
                lacking.add((rule.name, labels))
    return lacking


def knob_of(rule: Rule, labels: Labels) -> str:
    return rule.action.knob.render(dict(labels)).id


# --- the properties -------------------------------------------------------------------------


@PROPERTY_SETTINGS
@given(worlds(dry_run=False))
def test_a_knob_that_starts_inside_its_bounds_never_leaves_them(world: World) -> None:
    trace = run(world)
    for step in trace.steps:
        for knob_id, value in step.after.items():
            low, high = world.bounds[BOUNDS_OF_KNOB[knob_id]]
            assert low <= value <= high, (step.now, knob_id, value)
        for decision, _ in step.report.decisions:
            if decision.verdict is Verdict.CHANGE:
                action = trace.rule(decision.rule).action
                assert decision.final is not None
                assert action.minimum <= decision.final <= action.maximum, decision


@PROPERTY_SETTINGS
@given(worlds())
def test_a_rule_target_never_changes_its_knob_twice_within_its_cooldown(world: World) -> None:
    trace = run(world)
    last_change: dict[tuple[str, Labels], float] = {}
    for step in trace.steps:
        for decision, outcome in step.report.decisions:
            if decision.verdict is not Verdict.CHANGE or outcome.status not in (
                OutcomeStatus.APPLIED,
                OutcomeStatus.DRY_RUN,
            ):
                continue
            key = (decision.rule, decision.labels)
            cooldown = trace.rule(decision.rule).cooldown
            if key in last_change:
                assert step.now - last_change[key] >= cooldown, (key, last_change[key], step.now)
            last_change[key] = step.now


@PROPERTY_SETTINGS
@given(worlds())
def test_no_change_is_made_for_a_target_without_data(world: World) -> None:
    trace = run(world)
    for step in trace.steps:
        lacking = lacking_targets(trace, step)
        for decision, _ in step.report.decisions:
            if decision.verdict is Verdict.CHANGE:
                assert (decision.rule, decision.labels) not in lacking, decision


@PROPERTY_SETTINGS
@given(worlds())
def test_missing_data_never_counts_toward_for(world: World) -> None:
    trace = run(world)
    # since when each target's condition has held on usable data, tick after tick
    holding_since: dict[tuple[str, Labels], float] = {}
    phases: dict[tuple[str, Labels], Phase] = {}
    for step in trace.steps:
        for rule in trace.ruleset.active_rules:
            scripted = step.script.answers[rule.metric]
            for position, labels in enumerate(SERIES[rule.metric]):
                key = (rule.name, labels)
                reading = None if scripted is None else scripted[position]
                if reading is not None and reading.usable and rule.condition.starts(reading.value):
                    holding_since.setdefault(key, step.now)
                else:
                    holding_since.pop(key, None)
        seen = set()
        for evaluation in step.report.evaluations:
            key = (evaluation.rule, evaluation.labels)
            seen.add(key)
            was = phases.get(key, Phase.INACTIVE)
            if evaluation.phase is Phase.FIRING and was is not Phase.FIRING:
                rule = trace.rule(evaluation.rule)
                assert key in holding_since, (step.now, key)
                assert step.now - holding_since[key] >= rule.for_, (step.now, key)
            phases[key] = evaluation.phase
        for key in set(phases) - seen:
            phases[key] = Phase.INACTIVE


@PROPERTY_SETTINGS
@given(worlds())
def test_no_knob_is_lowered_while_a_rule_on_it_lacks_data(world: World) -> None:
    trace = run(world)
    for index, step in enumerate(trace.steps):
        remembered = trace.steps[index - 1].report.state.targets if index else {}
        starved = {
            knob_of(trace.rule(rule), labels)
            for rule, labels in lacking_targets(trace, step, absent_lacks=False)
            if _knob_is_known(trace.rule(rule), labels, step, remembered)
        }
        for decision, _ in step.report.decisions:
            if decision.verdict is Verdict.CHANGE and decision.knob.id in starved:
                assert decision.current is not None and decision.final is not None
                assert decision.final >= decision.current, decision


def _knob_is_known(
    rule: Rule, labels: Labels, step: Step, remembered: Mapping[tuple[str, Labels], object]
) -> bool:
    """Whether the engine can tell which knob a target without data concerns: the knob is
    static, the unusable sample still carries the series' labels, or the target's state from
    the last tick names it. A templated target with none of these (its whole metric missing
    while it was inactive) names no knob, so the guard cannot apply to it."""
    scripted = step.script.answers[rule.metric]
    sample_present = scripted is not None and any(
        reading.kind != "absent" and series == labels
        for series, reading in zip(SERIES[rule.metric], scripted, strict=True)
    )
    return rule.action.knob.is_static or sample_present or (rule.name, labels) in remembered


@PROPERTY_SETTINGS
@given(worlds())
def test_the_same_inputs_always_give_the_same_decisions(world: World) -> None:
    first, second = run(world), run(world)
    for one, other in zip(first.steps, second.steps, strict=True):
        assert one.report.decisions == other.report.decisions
        assert one.report.state.to_dict() == other.report.state.to_dict()


@PROPERTY_SETTINGS
@given(worlds())
def test_a_state_saved_and_restored_mid_sequence_gives_the_same_decisions(world: World) -> None:
    straight = run(world)
    restarted = run(world, restore_at=world.restore_at)
    for one, other in zip(straight.steps, restarted.steps, strict=True):
        assert one.report.decisions == other.report.decisions, one.now
        assert one.report.state.to_dict() == other.report.state.to_dict(), one.now


@PROPERTY_SETTINGS
@given(worlds(dry_run=False))
def test_applied_changes_stay_within_the_rules_rate_limits(world: World) -> None:
    trace = run(world)
    history: dict[str, list[tuple[float, float]]] = {}
    for step, decision, outcome in trace.applied():
        assert decision.current is not None and decision.final is not None
        knob_id = decision.knob.id
        past = history.setdefault(knob_id, [])
        action = trace.rule(decision.rule).action
        if action.rate_limits:
            allowed = [
                _within_rate_limit(
                    limit.kind, limit.value, limit.period, action.integer, past, decision, step
                )
                for limit in action.rate_limits
            ]
            passes = any(allowed) if action.select is SelectPolicy.MAX else all(allowed)
            assert passes, (decision, past)
        old = outcome.old if outcome.old is not None else decision.current
        past.append((step.now, decision.final - old))


def _within_rate_limit(
    kind: RateLimitKind,
    amount: float,
    period: float,
    integer: bool,
    past: Sequence[tuple[float, float]],
    decision: Decision,
    step: Step,
) -> bool:
    """The HPA's rule: from the value at the start of the period, at most `amount` units or
    `amount` percent in that period, counting the changes already made in it."""
    assert decision.current is not None and decision.final is not None
    recent = [delta for when, delta in past if when > step.now - period]
    if decision.final > decision.current:
        start = decision.current - sum(d for d in recent if d > 0)
        if kind is RateLimitKind.ABSOLUTE:
            ceiling = start + amount
        else:
            ceiling = start * (1 + amount / 100)
            ceiling = math.ceil(ceiling) if integer else ceiling
        return decision.final <= ceiling + TOLERANCE
    start = decision.current + sum(-d for d in recent if d < 0)
    if kind is RateLimitKind.ABSOLUTE:
        floor = start - amount
    else:
        floor = start * (1 - amount / 100)
        floor = math.floor(floor) if integer else floor
    return decision.final >= floor - TOLERANCE


@PROPERTY_SETTINGS
@given(worlds(budget=True, dry_run=False))
def test_an_increase_never_takes_a_budget_over_its_limit(world: World) -> None:
    trace = run(world)
    for budget in trace.ruleset.budgets:
        members = {knob.id for knob in budget.knobs}
        for step in trace.steps:
            raised = [
                decision
                for decision, outcome in step.report.changes
                if outcome.status is OutcomeStatus.APPLIED
                and decision.knob.id in members
                and decision.final is not None
                and decision.current is not None
                and decision.final > decision.current
            ]
            if not raised or not members <= set(step.after):
                continue
            usage = policies.budget_usage(
                budget, {knob: step.after[knob.id] for knob in budget.knobs}
            )
            assert usage <= budget.limit + TOLERANCE, (step.now, usage, raised)


@PROPERTY_SETTINGS
@given(worlds(dry_run=True))
def test_a_dry_run_reports_changes_but_never_writes(world: World) -> None:
    trace = run(world)
    for step in trace.steps:
        assert step.after == world.start
        for decision, outcome in step.report.changes:
            assert decision.dry_run and outcome.status is OutcomeStatus.DRY_RUN
