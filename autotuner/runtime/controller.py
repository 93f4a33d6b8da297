"""One control cycle, as the daemon runs it: reload rules if changed, then, on the leader only,
`tick` (fetch, read knobs, engine, intent, act, outcome), save the engine state, and report.

This module knows nothing of schedulers or signals; `daemon` calls `cycle()` on a timer.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from autotuner.adapters.sql_store import AuditRecord
from autotuner.control.ports import Actuator, AuditStore, Clock
from autotuner.control.tick import TickReport, tick
from autotuner.core import objectives
from autotuner.core.engine import record_outcomes
from autotuner.core.learn import replicas
from autotuner.core.model import Decision, Outcome, OutcomeStatus, Phase, Verdict, format_labels
from autotuner.core.rules import RuleSet
from autotuner.core.state import EngineState
from autotuner.runtime.guards import FailureBackOff, GuardedActuator, WatchedSource
from autotuner.runtime.http import ControllerMetrics, ProbeResult
from autotuner.runtime.logging import log_event
from autotuner.runtime.reloader import RuleReloader
from autotuner.runtime.settings import AllowList

_LOG = logging.getLogger(__name__)

_PRUNE_EVERY = 3600.0

# The name under which each cycle's per-target outcome is saved, for `autotuner explain`.
LAST_CYCLE = "last_cycle"


class StateStore(AuditStore, Protocol):
    """The audit store, and where the engine state survives restarts and leader changes."""

    def load_state(self) -> Mapping[str, Any] | None: ...

    def save_state(self, document: Mapping[str, Any], saved_at: float, name: str = ...) -> None: ...

    def delete_older_than(self, cutoff: float) -> int: ...

    def history(self, *, since: float | None = None) -> list[AuditRecord]: ...


class Leadership(Protocol):
    def may_act(self) -> bool:
        """True while this replica holds a lease that no other replica can yet take over."""
        ...

    def release(self) -> None: ...


class SoleReplica:
    """Leadership without election: the only replica always acts."""

    def may_act(self) -> bool:
        return True

    def release(self) -> None:
        return None


class CycleResult(StrEnum):
    OK = "ok"
    FAILED = "failed"
    STANDBY = "standby"  # not the leader: nothing evaluated, nothing done


@dataclass(frozen=True, slots=True)
class CycleReport:
    result: CycleResult
    duration: float
    tick: TickReport | None = None
    error: str | None = None


DecisionListener = Callable[[Decision, Outcome], None]


class Controller:
    def __init__(
        self,
        *,
        reloader: RuleReloader,
        source: WatchedSource,
        actuators: Sequence[Actuator],
        store: StateStore,
        leadership: Leadership,
        metrics: ControllerMetrics,
        clock: Clock,
        allow: AllowList,
        dry_run: bool = False,
        on_decision: DecisionListener | None = None,
        ready_max_age: float = 120.0,
        retention: float | None = None,
        restore_state: bool = True,
        monotonic: Callable[[], float] = time.monotonic,
        back_off: FailureBackOff | None = None,
    ) -> None:
        self._reloader = reloader
        self._source = source
        self._back_off = back_off or FailureBackOff()
        self._actuators = tuple(
            GuardedActuator(a, allow, self._refusal_to_act, self._back_off.observe)
            for a in actuators
        )
        self._store = store
        self._leadership = leadership
        self._metrics = metrics
        self._clock = clock
        self._allow = allow
        self._dry_run = dry_run
        self._on_decision = on_decision
        self._ready_max_age = ready_max_age
        self._retention = retention
        self._restore_state = restore_state
        self._last_prune: float | None = None
        self._monotonic = monotonic
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        # Loaded from the store when this replica starts leading: another may have led before.
        self._state: EngineState | None = None
        self._leading = False
        self._cycle_started: float | None = None
        metrics.rules_loaded.set(len(reloader.ruleset.rules))

    # ---- what acting depends on ----------------------------------------------------------

    def stop_acting(self) -> None:
        """From now on, no change is applied; a cycle in flight records the rest as skipped."""
        self._stopping.set()

    def _refusal_to_act(self) -> str | None:
        if self._stopping.is_set():
            return "the daemon is stopping; not applied"
        if not self._leadership.may_act():
            return "this replica no longer holds the leader lease; not applied"
        return None

    # ---- probes --------------------------------------------------------------------------

    def running_for(self) -> float | None:
        """How long the cycle in flight has been running, or None between cycles."""
        started = self._cycle_started
        return None if started is None else self._monotonic() - started

    def readiness(self) -> ProbeResult:
        rules = len(self._reloader.ruleset.rules)
        if not self._leading:
            return ProbeResult(True, f"standby with {rules} rules loaded")
        since = self._source.seconds_since_answer()
        if since is None:
            return ProbeResult(False, "the metric source has not answered yet")
        if since > self._ready_max_age:
            return ProbeResult(
                False,
                f"the metric source last answered {since:.0f} s ago (limit {self._ready_max_age:.0f} s)",
            )
        return ProbeResult(True, f"{rules} rules loaded; metrics answered {since:.0f} s ago")

    # ---- the cycle -----------------------------------------------------------------------

    def cycle(self) -> CycleReport:
        # The scheduler never overlaps cycles; the lock also keeps a shutdown from flushing
        # the store under a cycle still writing to it.
        with self._lock:
            started = self._monotonic()
            self._cycle_started = started
            try:
                report = self._cycle()
            finally:
                self._cycle_started = None
            duration = self._monotonic() - started
            report = CycleReport(report.result, duration, report.tick, report.error)
        self._metrics.cycles.labels(result=report.result.value).inc()
        if report.result is not CycleResult.STANDBY:
            self._metrics.cycle_duration.observe(duration)
        return report

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no cycle runs; False if one still runs after `timeout` seconds."""
        if not self._lock.acquire(timeout=max(timeout, 0.0)):
            return False
        self._lock.release()
        return True

    def _cycle(self) -> CycleReport:
        reload = self._reloader.refresh()
        if reload.rejected:
            self._metrics.reload_errors.inc()
        ruleset = reload.ruleset
        self._metrics.rules_loaded.set(len(ruleset.rules))
        if self._stopping.is_set():
            return CycleReport(CycleResult.STANDBY, 0.0, error="stopping")
        leading = self._leadership.may_act()
        self._metrics.leader.set(1 if leading else 0)
        if leading != self._leading:
            log_event(_LOG, "leadership.changed", leader=leading)
            self._leading = leading
            self._state = None
        if not leading:
            return CycleReport(CycleResult.STANDBY, 0.0)
        try:
            now = self._clock.now()
            if self._state is None:
                self._state = self._restored_state(ruleset, now)
            report = tick(
                now,
                ruleset,
                self._state,
                self._source,
                self._actuators,
                store=self._store,
                dry_run=self._dry_run,
                guard=lambda knob: self._allow.refusal(knob) or self._back_off.refusal(knob, now),
            )
            self._store.save_state({"saved_at": now, "engine": report.state.to_dict()}, now)
            self._store.save_state(last_cycle_document(ruleset, report), now, LAST_CYCLE)
            self._prune(now)
        except Exception as error:
            # Reload the state from the store next time: what it holds is what was recorded.
            self._state = None
            log_event(_LOG, "cycle.failed", logging.ERROR, error=repr(error), exc_info=True)
            return CycleReport(CycleResult.FAILED, 0.0, error=str(error))
        self._state = report.state
        self._report(report)
        self._publish_models(ruleset, report.state, now)
        self._metrics.last_success.set(time.time())
        return CycleReport(CycleResult.OK, 0.0, report)

    def _restored_state(self, ruleset: RuleSet, now: float) -> EngineState:
        if not self._restore_state:
            return EngineState()
        document = self._store.load_state()
        if document is None:
            # Never saved (or killed before the first save): only changes recent enough to
            # matter to a cooldown, rate limit or stabilization window count.
            saved_at, state = now - _memory_horizon(ruleset), EngineState()
        else:
            saved_at = float(document["saved_at"])
            state = EngineState.from_dict(document["engine"])
        # A process killed after acting but before saving the state left its change only in
        # the audit: fold such changes back in, so that their cooldowns hold.
        later = [
            record
            for record in self._store.history(since=saved_at)
            if record.decision.time > saved_at
            and record.decision.verdict is Verdict.CHANGE
            and not record.decision.dry_run
        ]
        # An unfinished intent, or one whose write got no answer, may have been carried out:
        # count it as done, to be safe.
        done = [
            (
                record.decision,
                Outcome(OutcomeStatus.APPLIED, "unfinished")
                if record.outcome is None
                else record.outcome._replace(status=OutcomeStatus.APPLIED)
                if record.outcome.status is OutcomeStatus.UNCERTAIN
                else record.outcome,
            )
            for record in sorted(later, key=lambda r: r.id)
        ]
        state = record_outcomes(state, done)
        log_event(
            _LOG,
            "state.restored",
            targets=len(state.targets),
            knobs=len(state.knobs),
            saved_at=saved_at,
            changes_after_save=len(done),
        )
        return state

    def _prune(self, now: float) -> None:
        """Delete audit records older than the retention, at most once an hour."""
        if self._retention is None:
            return
        if self._last_prune is not None and now - self._last_prune < _PRUNE_EVERY:
            return
        self._last_prune = now
        deleted = self._store.delete_older_than(now - self._retention)
        if deleted:
            log_event(_LOG, "audit.pruned", deleted=deleted, retention_seconds=self._retention)

    def _publish_models(self, ruleset: RuleSet, state: EngineState, now: float) -> None:
        metrics = self._metrics
        for (rule_name, labels), model in state.capacity.items():
            rule = ruleset.rules_by_name.get(rule_name)
            if rule is None or rule.objective is None:
                continue
            known = replicas.figures(model, objectives.parameters(rule.objective), now)
            target = format_labels(labels)
            metrics.capacity_observations.labels(rule_name, target).set(known.observations)
            metrics.capacity_confidence.labels(rule_name, target).set(known.confidence)
            for gauge, value in (
                (metrics.capacity_saturation, known.saturation),
                (metrics.capacity_per_replica, known.capacity_per_replica),
                (metrics.capacity_target_utilisation, known.target_utilisation),
            ):
                gauge.labels(rule_name, target).set(math.nan if value is None else value)

    def _report(self, report: TickReport) -> None:
        for evaluation in report.evaluations:
            result = "no_data" if evaluation.no_data is not None else evaluation.phase.value
            self._metrics.rule_evaluations.labels(rule=evaluation.rule, result=result).inc()
        for decision, outcome in report.decisions:
            changing = decision.verdict is Verdict.CHANGE
            if changing:
                self._metrics.actions.labels(rule=decision.rule, outcome=outcome.status.value).inc()
            log_event(
                _LOG,
                "decision",
                logging.INFO if changing else logging.DEBUG,
                rule=decision.rule,
                knob=decision.knob.id,
                verdict=decision.verdict.value,
                metric=decision.metric,
                value=decision.value,
                threshold=decision.threshold,
                current=decision.current,
                final=decision.final,
                limited_by=decision.limited_by,
                outcome=outcome.status.value,
                detail=outcome.detail,
                reason=decision.reason,
                dry_run=decision.dry_run,
            )
            if self._on_decision is not None:
                self._on_decision(decision, outcome)
        log_event(
            _LOG,
            "cycle.done",
            evaluations=len(report.evaluations),
            no_data=sum(1 for e in report.evaluations if e.no_data is not None),
            firing=sum(1 for e in report.evaluations if e.phase is Phase.FIRING),
            changes=len(report.changes),
            blocked=sum(1 for d, _ in report.decisions if d.verdict is Verdict.BLOCKED),
        )


