"""The decision engine: pure functions from (time, readings, knob values, state) to decisions.

No clock, no I/O. The daemon, the simulator and rule tests all call it through `tick`:
1. `knobs_to_read` says which knob values the tick must read for these metric answers;
2. `evaluate` runs every rule target's state machine and the policies, and returns decisions
   with their reasons and the new state;
3. `record_outcomes` folds what actually happened (applied, dry run, failed) into the state,
   so cooldowns and rate limits count only real changes.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from operator import attrgetter
from typing import NamedTuple

from autotuner.core import objectives, policies
from autotuner.core.learn import capacity
from autotuner.core.learn.capacity import CapacityParameters, CapacityState, Recommendation
from autotuner.core.model import (
    Decision,
    Direction,
    Evaluation,
    KnobReading,
    KnobRef,
    KnobUnreadable,
    Labels,
    MetricAnswer,
    NoData,
    Outcome,
    OutcomeStatus,
    Phase,
    PolicyStep,
    Series,
    Verdict,
    format_labels,
    usable,
)
from autotuner.core.rules import Budget, Comparison, Rule, RuleSet
from autotuner.core.state import (
    INITIAL_TARGET,
    EngineState,
    KnobState,
    TargetKey,
    TargetState,
    TimedValues,
    with_recommendation,
)


class TickResult(NamedTuple):
    decisions: tuple[Decision, ...]
    evaluations: tuple[Evaluation, ...]
    state: EngineState


class _Proposal(NamedTuple):
    """A firing target's wish for its knob, after the per-rule policies."""

    rule: Rule
    labels: Labels
    knob: KnobRef
    value: float  # the metric value
    current: float
    proposed: float
    bounded: float  # after bounds: what is recorded for stabilization windows
    after_rule: float
    steps: tuple[PolicyStep, ...]
    from_default: bool

    @property
    def order(self) -> tuple[float, str, Labels]:
        # The proposal asking for more capacity first; ties broken by rule name, then labels.
        return (-self.after_rule, self.rule.name, self.labels)


def _answer(answers: Mapping[str, MetricAnswer], metric: str) -> MetricAnswer:
    return answers.get(metric) or NoData(f"metric {metric!r} was not fetched")


_ORDER = attrgetter("order")
_NONE_REPEATED: frozenset[Labels] = frozenset()


def knobs_to_read(ruleset: RuleSet, answers: Mapping[str, MetricAnswer]) -> tuple[KnobRef, ...]:
    """Every knob whose current value `evaluate` may need for these answers, in id order."""
    knobs: dict[str, KnobRef] = {}
    for rule in ruleset.active_rules:
        answer = answers.get(rule.metric)
        if not isinstance(answer, Series):
            continue
        knob_for = rule.action.knob.knob_for
        for sample in answer.samples:
            knob = knob_for(sample.labels)
            if not isinstance(knob, str):
                knobs[knob.id] = knob
    for budget in ruleset.budgets:
        for knob in budget.knobs:
            knobs[knob.id] = knob
    return tuple(knobs[knob_id] for knob_id in sorted(knobs))


def _describe(rule: Rule, value: float | None) -> str:
    condition = rule.condition
    if value is None:
        return f"{rule.metric} has no data"
    shown = policies.fmt(value)
    above = condition.comparison is Comparison.ABOVE
    sign = ">" if above else "<"
    if condition.starts(value):
        return f"{rule.metric} {shown} {sign} {condition.threshold:g}"
    # Firing inside the hysteresis band: past the clear threshold, not the firing one.
    side = "above" if above else "below"
    return (
        f"{rule.metric} {shown} is still {side} the clear threshold "
        f"{condition.clear:g} (fired {side} {condition.threshold:g})"
    )


