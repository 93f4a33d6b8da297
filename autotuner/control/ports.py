"""The ports: the few small protocols through which `tick` meets the world.

Production implements them with Prometheus, Kubernetes, Redis and SQL; the simulator with its
modelled system; rule tests with recorded series. `tick` knows only these protocols.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from autotuner.core.model import (
    Decision,
    KnobReading,
    KnobRef,
    MetricAnswer,
    MetricQuery,
    Outcome,
)


class MetricSource(Protocol):
    """Answers named instant queries at one moment.

    Never raises for a failed query: a failure is a `NoData` with the reason, and it fails only
    the rules that use that metric.
    """

    def fetch(self, queries: Sequence[MetricQuery], at: float) -> Mapping[str, MetricAnswer]: ...


class Actuator(Protocol):
    """Reads and changes knobs of the kinds it handles. Never raises: outcomes are data."""

    def handles(self, knob: KnobRef) -> bool: ...

    def read(self, knobs: Sequence[KnobRef]) -> Mapping[KnobRef, KnobReading]: ...

    def apply(self, decision: Decision) -> Outcome: ...


class AuditStore(Protocol):
    """Where decisions are written: the intent before acting, the outcome after."""

    def record_intent(self, decision: Decision) -> int: ...

    def record_outcome(self, intent_id: int, outcome: Outcome) -> None: ...


class Clock(Protocol):
    def now(self) -> float: ...
