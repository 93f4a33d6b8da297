"""The Kubernetes scale actuator's harness for the Actuator contract suite (tests/contract).

It pairs the actuator with the test Kubernetes API as its side door: knobs are Deployments in
namespace `crm`, created with the asked replica count; another writer scales them behind the
actuator's back; the stored count is read straight from the server's state.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from kubernetes import client

from autotuner.adapters.kubernetes_scale import KubernetesScaleActuator, KubernetesScaleSettings
from autotuner.core.model import KnobKind, KnobRef
from tests.kube_api import objects
from tests.kube_api.server import FakeKubeApi

NAMESPACE = "crm"


class KubernetesHarness:
    def __init__(self, api: FakeKubeApi) -> None:
        self._api = api
        configuration = client.Configuration(host=api.url)
        # A stopped server must fail fast, not after urllib3's default retries.
        configuration.retries = False
        self.actuator = KubernetesScaleActuator(
            client.ApiClient(configuration), KubernetesScaleSettings(request_timeout=2.0)
        )

    def close(self) -> None:
        self.actuator.close()

    def new_knob(self, value: float) -> KnobRef:
        name = f"web-{uuid.uuid4().hex[:8]}"
        self._api.add(objects.deployment(NAMESPACE, name, int(value)))
        return KnobRef(KnobKind.DEPLOYMENT, name, NAMESPACE)

    def absent_knob(self) -> KnobRef:
        return KnobRef(KnobKind.DEPLOYMENT, f"absent-{uuid.uuid4().hex[:8]}", NAMESPACE)

    def foreign_knob(self) -> KnobRef:
        return KnobRef(KnobKind.CONFIG_KEY, "crm:cache:ttl:sessions")

    def write_behind(self, knob: KnobRef, value: float) -> None:
        self._api.set_replicas("deployments", knob.namespace, knob.name, int(value))

    def value_of(self, knob: KnobRef) -> float | None:
        found = self._api.get("deployments", knob.namespace, knob.name)
        return None if found is None else float(found["spec"]["replicas"])

    def stop_backend(self) -> None:
        self._api.stop()


@contextmanager
def kubernetes_harness() -> Iterator[KubernetesHarness]:
    with FakeKubeApi() as api:
        harness = KubernetesHarness(api)
        try:
            yield harness
        finally:
            harness.close()