class _Evaluator:
    """One tick's work; the public entry point is `evaluate`."""

    def __init__(
        self,
        now: float,
        ruleset: RuleSet,
        readings: Mapping[KnobRef, KnobReading],
        state: EngineState,
        dry_run: bool,
        answers: Mapping[str, MetricAnswer],
    ) -> None:
        self.now = now
        self.answers = answers
        self.ruleset = ruleset
        self.readings = readings
        self.state = state
        self.dry_run = dry_run
        self.targets: dict[TargetKey, TargetState] = {}
        self.evaluations: list[Evaluation] = []
        self.decisions: list[Decision] = []
        self.proposals: dict[KnobRef, list[_Proposal]] = defaultdict(list)
        # Knob ids, with a rule whose input is missing: none of these knobs may be lowered.
        self.starved_knobs: dict[str, str] = {}
        # Knobs under a stabilization window, by id: each records a recommendation every tick.
        self.windowed_knobs: dict[str, KnobRef] = {}
        self.rules_by_name = ruleset.rules_by_name
        self.rule_knobs: dict[str, tuple[str, ...]] = {
            name: knobs for name, knobs in state.rule_knobs.items() if name in ruleset.rules_by_name
        }
        # What objective rules' targets have learned: kept through outages, dropped with the rule.
        self.capacity: dict[TargetKey, CapacityState] = {
            key: model for key, model in state.capacity.items() if key[0] in self.rules_by_name
        }
        # Each objective target's recommendation, put in words for its decision's reason.
        self.explanations: dict[TargetKey, tuple[Recommendation, CapacityParameters]] = {}

    # -- per target -------------------------------------------------------------------------

    def run_rule(self, rule: Rule, answer: MetricAnswer, known: Sequence[TargetKey]) -> None:
        if isinstance(answer, Series) and not answer.samples:
            answer = NoData("the query returned no series")
        if isinstance(answer, NoData):
            # The knobs this rule's series named when it last had data: none may be lowered.
            for knob_id in self.state.rule_knobs.get(rule.name, ()):
                self.starved_knobs.setdefault(knob_id, rule.name)
            if not known:
                template = rule.action.knob
                static = template.render({}) if template.is_static else None
                if static is not None:
                    self.starved_knobs.setdefault(static.id, rule.name)
                self.evaluations.append(
                    Evaluation(rule.name, (), Phase.INACTIVE, None, answer.reason, static)
                )
            for _, labels in known:
                self.no_data(rule, labels, answer.reason)
            return
        samples = answer.samples
        seen = {sample.labels for sample in samples}
        repeated: frozenset[Labels] = (
            _NONE_REPEATED
            if len(seen) == len(samples)
            else frozenset(
                labels for labels, n in Counter(s.labels for s in samples).items() if n > 1
            )
        )
        named: set[str] = set()
        duplicates: set[Labels] = set()
        knob_for = rule.action.knob.knob_for
        now = self.now
        max_age = self.ruleset.max_sample_age
        # Hoisted for the common case below: most targets are inactive and stay so.
        name = rule.name
        starts = rule.condition.starts
        state_of = self.state.targets.get
        windowed = self.windowed_knobs if rule.action.stabilization_window > 0 else None
        evaluations = self.evaluations
        for labels, value, timestamp in samples:
            knob = knob_for(labels)
            if not isinstance(knob, str):
                named.add(knob.id)
                if (
                    not repeated
                    and math.isfinite(value)
                    and now - timestamp <= max_age
                    and state_of((name, labels)) is None
                    and not starts(value)
                ):
                    if windowed is not None:
                        windowed[knob.id] = knob
                    evaluations.append(Evaluation(name, labels, Phase.INACTIVE, value, None, knob))
                    continue
            if labels in repeated:
                # Two series with one label set: neither can be trusted, so neither acts.
                if labels not in duplicates:
                    duplicates.add(labels)
                    self.no_data(rule, labels, f"duplicate series {format_labels(labels)}")
                continue
            if not usable(value):
                self.no_data(rule, labels, f"the value is {value}")
            elif now - timestamp > max_age:
                age = policies.fmt(round(now - timestamp, 3))
                self.no_data(rule, labels, f"the sample is stale ({age}s old)")
            else:
                self.observe(rule, labels, value, knob)
        self.rule_knobs[rule.name] = tuple(sorted(named))
        # A series gone from an answer that has others resolves, as in Prometheus.
        for _, labels in known:
            if labels not in seen:
                self.no_data(rule, labels, "the series is absent from the answer", resolve=True)

    def run_objective(self, rule: Rule, answer: MetricAnswer, known: Sequence[TargetKey]) -> None:
        """An objective rule: every target is in control; its capacity model proposes."""
        objective = rule.objective
        assert objective is not None
        if isinstance(answer, NoData) or not answer.samples:
            self.run_rule(rule, answer, known)
            return
        samples = answer.samples
        repeated = (
            _NONE_REPEATED
            if len(samples) == 1
            else frozenset(
                label for label, n in Counter(s.labels for s in samples).items() if n > 1
            )
        )
        knob_for = rule.action.knob.knob_for
        knobs: dict[Labels, KnobRef] = {}
        current: dict[Labels, float] = {}
        for sample in answer.samples:
            knob = knob_for(sample.labels)
            if isinstance(knob, str):
                continue
            knobs[sample.labels] = knob
            reading = self.readings.get(knob)
            if reading is not None and not isinstance(reading, KnobUnreadable):
                current[sample.labels] = reading.value
        parameters = objectives.parameters(objective)
        self.rule_knobs[rule.name] = tuple(sorted(knob.id for knob in knobs.values()))
        seen: set[Labels] = set()
        for inputs in objectives.join(
            rule,
            objective,
            answer,
            self.answers,
            current,
            self.now,
            self.ruleset.max_sample_age,
        ):
            labels = inputs.labels
            seen.add(labels)
            key = (rule.name, labels)
            if labels in repeated:
                self.no_data(rule, labels, f"duplicate series {format_labels(labels)}")
                continue
            if inputs.no_data is not None or inputs.latency is None:
                self.no_data(rule, labels, inputs.no_data or "no value")
                continue
            chosen = knobs.get(labels)
            previous = self.state.targets.get(key, INITIAL_TARGET)
            if chosen is None:
                why = knob_for(labels)
                self.keep(key, previous)
                self.evaluations.append(
                    Evaluation(
                        rule.name,
                        labels,
                        previous.phase,
                        inputs.latency,
                        f"cannot name the knob: {why}",
                    )
                )
                continue
            if rule.action.stabilization_window > 0:
                self.windowed_knobs[chosen.id] = chosen
            since = previous.active_since if previous.active_since is not None else self.now
            target = TargetState(Phase.FIRING, since, self.now, previous.last_action, chosen.id)
            self.keep(key, target)
            self.evaluations.append(
                Evaluation(rule.name, labels, Phase.FIRING, inputs.latency, None, chosen)
            )
            start = self.current_value(rule, labels, chosen, inputs.latency)
            if start is None or inputs.observation is None:
                continue
            model = capacity.observe(
                self.capacity.get(key, _NEW_MODEL), self.now, inputs.observation, parameters
            )
            self.capacity[key] = model
            advice = capacity.recommend(model, self.now, inputs.observation, parameters)
            self.explanations[key] = (advice, parameters)
            current_value, from_default = start
            if advice.replicas == current_value and not from_default:
                # Content with the count it has, as most ticks are: no policy can change
                # that, and the stabilization window records the current value anyway.
                self.decisions.append(
                    self.decision(
                        rule,
                        labels,
                        chosen,
                        Verdict.HOLD,
                        inputs.latency,
                        current_value,
                        current_value,
                        current_value,
                        (),
                        f"{chosen.id} stays {current_value:g}",
                    )
                )
                continue
            self.shape(
                rule,
                labels,
                chosen,
                inputs.latency,
                target,
                current_value,
                advice.replicas,
                from_default,
            )
        for _, labels in known:
            if labels not in seen:
                self.no_data(rule, labels, "the series is absent from the answer", resolve=True)

    def keep(self, key: TargetKey, target: TargetState) -> None:
        """Keep a target's state only while it carries something worth remembering."""
        in_cooldown = (
            target.last_action is not None
            and self.now - target.last_action < self.rules_by_name[key[0]].cooldown
        )
        if target.phase is not Phase.INACTIVE or in_cooldown:
            self.targets[key] = target

    def no_data(self, rule: Rule, labels: Labels, reason: str, resolve: bool = False) -> None:
        """Missing data never acts and never counts toward `for:`.

        A pending target starts over. A firing target holds through an outage of its metric,
        but resolves (after keep_firing_for) when its own series is gone from the answer.
        """
        key = (rule.name, labels)
        previous = self.state.targets.get(key, INITIAL_TARGET)
        knob = self.knob_of(rule, labels, previous)
        kept = (
            previous.last_true is not None and self.now - previous.last_true < rule.keep_firing_for
        )
        if previous.phase is Phase.PENDING or (
            previous.phase is Phase.FIRING and resolve and not kept
        ):
            previous = previous._replace(phase=Phase.INACTIVE, active_since=None)
        self.keep(key, previous)
        self.evaluations.append(Evaluation(rule.name, labels, previous.phase, None, reason, knob))
        if knob is None:
            return
        self.starved_knobs.setdefault(knob.id, rule.name)
        if previous.phase is Phase.FIRING:
            self.decisions.append(
                self.decision(
                    rule,
                    labels,
                    knob,
                    Verdict.BLOCKED,
                    None,
                    None,
                    None,
                    None,
                    (),
                    f"{reason}; nothing is done on missing data",
                )
            )

    def knob_of(self, rule: Rule, labels: Labels, previous: TargetState) -> KnobRef | None:
        knob = rule.action.knob.knob_for(labels)
        if isinstance(knob, str):
            return KnobRef.parse(previous.knob) if previous.knob else None
        return knob

    def observe(self, rule: Rule, labels: Labels, value: float, knob: KnobRef | str) -> None:
        key = (rule.name, labels)
        previous = self.state.targets.get(key, INITIAL_TARGET)
        if isinstance(knob, str):
            self.keep(key, previous)
            self.evaluations.append(
                Evaluation(
                    rule.name, labels, previous.phase, value, f"cannot name the knob: {knob}"
                )
            )
            return
        if rule.action.stabilization_window > 0:
            self.windowed_knobs[knob.id] = knob
        target, acting = self.step(rule, previous, value, knob.id)
        if target is not INITIAL_TARGET:
            self.keep(key, target)
        self.evaluations.append(Evaluation(rule.name, labels, target.phase, value, None, knob))
        if acting:
            try:
                self.propose(rule, labels, knob, value, target)
            except ArithmeticError as error:
                # One target's numbers (an overflow, say) must not stop the cycle for the rest.
                why = f"cannot compute a new value for {knob.id}: {error}; nothing is done"
                self.decisions.append(
                    self.decision(
                        rule, labels, knob, Verdict.BLOCKED, value, None, None, None, (), why
                    )
                )

    def step(
        self, rule: Rule, previous: TargetState, value: float, knob: str
    ) -> tuple[TargetState, bool]:
        """The Prometheus alert state machine, with hysteresis and keep_firing_for.

        Allocation-free when nothing changes: most targets stay inactive most of the time.
        """
        condition = rule.condition
        phase = previous.phase
        was_firing = phase is Phase.FIRING
        holds = condition.holds(value) if was_firing else condition.starts(value)
        now = self.now
        if holds:
            since = previous.active_since if phase is not Phase.INACTIVE else None
            since = now if since is None else since
            firing = was_firing or now - since >= rule.for_
            new_phase = Phase.FIRING if firing else Phase.PENDING
            return TargetState(new_phase, since, now, previous.last_action, knob), firing
        if phase is Phase.INACTIVE:
            return previous, False
        if (
            was_firing
            and previous.last_true is not None
            and now - previous.last_true < rule.keep_firing_for
        ):
            # Kept firing, so a relapse acts without a new `for:`; but it does not act now.
            return previous, False
        return TargetState(
            Phase.INACTIVE, None, previous.last_true, previous.last_action, knob
        ), False

    def current_value(
        self, rule: Rule, labels: Labels, knob: KnobRef, value: float
    ) -> tuple[float, bool] | None:
        """The knob's value to start from and whether it is the rule's default; None (and a
        BLOCKED decision) when it cannot be read."""
        action = rule.action
        reading = self.readings.get(knob) or KnobUnreadable("its current value was not read")
        if not isinstance(reading, KnobUnreadable):
            return reading.value, False
        if reading.missing and action.default is not None:
            return action.default, True
        self.decisions.append(
            self.decision(
                rule,
                labels,
                knob,
                Verdict.BLOCKED,
                value,
                None,
                None,
                None,
                (),
                f"cannot act on {knob.id}: {reading.reason}",
            )
        )
        return None

    def propose(
        self, rule: Rule, labels: Labels, knob: KnobRef, value: float, target: TargetState
    ) -> None:
        start = self.current_value(rule, labels, knob, value)
        if start is None:
            return
        current, from_default = start
        action = rule.action
        proposed = action.change.propose(current, value, action.integer)
        self.shape(rule, labels, knob, value, target, current, proposed, from_default)

    def shape(
        self,
        rule: Rule,
        labels: Labels,
        knob: KnobRef,
        value: float,
        target: TargetState,
        current: float,
        proposed: float,
        from_default: bool,
    ) -> None:
        """The per-rule policies on a proposal: bounds, rate limits, stabilization, cooldown."""
        action = rule.action
        direction = action.change.direction or (
            Direction.UP if proposed > current else Direction.DOWN
        )
        steps = [policies.bounds(action, current, proposed, direction)]
        bounded = steps[0].after
        knob_state = self.state.knobs.get(knob.id)
        limited = policies.rate_limit(
            action, current, bounded, direction, knob_state.changes if knob_state else (), self.now
        )
        if limited is not None:
            steps.append(limited)
        stabilized = policies.stabilize(
            action,
            current,
            steps[-1].after,
            direction,
            knob_state.recommendations if knob_state else (),
            self.now,
        )
        if stabilized is not None:
            steps.append(stabilized)
        cooled = policies.cooldown(
            rule.cooldown, target.last_action, current, steps[-1].after, self.now
        )
        if cooled is not None:
            steps.append(cooled)
        self.proposals[knob].append(
            _Proposal(
                rule,
                labels,
                knob,
                value,
                current,
                proposed,
                bounded,
                steps[-1].after,
                tuple(steps),
                from_default,
            )
        )

    # -- per knob ---------------------------------------------------------------------------

    def resolve(self) -> dict[KnobRef, float]:
        """Pick one change per knob, apply the missing-data guard and budgets.

        Returns each knob's recommendation for this tick (for stabilization windows).
        """
        planned: dict[KnobRef, float] = {}
        recommendations: dict[KnobRef, float] = {}
        for knob in sorted(self.proposals):
            proposals = self.proposals[knob]
            ordered = proposals if len(proposals) == 1 else sorted(proposals, key=_ORDER)
            current = ordered[0].current
            ups = [p for p in ordered if p.after_rule > p.current]
            downs = [p for p in ordered if p.after_rule < p.current]
            winner = ups[0] if ups else downs[0] if downs else None
            recommendations[knob] = winner.bounded if winner else max(p.bounded for p in ordered)
            for proposal in ordered:
                if proposal is not winner:
                    steps = proposal.steps
                    if winner is not None and proposal.after_rule != proposal.current:
                        steps += (
                            PolicyStep(
                                "conflict",
                                proposal.after_rule,
                                proposal.current,
                                f"rule {winner.rule.name} asks for {winner.after_rule:g}",
                            ),
                        )
                    self.finish(proposal, steps, proposal.current)
            if winner is None:
                continue
            steps = winner.steps
            final = winner.after_rule
            if final < current and knob.id in self.starved_knobs:
                steps += (
                    PolicyStep(
                        "missing_data",
                        final,
                        current,
                        f"rule {self.starved_knobs[knob.id]} has no data: never scale down",
                    ),
                )
                final = current
            for budget in self.ruleset.budgets:
                if final > current and knob in budget.knobs:
                    step = self.budget_step(budget, knob, current, final, planned)
                    steps += (step,)
                    final = step.after
            planned[knob] = final
            self.finish(winner, steps, final)
        return recommendations

    def budget_step(
        self,
        budget: Budget,
        knob: KnobRef,
        current: float,
        value: float,
        planned: Mapping[KnobRef, float],
    ) -> PolicyStep:
        values: dict[KnobRef, float] = {}
        for member in budget.knobs:
            reading = self.readings.get(member)
            if reading is None or isinstance(reading, KnobUnreadable):
                why = reading.reason if reading else "not read"
                return PolicyStep(
                    "budget",
                    value,
                    current,
                    f"budget {budget.name}: cannot read {member.id} ({why})",
                )
            # A decrease decided this tick frees nothing until it has been applied.
            values[member] = max(reading.value, planned.get(member, reading.value))
        headroom = policies.budget_headroom(budget, knob, values)
        integer_knob = knob.is_workload or float(values[knob]).is_integer()
        cap = math.floor(headroom + 1e-9) if integer_knob else headroom
        limited = max(current, min(value, cap))
        values[knob] = limited
        usage = policies.budget_usage(budget, values)
        return PolicyStep(
            "budget",
            value,
            limited,
            f"budget {budget.name}: {usage:g} of {budget.limit:g} used",
        )

    def finish(self, proposal: _Proposal, steps: tuple[PolicyStep, ...], final: float) -> None:
        verdict = Verdict.CHANGE if final != proposal.current else Verdict.HOLD
        rule = proposal.rule
        if verdict is Verdict.CHANGE:
            why = f"{proposal.knob.id} {proposal.current:g} -> {final:g}"
        else:
            limiting = [s for s in steps if s.limited]
            why = f"{proposal.knob.id} stays {proposal.current:g}" + (
                f": {limiting[-1].policy} ({limiting[-1].note})" if limiting else ""
            )
        self.decisions.append(
            self.decision(
                rule,
                proposal.labels,
                proposal.knob,
                verdict,
                proposal.value,
                proposal.current,
                proposal.proposed,
                final,
                steps,
                why,
                proposal.from_default,
            )
        )

    def decision(
        self,
        rule: Rule,
        labels: Labels,
        knob: KnobRef,
        verdict: Verdict,
        value: float | None,
        current: float | None,
        proposed: float | None,
        final: float | None,
        steps: Iterable[PolicyStep],
        why: str,
        from_default: bool = False,
    ) -> Decision:
        return Decision(
            time=self.now,
            rule=rule.name,
            labels=labels,
            knob=knob,
            verdict=verdict,
            phase=Phase.FIRING,
            metric=rule.metric,
            value=value,
            threshold=rule.condition.threshold,
            current=current,
            proposed=proposed,
            final=final,
            steps=tuple(steps),
            reason=self.reason(rule, labels, value, why, proposed != current),
            dry_run=self.dry_run,
            from_default=from_default,
        )

    def reason(
        self, rule: Rule, labels: Labels, value: float | None, why: str, wished: bool
    ) -> str:
        if rule.objective is None:
            return f"{_describe(rule, value)}: {why}"
        described = objectives.describe(rule, value)
        explained = self.explanations.get((rule.name, labels))
        if explained is None:
            return f"{described}: {why}"
        advice, parameters = explained
        if not wished:
            # Content with the count it has: the short form, every tick of every target.
            return f"{described}; {advice.mode}: needs {advice.replicas:g}: {why}"
        return f"{described}; {capacity.explain(advice, parameters)}: {why}"

    # -- the new state ----------------------------------------------------------------------

    def knob_states(self, recommendations: Mapping[KnobRef, float]) -> dict[str, KnobState]:
        now = self.now
        window_start = now - self.ruleset.longest_window
        rate_start = now - self.ruleset.longest_rate_period
        # Per knob id, (recommendations, changes): the old ones still inside their horizon,
        # then this tick's; each knob's new state is built once, from its final pair.
        history: dict[str, tuple[TimedValues, TimedValues]] = {
            knob_id: (_recent(old.recommendations, window_start), _recent(old.changes, rate_start))
            for knob_id, old in self.state.knobs.items()
        }
        for knob_id, knob in self.windowed_knobs.items():
            if knob in recommendations:
                recommended = recommendations[knob]
            else:
                reading = self.readings.get(knob)
                if reading is None or isinstance(reading, KnobUnreadable):
                    continue
                recommended = reading.value
            kept, changes = history.get(knob_id, _NO_HISTORY)
            history[knob_id] = (with_recommendation(kept, now, recommended), changes)
        # A knob whose inputs are missing keeps its last recommendation alive, so that an
        # outage as long as a window does not empty it and let the first tick back act at once.
        for knob_id in self.starved_knobs.keys() - self.windowed_knobs.keys():
            held = history.get(knob_id)
            if held is not None and held[0]:
                kept, changes = held
                history[knob_id] = (with_recommendation(kept, now, kept[-1][1]), changes)
        knobs: dict[str, KnobState] = {}
        for knob_id, (kept, changes) in history.items():
            old = self.state.knobs.get(knob_id)
            if old is not None and kept is old.recommendations and changes is old.changes:
                knobs[knob_id] = old
            elif kept or changes:
                knobs[knob_id] = KnobState(kept, changes)
        return knobs


