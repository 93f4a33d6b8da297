"""The daemon as a separate process against real servers: a real Prometheus scraping the
simulated system (an exporter that reads its knobs back from Redis and the test Kubernetes
API), a real Redis, and the test Kubernetes API."""

from __future__ import annotations

import json

import pytest

from autotuner.core.model import OutcomeStatus
from tests.runtime.real_world import (
    USER_SESSIONS_TTL,
    DaemonProcess,
    World,
    eventually,
    records,
)

pytestmark = pytest.mark.integration


def test_cache_hit_drop_and_latency_spike_are_acted_on_and_audited(
    world: World, daemons: list[DaemonProcess]
) -> None:
    daemon = DaemonProcess(world)
    daemons.append(daemon)
    eventually(lambda: daemon.get("/readyz") == 200, 30, "the daemon became ready")
    ttl_before = float(world.redis.client().get(USER_SESSIONS_TTL) or 0)
    replicas_before = world.kube.replicas("deployments", "crm", "api")

    world.exporter.flush_cache("user_sessions")
    eventually(
        lambda: float(world.redis.client().get(USER_SESSIONS_TTL) or 0) > ttl_before,
        40,
        "the TTL of the flushed cache rose",
    )

    world.exporter.load_factor = 4.0
    eventually(
        lambda: world.kube.replicas("deployments", "crm", "api") > replicas_before,
        40,
        "the API deployment scaled out",
    )

    assert daemon.stop() == 0
    ttl_records = records(world, "cache-hit-rate-low")
    scale_records = records(world, "api-latency-high")
    assert any(
        r.decision.knob.id == f"key/{USER_SESSIONS_TTL}"
        and r.outcome is not None
        and r.outcome.status is OutcomeStatus.APPLIED
        and r.decision.current == ttl_before
        for r in ttl_records
    ), ttl_records
    assert any(
        r.decision.knob.id == "deployment/crm/api"
        and r.outcome is not None
        and r.outcome.status is OutcomeStatus.APPLIED
        for r in scale_records
    ), scale_records
    scale_events = [e for e in world.kube.events("crm") if "autotuner" in json.dumps(e)]
    assert scale_events, "the scale was not announced with a Kubernetes Event"
