"""The engine, policy by policy, driven through `tick` with in-memory ports."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pytest

from autotuner.config.loader import load_text
from autotuner.control.tick import TickReport, tick
from autotuner.core.model import (
    KnobUnreadable,
    MetricAnswer,
    MetricQuery,
    NoData,
    OutcomeStatus,
    Phase,
    Sample,
    Series,
    Verdict,
)
from autotuner.core.state import EngineState
from tests.fakes import FakeActuator, FakeSource

LATENCY_METRIC = """
metrics:
  p95: histogram_quantile(0.95, sum by (le) (rate(h_bucket[5m])))
"""


def scale_rule(
    name: str = "up", metric: str = "p95", condition: str = "above: 0.5", **fields: str
) -> str:
    rule = {"for": "0", "cooldown": "0"} | {k.removesuffix("_"): v for k, v in fields.items()}
    action = rule.pop("action", "factor: 1.5, max: 20")
    extra = "".join(f"\n    {k}: {v}" for k, v in rule.items())
    return f"""
  - name: {name}
    metric: {metric}
    {condition}{extra}
    action:
      scale: {{deployment: api, namespace: crm, {action}}}"""


@dataclass
class Loop:
    """A rule file, a source, an actuator and the state carried from tick to tick."""

    text: str
    knobs: dict[str, float] = field(default_factory=lambda: {"deployment/crm/api": 4})
    dry_run: bool = False

    def __post_init__(self) -> None:
        self.ruleset = load_text(self.text, "test.yaml")
        self.source = FakeSource()
        self.actuator = FakeActuator(dict(self.knobs))
        self.state = EngineState()

    def at(self, now: float, **values: float | NoData) -> TickReport:
        self.source.values.update(values)
        report = tick(
            now, self.ruleset, self.state, self.source, [self.actuator], dry_run=self.dry_run
        )
        self.state = report.state
        return report

    @property
    def replicas(self) -> float:
        return self.actuator.knobs["deployment/crm/api"]


def rules(*bodies: str, head: str = LATENCY_METRIC) -> str:
    return head + "rules:" + "".join(bodies)


def only(report: TickReport):  # type: ignore[no-untyped-def]
    assert len(report.decisions) == 1, report.decisions
    return report.decisions[0]


def test_for_keeps_a_target_pending_until_the_duration_has_passed() -> None:
    loop = Loop(rules(scale_rule(for_="1m")))
    first = loop.at(0, p95=0.7)
    assert first.evaluations[0].phase is Phase.PENDING and not first.decisions
    assert loop.at(45, p95=0.7).evaluations[0].phase is Phase.PENDING
    decision, outcome = only(loop.at(60, p95=0.7))
    assert decision.verdict is Verdict.CHANGE and outcome.status is OutcomeStatus.APPLIED
    assert (decision.current, decision.final) == (4, 6)
    assert loop.replicas == 6


def test_a_dip_below_the_threshold_restarts_the_pending_timer() -> None:
    loop = Loop(rules(scale_rule(for_="1m")))
    loop.at(0, p95=0.7)
    loop.at(30, p95=0.4)
    loop.at(45, p95=0.7)
    assert not loop.at(90, p95=0.7).decisions
    assert only(loop.at(105, p95=0.7))[0].verdict is Verdict.CHANGE


def test_hysteresis_keeps_firing_inside_the_band_and_clears_below_it() -> None:
    loop = Loop(
        rules(scale_rule(condition="above: 0.5\n    clear_below: 0.45", action="step: 1, max: 20"))
    )
    assert loop.at(0, p95=0.6).evaluations[0].phase is Phase.FIRING
    report = loop.at(15, p95=0.47)
    assert report.evaluations[0].phase is Phase.FIRING
    assert only(report)[0].final == 6
    cleared = loop.at(30, p95=0.44)
    assert cleared.evaluations[0].phase is Phase.INACTIVE and not cleared.decisions


def test_keep_firing_for_holds_the_phase_without_acting() -> None:
    loop = Loop(rules(scale_rule(keep_firing_for="1m")))
    loop.at(0, p95=0.7)
    kept = loop.at(30, p95=0.3)
    assert kept.evaluations[0].phase is Phase.FIRING and not kept.decisions
    assert loop.at(100, p95=0.3).evaluations[0].phase is Phase.INACTIVE


@pytest.mark.parametrize(
    ("action", "current", "expected"),
    [
        ("factor: 1.5, max: 20", 4, 6),
        ("factor: 1.5, max: 20", 1, 2),  # rounds away from the current value
        ("factor: 1.5, max: 20", 16, 20),  # max
        ("factor: 1.5, max: 20", 25, 25),  # already above max: an up rule never lowers
        ("factor: 1.5, min: 3, max: 20", 0, 3),  # min lifts a scaled-to-zero workload
        ("step: 2, max: 20", 4, 6),
        ("proportional_to: 0.35, max: 20", 4, 6),  # ceil(4 x 0.5 / 0.35) = 6, as the HPA
    ],
)
def test_change_and_bounds(action: str, current: float, expected: float) -> None:
    loop = Loop(rules(scale_rule(action=action)), knobs={"deployment/crm/api": current})
    loop.at(0, p95=0.5001 if "proportional" in action else 0.7)
    loop.at(15, p95=0.5)
    assert loop.replicas == expected


def test_proportional_change_within_tolerance_changes_nothing() -> None:
    loop = Loop(rules(scale_rule(condition="above: 0.1", action="proportional_to: 0.5, max: 20")))
    decision, _ = only(loop.at(0, p95=0.52))
    assert decision.verdict is Verdict.HOLD and loop.replicas == 4


def test_scale_down_respects_min() -> None:
    loop = Loop(rules(scale_rule(condition="below: 0.2", action="factor: 0.5, min: 3, max: 20")))
    decision, _ = only(loop.at(0, p95=0.1))
    assert decision.final == 3
    assert [s.policy for s in decision.steps if s.limited] == ["bounds"]


def test_rate_limits_count_changes_within_the_period_as_the_hpa_does() -> None:
    loop = Loop(
        rules(
            scale_rule(
                action="factor: 3, max: 100, rate_limits: [{pods: 4, period: 1m}, {percent: 50, period: 1m}]"
            )
        ),
        knobs={"deployment/crm/api": 10},
    )
    first, _ = only(loop.at(0, p95=0.9))
    assert first.final == 15  # max(10 + 4, ceil(10 x 1.5)) = 15
    assert first.limited_by == "rate_limit"
    second, _ = only(loop.at(30, p95=0.9))
    assert second.verdict is Verdict.HOLD  # 5 already added this minute: start 10 allows 15
    third, _ = only(loop.at(61, p95=0.9))
    assert third.final == 23  # period start 15: max(19, ceil(22.5))


def test_rate_limit_select_min_takes_the_tighter_policy() -> None:
    loop = Loop(
        rules(
            scale_rule(
                action="factor: 3, max: 100, select: min, rate_limits: [{pods: 4, period: 1m}, {percent: 50, period: 1m}]"
            )
        ),
        knobs={"deployment/crm/api": 10},
    )
    assert only(loop.at(0, p95=0.9))[0].final == 14


def test_scale_down_stabilization_takes_the_highest_recommendation_of_the_window() -> None:
    down = scale_rule(
        name="down",
        condition="below: 0.2",
        action="factor: 0.5, min: 1, max: 20, stabilization_window: 1m",
    )
    loop = Loop(rules(down), knobs={"deployment/crm/api": 8})
    loop.at(0, p95=0.3)  # not firing: the recommendation is the current 8
    held, _ = only(loop.at(15, p95=0.1))
    assert held.verdict is Verdict.HOLD and held.limited_by == "stabilization"
    assert only(loop.at(45, p95=0.1))[0].verdict is Verdict.HOLD
    applied, _ = only(loop.at(61, p95=0.1))  # the 8 of t=0 has left the window
    assert applied.final == 4


def test_cooldown_holds_a_rule_and_says_for_how_long() -> None:
    loop = Loop(rules(scale_rule(cooldown="2m", action="step: 1, max: 20")))
    assert only(loop.at(0, p95=0.7))[0].final == 5
    held, _ = only(loop.at(60, p95=0.7))
    assert held.verdict is Verdict.HOLD and held.limited_by == "cooldown"
    assert "in cooldown for 60s more" in held.reason
    assert only(loop.at(120, p95=0.7))[0].final == 6


def test_a_failed_change_starts_no_cooldown() -> None:
    loop = Loop(rules(scale_rule(cooldown="2m", action="step: 1, max: 20")))
    loop.actuator.fail = True
    assert only(loop.at(0, p95=0.7))[1].status is OutcomeStatus.FAILED
    loop.actuator.fail = False
    assert only(loop.at(15, p95=0.7))[1].status is OutcomeStatus.APPLIED


def test_conflict_scale_up_wins_over_scale_down() -> None:
    head = LATENCY_METRIC + "  errors: sum(rate(errors_total[5m]))\n"
    loop = Loop(
        rules(
            scale_rule(name="up", metric="errors", condition="above: 1"),
            scale_rule(name="down", condition="below: 0.2", action="factor: 0.5, max: 20"),
            head=head,
        )
    )
    report = loop.at(0, p95=0.1, errors=5)
    by_rule = {d.rule: d for d, _ in report.decisions}
    assert by_rule["up"].verdict is Verdict.CHANGE and by_rule["up"].final == 6
    assert by_rule["down"].verdict is Verdict.HOLD and by_rule["down"].limited_by == "conflict"


def test_conflict_the_rule_asking_for_more_capacity_wins_and_ties_are_by_name() -> None:
    head = LATENCY_METRIC + "  errors: sum(rate(errors_total[5m]))\n"
    loop = Loop(
        rules(
            scale_rule(
                name="b-double", metric="errors", condition="above: 1", action="factor: 2, max: 20"
            ),
            scale_rule(name="a-half", action="factor: 1.5, max: 20"),
            scale_rule(
                name="c-double", metric="errors", condition="above: 1", action="factor: 2, max: 20"
            ),
            head=head,
        )
    )
    report = loop.at(0, p95=0.9, errors=5)
    changed = [d.rule for d, _ in report.decisions if d.verdict is Verdict.CHANGE]
    assert changed == ["b-double"] and loop.replicas == 8


POOL_IN_BUDGET = """
metrics:
  usage: sum(in_use) / sum(max)
