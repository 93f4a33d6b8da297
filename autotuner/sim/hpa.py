"""A port of the Kubernetes Horizontal Pod Autoscaler, as the `hpa` baseline policy.

From kubernetes/kubernetes, pkg/controller/podautoscaler (1.33+); each function names the Go
function it follows, and docs/simulator.md says what is ported and what is not:
`replica_calculator.go` (`GetResourceReplicas`, `calcPlainMetricReplicas`: per-direction
tolerances, unready and missing pods) and `horizontal.go` (`computeReplicasForMetrics`,
`reconcileAutoscaler`, the legacy `normalizeDesiredReplicas` for an HPA without `behavior` and
`normalizeDesiredReplicasWithBehaviors` for one with it).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

# The controller's flags: --horizontal-pod-autoscaler-tolerance, -sync-period,
# -downscale-stabilization and -cpu-initialization-period.
DEFAULT_TOLERANCE = 0.1
SYNC_PERIOD = 15.0
DOWNSCALE_STABILIZATION = 300
CPU_INITIALIZATION_PERIOD = 120.0
# The legacy path's cap on one scale-up (horizontal.go scaleUpLimitFactor, scaleUpLimitMinimum).
SCALE_UP_LIMIT_FACTOR = 2.0
SCALE_UP_LIMIT_MINIMUM = 4.0


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
    """`HPAScalingRules` with every field filled in."""

    stabilization_window_seconds: int
    policies: tuple[ScalingPolicy, ...]
    select_policy: SelectPolicy = SelectPolicy.MAX
    tolerance: float = DEFAULT_TOLERANCE

    @property
    def longest_period(self) -> int:
        return max((p.period_seconds for p in self.policies), default=0)


# autoscaling/v2 defaults (`GenerateHPAScaleUpRules`, `GenerateHPAScaleDownRules`).
DEFAULT_SCALE_UP_POLICIES = (
    ScalingPolicy(PolicyType.PODS, 4, 15),
    ScalingPolicy(PolicyType.PERCENT, 100, 15),
)
DEFAULT_SCALE_DOWN_POLICIES = (ScalingPolicy(PolicyType.PERCENT, 100, 15),)
DEFAULT_SCALE_UP = ScalingRules(0, DEFAULT_SCALE_UP_POLICIES)
DEFAULT_SCALE_DOWN = ScalingRules(DOWNSCALE_STABILIZATION, DEFAULT_SCALE_DOWN_POLICIES)


@dataclass(frozen=True, slots=True)
class Behavior:
    scale_up: ScalingRules = DEFAULT_SCALE_UP
    scale_down: ScalingRules = DEFAULT_SCALE_DOWN


@dataclass(frozen=True, slots=True)
class Tolerances:
    scale_down: float = DEFAULT_TOLERANCE
    scale_up: float = DEFAULT_TOLERANCE

    def within(self, usage_ratio: float) -> bool:
        return 1.0 - self.scale_down <= usage_ratio <= 1.0 + self.scale_up


class MetricKind(StrEnum):
    RESOURCE = "Resource"  # target: averageUtilization, a whole percent of the pods' requests
    PODS = "Pods"  # target: averageValue per pod


@dataclass(frozen=True, slots=True)
class MetricTarget:
    kind: MetricKind
    name: str
    target: float


class PodState(StrEnum):
    """How `groupPods` files a pod."""

    READY = "ready"  # running, ready, with a sample: measured
    UNREADY = "unready"  # pending, or (CPU) not ready or ready for less than a sample's window
    MISSING = "missing"  # running with no sample from the metrics API


@dataclass(frozen=True, slots=True)
class PodGroup:
    """`count` pods alike: each reporting `usage` (CPU used, or a Pods metric's value) against a
    CPU request of `request`. Groups rather than pods, so a sync costs the same at any size."""

    count: int
    state: PodState = PodState.READY
    usage: float = 0.0
    request: float = 1.0


def _utilisation_percent(usage: float, request: float) -> int:
    # int64(metricsTotal * 100 / requestsTotal) on milli-units; the epsilon keeps 0.29 at 29.
    return math.floor(usage * 100.0 / request + 1e-9)


def _usage_ratio(kind: MetricKind, usage: float, request: float, pods: int, target: float) -> float:
    if kind is MetricKind.RESOURCE:
        return _utilisation_percent(usage, request) / target
    return usage / pods / target


def metric_replicas(
    current: int, pods: Sequence[PodGroup], metric: MetricTarget, tolerances: Tolerances
) -> int | None:
    """`GetResourceReplicas` / `calcPlainMetricReplicas`; None where they return an error."""
    ready = unready = missing = 0
    usage = request = unready_request = missing_request = 0.0
    for group in pods:
        if group.count <= 0:
            continue
        if group.state is PodState.READY:
            ready += group.count
            usage += group.count * group.usage
            request += group.count * group.request
        elif group.state is PodState.UNREADY:
            unready += group.count
            unready_request += group.count * group.request
        else:
            missing += group.count
            missing_request += group.count * group.request
    if ready == 0 or (metric.kind is MetricKind.RESOURCE and request <= 0.0):
        # "did not receive metrics for targeted pods (pods might be unready)"
        return None
    ratio = _usage_ratio(metric.kind, usage, request, ready, metric.target)
    scale_up_with_unready = unready > 0 and ratio > 1.0
    if not scale_up_with_unready and missing == 0:
        if tolerances.within(ratio):
            return current
        return math.ceil(ratio * ready)
    counted = ready
    if missing > 0 and ratio != 1.0:
        counted += missing
        request += missing_request
        if ratio < 1.0 and metric.kind is MetricKind.RESOURCE:
            usage += missing_request * max(100.0, metric.target) / 100.0
        elif ratio < 1.0:
            usage += missing * metric.target
    if scale_up_with_unready:
        counted += unready
        request += unready_request
    new_ratio = _usage_ratio(metric.kind, usage, request, counted, metric.target)
    if (
        tolerances.within(new_ratio)
        or (ratio < 1.0 and new_ratio > 1.0)
        or (ratio > 1.0 and new_ratio < 1.0)
    ):
        return current
    replicas = math.ceil(new_ratio * counted)
    if (new_ratio < 1.0 and replicas > current) or (new_ratio > 1.0 and replicas < current):
        return current
    return replicas


def replicas_for_metrics(
    current: int,
    metrics: Sequence[MetricTarget],
    samples: Sequence[Sequence[PodGroup] | None],
    tolerances: Tolerances,
) -> int | None:
    """`computeReplicasForMetrics`: the highest proposal; None when nothing may be changed.

    `samples` holds each metric's pods, in the order of `metrics`; None for a metric that cannot
    be read at all.
    """
    replicas = 0
    invalid = 0
    for metric, pods in zip(metrics, samples, strict=True):
        proposal = None if pods is None else metric_replicas(current, pods, metric, tolerances)
        if proposal is None:
            invalid += 1
        elif proposal > replicas:
            replicas = proposal
    if invalid >= len(metrics) or (invalid > 0 and replicas < current):
        return None
    return replicas


@dataclass(frozen=True, slots=True)
class HPASpec:
    min_replicas: int
    max_replicas: int
    metrics: tuple[MetricTarget, ...]
    # None: the HPA has no `behavior` and takes the controller's legacy path.
    behavior: Behavior | None = None

    @property
    def tolerances(self) -> Tolerances:
        """`tolerancesForHpa`: the behavior's, else the controller's flag for both."""
        if self.behavior is None:
            return Tolerances()
        return Tolerances(self.behavior.scale_down.tolerance, self.behavior.scale_up.tolerance)


def cpu_hpa(
    min_replicas: int, max_replicas: int, target_utilisation: float, behavior: Behavior | None
) -> HPASpec:
    """An HPA on CPU utilisation, `target_utilisation` a fraction (0.7 is 70%)."""
    target = MetricTarget(MetricKind.RESOURCE, "cpu", round(target_utilisation * 100.0))
    return HPASpec(min_replicas, max_replicas, (target,), behavior)


def convert_desired_replicas_with_rules(
    current: int, desired: int, min_replicas: int, max_replicas: int
) -> int:
    """`convertDesiredReplicasWithRules`: within [min, max] and at most max(2 x current, 4)."""
    scale_up_limit = int(max(SCALE_UP_LIMIT_FACTOR * current, SCALE_UP_LIMIT_MINIMUM))
    if desired < min_replicas:
        return min_replicas
    return min(desired, max_replicas, scale_up_limit)


@dataclass
class HPAState:
    """The controller's memory of one HPA: recommendations and scale events with their times.

    No recommendations yet (None) is an HPA the controller has not synced: its first sync
    records the current count, so nothing is scaled down in the first window after start.
    """

    recommendations: list[tuple[float, int]] | None = None
    scale_up_events: list[tuple[float, int]] = field(default_factory=list)
    scale_down_events: list[tuple[float, int]] = field(default_factory=list)


def _change_in_period(events: list[tuple[float, int]], now: float, period: float) -> int:
    """`getReplicasChangePerPeriod`."""
    cutoff = now - period
    return sum(change for time, change in events if time > cutoff)


def _record(recommendations: list[tuple[float, int]], index: int, entry: tuple[float, int]) -> None:
    # The controller overwrites its last stale entry, or appends when none is stale.
    if index >= 0:
        recommendations[index] = entry
    else:
        recommendations.append(entry)


class HorizontalPodAutoscaler:
    def __init__(self, spec: HPASpec, state: HPAState | None = None) -> None:
        self.spec = spec
        self.state = state if state is not None else HPAState()

    def reconcile(
        self, now: float, current: int, samples: Sequence[Sequence[PodGroup] | None]
    ) -> int:
        """One sync (`reconcileAutoscaler`): the replica count to set, `current` for none.

        `samples` holds, per metric of the spec in order, the pods as the metrics API sees them
        (None for a metric that cannot be read).
        """
        spec = self.spec
        if self.state.recommendations is None:
            self.state.recommendations = [(now, current)]
        if current == 0 and spec.min_replicas != 0:
            return current  # "scaling is disabled since the replica count of the target is zero"
        if current > spec.max_replicas:
            desired = spec.max_replicas
        elif current < spec.min_replicas:
            desired = spec.min_replicas
        else:
            proposal = replicas_for_metrics(current, spec.metrics, samples, spec.tolerances)
            if proposal is None:
                return current
            if spec.behavior is None:
                desired = self.normalize(now, current, proposal)
            else:
                desired = self.normalize_with_behaviors(now, current, proposal)
        if desired != current and spec.behavior is not None:
            self._store_event(now, current, desired, spec.behavior)
        return desired

    def _recommendations(self) -> list[tuple[float, int]]:
        if self.state.recommendations is None:
            self.state.recommendations = []
        return self.state.recommendations

    def stabilize(self, now: float, desired: int) -> int:
        """`stabilizeRecommendation`: the highest recommendation of the downscale window."""
        recommendations = self._recommendations()
        cutoff = now - DOWNSCALE_STABILIZATION
        highest = desired
        stale = -1
        for index, (time, recommendation) in enumerate(recommendations):
            if time < cutoff:
                stale = index
            elif recommendation > highest:
                highest = recommendation
        _record(recommendations, stale, (now, desired))
        return highest

    def normalize(self, now: float, current: int, desired: int) -> int:
        """`normalizeDesiredReplicas`: stabilized, then `convertDesiredReplicasWithRules`."""
        stabilized = self.stabilize(now, desired)
        spec = self.spec
        return convert_desired_replicas_with_rules(
            current, stabilized, spec.min_replicas, spec.max_replicas
        )

    def stabilize_with_behaviors(self, now: float, current: int, desired: int) -> int:
        """`stabilizeRecommendationWithBehaviors`: within [lowest of the scale-up window,
        highest of the scale-down window], moving from `current` only as far as both allow."""
        behavior = self.spec.behavior or Behavior()
        up_cutoff = now - behavior.scale_up.stabilization_window_seconds
        down_cutoff = now - behavior.scale_down.stabilization_window_seconds
        up_recommendation = desired
        down_recommendation = desired
        recommendations = self._recommendations()
        stale = -1
        for index, (time, recommendation) in enumerate(recommendations):
            if time > up_cutoff:
                up_recommendation = min(recommendation, up_recommendation)
            if time > down_cutoff:
                down_recommendation = max(recommendation, down_recommendation)
            if time < up_cutoff and time < down_cutoff:
                stale = index
        stabilized = min(max(current, up_recommendation), down_recommendation)
        _record(recommendations, stale, (now, desired))
        return stabilized

    def _period_start(self, now: float, current: int, period: float) -> int:
        added = _change_in_period(self.state.scale_up_events, now, period)
        deleted = _change_in_period(self.state.scale_down_events, now, period)
        return current - added + deleted

    def scale_up_limit(self, now: float, current: int) -> int:
        """`calculateScaleUpLimitWithScalingRules`."""
        rules = (self.spec.behavior or Behavior()).scale_up
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
        """`calculateScaleDownLimitWithBehaviors`."""
        rules = (self.spec.behavior or Behavior()).scale_down
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

    def limit_rate(self, now: float, current: int, desired: int) -> int:
        """`convertDesiredReplicasWithBehaviorRate`."""
        spec = self.spec
        if desired > current:
            limit = max(self.scale_up_limit(now, current), current)
            return min(desired, min(spec.max_replicas, limit))
        if desired < current:
            limit = min(self.scale_down_limit(now, current), current)
            return max(desired, max(spec.min_replicas, limit))
        return desired

    def normalize_with_behaviors(self, now: float, current: int, desired: int) -> int:
        """`normalizeDesiredReplicasWithBehaviors`."""
        stabilized = self.stabilize_with_behaviors(now, current, desired)
        return self.limit_rate(now, current, stabilized)

    def _store_event(self, now: float, previous: int, new: int, behavior: Behavior) -> None:
        """`storeScaleEvent`, keeping what any policy period of either direction still counts
        (a scale-up's period start also counts the pods removed within the period)."""
        longest = max(behavior.scale_up.longest_period, behavior.scale_down.longest_period)
        cutoff = now - longest
        up = [e for e in self.state.scale_up_events if e[0] >= cutoff]
        down = [e for e in self.state.scale_down_events if e[0] >= cutoff]
        if new > previous:
            up.append((now, new - previous))
        else:
            down.append((now, previous - new))
        self.state.scale_up_events = up
        self.state.scale_down_events = down
