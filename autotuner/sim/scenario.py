"""Scenario files: the run, its load, the system's parameters, faults, policy, SLOs, expectations.

Loaded through the rule loader's machinery (`load_located`, pydantic models, `validate`), so a
bad scenario gets the same file:line:column: field: message errors as `autotuner check` gives.
See docs/simulator.md for the format; sim/scenarios/ holds worked examples.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from pydantic import Field

from autotuner.config.errors import ConfigError, Problem
from autotuner.config.loader import validate
from autotuner.config.schema import Duration, Strict
from autotuner.config.yaml_positions import Located, read_located
from autotuner.sim.api import APISpec
from autotuner.sim.cache import CacheClass
from autotuner.sim.faults import Fault, FaultKind
from autotuner.sim.hpa_config import BUILT_IN_LIMITS, HPAFileSpec, HPASettings, compile_hpa
from autotuner.sim.load import (
    Base,
    Constant,
    Diurnal,
    Event,
    FlashCrowd,
    LoadSpec,
    Step,
    Trace,
    TraceError,
    bundled_trace,
    read_trace_csv,
)
from autotuner.sim.ml import MLSpec
from autotuner.sim.pool import DatabaseSpec
from autotuner.sim.system import SystemSpec, origin_caches

Positive = Field(gt=0)


class DiurnalSpec(Strict):
    mean: float = Field(gt=0)
    amplitude: float = Field(default=0.5, ge=0, le=1)
    peak_hour: float = Field(default=14.0, ge=0, lt=24)


class TraceSpec(Strict):
    name: str | None = None
    file: str | None = None
    # One of the two: scaled so the replayed slice's busiest minute is `peak_rps`, or played as
    # recorded, requests per minute / 60 x `scale` (`scale: 1` is the traffic as it was).
    peak_rps: float | None = Field(default=None, gt=0)
    scale: float | None = Field(default=None, gt=0)
    start_minute: float = Field(default=0.0, ge=0)
    speedup: float = Field(default=1.0, gt=0)


class BaseSpec(Strict):
    constant: float | None = Field(default=None, gt=0)
    diurnal: DiurnalSpec | None = None
    trace: TraceSpec | None = None


class FlashCrowdSpec(Strict):
    at: Duration
    multiplier: float = Field(gt=1)
    ramp: Duration = 120.0
    hold: Duration = 600.0
    decay: Duration = 600.0


class StepSpec(Strict):
    at: Duration
    factor: float = Field(gt=0)


class EventSpec(Strict):
    flash_crowd: FlashCrowdSpec | None = None
    step: StepSpec | None = None


class LoadFileSpec(Strict):
    base: BaseSpec
    events: tuple[EventSpec, ...] = ()
    noise: float = Field(default=0.0, ge=0, le=1)


class APIFileSpec(Strict):
    replicas: int = Field(default=4, ge=0)
    workers: int = Field(default=16, gt=0)
    cores: float = Field(default=2.0, gt=0)
    cpu_seconds: float = Field(default=0.02, gt=0)
    startup_delay: Duration = 60.0
    timeout: Duration = 30.0
    # The server's own CPU work per request (gunicorn: 1-3 ms), on top of cpu_seconds.
    overhead: float = Field(default=0.002, ge=0)
    # The share of cpu_seconds that is the same for every request; the rest is exponential.
    cpu_fixed_share: float = Field(default=1.0, ge=0, le=1)


class MLFileSpec(Strict):
    replicas: int = Field(default=2, ge=0)
    batch_size: int = Field(default=8, gt=0)
    batch_overhead: float = Field(default=0.008, gt=0)
    per_item_seconds: float = Field(default=0.002, gt=0)
    max_batch_wait: float = Field(default=0.01, ge=0)
    share: float = Field(default=0.4, ge=0, le=1)
    startup_delay: Duration = 90.0


class DatabaseFileSpec(Strict):
    pool_size: int = Field(default=10, gt=0)
    max_connections: int = Field(default=500, gt=0)
    concurrency: int = Field(default=64, gt=0)
    query_seconds: float = Field(default=0.01, gt=0)
    contention_exponent: float = Field(default=1.5, ge=1)
    acquire_timeout: Duration = 30.0
    queries_per_request: float = Field(default=1.0, ge=0)
    queries_per_miss: float = Field(default=1.0, ge=0)


class CacheFileSpec(Strict):
    ttl: float | None = Field(default=None, gt=0)
    keys: int | None = Field(default=None, gt=0, le=2_000_000)
    zipf: float | None = Field(default=None, gt=0)
    share: float | None = Field(default=None, ge=0, le=1)
    update_interval: Duration | None = None
    object_bytes: float | None = Field(default=None, gt=0)


class SystemFileSpec(Strict):
    namespace: str = "crm"
    api: APIFileSpec = APIFileSpec()
    ml: MLFileSpec = MLFileSpec()
    database: DatabaseFileSpec = DatabaseFileSpec()
    caches: dict[str, CacheFileSpec] = Field(default_factory=dict)


class FaultFileSpec(Strict):
    kind: FaultKind
    at: Duration
    duration: Duration = 0.0
    factor: float = Field(default=1.0, gt=0)
    target: str = ""
    count: int = Field(default=0, ge=0)
    metrics: tuple[str, ...] = ()


class MetricsFileSpec(Strict):
    window: Duration = 300.0
    noise: float = Field(default=0.02, ge=0, le=1)


class SLOFileSpec(Strict):
    api_p95: float = Field(default=0.5, gt=0)
    ml_p95: float = Field(default=0.1, gt=0)


class ScenarioFileSpec(Strict):
    name: str | None = None
    description: str = ""
    duration: Duration
    tick: Duration = 15.0
    seed: int = 1
    load: LoadFileSpec
    system: SystemFileSpec = SystemFileSpec()
    faults: tuple[FaultFileSpec, ...] = ()
    metrics: MetricsFileSpec = MetricsFileSpec()
    rules: tuple[str, ...] = ()
    policy: Literal["rules", "hpa", "static", "oracle"] = "rules"
    hpa: HPAFileSpec = HPAFileSpec()
    slos: SLOFileSpec = SLOFileSpec()
    expect: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SimSettings:
    duration: float
    tick: float = 15.0
    seed: int = 1
    metric_window: float = 300.0
    metric_noise: float = 0.02


@dataclass(frozen=True, slots=True)
class SLOs:
    api_p95: float = 0.5
    ml_p95: float = 0.1


_EXPECTATION = re.compile(
    r"^\s*([A-Za-z_][A-Za-z0-9_.:/-]*)\s*(<=|>=|==|<|>)\s*(-?[0-9]+(?:\.[0-9]+)?)\s*$"
)


@dataclass(frozen=True, slots=True)
class Expectation:
    """`path op number` on the report, e.g. `api_p95.violation_minutes <= 30`."""

    path: str
    op: str
    bound: float
    text: str
    file: str = ""
    line: int = 0

    def holds(self, value: float) -> bool:
        return {
            "<=": value <= self.bound,
            ">=": value >= self.bound,
            "<": value < self.bound,
            ">": value > self.bound,
            "==": value == self.bound,
        }[self.op]


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    settings: SimSettings
    load: LoadSpec
    system: SystemSpec = field(default_factory=SystemSpec)
    faults: tuple[Fault, ...] = ()
    rule_paths: tuple[Path, ...] = ()
    policy: str = "rules"
    hpa_target: float = 0.7
    # What `hpa:` sets, else the built-in limits; the HPA itself takes the rules' where the
    # scenario sets nothing (`hpa_config.hpa_specs`).
    hpa_limits: tuple[tuple[str, int, int], ...] = (("api", 2, 20), ("ml", 2, 10))
    hpa_settings: tuple[HPASettings, ...] = (HPASettings("api"), HPASettings("ml"))
    slos: SLOs = field(default_factory=SLOs)
    expectations: tuple[Expectation, ...] = ()
    description: str = ""
    file: str = ""


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file; ConfigError names the file, line and field."""
    located = read_located(path)
    file = located.file
    if not isinstance(located.data, dict):
        raise ConfigError(
            [Problem(file, 1, 1, "", "a scenario is a mapping with duration:, load: and more")]
        )
    spec = validate(ScenarioFileSpec, located)
    return _compile(spec, located, Path(path))