budgets:
  - name: db
    limit: 400
    terms: [[{key: "pool"}, {deployment: crm/api}]]
rules:
  - name: grow
    metric: usage
    above: 0.8
    action:
      set_key: {key: pool, factor: 1.5, max: 100}
"""


def test_budget_caps_an_increase_to_what_the_database_allows() -> None:
    loop = Loop(POOL_IN_BUDGET, knobs={"key/pool": 16, "deployment/crm/api": 20})
    decision, _ = only(loop.at(0, usage=0.9))
    assert decision.final == 20 and decision.limited_by == "budget"
    assert "budget db: 400 of 400 used" in decision.reason + str(decision.steps)


def test_budget_blocks_an_increase_when_a_member_cannot_be_read() -> None:
    loop = Loop(POOL_IN_BUDGET, knobs={"key/pool": 16})
    loop.actuator.unreadable["deployment/crm/api"] = KnobUnreadable("forbidden")
    decision, _ = only(loop.at(0, usage=0.9))
    assert decision.verdict is Verdict.HOLD and "cannot read deployment/crm/api" in decision.reason


@pytest.mark.parametrize(
    "bad",
    [NoData("query failed: timeout"), math.nan, math.inf, -math.inf],
    ids=["nodata", "nan", "inf", "-inf"],
)
def test_missing_data_never_acts_and_never_counts_toward_for(bad: float | NoData) -> None:
    loop = Loop(rules(scale_rule(for_="1m")))
    loop.at(0, p95=0.7)
    report = loop.at(30, p95=bad)
    assert not report.decisions
    assert report.evaluations[0].no_data
    loop.at(45, p95=0.7)
    assert not loop.at(90, p95=0.7).decisions  # pending started over at 45
    assert loop.replicas == 4


def test_stale_samples_are_no_data() -> None:
    loop = Loop(rules(scale_rule()))
    loop.source.timestamps["p95"] = 0
    report = loop.at(600, p95=0.9)
    assert not report.decisions and "stale" in (report.evaluations[0].no_data or "")


def test_a_firing_target_without_data_is_blocked_with_the_reason() -> None:
    loop = Loop(rules(scale_rule(cooldown="10m")))
    loop.at(0, p95=0.9)
    decision, outcome = only(loop.at(15, p95=NoData("Prometheus did not answer")))
    assert decision.verdict is Verdict.BLOCKED and outcome.status is OutcomeStatus.SKIPPED
    assert "Prometheus did not answer" in decision.reason


def test_never_scale_down_while_another_input_of_the_knob_is_missing() -> None:
    head = LATENCY_METRIC + "  errors: sum(rate(errors_total[5m]))\n"
    loop = Loop(
        rules(
            scale_rule(name="down", condition="below: 0.2", action="factor: 0.5, max: 20"),
            scale_rule(name="up", metric="errors", condition="above: 1"),
            head=head,
        )
    )
    loop.at(0, p95=0.1, errors=0.0)
    assert loop.replicas == 2
    loop.actuator.knobs["deployment/crm/api"] = 8
    report = loop.at(15, p95=0.1, errors=NoData("query failed"))
    (down,) = [d for d, _ in report.decisions if d.rule == "down"]
    assert down.verdict is Verdict.HOLD and down.limited_by == "missing_data"
    assert loop.replicas == 8


def test_dry_run_reports_without_acting_and_still_cools_down() -> None:
    loop = Loop(rules(scale_rule(cooldown="1m")), dry_run=True)
    decision, outcome = only(loop.at(0, p95=0.9))
    assert decision.dry_run and outcome.status is OutcomeStatus.DRY_RUN
    assert loop.replicas == 4 and not loop.actuator.applied
    assert only(loop.at(15, p95=0.9))[0].limited_by == "cooldown"


def test_an_unreadable_knob_blocks_the_rule() -> None:
    loop = Loop(rules(scale_rule()))
    loop.actuator.unreadable["deployment/crm/api"] = KnobUnreadable(
        "owned by HorizontalPodAutoscaler crm/api", skip=True
    )
    decision, _ = only(loop.at(0, p95=0.9))
    assert (
        decision.verdict is Verdict.BLOCKED
        and "owned by HorizontalPodAutoscaler" in decision.reason
    )


def test_a_missing_config_key_starts_from_the_declared_default_only() -> None:
    text = """
