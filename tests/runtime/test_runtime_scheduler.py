"""The scheduler shell around the cycle: cadence, overruns, liveness, and a clean stop that
finishes or abandons the cycle in flight."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from autotuner.adapters.sql_store import AuditRecord
from autotuner.core.model import Decision, MetricAnswer, MetricQuery, Outcome, OutcomeStatus
from autotuner.runtime.controller import Controller
from autotuner.runtime.daemon import Daemon
from autotuner.runtime.guards import WatchedSource
from autotuner.runtime.http import ControllerMetrics
from autotuner.runtime.reloader import RuleReloader
from autotuner.runtime.settings import AllowList
from tests.fakes import FakeActuator, FakeSource

RULES = """
metrics:
  latency: latency_seconds
rules:
  - name: scale-api
    metric: latency
    above: 0.5
    action:
      scale: {deployment: api, namespace: crm, factor: 2, min: 1, max: 100}
"""
API = "deployment/crm/api"


class Store:
    def __init__(self) -> None:
        self.outcomes: dict[int, Outcome] = {}
        self.intents: dict[int, Decision] = {}
        self.closed = False

    def record_intent(self, decision: Decision) -> int:
        self.intents[len(self.intents) + 1] = decision
        return len(self.intents)

    def record_outcome(self, intent_id: int, outcome: Outcome) -> None:
        self.outcomes[intent_id] = outcome

    def load_state(self) -> Mapping[str, Any] | None:
        return None

    def save_state(self, document: Mapping[str, Any], saved_at: float, name: str = "") -> None:
        return None

    def delete_older_than(self, cutoff: float) -> int:
        return 0

    def history(self, *, since: float | None = None) -> list[AuditRecord]:
        return []

    def close(self) -> None:
        self.closed = True


class Lease:
    def __init__(self) -> None:
        self.released = False

    def may_act(self) -> bool:
        return not self.released

    def release(self) -> None:
        self.released = True


class SlowSource(FakeSource):
    """Takes `delay` seconds to answer; `entered` is set when a fetch starts."""

    def __init__(self, delay: float) -> None:
        super().__init__(values={"latency": 0.9})
        self.delay = delay
        self.entered = threading.Event()
        self.fetches = 0

    def fetch(self, queries: Sequence[MetricQuery], at: float) -> Mapping[str, MetricAnswer]:
        self.fetches += 1
        self.entered.set()
        time.sleep(self.delay)
        return super().fetch(queries, at)


class Clock:
    def now(self) -> float:
        return time.time()


def _daemon(
    tmp_path: Path, source: FakeSource, interval: float, grace: float = 5.0
) -> tuple[Daemon, ControllerMetrics, Store, Lease, FakeActuator]:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    metrics = ControllerMetrics(CollectorRegistry())
    store = Store()
    lease = Lease()
    actuator = FakeActuator(knobs={API: 1})
    allow = AllowList(namespaces=("crm",), workloads=("api",))
    controller = Controller(
        reloader=RuleReloader([rules], allow),
        source=WatchedSource(source, lambda metric, reason: None),
        actuators=[actuator],
        store=store,
        leadership=lease,
        metrics=metrics,
        clock=Clock(),
        allow=allow,
    )
    daemon = Daemon(
        controller,
        interval=interval,
        metrics=metrics,
        leadership=lease,
        http_bind=("127.0.0.1", 0),
        closers=[store.close],
        shutdown_grace=grace,
    )
    return daemon, metrics, store, lease, actuator


def _run(daemon: Daemon) -> tuple[threading.Thread, list[int]]:
    status: list[int] = []
    thread = threading.Thread(target=lambda: status.append(daemon.run()), daemon=True)
    thread.start()
    return thread, status


def test_cycles_run_at_the_interval_and_stop_cleanly(tmp_path: Path) -> None:
    source = SlowSource(delay=0.0)
    daemon, metrics, store, lease, _ = _daemon(tmp_path, source, interval=0.1)
    thread, status = _run(daemon)
    time.sleep(0.8)
    assert daemon.liveness().ok
    daemon.request_stop()
    thread.join(10)
    assert status == [0]
    cycles = metrics.registry.get_sample_value("autotuner_cycles_total", {"result": "ok"}) or 0
    assert 2 <= cycles <= 10
    assert store.closed and lease.released
    assert metrics.registry.get_sample_value("autotuner_leader") == 0
    assert not daemon.liveness().ok


def test_an_overrunning_cycle_is_reported_and_never_overlaps(tmp_path: Path) -> None:
    source = SlowSource(delay=0.35)
    daemon, metrics, _, _, _ = _daemon(tmp_path, source, interval=0.1)
    thread, _ = _run(daemon)
    time.sleep(1.2)
    daemon.request_stop()
    thread.join(10)
    overruns = metrics.registry.get_sample_value("autotuner_cycle_overruns_total") or 0
    assert overruns >= 2
    # One at a time: four fetches at most fit in 1.2 s of 0.35 s fetches.
    assert source.fetches <= 4


def test_stop_lets_the_cycle_in_flight_finish(tmp_path: Path) -> None:
    source = SlowSource(delay=0.5)
    daemon, _, store, _, actuator = _daemon(tmp_path, source, interval=10, grace=5)
    thread, status = _run(daemon)
    assert source.entered.wait(5)
    daemon.request_stop()
    thread.join(10)
    assert status == [0]
    assert actuator.knobs[API] == 2, "the cycle in flight was cut short"
    assert [o.status for o in store.outcomes.values()] == [OutcomeStatus.APPLIED]


def test_stop_abandons_a_cycle_that_outlives_the_grace(tmp_path: Path) -> None:
    source = SlowSource(delay=1.5)
    daemon, _, store, _, actuator = _daemon(tmp_path, source, interval=10, grace=0.2)
    thread, status = _run(daemon)
    assert source.entered.wait(5)
    daemon.request_stop()
    thread.join(10)
    assert status == [0]
    assert actuator.knobs[API] == 1, "a change was made after the grace period"
    assert [o.status for o in store.outcomes.values()] == [OutcomeStatus.SKIPPED]
    assert "stopping" in next(iter(store.outcomes.values())).detail
