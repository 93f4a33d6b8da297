"""Leader election through a coordination.k8s.io/v1 Lease, as client-go's leaderelection does it.

Every replica tries, each `retry_period`, to acquire or renew one Lease. A replica takes the
Lease over only when its holder has not renewed it for `leaseDurationSeconds`, measured on the
taker's own clock from when the taker first saw that record (so clocks need not agree, only
run at about the same rate). Writes carry the resourceVersion read, so two replicas racing for
a free Lease cannot both win: the loser gets a 409.

The safety rule: the leader may act only until `renew_deadline` after the *start* of its last
successful renewal. Any other replica can see that renewal only after it was sent, and must then
wait a further `lease_duration` before taking over; with `renew_deadline < lease_duration`, a
leader that cannot renew stops acting before anyone else can start, with the difference left
for an action already in flight and for clock-rate drift.

The decision logic (`plan`, `after_write`, `may_act`) is pure: times are passed in, so it is
tested without sleeping. `LeaseElector` is the thin shell that does the API calls.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from autotuner.runtime.logging import log_event

_LOG = logging.getLogger(__name__)

# client-go's JitterFactor: each wait is the retry period plus up to this many times it.
JITTER_FACTOR = 1.2


@dataclass(frozen=True, slots=True)
class ElectionTiming:
    """client-go's defaults: 15 s lease, 10 s renew deadline, 2 s retry period."""

    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        if not self.lease_duration > self.renew_deadline:
            raise ValueError(
                f"lease_duration ({self.lease_duration:g}s) must be greater than renew_deadline "
                f"({self.renew_deadline:g}s), or a leader could act after being replaced"
            )
        if not self.renew_deadline > JITTER_FACTOR * self.retry_period:
            raise ValueError(
                f"renew_deadline ({self.renew_deadline:g}s) must be greater than "
                f"{JITTER_FACTOR:g} x retry_period ({self.retry_period:g}s), or one slow retry "
                "would lose the lease"
            )
        if not self.retry_period > 0:
            raise ValueError(f"retry_period must be positive, got {self.retry_period:g}s")
        if self.lease_duration != int(self.lease_duration) or self.lease_duration < 1:
            raise ValueError(
                f"lease_duration must be a whole number of seconds (a Lease stores seconds), "
                f"got {self.lease_duration:g}"
            )


@dataclass(frozen=True, slots=True)
class LeaseRecord:
    """The election fields of a Lease's spec."""

    holder: str
    duration_seconds: int
    acquire_time: datetime | None
    renew_time: datetime | None
    transitions: int


class WriteKind(StrEnum):
    CREATE = "create"
    REPLACE = "replace"


@dataclass(frozen=True, slots=True)
class LeaseWrite:
    """A write to attempt: the record, and the resourceVersion it must replace (if any)."""

    kind: WriteKind
    record: LeaseRecord
    resource_version: str = ""


@dataclass(frozen=True, slots=True)
class ElectionState:
    """What one replica knows. Times are its own monotonic clock's seconds."""

    # The Lease as last seen, its resourceVersion, and when this replica first saw it so.
    observed: LeaseRecord | None = None
    observed_version: str = ""
    observed_at: float | None = None
    # Start of this replica's last successful acquire or renew; None when it does not lead.
    renewed_at: float | None = None


def may_act(state: ElectionState, timing: ElectionTiming, now: float) -> bool:
    """True while no other replica can have taken the lease over (see the module's note)."""
    return state.renewed_at is not None and now < state.renewed_at + timing.renew_deadline


def observe(
    state: ElectionState, record: LeaseRecord | None, version: str, now: float
) -> ElectionState:
    """Notes the Lease as read now; the takeover clock restarts only when the record changed."""
    if record is None:
        return replace(state, observed=None, observed_version="", observed_at=None)
    if record != state.observed or state.observed_at is None:
        return replace(state, observed=record, observed_version=version, observed_at=now)
    return replace(state, observed_version=version)


