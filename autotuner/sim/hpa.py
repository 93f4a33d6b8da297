"""A port of the Kubernetes Horizontal Pod Autoscaler's algorithm, as the `hpa` baseline policy.

Followed from kubernetes/kubernetes, pkg/controller/podautoscaler:
- replica_calculator.go, `GetResourceReplicas`: usage ratio = utilisation / target; within the
  0.1 tolerance nothing changes; otherwise ceil(ratio x ready pods). Pods not yet ready are left
  out, and on a scale-up they are put back as using 0% (`rebalanceIgnored`), after which a ratio
  inside the tolerance, or one that flips direction, keeps the current count.
- horizontal.go, `normalizeDesiredReplicasWithBehaviors`:
  `stabilizeRecommendationWithBehaviors` keeps every recommendation with its time and clamps the
  new one between the lowest of the scale-up window and the highest of the scale-down window;
  `convertDesiredReplicasWithBehaviorRate` then limits the change per policy period
  (`calculateScaleUpLimitWithScalingRules`, `calculateScaleDownLimitWithBehaviors`) from the
  replicas at the period's start, choosing the policy that allows the most change (selectPolicy
  Max), and clamps to min/max replicas.
- The defaults (autoscaling/v2 `SetDefaults_HorizontalPodAutoscalerBehavior`): scale up with no
  stabilization by 100% or 4 pods per 15 s, whichever is more; scale down with a 300 s window by
  up to 100% per 15 s. The controller syncs every 15 s (--horizontal-pod-autoscaler-sync-period).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum

TOLERANCE = 0.1
SYNC_PERIOD = 15.0


class PolicyType(StrEnum):
    PODS = "Pods"
    PERCENT = "Percent"


class SelectPolicy(StrEnum):
    MAX = "Max"
    MIN = "Min"
    DISABLED = "Disabled"


@dataclass(frozen=True, slots=True)
class ScalingPolicy:
    type: PolicyType
    value: int
    period_seconds: int


@dataclass(frozen=True, slots=True)
class ScalingRules:
    stabilization_window_seconds: int
    policies: tuple[ScalingPolicy, ...]
    select_policy: SelectPolicy = SelectPolicy.MAX


DEFAULT_SCALE_UP = ScalingRules(
    0,
    (ScalingPolicy(PolicyType.PERCENT, 100, 15), ScalingPolicy(PolicyType.PODS, 4, 15)),
)
DEFAULT_SCALE_DOWN = ScalingRules(300, (ScalingPolicy(PolicyType.PERCENT, 100, 15),))


@dataclass(frozen=True, slots=True)
class HPASpec:
    min_replicas: int
    max_replicas: int
    target_utilisation: float
    scale_up: ScalingRules = DEFAULT_SCALE_UP
    scale_down: ScalingRules = DEFAULT_SCALE_DOWN
    tolerance: float = TOLERANCE


def resource_replicas(
    current: int, ready: int, unready: int, utilisation: float, target: float, tolerance: float
) -> int:
    """`GetResourceReplicas` for pods that all report the same utilisation (no missing pods).

    Returns `current` when there is nothing to act on (no ready pods report a metric).
    """
    if ready <= 0:
        return current
    usage_ratio = utilisation / target
    rebalance_ignored = unready > 0 and usage_ratio > 1.0
    if not rebalance_ignored:
        if abs(1.0 - usage_ratio) <= tolerance:
            return current
        return math.ceil(usage_ratio * ready)
    # Unready pods count as using 0%: the same total usage spread over more pods.
    counted = ready + unready
    new_usage_ratio = usage_ratio * ready / counted
    if abs(1.0 - new_usage_ratio) <= tolerance or new_usage_ratio < 1.0:
        return current
    new_replicas = math.ceil(new_usage_ratio * counted)
    if new_replicas < current:
        return current
    return new_replicas


def _change_in_period(events: list[tuple[float, int]], now: float, period: float) -> int:
    cutoff = now - period
    return sum(change for time, change in events if time > cutoff)


@dataclass
class HPAState:
    """The controller's memory of one HPA: recommendations and scale events with their times."""

    recommendations: list[tuple[float, int]] = field(default_factory=list)
    scale_up_events: list[tuple[float, int]] = field(default_factory=list)
    scale_down_events: list[tuple[float, int]] = field(default_factory=list)


