"""Leader election through a Lease: the pure decision logic with numbers, then replicas that
talk to tests/kube_api through the official client on a controlled clock (no sleeping)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kubernetes import client

from autotuner.runtime.leader import (
    ElectionState,
    ElectionTiming,
    LeaseElector,
    LeaseRecord,
    WriteKind,
    after_write,
    may_act,
    observe,
    plan,
)
from tests.kube_api import objects
from tests.kube_api.server import FakeKubeApi, Fault

pytestmark = pytest.mark.integration

TIMING = ElectionTiming(lease_duration=15, renew_deadline=10, retry_period=2)
EPOCH = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
LEASE = ("autotuner", "autotuner")  # namespace, name


def at(seconds: float) -> datetime:
    return EPOCH + timedelta(seconds=seconds)


def held_by(
    holder: str, renewed: float = 0.0, transitions: int = 0, duration: int = 15
) -> LeaseRecord:
    return LeaseRecord(holder, duration, at(0), at(renewed), transitions)


# The pure logic ---------------------------------------------------------------------------------


def test_timing_must_leave_a_margin() -> None:
    with pytest.raises(ValueError, match=r"lease_duration .* must be greater than renew_deadline"):
        ElectionTiming(lease_duration=10, renew_deadline=10, retry_period=2)
    with pytest.raises(ValueError, match=r"renew_deadline .* 1\.2 x retry_period"):
        ElectionTiming(lease_duration=15, renew_deadline=2, retry_period=2)
    with pytest.raises(ValueError, match="whole number of seconds"):
        ElectionTiming(lease_duration=12.5, renew_deadline=10, retry_period=2)


def test_no_lease_is_created() -> None:
    write = plan(ElectionState(), "pod-a", TIMING, now=100.0, wall_now=at(100))
    assert write is not None and write.kind is WriteKind.CREATE
    assert write.record == LeaseRecord("pod-a", 15, at(100), at(100), 0)


def test_a_live_lease_of_another_is_left_until_it_has_not_changed_for_its_duration() -> None:
    state = observe(ElectionState(), held_by("pod-a"), "7", now=100.0)
    assert plan(state, "pod-b", TIMING, now=114.9, wall_now=at(114.9)) is None
    # Seeing the same record again does not restart the wait.
    state = observe(state, held_by("pod-a"), "7", now=110.0)
    write = plan(state, "pod-b", TIMING, now=115.0, wall_now=at(115))
    assert write is not None and write.kind is WriteKind.REPLACE and write.resource_version == "7"
    assert write.record == LeaseRecord("pod-b", 15, at(115), at(115), 1)


def test_a_renewal_restarts_the_wait() -> None:
    state = observe(ElectionState(), held_by("pod-a", renewed=0), "7", now=100.0)
    state = observe(state, held_by("pod-a", renewed=12), "8", now=112.0)
    assert plan(state, "pod-b", TIMING, now=126.9, wall_now=at(126.9)) is None
    assert plan(state, "pod-b", TIMING, now=127.0, wall_now=at(127)) is not None


def test_the_holders_own_duration_counts() -> None:
    state = observe(ElectionState(), held_by("pod-a", duration=40), "7", now=100.0)
    assert plan(state, "pod-b", TIMING, now=139.0, wall_now=at(139)) is None
    assert plan(state, "pod-b", TIMING, now=140.0, wall_now=at(140)) is not None


def test_a_released_lease_is_taken_at_once() -> None:
    state = observe(ElectionState(), LeaseRecord("", 1, at(5), at(5), 3), "9", now=100.0)
    write = plan(state, "pod-b", TIMING, now=100.0, wall_now=at(100))
    assert write is not None and write.record.holder == "pod-b" and write.record.transitions == 4


def test_the_holder_renews_keeping_acquire_time_and_transitions() -> None:
    state = observe(ElectionState(), held_by("pod-a", renewed=4, transitions=2), "7", now=104.0)
    write = plan(state, "pod-a", TIMING, now=104.0, wall_now=at(104))
    assert write is not None
    assert write.record == LeaseRecord("pod-a", 15, at(0), at(104), 2)


def test_the_leader_may_act_until_the_renew_deadline_after_its_last_renewal_started() -> None:
    write = plan(ElectionState(), "pod-a", TIMING, now=100.0, wall_now=at(100))
    assert write is not None
    leading = after_write(ElectionState(), write, "1", started_at=100.0, now=100.3)
    assert may_act(leading, TIMING, 109.99)
    assert not may_act(leading, TIMING, 110.0)
    refused = after_write(leading, write, None, started_at=102.0, now=102.1)
    assert not may_act(refused, TIMING, 102.1)


def test_a_leader_that_cannot_renew_stops_before_anyone_can_take_over() -> None:
    # pod-a's last renewal started at 100. pod-b can only have seen it after that, and must
    # then wait the lease duration; pod-a must have stopped by then.
    write = plan(ElectionState(), "pod-a", TIMING, now=100.0, wall_now=at(100))
    assert write is not None
    a_state = after_write(ElectionState(), write, "1", started_at=100.0, now=100.5)
    for seen_at in (100.0, 100.5, 103.0, 109.0):
        b_state = observe(ElectionState(), write.record, "1", now=seen_at)
        takeover = next(
            t / 10
            for t in range(int(seen_at * 10), 2000)
            if plan(b_state, "pod-b", TIMING, now=t / 10, wall_now=at(t / 10)) is not None
        )
        assert not may_act(a_state, TIMING, takeover)
        assert (
            takeover - (100.0 + TIMING.renew_deadline)
            >= TIMING.lease_duration - TIMING.renew_deadline
        )


# Replicas against the test API ------------------------------------------------------------------


class FakeClock:
    """One time line; each replica reads it through its own offset (clocks need not agree)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def kube() -> Iterator[FakeKubeApi]:
    with FakeKubeApi() as api:
        yield api


