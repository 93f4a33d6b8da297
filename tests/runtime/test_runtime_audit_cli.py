"""`autotuner history` and `autotuner explain` over an audit written by the daemon's cycle."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from autotuner.adapters.sql_store import SqlStore
from autotuner.cli.main import main
from autotuner.core.model import KnobUnreadable, NoData
from autotuner.runtime.controller import Controller
from autotuner.runtime.guards import WatchedSource
from autotuner.runtime.http import ControllerMetrics
from autotuner.runtime.reloader import RuleReloader
from autotuner.runtime.settings import AllowList
from tests.fakes import FakeActuator, FakeSource

RULES = """
metrics:
  latency: latency_seconds
  hit_ratio: cache_hit_ratio
  pool: pool_usage
rules:
  - name: scale-api
    metric: latency
    above: 0.5
    cooldown: 2m
    action:
      scale: {deployment: api, namespace: crm, factor: 2, min: 1, max: 6}
  - name: shrink-api
    metric: latency
    below: 0.1
    for: 5m
    action:
      scale: {deployment: api, namespace: crm, factor: 0.5, min: 1, max: 6}
  - name: cache-ttl
    metric: hit_ratio
    below: 0.7
    action:
      set_key: {key: "crm:ttl:users", factor: 2, min: 10, max: 1000}
  - name: scale-worker
    metric: pool
    above: 0.8
    action:
      scale: {deployment: worker, namespace: crm, factor: 2, min: 1, max: 10}
"""

ALLOW = AllowList(namespaces=("crm",), workloads=("*",), key_prefixes=("crm:",))
API = "deployment/crm/api"
WORKER = "deployment/crm/worker"


class StepClock:
    def __init__(self) -> None:
        self.time = 1_800_000_000.0

    def now(self) -> float:
        return self.time


@pytest.fixture
def audit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """An audit where the API scaled up and then sat in cooldown, a cache had no data, and a
    worker was owned by an HPA."""
    for name in ("AUTOTUNER_DATABASE_URL", "AUTOTUNER_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    url = f"sqlite:///{tmp_path / 'audit.sqlite'}"
    store = SqlStore(url)
    source = FakeSource(
        values={"latency": 0.9, "hit_ratio": NoData("Prometheus timed out"), "pool": 0.95}
    )
    actuator = FakeActuator(
        knobs={API: 2},
        unreadable={
            WORKER: KnobUnreadable("owned by HorizontalPodAutoscaler crm/worker", skip=True)
        },
    )
    clock = StepClock()
    controller = Controller(
        reloader=RuleReloader([rules], ALLOW),
        source=WatchedSource(source, lambda metric, reason: None),
        actuators=[actuator],
        store=store,
        leadership=_Always(),
        metrics=ControllerMetrics(CollectorRegistry()),
        clock=clock,
        allow=ALLOW,
    )
    controller.cycle()
    clock.time += 40
    controller.cycle()
    store.close()
    return url


class _Always:
    def may_act(self) -> bool:
        return True

    def release(self) -> None:
        return None


def test_history_lists_changes_newest_first(audit: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["history", "--database-url", audit]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["TIME", "(UTC)", "RULE", "TARGET", "CHANGE", "OUTCOME", "WHY"]
    assert len(out) == 2
    assert "scale-api" in out[1] and API in out[1] and "2 -> 4" in out[1] and "applied" in out[1]


def test_history_filters_and_json(audit: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["history", "--database-url", audit, "--rule", "scale-api", "--json"]) == 0
    (record,) = json.loads(capsys.readouterr().out)
    assert record["target"] == API
    assert record["outcome"]["status"] == "applied"
    assert main(["history", "--database-url", audit, "--target", "key/*"]) == 0
    assert capsys.readouterr().out.strip() == "no decisions recorded that match"
    assert main(["history", "--database-url", audit, "--target", "deployment/*"]) == 0
    assert API in capsys.readouterr().out


def test_history_rejects_bad_arguments(audit: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["history", "--database-url", audit, "--since", "yesterday"]) == 2
    assert "--since" in capsys.readouterr().err


def test_history_without_a_database_says_so_and_creates_none(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nothing.sqlite"
    assert main(["history", "--database-url", f"sqlite:///{missing}"]) == 2
    assert "no audit database" in capsys.readouterr().err
    assert not missing.exists()


def test_explain_gives_the_last_change_and_the_cooldown(
    audit: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["explain", API, "--database-url", audit]) == 0
    out = capsys.readouterr().out
    assert "Last change:" in out and "rule scale-api asked for 2 -> 4, applied" in out
    assert "scale-api: firing, but nothing to change:" in out
    assert "in cooldown for 80s more" in out
    assert "shrink-api: nothing to do: latency is 0.9, not below 0.1." in out


def test_explain_says_when_an_hpa_owns_the_target(
    audit: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["explain", WORKER, "--database-url", audit]) == 0
    out = capsys.readouterr().out
    assert "Last change: none recorded." in out
    assert "the controller will not act" in out
    assert "owned by HorizontalPodAutoscaler" in out


def test_explain_says_when_there_is_no_data(audit: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", "key/crm:ttl:users", "--database-url", audit]) == 0
    out = capsys.readouterr().out
    assert "no data from the metric source (Prometheus timed out)" in out


def test_explain_json(audit: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", API, "--database-url", audit, "--json"]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert facts["last_change"]["final"] == 4
    assert {e["rule"] for e in facts["now"]} == {"scale-api", "shrink-api"}


def test_explain_unknown_target_suggests_a_known_one(
    audit: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["explain", "deployment/crm/apj", "--database-url", audit]) == 1
    assert "did you mean 'deployment/crm/api'" in capsys.readouterr().err
