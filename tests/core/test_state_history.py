"""A knob's stabilization history keeps one entry per run of equal recommendations.

The engine asks a window only which values were recommended after its start, so the short
history must answer every window exactly as the full one, tick by tick, would.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from autotuner.core import policies
from autotuner.core.model import Direction, KnobKind
from autotuner.core.rules import Action, Change, ChangeMode, KnobTemplate, Template
from autotuner.core.state import TimedValues, with_recommendation

TICK = 15.0


def _action(window: float) -> Action:
    return Action(
        knob=KnobTemplate(KnobKind.CONFIG_KEY, Template(("ttl",))),
        change=Change(ChangeMode.FACTOR, 1.5),
        minimum=0,
        maximum=1000,
        stabilization_window=window,
    )


def test_a_run_of_equal_recommendations_keeps_only_its_latest_time() -> None:
    history: TimedValues = ()
    for at, value in [(0, 4.0), (15, 4.0), (30, 4.0), (45, 6.0), (60, 6.0), (75, 4.0)]:
        history = with_recommendation(history, float(at), value)
    assert history == ((30.0, 4.0), (60.0, 6.0), (75.0, 4.0))


# Per tick: a recommended value, or None when the knob recorded nothing (no reading, say).
ticks = st.lists(st.one_of(st.none(), st.sampled_from([2.0, 3.0, 5.0, 8.0])), max_size=60)


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(
    ticks=ticks,
    window_ticks=st.integers(min_value=1, max_value=30),
    value=st.sampled_from([1.0, 4.0, 9.0]),
    current=st.sampled_from([2.0, 5.0, 8.0]),
)
def test_every_window_sees_the_same_recommendations_as_in_the_full_history(
    ticks: list[float | None], window_ticks: int, value: float, current: float
) -> None:
    full: TimedValues = ()
    short: TimedValues = ()
    action = _action(window_ticks * TICK)
    for index, recommended in enumerate(ticks):
        now = index * TICK
        for direction in Direction:
            assert policies.stabilize(action, current, value, direction, short, now) == (
                policies.stabilize(action, current, value, direction, full, now)
            )
        if recommended is not None:
            full = (*full, (now, recommended))
            short = with_recommendation(short, now, recommended)
    assert len(short) <= len(full)
