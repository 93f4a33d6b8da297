"""The daemon's cycle with in-memory ports: reload, leadership, allow-list, failures, state."""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from autotuner.adapters.sql_store import AuditRecord
from autotuner.core.model import (
    Decision,
    KnobReading,
    KnobRef,
    NoData,
    Outcome,
    OutcomeStatus,
    labels_of,
)
from autotuner.runtime.controller import Controller, CycleResult, SoleReplica
from autotuner.runtime.guards import WatchedSource
from autotuner.runtime.http import ControllerMetrics
from autotuner.runtime.reloader import RuleReloader, RulesRejected
from autotuner.runtime.settings import AllowList
from tests.fakes import FakeActuator, FakeSource

RULES = """
metrics:
  latency: latency_seconds
  hit_ratio: cache_hit_ratio
rules:
  - name: scale-api
    metric: latency
    above: 0.5
    cooldown: 1m
    action:
      scale:
        deployment: api
        namespace: crm
        factor: 2
        min: 1
        max: 10
  - name: cache-ttl
    metric: hit_ratio
    below: 0.7
    action:
      set_key:
        key: "{{ labels.prefix }}:ttl"
        factor: 2
        min: 10
        max: 1000
"""

ALLOW = AllowList(namespaces=("crm",), workloads=("api",), key_prefixes=("crm:",))
API = "deployment/crm/api"


class MemoryStore:
    def __init__(self) -> None:
        self.intents: dict[int, Decision] = {}
        self.outcomes: dict[int, Outcome] = {}
        self.fail_saves = False
        self.documents: dict[str, Mapping[str, Any]] = {}
        self.saves = 0
        self.fail_intents = False
        self.pruned: list[float] = []

    def record_intent(self, decision: Decision) -> int:
        if self.fail_intents:
            raise RuntimeError("database unavailable")
        intent = len(self.intents) + 1
        self.intents[intent] = decision
        return intent

    def record_outcome(self, intent_id: int, outcome: Outcome) -> None:
        self.outcomes[intent_id] = outcome

    @property
    def document(self) -> Mapping[str, Any] | None:
        return self.documents.get("engine")

    def load_state(self) -> Mapping[str, Any] | None:
        return self.document

    def save_state(
        self, document: Mapping[str, Any], saved_at: float, name: str = "engine"
    ) -> None:
        if self.fail_saves:
            raise RuntimeError("database unavailable")
        self.documents[name] = document
        self.saves += 1

    def delete_older_than(self, cutoff: float) -> int:
        self.pruned.append(cutoff)
        return 0

    def history(self, *, since: float | None = None) -> list[AuditRecord]:
        return [
            AuditRecord(intent, decision, decision.time, self.outcomes.get(intent))
            for intent, decision in self.intents.items()
            if since is None or decision.time >= since
        ]


class Lease:
    def __init__(self) -> None:
        self.held = True
        self.released = False

    def may_act(self) -> bool:
        return self.held

    def release(self) -> None:
        self.released = True


class StepClock:
    def __init__(self) -> None:
        self.time = 1_000.0

    def now(self) -> float:
        return self.time


class Rig:
    """A controller over fakes, with the pieces a test pokes at."""

    def __init__(self, tmp_path: Path, *, dry_run: bool = False, lease: Lease | None = None):
        self.rules = tmp_path / "rules.yaml"
        self.rules.write_text(RULES)
        self.registry = CollectorRegistry()
        self.metrics = ControllerMetrics(self.registry)
        self.source = FakeSource()
        self.actuator = FakeActuator(knobs={API: 2, "key/crm:ttl": 100, "key/billing:ttl": 100})
        self.store = MemoryStore()
        self.clock = StepClock()
        self.lease = lease or Lease()
        self.decisions: list[tuple[Decision, Outcome]] = []
        self.controller = self.build(dry_run)

    def build(self, dry_run: bool = False) -> Controller:
        return Controller(
            reloader=RuleReloader([self.rules], ALLOW),
            source=WatchedSource(
                self.source,
                lambda metric, reason: self.metrics.query_errors.labels(metric=metric).inc(),
            ),
            actuators=[self.actuator],
            store=self.store,
            leadership=self.lease,
            metrics=self.metrics,
            clock=self.clock,
            allow=ALLOW,
            dry_run=dry_run,
            on_decision=lambda d, o: self.decisions.append((d, o)),
            retention=86_400.0,
        )

    def sample(self, name: str, **labels: str) -> float | None:
        return self.registry.get_sample_value(name, labels)


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    return Rig(tmp_path)