metrics:
  hit: sum by (cache) (rate(h[5m])) / sum by (cache) (rate(r[5m]))
rules:
  - name: ttl
    metric: hit
    below: 0.7
    action:
      set_key: {key: "ttl:{{ labels.cache }}", factor: 2, min: 60, max: 3600, default: 300}
  - name: ttl-no-default
    metric: hit
    below: 0.7
    action:
      set_key: {key: "other:{{ labels.cache }}", factor: 2, min: 60, max: 3600}
"""
    loop = Loop(text, knobs={})
    loop.source.labels["hit"] = {"cache": "users"}
    report = loop.at(0, hit=0.5)
    by_rule = {d.rule: d for d, _ in report.decisions}
    assert by_rule["ttl"].from_default and by_rule["ttl"].final == 600
    assert loop.actuator.knobs["key/ttl:users"] == 600
    assert by_rule["ttl-no-default"].verdict is Verdict.BLOCKED


def test_each_series_is_its_own_target_with_its_own_knob() -> None:
    text = """
metrics:
  hit: sum by (cache) (rate(h[5m])) / sum by (cache) (rate(r[5m]))
rules:
  - name: ttl
    metric: hit
    below: 0.7
    for: 1m
    action:
      set_key: {key: "ttl:{{ labels.cache }}", factor: 2, min: 60, max: 3600}
