"""The Redis config-key actuator against real Redis servers.

Most tests use the machine's Redis at 127.0.0.1:6379 under a key prefix unique to the test and
delete only the keys under it; the fault tests start their own redis-server.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autotuner.adapters.redis_keys import (
    RedisKeyActuator,
    RedisKeySettings,
    RedisSettingsError,
    format_number,
)
from autotuner.core.model import (
    Decision,
    KnobKind,
    KnobReading,
    KnobRef,
    KnobUnreadable,
    KnobValue,
    OutcomeStatus,
    Phase,
    Verdict,
)
from tests.integration.redis_server import RedisServer, free_port

pytestmark = pytest.mark.integration

SHARED_REDIS = "redis://127.0.0.1:6379/0"


@pytest.fixture
def prefix() -> Iterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards, no others."""
    unique = f"autotuner-test:{uuid.uuid4().hex}:"
    yield unique
    client = redis.Redis.from_url(SHARED_REDIS)
    keys = list(client.scan_iter(match=f"{unique}*", count=500))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def shared(prefix: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(SHARED_REDIS, decode_responses=True)
    yield client
    client.close()


@pytest.fixture
def actuator(prefix: str) -> Iterator[RedisKeyActuator]:
    act = RedisKeyActuator(RedisKeySettings(url=SHARED_REDIS, key_prefix=prefix))
    yield act
    act.close()


def key(name: str, field: str = "") -> KnobRef:
    return KnobRef(KnobKind.CONFIG_KEY, name, field=field)


def unreadable_reason(reading: KnobReading) -> str:
    assert isinstance(reading, KnobUnreadable), f"expected an unreadable knob, got {reading}"
    return reading.reason


def change(
    knob: KnobRef,
    current: float | None,
    final: float | None,
    *,
    from_default: bool = False,
    dry_run: bool = False,
    verdict: Verdict = Verdict.CHANGE,
    rule: str = "cache-hit-low",
) -> Decision:
    return Decision(
        time=1_700_000_000.0,
        rule=rule,
        labels=(("cache", "users"),),
        knob=knob,
        verdict=verdict,
        phase=Phase.FIRING,
        metric="cache_hit_ratio",
        value=0.4,
        threshold=0.8,
        current=current,
        proposed=final,
        final=final,
        reason="hit ratio 0.4 below 0.8",
        dry_run=dry_run,
        from_default=from_default,
    )


def test_reads_plain_keys_and_hash_fields_in_one_call(
    actuator: RedisKeyActuator, shared: redis.Redis, prefix: str
) -> None:
    shared.set(f"{prefix}ttl:users", "300")
    shared.set(f"{prefix}ttl:orders", " 2.5e0 ")
    shared.hset(f"{prefix}pool", mapping={"size": "20"})
    knobs = [key("ttl:users"), key("ttl:orders"), key("pool", "size")]

    readings = actuator.read(knobs)

    assert readings == {
        knobs[0]: KnobValue(300.0),
        knobs[1]: KnobValue(2.5),
        knobs[2]: KnobValue(20.0),
    }


def test_a_missing_key_or_field_is_reported_missing(
    actuator: RedisKeyActuator, shared: redis.Redis, prefix: str
) -> None:
    shared.hset(f"{prefix}pool", mapping={"other": "1"})
    absent_key, absent_field = key("ttl:nobody"), key("pool", "size")

    readings = actuator.read([absent_key, absent_field])

    for knob in (absent_key, absent_field):
        reading = readings[knob]
        assert isinstance(reading, KnobUnreadable)
        assert reading.missing
        assert "does not exist" in reading.reason
    assert f"key {prefix}ttl:nobody" in unreadable_reason(readings[absent_key])
    assert f"hash field size of key {prefix}pool" in unreadable_reason(readings[absent_field])


@pytest.mark.parametrize(
    "garbage", ["abc", "", "12s", "nan", "inf", "-inf", "1_000", "0x1A", "1e999", "\u0663"]
)
def test_a_value_that_is_not_a_finite_number_is_unreadable_with_the_key_and_value(
    actuator: RedisKeyActuator, shared: redis.Redis, prefix: str, garbage: str
) -> None:
    shared.set(f"{prefix}ttl:users", garbage)

    reading = actuator.read([key("ttl:users")])[key("ttl:users")]

    assert isinstance(reading, KnobUnreadable)
    assert not reading.missing
    assert f"key {prefix}ttl:users" in reading.reason
    assert repr(garbage) in reading.reason


def test_a_key_of_the_wrong_type_is_unreadable_and_does_not_spoil_the_others(
    actuator: RedisKeyActuator, shared: redis.Redis, prefix: str
) -> None:
    shared.hset(f"{prefix}pool", mapping={"size": "20"})
    shared.set(f"{prefix}ttl:users", "300")

    readings = actuator.read([key("pool"), key("ttl:users")])

    wrong = readings[key("pool")]
    assert isinstance(wrong, KnobUnreadable)
    assert "WRONGTYPE" in wrong.reason
    assert f"key {prefix}pool" in wrong.reason
    assert readings[key("ttl:users")] == KnobValue(300.0)


def test_a_change_is_written_as_an_integer_when_it_is_whole(
    actuator: RedisKeyActuator, shared: redis.Redis, prefix: str
) -> None:
    shared.set(f"{prefix}ttl:users", "300")

    outcome = actuator.apply(change(key("ttl:users"), 300.0, 450.0))

    assert outcome.status is OutcomeStatus.APPLIED
    assert (outcome.old, outcome.new) == (300.0, 450.0)
    assert "from 300 to 450" in outcome.detail
    assert shared.get(f"{prefix}ttl:users") == "450"
    assert actuator.read([key("ttl:users")])[key("ttl:users")] == KnobValue(450.0)


def test_a_fractional_change_is_written_exactly(
    actuator: RedisKeyActuator, shared: redis.Redis, prefix: str
) -> None:
    shared.set(f"{prefix}ratio", "0.5")

    outcome = actuator.apply(change(key("ratio"), 0.5, 0.1 + 0.2))

    assert outcome.status is OutcomeStatus.APPLIED
    assert float(shared.get(f"{prefix}ratio") or "") == 0.1 + 0.2


def test_the_stored_value_is_compared_as_a_number(
    actuator: RedisKeyActuator, shared: redis.Redis, prefix: str
) -> None:
    shared.set(f"{prefix}ttl:users", "300.0")

    outcome = actuator.apply(change(key("ttl:users"), 300.0, 360.0))

    assert outcome.status is OutcomeStatus.APPLIED
    assert shared.get(f"{prefix}ttl:users") == "360"


def test_a_write_keeps_the_keys_expiry(
    actuator: RedisKeyActuator, shared: redis.Redis, prefix: str
) -> None:
    shared.set(f"{prefix}ttl:users", "300", ex=3600)

    actuator.apply(change(key("ttl:users"), 300.0, 450.0))

    assert 3500 < shared.ttl(f"{prefix}ttl:users") <= 3600


def test_a_hash_field_is_written_and_its_siblings_are_left_alone(
    actuator: RedisKeyActuator, shared: redis.Redis, prefix: str
) -> None:
    shared.hset(f"{prefix}db", mapping={"pool_size": "20", "owner": "crm"})

    outcome = actuator.apply(change(key("db", "pool_size"), 20.0, 30.0))

    assert outcome.status is OutcomeStatus.APPLIED
    assert outcome.extra["field"] == "pool_size"
    assert shared.hgetall(f"{prefix}db") == {"pool_size": "30", "owner": "crm"}


def test_a_concurrent_writer_is_never_overwritten(
    actuator: RedisKeyActuator, shared: redis.Redis, prefix: str
) -> None:
    shared.set(f"{prefix}ttl:users", "300")
    decision = change(key("ttl:users"), 300.0, 450.0)
    shared.set(f"{prefix}ttl:users", "120")  # an operator's edit after the controller read 300

    outcome = actuator.apply(decision)

    assert outcome.status is OutcomeStatus.SKIPPED
    assert "changed concurrently from 300 to '120'" in outcome.detail
    assert shared.get(f"{prefix}ttl:users") == "120"


def test_a_concurrent_writer_of_the_same_value_is_reported_not_claimed(
    actuator: RedisKeyActuator, shared: redis.Redis, prefix: str
) -> None:
    shared.set(f"{prefix}ttl:users", "450")

    outcome = actuator.apply(change(key("ttl:users"), 300.0, 450.0))

    assert outcome.status is OutcomeStatus.SKIPPED
    assert "changed concurrently from 300 to '450'" in outcome.detail


def test_garbage_written_concurrently_is_not_overwritten(
    actuator: RedisKeyActuator, shared: redis.Redis, prefix: str
) -> None:
    shared.set(f"{prefix}ttl:users", "oops")

    outcome = actuator.apply(change(key("ttl:users"), 300.0, 450.0))

    assert outcome.status is OutcomeStatus.SKIPPED
    assert "'oops'" in outcome.detail
    assert shared.get(f"{prefix}ttl:users") == "oops"


def test_a_key_deleted_concurrently_is_not_recreated(
    actuator: RedisKeyActuator, shared: redis.Redis, prefix: str
) -> None:
    outcome = actuator.apply(change(key("ttl:users"), 300.0, 450.0))

    assert outcome.status is OutcomeStatus.SKIPPED
    assert "changed concurrently from 300 to absent" in outcome.detail
    assert shared.exists(f"{prefix}ttl:users") == 0


def test_a_missing_key_is_created_from_the_rules_default(
    actuator: RedisKeyActuator, shared: redis.Redis, prefix: str
) -> None:
    outcome = actuator.apply(change(key("ttl:users"), 300.0, 450.0, from_default=True))

    assert outcome.status is OutcomeStatus.APPLIED
    assert outcome.old is None and outcome.new == 450.0
    assert "default 300" in outcome.detail
    assert shared.get(f"{prefix}ttl:users") == "450"


def test_a_key_created_concurrently_is_not_overwritten_by_a_default(
    actuator: RedisKeyActuator, shared: redis.Redis, prefix: str
) -> None:
    shared.set(f"{prefix}ttl:users", "300")

    outcome = actuator.apply(change(key("ttl:users"), 300.0, 450.0, from_default=True))

    assert outcome.status is OutcomeStatus.SKIPPED
    assert "changed concurrently from absent to '300'" in outcome.detail
    assert shared.get(f"{prefix}ttl:users") == "300"


def test_a_decision_without_a_current_value_is_refused(
    actuator: RedisKeyActuator, shared: redis.Redis, prefix: str
) -> None:
    outcome = actuator.apply(change(key("ttl:users"), None, 450.0))

    assert outcome.status is OutcomeStatus.FAILED
    assert "blindly" in outcome.detail
    assert shared.exists(f"{prefix}ttl:users") == 0


def test_a_dry_run_writes_nothing(
    actuator: RedisKeyActuator, shared: redis.Redis, prefix: str
) -> None:
    shared.set(f"{prefix}ttl:users", "300")

    outcome = actuator.apply(change(key("ttl:users"), 300.0, 450.0, dry_run=True))

    assert outcome.status is OutcomeStatus.DRY_RUN
    assert "would set" in outcome.detail
    assert shared.get(f"{prefix}ttl:users") == "300"


def test_a_hold_writes_nothing(
    actuator: RedisKeyActuator, shared: redis.Redis, prefix: str
) -> None:
    shared.set(f"{prefix}ttl:users", "300")

    outcome = actuator.apply(change(key("ttl:users"), 300.0, 300.0, verdict=Verdict.HOLD))

    assert outcome.status is OutcomeStatus.SKIPPED
    assert shared.get(f"{prefix}ttl:users") == "300"


def test_workload_knobs_are_not_handled(actuator: RedisKeyActuator) -> None:
    deployment = KnobRef(KnobKind.DEPLOYMENT, "api", "crm")

    assert not actuator.handles(deployment)
    assert actuator.handles(key("ttl:users"))
    assert isinstance(actuator.read([deployment])[deployment], KnobUnreadable)
    assert actuator.apply(change(deployment, 2.0, 3.0)).status is OutcomeStatus.FAILED


def test_a_write_is_published_on_the_channel(shared: redis.Redis, prefix: str) -> None:
    channel = f"{prefix}changes"
    act = RedisKeyActuator(
        RedisKeySettings(url=SHARED_REDIS, key_prefix=prefix, publish_channel=channel)
    )
    subscription = shared.pubsub()
    subscription.subscribe(channel)
    assert subscription.get_message(timeout=2.0) is not None  # the subscribe confirmation
    shared.set(f"{prefix}ttl:users", "300")
    shared.hset(f"{prefix}db", mapping={"pool_size": "20"})

    act.apply(change(key("ttl:users"), 300.0, 450.0, rule="cache-hit-low"))
    act.apply(change(key("ttl:users"), 300.0, 600.0))  # a conflict: not published
    act.apply(change(key("db", "pool_size"), 20.0, 25.5, rule="db-pool-busy"))
    messages = [subscription.get_message(timeout=2.0) for _ in range(2)]
    subscription.close()
    act.close()

    assert [json.loads(m["data"]) for m in messages if m] == [
        {"key": f"{prefix}ttl:users", "old": 300, "new": 450, "rule": "cache-hit-low"},
        {
            "key": f"{prefix}db",
            "field": "pool_size",
            "old": 20,
            "new": 25.5,
            "rule": "db-pool-busy",
        },
    ]


def test_a_write_whose_reply_was_lost_is_retried_and_reported_applied(
    actuator: RedisKeyActuator, shared: redis.Redis, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared.set(f"{prefix}ttl:users", "300")
    script = actuator._compare_and_set
    calls = []

    def reply_lost_once(key: str, args: list[str]) -> list[object]:
        calls.append(key)
        result = script(key, args)
        if len(calls) == 1:
            raise redis.ConnectionError("connection reset by peer")
        return result

    monkeypatch.setattr(actuator, "_compare_and_set", reply_lost_once)

    outcome = actuator.apply(change(key("ttl:users"), 300.0, 450.0))

    assert len(calls) == 2
    assert outcome.status is OutcomeStatus.APPLIED
    assert "confirmed after the connection was re-established" in outcome.detail
    assert shared.get(f"{prefix}ttl:users") == "450"


def test_the_server_stopped_mid_run_gives_outcomes_and_recovers() -> None:
    with RedisServer() as server:
        client = server.client()
        client.set("crm:cache:ttl:users", "300")
        act = RedisKeyActuator(
            RedisKeySettings(url=server.url, connect_timeout=0.5, command_timeout=0.5)
        )
        ttl = key("crm:cache:ttl:users")
        assert act.read([ttl])[ttl] == KnobValue(300.0)

        server.stop()
        reading = act.read([ttl])[ttl]
        outcome = act.apply(change(ttl, 300.0, 450.0))

        assert isinstance(reading, KnobUnreadable) and not reading.missing
        assert f"Redis at redis://127.0.0.1:{server.port}/0 did not answer" in reading.reason
        assert outcome.status is OutcomeStatus.FAILED
        assert "could not write key crm:cache:ttl:users" in outcome.detail

        server.start()  # an empty server again: the key is gone, as after a restart
        client = server.client()
        client.set("crm:cache:ttl:users", "300")
        assert act.read([ttl])[ttl] == KnobValue(300.0)
        assert act.apply(change(ttl, 300.0, 450.0)).status is OutcomeStatus.APPLIED
        assert client.get("crm:cache:ttl:users") == b"450"
        client.close()
        act.close()


def test_the_password_is_read_from_a_file_each_time_a_connection_opens(tmp_path: Path) -> None:
    password_file = tmp_path / "password"
    password_file.write_text("first-secret\n")
    with RedisServer(password="first-secret") as server:
        server.client().set("crm:db:pool_size", "20")
        act = RedisKeyActuator(RedisKeySettings(url=server.url, password_file=str(password_file)))
        pool = key("crm:db:pool_size")
        assert act.read([pool])[pool] == KnobValue(20.0)

        server.client().config_set("requirepass", "second-secret")
        server.password = "second-secret"
        server.client().client_kill_filter(_type="normal", skipme=True)
        password_file.write_text("second-secret\n")

        assert act.read([pool])[pool] == KnobValue(20.0)
        act.close()


def test_a_wrong_password_is_an_unreadable_knob_without_the_secret(tmp_path: Path) -> None:
    with RedisServer(password="right") as server:
        act = RedisKeyActuator(RedisKeySettings(url=server.url.replace("//", "//:wrong-secret@")))
        pool = key("crm:db:pool_size")

        reading = act.read([pool])[pool]

        assert isinstance(reading, KnobUnreadable)
        assert "wrong-secret" not in reading.reason
        assert f"redis://127.0.0.1:{server.port}/0" in reading.reason
        act.close()


def test_an_acl_user_and_password_from_a_file_and_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    user_file = tmp_path / "user"
    user_file.write_text("tuner\n")
    monkeypatch.setenv("AUTOTUNER_TEST_REDIS_PASSWORD", "tuner-secret")
    acl = "tuner on >tuner-secret ~crm:* &* +get +set +hget +hset +evalsha +eval +publish"
    with RedisServer(password="admin", extra_args=("--user", *acl.split())) as server:
        server.client().set("crm:db:pool_size", "20")
        server.client().set("other:key", "1")
        act = RedisKeyActuator(
            RedisKeySettings(
                url=server.url,
                username_file=str(user_file),
                password_env="AUTOTUNER_TEST_REDIS_PASSWORD",
            )
        )
        pool, other = key("crm:db:pool_size"), key("other:key")

        readings = act.read([pool, other])

        assert readings[pool] == KnobValue(20.0)
        assert "no permissions" in unreadable_reason(readings[other])
        assert act.apply(change(pool, 20.0, 24.0)).status is OutcomeStatus.APPLIED
        act.close()


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (RedisKeySettings(url="http://localhost:6379"), "redis:// or rediss://"),
        (
            RedisKeySettings(password_file="/nonexistent/pw", password_env="X"),
            "give the Redis password once",
        ),
        (RedisKeySettings(password_file="/nonexistent/pw"), "/nonexistent/pw does not exist"),
        (
            RedisKeySettings(password_env="AUTOTUNER_TEST_UNSET_VARIABLE"),
            "AUTOTUNER_TEST_UNSET_VARIABLE is not set",
        ),
        (RedisKeySettings(command_timeout=0), "command_timeout must be a positive"),
        (RedisKeySettings(write_attempts=0), "write_attempts must be at least 1"),
    ],
)
def test_bad_settings_are_refused_with_a_clear_message(
    settings: RedisKeySettings, message: str
) -> None:
    with pytest.raises(RedisSettingsError, match=message):
        RedisKeyActuator(settings)


