"""Wrappers that stand between the engine and the world while the daemon runs.

`GuardedActuator` enforces, at the moment of acting, what the daemon promises whatever the
adapter does: nothing outside the allow-list is changed (templated knobs are only known once
rendered), nothing is changed once this replica may no longer act (lost lease, shutting down),
and an adapter that raises despite its contract fails only its own target.
`WatchedSource` does the same for the metric source and remembers when it last answered.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence

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


class GuardedActuator:
    def __init__(self, inner: Actuator, allow: AllowList, gate: ActGate) -> None:
        self._inner = inner
        self._allow = allow
        self._gate = gate

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
            return self._inner.apply(decision)
        except Exception as error:
            log_event(
                _LOG,
                "actuator.apply_raised",
                logging.ERROR,
                knob=decision.knob.id,
                rule=decision.rule,
                error=repr(error),
            )
            return Outcome(OutcomeStatus.FAILED, f"the actuator raised: {error}")


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
