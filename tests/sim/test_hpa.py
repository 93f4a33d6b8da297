"""The HPA port against kubernetes' own tests (pkg/controller/podautoscaler), case by case.

Each case is named after the Go test it comes from and keeps its inputs and expected count.
Go's fixtures describe pods; `_pods` files them as `groupPods` does: a pod past the reported
levels has no sample (missing, even when not ready), an unready or "hot CPU" pod with a sample is
unready for a CPU metric, failed and deleted pods are left out. Levels are per container in
milli-CPU; both containers of a pod report alike, so the ratios are the same per pod.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pytest

from autotuner.sim.hpa import (
    Behavior,
    HorizontalPodAutoscaler,
    HPASpec,
    HPAState,
    MetricKind,
    MetricTarget,
    PodGroup,
    PodState,
    PolicyType,
    ScalingPolicy,
    ScalingRules,
    SelectPolicy,
    Tolerances,
    convert_desired_replicas_with_rules,
    metric_replicas,
    replicas_for_metrics,
)

CPU = MetricKind.RESOURCE
PODS = MetricKind.PODS


def _pods(
    levels: tuple[int, ...],
    count: int,
    unready: frozenset[int] = frozenset(),
    requests: tuple[float, ...] = (),
    pending: frozenset[int] = frozenset(),
) -> tuple[PodGroup, ...]:
    groups = []
    for index in range(count):
        request = requests[index] if requests else 1.0
        if index in pending:
            state = PodState.UNREADY
        elif index >= len(levels):
            state = PodState.MISSING
        elif index in unready:
            state = PodState.UNREADY
        else:
            state = PodState.READY
        usage = levels[index] / 1000.0 if index < len(levels) else 0.0
        groups.append(PodGroup(1, state, usage, request))
    return tuple(groups)


def _plain(levels: tuple[int, ...]) -> tuple[PodGroup, ...]:
    """A Pods metric in milli-units: readiness is not looked at for metrics other than CPU."""
    return tuple(PodGroup(1, PodState.READY, level / 1000.0) for level in levels)


@dataclass(frozen=True)
class Calc:
    current: int
    pods: tuple[PodGroup, ...]
    target: MetricTarget
    expected: int | None
    tolerances: Tolerances = field(default_factory=Tolerances)


def _cpu(percent: float) -> MetricTarget:
    return MetricTarget(CPU, "cpu", percent)


def _qps(milli: int) -> MetricTarget:
    return MetricTarget(PODS, "qps", milli / 1000.0)


MIXED = (0.9, 1.0, 1.1)
FIVE = (100, 300, 500, 250, 250)
# TestReplicaCalcComputedToleranceAlgImplementation: 10 pods at 150m of ~300m requests; the
# target put 1% then 0.4% beyond what the 0.1 tolerance allows.
_REQUESTS = tuple(r / 1000.0 for r in (400, 200, 310, 290, 302, 298, 301, 299, 300, 300))
_TARGET_OUT = math.trunc((1 / (2.0 * 0.9) + 0.01) * 100)
_TARGET_IN = math.trunc((1 / (2.0 * 0.9) + 0.004) * 100)
_EXPECTED_OUT = math.ceil(1500 / (3000 * (1 / (2.0 * 0.9) + 0.01)) * 10)

REPLICA_CALC = {
    "TestReplicaCalcScaleUp": Calc(3, _pods((300, 500, 700), 3), _cpu(30), 5),
    "TestReplicaCalcScaleUpUnreadyLessScale": Calc(
        3, _pods((300, 500, 700), 3, unready=frozenset({0})), _cpu(30), 4
    ),
    "TestReplicaCalcScaleUpHotCpuLessScale": Calc(
        3, _pods((300, 500, 700), 3, unready=frozenset({0})), _cpu(30), 4
    ),
    "TestReplicaCalcScaleUpUnreadyNoScale": Calc(
        3, _pods((400, 500, 700), 3, unready=frozenset({1, 2})), _cpu(30), 3
    ),
    "TestReplicaCalcScaleHotCpuNoScale": Calc(
        3, _pods((400, 500, 700), 3, unready=frozenset({1, 2})), _cpu(30), 3
    ),
    # Two failed (or deleted) pods beside the two running ones are left out.
    "TestReplicaCalcScaleUpIgnoresFailedPods": Calc(2, _pods((500, 700), 2), _cpu(30), 4),
    "TestReplicaCalcScaleUpIgnoresDeletionPods": Calc(2, _pods((500, 700), 2), _cpu(30), 4),
    "TestReplicaCalcScaleUpCM": Calc(3, _plain((20000, 10000, 30000)), _qps(15000), 4),
    # Not ready and hot, yet counted: readiness is looked at for CPU only.
    "TestReplicaCalcScaleUpCMUnreadyHotCpuNoLessScale": Calc(
        3, _plain((50000, 10000, 30000)), _qps(15000), 6
    ),
    "TestReplicaCalcScaleUpCMUnreadyHotCpuScaleWouldScaleDown": Calc(
        3, _plain((50000, 15000, 30000)), _qps(15000), 7
    ),
    "TestReplicaCalcScaleDown": Calc(5, _pods(FIVE, 5), _cpu(50), 3),
    "TestReplicaCalcScaleDownCM": Calc(5, _plain((12000,) * 5), _qps(20000), 3),
    "TestReplicaCalcScaleDownExcludeUnreadyPods": Calc(
        5, _pods(FIVE, 5, unready=frozenset({3, 4})), _cpu(50), 2
    ),
    "TestReplicaCalcScaleDownExcludeUnscheduledPods": Calc(
        5, _pods((100,), 5, pending=frozenset({1, 2, 3, 4})), _cpu(50), 1
    ),
    "TestReplicaCalcScaleDownIgnoreHotCpuPods": Calc(
        5, _pods(FIVE, 5, unready=frozenset({3, 4})), _cpu(50), 2
    ),
    "TestReplicaCalcScaleDownIgnoresFailedPods": Calc(5, _pods(FIVE, 5), _cpu(50), 3),
    "TestReplicaCalcTolerance": Calc(3, _pods((1010, 1030, 1020), 3, requests=MIXED), _cpu(100), 3),
    "TestReplicaCalcToleranceCM": Calc(3, _plain((20000, 21000, 21000)), _qps(20000), 3),
    "TestReplicaCalcSuperfluousMetrics": Calc(4, _pods((4000, 9500, 3000, 7000), 4), _cpu(100), 24),
    "TestReplicaCalcMissingMetrics": Calc(4, _pods((400, 95), 4), _cpu(100), 3),
    "TestReplicaCalcEmptyMetrics": Calc(4, _pods((), 3), _cpu(100), None),
    "TestPlainMetricReplicaCalcMissingMetricsNoChangeEq": Calc(
        5, (*_plain((20000, 19000, 21000)), PodGroup(2, PodState.MISSING)), _qps(20000), 5
    ),
    "TestReplicaCalcMissingMetricsNoChangeEq": Calc(2, _pods((1000,), 2), _cpu(100), 2),
    "TestReplicaCalcMissingMetricsNoChangeGt": Calc(2, _pods((1900,), 2), _cpu(100), 2),
    "TestReplicaCalcMissingMetricsNoChangeLt": Calc(2, _pods((600,), 2), _cpu(100), 2),
    "TestReplicaCalcMissingMetricsUnreadyChange": Calc(
        3, _pods((100, 450), 3, unready=frozenset({0})), _cpu(50), 3
    ),
    "TestReplicaCalcMissingMetricsHotCpuNoChange": Calc(
        3, _pods((100, 450), 3, unready=frozenset({0})), _cpu(50), 3
    ),
    "TestReplicaCalcMissingMetricsUnreadyScaleUp": Calc(
        3, _pods((100, 2000), 3, unready=frozenset({0})), _cpu(50), 4
    ),
    "TestReplicaCalcMissingMetricsHotCpuScaleUp": Calc(
        3, _pods((100, 2000), 3, unready=frozenset({0})), _cpu(50), 4
    ),
    "TestReplicaCalcMissingMetricsUnreadyScaleDown": Calc(
        4, _pods((100, 100, 100), 4, unready=frozenset({0})), _cpu(50), 3
    ),
    "TestReplicaCalcMissingMetricsScaleDownTargetOver100": Calc(
        4,
        _pods((200, 100, 100), 4, unready=frozenset({0}), requests=(1.0, 1.0, 2.0, 2.0)),
        _cpu(300),
        2,
    ),
    "TestReplicaCalcDuringRollingUpdateWithMaxSurge": Calc(2, _pods((100, 100), 3), _cpu(50), 2),
    "TestReplicaCalcDuringRollingUpdateWithMaxSurgeCM": Calc(
        2, (*_plain((10000, 10000)), PodGroup(1, PodState.MISSING)), _qps(17000), 2
    ),
    "TestReplicaCalcComputedToleranceAlgImplementation/scale": Calc(
        10, _pods((150,) * 10, 10, requests=_REQUESTS), _cpu(_TARGET_OUT), _EXPECTED_OUT
    ),
    "TestReplicaCalcComputedToleranceAlgImplementation/no-scale": Calc(
        10, _pods((150,) * 10, 10, requests=_REQUESTS), _cpu(_TARGET_IN), 10
    ),
    # Per-direction tolerances, `Tolerances{scaleDown, scaleUp}` as in Go.
    "TestReplicaCalcConfigurableTolerance/Outside of a 0% tolerance": Calc(
        3, _pods((909, 1010, 1111), 3, requests=MIXED), _cpu(100), 4, Tolerances(0.0, 0.0)
    ),
    "TestReplicaCalcConfigurableTolerance/Within a 200% scale-up tolerance": Calc(
        3, _pods((1890, 1910, 1900), 3, requests=MIXED), _cpu(100), 3, Tolerances(0.1, 2.0)
    ),
    "TestReplicaCalcConfigurableTolerance/Outside 8% scale-up tolerance": Calc(
        3, _pods((1100, 1080, 1090), 3, requests=MIXED), _cpu(100), 4, Tolerances(2.0, 0.08)
    ),
    "TestReplicaCalcConfigurableTolerance/Within a 36% scale-down tolerance": Calc(
        3, _pods((660, 640, 650), 3, requests=MIXED), _cpu(100), 3, Tolerances(0.36, 0.1)
    ),
    "TestReplicaCalcConfigurableTolerance/Outside a 34% scale-down tolerance": Calc(
        3, _pods((660, 640, 650), 3, requests=MIXED), _cpu(100), 2, Tolerances(0.34, 0.1)
    ),
    "TestReplicaCalcConfigurableToleranceCM": Calc(
        3, _plain((20000, 21000, 21000)), _qps(20000), 4, Tolerances(0.1, 0.01)
    ),
}


@pytest.mark.parametrize("case", REPLICA_CALC.values(), ids=REPLICA_CALC.keys())
def test_replica_calculator(case: Calc) -> None:
    assert metric_replicas(case.current, case.pods, case.target, case.tolerances) == case.expected


def _rules(
    pods: int, pods_period: int, percent: int, percent_period: int, window: int
) -> ScalingRules:
    """`generateScalingRules`: a Pods and a Percent policy (0 leaves one out), Max."""
    policies = []
    if pods:
        policies.append(ScalingPolicy(PolicyType.PODS, pods, pods_period))
    if percent:
        policies.append(ScalingPolicy(PolicyType.PERCENT, percent, percent_period))
    return ScalingRules(window, tuple(policies))


@dataclass(frozen=True)
class Sync:
    """One `reconcileAutoscaler` of horizontal_test.go's `testCase` (no recommendations given:
    an empty log; `seed` leaves it to the controller's first sync)."""

    min: int
    max: int
    current: int
    metrics: tuple[MetricTarget, ...]
    samples: tuple[tuple[PodGroup, ...] | None, ...]
    expected: int
    behavior: Behavior | None = None
    recommendations: tuple[tuple[float, int], ...] = ()
    seed: bool = False


