"""Wrappers that stand between the engine and the world while the daemon runs.

`GuardedActuator` enforces, at the moment of acting, what the daemon promises whatever the
adapter does: nothing outside the allow-list is changed (templated knobs are only known once
rendered), nothing is changed once this replica may no longer act (lost lease, shutting down),
and an adapter that raises despite its contract fails only its own target.
`WatchedSource` does the same for the metric source and remembers when it last answered.
`FailureBackOff` keeps a target whose writes keep failing from being retried every cycle.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from autotuner.control.ports import Actuator, MetricSource
from autotuner.core.model import (
    Decision,
    KnobReading,
    KnobRef,
    MetricAnswer,
    MetricQuery,
    NoData,
    Outcome,
    OutcomeStatus,
    Series,
)
from autotuner.runtime.logging import log_event
from autotuner.runtime.settings import AllowList

_LOG = logging.getLogger(__name__)

# Returns None when acting is allowed, else why not.
ActGate = Callable[[], str | None]


# Told of what the adapter did with each decision it was given.
OutcomeListener = Callable[[Decision, Outcome], None]


class GuardedActuator:
    def __init__(
        self,
        inner: Actuator,
        allow: AllowList,
        gate: ActGate,
        on_outcome: OutcomeListener | None = None,
    ) -> None:
        self._inner = inner
        self._allow = allow
        self._gate = gate
        self._on_outcome = on_outcome

    def handles(self, knob: KnobRef) -> bool:
        try:
            return self._inner.handles(knob)
        except Exception as error:
            log_event(
                _LOG, "actuator.handles_raised", logging.ERROR, knob=knob.id, error=repr(error)
            )
            return False

    def read(self, knobs: Sequence[KnobRef]) -> Mapping[KnobRef, KnobReading]:
        # `tick` refuses knobs outside the allow-list before reading, through its guard.
        return self._inner.read(knobs)

    def apply(self, decision: Decision) -> Outcome:
        refusal = self._allow.refusal(decision.knob)
        if refusal is not None:
            return Outcome(OutcomeStatus.SKIPPED, f"outside the allow-list: {refusal}")
        blocked = self._gate()
        if blocked is not None and not decision.dry_run:
            return Outcome(OutcomeStatus.SKIPPED, blocked)
        try:
            outcome = self._inner.apply(decision)
        except Exception as error:
            log_event(
                _LOG,
                "actuator.apply_raised",
                logging.ERROR,
                knob=decision.knob.id,
                rule=decision.rule,
                error=repr(error),
            )
            outcome = Outcome(OutcomeStatus.FAILED, f"the actuator raised: {error}")
        if self._on_outcome is not None:
            self._on_outcome(decision, outcome)
        return outcome


class WatchedSource:
    """Counts failed queries and remembers when the source last gave a usable answer."""

    def __init__(
        self,
        inner: MetricSource,
        on_query_error: Callable[[str, str], None],
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._inner = inner
        self._on_query_error = on_query_error
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._last_answer: float | None = None

    def fetch(self, queries: Sequence[MetricQuery], at: float) -> Mapping[str, MetricAnswer]:
        try:
            answers = dict(self._inner.fetch(queries, at))
        except Exception as error:
            log_event(_LOG, "source.fetch_raised", logging.ERROR, error=repr(error))
            answers = {q.name: NoData(f"the metric source raised: {error}") for q in queries}
        answered = False
        for query in queries:
            answer = answers.get(query.name)
            if answer is None:
                answer = answers[query.name] = NoData("the metric source gave no answer")
            if isinstance(answer, Series):
                answered = True
            else:
                self._on_query_error(query.name, answer.reason)
        if answered or not queries:
            with self._lock:
                self._last_answer = self._monotonic()
        return answers

    def seconds_since_answer(self) -> float | None:
        with self._lock:
            last = self._last_answer
        return None if last is None else self._monotonic() - last


# After a target's first failed write, the next attempt waits this many cycle intervals,
# doubling with each further failure up to the cap: at a 15 s interval, 30 s then 1, 2, 4 ...
# minutes up to 30, so that a target refused every cycle (403, 404, 409, 5xx) is tried 48
# times a day at the cap instead of 5,760.
BACK_OFF_FIRST_INTERVALS = 2
BACK_OFF_CAP_INTERVALS = 120
BACK_OFF_FIRST = BACK_OFF_FIRST_INTERVALS * 15.0
BACK_OFF_CAP = BACK_OFF_CAP_INTERVALS * 15.0


@dataclass(frozen=True, slots=True)
class _Failing:
    failures: int
    until: float
    detail: str


class FailureBackOff:
    """Per knob: after a failed write, leave the knob alone (unread, unwritten, no audit row)
    until its back-off passes; exponential, capped, and forgotten at the first success."""

    def __init__(self, first: float = BACK_OFF_FIRST, cap: float = BACK_OFF_CAP) -> None:
        self._first = first
        self._cap = cap
        self._failing: dict[str, _Failing] = {}

    @classmethod
    def for_interval(cls, interval: float) -> FailureBackOff:
        return cls(BACK_OFF_FIRST_INTERVALS * interval, BACK_OFF_CAP_INTERVALS * interval)

    def refusal(self, knob: KnobRef, now: float) -> str | None:
        failing = self._failing.get(knob.id)
        if failing is None or now >= failing.until:
            return None
        times = "once" if failing.failures == 1 else f"{failing.failures} times in a row"
        return (
            f"backing off: the last write failed {times}, next attempt in "
            f"{failing.until - now:.0f}s (last error: {failing.detail})"
        )

    def observe(self, decision: Decision, outcome: Outcome) -> None:
        """What the target's adapter did with a decision, at the decision's time (an audit
        store that refused the intent is no fault of the target, and never reaches here)."""
        if decision.dry_run:
            return
        knob = decision.knob.id
        if outcome.status is OutcomeStatus.APPLIED:
            if self._failing.pop(knob, None) is not None:
                log_event(_LOG, "knob.back_off_ended", knob=knob)
        elif outcome.status is OutcomeStatus.FAILED:
            previous = self._failing.get(knob)
            failures = 1 if previous is None else previous.failures + 1
            delay = min(self._cap, self._first * 2.0 ** (failures - 1))
            self._failing[knob] = _Failing(failures, decision.time + delay, outcome.detail)
            log_event(
                _LOG,
                "knob.backing_off",
                logging.WARNING,
                knob=knob,
                failures=failures,
                seconds=delay,
                error=outcome.detail,
            )
