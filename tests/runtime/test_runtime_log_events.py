"""Log events have stable dotted names and levels a log alert can match (docs/operations.md)."""

from __future__ import annotations

import ast
import io
import json
import logging
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from autotuner.adapters.prometheus import PrometheusSettings, PrometheusSource
from autotuner.core.model import MetricQuery, NoData
from autotuner.runtime.logging import configure_logging
from tests.integration.redis_server import free_port

ROOT = Path(__file__).resolve().parents[2]
EVENT_NAME = re.compile(r"[a-z]+(\.[a-z_]+)*")


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = configure_logging("DEBUG", stream=stream)
    try:
        yield stream
    finally:
        logging.getLogger().removeHandler(handler)


def _events(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def _query(name: str) -> MetricQuery:
    return MetricQuery(name, "sum(up)")


def test_an_unreachable_prometheus_is_a_warning_named_prometheus_unreachable(
    log_lines: io.StringIO,
) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with PrometheusSource(PrometheusSettings(url, timeout_seconds=2)) as source:
        answers = source.fetch([_query("api_load")], 1000.0)
    assert isinstance(answers["api_load"], NoData)
    [event] = [e for e in _events(log_lines) if e["logger"] == "autotuner.adapters.prometheus"]
    assert event["event"] == "prometheus.unreachable"
    assert event["level"] == "warning"
    assert event["metric"] == "api_load"
    assert str(event["reason"]).startswith(f"cannot reach Prometheus at {url}")


class _EmptyAnswers(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b'{"status":"success","data":{"resultType":"vector","result":[]}}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_a_metric_without_series_is_information_not_a_fault(log_lines: io.StringIO) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EmptyAnswers)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        with PrometheusSource(PrometheusSettings(url)) as source:
            source.fetch([_query("queue_depth")], 1000.0)
    finally:
        server.shutdown()
        server.server_close()
    [event] = [e for e in _events(log_lines) if e["logger"] == "autotuner.adapters.prometheus"]
    assert (event["event"], event["level"], event["metric"]) == (
        "metric.no_data",
        "info",
        "queue_depth",
    )


# Named by the Prometheus source's kind of failure (_failure_event), not at a log_event call.
PROMETHEUS_FAILURES = {
    "prometheus.unreachable": "WARNING",
    "prometheus.timeout": "WARNING",
    "prometheus.tls_failed": "WARNING",
    "prometheus.query_refused": "WARNING",
    "prometheus.answer_too_large": "WARNING",
    "prometheus.answer_unreadable": "WARNING",
    "metric.no_data": "INFO",
}


def _logged_events() -> dict[str, set[str]]:
    """Each event name logged with a literal name in the package, and the levels it has."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / "autotuner").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            is_call = isinstance(node, ast.Call) and getattr(node.func, "id", "") == "log_event"
            if not is_call or len(node.args) < 2:
                continue
            level = node.args[2] if len(node.args) > 2 else None
            level_name = (
                level.attr
                if isinstance(level, ast.Attribute)
                else "INFO"
                if level is None
                else "computed"  # `decision`: info for a change, debug for a hold
            )
            for name in ast.walk(node.args[1]):
                if isinstance(name, ast.Constant) and isinstance(name.value, str):
                    found.setdefault(name.value, set()).add(level_name)
    return found


def test_every_event_has_a_dotted_name_and_one_level() -> None:
    events = _logged_events()
    for name, levels in events.items():
        assert EVENT_NAME.fullmatch(name), f"{name!r} is not a dotted lowercase event name"
        assert len(levels) == 1, f"{name} is logged at several levels: {sorted(levels)}"


def test_every_event_is_listed_in_the_operations_guide_with_its_level() -> None:
    guide = (ROOT / "docs" / "operations.md").read_text()
    logs = guide[guide.index("## Logs") :]
    listed = {
        name: level
        for names, level in re.findall(r"^\| ((?:`[a-z_.]+`(?:, )?)+) \| (\w+) \|", logs, re.M)
        for name in re.findall(r"`([a-z_.]+)`", names)
    }
    events = {name: levels.pop() for name, levels in _logged_events().items()}
    events.update(PROMETHEUS_FAILURES)
    unlisted, gone = sorted(set(events) - set(listed)), sorted(set(listed) - set(events))
    assert not unlisted, f"add these events to docs/operations.md, Logs: {unlisted}"
    assert not gone, f"docs/operations.md, Logs, lists events never logged: {gone}"
    literal = {name: level.lower() for name, level in events.items() if level != "computed"}
    assert literal == {name: level for name, level in listed.items() if name in literal}