INVALID = MetricTarget(PODS, "CheddarCheese", 1.0)
CPU30 = (_cpu(30), INVALID)
LEVELS = _pods((300, 400, 500), 3)

CONTROLLER = {
    "TestScaleUpOneMetricInvalid": Sync(2, 6, 3, CPU30, (LEVELS, None), 4),
    "TestScaleUpOneMetricEmpty": Sync(2, 6, 3, CPU30, (LEVELS, None), 4),
    "TestScaleUpBothMetricsEmpty": Sync(2, 6, 3, (INVALID,), (None,), 3),
    "TestNoScaleDownOneMetricInvalid": Sync(
        2, 6, 5, (_cpu(50), INVALID), (_pods(FIVE, 5), None), 5
    ),
    "TestNoScaleDownOneMetricEmpty": Sync(2, 6, 5, (_cpu(50), INVALID), (_pods(FIVE, 5), None), 5),
    "TestEmptyMetrics": Sync(2, 6, 4, (_cpu(100),), (_pods((), 4),), 4),
    # CPU asks for 60 pods, qps for 4: the higher proposal wins, then max 5.
    "TestNoBackoffUpscaleCMNoBackoffCpu": Sync(
        1,
        5,
        3,
        (_cpu(10), _qps(15000)),
        (_pods((20000, 10000, 30000), 3), _plain((20000, 10000, 30000))),
        5,
    ),
    "TestScaleUpRCImmediately": Sync(2, 6, 1, (_cpu(80),), (_pods((0,) * 4, 4),), 2),
    "TestScaleDownRCImmediately": Sync(2, 5, 6, (_cpu(50),), (_pods((8000, 9500, 1000), 3),), 5),
    "TestTooFewReplicas": Sync(3, 5, 2, (_cpu(90),), (None,), 3),
    "TestTooManyReplicas": Sync(3, 5, 10, (_cpu(90),), (None,), 5),
    "TestZeroReplicas": Sync(3, 5, 0, (_cpu(90),), (None,), 0),
    "TestScaleDown": Sync(2, 6, 5, (_cpu(50),), (_pods(FIVE, 5),), 3),
    "TestScaleDownIncludeUnreadyPods": Sync(
        2, 6, 5, (_cpu(50),), (_pods(FIVE, 5, unready=frozenset({3, 4})),), 2
    ),
    "TestScaleDownStabilizeInitialSize": Sync(
        2, 6, 5, (_cpu(50),), (_pods(FIVE, 5),), 5, seed=True
    ),
    "TestStabilizeDownscale": Sync(
        1,
        5,
        4,
        (_cpu(100),),
        (_pods((50, 50, 50), 3, requests=(0.1, 0.1, 0.1)),),
        4,
        recommendations=((-600.0, 10), (-60.0, 4)),
    ),
    "TestMinReplicas": Sync(2, 5, 3, (_cpu(90),), (_pods((10, 95, 10), 3, requests=MIXED),), 2),
    "TestMaxReplicas": Sync(
        2, 5, 3, (_cpu(90),), (_pods((8000, 9500, 1000), 3, requests=MIXED),), 5
    ),
    "TestMissingReports": Sync(1, 5, 4, (_cpu(50),), (_pods((200,), 1, requests=(0.2,)),), 2),
    "TestMoreReplicasThanSpecNoScale": Sync(1, 8, 4, (_cpu(50),), (_pods((500,) * 5, 5),), 4),
    "TestUpscaleCap": Sync(
        1,
        100,
        3,
        (_cpu(10),),
        (_pods((100, 200, 300), 3, requests=(0.1, 0.1, 0.1)),),
        24,
        Behavior(scale_up=_rules(0, 0, 700, 60, 0)),
    ),
    "TestUpscaleCapGreaterThanMaxReplicas": Sync(
        1,
        20,
        3,
        (_cpu(10),),
        (_pods((100, 200, 300), 3, requests=(0.1, 0.1, 0.1)),),
        20,
        Behavior(scale_up=_rules(0, 0, 700, 60, 0)),
    ),
    "TestScaleDownWithScalingRules": Sync(
        2, 6, 5, (_cpu(50),), (_pods(FIVE, 5),), 3, Behavior(scale_up=_rules(0, 0, 100, 15, 30))
    ),
}