def test_an_unreachable_server_never_raises() -> None:
    act = RedisKeyActuator(
        RedisKeySettings(url=f"redis://127.0.0.1:{free_port()}/0", connect_timeout=0.5)
    )
    ttl = key("crm:cache:ttl:users")

    assert isinstance(act.read([ttl])[ttl], KnobUnreadable)
    assert act.apply(change(ttl, 300.0, 450.0)).status is OutcomeStatus.FAILED
    act.close()


@pytest.mark.parametrize(
    ("value", "written"), [(450.0, "450"), (7, "7"), (0.25, "0.25"), (-3.0, "-3"), (1e20, "1e+20")]
)
def test_numbers_are_formatted_for_redis(value: float, written: str) -> None:
    assert format_number(value) == written


def test_rediss_with_a_ca_bundle_reads_and_writes() -> None:
    with RedisServer(tls=True) as server:
        server.client().set("crm:cache:ttl:users", "300")
        act = RedisKeyActuator(RedisKeySettings(url=server.url, ca_file=server.ca_file))
        ttl = key("crm:cache:ttl:users")

        assert act.read([ttl])[ttl] == KnobValue(300.0)
        assert act.apply(change(ttl, 300.0, 450.0)).status is OutcomeStatus.APPLIED
        assert server.client().get("crm:cache:ttl:users") == b"450"
        act.close()


