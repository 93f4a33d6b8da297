"""The Actuator contract, checked against every implementation of the port.

Each implementation comes with a harness: the actuator plus a side door to its backend (to set
a knob up, to play the concurrent writer, to look at the value actually stored, and, where the
backend is a server, to stop it). The checks below use only the harness, so an implementation
joins the suite with one line in `IMPLEMENTATIONS`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import pytest

from autotuner.adapters.redis_keys import RedisKeyActuator, RedisKeySettings
from autotuner.control.ports import Actuator
from autotuner.core.model import (
    Decision,
    KnobKind,
    KnobRef,
    KnobUnreadable,
    KnobValue,
    Outcome,
    OutcomeStatus,
    Phase,
    Verdict,
)
from tests.contract.sim_harness import sim_deployments_first_harness, sim_keys_first_harness
from tests.integration.redis_server import RedisServer
from tests.kube_api.harness import kubernetes_harness


class ActuatorHarness(Protocol):
    @property
    def actuator(self) -> Actuator: ...

    def new_knob(self, value: float) -> KnobRef:
        """A knob the actuator handles, set to `value` behind the actuator's back."""
        ...

    def absent_knob(self) -> KnobRef:
        """A knob of a kind the actuator handles whose key or object does not exist."""
        ...

    def foreign_knob(self) -> KnobRef:
        """A knob the actuator must not handle."""
        ...

    def write_behind(self, knob: KnobRef, value: float) -> None:
        """Another writer changes the knob."""
        ...

    def value_of(self, knob: KnobRef) -> float | None:
        """The value the backend holds, read without the actuator."""
        ...


@runtime_checkable
class StoppableActuatorHarness(ActuatorHarness, Protocol):
    def stop_backend(self) -> None:
        """The backend becomes unreachable."""
        ...


@dataclass(frozen=True, slots=True)
class Implementation:
    name: str
    harness: Callable[[], AbstractContextManager[ActuatorHarness]]
    # Whether the backend can hold an absent knob, and can be stopped, for those checks.
    has_absent_knobs: bool = True
    can_stop: bool = True


class RedisHarness:
    def __init__(self, server: RedisServer, prefix: str) -> None:
        self._server = server
        self._client = server.client()
        self._prefix = prefix
        self.actuator = RedisKeyActuator(
            RedisKeySettings(
                url=server.url, key_prefix=prefix, connect_timeout=0.5, command_timeout=0.5
            )
        )

    def close(self) -> None:
        self.actuator.close()
        self._client.close()

    def new_knob(self, value: float) -> KnobRef:
        knob = KnobRef(KnobKind.CONFIG_KEY, f"crm:cache:ttl:{uuid.uuid4().hex[:8]}")
        self.write_behind(knob, value)
        return knob

    def absent_knob(self) -> KnobRef:
        return KnobRef(KnobKind.CONFIG_KEY, f"crm:cache:ttl:absent-{uuid.uuid4().hex[:8]}")

    def foreign_knob(self) -> KnobRef:
        return KnobRef(KnobKind.DEPLOYMENT, "api", "crm")

    def write_behind(self, knob: KnobRef, value: float) -> None:
        self._client.set(self._prefix + knob.name, str(value))

    def value_of(self, knob: KnobRef) -> float | None:
        raw = self._client.get(self._prefix + knob.name)
        return None if raw is None else float(raw)

    def stop_backend(self) -> None:
        self._server.stop()


@contextmanager
def redis_harness() -> Iterator[ActuatorHarness]:
    with RedisServer() as server:
        harness = RedisHarness(server, prefix="contract:")
        try:
            yield harness
        finally:
            harness.close()


IMPLEMENTATIONS = [
    Implementation("redis", redis_harness),
    Implementation("kubernetes", kubernetes_harness),
    # The modelled system: no server to stop. Two orders of handing out its knobs, so that each
    # check meets both its deployments and its config keys.
    Implementation("sim-deployments", sim_deployments_first_harness, can_stop=False),
    Implementation("sim-keys", sim_keys_first_harness, can_stop=False),
]


def _open(implementation: Implementation) -> Iterator[ActuatorHarness]:
    with implementation.harness() as harness:
        yield harness


@pytest.fixture(params=IMPLEMENTATIONS, ids=lambda i: i.name)
def harness(request: pytest.FixtureRequest) -> Iterator[ActuatorHarness]:
    yield from _open(request.param)


@pytest.fixture(params=[i for i in IMPLEMENTATIONS if i.has_absent_knobs], ids=lambda i: i.name)
def harness_with_absent_knobs(request: pytest.FixtureRequest) -> Iterator[ActuatorHarness]:
    yield from _open(request.param)


@pytest.fixture(params=[i for i in IMPLEMENTATIONS if i.can_stop], ids=lambda i: i.name)
def stoppable_harness(request: pytest.FixtureRequest) -> Iterator[StoppableActuatorHarness]:
    for opened in _open(request.param):
        assert isinstance(opened, StoppableActuatorHarness), "can_stop needs stop_backend()"
        yield opened