"""
    loop = Loop(text, knobs={"key/ttl:a": 100, "key/ttl:b": 100})
    loop.at(0, hit={(("cache", "a"),): 0.5, (("cache", "b"),): 0.9})  # type: ignore[arg-type]
    loop.at(60, hit={(("cache", "a"),): 0.5, (("cache", "b"),): 0.5})  # type: ignore[arg-type]
    assert loop.actuator.knobs == {"key/ttl:a": 200, "key/ttl:b": 100}


TTL_PER_CACHE = """
metrics:
  hit: sum by (cache) (rate(h[5m])) / sum by (cache) (rate(r[5m]))
rules:
  - name: ttl
    metric: hit
    below: 0.7
    action:
      set_key: {key: "ttl:{{ labels.cache }}", factor: 2, min: 60, max: 3600}
"""


def test_a_vanished_series_resolves_its_target() -> None:
    loop = Loop(TTL_PER_CACHE, knobs={"key/ttl:a": 100, "key/ttl:b": 100})
    loop.at(0, hit={(("cache", "a"),): 0.5, (("cache", "b"),): 0.5})  # type: ignore[arg-type]
    report = loop.at(15, hit={(("cache", "a"),): 0.9})  # type: ignore[arg-type]
    gone = [e for e in report.evaluations if e.labels == (("cache", "b"),)]
    assert gone[0].phase is Phase.INACTIVE and "absent" in (gone[0].no_data or "")


def test_every_decision_explains_itself() -> None:
    loop = Loop(rules(scale_rule(action="factor: 1.5, max: 5")))
    decision, _ = only(loop.at(0, p95=0.73))
    assert decision.reason == "p95 0.73 > 0.5: deployment/crm/api 4 -> 5"
    assert (
        decision.value,
        decision.threshold,
        decision.current,
        decision.proposed,
        decision.final,
    ) == (0.73, 0.5, 4, 6, 5)
    assert [(s.policy, s.before, s.after) for s in decision.steps] == [("bounds", 6, 5)]
    assert decision.limited_by == "bounds"


def test_state_round_trips_through_json_exactly() -> None:
    loop = Loop(
        rules(
            scale_rule(
                for_="1m", cooldown="5m", action="factor: 1.5, max: 20, stabilization_window: 5m"
            )
        )
    )
    for now in (0, 15, 60, 75):
        loop.at(now, p95=0.9)
    restored = EngineState.from_dict(json.loads(json.dumps(loop.state.to_dict())))
    assert restored == loop.state
    assert restored.to_dict() == loop.state.to_dict()


def test_an_outage_does_not_empty_a_stabilization_window() -> None:
    down = scale_rule(name="down", condition="below: 0.2", action="factor: 0.5, min: 1, max: 20, stabilization_window: 1m")
    loop = Loop(rules(down), knobs={"deployment/crm/api": 8})
    loop.at(0, p95=0.3)  # the window holds the current 8
    for now in (15, 30, 45, 60, 75, 90):
        assert not loop.at(now, p95=NoData("Prometheus is down")).decisions
    held, _ = only(loop.at(105, p95=0.1))  # back, and low: the window still remembers 8
    assert held.verdict is Verdict.HOLD and held.limited_by == "stabilization"
    assert only(loop.at(166, p95=0.1))[0].final == 4


class Twice(FakeSource):
    """Answers `hit` with the same series twice."""

    def fetch(self, queries: Sequence[MetricQuery], at: float) -> Mapping[str, MetricAnswer]:
        sample = Sample((("cache", "users"),), 0.1, at)
        return {"hit": Series((sample, sample))}


def test_a_duplicated_series_never_acts() -> None:
    loop = Loop(TTL_PER_CACHE, knobs={"key/ttl:users": 100})
    loop.source = Twice()
    report = loop.at(0)
    assert not report.decisions and loop.actuator.knobs["key/ttl:users"] == 100
    assert [e.no_data for e in report.evaluations] == ['duplicate series {cache="users"}']


def test_no_scale_down_while_a_templated_rule_that_was_quiet_has_no_data() -> None:
    text = """