def api_client_for(kube: FakeKubeApi) -> client.ApiClient:
    configuration = client.Configuration(host=kube.url)
    configuration.retries = False
    return client.ApiClient(configuration)


def elector(
    kube: FakeKubeApi,
    identity: str,
    clock: FakeClock,
    offset: float = 0.0,
    *,
    api_client: client.ApiClient | None = None,
    lease_name: str = LEASE[1],
) -> LeaseElector:
    return LeaseElector(
        api_client or api_client_for(kube),
        namespace=LEASE[0],
        name=lease_name,
        identity=identity,
        timing=TIMING,
        monotonic=lambda: clock.now + offset,
        wall_clock=lambda: at(clock.now + offset),
        jitter=lambda: 1.0,
    )


def holder(kube: FakeKubeApi) -> str | None:
    lease = kube.get("leases", *LEASE)
    return None if lease is None else lease["spec"].get("holderIdentity")


def test_first_replica_creates_the_lease_and_the_second_stands_by(kube: FakeKubeApi) -> None:
    clock = FakeClock()
    a, b = elector(kube, "pod-a", clock), elector(kube, "pod-b", clock, offset=-500)
    assert a.step() and a.may_act()
    assert not b.step() and not b.may_act()
    lease = kube.get("leases", *LEASE)
    assert lease is not None and lease["spec"]["holderIdentity"] == "pod-a"
    assert lease["spec"]["leaseDurationSeconds"] == 15
    parsed = client.ApiClient().deserialize(json.dumps(lease), "V1Lease", "application/json")
    assert parsed.spec.lease_transitions == 0 and parsed.spec.renew_time is not None


def test_renewals_keep_the_leader_and_the_standby_waiting(kube: FakeKubeApi) -> None:
    clock = FakeClock()
    a, b = elector(kube, "pod-a", clock), elector(kube, "pod-b", clock, offset=7)
    a.step()
    for _ in range(20):
        clock.advance(TIMING.retry_period)
        assert a.step()
        assert not b.step()
    assert holder(kube) == "pod-a"


def test_a_partitioned_leader_stops_acting_before_the_standby_takes_over(kube: FakeKubeApi) -> None:
    clock = FakeClock()
    a, b = elector(kube, "pod-a", clock), elector(kube, "pod-b", clock, offset=123)
    assert a.step()
    assert not b.step()
    # From now on pod-a cannot reach the API server; pod-b keeps trying every retry period.
    a_stopped = b_started = None
    for tick in range(1, 20):
        clock.advance(1.0)
        if b_started is None and b.step():
            b_started = tick
        if a_stopped is None and not a.may_act():
            a_stopped = tick
        assert not (a.may_act() and b.may_act())
    assert a_stopped == TIMING.renew_deadline
    assert b_started == TIMING.lease_duration
    assert holder(kube) == "pod-b"
    lease = kube.get("leases", *LEASE)
    assert lease is not None and lease["spec"]["leaseTransitions"] == 1


def test_failing_renewals_keep_acting_only_until_the_deadline(kube: FakeKubeApi) -> None:
    clock = FakeClock()
    a = elector(kube, "pod-a", clock)
    assert a.step()
    kube.inject(Fault(path="/leases", status=500))
    clock.advance(9.9)
    assert a.step()
    clock.advance(0.1)
    assert not a.step()
    kube.clear_faults()
    clock.advance(1)
    assert a.step(), "the holder renews its own lease again once the API server answers"