@pytest.mark.parametrize("case", CONTROLLER.values(), ids=CONTROLLER.keys())
def test_controller_sync(case: Sync) -> None:
    state = HPAState(None if case.seed else list(case.recommendations))
    hpa = HorizontalPodAutoscaler(HPASpec(case.min, case.max, case.metrics, case.behavior), state)
    assert hpa.reconcile(0.0, case.current, case.samples) == case.expected


def test_the_invalid_metric_is_what_stops_the_scale_down() -> None:
    # TestNoScaleDownOneMetricInvalid's valid metric alone would take 5 pods to 3.
    assert replicas_for_metrics(5, (_cpu(50),), (_pods(FIVE, 5),), Tolerances()) == 3


def _uniform(changes: tuple[int, ...], period: float) -> list[tuple[float, int]]:
    """`generateEventsUniformDistribution`, with now at 0."""
    if not changes:
        return []
    segment = period / len(changes)
    return [
        (-(period - segment * (index + 1) + segment / 2), change)
        for index, change in enumerate(changes)
    ]


@dataclass(frozen=True)
class Rate:
    min: int
    max: int
    current: int
    desired: int
    expected: int
    up: ScalingRules | None = None
    down: ScalingRules | None = None
    up_events: tuple[int, ...] = ()
    down_events: tuple[int, ...] = ()


