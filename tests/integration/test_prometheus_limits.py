"""The Prometheus source against answers that would exhaust the daemon: a huge answer sent
chunked without a Content-Length (as Prometheus sends large ones), and one that trickles in."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import time
import tracemalloc
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Thread

import pytest

from autotuner.adapters.prometheus import PrometheusSettings, PrometheusSource
from autotuner.core.model import MetricQuery, NoData, Series
from autotuner.runtime.logging import configure_logging
from tests.integration.prometheus_server import PrometheusServer

pytestmark = pytest.mark.integration

MB = 1024 * 1024


def vector_parts(total_bytes: int) -> Iterator[bytes]:
    """A valid vector answer of about `total_bytes` in blocks of some 64 KiB, made as it is
    sent, never held whole."""
    yield b'{"status":"success","data":{"resultType":"vector","result":['
    sent, index, stamp = 0, 0, int(time.time())
    while sent < total_bytes:
        block = b",".join(
            b'{"metric":{"deployment":"api","pod":"api-%08d"},"value":[%d,"1"]}' % (i, stamp)
            for i in range(index, index + 800)
        )
        block = (b"," if index else b"") + block
        index += 800
        sent += len(block)
        yield block
    yield b"]}}"


class StreamingApi:
    """/api/v1/query answered by `mode`: "chunked" (40 MB, no Content-Length), or "drip" and
    "drip-chunked" (one byte per 100 ms, with and without a declared length)."""

    def __init__(self, mode: str, answer_bytes: int = 40 * MB) -> None:
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                # The source hanging up early is what these tests want.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    api.answer(self)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.mode = mode
        self.answer_bytes = answer_bytes
        self.sent_bytes = 0
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self._thread = Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> StreamingApi:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def answer(self, handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        body = b'{"status":"success","data":{"resultType":"vector","result":[]}}'
        if self.mode == "drip":
            handler.send_header("Content-Length", str(len(body)))
        else:
            handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        if self.mode == "chunked":
            for block in vector_parts(self.answer_bytes):
                self._chunk(handler, block)
        else:
            for byte in body:
                time.sleep(0.1)
                if self.mode == "drip":
                    handler.wfile.write(bytes([byte]))
                    handler.wfile.flush()
                    self.sent_bytes += 1
                else:
                    self._chunk(handler, bytes([byte]))
        handler.wfile.write(b"0\r\n\r\n" if self.mode != "drip" else b"")

    def _chunk(self, handler: BaseHTTPRequestHandler, data: bytes) -> None:
        handler.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        handler.wfile.flush()
        self.sent_bytes += len(data)


def test_a_chunked_40_mb_answer_is_no_data_naming_the_cap_and_memory_stays_small() -> None:
    with StreamingApi("chunked") as api:
        settings = PrometheusSettings(api.url, timeout_seconds=30)
        with PrometheusSource(settings) as source:
            tracemalloc.start()
            try:
                answer = source.fetch([MetricQuery("m", "huge")], time.time())["m"]
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
    assert isinstance(answer, NoData), answer
    cap = settings.max_response_bytes
    assert f"the answer is larger than {cap} bytes (the source's max_response_bytes)" in (
        answer.reason
    )
    # What was read is held until the cap, no more: the whole answer parsed took some 1 GB.
    assert peak < cap + 8 * MB, f"peak traced memory {peak / MB:.1f} MiB"
    assert api.sent_bytes < 40 * MB


def test_an_answer_under_the_cap_sent_chunked_is_read_whole() -> None:
    with (
        StreamingApi("chunked", answer_bytes=2 * MB) as api,
        PrometheusSource(PrometheusSettings(api.url)) as source,
    ):
        answer = source.fetch([MetricQuery("m", "big")], time.time())["m"]
    assert isinstance(answer, Series)
    assert len(answer.samples) > 20_000


@pytest.mark.parametrize("mode", ["drip", "drip-chunked"])
def test_an_answer_trickling_in_ends_at_the_whole_query_deadline(mode: str) -> None:
    with (
        StreamingApi(mode) as api,
        PrometheusSource(PrometheusSettings(api.url, timeout_seconds=1)) as source,
    ):
        started = time.monotonic()
        answer = source.fetch([MetricQuery("m", "slow")], time.time())["m"]
        elapsed = time.monotonic() - started
    assert isinstance(answer, NoData), answer
    assert answer.reason == (f"Prometheus at {api.url} did not send its whole answer within 1 s")
    # Each byte came well within any per-read timeout; only the whole-query deadline ends it.
    assert 1.0 <= elapsed < 1.6
    assert 3 <= api.sent_bytes <= 12


def test_a_65000_character_label_value_from_a_real_prometheus_is_logged_at_once(
    prometheus_server: PrometheusServer,
) -> None:
    # A run of letters is what made the old URL-password pattern quadratic: 2 minutes a line.
    value = "a" * 65_000
    expr = f'label_replace(vector(0) / 0, "pod", "{value}", "", "")'
    stream = io.StringIO()
    handler = configure_logging("INFO", stream=stream)
    try:
        with PrometheusSource(PrometheusSettings(prometheus_server.url)) as source:
            started = time.monotonic()
            answer = source.fetch([MetricQuery("m", expr)], time.time())["m"]
            elapsed = time.monotonic() - started
    finally:
        logging.getLogger().removeHandler(handler)
    assert isinstance(answer, NoData) and value in answer.reason
    [event] = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert event["event"] == "metric.no_data" and value in json.dumps(event)
    assert elapsed < 1.0, f"{elapsed:.2f} s to fetch and log one answer"