_NO_HISTORY: tuple[TimedValues, TimedValues] = ((), ())
_NEW_MODEL = CapacityState()


def _recent(pairs: TimedValues, since: float) -> TimedValues:
    """The pairs after `since`.

    They are in time order and a tick expires one or two, so the head is scanned, not bisected.
    """
    if not pairs or pairs[0][0] > since:
        return pairs
    start = 1
    while start < len(pairs) and pairs[start][0] <= since:
        start += 1
    return pairs[start:]


def evaluate(
    now: float,
    ruleset: RuleSet,
    answers: Mapping[str, MetricAnswer],
    readings: Mapping[KnobRef, KnobReading],
    state: EngineState,
    *,
    dry_run: bool = False,
) -> TickResult:
    """One tick of every enabled rule: decisions with reasons, and the state after them."""
    evaluator = _Evaluator(now, ruleset, readings, state, dry_run, answers)
    known: dict[str, list[TargetKey]] = defaultdict(list)
    # In a fixed order, so that a restored state decides exactly as the one it was saved from.
    for key in sorted(state.targets):
        known[key[0]].append(key)
    for rule in ruleset.active_rules:
        run = evaluator.run_rule if rule.objective is None else evaluator.run_objective
        run(rule, _answer(answers, rule.metric), known.get(rule.name, ()))
    # A disabled rule keeps only its cooldowns, so that enabling it again cannot act at once.
    for key, target in state.targets.items():
        owner = evaluator.rules_by_name.get(key[0])
        if owner is not None and not owner.enabled and target.last_action is not None:
            evaluator.keep(key, target._replace(phase=Phase.INACTIVE, active_since=None))
    recommendations = evaluator.resolve()
    new_state = EngineState(
        targets=evaluator.targets,
        knobs=evaluator.knob_states(recommendations),
        rule_knobs=evaluator.rule_knobs,
        capacity=evaluator.capacity,
    )
    return TickResult(tuple(evaluator.decisions), tuple(evaluator.evaluations), new_state)