def _one_of(located: Located, path: tuple[str | int, ...], present: list[str], kinds: str) -> None:
    if len(present) != 1:
        found = ", ".join(present) if present else "none"
        raise ConfigError([located.problem(path, f"write exactly one of {kinds} (found {found})")])


def _base(spec: BaseSpec, located: Located, directory: Path, duration: float) -> Base:
    path: tuple[str | int, ...] = ("load", "base")
    present = [k for k in ("constant", "diurnal", "trace") if getattr(spec, k) is not None]
    _one_of(located, path, present, "constant, diurnal, trace")
    if spec.constant is not None:
        return Constant(spec.constant)
    if spec.diurnal is not None:
        return Diurnal(spec.diurnal.mean, spec.diurnal.amplitude, spec.diurnal.peak_hour)
    trace = spec.trace
    assert trace is not None
    trace_path = (*path, "trace")
    if (trace.name is None) == (trace.file is None):
        raise ConfigError(
            [located.problem(trace_path, "give the trace a `name` (bundled) or a `file`")]
        )
    if (trace.peak_rps is None) == (trace.scale is None):
        raise ConfigError(
            [
                located.problem(
                    trace_path,
                    "give the trace either `peak_rps` (scaled so its busiest minute is that) "
                    "or `scale` (requests per minute / 60 x scale; 1 replays it as recorded)",
                )
            ]
        )
    try:
        if trace.name is not None:
            counts = bundled_trace(trace.name)
            label = trace.name
        else:
            assert trace.file is not None
            counts = read_trace_csv(directory / trace.file)
            label = trace.file
    except TraceError as error:
        raise ConfigError([located.problem(trace_path, str(error))]) from None
    needed = trace.start_minute + duration * trace.speedup / 60.0
    if needed > len(counts):
        raise ConfigError(
            [
                located.problem(
                    trace_path,
                    f"the trace has {len(counts)} minutes but the run needs {needed:.0f}; "
                    "shorten `duration`, lower `start_minute` or `speedup`",
                )
            ]
        )
    return Trace(
        counts, trace.peak_rps, trace.start_minute, trace.speedup, label, trace.scale or 1.0
    )