def plan(
    state: ElectionState,
    identity: str,
    timing: ElectionTiming,
    now: float,
    wall_now: datetime,
) -> LeaseWrite | None:
    """The write that acquires or renews the lease for `identity`, or None to wait.

    `state` must already hold the Lease as just read (see `observe`).
    """
    current = state.observed
    if current is None:
        return LeaseWrite(
            WriteKind.CREATE,
            LeaseRecord(identity, int(timing.lease_duration), wall_now, wall_now, 0),
        )
    held_by_me = current.holder == identity
    if current.holder and not held_by_me:
        duration = (
            current.duration_seconds if current.duration_seconds > 0 else timing.lease_duration
        )
        assert state.observed_at is not None, "an observed record always has its observation time"
        if now < state.observed_at + duration:
            return None
    record = LeaseRecord(
        holder=identity,
        duration_seconds=int(timing.lease_duration),
        acquire_time=current.acquire_time if held_by_me else wall_now,
        renew_time=wall_now,
        transitions=current.transitions if held_by_me else current.transitions + 1,
    )
    return LeaseWrite(WriteKind.REPLACE, record, state.observed_version)


def after_write(
    state: ElectionState, write: LeaseWrite, new_version: str | None, started_at: float, now: float
) -> ElectionState:
    """The state after a write that started at `started_at`: accepted when `new_version` is set."""
    if new_version is None:
        return replace(state, renewed_at=None)
    return ElectionState(
        observed=write.record, observed_version=new_version, observed_at=now, renewed_at=started_at
    )


def release_record(current: LeaseRecord, wall_now: datetime) -> LeaseRecord:
    """What a leader writes when it steps down: no holder, so another may take over at once."""
    return LeaseRecord("", 1, wall_now, wall_now, current.transitions)


# The shell --------------------------------------------------------------------------------------


def _record_of(lease: Any) -> LeaseRecord:
    spec = lease.spec
    if spec is None:
        return LeaseRecord("", 0, None, None, 0)
    return LeaseRecord(
        holder=str(spec.holder_identity or ""),
        duration_seconds=int(spec.lease_duration_seconds or 0),
        acquire_time=spec.acquire_time,
        renew_time=spec.renew_time,
        transitions=int(spec.lease_transitions or 0),
    )


def _version_of(obj: Any) -> str:
    metadata = obj.metadata
    return str(metadata.resource_version or "") if metadata is not None else ""


def _lease_body(namespace: str, name: str, write: LeaseWrite) -> Any:
    record = write.record
    return client.V1Lease(
        api_version="coordination.k8s.io/v1",
        kind="Lease",
        metadata=client.V1ObjectMeta(
            name=name, namespace=namespace, resource_version=write.resource_version or None
        ),
        spec=client.V1LeaseSpec(
            holder_identity=record.holder or None,
            lease_duration_seconds=record.duration_seconds,
            acquire_time=record.acquire_time,
            renew_time=record.renew_time,
            lease_transitions=record.transitions,
        ),
    )


def _explain(error: Exception) -> str:
    if isinstance(error, ApiException):
        reason = {403: "forbidden (grant get, create and update on leases)", 409: "conflict"}.get(
            int(error.status or 0), f"HTTP {error.status}"
        )
        return f"{reason}: {error.reason}"
    return f"{type(error).__name__}: {error}"


