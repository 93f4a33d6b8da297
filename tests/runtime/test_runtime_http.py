from __future__ import annotations

import logging
import socket
import struct
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from autotuner.runtime.http import ControllerMetrics, HttpServer, ProbeResult


class Probes:
    def __init__(self) -> None:
        self.alive = ProbeResult(True, "scheduler running")
        self.ready = ProbeResult(False, "no rules loaded")

    def liveness(self) -> ProbeResult:
        return self.alive

    def readiness(self) -> ProbeResult:
        return self.ready


@pytest.fixture
def served() -> Iterator[tuple[HttpServer, ControllerMetrics, Probes]]:
    registry = CollectorRegistry()
    metrics = ControllerMetrics(registry)
    probes = Probes()
    server = HttpServer(registry, probes.liveness, probes.readiness, host="127.0.0.1", port=0)
    server.start()
    yield server, metrics, probes
    server.stop()


def _get(server: HttpServer, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}{path}", timeout=5) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_probes_follow_their_callbacks(
    served: tuple[HttpServer, ControllerMetrics, Probes],
) -> None:
    server, _, probes = served
    assert _get(server, "/healthz") == (200, "ok: scheduler running\n")
    assert _get(server, "/readyz") == (503, "not ok: no rules loaded\n")
    probes.ready = ProbeResult(True, "12 rules, metrics answered 3 s ago")
    assert _get(server, "/readyz")[0] == 200
    probes.alive = ProbeResult(False, "scheduler stopped")
    assert _get(server, "/healthz")[0] == 503


def test_a_probe_that_raises_reads_as_failing() -> None:
    registry = CollectorRegistry()

    def broken() -> ProbeResult:
        raise RuntimeError("store closed")

    server = HttpServer(registry, broken, broken, host="127.0.0.1", port=0)
    server.start()
    try:
        status, body = _get(server, "/healthz")
    finally:
        server.stop()
    assert status == 503
    assert "store closed" in body


def test_metrics_exposes_the_controllers_own_metrics(
    served: tuple[HttpServer, ControllerMetrics, Probes],
) -> None:
    server, metrics, _ = served
    metrics.cycles.labels(result="ok").inc()
    metrics.cycle_duration.observe(0.2)
    metrics.rule_evaluations.labels(rule="api-latency", result="firing").inc(3)
    metrics.actions.labels(rule="api-latency", outcome="applied").inc()
    metrics.query_errors.labels(metric="api_p95_seconds").inc()
    metrics.rules_loaded.set(5)
    metrics.reload_errors.inc()
    metrics.last_success.set(1_700_000_000)
    metrics.leader.set(1)
    status, body = _get(server, "/metrics")
    assert status == 200
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }
    assert samples[("autotuner_cycles_total", (("result", "ok"),))] == 1
    assert samples[("autotuner_cycle_duration_seconds_count", ())] == 1
    key = ("autotuner_rule_evaluations_total", (("result", "firing"), ("rule", "api-latency")))
    assert samples[key] == 3
    key = ("autotuner_actions_total", (("outcome", "applied"), ("rule", "api-latency")))
    assert samples[key] == 1
    assert samples[("autotuner_query_errors_total", (("metric", "api_p95_seconds"),))] == 1
    assert samples[("autotuner_rules_loaded", ())] == 5
    assert samples[("autotuner_rule_reload_errors_total", ())] == 1
    assert samples[("autotuner_last_successful_cycle_timestamp_seconds", ())] == 1_700_000_000
    assert samples[("autotuner_leader", ())] == 1
    # Nothing from the process-global registry leaks in.
    assert "python_gc_objects_collected_total" not in body


def test_two_metric_sets_in_one_process_do_not_clash() -> None:
    first = ControllerMetrics(CollectorRegistry())
    second = ControllerMetrics(CollectorRegistry())
    first.rules_loaded.set(1)
    second.rules_loaded.set(2)
    assert first.registry.get_sample_value("autotuner_rules_loaded") == 1
    assert second.registry.get_sample_value("autotuner_rules_loaded") == 2


def test_unknown_path_is_404(served: tuple[HttpServer, ControllerMetrics, Probes]) -> None:
    assert _get(served[0], "/nope")[0] == 404


def test_a_client_gone_before_the_answer_is_a_debug_line_not_a_traceback(
    served: tuple[HttpServer, ControllerMetrics, Probes],
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    server, metrics, _ = served
    for index in range(200):  # a /metrics answer long enough to need several writes
        metrics.query_errors.labels(metric=f"metric_{index}_" + "x" * 200).inc()
    caplog.set_level(logging.DEBUG, logger="autotuner")
    for _ in range(5):
        client = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        client.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        # Closed unread with SO_LINGER 0: the kernel resets the connection, and the server's
        # writes fail with a broken pipe or a reset.
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()
    time.sleep(0.5)
    assert _get(server, "/healthz")[0] == 200
    captured = capfd.readouterr()
    assert "Traceback" not in captured.err + captured.out
    assert any(r.message == "http.client_gone" for r in caplog.records)