def test_a_cycle_acts_records_and_counts(rig: Rig) -> None:
    rig.source.values = {"latency": 0.9, "hit_ratio": NoData("no series")}
    report = rig.controller.cycle()
    assert report.result is CycleResult.OK
    assert rig.actuator.knobs[API] == 4
    (intent,) = rig.store.intents.values()
    assert intent.knob.id == API
    assert rig.store.outcomes[1].status is OutcomeStatus.APPLIED
    assert rig.store.document is not None
    assert rig.sample("autotuner_actions_total", rule="scale-api", outcome="applied") == 1
    assert rig.sample("autotuner_cycles_total", result="ok") == 1
    assert rig.sample("autotuner_rule_evaluations_total", rule="scale-api", result="firing") == 1
    assert rig.sample("autotuner_query_errors_total", metric="hit_ratio") == 1
    assert rig.sample("autotuner_rules_loaded") == 2
    assert rig.sample("autotuner_leader") == 1
    assert (rig.sample("autotuner_last_successful_cycle_timestamp_seconds") or 0) > 0
    assert [d.knob.id for d, _ in rig.decisions] == [API]
    assert rig.store.pruned == [1_000.0 - 86_400.0]


def test_cooldown_survives_a_restart_through_the_store(rig: Rig) -> None:
    rig.source.values = {"latency": 0.9}
    rig.controller.cycle()
    assert rig.actuator.knobs[API] == 4
    # A new process: same store, fresh controller.
    restarted = rig.build()
    rig.clock.time += 15
    restarted.cycle()
    assert rig.actuator.knobs[API] == 4, "the cooldown was forgotten across the restart"
    rig.clock.time += 60
    restarted.cycle()
    assert rig.actuator.knobs[API] == 8


def test_a_write_that_may_have_taken_effect_holds_its_cooldown_across_a_restart(
    rig: Rig,
) -> None:
    class NoAnswer(FakeActuator):
        def apply(self, decision: Decision) -> Outcome:
            self.knobs[decision.knob.id] = float(decision.final or 0)  # it did, as it happens
            return Outcome(OutcomeStatus.UNCERTAIN, "no answer", decision.current, decision.final)

    rig.actuator = NoAnswer(knobs={API: 2})
    rig.source.values = {"latency": 0.9}
    rig.build().cycle()
    assert rig.actuator.knobs[API] == 4
    # Killed before the state was saved: only the audit knows of the write.
    rig.store.documents.clear()
    restarted = rig.build()
    rig.clock.time += 15
    restarted.cycle()
    assert rig.actuator.knobs[API] == 4, "the uncertain write's cooldown was forgotten"


def test_dry_run_records_without_acting(tmp_path: Path) -> None:
    rig = Rig(tmp_path, dry_run=True)
    rig.source.values = {"latency": 0.9}
    rig.controller.cycle()
    assert rig.actuator.knobs[API] == 2
    assert rig.actuator.applied == []
    assert [o.status for o in rig.store.outcomes.values()] == [OutcomeStatus.DRY_RUN]
    assert rig.sample("autotuner_actions_total", rule="scale-api", outcome="dry_run") == 1


def test_templated_knob_outside_allow_list_is_never_touched(rig: Rig) -> None:
    hits = {labels_of({"prefix": "crm"}): 0.5, labels_of({"prefix": "billing"}): 0.5}
    rig.source.values = {"latency": 0.1, "hit_ratio": hits}
    rig.controller.cycle()
    assert rig.actuator.knobs["key/crm:ttl"] == 200
    assert rig.actuator.knobs["key/billing:ttl"] == 100
    assert [d.knob.id for d in rig.actuator.applied] == ["key/crm:ttl"]


def test_standby_replica_does_nothing_and_takes_over_with_the_saved_state(rig: Rig) -> None:
    rig.source.values = {"latency": 0.9}
    rig.controller.cycle()
    assert rig.actuator.knobs[API] == 4

    standby_lease = Lease()
    standby_lease.held = False
    standby = Controller(
        reloader=RuleReloader([rig.rules], ALLOW),
        source=WatchedSource(rig.source, lambda metric, reason: None),
        actuators=[rig.actuator],
        store=rig.store,
        leadership=standby_lease,
        metrics=ControllerMetrics(CollectorRegistry()),
        clock=rig.clock,
        allow=ALLOW,
    )
    assert standby.cycle().result is CycleResult.STANDBY
    assert standby.readiness().ok
    assert rig.actuator.knobs[API] == 4
    # The leader goes away; the standby wins the lease within the cooldown.
    standby_lease.held = True
    rig.clock.time += 30
    assert standby.cycle().result is CycleResult.OK
    assert rig.actuator.knobs[API] == 4, "the new leader forgot the old leader's cooldown"


