"""The test Kubernetes API speaks the real shapes: the official client's models read them back."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import urllib3
from kubernetes import client

from tests.kube_api import objects
from tests.kube_api.server import FakeKubeApi, Fault


@pytest.fixture
def api() -> Iterator[FakeKubeApi]:
    with FakeKubeApi() as server:
        yield server


@pytest.fixture
def api_client(api: FakeKubeApi) -> Iterator[client.ApiClient]:
    configuration = client.Configuration(host=api.url)
    configuration.retries = False
    with client.ApiClient(configuration) as api_client:
        yield api_client


def _round_trip(payload: objects.JsonObject, model: str) -> object:
    return client.ApiClient().deserialize(json.dumps(payload), model, "application/json")


@pytest.mark.parametrize(
    ("payload", "model"),
    [
        (objects.deployment("crm", "api", 3), "V1Deployment"),
        (objects.statefulset("crm", "db", 2), "V1StatefulSet"),
        (objects.horizontal_pod_autoscaler("crm", "api-hpa", "api"), "V2HorizontalPodAutoscaler"),
        (objects.lease("crm", "autotuner", "pod-a"), "V1Lease"),
    ],
)
def test_builders_deserialize_with_the_client_models(
    payload: objects.JsonObject, model: str
) -> None:
    parsed = _round_trip(payload, model)
    assert parsed.metadata.name == payload["metadata"]["name"]  # type: ignore[attr-defined]
    assert parsed.kind == payload["kind"]  # type: ignore[attr-defined]


def test_scale_subresource_round_trip_and_conflict(
    api: FakeKubeApi, api_client: client.ApiClient
) -> None:
    api.add(objects.deployment("crm", "api", 3))
    apps = client.AppsV1Api(api_client)
    scale = apps.read_namespaced_deployment_scale("api", "crm")
    assert isinstance(scale, client.V1Scale)
    assert scale.spec.replicas == 3 and scale.status.selector == "app=api"
    stale_version = scale.metadata.resource_version
    scale.spec.replicas = 5
    updated = apps.replace_namespaced_deployment_scale("api", "crm", scale)
    assert updated.spec.replicas == 5 and updated.metadata.resource_version != stale_version
    assert api.replicas("deployments", "crm", "api") == 5

    scale.spec.replicas = 7
    scale.metadata.resource_version = stale_version
    with pytest.raises(client.ApiException) as conflict:
        apps.replace_namespaced_deployment_scale("api", "crm", scale)
    assert conflict.value.status == 409
    status = _round_trip(json.loads(conflict.value.body), "V1Status")
    assert isinstance(status, client.V1Status) and status.reason == "Conflict"
    assert api.replicas("deployments", "crm", "api") == 5


def test_lists_deserialize(api: FakeKubeApi, api_client: client.ApiClient) -> None:
    api.add(objects.deployment("crm", "api", 3))
    api.add(objects.statefulset("crm", "db", 2))
    api.add(objects.horizontal_pod_autoscaler("crm", "api-hpa", "api"))
    api.add(objects.scaled_object("crm", "ml-so", "ml"))
    deployments = client.AppsV1Api(api_client).list_namespaced_deployment("crm")
    assert isinstance(deployments, client.V1DeploymentList)
    assert [d.spec.replicas for d in deployments.items] == [3]
    statefulsets = client.AppsV1Api(api_client).list_namespaced_stateful_set("crm")
    assert [s.metadata.name for s in statefulsets.items] == ["db"]
    hpas = client.AutoscalingV2Api(api_client).list_namespaced_horizontal_pod_autoscaler("crm")
    assert hpas.items[0].spec.scale_target_ref.name == "api"
    scaled = client.CustomObjectsApi(api_client).list_namespaced_custom_object(
        "keda.sh", "v1alpha1", "crm", "scaledobjects"
    )
    assert scaled["items"][0]["spec"]["scaleTargetRef"]["name"] == "ml"


def test_keda_not_installed_is_a_plain_404(api_client: client.ApiClient, api: FakeKubeApi) -> None:
    api.keda_installed = False
    with pytest.raises(client.ApiException) as missing:
        client.CustomObjectsApi(api_client).list_namespaced_custom_object(
            "keda.sh", "v1alpha1", "crm", "scaledobjects"
        )
    assert missing.value.status == 404


def test_events_and_leases(api: FakeKubeApi, api_client: client.ApiClient) -> None:
    api.add(objects.deployment("crm", "api", 3))
    event = client.CoreV1Event(
        metadata=client.V1ObjectMeta(generate_name="api."),
        involved_object=client.V1ObjectReference(kind="Deployment", namespace="crm", name="api"),
        reason="AutotunerScaled",
        message="scaled",
        type="Normal",
    )
    created = client.CoreV1Api(api_client).create_namespaced_event("crm", event)
    assert created.metadata.name.startswith("api.")
    assert [e["reason"] for e in api.events("crm")] == ["AutotunerScaled"]

    leases = client.CoordinationV1Api(api_client)
    lease = leases.create_namespaced_lease(
        "crm",
        client.V1Lease(
            metadata=client.V1ObjectMeta(name="autotuner"),
            spec=client.V1LeaseSpec(holder_identity="pod-a", lease_duration_seconds=15),
        ),
    )
    with pytest.raises(client.ApiException) as exists:
        leases.create_namespaced_lease("crm", lease)
    assert exists.value.status == 409
    read = leases.read_namespaced_lease("autotuner", "crm")
    read.spec.holder_identity = "pod-b"
    leases.replace_namespaced_lease("autotuner", "crm", read)
    with pytest.raises(client.ApiException) as stale:
        leases.replace_namespaced_lease("autotuner", "crm", read)
    assert stale.value.status == 409
    assert leases.read_namespaced_lease("autotuner", "crm").spec.holder_identity == "pod-b"


@pytest.mark.parametrize("status", [403, 404, 500, 503])
def test_injected_statuses(api: FakeKubeApi, api_client: client.ApiClient, status: int) -> None:
    api.add(objects.deployment("crm", "api", 3))
    api.inject(Fault(path="/scale$", method="GET", status=status, times=1))
    apps = client.AppsV1Api(api_client)
    with pytest.raises(client.ApiException) as failed:
        apps.read_namespaced_deployment_scale("api", "crm")
    assert failed.value.status == status
    assert apps.read_namespaced_deployment_scale("api", "crm").spec.replicas == 3


def test_slow_response_trips_the_client_timeout(
    api: FakeKubeApi, api_client: client.ApiClient
) -> None:
    api.add(objects.deployment("crm", "api", 3))
    api.inject(Fault(path="/scale$", delay=0.5, times=1))
    with pytest.raises(urllib3.exceptions.TimeoutError):
        client.AppsV1Api(api_client).read_namespaced_deployment_scale(
            "api", "crm", _request_timeout=0.1
        )


def test_bearer_token_is_required_when_set(api_client: client.ApiClient, api: FakeKubeApi) -> None:
    api.token = "secret-token"
    with pytest.raises(client.ApiException) as denied:
        client.AppsV1Api(api_client).list_namespaced_deployment("crm")
    assert denied.value.status == 401


def test_an_event_about_another_namespace_is_invalid(
    api: FakeKubeApi, api_client: client.ApiClient
) -> None:
    event = client.CoreV1Event(
        metadata=client.V1ObjectMeta(name="api.1"),
        involved_object=client.V1ObjectReference(kind="Deployment", namespace="shop", name="api"),
        reason="AutotunerScaled",
    )
    with pytest.raises(client.ApiException) as invalid:
        client.CoreV1Api(api_client).create_namespaced_event("crm", event)
    assert invalid.value.status == 422 and "involvedObject.namespace" in invalid.value.body
