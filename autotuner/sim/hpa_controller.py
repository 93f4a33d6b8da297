"""The `hpa` policy: one HPA per deployment, synced every 15 s against the modelled pods.

What the controller's `groupPods` would see of a modelled deployment, whose pods are alike:
- its ready pods, each reporting the deployment's CPU utilisation as metrics-server gives it
  (a one-minute mean, `*_cpu_utilisation`), against a request of one pod's CPU;
- as unready: the pods still starting, and, for CPU, those ready for less than one sample window
  within the CPU initialization period (2 min from the pod's start), whose sample still covers
  time before they were ready;
- no metric at all (the metric invalid, so no change) while the series has no sample, as in a
  metric outage. The modelled pods never lack a sample one by one, so none is `missing`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from autotuner.core.model import KnobKind, KnobRef, labels_of
from autotuner.sim.actuators import SimActuator
from autotuner.sim.hpa import (
    CPU_INITIALIZATION_PERIOD,
    SYNC_PERIOD,
    HorizontalPodAutoscaler,
    HPASpec,
    PodGroup,
    PodState,
)
from autotuner.sim.metrics import SeriesDef, SimMetricSource
from autotuner.sim.system import Deployment, System


class HPAController:
    def __init__(
        self,
        specs: Mapping[str, HPASpec],
        system: System,
        source: SimMetricSource,
        actuator: SimActuator,
        series: Mapping[str, tuple[SeriesDef, ...]],
    ) -> None:
        self._hpas = {name: HorizontalPodAutoscaler(spec) for name, spec in specs.items()}
        self._system = system
        self._source = source
        self._actuator = actuator
        self._namespace = system.spec.namespace
        self._last_sync = -SYNC_PERIOD
        self._sample_window = {name: series[f"{name}_cpu_utilisation"][0].window for name in specs}
        # Per deployment: pods seen starting, by the time they become ready.
        self._ready_at: dict[str, dict[float, int]] = {name: {} for name in specs}

    def control(self, now: float) -> None:
        if now - self._last_sync < SYNC_PERIOD - 1e-9:
            return
        self._last_sync = now
        for name, hpa in self._hpas.items():
            deployment = self._system.deployment(name)
            if deployment is None:
                continue
            labels = labels_of({"namespace": self._namespace, "deployment": name})
            utilisation = self._source.value(f"{name}_cpu_utilisation", labels, now)
            ready, unready = self.readiness(name, deployment, now)
            sample = None
            if utilisation is not None and not math.isnan(utilisation):
                sample = (
                    PodGroup(ready, PodState.READY, utilisation),
                    PodGroup(unready, PodState.UNREADY),
                )
            current = deployment.desired
            desired = hpa.reconcile(now, current, (sample,))
            if desired != current:
                self._actuator.set(KnobRef(KnobKind.DEPLOYMENT, name, self._namespace), desired)

    def readiness(self, name: str, deployment: Deployment, now: float) -> tuple[int, int]:
        """The deployment's pods as the controller files them: (ready, unready)."""
        seen = self._ready_at[name]
        starting: dict[float, int] = {}
        for ready_at in deployment.starting:
            starting[ready_at] = starting.get(ready_at, 0) + 1
        for ready_at, count in starting.items():
            seen[ready_at] = max(count, seen.get(ready_at, 0))
        # Unready after readiness while the sample predates it, if still initializing.
        grace = min(self._sample_window[name], CPU_INITIALIZATION_PERIOD - deployment.startup_delay)
        warming = 0
        for ready_at in list(seen):
            if ready_at <= now - max(grace, 0.0):
                del seen[ready_at]
            elif ready_at <= now:
                warming += seen[ready_at]
        warming = min(warming, deployment.ready)
        return deployment.ready - warming, len(deployment.starting) + warming
