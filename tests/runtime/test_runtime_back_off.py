"""A target whose writes keep failing is backed off, per knob, against the test Kubernetes API.

Without a back-off a Deployment the controller may not scale (403) or that is gone (404) gets
a PUT and a FAILED audit row every cycle; with it, the attempts thin out exponentially up to
a cap, the other targets go on, `autotuner explain` says when the next attempt is, and the
first success forgets the failures.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from autotuner.adapters.kubernetes_scale import (
    KubernetesScaleActuator,
    KubernetesScaleSettings,
    api_client_from_kubeconfig,
)
from autotuner.adapters.sql_store import SqlStore
from autotuner.cli.main import main
from autotuner.core.model import Decision, KnobKind, KnobRef, Outcome, OutcomeStatus, Phase, Verdict
from autotuner.runtime.controller import Controller, SoleReplica
from autotuner.runtime.guards import BACK_OFF_CAP, BACK_OFF_FIRST, FailureBackOff, WatchedSource
from autotuner.runtime.http import ControllerMetrics
from autotuner.runtime.reloader import RuleReloader
from autotuner.runtime.settings import AllowList
from tests.fakes import FakeSource
from tests.integration.test_kubernetes_scale import TOKEN, write_kubeconfig
from tests.kube_api import objects
from tests.kube_api.server import FakeKubeApi, Fault

pytestmark = pytest.mark.integration

RULES = """
metrics:
  latency: latency_seconds
rules:
  - name: scale-api
    metric: latency
    above: 0.5
    action:
      scale: {deployment: api, namespace: crm, step: 1, max: 10}
  - name: scale-web
    metric: latency
    above: 0.5
    action:
      scale: {deployment: web, namespace: crm, step: 1, max: 10}
"""
INTERVAL = 15.0
API_SCALE = "/deployments/api/scale$"


class StepClock:
    def __init__(self) -> None:
        self.time = 1_790_000_000.0

    def now(self) -> float:
        return self.time


class Rig:
    def __init__(self, kube: FakeKubeApi, tmp_path: Path) -> None:
        (tmp_path / "rules.yaml").write_text(RULES)
        self.database_url = f"sqlite:///{tmp_path / 'audit.sqlite'}"
        self.store = SqlStore(self.database_url)
        self.clock = StepClock()
        client = api_client_from_kubeconfig(
            str(write_kubeconfig(tmp_path / "kubeconfig", kube.url))
        )
        self.actuator = KubernetesScaleActuator(
            client, KubernetesScaleSettings(request_timeout=2.0), clock=self.clock.now
        )
        self.controller = Controller(
            reloader=RuleReloader([tmp_path / "rules.yaml"], ALLOW),
            source=WatchedSource(FakeSource({"latency": 0.9}), lambda metric, reason: None),
            actuators=[self.actuator],
            store=self.store,
            leadership=SoleReplica(),
            metrics=ControllerMetrics(CollectorRegistry()),
            clock=self.clock,
            allow=ALLOW,
        )

    def run_for(self, seconds: float) -> None:
        for _ in range(round(seconds / INTERVAL)):
            self.controller.cycle()
            self.clock.time += INTERVAL

    def rows(self, knob: str) -> list[OutcomeStatus | None]:
        records = sorted(self.store.last_decisions(knob, limit=10_000), key=lambda r: r.id)
        return [r.outcome.status if r.outcome else None for r in records]

    def close(self) -> None:
        self.actuator.close()
        self.store.close()


ALLOW = AllowList(namespaces=("crm",), workloads=("api", "web"))


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[tuple[Rig, FakeKubeApi]]:
    with FakeKubeApi(token=TOKEN) as kube:
        kube.add(objects.deployment("crm", "api", 2))
        kube.add(objects.deployment("crm", "web", 2))
        built = Rig(kube, tmp_path)
        yield built, kube
        built.close()


@pytest.mark.parametrize("status", [403, 404])
def test_a_target_failing_every_cycle_is_tried_ever_less_often(
    rig: tuple[Rig, FakeKubeApi], status: int
) -> None:
    built, kube = rig
    kube.inject(Fault(path=API_SCALE, method="PUT", status=status))
    built.run_for(600)  # 40 cycles
    # Tried at 0, 30, 90, 210 and 450 s: five PUTs and five FAILED rows, not forty.
    assert len(kube.writes(API_SCALE)) == 5
    assert built.rows("deployment/crm/api") == [OutcomeStatus.FAILED] * 5
    # The other target went on: one scale-up a cycle until its max.
    assert built.rows("deployment/crm/web") == [OutcomeStatus.APPLIED] * 8


def test_explain_says_the_target_is_backing_off_and_until_when(
    rig: tuple[Rig, FakeKubeApi], capsys: pytest.CaptureFixture[str]
) -> None:
    built, kube = rig
    kube.inject(Fault(path=API_SCALE, method="PUT", status=403))
    built.run_for(4 * INTERVAL)  # failed at 0 and 30 s; the last cycle, at 45 s, backs off
    code = main(["explain", "deployment/crm/api", "--database-url", built.database_url])
    assert code == 0
    out = capsys.readouterr().out
    assert "backing off: the last write failed 2 times in a row, next attempt in 45s" in out
    assert "forbidden (403)" in out
    assert (
        main(["explain", "deployment/crm/api", "--json", "--database-url", built.database_url]) == 0
    )
    entry = json.loads(capsys.readouterr().out)["now"][0]
    assert entry["verdict"] == "blocked" and "backing off" in entry["reason"]


def test_the_first_success_forgets_the_failures(rig: tuple[Rig, FakeKubeApi]) -> None:
    built, kube = rig
    kube.inject(Fault(path=API_SCALE, method="PUT", status=500))
    built.run_for(120)  # failed at 0, 30 and 90 s; backing off until 210 s
    kube.clear_faults()
    built.run_for(135)  # tried again at 210 s: applied, and again each cycle (225, 240 s)
    assert (
        built.rows("deployment/crm/api") == [OutcomeStatus.FAILED] * 3 + [OutcomeStatus.APPLIED] * 3
    )


def test_the_back_off_doubles_up_to_its_cap() -> None:
    knob = KnobRef(KnobKind.DEPLOYMENT, "api", "crm")
    decision = Decision(0.0, "r", (), knob, Verdict.CHANGE, Phase.FIRING, "m", 1, 0.5, 2, 3, 3)
    back_off = FailureBackOff()
    now, waits = 0.0, []
    for _ in range(10):
        back_off.observe(decision._replace(time=now), Outcome(OutcomeStatus.FAILED, "forbidden"))
        started = now
        while back_off.refusal(knob, now) is not None:
            now += 1
        waits.append(now - started)
    assert waits[:3] == [BACK_OFF_FIRST, 2 * BACK_OFF_FIRST, 4 * BACK_OFF_FIRST]
    assert waits[-1] == BACK_OFF_CAP