def record_outcomes(state: EngineState, results: Iterable[tuple[Decision, Outcome]]) -> EngineState:
    """Fold what was done into the state: cooldowns start and rate limits count real changes.

    A dry run starts the cooldown as if it had applied, so that a dry run reports what the
    controller would do, not the same change every tick.
    """
    done = [
        (decision, outcome)
        for decision, outcome in results
        if decision.verdict is Verdict.CHANGE
        and outcome.status in (OutcomeStatus.APPLIED, OutcomeStatus.DRY_RUN)
    ]
    if not done:
        return state
    targets = dict(state.targets)
    knobs = dict(state.knobs)
    for decision, outcome in done:
        key = (decision.rule, decision.labels)
        target = targets.get(key, INITIAL_TARGET)
        targets[key] = target._replace(last_action=decision.time, knob=decision.knob.id)
        if outcome.status is OutcomeStatus.APPLIED:
            old = outcome.old if outcome.old is not None else decision.current
            new = outcome.new if outcome.new is not None else decision.final
            if old is not None and new is not None:
                knob_state = knobs.get(decision.knob.id, KnobState())
                knobs[decision.knob.id] = knob_state._replace(
                    changes=(*knob_state.changes, (decision.time, new - old))
                )
    return EngineState(
        targets=targets, knobs=knobs, rule_knobs=state.rule_knobs, capacity=state.capacity
    )
