"""Faults around a running daemon: Prometheus or Redis stopped, the daemon killed mid-action
and restarted, two daemons at once."""

from __future__ import annotations

import os
import re
import signal
import time
import urllib.request

import pytest
import redis

from autotuner.adapters.sql_store import AuditRecord
from autotuner.core.model import OutcomeStatus, Verdict
from tests.runtime.real_world import (
    RULES,
    USER_SESSIONS_TTL,
    DaemonProcess,
    World,
    eventually,
    records,
)

pytestmark = pytest.mark.integration

API_SCALE = r"/deployments/api/scale$"


def _replicas(world: World) -> int:
    return world.kube.replicas("deployments", "crm", "api")


def _ttl(world: World) -> float:
    return float(world.redis.client().get(USER_SESSIONS_TTL) or 0)


def _metric(daemon: DaemonProcess, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{daemon.port}/metrics", timeout=2) as reply:
        body = reply.read().decode()
    match = re.search(rf"^{re.escape(name)} (\S+)$", body, re.M)
    return float(match.group(1)) if match else 0.0


def _hold(condition: object, seconds: float) -> bool:
    """True if `condition()` stays true for `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if callable(condition) and not condition():
            return False
        time.sleep(0.2)
    return True


def test_prometheus_down_means_no_actions_and_not_ready_then_recovery(
    world: World, daemons: list[DaemonProcess]
) -> None:
    daemon = DaemonProcess(world)
    daemons.append(daemon)
    eventually(lambda: daemon.get("/readyz") == 200, 30, "the daemon became ready")
    replicas = _replicas(world)

    world.prometheus.stop()
    eventually(lambda: daemon.get("/readyz") == 503, 15, "not ready without Prometheus")
    assert daemon.get("/healthz") == 200, "a Prometheus outage must not restart the daemon"
    world.exporter.load_factor = 4.0
    assert _hold(lambda: _replicas(world) == replicas, 5), "acted without metrics"
    assert not [r for r in records(world) if r.decision.verdict is Verdict.CHANGE]

    world.prometheus.start()
    eventually(lambda: daemon.get("/readyz") == 200, 40, "ready again once Prometheus is back")
    eventually(lambda: _replicas(world) > replicas, 40, "acting again after the outage")
    assert daemon.stop() == 0


def test_redis_down_blocks_key_changes_without_half_records_then_recovery(
    world: World, daemons: list[DaemonProcess]
) -> None:
    daemon = DaemonProcess(world)
    daemons.append(daemon)
    eventually(lambda: daemon.get("/readyz") == 200, 30, "the daemon became ready")
    ttl = _ttl(world)

    world.redis.stop()
    world.exporter.flush_cache("user_sessions")
    time.sleep(6)
    assert daemon.get("/healthz") == 200
    assert not [r for r in records(world, "cache-hit-rate-low") if r.outcome is None]
    applied = [
        r
        for r in records(world, "cache-hit-rate-low")
        if r.outcome is not None and r.outcome.status is OutcomeStatus.APPLIED
    ]
    assert not applied, "a change to a key in a stopped Redis was reported as applied"

    world.redis.start()
    world.exporter.seed()  # the restarted Redis kept no data: put the configuration back
    eventually(lambda: _ttl(world) > ttl, 40, "the TTL rose once Redis was back")
    assert daemon.stop() == 0
    assert not [r for r in records(world) if r.outcome is None]


def test_redis_refusing_writes_records_failed_actions_and_nothing_half_written(
    world: World, daemons: list[DaemonProcess]
) -> None:
    admin = world.redis.client()
    admin.execute_command("ACL", "SETUSER", "admin", "on", ">admin-pw", "~*", "&*", "+@all")
    admin = redis.Redis(
        host="127.0.0.1", port=world.redis.port, username="admin", password="admin-pw"
    )
    daemon = DaemonProcess(world)
    daemons.append(daemon)
    eventually(lambda: daemon.get("/readyz") == 200, 30, "the daemon became ready")
    ttl = _ttl(world)
    # Reads still work, writes are refused: the change is attempted and fails.
    admin.execute_command("ACL", "SETUSER", "default", "-@write", "-@scripting")
    world.exporter.flush_cache("user_sessions")

    def failed() -> list[AuditRecord]:
        return [
            r
            for r in records(world, "cache-hit-rate-low")
            if r.outcome is not None and r.outcome.status is OutcomeStatus.FAILED
        ]

    eventually(lambda: bool(failed()), 40, "the refused change was recorded as failed")
    assert _ttl(world) == ttl
    assert not [r for r in records(world) if r.outcome is None], "a half-written record"
    assert _metric_labelled(daemon, "autotuner_actions_total", 'outcome="failed"') >= 1

    admin.execute_command("ACL", "SETUSER", "default", "+@all")
    eventually(lambda: _ttl(world) > ttl, 90, "the change went through once Redis accepted it")
    assert daemon.stop() == 0


def _metric_labelled(daemon: DaemonProcess, name: str, label: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in _body(daemon).splitlines()
        if line.startswith(name + "{") and label in line
    )


def test_killed_while_scaling_and_restarted_neither_repeats_nor_forgets_the_cooldown(
    world: World, daemons: list[DaemonProcess]
) -> None:
    (world.directory / "rules" / "e2e.yaml").write_text(
        RULES.replace("cooldown: 6s", "cooldown: 2m")
    )
    first = DaemonProcess(world)
    daemons.append(first)
    eventually(lambda: first.get("/readyz") == 200, 30, "the daemon became ready")
    replicas = _replicas(world)

    def kill_while_scaling(method: str, path: str) -> None:
        # SIGKILL as the scale request arrives: the change happens, the daemon records
        # neither its outcome nor its state.
        if method in ("PUT", "PATCH") and re.search(API_SCALE, path):
            os.kill(first.process.pid, signal.SIGKILL)

    world.kube.before_each_request(kill_while_scaling)
    world.exporter.load_factor = 4.0
    eventually(lambda: first.process.poll() is not None, 40, "the daemon was killed scaling")
    eventually(lambda: _replicas(world) > replicas, 10, "the scale went through")
    scaled_to = _replicas(world)
    assert [r.outcome for r in records(world, "api-latency-high")] == [None], (
        "expected one unfinished intent"
    )

    second = DaemonProcess(world)
    daemons.append(second)
    eventually(lambda: second.get("/readyz") == 200, 30, "the restarted daemon became ready")
    assert _hold(lambda: _replicas(world) == scaled_to, 8), "the change was repeated"
    assert len(world.kube.writes(API_SCALE)) == 1
    assert second.stop() == 0


def test_two_daemons_only_the_leader_acts_and_the_other_takes_over(
    world: World, daemons: list[DaemonProcess]
) -> None:
    election = ("--leader-election", "--lease-namespace", "autotuner")
    one = DaemonProcess(world, *election, "--identity", "one")
    two = DaemonProcess(world, *election, "--identity", "two")
    daemons.extend([one, two])
    eventually(lambda: one.get("/readyz") == 200 and two.get("/readyz") == 200, 30, "both ready")
    eventually(
        lambda: _metric(one, "autotuner_leader") + _metric(two, "autotuner_leader") == 1,
        30,
        "exactly one leader",
    )
    leader, standby = (one, two) if _metric(one, "autotuner_leader") == 1 else (two, one)
    replicas = _replicas(world)
    world.exporter.load_factor = 4.0
    eventually(lambda: _replicas(world) > replicas, 40, "the leader scaled the API")
    assert _metric(standby, "autotuner_leader") == 0
    assert "autotuner_actions_total{" not in _body(standby)

    assert leader.stop() == 0, "the leader stops cleanly and hands the Lease back"
    eventually(lambda: _metric(standby, "autotuner_leader") == 1, 20, "the standby took over")
    assert standby.stop() == 0


def _body(daemon: DaemonProcess) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{daemon.port}/metrics", timeout=2) as reply:
        return reply.read().decode()
