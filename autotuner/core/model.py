"""The data the decision core speaks: readings in, knob values in, decisions out.

Everything here is immutable (a frozen dataclass, a named tuple or a plain alias), so it can be
compared, hashed, logged and serialised without surprises. The records made for every series
or decision of every tick (`Sample`, `Series`, `KnobValue`, `Evaluation`, `PolicyStep`,
`Decision`, `Outcome`) are named tuples: they build several times faster than frozen
dataclasses, which set each field through `object.__setattr__`.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import NamedTuple

# A series' label set as sorted (name, value) pairs: hashable, ordered, comparable.
Labels = tuple[tuple[str, str], ...]


def labels_of(mapping: Mapping[str, str]) -> Labels:
    return tuple(sorted(mapping.items()))


def format_labels(labels: Labels) -> str:
    # Values quoted and escaped as JSON strings, so a label value cannot break a log line.
    return "{" + ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in labels) + "}"


class Sample(NamedTuple):
    """One series of an instant-query answer."""

    labels: Labels
    value: float
    timestamp: float


class Series(NamedTuple):
    """A metric source's answer: zero or more labelled samples."""

    samples: tuple[Sample, ...]


@dataclass(frozen=True, slots=True)
class NoData:
    """A metric source could not give a usable answer; `reason` says why in plain words."""

    reason: str


MetricAnswer = Series | NoData


@dataclass(frozen=True, slots=True)
class MetricQuery:
    """A named metric as a rule file declares it."""

    name: str
    expr: str


def usable(value: float) -> bool:
    return math.isfinite(value)


class KnobKind(StrEnum):
    DEPLOYMENT = "Deployment"
    STATEFULSET = "StatefulSet"
    CONFIG_KEY = "ConfigKey"


@dataclass(frozen=True, slots=True, eq=False)
class KnobRef:
    """A value the controller may change: a workload's replicas or a numeric config key.

    For workloads `namespace` and `name` identify the object; for config keys `name` is the
    key and `field` the hash field (empty for a plain string key).
    """

    kind: KnobKind
    name: str
    namespace: str = ""
    field: str = ""
    # Derived once: ids key the engine's state and are read on every tick.
    id: str = dataclasses.field(init=False, repr=False, compare=False, default="")

    def __post_init__(self) -> None:
        if self.kind is KnobKind.CONFIG_KEY:
            knob_id = f"key/{self.name}" + (f"#{self.field}" if self.field else "")
        else:
            knob_id = f"{self.kind.value.lower()}/{self.namespace}/{self.name}"
        object.__setattr__(self, "id", knob_id)

    def __hash__(self) -> int:
        # Strings cache their hash; knobs key sets and dicts many times per tick.
        return hash(self.id)

    # Equality and order written out rather than generated, so that they compile with the
    # module: dict lookups compare knobs on every tick.
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, KnobRef):
            return NotImplemented
        return self.sort_key == other.sort_key

    def __lt__(self, other: KnobRef) -> bool:
        return self.sort_key < other.sort_key

    @property
    def sort_key(self) -> tuple[KnobKind, str, str, str]:
        return (self.kind, self.name, self.namespace, self.field)

    @property
    def is_workload(self) -> bool:
        return self.kind is not KnobKind.CONFIG_KEY

    @staticmethod
    def parse(text: str) -> KnobRef:
        """The inverse of `id`."""
        head, _, rest = text.partition("/")
        if head == "key" and rest:
            name, _, fld = rest.partition("#")
            return KnobRef(KnobKind.CONFIG_KEY, name, field=fld)
        kinds = {k.value.lower(): k for k in KnobKind if k is not KnobKind.CONFIG_KEY}
        namespace, _, name = rest.partition("/")
        if head in kinds and namespace and name:
            return KnobRef(kinds[head], name, namespace)
        raise ValueError(
            f"not a knob reference: {text!r} (expected deployment/NS/NAME, "
            "statefulset/NS/NAME or key/NAME[#FIELD])"
        )


class KnobValue(NamedTuple):
    """The current value of a knob as an actuator read it."""

    value: float


@dataclass(frozen=True, slots=True)
class KnobUnreadable:
    """An actuator could not read a knob; the engine will not act on it."""

    reason: str
    # The target must be left alone (paused, owned by another autoscaler), not merely retried.
    skip: bool = False
    # The key or object does not exist; a rule that declares a default may start from it.
    missing: bool = False


KnobReading = KnobValue | KnobUnreadable


class Phase(StrEnum):
    """A rule target's state, as Prometheus names an alert's."""

    INACTIVE = "inactive"
    PENDING = "pending"
    FIRING = "firing"


class Direction(StrEnum):
    UP = "up"
    DOWN = "down"


class Verdict(StrEnum):
    """What the engine decided for one firing target on one knob."""

    CHANGE = "change"  # a new value is to be written
    HOLD = "hold"  # firing, but policies left nothing to change
    BLOCKED = "blocked"  # firing, but the engine refused to act (no data, unreadable knob)


class PolicyStep(NamedTuple):
    """One policy's effect on a proposed value, in the order the engine applied them."""

    policy: str
    before: float
    after: float
    note: str = ""

    @property
    def limited(self) -> bool:
        return self.after != self.before


class Decision(NamedTuple):
    """What the engine decided for one rule target on one knob at one tick, with the reason."""

    time: float
    rule: str
    labels: Labels
    knob: KnobRef
    verdict: Verdict
    phase: Phase
    metric: str
    value: float | None
    threshold: float
    current: float | None
    proposed: float | None
    final: float | None
    steps: tuple[PolicyStep, ...] = ()
    reason: str = ""
    dry_run: bool = False
    # `current` is the rule's declared default because the config key did not exist yet, so a
    # compare-and-set must expect the key to be absent.
    from_default: bool = False

    @property
    def limited_by(self) -> str | None:
        """The last policy that changed the proposal, if any."""
        limiting = [s.policy for s in self.steps if s.limited]
        return limiting[-1] if limiting else None

    @property
    def direction(self) -> Direction | None:
        if self.current is None or self.final is None or self.final == self.current:
            return None
        return Direction.UP if self.final > self.current else Direction.DOWN


class Evaluation(NamedTuple):
    """One rule target's condition at one tick (kept small: there are many per tick)."""

    rule: str
    labels: Labels
    phase: Phase
    value: float | None
    no_data: str | None = None
    knob: KnobRef | None = None


# An outcome's `extra` when it has none: one shared mapping, read-only so it stays empty.
NO_EXTRA: Mapping[str, str] = MappingProxyType({})


class OutcomeStatus(StrEnum):
    APPLIED = "applied"
    DRY_RUN = "dry_run"
    SKIPPED = "skipped"
    FAILED = "failed"
    # The write was sent and no answer came: it may have taken effect. Counted as applied
    # (the cooldown starts), and the next cycle reads the knob again before acting on it.
    UNCERTAIN = "uncertain"


class Outcome(NamedTuple):
    """What happened when a decision was carried out. Adapters return these, never raise."""

    status: OutcomeStatus
    detail: str = ""
    old: float | None = None
    new: float | None = None
    extra: Mapping[str, str] = NO_EXTRA

    @property
    def changed(self) -> bool:
        return self.status is OutcomeStatus.APPLIED
