"""What every actuator refuses to write, and how a write that broke is reported, in one place.

The Kubernetes, Redis and simulated actuators all apply a decision only when it is a change
with finite current and final values (whole and not negative for replicas); the contract
suites hold each of them to it.
"""

from __future__ import annotations

from collections.abc import Mapping

from autotuner.core.model import NO_EXTRA, Decision, Outcome, OutcomeStatus, Verdict, usable


def writable(decision: Decision, where: str) -> Outcome | tuple[float, float]:
    """The decision's (current, final), or the outcome that says why it must not be written.

    `where` names the knob as the actuator describes it; a refusal carries the error kind
    `invalid` so callers can tell it from a failure of the backend.
    """
    invalid = {"error": "invalid", "target": decision.knob.id}
    if decision.verdict is not Verdict.CHANGE:
        return Outcome(
            OutcomeStatus.SKIPPED,
            f"verdict is {decision.verdict.value}: nothing to change on {where}",
            old=decision.current,
        )
    if decision.final is None or not usable(decision.final):
        return Outcome(
            OutcomeStatus.FAILED,
            f"refusing to change {where} to {decision.final!r}: not a finite number",
            old=decision.current,
            extra=invalid,
        )
    if decision.current is None or not usable(decision.current):
        return Outcome(
            OutcomeStatus.FAILED,
            f"refusing to change {where} blindly: the decision has no current value to "
            "compare against",
            extra=invalid,
        )
    if decision.knob.is_workload:
        for label, number in (("current", decision.current), ("final", decision.final)):
            if number < 0 or not float(number).is_integer():
                return Outcome(
                    OutcomeStatus.FAILED,
                    f"refusing to scale {where}: the decision's {label} replica count "
                    f"{number!r} is not a whole number of zero or more",
                    old=decision.current,
                    extra=invalid,
                )
    return decision.current, decision.final


def failed_unexpectedly(
    decision: Decision, doing: str, error: Exception, extra: Mapping[str, str] = NO_EXTRA
) -> Outcome:
    """The outcome of a write that raised what its adapter did not foresee.

    Actuators never raise: an unforeseen error is data too, and fails only its own decision.
    """
    return Outcome(
        OutcomeStatus.FAILED,
        f"{doing} failed unexpectedly: {error!r}",
        old=decision.current,
        extra=extra,
    )