def test_losing_the_lease_mid_cycle_stops_acting(rig: Rig) -> None:
    rig.source.values = {"latency": 0.9}

    class LosesLeaseWhileReading(FakeActuator):
        def read(self, knobs: Sequence[KnobRef]) -> Mapping[KnobRef, KnobReading]:
            rig.lease.held = False
            return super().read(knobs)

    rig.actuator = LosesLeaseWhileReading(knobs={API: 2})
    controller = rig.build()
    controller.cycle()
    assert rig.actuator.knobs[API] == 2
    (outcome,) = rig.store.outcomes.values()
    assert outcome.status is OutcomeStatus.SKIPPED
    assert "leader lease" in outcome.detail


def test_one_failing_target_does_not_stop_the_others(rig: Rig) -> None:
    class BrokenForApi(FakeActuator):
        def apply(self, decision: Decision) -> Outcome:
            if decision.knob.id == API:
                raise ConnectionError("kubernetes unreachable")
            return super().apply(decision)

    rig.actuator = BrokenForApi(knobs={API: 2, "key/crm:ttl": 100})
    controller = rig.build()
    rig.source.values = {"latency": 0.9, "hit_ratio": {labels_of({"prefix": "crm"}): 0.5}}
    assert controller.cycle().result is CycleResult.OK
    statuses = {d.knob.id: o.status for d, o in rig.decisions}
    assert statuses == {API: OutcomeStatus.FAILED, "key/crm:ttl": OutcomeStatus.APPLIED}
    assert rig.actuator.knobs["key/crm:ttl"] == 200


def test_an_unrecorded_intent_is_never_acted_on(rig: Rig) -> None:
    rig.store.fail_intents = True
    rig.source.values = {"latency": 0.9}
    rig.controller.cycle()
    assert rig.actuator.knobs[API] == 2
    assert rig.sample("autotuner_actions_total", rule="scale-api", outcome="failed") == 1
    rig.store.fail_intents = False
    rig.clock.time += 15
    rig.controller.cycle()
    assert rig.actuator.knobs[API] == 4


def test_a_store_that_cannot_save_state_fails_the_cycle(rig: Rig) -> None:
    rig.store.fail_saves = True
    rig.source.values = {"latency": 0.1}
    report = rig.controller.cycle()
    assert report.result is CycleResult.FAILED
    assert "database unavailable" in (report.error or "")
    assert rig.sample("autotuner_cycles_total", result="failed") == 1
    rig.store.fail_saves = False
    assert rig.controller.cycle().result is CycleResult.OK


@pytest.mark.parametrize("outcome_recorded", [True, False])
@pytest.mark.parametrize("saved_before", [True, False])
def test_a_change_made_just_before_a_crash_is_not_repeated(
    rig: Rig, outcome_recorded: bool, saved_before: bool
) -> None:
    if saved_before:
        rig.source.values = {"latency": 0.1}
        rig.controller.cycle()
        rig.clock.time += 15
    # The process acts, then dies before the state is saved (and perhaps before the outcome
    # is recorded).
    rig.store.fail_saves = True
    rig.source.values = {"latency": 0.9}
    rig.controller.cycle()
    assert rig.actuator.knobs[API] == 4
    if not outcome_recorded:
        rig.store.outcomes.clear()
    rig.store.fail_saves = False
    restarted = rig.build()
    rig.clock.time += 15
    restarted.cycle()
    assert rig.actuator.knobs[API] == 4, "the change was repeated after the restart"
    rig.clock.time += 60
    restarted.cycle()
    assert rig.actuator.knobs[API] == 8


def test_not_ready_until_metrics_answer(rig: Rig) -> None:
    rig.source.values = {"latency": NoData("prometheus down"), "hit_ratio": NoData("down")}
    rig.controller.cycle()
    readiness = rig.controller.readiness()
    assert not readiness.ok
    assert "not answered" in readiness.detail
    rig.source.values = {"latency": 0.1, "hit_ratio": 0.9}
    rig.controller.cycle()
    assert rig.controller.readiness().ok


def test_a_bad_reload_keeps_the_previous_rules(rig: Rig) -> None:
    rig.rules.write_text(RULES.replace("above: 0.5", "above: fast"))
    rig.source.values = {"latency": 0.9}
    assert rig.controller.cycle().result is CycleResult.OK
    assert rig.actuator.knobs[API] == 4, "the previous rules stopped running"
    assert rig.sample("autotuner_rule_reload_errors_total") == 1
    rig.clock.time += 15
    rig.controller.cycle()
    assert rig.sample("autotuner_rule_reload_errors_total") == 1, "one bad version, one report"


def test_a_good_reload_takes_effect(rig: Rig) -> None:
    rig.rules.write_text(RULES.replace("above: 0.5", "above: 2.0"))
    rig.source.values = {"latency": 0.9}
    rig.controller.cycle()
    assert rig.actuator.knobs[API] == 2


