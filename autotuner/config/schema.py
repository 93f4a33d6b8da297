"""The rule file's shape, as SREs write it. Field-level checks live here; checks that need
the whole file (metric names, templates, budgets) live in the loader.

```yaml
metrics:
  api_p95_seconds: histogram_quantile(0.95, sum by (le, namespace, deployment) (rate(...[5m])))
rules:
  - name: api-latency-high
    metric: api_p95_seconds
    above: 0.5
    for: 1m
    cooldown: 2m
    action:
      scale:
        deployment: "{{ labels.deployment }}"
        namespace: "{{ labels.namespace }}"
        factor: 1.5
        max: 20
```
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from autotuner.config.durations import parse_duration


def _duration(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError("expected a duration such as 30s, 5m or 1h30m")
    if isinstance(value, int):
        if value != 0:
            raise ValueError(f"{value} has no unit; write it as Prometheus does, e.g. {value}s")
        return 0.0
    return parse_duration(value)


Duration = Annotated[float, BeforeValidator(_duration)]
Name = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_:.-]*$", max_length=200)]


class Strict(BaseModel):
    # YAML reads `.nan`, `.inf` and `1e400` as floats; no threshold or bound can be one.
    model_config = ConfigDict(
        extra="forbid", frozen=True, populate_by_name=True, allow_inf_nan=False
    )


class MetricSpec(Strict):
    query: str = Field(min_length=1)
    labels: tuple[str, ...] | None = None


class RateLimitSpec(Strict):
    """At most `pods` (or `change`) units, or `percent` percent, per `period`."""

    pods: float | None = Field(default=None, gt=0)
    change: float | None = Field(default=None, gt=0)
    percent: float | None = Field(default=None, gt=0)
    period: Duration

    @model_validator(mode="after")
    def _one_kind(self) -> RateLimitSpec:
        given = [k for k in ("pods", "change", "percent") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of pods, change or percent")
        if self.period <= 0:
            raise ValueError("period must be longer than 0s")
        return self


class ChangeFields(Strict):
    factor: float | None = Field(default=None, gt=0)
    step: float | None = None
    proportional_to: float | None = Field(default=None, gt=0)
    min: float = Field(default=0, ge=0)
    max: float
    rate_limits: tuple[RateLimitSpec, ...] = ()
    select: Literal["max", "min"] = "max"
    stabilization_window: Duration = 0.0

    @property
    def changes_given(self) -> list[str]:
        return [k for k in ("factor", "step", "proportional_to") if getattr(self, k) is not None]

    @model_validator(mode="after")
    def _one_change(self) -> ChangeFields:
        # None at all is for a rule with an objective; the loader checks that.
        if len(self.changes_given) > 1:
            raise ValueError("give exactly one of factor, step or proportional_to")
        if self.factor == 1 or self.step == 0:
            raise ValueError("a factor of 1 or a step of 0 changes nothing")
        return self


class ScaleSpec(ChangeFields):
    deployment: str | None = None
    statefulset: str | None = None
    namespace: str = Field(min_length=1)

    @model_validator(mode="after")
    def _one_workload(self) -> ScaleSpec:
        if (self.deployment is None) == (self.statefulset is None):
            raise ValueError("give exactly one of deployment or statefulset")
        return self


class SetKeySpec(ChangeFields):
    key: str = Field(min_length=1)
    field: str = ""
    integer: bool = True
    default: float | None = None


class ActionSpec(Strict):
    scale: ScaleSpec | None = None
    set_key: SetKeySpec | None = None

    @model_validator(mode="after")
    def _one_action(self) -> ActionSpec:
        if (self.scale is None) == (self.set_key is None):
            raise ValueError("give exactly one action: scale or set_key")
        return self


class ObjectiveSpec(Strict):
    """Keep the rule's metric at or under `at_most`, aiming at `aim`: see docs/rules.md."""

    at_most: float = Field(gt=0)
    aim: float = Field(gt=0)
    load: str = Field(min_length=1)
    utilisation: str = Field(min_length=1)
    settle: Duration = 360.0
    lead: Duration = 90.0
    fallback_utilisation: float = Field(default=0.7, gt=0, lt=1)

    @model_validator(mode="after")
    def _aim_under_slo(self) -> ObjectiveSpec:
        if self.aim > self.at_most:
            raise ValueError(
                f"aim ({self.aim:g}) must not exceed at_most ({self.at_most:g}): aim under the "
                "SLO, so that noise and the time new replicas take do not break it"
            )
        return self