SCALING_WITH_RULES = {
    "prenormalized desired replicas within range": Rate(3, 8, 5, 7, 7),
    "prenormalized desired replicas < minReplicas": Rate(2, 8, 3, 1, 2),
    "maxReplicas is the limit because maxReplicas < scaleUpLimit": Rate(1, 10, 20, 1000, 10),
    "scaleUpLimit is the limit because scaleUpLimit < maxReplicas with user policies": Rate(
        1, 2000, 3, 1000, 4, up=_rules(0, 0, 1, 60, 0)
    ),
    "scaleDownLimit is the limit because scaleDownLimit > minReplicas with user defined "
    "policies": Rate(3, 2000, 1000, 3, 980, down=_rules(20, 60, 0, 0, 0)),
    "scaleUp with default behavior": Rate(1, 1000, 10, 50, 20),
    "scaleUp with pods policy larger than percent policy": Rate(
        1, 1000, 10, 500, 110, up=_rules(100, 60, 100, 60, 0)
    ),
    "scaleUp with percent policy limitation": Rate(
        1, 1000, 10, 50, 30, up=_rules(0, 0, 200, 60, 0)
    ),
    "scaleDown with pod policy larger than percent policy": Rate(
        1, 1000, 100, 2, 98, down=_rules(2, 60, 1, 60, 300)
    ),
    "scaleDown with spec MinReplicas limitation with large percent policy": Rate(
        5, 1000, 10, 2, 5, down=_rules(0, 0, 100, 60, 300)
    ),
    "scaleUp with currentReplicas limitation with rate.PeriodSeconds with a lot of recent scale "
    "up events": Rate(1, 1000, 100, 500, 100, up=_rules(5, 120, 0, 0, 0), up_events=(1, 5, 9)),
    "scaleUp with pod policy and previous scale up events": Rate(
        1, 1000, 100, 500, 235, up=_rules(150, 120, 0, 0, 0), up_events=(1, 5, 9)
    ),
    "scaleUp with percent policy and previous scale up and down events": Rate(
        1, 1000, 6, 24, 16, up=_rules(0, 0, 300, 300, 0), up_events=(4,), down_events=(2,)
    ),
    "scaleDown with percent policy limitation and previous events": Rate(
        1, 1000, 100, 0, 56, down=_rules(0, 0, 50, 120, 300), down_events=(2, 4, 6)
    ),
    "scaleDown with previous events preventing further scale down": Rate(
        1, 1000, 100, 0, 100, down=_rules(0, 0, 10, 120, 300), down_events=(10, 10, 10)
    ),
    "check that events were marked 'outdated' for two different policies in the behavior for "
    "up": Rate(1, 1000, 100, 200, 200, up=_rules(1000, 30, 100, 60, 0), up_events=(8, 12, 9, 11)),
}