def test_a_reload_outside_the_allow_list_is_rejected(rig: Rig) -> None:
    rig.rules.write_text(RULES.replace("namespace: crm", "namespace: kube-system"))
    rig.source.values = {"latency": 0.9}
    rig.controller.cycle()
    assert rig.sample("autotuner_rule_reload_errors_total") == 1
    assert rig.actuator.knobs[API] == 4


def test_start_refuses_rules_outside_the_allow_list(tmp_path: Path) -> None:
    rules = tmp_path / "r.yaml"
    rules.write_text(RULES.replace("namespace: crm", "namespace: kube-system"))
    with pytest.raises(RulesRejected, match=r"r.yaml:\d+: rule 'scale-api'.*kube-system"):
        RuleReloader([rules], ALLOW)


def test_stop_acting_skips_the_rest_of_a_cycle(rig: Rig) -> None:
    rig.controller.stop_acting()
    rig.source.values = {"latency": 0.9}
    rig.controller.cycle()
    assert rig.actuator.knobs[API] == 2


def test_wait_idle_reports_a_running_cycle(rig: Rig) -> None:
    entered = threading.Event()
    release = threading.Event()

    class SlowSource(FakeSource):
        def fetch(self, queries: Any, at: float) -> Any:
            entered.set()
            release.wait(5)
            return super().fetch(queries, at)

    rig.source = SlowSource(values={"latency": 0.1})
    controller = rig.build()
    worker = threading.Thread(target=controller.cycle)
    worker.start()
    assert entered.wait(5)
    assert not controller.wait_idle(0.05)
    assert controller.running_for() is not None
    release.set()
    assert controller.wait_idle(5)
    worker.join()
    assert SoleReplica().may_act()


def test_each_cycle_saves_why_every_target_did_or_did_not_act(rig: Rig) -> None:
    rig.source.values = {"latency": 0.9, "hit_ratio": NoData("prometheus is down")}
    rig.controller.cycle()
    rig.clock.time += 15
    rig.controller.cycle()
    last = rig.store.documents["last_cycle"]
    assert last["time"] == rig.clock.time
    by_rule = {t["rule"]: t for t in last["targets"]}
    scale = by_rule["scale-api"]
    assert scale["knob"] == API
    assert scale["phase"] == "firing"
    assert scale["verdict"] == "hold"
    assert "cooldown" in scale["reason"]
    assert scale["last_action"] == rig.clock.time - 15
    json.dumps(last)


def test_a_failed_query_is_reported_on_the_knobs_its_targets_had(rig: Rig) -> None:
    rig.source.values = {"latency": 0.1, "hit_ratio": {labels_of({"prefix": "crm"}): 0.5}}
    rig.controller.cycle()
    rig.source.values = {"latency": 0.1, "hit_ratio": NoData("Prometheus timed out")}
    rig.clock.time += 15
    rig.controller.cycle()
    (entry,) = [t for t in rig.store.documents["last_cycle"]["targets"] if t["rule"] == "cache-ttl"]
    assert entry["knob"] == "key/crm:ttl"
    assert entry["labels"] == {"prefix": "crm"}
    assert entry["no_data"] == "Prometheus timed out"


OBJECTIVE_RULES = """
metrics:
  latency: latency_seconds
  rps: requests_per_second
  cpu: cpu_utilisation
rules:
  - name: api-slo
    metric: latency
    objective: {at_most: 0.5, aim: 0.4, load: rps, utilisation: cpu, settle: 1m}
    action:
      scale: {deployment: api, namespace: crm, min: 1, max: 10}
"""


def test_the_capacity_model_is_on_metrics(rig: Rig) -> None:
    rig.rules.write_text(OBJECTIVE_RULES)
    rig.controller = rig.build()
    rig.source.values = {"latency": 0.2, "rps": 100.0, "cpu": 0.5}
    for _ in range(8):
        assert rig.controller.cycle().result is CycleResult.OK
        rig.clock.time += 60.0
    target = {"rule": "api-slo", "target": "{}"}
    # 100 rps on 2 replicas at utilisation 0.5: one replica serves 100 rps at full use.
    assert rig.sample("autotuner_capacity_saturation_rps", **target) == 100.0
    assert rig.sample("autotuner_capacity_target_utilisation", **target) == 0.7
    assert rig.sample("autotuner_capacity_per_replica_rps", **target) == pytest.approx(70.0)
    assert (rig.sample("autotuner_capacity_observations", **target) or 0) >= 3
    assert 0 < (rig.sample("autotuner_capacity_confidence", **target) or 0) < 1
    saved = rig.store.document
    assert saved is not None and saved["engine"]["capacity"][0]["rule"] == "api-slo"
