"""The modelled system as the Actuator port: which knobs it has, reads, writes, dry runs."""

from __future__ import annotations

from autotuner.core.model import (
    Decision,
    KnobKind,
    KnobRef,
    KnobUnreadable,
    KnobValue,
    OutcomeStatus,
    Phase,
    Verdict,
)
from autotuner.sim.actuators import SimActuator
from autotuner.sim.system import System, SystemSpec

API = KnobRef(KnobKind.DEPLOYMENT, "api", "crm")
TTL = KnobRef(KnobKind.CONFIG_KEY, "crm:cache:ttl:user_sessions")
POOL = KnobRef(KnobKind.CONFIG_KEY, "crm:db:pool_size")
BATCH = KnobRef(KnobKind.CONFIG_KEY, "crm:ml:batch_size")
UNKNOWN = KnobRef(KnobKind.CONFIG_KEY, "crm:cache:ttl:nonexistent")


def decision(knob: KnobRef, current: float, final: float, dry_run: bool = False) -> Decision:
    return Decision(
        time=0.0,
        rule="r",
        labels=(),
        knob=knob,
        verdict=Verdict.CHANGE,
        phase=Phase.FIRING,
        metric="m",
        value=1.0,
        threshold=0.5,
        current=current,
        proposed=final,
        final=final,
        dry_run=dry_run,
    )


def test_reads_every_knob_of_the_modelled_system() -> None:
    actuator = SimActuator(System(SystemSpec()))
    readings = actuator.read([API, TTL, POOL, BATCH, UNKNOWN])
    assert readings[API] == KnobValue(4.0)
    assert readings[TTL] == KnobValue(1800.0)
    assert readings[POOL] == KnobValue(10.0)
    assert readings[BATCH] == KnobValue(8.0)
    unknown = readings[UNKNOWN]
    assert isinstance(unknown, KnobUnreadable) and unknown.missing
    # As the Kubernetes actuator: another namespace's deployment is handled, and not found.
    elsewhere = KnobRef(KnobKind.DEPLOYMENT, "api", "other-namespace")
    assert actuator.handles(elsewhere)
    unfound = actuator.read([elsewhere])[elsewhere]
    assert isinstance(unfound, KnobUnreadable) and unfound.missing
    assert not actuator.handles(KnobRef(KnobKind.STATEFULSET, "api", "crm"))


def test_applies_changes_and_records_them() -> None:
    system = System(SystemSpec())
    actuator = SimActuator(system)
    actuator.now = 30.0
    outcome = actuator.apply(decision(API, 4.0, 6.0))
    assert outcome.status is OutcomeStatus.APPLIED
    assert (outcome.old, outcome.new) == (4.0, 6.0)
    assert (system.api.ready, system.api.desired) == (4, 6)
    actuator.apply(decision(TTL, 1800.0, 2700.0))
    assert system.caches["user_sessions"].target_ttl == 2700.0
    actuator.apply(decision(POOL, 10.0, 12.4))
    assert system.pool_size == 12
    assert [c.knob for c in actuator.changes] == [API.id, TTL.id, POOL.id]
    assert actuator.changes[0].time == 30.0


def test_a_dry_run_changes_nothing_and_an_unknown_knob_fails_cleanly() -> None:
    system = System(SystemSpec())
    actuator = SimActuator(system)
    assert actuator.apply(decision(API, 4.0, 8.0, dry_run=True)).status is OutcomeStatus.DRY_RUN
    assert system.api.desired == 4
    failed = actuator.apply(decision(UNKNOWN, 1.0, 2.0))
    assert failed.status is OutcomeStatus.FAILED
    assert "has no key crm:cache:ttl:nonexistent" in failed.detail
    assert actuator.changes == []