@pytest.mark.parametrize(
    "case",
    SCALING_WITH_RULES.values(),
    ids=[f"TestScalingWithRules/{k}" for k in SCALING_WITH_RULES],
)
def test_scaling_with_rules(case: Rate) -> None:
    behavior = Behavior(case.up or Behavior().scale_up, case.down or Behavior().scale_down)
    state = HPAState([], _uniform(case.up_events, 120), _uniform(case.down_events, 120))
    hpa = HorizontalPodAutoscaler(HPASpec(case.min, case.max, (_cpu(50),), behavior), state)
    assert hpa.limit_rate(0.0, case.current, case.desired) == case.expected


def test_calculate_limits_with_the_min_select_policy() -> None:
    # TestCalculateScaleUpLimitWithScalingRules, TestCalculateScaleDownLimitWithBehaviors.
    policies = (ScalingPolicy(PolicyType.PODS, 2, 60), ScalingPolicy(PolicyType.PERCENT, 50, 60))
    rules = ScalingRules(300, policies, SelectPolicy.MIN)
    hpa = HorizontalPodAutoscaler(HPASpec(1, 10, (_cpu(50),), Behavior(rules, rules)), HPAState([]))
    assert hpa.scale_up_limit(0.0, 1) == 2
    assert hpa.scale_down_limit(0.0, 5) == 3


