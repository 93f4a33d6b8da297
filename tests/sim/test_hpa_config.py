"""A fair HPA baseline: the rules' bounds unless the scenario says, `behavior` as Kubernetes has it."""

from __future__ import annotations

from pathlib import Path

import pytest

from autotuner.config.errors import ConfigError
from autotuner.config.loader import load_rules
from autotuner.sim.hpa import DEFAULT_SCALE_UP_POLICIES, PolicyType, SelectPolicy, cpu_hpa
from autotuner.sim.hpa_config import hpa_specs, rule_bounds
from autotuner.sim.hpa_controller import HPAController
from autotuner.sim.metrics import catalogue
from autotuner.sim.report import build_report
from autotuner.sim.runner import Policy, run
from autotuner.sim.scenario import load_scenario
from autotuner.sim.system import System, SystemSpec

# Templated knobs, rendered against the labels of the series each rule reads.
RULES = """\
metrics:
  api_p95_seconds: 'api_p95'
  ml_p95_seconds: 'ml_p95'
rules:
  - name: api-high
    metric: api_p95_seconds
    above: 0.5
    action:
      scale: {deployment: "{{ labels.deployment }}", namespace: "{{ labels.namespace }}",
              factor: 1.5, min: 3, max: 12}
  - name: api-low
    metric: api_p95_seconds
    below: 0.1
    action:
      scale: {deployment: "{{ labels.deployment }}", namespace: "{{ labels.namespace }}",
              factor: 0.8, min: 2, max: 12}
  - name: ml-high
    metric: ml_p95_seconds
    above: 0.1
    action:
      scale: {deployment: "{{ labels.deployment }}", namespace: "{{ labels.namespace }}",
              factor: 1.5, min: 2, max: 8}
  - name: elsewhere
    metric: ml_p95_seconds
    above: 0.1
    action:
      scale: {deployment: ml, namespace: other, factor: 1.5, min: 1, max: 50}
"""

SCENARIO = """\
duration: 10m
load: {base: {constant: 100}}
rules: [rules.yaml]
policy: hpa
"""


def _scenario(tmp_path: Path, hpa: str = "") -> Path:
    (tmp_path / "rules.yaml").write_text(RULES)
    path = tmp_path / "scenario.yaml"
    path.write_text(SCENARIO + hpa)
    return path


def test_the_rules_bounds_per_deployment(tmp_path: Path) -> None:
    scenario = load_scenario(_scenario(tmp_path))
    ruleset = load_rules(scenario.rule_paths)
    series = catalogue("crm", [])
    assert rule_bounds(ruleset, series, "crm") == {"api": (2, 12), "ml": (2, 8)}


def test_the_hpa_takes_the_rules_bounds_unless_the_scenario_says(tmp_path: Path) -> None:
    scenario = load_scenario(_scenario(tmp_path, "hpa: {ml: {max: 6}}\n"))
    specs = hpa_specs(scenario, load_rules(scenario.rule_paths), catalogue("crm", []))
    assert (specs["api"].min_replicas, specs["api"].max_replicas) == (2, 12)
    assert (specs["ml"].min_replicas, specs["ml"].max_replicas) == (2, 6)
    # Without rules: the built-in limits, the shipped rules' own.
    bare = hpa_specs(scenario, None, catalogue("crm", []))
    assert (bare["api"].min_replicas, bare["ml"].min_replicas) == (2, 2)


def test_an_hpa_without_behavior_takes_the_legacy_path(tmp_path: Path) -> None:
    scenario = load_scenario(_scenario(tmp_path))
    assert all(s.behavior is None for s in scenario.hpa_settings)


def test_behavior_fills_what_it_leaves_out_as_the_api_server_does(tmp_path: Path) -> None:
    hpa = """\
hpa:
  behavior:
    scaleUp: {tolerance: 0.05}
  ml:
    behavior:
      scaleDown:
        stabilizationWindowSeconds: 60
        selectPolicy: Min
        policies: [{type: Pods, value: 1, periodSeconds: 30}]
"""
    scenario = load_scenario(_scenario(tmp_path, hpa))
    api, ml = (s.behavior for s in scenario.hpa_settings)
    assert api is not None and ml is not None
    assert api.scale_up.tolerance == 0.05
    assert api.scale_up.policies == DEFAULT_SCALE_UP_POLICIES
    assert api.scale_down.stabilization_window_seconds == 300
    assert api.scale_down.tolerance == 0.1
    assert ml.scale_down.stabilization_window_seconds == 60
    assert ml.scale_down.select_policy is SelectPolicy.MIN
    assert ml.scale_down.policies[0].type is PolicyType.PODS
    specs = hpa_specs(scenario, None, catalogue("crm", []))
    assert specs["api"].tolerances.scale_up == 0.05
    assert specs["api"].tolerances.scale_down == 0.1


def test_a_min_above_the_max_names_the_field(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as raised:
        load_scenario(_scenario(tmp_path, "hpa: {api: {min: 9, max: 3}}\n"))
    assert "hpa.api" in str(raised.value.problems[0])
    scenario = load_scenario(_scenario(tmp_path, "hpa: {ml: {max: 1}}\n"))
    with pytest.raises(ConfigError, match="min 2 above max 1"):
        hpa_specs(scenario, load_rules(scenario.rule_paths), catalogue("crm", []))


def test_a_misspelt_behavior_field_is_a_located_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as raised:
        load_scenario(_scenario(tmp_path, "hpa: {behavior: {scaleUp: {window: 3}}}\n"))
    assert raised.value.problems[0].line == 5


def test_the_report_shows_each_policys_floor(tmp_path: Path) -> None:
    scenario = load_scenario(_scenario(tmp_path))
    ruleset = load_rules(scenario.rule_paths)
    for policy in (Policy.HPA, Policy.RULES):
        report = build_report(scenario, run(scenario, policy, ruleset))
        assert (report["replicas"]["floor"], report["ml_replicas"]["floor"]) == (2, 2)


def test_new_pods_are_unready_until_a_sample_follows_their_readiness() -> None:
    system = System(SystemSpec())
    series = catalogue("crm", [])
    spec = cpu_hpa(2, 20, 0.7, None)
    controller = HPAController({"api": spec}, system, None, None, series)  # type: ignore[arg-type]
    api = system.api  # 4 ready pods, 60 s to start, a 60 s CPU sample window
    api.scale(8, 0.0)
    assert controller.readiness("api", api, 0.0) == (4, 4)
    api.advance(60.0)
    assert controller.readiness("api", api, 60.0) == (4, 4)  # ready, but the sample predates it
    api.advance(105.0)
    assert controller.readiness("api", api, 105.0) == (4, 4)
    assert controller.readiness("api", api, 120.0) == (8, 0)
