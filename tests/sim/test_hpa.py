"""The HPA port against the worked examples of the Kubernetes HPA documentation
(https://kubernetes.io/docs/tasks/run-application/horizontal-pod-autoscale/)."""

from __future__ import annotations

from autotuner.sim.hpa import (
    HorizontalPodAutoscaler,
    HPASpec,
    PolicyType,
    ScalingPolicy,
    ScalingRules,
    resource_replicas,
)


def test_the_ratio_doubles_or_halves_the_replicas() -> None:
    # "if the current metric value is 200m, and the desired value is 100m, the number of
    # replicas will be doubled ... if the current value is instead 50m, you'll halve".
    assert resource_replicas(4, 4, 0, 200.0, 100.0, 0.1) == 8
    assert resource_replicas(4, 4, 0, 50.0, 100.0, 0.1) == 2


def test_within_the_tolerance_nothing_changes() -> None:
    assert resource_replicas(4, 4, 0, 108.0, 100.0, 0.1) == 4
    assert resource_replicas(4, 4, 0, 115.0, 100.0, 0.1) == 5


def test_unready_pods_count_as_idle_on_a_scale_up() -> None:
    # 4 ready pods at 150% of target, 2 starting: 4 x 1.5 / 6 = 1.0 -> no change.
    assert resource_replicas(6, 4, 2, 150.0, 100.0, 0.1) == 6
    # 4 ready at 300%: 4 x 3 / 6 = 2.0 -> 12 pods.
    assert resource_replicas(6, 4, 2, 300.0, 100.0, 0.1) == 12


def test_default_scale_up_is_four_pods_or_double_per_15_seconds() -> None:
    hpa = HorizontalPodAutoscaler(HPASpec(1, 100, 0.5))
    # 2 replicas at 5x the target want 20: limited to max(2 x 2, 2 + 4) = 6.
    assert hpa.reconcile(0.0, 2, 2, 0, 2.5) == 6
    # Within the same 15 s period the budget is spent (relative to the period's start).
    assert hpa.reconcile(10.0, 6, 6, 0, 2.5) == 6
    # After it: 6 -> max(12, 10) = 12.
    assert hpa.reconcile(16.0, 6, 6, 0, 2.5) == 12


def test_scale_down_takes_the_highest_recommendation_of_the_300s_window() -> None:
    hpa = HorizontalPodAutoscaler(HPASpec(1, 100, 0.5))
    assert hpa.reconcile(0.0, 10, 10, 0, 0.5) == 10
    # Load halves: the wish is 5, but the last 300 s recommended 10.
    assert hpa.reconcile(60.0, 10, 10, 0, 0.25) == 10
    assert hpa.reconcile(240.0, 10, 10, 0, 0.25) == 10
    assert hpa.reconcile(301.0, 10, 10, 0, 0.25) == 5


def test_the_documented_percent_scale_down_policy() -> None:
    # "periodSeconds: 60, type: Percent, value: 10 ... if there are 80 replicas and the target
    # has to be scaled down to 10 replicas then during the first step 8 replicas will be
    # reduced. In the next iteration when the number of replicas is 72, 10% of the pods is 7.2
    # but the number is rounded up to 8."
    down = ScalingRules(0, (ScalingPolicy(PolicyType.PERCENT, 10, 60),))
    hpa = HorizontalPodAutoscaler(HPASpec(1, 100, 0.5, scale_down=down))
    assert hpa.reconcile(0.0, 80, 80, 0, 0.0625) == 72
    assert hpa.reconcile(30.0, 72, 72, 0, 0.0625) == 72
    assert hpa.reconcile(61.0, 72, 72, 0, 0.0625) == 64


def test_no_metric_means_no_change_and_bounds_apply() -> None:
    hpa = HorizontalPodAutoscaler(HPASpec(2, 10, 0.5))
    assert hpa.reconcile(0.0, 4, 4, 0, None) == 4
    assert hpa.reconcile(15.0, 1, 1, 0, None) == 2
    assert hpa.reconcile(30.0, 12, 12, 0, None) == 10
