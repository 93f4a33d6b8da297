"""The daemon as a separate process against real servers: a real Prometheus scraping the
simulated system (running as an exporter that reads its knobs back from Redis and the test
Kubernetes API), a real Redis, and the test Kubernetes API.

Rule files here use short windows and cooldowns so that each effect shows within seconds.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from autotuner.adapters.sql_store import SqlStore
from autotuner.core.model import OutcomeStatus
from tests.integration.prometheus_server import PrometheusServer
from tests.integration.redis_server import RedisServer, free_port
from tests.kube_api import objects
from tests.kube_api.server import FakeKubeApi
from tests.runtime.sim_exporter import SimExporter

pytestmark = pytest.mark.integration

TOKEN = "end-to-end-token"
USER_SESSIONS_TTL = "crm:cache:ttl:user_sessions"

RULES = """
metrics:
  api_p95: max by (namespace, deployment) (crm_sim_api_p95_seconds)
  hit_ratio: >-
    sum by (cache) (rate(crm_cache_hits_total[5s]))
      / sum by (cache) (rate(crm_cache_requests_total[5s]))
rules:
  - name: api-latency-high
    metric: api_p95
    above: 0.5
    cooldown: 6s
    action:
      scale:
        deployment: "{{ labels.deployment }}"
        namespace: "{{ labels.namespace }}"
        factor: 2
        min: 2
        max: 20
  - name: cache-hit-rate-low
    metric: hit_ratio
    below: 0.5
    cooldown: 1m
    action:
      set_key:
        key: "crm:cache:ttl:{{ labels.cache }}"
        factor: 2
        min: 60
        max: 86400
"""


def _kubeconfig(path: Path, server: str) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "test", "cluster": {"server": server}}],
                "users": [{"name": "autotuner", "user": {"token": TOKEN}}],
                "contexts": [{"name": "test", "context": {"cluster": "test", "user": "autotuner"}}],
                "current-context": "test",
            }
        )
    )
    return path


@dataclass
class World:
    kube: FakeKubeApi
    redis: RedisServer
    exporter: SimExporter
    prometheus: PrometheusServer
    directory: Path

    @property
    def database_url(self) -> str:
        return f"sqlite:///{self.directory / 'audit.sqlite'}"


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with FakeKubeApi(token=TOKEN) as kube, RedisServer() as redis_server:
        kube.add(objects.deployment("crm", "api", 4))
        kube.add(objects.deployment("crm", "ml", 2))
        exporter = SimExporter(kube, redis_server.client())
        exporter.seed()
        exporter.start()
        try:
            with PrometheusServer([exporter.target]) as prometheus:
                (tmp_path / "rules").mkdir()
                (tmp_path / "rules" / "e2e.yaml").write_text(RULES)
                _kubeconfig(tmp_path / "kubeconfig", kube.url)
                yield World(kube, redis_server, exporter, prometheus, tmp_path)
        finally:
            exporter.stop()


class Daemon:
    """`autotuner run` as a child process, with its HTTP port known."""

    def __init__(self, world: World, *extra: str) -> None:
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOTUNER_")}
        self.log = (world.directory / f"daemon-{self.port}.log").open("w")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "autotuner",
                "run",
                "--prometheus-url",
                world.prometheus.url,
                "--redis-url",
                world.redis.url,
                "--kubeconfig",
                str(world.directory / "kubeconfig"),
                "--rules",
                str(world.directory / "rules"),
                "--database-url",
                world.database_url,
                "--interval-seconds",
                "1",
                "--ready-max-age-seconds",
                "3",
                "--allow-namespaces",
                "crm",
                "--allow-workloads",
                "api,ml",
                "--allow-key-prefixes",
                "crm:",
                "--http-host",
                "127.0.0.1",
                "--http-port",
                str(self.port),
                "--log-level",
                "debug",
                *extra,
            ],
            cwd=world.directory,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=self.log,
        )

    def get(self, path: str) -> int | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=2) as r:
                return int(r.status)
        except urllib.error.HTTPError as error:
            return int(error.code)
        except OSError:
            return None

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(30)
        finally:
            self.log.close()

    def events(self) -> list[dict[str, object]]:
        text = Path(self.log.name).read_text()
        return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    started: list[Daemon] = []
    yield started
    for daemon in started:
        if daemon.process.poll() is None:
            daemon.process.kill()
            daemon.process.wait(10)
        daemon.log.close()


def eventually(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout:g} s: {what}")


def _records(world: World, rule: str) -> list[object]:
    store = SqlStore(world.database_url, create=False)
    try:
        return list(store.history(rule=rule))
    finally:
        store.close()


def test_cache_hit_drop_and_latency_spike_are_acted_on_and_audited(
    world: World, daemons: list[Daemon]
) -> None:
    daemon = Daemon(world)
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
    ttl_records = _records(world, "cache-hit-rate-low")
    scale_records = _records(world, "api-latency-high")
    assert any(
        r.decision.knob.id == f"key/{USER_SESSIONS_TTL}"  # type: ignore[attr-defined]
        and r.outcome is not None  # type: ignore[attr-defined]
        and r.outcome.status is OutcomeStatus.APPLIED  # type: ignore[attr-defined]
        and r.decision.current == ttl_before  # type: ignore[attr-defined]
        for r in ttl_records
    ), ttl_records
    assert any(
        r.decision.knob.id == "deployment/crm/api"  # type: ignore[attr-defined]
        and r.outcome is not None  # type: ignore[attr-defined]
        and r.outcome.status is OutcomeStatus.APPLIED  # type: ignore[attr-defined]
        for r in scale_records
    ), scale_records
    scale_events = [e for e in world.kube.events("crm") if "autotuner" in json.dumps(e)]
    assert scale_events, "the scale was not announced with a Kubernetes Event"