class HorizontalPodAutoscaler:
    def __init__(self, spec: HPASpec) -> None:
        self.spec = spec
        self.state = HPAState()

    def _stabilize(self, now: float, current: int, desired: int) -> int:
        up_cutoff = now - self.spec.scale_up.stabilization_window_seconds
        down_cutoff = now - self.spec.scale_down.stabilization_window_seconds
        up_recommendation = desired
        down_recommendation = desired
        for time, recommendation in self.state.recommendations:
            if time > up_cutoff:
                up_recommendation = min(recommendation, up_recommendation)
            if time > down_cutoff:
                down_recommendation = max(recommendation, down_recommendation)
        stabilized = max(current, up_recommendation)
        stabilized = min(stabilized, down_recommendation)
        # Keep what either window may still need; older recommendations are spent.
        oldest_needed = min(up_cutoff, down_cutoff)
        self.state.recommendations = [r for r in self.state.recommendations if r[0] > oldest_needed]
        self.state.recommendations.append((now, desired))
        return stabilized

    def _period_start(self, now: float, current: int, period: float) -> int:
        added = _change_in_period(self.state.scale_up_events, now, period)
        deleted = _change_in_period(self.state.scale_down_events, now, period)
        return current - added + deleted

    def scale_up_limit(self, now: float, current: int) -> int:
        rules = self.spec.scale_up
        if rules.select_policy is SelectPolicy.DISABLED:
            return current
        proposals = []
        for policy in rules.policies:
            start = self._period_start(now, current, policy.period_seconds)
            if policy.type is PolicyType.PODS:
                proposals.append(start + policy.value)
            else:
                proposals.append(math.ceil(start * (1 + policy.value / 100)))
        return min(proposals) if rules.select_policy is SelectPolicy.MIN else max(proposals)

    def scale_down_limit(self, now: float, current: int) -> int:
        rules = self.spec.scale_down
        if rules.select_policy is SelectPolicy.DISABLED:
            return current
        proposals = []
        for policy in rules.policies:
            start = self._period_start(now, current, policy.period_seconds)
            if policy.type is PolicyType.PODS:
                proposals.append(start - policy.value)
            else:
                proposals.append(int(start * (1 - policy.value / 100)))
        return max(proposals) if rules.select_policy is SelectPolicy.MIN else min(proposals)

    def _limit_rate(self, now: float, current: int, desired: int) -> int:
        spec = self.spec
        if desired > current:
            limit = max(self.scale_up_limit(now, current), current)
            return min(desired, min(spec.max_replicas, limit))
        if desired < current:
            limit = min(self.scale_down_limit(now, current), current)
            return max(desired, max(spec.min_replicas, limit))
        return desired

    def reconcile(
        self, now: float, current: int, ready: int, unready: int, utilisation: float | None
    ) -> int:
        """One sync: the replica count to set (equal to `current` when nothing changes)."""
        spec = self.spec
        if current > spec.max_replicas:
            desired = spec.max_replicas
        elif current < spec.min_replicas:
            desired = spec.min_replicas
        elif utilisation is None:
            return current
        else:
            proposal = resource_replicas(
                current, ready, unready, utilisation, spec.target_utilisation, spec.tolerance
            )
            stabilized = self._stabilize(now, current, proposal)
            desired = self._limit_rate(now, current, stabilized)
        if desired != current:
            self._store_event(now, current, desired)
        return desired

    def _store_event(self, now: float, previous: int, new: int) -> None:
        longest = max(
            [p.period_seconds for p in self.spec.scale_up.policies + self.spec.scale_down.policies]
        )
        cutoff = now - longest
        up = [e for e in self.state.scale_up_events if e[0] > cutoff]
        down = [e for e in self.state.scale_down_events if e[0] > cutoff]
        if new > previous:
            up.append((now, new - previous))
        else:
            down.append((now, previous - new))
        self.state.scale_up_events = up
        self.state.scale_down_events = down
