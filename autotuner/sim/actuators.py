"""The Actuator port over the modelled system: its deployments and its config keys.

Knobs, for namespace NS: deployment/NS/api and deployment/NS/ml (replicas);
key/NS:cache:ttl:CLASS (seconds), key/NS:db:pool_size and key/NS:ml:batch_size.

It stands in for the Kubernetes and Redis actuators together and keeps their contract
(tests/contract/test_actuator_contract.py), so the engine meets the same outcomes in simulation
as in production:

- it handles what they handle that the model has kinds of: every Deployment and every config
  key. One the model does not hold (another namespace, a hash field, an unknown cache class)
  reads as missing, as a 404 or an absent key does; StatefulSets it does not handle at all.
- `apply` writes only a `change` verdict (others are SKIPPED), only finite values, and for a
  Deployment only whole replica counts of zero or more (otherwise FAILED, as Kubernetes
  refuses them); it compares and sets: a knob no longer at the decision's `current` is SKIPPED
  with what it changed to. Nothing is ever created: a knob the model lacks fails the change.
- Outcomes carry the value found (`old`) and the value the model now holds (`new`). The pool and
  batch sizes are whole numbers in the modelled application, so a fraction written there is
  rounded, as the application would round what it reads.

`set` writes without those checks: it is how the built-in HPA policy and the test exporter,
which are not the product, change knobs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from autotuner.control.actuation import writable
from autotuner.core.model import (
    Decision,
    KnobKind,
    KnobReading,
    KnobRef,
    KnobUnreadable,
    KnobValue,
    Outcome,
    OutcomeStatus,
)
from autotuner.sim.system import System

# Reads a knob's value from the model; None when the model has no such knob.
_Getter = Callable[[], float | None]


@dataclass(frozen=True, slots=True)
class AppliedChange:
    """One knob change the modelled system took, for the report and the plot."""

    time: float
    knob: str
    old: float
    new: float
    source: str


def _absent() -> None:
    return None


def _number(value: float) -> str:
    return f"{value:g}"


def _describe(knob: KnobRef) -> str:
    return f"deployment {knob.namespace}/{knob.name}" if knob.is_workload else f"key {knob.name}"


class SimActuator:
    def __init__(self, system: System, source: str = "rules") -> None:
        self._system = system
        self._source = source
        self.changes: list[AppliedChange] = []
        self.now = 0.0
        namespace = system.spec.namespace
        self._ttl_prefix = f"{namespace}:cache:ttl:"
        self._pool_key = f"{namespace}:db:pool_size"
        self._batch_key = f"{namespace}:ml:batch_size"
        self._namespace = namespace
        # Where each knob lives in the model, found once per knob id: reads come every tick.
        self._getters: dict[str, _Getter] = {}

    def handles(self, knob: KnobRef) -> bool:
        return knob.kind is KnobKind.DEPLOYMENT or knob.kind is KnobKind.CONFIG_KEY

    def _get(self, knob: KnobRef) -> float | None:
        """The knob's value in the model, or None when the model has no such knob."""
        getter = self._getters.get(knob.id)
        if getter is None:
            getter = self._getters[knob.id] = self._getter(knob)
        return getter()

    def _getter(self, knob: KnobRef) -> _Getter:
        system = self._system
        if knob.is_workload:
            deployment = (
                system.deployment(knob.name)
                if knob.kind is KnobKind.DEPLOYMENT and knob.namespace == self._namespace
                else None
            )
            if deployment is None:
                return _absent
            return lambda: float(deployment.desired)
        if knob.field:
            return _absent
        if knob.name == self._pool_key:
            return lambda: float(system.pool_size)
        if knob.name == self._batch_key:
            return lambda: float(system.batch_size)
        if knob.name.startswith(self._ttl_prefix):
            cache = system.caches.get(knob.name.removeprefix(self._ttl_prefix))
            if cache is not None:
                return lambda: cache.target_ttl
        return _absent

    def _absent(self, knob: KnobRef) -> str:
        return (
            f"the simulated system has no {_describe(knob)} (it models deployments api and ml "
            f"in namespace {self._namespace}, and keys {self._ttl_prefix}<cache class>, "
            f"{self._pool_key} and {self._batch_key})"
        )

    def read(self, knobs: Sequence[KnobRef]) -> dict[KnobRef, KnobReading]:
        readings: dict[KnobRef, KnobReading] = {}
        for knob in knobs:
            if not self.handles(knob):
                readings[knob] = KnobUnreadable(self._not_handled(knob))
                continue
            value = self._get(knob)
            readings[knob] = (
                KnobUnreadable(self._absent(knob), missing=True)
                if value is None
                else KnobValue(value)
            )
        return readings

    def _not_handled(self, knob: KnobRef) -> str:
        return (
            f"{knob.id} is a {knob.kind.value}; the simulated system changes only Deployments "
            "and config keys"
        )

    def set(self, knob: KnobRef, value: float) -> Outcome:
        """Change a knob to `value` (rounded for integer knobs) and record the change."""
        old = self._get(knob)
        if old is None:
            return Outcome(OutcomeStatus.FAILED, self._absent(knob))
        system = self._system
        if knob.is_workload:
            deployment = system.deployment(knob.name)
            if deployment is not None:
                deployment.scale(max(0, round(value)), self.now)
        elif knob.name == self._pool_key:
            system.pool_size = max(1, round(value))
        elif knob.name == self._batch_key:
            system.batch_size = max(1, round(value))
        else:
            system.caches[knob.name.removeprefix(self._ttl_prefix)].set_ttl(value)
        new = self._get(knob)
        assert new is not None
        if new != old:
            self.changes.append(AppliedChange(self.now, knob.id, old, new, self._source))
        return Outcome(
            OutcomeStatus.APPLIED,
            f"set {_describe(knob)} from {_number(old)} to {_number(new)} (simulated)",
            old=old,
            new=new,
        )

    def apply(self, decision: Decision) -> Outcome:
        knob = decision.knob
        if not self.handles(knob):
            return Outcome(OutcomeStatus.FAILED, self._not_handled(knob))
        where = _describe(knob)
        checked = writable(decision, where)
        if isinstance(checked, Outcome):
            return checked
        current, final = checked
        if decision.dry_run:
            return Outcome(
                OutcomeStatus.DRY_RUN,
                f"dry run: would set {where} from {_number(current)} to {_number(final)}",
                old=current,
                new=final,
            )
        found = self._get(knob)
        if found is None:
            return Outcome(
                OutcomeStatus.FAILED,
                f"{self._absent(knob)}; nothing created",
                old=None if decision.from_default else current,
            )
        if decision.from_default or found != current:
            expected = "absent" if decision.from_default else _number(current)
            return Outcome(
                OutcomeStatus.SKIPPED,
                f"{where} changed concurrently from {expected} to {_number(found)}; nothing "
                "written, the next tick decides again from the new value",
                old=None if decision.from_default else current,
            )
        return self.set(knob, final)