def _events(spec: LoadFileSpec, located: Located) -> tuple[Event, ...]:
    events: list[Event] = []
    for index, event in enumerate(spec.events):
        present = [k for k in ("flash_crowd", "step") if getattr(event, k) is not None]
        _one_of(located, ("load", "events", index), present, "flash_crowd, step")
        if event.flash_crowd is not None:
            crowd = event.flash_crowd
            events.append(
                FlashCrowd(crowd.at, crowd.multiplier, crowd.ramp, crowd.hold, crowd.decay)
            )
        elif event.step is not None:
            events.append(Step(event.step.at, event.step.factor))
    return tuple(events)


def _caches(spec: SystemFileSpec, located: Located) -> tuple[CacheClass, ...]:
    defaults = {c.name: c for c in origin_caches()}
    for name in spec.caches:
        if name not in defaults:
            known = ", ".join(defaults)
            raise ConfigError(
                [
                    located.problem(
                        ("system", "caches", name),
                        f"no cache class {name!r} (the origin document's classes: {known})",
                        key=True,
                    )
                ]
            )
    classes = []
    for name, default in defaults.items():
        override = spec.caches.get(name)
        if override is not None:
            changes = {k: v for k, v in override.model_dump().items() if v is not None}
            default = replace(default, **changes)
        classes.append(default)
    return tuple(classes)


