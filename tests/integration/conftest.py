"""Fixtures shared by the integration tests. The Prometheus ones live in `prometheus_server`
so that tests elsewhere (the contract suite) can import them too."""

from tests.integration.prometheus_server import exporter, prometheus_server

__all__ = ["exporter", "prometheus_server"]