def test_a_replica_that_loses_a_race_does_not_lead(kube: FakeKubeApi) -> None:
    clock = FakeClock()
    kube.add(objects.lease(*LEASE, holder="", duration_seconds=1))
    a, b = elector(kube, "pod-a", clock), elector(kube, "pod-b", clock)
    raced: list[str] = []

    def a_writes_first(method: str, path: str) -> None:
        if method == "PUT" and not raced:
            raced.append(path)
            assert a.step()

    kube.before_each_request(a_writes_first)
    assert not b.step()
    assert a.may_act() and not b.may_act()
    assert holder(kube) == "pod-a"


def test_release_hands_the_lease_over_at_once(kube: FakeKubeApi) -> None:
    clock = FakeClock()
    a, b = elector(kube, "pod-a", clock), elector(kube, "pod-b", clock)
    assert a.step()
    assert not b.step()
    a.release()
    assert not a.may_act()
    lease = kube.get("leases", *LEASE)
    assert lease is not None and "holderIdentity" not in lease["spec"]
    assert lease["spec"]["leaseDurationSeconds"] == 1
    assert b.step(), "a released lease is free without waiting for it to expire"


def test_release_leaves_a_lease_someone_else_holds(kube: FakeKubeApi) -> None:
    clock = FakeClock()
    a = elector(kube, "pod-a", clock)
    assert a.step()
    kube.add(objects.lease(*LEASE, holder="pod-z"))
    writes_before = len(kube.writes("/leases"))
    a.release()
    assert holder(kube) == "pod-z" and len(kube.writes("/leases")) == writes_before


def test_forbidden_leases_mean_never_leading(
    kube: FakeKubeApi, caplog: pytest.LogCaptureFixture
) -> None:
    kube.inject(Fault(path="/leases", status=403))
    a = elector(kube, "pod-a", FakeClock())
    assert not a.step()
    assert any("grant get, create and update on leases" in str(r.__dict__) for r in caplog.records)


def test_the_election_thread_acquires_and_release_stops_it(kube: FakeKubeApi) -> None:
    a = LeaseElector(
        api_client_for(kube),
        namespace=LEASE[0],
        name=LEASE[1],
        identity="pod-a",
        timing=ElectionTiming(lease_duration=4, renew_deadline=2, retry_period=0.05),
    )
    a.start()
    deadline = time.monotonic() + 5
    while not a.may_act() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert a.may_act()
    a.release()
    assert not a.may_act() and holder(kube) is None


def test_an_identity_is_required(kube: FakeKubeApi) -> None:
    with pytest.raises(ValueError, match="non-empty identity"):
        LeaseElector(api_client_for(kube), namespace="x", name="y", identity="")


# Whatever the schedule, two replicas never act at once ---------------------------------------

# A schedule is a list of spells: one replica tries `times` times, `every` seconds apart, while
# the other is cut off; during a spell the API server may fail every request.
_SPELLS = st.lists(
    st.tuples(
        st.sampled_from(["pod-a", "pod-b"]),
        st.integers(min_value=1, max_value=8),
        st.sampled_from([0.0, 0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 8.0, 13.0]),
        st.booleans(),
    ),
    min_size=1,
    max_size=12,
)


@pytest.fixture(scope="module")
def shared_kube() -> Iterator[tuple[FakeKubeApi, client.ApiClient]]:
    """One server for all examples (each uses a Lease of its own): examples stay cheap."""
    with FakeKubeApi() as kube, api_client_for(kube) as api_client:
        yield kube, api_client


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spells=_SPELLS, offsets=st.tuples(st.floats(-1e6, 1e6), st.floats(-1e6, 1e6)))
def test_no_two_replicas_ever_act_at_once(
    shared_kube: tuple[FakeKubeApi, client.ApiClient],
    spells: list[tuple[str, int, float, bool]],
    offsets: tuple[float, float],
) -> None:
    kube, api_client = shared_kube
    clock = FakeClock()
    lease_name = f"lease-{uuid.uuid4().hex[:12]}"
    replicas = {
        name: elector(kube, name, clock, offset, api_client=api_client, lease_name=lease_name)
        for name, offset in zip(["pod-a", "pod-b"], offsets, strict=True)
    }
    try:
        for who, times, every, failing in spells:
            if failing:
                kube.inject(Fault(path=f"/leases(/{lease_name})?$", status=503))
            for _ in range(times):
                clock.advance(every)
                replicas[who].step()
                acting = [name for name, replica in replicas.items() if replica.may_act()]
                assert len(acting) <= 1, f"{acting} act at once"
            kube.clear_faults()
    finally:
        kube.clear_faults()
        kube.delete("leases", LEASE[0], lease_name)
