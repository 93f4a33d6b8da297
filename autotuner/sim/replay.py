"""A scenario replaying a trace file instead of its own load base: `autotuner sim --trace`.

Only the base changes. The scenario's events (flash crowds, steps), load noise, faults, system,
rules, SLOs and expectations stay as they are. The run lasts the scenario's duration, or the
trace's length when the trace is shorter: a replay never invents traffic past the recording.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from autotuner.config.durations import format_duration
from autotuner.sim.load import Trace
from autotuner.sim.scenario import Scenario
from autotuner.sim.trace_file import TraceError


@dataclass(frozen=True, slots=True)
class Replay:
    scenario: Scenario
    # Set when the trace is shorter than the scenario's run: says how long the run now is.
    shortened: str | None


def replay_trace(
    scenario: Scenario,
    per_minute: tuple[float, ...],
    label: str,
    peak_rps: float | None = None,
    scale: float = 1.0,
) -> Replay:
    """`scenario` with its load base replaced by `per_minute` (requests in each minute).

    TraceError when the trace is shorter than one tick.

    With `peak_rps` the busiest replayed minute becomes that many requests per second;
    without it each minute's requests / 60 x `scale` are its requests per second.
    """
    settings = scenario.settings
    trace_seconds = 60.0 * len(per_minute)
    shortened = None
    duration = settings.duration
    if trace_seconds < settings.tick:
        raise TraceError(
            f"the trace {label} covers {format_duration(trace_seconds)}, less than one "
            f"{format_duration(settings.tick)} tick of the scenario"
        )
    if trace_seconds < duration:
        duration = trace_seconds
        shortened = (
            f"the trace {label} covers {format_duration(trace_seconds)}, less than the "
            f"scenario's {format_duration(settings.duration)}: the run lasts "
            f"{format_duration(trace_seconds)}"
        )
    base = Trace(per_minute, peak_rps, 0.0, 1.0, label, scale)
    return Replay(
        replace(
            scenario,
            settings=replace(settings, duration=duration),
            load=replace(scenario.load, base=base),
        ),
        shortened,
    )


def day_slice(scenario: Scenario, first_day: float, days: float) -> Scenario:
    """`scenario` replaying `days` days of its own trace from `first_day` on, at the scale of
    the whole trace (its busiest minute is the scenario's `peak_rps`), so a quiet stretch
    stays quiet. TraceError when the scenario's load is not a trace or is shorter."""
    base = scenario.load.base
    if not isinstance(base, Trace):
        raise TraceError(f"scenario {scenario.name} replays no trace to take days of")
    start = base.start_minute + first_day * 1440.0
    if start + days * 1440.0 > len(base.per_minute):
        raise TraceError(
            f"the trace of {scenario.name} has {len(base.per_minute) / 1440.0:g} days; "
            f"days {first_day:g} to {first_day + days:g} are past its end"
        )
    if base.peak_rps is not None:
        busiest = max(base.per_minute) / 60.0
        base = replace(base, peak_rps=None, scale=base.peak_rps / busiest)
    return replace(
        scenario,
        name=f"{scenario.name} days {first_day:g}-{first_day + days:g}",
        load=replace(scenario.load, base=replace(base, start_minute=start)),
        settings=replace(scenario.settings, duration=days * 86400.0),
    )
