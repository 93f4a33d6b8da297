"""A Redis write that timed out after it was sent: recorded as uncertain, cooled down, re-read.

The test's own redis-server is made busy (`DEBUG SLEEP` from another connection): the
compare-and-set waits in the socket past the command timeout and runs when the server is
free again, as a write to a busy or stalled server may. Or its writes are paused (`CLIENT
PAUSE ... WRITE`): reads answer, the write times out and is dropped with its connection.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import redis

from autotuner.adapters.redis_keys import RedisKeyActuator, RedisKeySettings
from autotuner.config.loader import load_text
from autotuner.control.tick import tick
from autotuner.core.model import (
    Decision,
    KnobKind,
    KnobRef,
    KnobValue,
    OutcomeStatus,
    Phase,
    Verdict,
)
from autotuner.core.state import EngineState
from tests.fakes import FakeSource
from tests.integration.redis_server import RedisServer

pytestmark = pytest.mark.integration

TTL = KnobRef(KnobKind.CONFIG_KEY, "crm:cache:ttl:users")
BUSY_SECONDS = 1.5

RULES = """
metrics:
  hit_ratio: sum(rate(hits_total[5m])) / sum(rate(requests_total[5m]))
rules:
  - name: hit-rate-low
    metric: hit_ratio
    below: 0.7
    cooldown: 10m
    action:
      set_key: {key: "crm:cache:ttl:users", factor: 1.5, min: 60, max: 86400}
"""


@pytest.fixture
def server() -> Iterator[tuple[RedisServer, redis.Redis]]:
    with RedisServer(extra_args=("--enable-debug-command", "yes")) as running:
        client = running.client()
        client.set(TTL.name, "300")
        yield running, client
        client.close()


def _actuator(server: RedisServer) -> RedisKeyActuator:
    return RedisKeyActuator(
        RedisKeySettings(url=server.url, connect_timeout=0.5, command_timeout=0.3, write_attempts=1)
    )


def _make_busy(client: redis.Redis) -> float:
    """The server runs nothing else for BUSY_SECONDS from now; returns when it is free."""
    started = threading.Event()

    def sleep() -> None:
        started.set()
        client.execute_command("DEBUG", "SLEEP", BUSY_SECONDS)

    threading.Thread(target=sleep, daemon=True).start()
    started.wait()
    time.sleep(0.1)  # the DEBUG SLEEP has reached the server
    return time.monotonic() + BUSY_SECONDS


def _pause_writes(client: redis.Redis) -> float:
    client.execute_command("CLIENT", "PAUSE", int(BUSY_SECONDS * 1000), "WRITE")
    return time.monotonic() + BUSY_SECONDS


def _decision(current: float, final: float) -> Decision:
    return Decision(
        time=1_700_000_000.0,
        rule="hit-rate-low",
        labels=(),
        knob=TTL,
        verdict=Verdict.CHANGE,
        phase=Phase.FIRING,
        metric="hit_ratio",
        value=0.4,
        threshold=0.7,
        current=current,
        proposed=final,
        final=final,
    )


def _wait_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.monotonic()) + 0.2)


def test_a_write_that_timed_out_is_uncertain_and_may_take_effect(
    server: tuple[RedisServer, redis.Redis],
) -> None:
    running, client = server
    actuator = _actuator(running)
    try:
        # A first write as usual: the connection is open and the server knows the script.
        assert actuator.apply(_decision(300.0, 450.0)).status is OutcomeStatus.APPLIED
        resumes = _make_busy(client)
        outcome = actuator.apply(_decision(450.0, 675.0))
        assert outcome.status is OutcomeStatus.UNCERTAIN
        assert "it may have taken effect" in outcome.detail
        assert "key crm:cache:ttl:users from 450 to 675" in outcome.detail
        assert outcome.extra["uncertain"] == "true"
        assert (outcome.old, outcome.new) == (450.0, 675.0)
        _wait_until(resumes)
        # It did: the server ran the waiting compare-and-set once it was free.
        assert actuator.read([TTL])[TTL] == KnobValue(675.0)
    finally:
        actuator.close()


def test_an_uncertain_write_starts_the_cooldown_and_the_key_is_read_again(
    server: tuple[RedisServer, redis.Redis],
) -> None:
    running, client = server
    actuator = _actuator(running)
    ruleset = load_text(RULES, "rules.yaml")
    source = FakeSource({"hit_ratio": 0.4})
    try:
        resumes = _pause_writes(client)
        first = tick(1_700_000_000.0, ruleset, EngineState(), source, [actuator])
        [(decision, outcome)] = first.changes
        assert outcome.status is OutcomeStatus.UNCERTAIN
        assert decision.current == 300.0
        _wait_until(resumes)
        # A minute later the rule still fires, but its cooldown holds: nothing is written on
        # top of a value that may have changed, and the key is read afresh: this time the
        # write was dropped with its connection.
        second = tick(1_700_000_060.0, ruleset, first.state, source, [actuator])
        assert second.changes == ()
        [(held, _)] = second.decisions
        assert held.current == 300.0
        assert "cooldown" in held.reason
        assert client.get(TTL.name) == b"300"
    finally:
        actuator.close()


def test_a_server_that_refuses_connections_is_a_plain_failure(
    server: tuple[RedisServer, redis.Redis],
) -> None:
    running, _ = server
    actuator = _actuator(running)
    try:
        running.stop()
        decision = _decision(300.0, 450.0)
        outcome = actuator.apply(decision)
        assert outcome.status is OutcomeStatus.FAILED  # nothing was sent: nothing is uncertain
    finally:
        actuator.close()


def test_explain_and_history_say_an_uncertain_write_may_have_taken_effect() -> None:
    from autotuner.adapters.sql_store import AuditRecord
    from autotuner.cli.explain import describe_change
    from autotuner.core.model import Outcome

    outcome = Outcome(OutcomeStatus.UNCERTAIN, "no answer from Redis", old=300.0, new=450.0)
    record = AuditRecord(1, _decision(300.0, 450.0), 1_700_000_000.0, outcome, 1_700_000_001.0)
    assert "it may have taken effect: no answer from Redis" in describe_change(record)