def test_rediss_verifies_the_server_certificate_by_default() -> None:
    with RedisServer(tls=True) as server:
        act = RedisKeyActuator(RedisKeySettings(url=server.url, connect_timeout=1.0))
        ttl = key("crm:cache:ttl:users")

        reason = unreadable_reason(act.read([ttl])[ttl])

        assert "certificate verify failed" in reason
        act.close()


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    start=st.floats(allow_nan=False, allow_infinity=False),
    end=st.floats(allow_nan=False, allow_infinity=False),
)
def test_any_finite_number_written_reads_back_exactly(
    actuator: RedisKeyActuator, shared: redis.Redis, prefix: str, start: float, end: float
) -> None:
    ttl = key(f"ttl:{uuid.uuid4().hex}")
    shared.set(actuator.key_of(ttl), format_number(start))

    assert actuator.read([ttl])[ttl] == KnobValue(start)
    outcome = actuator.apply(change(ttl, start, end))

    assert outcome.status is OutcomeStatus.APPLIED
    assert actuator.read([ttl])[ttl] == KnobValue(end)


def test_many_knobs_are_read_in_one_round_trip(
    actuator: RedisKeyActuator,
    shared: redis.Redis,
    prefix: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    knobs = [key(f"ttl:{n}", field="seconds" if n % 2 else "") for n in range(50)]
    for knob in knobs:
        if knob.field:
            shared.hset(actuator.key_of(knob), knob.field, "60")
        else:
            shared.set(actuator.key_of(knob), "60")
    actuator.read(knobs[:1])  # opens the pooled connection, whose handshake is not counted
    sends = []
    send = redis.connection.AbstractConnection.send_packed_command

    def counting_send(self: redis.connection.AbstractConnection, *args: Any, **kw: Any) -> None:
        sends.append(1)
        send(self, *args, **kw)

    monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", counting_send)

    readings = actuator.read(knobs)

    assert set(readings.values()) == {KnobValue(60.0)}
    assert len(sends) == 1