@dataclass(frozen=True)
class Window:
    current: int
    desired: int
    expected: int
    recommendations: tuple[tuple[float, int], ...]
    stored: tuple[int, ...] | None
    up_window: int = 0
    down_window: int = 0


NORMALIZE_WITH_BEHAVIOR = {
    "empty recommendations for scaling down": Window(100, 5, 5, (), (5,)),
    "simple scale down stabilization": Window(
        100, 3, 5, ((-120, 4), (-60, 5)), (4, 5, 3), down_window=180
    ),
    "simple scale up stabilization": Window(1, 7, 4, ((-120, 4), (-60, 5)), (4, 5, 7), 300),
    "no scale down stabilization": Window(100, 3, 3, ((-120, 1), (-60, 2)), (1, 2, 3), 300),
    "no scale down stabilization, reuse recommendation element": Window(
        100, 3, 3, ((-600, 10), (-540, 9)), (10, 3)
    ),
    "scale up stabilization, reuse one of obsolete recommendation element": Window(
        1, 100, 5, ((-6000, 10), (-60, 6), (-120, 5), (-180, 9)), (100, 6, 5, 9), 300
    ),
    "scale up and down stabilization, do not scale up when prenormalized rec goes down": Window(
        2, 1, 2, ((-6000, 2), (-180, 3)), None, 300, 300
    ),
    "scale up and down stabilization, do not scale down when prenormalized rec goes up": Window(
        2, 3, 2, ((-6000, 2), (-180, 1)), None, 300, 300
    ),
}