class LeaseElector:
    """Implements the controller's Leadership port with a Lease; `start()` runs the election."""

    def __init__(
        self,
        api_client: client.ApiClient,
        *,
        namespace: str,
        name: str,
        identity: str,
        timing: ElectionTiming | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        jitter: Callable[[], float] | None = None,
    ) -> None:
        if not identity:
            raise ValueError("leader election needs a non-empty identity (the pod's name, say)")
        self._api = client.CoordinationV1Api(api_client)
        self._namespace = namespace
        self._name = name
        self.identity = identity
        self.timing = timing or ElectionTiming()
        self._monotonic = monotonic
        self._wall_clock = wall_clock
        self._jitter = jitter or _random_jitter
        # A step's two requests fit within the renew deadline, so one hung call cannot stall
        # the loop past it; acting is time-bounded by `may_act` regardless.
        self._request_timeout = self.timing.renew_deadline / 2
        self._lock = threading.Lock()
        self._state = ElectionState()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def state(self) -> ElectionState:
        with self._lock:
            return self._state

    def may_act(self) -> bool:
        # Once released, never again: a renewal still in flight must not revive leadership.
        return not self._stop.is_set() and may_act(self.state, self.timing, self._monotonic())

    def step(self) -> bool:
        """One attempt to acquire or renew; True if this replica may act afterwards."""
        was_leading = self.may_act()
        started = self._monotonic()
        try:
            self._attempt(started)
        except Exception as error:
            # An election step never raises: the next one retries, and a leader that keeps
            # failing stops acting when its renew deadline passes.
            log_event(
                _LOG,
                "leadership.attempt_failed",
                logging.WARNING,
                lease=f"{self._namespace}/{self._name}",
                error=_explain(error),
            )
        leading = self.may_act()
        if leading != was_leading:
            log_event(
                _LOG,
                "leadership.acquired" if leading else "leadership.lost",
                lease=f"{self._namespace}/{self._name}",
                identity=self.identity,
            )
        return leading

    def _attempt(self, started: float) -> None:
        try:
            lease = self._api.read_namespaced_lease(
                self._name, self._namespace, _request_timeout=self._request_timeout
            )
            record, version = _record_of(lease), _version_of(lease)
        except ApiException as error:
            if error.status != 404:
                raise
            record, version = None, ""
        now = self._monotonic()
        with self._lock:
            self._state = observe(self._state, record, version, now)
            write = plan(self._state, self.identity, self.timing, now, self._wall_clock())
        if write is None:
            return
        body = _lease_body(self._namespace, self._name, write)
        new_version: str | None
        try:
            if write.kind is WriteKind.CREATE:
                written = self._api.create_namespaced_lease(
                    self._namespace, body, _request_timeout=self._request_timeout
                )
            else:
                written = self._api.replace_namespaced_lease(
                    self._name, self._namespace, body, _request_timeout=self._request_timeout
                )
            new_version = _version_of(written)
        except ApiException as error:
            if error.status != 409:
                raise
            new_version = None  # another replica wrote first; it leads, we watch
        with self._lock:
            self._state = after_write(self._state, write, new_version, started, self._monotonic())

    def run(self) -> None:
        """Try every retry period until `release()`; as client-go, a leader renews at a steady
        pace while the others spread their attempts with jitter."""
        while not self._stop.is_set():
            leading = self.step()
            self._stop.wait(self.timing.retry_period * (1.0 if leading else self._jitter()))

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self.run, name="leader-election", daemon=True)
            self._thread.start()

    def release(self) -> None:
        """Stop acting at once, stop the election, and hand the lease back if still ours."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self._request_timeout * 3)
            self._thread = None
        with self._lock:
            was_leader = self._state.renewed_at is not None
            self._state = replace(self._state, renewed_at=None)
        if not was_leader:
            return
        try:
            lease = self._api.read_namespaced_lease(
                self._name, self._namespace, _request_timeout=self._request_timeout
            )
            current = _record_of(lease)
            if current.holder != self.identity:
                return
            write = LeaseWrite(
                WriteKind.REPLACE,
                release_record(current, self._wall_clock()),
                _version_of(lease),
            )
            self._api.replace_namespaced_lease(
                self._name,
                self._namespace,
                _lease_body(self._namespace, self._name, write),
                _request_timeout=self._request_timeout,
            )
            log_event(_LOG, "leadership.released", lease=f"{self._namespace}/{self._name}")
        except Exception as error:  # the lease then simply expires
            log_event(
                _LOG,
                "leadership.release_failed",
                logging.WARNING,
                lease=f"{self._namespace}/{self._name}",
                error=_explain(error),
            )


def _random_jitter() -> float:
    """client-go's wait.Jitter: the period times a factor between 1 and 1 + JITTER_FACTOR."""
    return 1.0 + random.random() * JITTER_FACTOR