class RuleSpec(Strict):
    name: Name
    metric: str
    objective: ObjectiveSpec | None = None
    above: float | None = None
    below: float | None = None
    clear_below: float | None = None
    clear_above: float | None = None
    for_: Duration = Field(default=0.0, alias="for")
    keep_firing_for: Duration = 0.0
    cooldown: Duration = 0.0
    enabled: bool = True
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    action: ActionSpec

    @model_validator(mode="after")
    def _condition(self) -> RuleSpec:
        if self.objective is not None:
            given = [
                k
                for k in ("above", "below", "clear_above", "clear_below")
                if getattr(self, k) is not None
            ]
            if given:
                raise ValueError(
                    f"a rule with an objective needs no condition: remove {', '.join(given)}"
                )
            return self
        if (self.above is None) == (self.below is None):
            raise ValueError("give exactly one condition: above or below (or an objective)")
        if self.above is not None:
            if self.clear_above is not None:
                raise ValueError(
                    "a rule that fires above a threshold clears below one: use clear_below"
                )
            if self.clear_below is not None and self.clear_below > self.above:
                raise ValueError(
                    f"clear_below ({self.clear_below:g}) must not exceed above ({self.above:g})"
                )
        if self.below is not None:
            if self.clear_below is not None:
                raise ValueError(
                    "a rule that fires below a threshold clears above one: use clear_above"
                )
            if self.clear_above is not None and self.clear_above < self.below:
                raise ValueError(
                    f"clear_above ({self.clear_above:g}) must not be under below ({self.below:g})"
                )
        return self


class KnobSpec(Strict):
    """A concrete knob in a budget: `deployment: NS/NAME`, `statefulset: NS/NAME` or `key: K`."""

    deployment: str | None = Field(default=None, pattern=r"^[^/]+/[^/]+$")
    statefulset: str | None = Field(default=None, pattern=r"^[^/]+/[^/]+$")
    key: str | None = None
    field: str = ""

    @model_validator(mode="after")
    def _one_knob(self) -> KnobSpec:
        if sum(x is not None for x in (self.deployment, self.statefulset, self.key)) != 1:
            raise ValueError("give exactly one of deployment, statefulset or key")
        return self


class BudgetSpec(Strict):
    name: Name
    limit: float = Field(gt=0)
    # The sum over terms of the product of each term's knobs stays at or under the limit.
    terms: tuple[tuple[KnobSpec, ...], ...]

    @model_validator(mode="after")
    def _has_terms(self) -> BudgetSpec:
        if not self.terms or not all(self.terms):
            raise ValueError("a budget needs at least one term of at least one knob")
        return self


class SettingsSpec(Strict):
    max_sample_age: Duration = 300.0


# Top-level keys starting with this are ignored: a place to define anchors, as in Compose files.
EXTENSION_PREFIX = "x-"


class RuleFileSpec(Strict):
    metrics: dict[str, MetricSpec | str] = Field(default_factory=dict)
    # Each a RuleSpec, validated one at a time by the loader as it compiles them: a file of
    # tens of thousands of rules then never holds all their models at once.
    rules: tuple[Any, ...] = ()
    budgets: tuple[BudgetSpec, ...] = ()
    settings: SettingsSpec = Field(default_factory=SettingsSpec)

    @model_validator(mode="before")
    @classmethod
    def _without_extensions(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        return {
            key: value
            for key, value in data.items()
            if not (isinstance(key, str) and key.startswith(EXTENSION_PREFIX))
        }
