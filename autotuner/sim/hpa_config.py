"""The `hpa:` section of a scenario, and the HPA each deployment gets from it and the rules.

A fair baseline has the rules' bounds: unless the scenario's `hpa:` names a deployment's `min` or
`max`, its HPA takes the lowest minimum and the highest maximum of the loaded rule set's scale
actions on that deployment (their knob templates rendered against the labels the simulator's
series carry). Without rules either, the built-in limits below apply. `behavior` is the
autoscaling/v2 field, spelt as Kubernetes spells it so an HPA's own can be pasted in; an HPA
without one takes the controller's legacy path, as Kubernetes does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from autotuner.config.errors import ConfigError, Problem
from autotuner.config.schema import Strict
from autotuner.config.yaml_positions import Located
from autotuner.core.model import KnobKind, KnobRef
from autotuner.core.rules import RuleSet
from autotuner.sim.hpa import (
    DEFAULT_SCALE_DOWN_POLICIES,
    DEFAULT_SCALE_UP_POLICIES,
    DEFAULT_TOLERANCE,
    DOWNSCALE_STABILIZATION,
    Behavior,
    HPASpec,
    PolicyType,
    ScalingPolicy,
    ScalingRules,
    SelectPolicy,
    cpu_hpa,
)
from autotuner.sim.metrics import SeriesDef

if TYPE_CHECKING:
    from autotuner.sim.scenario import Scenario

DEPLOYMENTS = ("api", "ml")
# Without rules and without the scenario saying: the limits the shipped rules have.
BUILT_IN_LIMITS = {"api": (2, 20), "ml": (2, 10)}


# Field names as autoscaling/v2 has them (camelCase), so a manifest's `behavior` pastes in.
class ScalingPolicyFileSpec(Strict):
    type: Literal["Pods", "Percent"]
    value: int = Field(gt=0)
    periodSeconds: int = Field(gt=0, le=1800)


class ScalingRulesFileSpec(Strict):
    stabilizationWindowSeconds: int | None = Field(default=None, ge=0, le=3600)
    selectPolicy: Literal["Max", "Min", "Disabled"] | None = None
    policies: tuple[ScalingPolicyFileSpec, ...] | None = Field(default=None, min_length=1)
    tolerance: float | None = Field(default=None, ge=0)


class BehaviorFileSpec(Strict):
    scaleUp: ScalingRulesFileSpec | None = None
    scaleDown: ScalingRulesFileSpec | None = None


class HPALimits(Strict):
    min: int | None = Field(default=None, ge=1)
    max: int | None = Field(default=None, ge=1)
    behavior: BehaviorFileSpec | None = None


class HPAFileSpec(Strict):
    target_utilisation: float = Field(default=0.7, gt=0, le=1)
    # For both deployments; a deployment's own `behavior` replaces it.
    behavior: BehaviorFileSpec | None = None
    api: HPALimits = HPALimits()
    ml: HPALimits = HPALimits()


@dataclass(frozen=True, slots=True)
class HPASettings:
    """What a scenario says of one deployment's HPA; None where it says nothing."""

    deployment: str
    min_replicas: int | None = None
    max_replicas: int | None = None
    behavior: Behavior | None = None


def _rules(spec: ScalingRulesFileSpec | None, up: bool) -> ScalingRules:
    """`GenerateHPAScaleUpRules` / `GenerateHPAScaleDownRules`: unset fields take defaults."""
    if spec is None:
        spec = ScalingRulesFileSpec()
    defaults = DEFAULT_SCALE_UP_POLICIES if up else DEFAULT_SCALE_DOWN_POLICIES
    policies = (
        defaults
        if spec.policies is None
        else tuple(
            ScalingPolicy(PolicyType(p.type), p.value, p.periodSeconds) for p in spec.policies
        )
    )
    window = spec.stabilizationWindowSeconds
    if window is None:
        window = 0 if up else DOWNSCALE_STABILIZATION
    return ScalingRules(
        window,
        policies,
        SelectPolicy(spec.selectPolicy or "Max"),
        DEFAULT_TOLERANCE if spec.tolerance is None else spec.tolerance,
    )


def behavior_from(spec: BehaviorFileSpec | None) -> Behavior | None:
    if spec is None:
        return None
    return Behavior(_rules(spec.scaleUp, up=True), _rules(spec.scaleDown, up=False))


def compile_hpa(spec: HPAFileSpec, located: Located) -> tuple[HPASettings, ...]:
    settings = []
    for name in DEPLOYMENTS:
        limits: HPALimits = getattr(spec, name)
        if limits.min is not None and limits.max is not None and limits.min > limits.max:
            raise ConfigError(
                [
                    located.problem(
                        ("hpa", name),
                        f"min {limits.min} is above max {limits.max}; lower min or raise max",
                    )
                ]
            )
        behavior = behavior_from(limits.behavior or spec.behavior)
        settings.append(HPASettings(name, limits.min, limits.max, behavior))
    return tuple(settings)


def rule_bounds(
    ruleset: RuleSet, series: Mapping[str, tuple[SeriesDef, ...]], namespace: str
) -> dict[str, tuple[int, int]]:
    """Per deployment, the lowest minimum and highest maximum of the enabled rules' scale
    actions on `deployment/<namespace>/<name>`, each knob rendered as the rule's series name it."""
    bounds: dict[str, tuple[int, int]] = {}
    for rule in ruleset.active_rules:
        action = rule.action
        if action.knob.kind is not KnobKind.DEPLOYMENT:
            continue
        label_sets = [d.labels for d in series.get(rule.metric, ())]
        if action.knob.is_static:
            label_sets = [()]
        for labels in label_sets:
            knob = action.knob.knob_for(labels)
            if not isinstance(knob, KnobRef) or knob.namespace != namespace:
                continue
            if knob.name not in DEPLOYMENTS:
                continue
            low, high = int(action.minimum), int(action.maximum)
            if knob.name in bounds:
                known_low, known_high = bounds[knob.name]
                low, high = min(low, known_low), max(high, known_high)
            bounds[knob.name] = (low, high)
    return bounds


def hpa_specs(
    scenario: Scenario,
    ruleset: RuleSet | None,
    series: Mapping[str, tuple[SeriesDef, ...]],
) -> dict[str, HPASpec]:
    """The HPA of each deployment: the scenario's limits, else the rules', else built-in."""
    from_rules = (
        rule_bounds(ruleset, series, scenario.system.namespace) if ruleset is not None else {}
    )
    specs = {}
    for settings in scenario.hpa_settings:
        name = settings.deployment
        low, high = from_rules.get(name, BUILT_IN_LIMITS[name])
        low = settings.min_replicas if settings.min_replicas is not None else low
        high = settings.max_replicas if settings.max_replicas is not None else high
        if low > high:
            said = "min" if settings.min_replicas is not None else "max"
            message = (
                f"the HPA would have min {low} above max {high} (the scenario sets {said}, "
                f"the rules the other); set both hpa.{name}.min and hpa.{name}.max"
            )
            raise ConfigError([Problem(scenario.file, 1, 1, f"hpa.{name}", message)])
        specs[name] = cpu_hpa(low, high, scenario.hpa_target, settings.behavior)
    return specs
