from __future__ import annotations

import io
import json
import logging
import time

import pytest

from autotuner.runtime.logging import REDACTED, Redactor, configure_logging, log_event


def _capture(secrets: tuple[str, ...] = ()) -> tuple[io.StringIO, logging.Handler]:
    stream = io.StringIO()
    handler = configure_logging("DEBUG", secrets=secrets, stream=stream)
    return stream, handler


def _events(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_one_json_object_per_line_with_fields() -> None:
    stream, handler = _capture()
    try:
        logger = logging.getLogger("autotuner.test")
        log_event(logger, "cycle.done", duration=0.25, decisions=2, note="two\nlines")
        log_event(logger, "cycle.start")
    finally:
        logging.getLogger().removeHandler(handler)
    events = _events(stream)
    assert len(events) == 2
    assert events[0]["event"] == "cycle.done"
    assert events[0]["level"] == "info"
    assert events[0]["logger"] == "autotuner.test"
    assert events[0]["duration"] == 0.25
    assert events[0]["note"] == "two\nlines"
    assert str(events[0]["ts"]).endswith("+00:00")


def test_secrets_are_redacted_everywhere() -> None:
    stream, handler = _capture(secrets=("hunter2",))
    try:
        logger = logging.getLogger("autotuner.test")
        log_event(
            logger,
            "connecting with hunter2",
            url="redis://:urlpass@cache:6379/0",
            redis_password="anything",
            headers={"Authorization": "Bearer abc.def"},
            detail="Authorization: Bearer tok123",
            nested=["x hunter2 y"],
        )
        try:
            raise RuntimeError("failed with hunter2")
        except RuntimeError:
            logger.exception("boom")
    finally:
        logging.getLogger().removeHandler(handler)
    text = stream.getvalue()
    for secret in ("hunter2", "urlpass", "anything", "abc.def", "tok123"):
        assert secret not in text
    first = _events(stream)[0]
    assert first["url"] == f"redis://:{REDACTED}@cache:6379/0"
    assert first["redis_password"] == REDACTED


def test_redactor_leaves_plain_values_alone() -> None:
    redactor = Redactor(["s3cret"])
    assert redactor.value("replicas", 3) == 3
    assert redactor.value("knob", "deployment/crm/api") == "deployment/crm/api"
    assert redactor.text("http://prometheus:9090/api") == "http://prometheus:9090/api"


def test_level_filters_debug() -> None:
    stream = io.StringIO()
    handler = configure_logging("INFO", stream=stream)
    try:
        log_event(logging.getLogger("autotuner.test"), "noise", level=logging.DEBUG)
        log_event(logging.getLogger("autotuner.test"), "signal")
    finally:
        logging.getLogger().removeHandler(handler)
    assert [e["event"] for e in _events(stream)] == ["signal"]


@pytest.mark.parametrize(
    "url",
    [
        "redis://:urlpass@cache:6379/0",
        "postgresql+psycopg://autotuner:urlpass@db:5432/audit",
        "https://user:urlpass@prometheus.example:9090/api",
        "see (redis://:urlpass@cache) and retry",
    ],
)
def test_a_url_password_is_redacted_in_every_form(url: str) -> None:
    redacted = Redactor().text(url)
    assert "urlpass" not in redacted
    assert f":{REDACTED}@" in redacted


# Label values reach the logs through "no data" reasons and decision text, at any length: the
# redactor must take time linear in it (the old URL pattern took minutes at 65,000 characters).
_LONG_VALUES = {
    "letters": lambda n: "a" * n,
    "scheme-characters": lambda n: ("x1+.-" * n)[:n],
    "scheme-then-no-password": lambda n: "a://" + "u" * n,
    "password-without-host": lambda n: "a://user:" + "p" * n,
    "many-urls-without-host": lambda n: ("s://u:p" * n)[:n],
}


@pytest.mark.parametrize("length", [65_000, 1_000_000])
@pytest.mark.parametrize("shape", sorted(_LONG_VALUES))
def test_a_long_label_value_is_redacted_in_linear_time(shape: str, length: int) -> None:
    value = _LONG_VALUES[shape](length)
    line = f'no data for pod="{value}" at redis://:urlpass@cache:6379 (Bearer tok123)'
    started = time.perf_counter()
    redacted = Redactor().text(line)
    elapsed = time.perf_counter() - started
    assert redacted == line.replace("urlpass", REDACTED).replace("tok123", REDACTED)
    # Generous: linear work on 1 MB takes a few tens of milliseconds; quadratic took hours.
    assert elapsed < 1.0, f"{elapsed:.2f} s for {len(line)} characters"