metrics:
  p95: histogram_quantile(0.95, sum by (le, deployment) (rate(h_bucket[5m])))
  queue: sum by (deployment) (queue_length)
rules:
  - name: shrink-when-fast
    metric: p95
    below: 0.2
    action:
      scale: {deployment: "{{ labels.deployment }}", namespace: crm, factor: 0.5, max: 20}
  - name: grow-when-queued
    metric: queue
    above: 10
    action:
      scale: {deployment: "{{ labels.deployment }}", namespace: crm, factor: 2, max: 20}
"""
    loop = Loop(text, knobs={"deployment/crm/api": 4})
    api = (("deployment", "api"),)
    loop.at(0, p95={api: 0.3}, queue={api: 1.0})  # type: ignore[arg-type]
    report = loop.at(10, p95={api: 0.1}, queue=NoData("query failed"))  # type: ignore[arg-type]
    (shrink,) = [d for d, _ in report.decisions]
    assert shrink.limited_by == "missing_data" and loop.replicas == 4


def test_a_budget_counts_a_decrease_only_once_it_has_been_applied() -> None:
    text = """
metrics:
  usage: sum(in_use) / sum(max)
  p95: histogram_quantile(0.95, sum by (le) (rate(h_bucket[5m])))
budgets:
  - name: db
    limit: 400
    terms: [[{key: "pool"}, {deployment: crm/api}]]
rules:
  - name: pool-down
    metric: usage
    below: 0.3
    action:
      set_key: {key: pool, factor: 0.5, max: 100}
  - name: api-up
    metric: p95
    above: 0.5
    action:
      scale: {deployment: api, namespace: crm, factor: 2, max: 20}
"""
    loop = Loop(text, knobs={"key/pool": 80, "deployment/crm/api": 4})
    report = loop.at(0, usage=0.1, p95=0.9)
    by_rule = {d.rule: d for d, _ in report.decisions}
    assert by_rule["pool-down"].final == 40
    assert by_rule["api-up"].final == 5 and by_rule["api-up"].limited_by == "budget"


def test_an_answer_without_series_is_no_data() -> None:
    loop = Loop(rules(scale_rule(for_="1m")))
    loop.at(0, p95=0.9)
    loop.source.values["p95"] = {}  # type: ignore[assignment]
    report = loop.at(15)
    assert report.evaluations[0].no_data == "the query returned no series"
    assert report.evaluations[0].phase is Phase.INACTIVE