def _system(spec: SystemFileSpec, located: Located) -> SystemSpec:
    api, ml = spec.api, spec.ml
    ml_fields = ml.model_dump(exclude={"startup_delay"})
    return SystemSpec(
        namespace=spec.namespace,
        api=APISpec(**api.model_dump()),
        ml=MLSpec(**ml_fields),
        ml_startup_delay=ml.startup_delay,
        caches=_caches(spec, located),
        database=DatabaseSpec(**spec.database.model_dump()),
    )


def _expectations(spec: ScenarioFileSpec, located: Located) -> tuple[Expectation, ...]:
    out = []
    for index, text in enumerate(spec.expect):
        match = _EXPECTATION.match(text)
        if match is None:
            raise ConfigError(
                [
                    located.problem(
                        ("expect", index),
                        f"{text!r} is not an expectation; write `REPORT.PATH OP NUMBER`, "
                        "e.g. `api_p95.violation_minutes <= 30` (OP is <=, >=, <, > or ==)",
                    )
                ]
            )
        line, _ = located.position(("expect", index))
        out.append(
            Expectation(
                match.group(1), match.group(2), float(match.group(3)), text, located.file, line
            )
        )
    return tuple(out)


def _faults(spec: ScenarioFileSpec, located: Located) -> tuple[Fault, ...]:
    faults = []
    spans = {FaultKind.SLOW_DATABASE, FaultKind.SLOW_DEPLOY, FaultKind.METRIC_OUTAGE}
    for index, fault in enumerate(spec.faults):
        if fault.kind in spans and fault.duration <= 0:
            raise ConfigError(
                [located.problem(("faults", index), f"a {fault.kind.value} fault needs a duration")]
            )
        if fault.kind is FaultKind.LOSE_REPLICAS and fault.count <= 0:
            raise ConfigError(
                [located.problem(("faults", index), "lose_replicas needs a count of at least 1")]
            )
        faults.append(
            Fault(
                fault.kind,
                fault.at,
                fault.duration,
                fault.factor,
                fault.target,
                fault.count,
                fault.metrics,
            )
        )
    return tuple(faults)


def _compile(spec: ScenarioFileSpec, located: Located, path: Path) -> Scenario:
    directory = path.parent
    if spec.tick <= 0:
        raise ConfigError([located.problem(("tick",), "the tick must be longer than 0s")])
    if spec.duration < spec.tick:
        raise ConfigError([located.problem(("duration",), "the run must last at least one tick")])
    load = LoadSpec(
        _base(spec.load.base, located, directory, spec.duration),
        _events(spec.load, located),
        spec.load.noise,
    )
    if spec.policy == "rules" and not spec.rules:
        raise ConfigError(
            [located.problem(("policy",), "the rules policy needs `rules:` (files or folders)")]
        )
    rule_paths = tuple(directory / p for p in spec.rules)
    for index, rule_path in enumerate(rule_paths):
        if not rule_path.exists():
            raise ConfigError(
                [located.problem(("rules", index), f"no such file or folder: {rule_path}")]
            )
    hpa_settings = compile_hpa(spec.hpa, located)
    return Scenario(
        name=spec.name or path.stem,
        settings=SimSettings(
            spec.duration, spec.tick, spec.seed, spec.metrics.window, spec.metrics.noise
        ),
        load=load,
        system=_system(spec.system, located),
        faults=_faults(spec, located),
        rule_paths=rule_paths,
        policy=spec.policy,
        hpa_target=spec.hpa.target_utilisation,
        hpa_limits=tuple((h.deployment, *_with_defaults(h)) for h in hpa_settings),
        hpa_settings=hpa_settings,
        slos=SLOs(spec.slos.api_p95, spec.slos.ml_p95),
        expectations=_expectations(spec, located),
        description=spec.description,
        file=str(path),
    )


def _with_defaults(settings: HPASettings) -> tuple[int, int]:
    low, high = BUILT_IN_LIMITS[settings.deployment]
    low = settings.min_replicas if settings.min_replicas is not None else low
    return low, settings.max_replicas if settings.max_replicas is not None else high
