"""The Kubernetes scale actuator, driven through the official client against tests/kube_api."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from autotuner.adapters.kubernetes_scale import (
    EVENT_REASON,
    KubernetesConfigError,
    KubernetesScaleActuator,
    KubernetesScaleSettings,
    api_client_auto,
    api_client_from_kubeconfig,
    api_client_in_cluster,
)
from autotuner.core.model import (
    Decision,
    KnobKind,
    KnobRef,
    KnobUnreadable,
    KnobValue,
    OutcomeStatus,
    Phase,
    PolicyStep,
    Verdict,
    labels_of,
)
from tests.kube_api import objects
from tests.kube_api.server import FakeKubeApi, Fault

pytestmark = pytest.mark.integration

TOKEN = "test-service-account-token"
API = KnobRef(KnobKind.DEPLOYMENT, "api", "crm")
ML = KnobRef(KnobKind.DEPLOYMENT, "ml", "crm")
DB = KnobRef(KnobKind.STATEFULSET, "db", "crm")
SCALE_PATH = "/deployments/api/scale$"
NOW = 1_790_000_000.0


def write_kubeconfig(path: Path, server: str, token: str = TOKEN) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "test", "cluster": {"server": server}}],
                "users": [{"name": "autotuner", "user": {"token": token}}],
                "contexts": [{"name": "test", "context": {"cluster": "test", "user": "autotuner"}}],
                "current-context": "test",
            }
        )
    )
    return path


@pytest.fixture
def kube() -> Iterator[FakeKubeApi]:
    with FakeKubeApi(token=TOKEN) as api:
        api.add(objects.deployment("crm", "api", 3))
        api.add(objects.deployment("crm", "ml", 2))
        api.add(objects.statefulset("crm", "db", 1))
        yield api


@pytest.fixture
def actuator(kube: FakeKubeApi, tmp_path: Path) -> Iterator[KubernetesScaleActuator]:
    api_client = api_client_from_kubeconfig(
        str(write_kubeconfig(tmp_path / "kubeconfig", kube.url))
    )
    scaler = KubernetesScaleActuator(
        api_client,
        KubernetesScaleSettings(request_timeout=1.0, instance="autotuner-0"),
        clock=lambda: NOW,
    )
    yield scaler
    scaler.close()


def decision(
    knob: KnobRef = API, current: float | None = 3, final: float | None = 5, **changes: object
) -> Decision:
    fields: dict[str, object] = {
        "time": NOW,
        "rule": "api-latency-high",
        "labels": labels_of({"namespace": knob.namespace, "deployment": knob.name}),
        "knob": knob,
        "verdict": Verdict.CHANGE,
        "phase": Phase.FIRING,
        "metric": "api_p95_seconds",
        "value": 0.92,
        "threshold": 0.5,
        "current": current,
        "proposed": final,
        "final": final,
    }
    fields.update(changes)
    return Decision(**fields)  # type: ignore[arg-type]


# Reading --------------------------------------------------------------------------------------


def test_read_gives_replicas_with_one_list_per_namespace_and_kind(
    kube: FakeKubeApi, actuator: KubernetesScaleActuator
) -> None:
    kube.add(objects.deployment("shop", "web", 4))
    web = KnobRef(KnobKind.DEPLOYMENT, "web", "shop")
    readings = actuator.read([API, ML, DB, web])
    assert readings == {
        API: KnobValue(3.0),
        ML: KnobValue(2.0),
        DB: KnobValue(1.0),
        web: KnobValue(4.0),
    }
    gets = [r.path for r in kube.requests if r.method == "GET"]
    assert sorted(gets) == sorted(
        [
            "/apis/apps/v1/namespaces/crm/deployments",
            "/apis/apps/v1/namespaces/crm/statefulsets",
            "/apis/autoscaling/v2/namespaces/crm/horizontalpodautoscalers",
            "/apis/keda.sh/v1alpha1/namespaces/crm/scaledobjects",
            "/apis/apps/v1/namespaces/shop/deployments",
            "/apis/autoscaling/v2/namespaces/shop/horizontalpodautoscalers",
            "/apis/keda.sh/v1alpha1/namespaces/shop/scaledobjects",
        ]
    )


def test_missing_workload_reads_as_missing(actuator: KubernetesScaleActuator) -> None:
    gone = KnobRef(KnobKind.DEPLOYMENT, "gone", "crm")
    reading = actuator.read([gone])[gone]
    assert reading == KnobUnreadable("Deployment crm/gone not found", missing=True)


def test_targets_of_other_autoscalers_and_paused_ones_are_skipped(
    kube: FakeKubeApi, actuator: KubernetesScaleActuator
) -> None:
    kube.add(objects.horizontal_pod_autoscaler("crm", "api-hpa", "api"))
    kube.add(objects.scaled_object("crm", "ml-so", "ml"))
    kube.add(objects.statefulset("crm", "db", 1, annotations={"autotuner.io/paused": "true"}))
    readings = actuator.read([API, ML, DB])
    assert readings[API] == KnobUnreadable(
        "Deployment crm/api is owned by HorizontalPodAutoscaler crm/api-hpa; not scaling it",
        skip=True,
    )
    assert readings[ML] == KnobUnreadable(
        "Deployment crm/ml is owned by KEDA ScaledObject crm/ml-so; not scaling it", skip=True
    )
    assert readings[DB] == KnobUnreadable(
        'StatefulSet crm/db is paused by its annotation autotuner.io/paused: "true"', skip=True
    )


def test_an_hpa_on_another_kind_with_the_same_name_does_not_block(
    kube: FakeKubeApi, actuator: KubernetesScaleActuator
) -> None:
    kube.add(objects.horizontal_pod_autoscaler("crm", "api-hpa", "api", target_kind="StatefulSet"))
    kube.add(objects.deployment("crm", "ml", 2, annotations={"autotuner.io/paused": "false"}))
    assert actuator.read([API, ML]) == {API: KnobValue(3.0), ML: KnobValue(2.0)}


def test_keda_not_installed_is_normal(kube: FakeKubeApi, actuator: KubernetesScaleActuator) -> None:
    kube.keda_installed = False
    assert actuator.read([API]) == {API: KnobValue(3.0)}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("horizontalpodautoscalers$", "list horizontalpodautoscalers.autoscaling in crm"),
        ("scaledobjects$", "list scaledobjects.keda.sh in crm"),
        ("/deployments$", "list deployments.apps in crm"),
    ],
)
def test_forbidden_lists_make_targets_unreadable_with_the_permission_to_grant(
    kube: FakeKubeApi, actuator: KubernetesScaleActuator, path: str, expected: str
) -> None:
    kube.inject(Fault(path=path, status=403))
    reading = actuator.read([API])[API]
    assert isinstance(reading, KnobUnreadable)
    assert not reading.skip and not reading.missing
    assert "forbidden (403)" in reading.reason and expected in reading.reason


def test_read_of_an_unreachable_server_is_unreadable(
    kube: FakeKubeApi, actuator: KubernetesScaleActuator
) -> None:
    kube.stop()
    reading = actuator.read([API, DB])
    assert all(isinstance(r, KnobUnreadable) for r in reading.values())
    assert "cannot reach the API server" in reading[API].reason  # type: ignore[union-attr]


def test_config_keys_are_not_handled(actuator: KubernetesScaleActuator) -> None:
    key = KnobRef(KnobKind.CONFIG_KEY, "crm:db:pool_size")
    assert not actuator.handles(key) and actuator.handles(API) and actuator.handles(DB)
    assert isinstance(actuator.read([key])[key], KnobUnreadable)
    outcome = actuator.apply(decision(key))
    assert outcome.status is OutcomeStatus.FAILED and outcome.extra["error"] == "invalid"


# Applying -------------------------------------------------------------------------------------


def test_apply_scales_with_the_resource_version_read_and_records_an_event(
    kube: FakeKubeApi, actuator: KubernetesScaleActuator
) -> None:
    version_before = kube.get("deployments", "crm", "api")["metadata"]["resourceVersion"]  # type: ignore[index]
    steps = (PolicyStep("max_replicas", 6, 5, "at most 5"),)
    outcome = actuator.apply(decision(steps=steps))
    assert outcome.status is OutcomeStatus.APPLIED, outcome.detail
    assert (outcome.old, outcome.new) == (3, 5)
    assert outcome.detail == "scaled Deployment crm/api from 3 to 5 replicas"
    assert kube.replicas("deployments", "crm", "api") == 5
    (put,) = kube.writes(SCALE_PATH)
    assert put.body["metadata"]["resourceVersion"] == version_before
    assert put.body["spec"] == {"replicas": 5}

    (event,) = kube.events("crm")
    deployment = kube.get("deployments", "crm", "api")
    assert deployment is not None
    assert event["reason"] == EVENT_REASON and event["type"] == "Normal"
    assert event["involvedObject"]["uid"] == deployment["metadata"]["uid"]
    assert event["involvedObject"]["kind"] == "Deployment"
    assert event["message"] == (
        'rule api-latency-high: api_p95_seconds{deployment="api", namespace="crm"} = 0.92 '
        "against threshold 0.5; replicas 3 -> 5 (limited by max_replicas)"
    )
    assert event["reportingInstance"] == "autotuner-0"
    assert outcome.extra["event"] == event["metadata"]["name"]


def test_apply_scales_a_statefulset(kube: FakeKubeApi, actuator: KubernetesScaleActuator) -> None:
    outcome = actuator.apply(decision(DB, 1, 2))
    assert outcome.status is OutcomeStatus.APPLIED, outcome.detail
    assert kube.replicas("statefulsets", "crm", "db") == 2


def test_conflict_with_unchanged_replicas_is_retried_once(
    kube: FakeKubeApi, actuator: KubernetesScaleActuator
) -> None:
    staged = []

    def touch_before_first_write(method: str, path: str) -> None:
        if method == "PUT" and path.endswith("/scale") and not staged:
            staged.append(path)
            kube.annotate("deployments", "crm", "api", "team", "checkout")

    kube.before_each_request(touch_before_first_write)
    outcome = actuator.apply(decision())
    assert outcome.status is OutcomeStatus.APPLIED, outcome.detail
    assert "after re-reading it on a 409 conflict" in outcome.detail
    assert len(kube.writes(SCALE_PATH)) == 2
    assert kube.replicas("deployments", "crm", "api") == 5


def test_conflict_with_changed_replicas_does_not_clobber(
    kube: FakeKubeApi, actuator: KubernetesScaleActuator
) -> None:
    def another_writer_scales(method: str, path: str) -> None:
        if method == "PUT" and path.endswith("/scale"):
            kube.set_replicas("deployments", "crm", "api", 8)

    kube.before_each_request(another_writer_scales)
    outcome = actuator.apply(decision())
    assert outcome.status is OutcomeStatus.SKIPPED
    assert outcome.extra["error"] == "changed" and outcome.extra["found"] == "8"
    assert "has 8 replicas, not the 3 this decision started from" in outcome.detail
    assert kube.replicas("deployments", "crm", "api") == 8
    assert len(kube.writes(SCALE_PATH)) == 1
    assert kube.events("crm") == []


def test_a_second_conflict_fails_without_writing(
    kube: FakeKubeApi, actuator: KubernetesScaleActuator
) -> None:
    def touch_before_every_write(method: str, path: str) -> None:
        if method == "PUT" and path.endswith("/scale"):
            kube.annotate("deployments", "crm", "api", "touched", path)

    kube.before_each_request(touch_before_every_write)
    outcome = actuator.apply(decision())
    assert outcome.status is OutcomeStatus.FAILED
    assert outcome.extra["error"] == "conflict" and "409 twice" in outcome.detail
    assert kube.replicas("deployments", "crm", "api") == 3


def test_replicas_changed_since_the_decision_are_left_alone(
    kube: FakeKubeApi, actuator: KubernetesScaleActuator
) -> None:
    assert actuator.read([API]) == {API: KnobValue(3.0)}
    kube.set_replicas("deployments", "crm", "api", 4)
    outcome = actuator.apply(decision())
    assert outcome.status is OutcomeStatus.SKIPPED and outcome.extra["error"] == "changed"
    assert kube.writes(SCALE_PATH) == []
    assert kube.replicas("deployments", "crm", "api") == 4


def test_ownership_is_checked_again_when_applying(
    kube: FakeKubeApi, actuator: KubernetesScaleActuator
) -> None:
    assert actuator.read([API, ML]) == {API: KnobValue(3.0), ML: KnobValue(2.0)}
    kube.add(objects.horizontal_pod_autoscaler("crm", "api-hpa", "api"))
    kube.annotate("deployments", "crm", "ml", "autotuner.io/paused", "true")
    owned = actuator.apply(decision())
    paused = actuator.apply(decision(ML, 2, 3))
    assert owned.status is OutcomeStatus.SKIPPED and owned.extra["error"] == "owned"
    assert "HorizontalPodAutoscaler crm/api-hpa" in owned.detail
    assert paused.status is OutcomeStatus.SKIPPED and paused.extra["error"] == "paused"
    assert kube.writes("/scale$") == []


def test_dry_run_and_non_change_verdicts_write_nothing(
    kube: FakeKubeApi, actuator: KubernetesScaleActuator
) -> None:
    dry = actuator.apply(decision(dry_run=True))
    hold = actuator.apply(decision(verdict=Verdict.HOLD))
    fractional = actuator.apply(decision(final=4.5))
    assert dry.status is OutcomeStatus.DRY_RUN and (dry.old, dry.new) == (3, 5)
    assert hold.status is OutcomeStatus.SKIPPED
    assert fractional.status is OutcomeStatus.FAILED and "whole number" in fractional.detail
    assert kube.writes() == []


@pytest.mark.parametrize(
    ("fault", "error", "words"),
    [
        (Fault(path=SCALE_PATH, method="PUT", status=404), "not_found", "not found (404)"),
        (
            Fault(path=SCALE_PATH, method="PUT", status=403),
            "forbidden",
            "grant the controller's service account RBAC to update deployments/scale in crm",
        ),
        (
            Fault(path=SCALE_PATH, method="PUT", status=500),
            "server_error",
            "API server failed (500)",
        ),
        (
            Fault(path=SCALE_PATH, method="PUT", status=503),
            "server_error",
            "API server failed (503)",
        ),
        (Fault(path=SCALE_PATH, method="PUT", status=429), "throttled", "throttled"),
        (
            Fault(path=SCALE_PATH, method="PUT", delay=2.5),
            "timeout",
            "no answer from the API server within 1s; the change may or may not have taken effect",
        ),
        (
            Fault(path="/deployments/api$", method="GET", status=404),
            "not_found",
            "reading Deployment crm/api failed: not found (404)",
        ),
    ],
)
def test_each_api_failure_is_a_distinct_clear_outcome(
    kube: FakeKubeApi, actuator: KubernetesScaleActuator, fault: Fault, error: str, words: str
) -> None:
    kube.inject(fault)
    outcome = actuator.apply(decision())
    # A write sent and not answered may have taken effect: uncertain, not failed.
    timed_out_write = error == "timeout" and fault.method == "PUT"
    assert outcome.status is (OutcomeStatus.UNCERTAIN if timed_out_write else OutcomeStatus.FAILED)
    assert outcome.extra["error"] == error
    assert words in outcome.detail
    assert kube.events("crm") == []


def test_a_deleted_target_is_not_found(
    kube: FakeKubeApi, actuator: KubernetesScaleActuator
) -> None:
    kube.delete("deployments", "crm", "api")
    outcome = actuator.apply(decision())
    assert outcome.status is OutcomeStatus.FAILED and outcome.extra["error"] == "not_found"
    assert 'deployments.apps "api" not found' in outcome.detail


def test_an_unreachable_server_fails_clearly(
    kube: FakeKubeApi, actuator: KubernetesScaleActuator
) -> None:
    kube.stop()
    outcome = actuator.apply(decision())
    assert outcome.status is OutcomeStatus.FAILED and outcome.extra["error"] == "unreachable"
    assert "cannot reach the API server at http://127.0.0.1:" in outcome.detail


def test_a_wrong_token_is_unauthorized(kube: FakeKubeApi, tmp_path: Path) -> None:
    path = write_kubeconfig(tmp_path / "kubeconfig", kube.url, token="wrong")
    scaler = KubernetesScaleActuator(api_client_from_kubeconfig(str(path)))
    outcome = scaler.apply(decision())
    assert outcome.status is OutcomeStatus.FAILED and outcome.extra["error"] == "unauthorized"
    assert "check the token or kubeconfig credentials" in outcome.detail


def test_an_event_that_cannot_be_recorded_does_not_undo_the_scale(
    kube: FakeKubeApi, actuator: KubernetesScaleActuator
) -> None:
    kube.inject(Fault(path="/events$", method="POST", status=403))
    outcome = actuator.apply(decision())
    assert outcome.status is OutcomeStatus.APPLIED
    assert outcome.extra["event"].startswith("not recorded: creating the event failed: forbidden")
    assert "create events in crm" in outcome.detail
    assert kube.replicas("deployments", "crm", "api") == 5


# Configuration -------------------------------------------------------------------------------


def test_in_cluster_configuration_over_tls(tmp_path: Path) -> None:
    cert, key = tmp_path / "ca.crt", tmp_path / "tls.key"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    token = tmp_path / "token"
    token.write_text(TOKEN)
    with FakeKubeApi(token=TOKEN, tls=(str(cert), str(key))) as kube:
        kube.add(objects.deployment("crm", "api", 3))
        api_client = api_client_in_cluster(
            token_path=str(token),
            ca_path=str(cert),
            environ={
                "KUBERNETES_SERVICE_HOST": "127.0.0.1",
                "KUBERNETES_SERVICE_PORT": str(kube.port),
            },
        )
        scaler = KubernetesScaleActuator(api_client)
        assert scaler.read([API]) == {API: KnobValue(3.0)}
        assert scaler.apply(decision()).status is OutcomeStatus.APPLIED
        scaler.close()


def test_configuration_errors_say_what_to_fix(tmp_path: Path) -> None:
    with pytest.raises(KubernetesConfigError, match=r"cannot use kubeconfig .*missing"):
        api_client_from_kubeconfig(str(tmp_path / "missing"))
    with pytest.raises(KubernetesConfigError, match="in-cluster service account"):
        api_client_in_cluster(token_path=str(tmp_path / "token"), environ={})
    with pytest.raises(ValueError, match="request_timeout"):
        KubernetesScaleSettings(request_timeout=0)


def test_auto_configuration_uses_the_kubeconfig_outside_a_pod(
    kube: FakeKubeApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(write_kubeconfig(tmp_path / "kubeconfig", kube.url)))
    scaler = KubernetesScaleActuator(api_client_auto())
    assert scaler.read([API]) == {API: KnobValue(3.0)}
    scaler.close()