def _memory_horizon(ruleset: RuleSet) -> float:
    """The longest time over which a past change still affects a decision."""
    spans = [0.0]
    for rule in ruleset.rules:
        action = rule.action
        spans.append(rule.cooldown)
        spans.append(action.stabilization_window)
        spans.extend(limit.period for limit in action.rate_limits)
    return max(spans)


def last_cycle_document(ruleset: RuleSet, report: TickReport) -> dict[str, Any]:
    """What each rule target saw and decided in this cycle, as JSON-ready data.

    The audit holds only changes; this holds the why of everything else (below threshold,
    pending, in cooldown, at a bound, blocked, no data), replaced every cycle.
    """
    rules = {rule.name: rule for rule in ruleset.rules}
    decisions = {
        (decision.rule, decision.labels, decision.knob.id): (decision, outcome)
        for decision, outcome in report.decisions
    }
    targets = []
    for evaluation in report.evaluations:
        rule = rules.get(evaluation.rule)
        if rule is None:
            continue
        if evaluation.knob is not None:
            seen = [(evaluation.labels, evaluation.knob.id)]
        elif evaluation.no_data is not None:
            # A query that failed as a whole names no series, hence no knob: report it on the
            # knobs this rule's targets had before.
            seen = [
                (labels, target.knob)
                for (name, labels), target in report.state.targets.items()
                if name == rule.name and target.knob is not None
            ]
        else:
            seen = []
        for labels, knob in seen:
            state = report.state.target(rule.name, labels)
            entry: dict[str, Any] = {
                "rule": rule.name,
                "labels": dict(labels),
                "knob": knob,
                "metric": rule.metric,
                "phase": evaluation.phase.value,
                "value": evaluation.value,
                "no_data": evaluation.no_data,
                "comparison": rule.condition.comparison.value,
                "threshold": rule.condition.threshold,
                "for_seconds": rule.for_,
                "cooldown_seconds": rule.cooldown,
                "active_since": state.active_since,
                "last_action": state.last_action,
            }
            found = decisions.get((rule.name, labels, knob))
            if found is not None:
                decision, outcome = found
                entry |= {
                    "verdict": decision.verdict.value,
                    "reason": decision.reason,
                    "outcome": outcome.status.value,
                    "detail": outcome.detail,
                }
            targets.append(entry)
    return {"time": report.now, "targets": targets}
