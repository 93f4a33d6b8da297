"""The daemon's HTTP face: /healthz, /readyz and /metrics.

The controller's own metrics live in a `CollectorRegistry` passed in by the caller, never the
process-global one, so that each test (and each daemon in one process) has its own.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest

from autotuner.runtime.logging import log_event

_LOG = logging.getLogger(__name__)

# A prober or scraper that hangs up before its answer is written (a timeout on its side) is
# ordinary traffic, not a fault of the daemon.
_CLIENT_GONE = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError)


@dataclass(frozen=True, slots=True)
class ProbeResult:
    ok: bool
    detail: str


Probe = Callable[[], ProbeResult]


class ControllerMetrics:
    """The controller's own metrics, registered in the given registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.cycles = Counter(
            "autotuner_cycles",
            "Control cycles run, by result (ok, failed, standby).",
            ["result"],
            registry=registry,
        )
        self.cycle_duration = Histogram(
            "autotuner_cycle_duration_seconds",
            "Wall time of one control cycle.",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30, 60),
            registry=registry,
        )
        self.cycle_overruns = Counter(
            "autotuner_cycle_overruns",
            "Cycles that took longer than the interval, or runs skipped because one was still "
            "running.",
            registry=registry,
        )
        self.rule_evaluations = Counter(
            "autotuner_rule_evaluations",
            "Rule target evaluations, by rule and result (inactive, pending, firing, no_data).",
            ["rule", "result"],
            registry=registry,
        )
        self.actions = Counter(
            "autotuner_actions",
            "Decisions carried out, by rule and outcome (applied, dry_run, skipped, failed, uncertain).",
            ["rule", "outcome"],
            registry=registry,
        )
        self.query_errors = Counter(
            "autotuner_query_errors",
            "Metric queries that gave no usable answer, by metric name.",
            ["metric"],
            registry=registry,
        )
        self.rules_loaded = Gauge(
            "autotuner_rules_loaded",
            "Rules in the rule set currently running.",
            registry=registry,
        )
        self.reload_errors = Counter(
            "autotuner_rule_reload_errors",
            "Rule reloads rejected (invalid file, outside the allow-list); the previous rules "
            "kept running.",
            registry=registry,
        )
        self.last_success = Gauge(
            "autotuner_last_successful_cycle_timestamp_seconds",
            "Unix time at which the last cycle completed without error.",
            registry=registry,
        )
        target = ["rule", "target"]
        self.capacity_saturation = Gauge(
            "autotuner_capacity_saturation_rps",
            "Requests per second one replica serves at full utilisation, as an objective "
            "rule's capacity model has learned it.",
            target,
            registry=registry,
        )
        self.capacity_per_replica = Gauge(
            "autotuner_capacity_per_replica_rps",
            "Requests per second per replica the capacity model plans for at the aim.",
            target,
            registry=registry,
        )
        self.capacity_target_utilisation = Gauge(
            "autotuner_capacity_target_utilisation",
            "The utilisation the capacity model steers to (0..1).",
            target,
            registry=registry,
        )
        self.capacity_observations = Gauge(
            "autotuner_capacity_observations",
            "Settled observations the capacity model rests on.",
            target,
            registry=registry,
        )
        self.capacity_confidence = Gauge(
            "autotuner_capacity_confidence",
            "How sure the capacity model is (0: falls back, 1: decides).",
            target,
            registry=registry,
        )
        self.leader = Gauge(
            "autotuner_leader",
            "1 while this replica holds the leader lease and acts, else 0.",
            registry=registry,
        )


class HttpServer:
    """A small threaded HTTP server for the probes and the metrics; `port=0` picks a free one."""

    def __init__(
        self,
        registry: CollectorRegistry,
        liveness: Probe,
        readiness: Probe,
        host: str = "0.0.0.0",
        port: int = 8080,
    ) -> None:
        handler = _handler_class(registry, liveness, readiness)
        self._server = _QuietServer((host, port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="autotuner-http", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread.is_alive():
            self._thread.join(timeout=5)


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        # socketserver prints any other error's traceback to stderr, outside the JSON log.
        log_event(
            _LOG, "http.request_failed", logging.ERROR, client=str(client_address), exc_info=True
        )


def _handler_class(
    registry: CollectorRegistry, liveness: Probe, readiness: Probe
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def handle(self) -> None:
            try:
                super().handle()
            except _CLIENT_GONE as error:
                log_event(
                    _LOG, "http.client_gone", logging.DEBUG, path=self.path_seen, error=repr(error)
                )
                self.close_connection = True

        def finish(self) -> None:
            try:
                super().finish()
            except _CLIENT_GONE:
                return  # the flush of an answer nobody reads any more

        @property
        def path_seen(self) -> str:
            return str(getattr(self, "path", "")).split("?", 1)[0]

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._reply(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif path in ("/healthz", "/readyz"):
                probe = liveness if path == "/healthz" else readiness
                try:
                    result = probe()
                except Exception as error:  # a probe that breaks must read as "not ok"
                    result = ProbeResult(False, f"probe failed: {error}")
                status = 200 if result.ok else 503
                body = ("ok" if result.ok else "not ok") + f": {result.detail}\n"
                self._reply(status, body.encode(), "text/plain; charset=utf-8")
            else:
                self._reply(404, b"not found: try /healthz, /readyz or /metrics\n", "text/plain")

        def _reply(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            # Probe traffic every few seconds would drown the event log.
            return

    return Handler
