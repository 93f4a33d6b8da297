"""A test-only Kubernetes API server (see server.py). It is not part of the package."""

from tests.kube_api.server import FakeKubeApi, Fault, RecordedRequest, status_body

__all__ = ["FakeKubeApi", "Fault", "RecordedRequest", "status_body"]