@pytest.mark.parametrize(
    "case",
    NORMALIZE_WITH_BEHAVIOR.values(),
    ids=[f"TestNormalizeDesiredReplicasWithBehavior/{k}" for k in NORMALIZE_WITH_BEHAVIOR],
)
def test_stabilize_recommendation_with_behaviors(case: Window) -> None:
    behavior = Behavior(
        ScalingRules(case.up_window, Behavior().scale_up.policies),
        ScalingRules(case.down_window, Behavior().scale_down.policies),
    )
    state = HPAState([(float(t), r) for t, r in case.recommendations])
    hpa = HorizontalPodAutoscaler(HPASpec(1, 1000, (_cpu(50),), behavior), state)
    assert hpa.stabilize_with_behaviors(0.0, case.current, case.desired) == case.expected
    if case.stored is not None:
        assert [r for _, r in state.recommendations or []] == list(case.stored)


NORMALIZE = {
    "empty log": ((), 5, 5, 1),
    "stabilize": (((-120, 4), (-60, 5)), 3, 5, 3),
    "no stabilize": (((-120, 1), (-60, 2)), 3, 3, 3),
    "no stabilize - old recommendations": (((-600, 10), (-540, 9)), 3, 3, 2),
    "stabilize - old recommendations": (((-600, 10), (-60, 4), (-120, 5), (-540, 9)), 3, 5, 4),
}


@pytest.mark.parametrize(
    ("log", "desired", "expected", "length"),
    NORMALIZE.values(),
    ids=[f"TestNormalizeDesiredReplicas/{k}" for k in NORMALIZE],
)
def test_stabilize_recommendation(
    log: tuple[tuple[int, int], ...], desired: int, expected: int, length: int
) -> None:
    state = HPAState([(float(t), r) for t, r in log])
    hpa = HorizontalPodAutoscaler(HPASpec(1, 10, (_cpu(50),)), state)
    assert hpa.stabilize(0.0, desired) == expected
    assert len(state.recommendations or []) == length


@pytest.mark.parametrize(
    ("current", "desired", "low", "high", "expected"),
    [
        (5, 7, 3, 8, 7),
        (3, 1, 2, 8, 2),
        (1, 0, 0, 10, 0),
        (20, 1000, 1, 10, 10),
        (3, 1000, 1, 2000, 6),
    ],
    ids=lambda v: str(v),
)
def test_convert_desired_replicas_with_rules(
    current: int, desired: int, low: int, high: int, expected: int
) -> None:
    # TestConvertDesiredReplicasWithRules; its last case expects calculateScaleUpLimit(3), which
    # is 6 with the controller's factor of 2 (the Go suite raises the factor to 8 in init()).
    assert convert_desired_replicas_with_rules(current, desired, low, high) == expected


def test_the_documented_percent_scale_down_policy() -> None:
    # kubernetes.io HPA docs: "periodSeconds: 60, type: Percent, value: 10 ... 80 replicas ...
    # during the first step 8 replicas will be reduced. In the next iteration when the number of
    # replicas is 72, 10% of the pods is 7.2 but the number is rounded up to 8."
    down = ScalingRules(0, (ScalingPolicy(PolicyType.PERCENT, 10, 60),))
    hpa = HorizontalPodAutoscaler(HPASpec(1, 100, (_cpu(50),), Behavior(scale_down=down)))
    idle = (PodGroup(80, usage=0.03125),)
    assert hpa.reconcile(0.0, 80, (idle,)) == 72
    assert hpa.reconcile(30.0, 72, ((PodGroup(72, usage=0.03125),),)) == 72
    assert hpa.reconcile(61.0, 72, ((PodGroup(72, usage=0.03125),),)) == 64


def test_the_legacy_path_keeps_the_highest_recommendation_of_five_minutes() -> None:
    hpa = HorizontalPodAutoscaler(HPASpec(1, 100, (_cpu(50),)))
    assert hpa.reconcile(0.0, 10, ((PodGroup(10, usage=0.5),),)) == 10
    # Load halves: the wish is 5, but the controller started at 10 and recommended 10 since.
    assert hpa.reconcile(60.0, 10, ((PodGroup(10, usage=0.25),),)) == 10
    assert hpa.reconcile(300.0, 10, ((PodGroup(10, usage=0.25),),)) == 10
    assert hpa.reconcile(301.0, 10, ((PodGroup(10, usage=0.25),),)) == 5
