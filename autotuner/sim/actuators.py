"""The Actuator port over the modelled system: its deployments and its config keys.

Knobs, for namespace NS: deployment/NS/api and deployment/NS/ml (replicas);
key/NS:cache:ttl:CLASS (seconds), key/NS:db:pool_size and key/NS:ml:batch_size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

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


@dataclass(frozen=True, slots=True)
class AppliedChange:
    """One knob change the modelled system took, for the report and the plot."""

    time: float
    knob: str
    old: float
    new: float
    source: str


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

    def handles(self, knob: KnobRef) -> bool:
        return self._get(knob) is not None

    def _get(self, knob: KnobRef) -> float | None:
        system = self._system
        if knob.is_workload:
            if knob.kind is not KnobKind.DEPLOYMENT or knob.namespace != self._namespace:
                return None
            deployment = system.deployment(knob.name)
            return None if deployment is None else float(deployment.desired)
        if knob.field:
            return None
        if knob.name == self._pool_key:
            return float(system.pool_size)
        if knob.name == self._batch_key:
            return float(system.batch_size)
        if knob.name.startswith(self._ttl_prefix):
            cache = system.caches.get(knob.name.removeprefix(self._ttl_prefix))
            return None if cache is None else cache.target_ttl
        return None

    def read(self, knobs: Sequence[KnobRef]) -> dict[KnobRef, KnobReading]:
        readings: dict[KnobRef, KnobReading] = {}
        for knob in knobs:
            value = self._get(knob)
            readings[knob] = (
                KnobUnreadable(f"the simulated system has no knob {knob.id}", missing=True)
                if value is None
                else KnobValue(value)
            )
        return readings

    def set(self, knob: KnobRef, value: float) -> Outcome:
        """Change a knob to `value` (rounded for integer knobs) and record the change."""
        old = self._get(knob)
        if old is None:
            return Outcome(OutcomeStatus.FAILED, f"the simulated system has no knob {knob.id}")
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
        return Outcome(OutcomeStatus.APPLIED, "simulated", old=old, new=new)

    def apply(self, decision: Decision) -> Outcome:
        if decision.final is None:
            return Outcome(OutcomeStatus.SKIPPED, "the decision carries no value to write")
        if decision.dry_run:
            return Outcome(OutcomeStatus.DRY_RUN, "dry run", old=decision.current)
        return self.set(decision.knob, decision.final)
