"""Properties of the shipped API rules under replayed series, checked over generated inputs."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from autotuner.config.loader import load_rules
from autotuner.control.tick import tick
from autotuner.core.model import KnobKind, KnobRef, KnobValue
from autotuner.core.state import EngineState
from autotuner.ruletest.notation import Marker, Point
from autotuner.ruletest.replay import RecordingActuator, ReplaySource
from autotuner.ruletest.testfile import InputSeries

REPO = Path(__file__).resolve().parents[2]
API_RULES = load_rules([REPO / "rules" / "examples" / "api-threshold.yaml"])
API = KnobRef(KnobKind.DEPLOYMENT, "api", "crm")
LABELS = (("deployment", "api"), ("namespace", "crm"))

points = st.one_of(
    st.floats(min_value=0.0, max_value=2.0, allow_nan=False),
    st.sampled_from([Marker.MISSING, Marker.STALE]),
)


@settings(max_examples=60, deadline=None)
@given(values=st.lists(points, min_size=1, max_size=25), start=st.integers(1, 25))
def test_never_acts_without_data_and_stays_within_bounds(values: list[Point], start: int) -> None:
    series = InputSeries("api_p95_seconds", LABELS, tuple(values), line=1)
    source = ReplaySource([series], interval=60)
    actuator = RecordingActuator({API: float(start)})
    state = EngineState()
    for step, point in enumerate(values):
        before = actuator.read([API])[API]
        report = tick(step * 60.0, API_RULES, state, source, [actuator])
        state = report.state
        after = actuator.read([API])[API]
        if not isinstance(point, float):
            assert report.changes == ()
            assert after == before
        for decision, _ in report.changes:
            assert decision.final is not None and decision.current is not None
            # A change moves toward the bounds [2, 20] and never past them.
            assert min(decision.current, 2) <= decision.final <= max(decision.current, 20)
            assert after == KnobValue(decision.final)
    last = actuator.applied[-1][0].final if actuator.applied else float(start)
    assert actuator.read([API])[API] == KnobValue(last)
