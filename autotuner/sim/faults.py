"""Faults a scenario schedules: events at a moment, or conditions over a span of time."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class FaultKind(StrEnum):
    # Pods of a deployment die; the Deployment controller recreates them (start-up delay applies).
    LOSE_REPLICAS = "lose_replicas"
    # Every query takes `factor` times longer.
    SLOW_DATABASE = "slow_database"
    # One cache class (or all, when `target` is empty) loses its contents.
    FLUSH_CACHE = "flush_cache"
    # A release whose requests need `factor` times the CPU time.
    SLOW_DEPLOY = "slow_deploy"
    # The metric source answers "no data" for the listed metrics (all when none are listed).
    METRIC_OUTAGE = "metric_outage"


INSTANT_KINDS = frozenset({FaultKind.LOSE_REPLICAS, FaultKind.FLUSH_CACHE})


@dataclass(frozen=True, slots=True)
class Fault:
    kind: FaultKind
    at: float
    duration: float = 0.0
    factor: float = 1.0
    target: str = ""
    count: int = 0
    metrics: tuple[str, ...] = ()

    def active(self, now: float) -> bool:
        """For a span fault: is `now` inside it? (Instant faults are never 'active'.)"""
        return self.kind not in INSTANT_KINDS and self.at <= now < self.at + self.duration

    def fires_between(self, before: float, now: float) -> bool:
        """For an instant fault: did its moment fall in (before, now]?"""
        return self.kind in INSTANT_KINDS and before < self.at <= now

    def describe(self) -> str:
        if self.kind is FaultKind.LOSE_REPLICAS:
            return f"lose {self.count} {self.target} replicas"
        if self.kind is FaultKind.FLUSH_CACHE:
            return f"flush cache {self.target or 'all'}"
        if self.kind is FaultKind.METRIC_OUTAGE:
            return f"metric outage {self.duration:g}s"
        return f"{self.kind.value} x{self.factor:g} for {self.duration:g}s"