def decide(
    knob: KnobRef,
    current: float | None,
    final: float | None,
    *,
    verdict: Verdict = Verdict.CHANGE,
    dry_run: bool = False,
) -> Decision:
    return Decision(
        time=1_000.0,
        rule="contract",
        labels=(("namespace", "crm"),),
        knob=knob,
        verdict=verdict,
        phase=Phase.FIRING,
        metric="contract_metric",
        value=2.0,
        threshold=1.0,
        current=current,
        proposed=final,
        final=final,
        reason="the contract suite asked for it",
        dry_run=dry_run,
    )


def test_it_handles_its_own_knobs_and_not_others(harness: ActuatorHarness) -> None:
    assert harness.actuator.handles(harness.new_knob(4))
    assert not harness.actuator.handles(harness.foreign_knob())


def test_it_reads_every_knob_asked_for(harness: ActuatorHarness) -> None:
    knobs = [harness.new_knob(value) for value in (2, 4, 7)]

    readings = harness.actuator.read(knobs)

    assert readings == {knobs[0]: KnobValue(2), knobs[1]: KnobValue(4), knobs[2]: KnobValue(7)}


def test_it_writes_the_final_value_and_says_from_what(harness: ActuatorHarness) -> None:
    knob = harness.new_knob(4)

    outcome = harness.actuator.apply(decide(knob, 4, 6))

    assert outcome.status is OutcomeStatus.APPLIED
    assert (outcome.old, outcome.new) == (4, 6)
    assert harness.value_of(knob) == 6
    assert harness.actuator.read([knob])[knob] == KnobValue(6)


def test_it_never_overwrites_a_concurrent_writer(harness: ActuatorHarness) -> None:
    knob = harness.new_knob(4)
    decision = decide(knob, 4, 6)
    harness.write_behind(knob, 9)

    outcome = harness.actuator.apply(decision)

    assert outcome.status is OutcomeStatus.SKIPPED
    assert "changed" in outcome.detail
    assert (outcome.old, outcome.new) == (4, None)
    assert harness.value_of(knob) == 9


def test_a_dry_run_changes_nothing(harness: ActuatorHarness) -> None:
    knob = harness.new_knob(4)

    outcome = harness.actuator.apply(decide(knob, 4, 6, dry_run=True))

    assert outcome.status is OutcomeStatus.DRY_RUN
    assert (outcome.old, outcome.new) == (4, 6)
    assert harness.value_of(knob) == 4


@pytest.mark.parametrize("verdict", [Verdict.HOLD, Verdict.BLOCKED])
def test_a_decision_that_is_not_a_change_changes_nothing(
    harness: ActuatorHarness, verdict: Verdict
) -> None:
    knob = harness.new_knob(4)

    outcome = harness.actuator.apply(decide(knob, 4, 6, verdict=verdict))

    assert outcome.status is OutcomeStatus.SKIPPED
    assert harness.value_of(knob) == 4


@pytest.mark.parametrize(("current", "final"), [(4, None), (None, 6), (4, float("nan"))])
def test_a_decision_without_usable_values_changes_nothing(
    harness: ActuatorHarness, current: float | None, final: float | None
) -> None:
    knob = harness.new_knob(4)

    outcome = harness.actuator.apply(decide(knob, current, final))

    assert outcome.status is OutcomeStatus.FAILED
    assert outcome.detail
    assert harness.value_of(knob) == 4


def test_a_foreign_knob_is_refused_as_data(harness: ActuatorHarness) -> None:
    foreign = harness.foreign_knob()

    reading = harness.actuator.read([foreign])[foreign]
    outcome = harness.actuator.apply(decide(foreign, 4, 6))

    assert isinstance(reading, KnobUnreadable)
    assert outcome.status is OutcomeStatus.FAILED


def test_an_absent_knob_reads_as_missing(harness_with_absent_knobs: ActuatorHarness) -> None:
    harness = harness_with_absent_knobs
    absent, present = harness.absent_knob(), harness.new_knob(3)

    readings = harness.actuator.read([absent, present])

    # Handled, so that the control cycle asks this actuator and learns the knob is missing.
    assert harness.actuator.handles(absent)
    reading = readings[absent]
    assert isinstance(reading, KnobUnreadable)
    assert reading.missing
    assert reading.reason
    assert readings[present] == KnobValue(3)


def test_an_absent_knob_is_not_created_by_a_change_from_a_value(
    harness_with_absent_knobs: ActuatorHarness,
) -> None:
    harness = harness_with_absent_knobs
    absent = harness.absent_knob()

    outcome = harness.actuator.apply(decide(absent, 4, 6))

    assert outcome.status in (OutcomeStatus.SKIPPED, OutcomeStatus.FAILED)
    assert harness.value_of(absent) is None


def test_a_stopped_backend_gives_readings_and_outcomes_not_exceptions(
    stoppable_harness: StoppableActuatorHarness,
) -> None:
    harness = stoppable_harness
    knob = harness.new_knob(4)
    harness.stop_backend()

    reading = harness.actuator.read([knob])[knob]
    outcome = harness.actuator.apply(decide(knob, 4, 6))

    assert isinstance(reading, KnobUnreadable)
    assert not reading.missing
    assert isinstance(outcome, Outcome)
    assert outcome.status is OutcomeStatus.FAILED
    assert outcome.detail
