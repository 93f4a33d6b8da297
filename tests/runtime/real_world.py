"""Real servers and the daemon as a child process, for the end-to-end and fault tests.

`World` is a test Kubernetes API, a real Redis, the simulated system as an exporter reading its
knobs back from both, and a real Prometheus scraping it. `DaemonProcess` is `autotuner run`
against that world. The rule files use short windows and cooldowns so that effects show
within seconds.
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
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml

from autotuner.adapters.sql_store import AuditRecord, SqlStore
from tests.integration.prometheus_server import PrometheusServer
from tests.integration.redis_server import RedisServer, free_port
from tests.kube_api import objects
from tests.kube_api.server import FakeKubeApi
from tests.runtime.sim_exporter import SimExporter

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


@contextmanager
def real_world(directory: Path) -> Iterator[World]:
    with FakeKubeApi(token=TOKEN) as kube, RedisServer() as redis_server:
        kube.add(objects.deployment("crm", "api", 4))
        kube.add(objects.deployment("crm", "ml", 2))
        exporter = SimExporter(kube, redis_server.client())
        exporter.seed()
        exporter.start()
        try:
            with PrometheusServer([exporter.target]) as prometheus:
                (directory / "rules").mkdir()
                (directory / "rules" / "e2e.yaml").write_text(RULES)
                _kubeconfig(directory / "kubeconfig", kube.url)
                yield World(kube, redis_server, exporter, prometheus, directory)
        finally:
            exporter.stop()


class DaemonProcess:
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


def eventually(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout:g} s: {what}")


def records(world: World, rule: str | None = None) -> list[AuditRecord]:
    store = SqlStore(world.database_url, create=False)
    try:
        return store.history(rule=rule)
    finally:
        store.close()
