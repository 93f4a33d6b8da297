"""The wiring hands every configured connection option to the adapters, and nothing else."""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import redis

from autotuner.adapters.prometheus import PrometheusSettings
from autotuner.adapters.redis_keys import RedisKeySettings
from autotuner.core.model import (
    Decision,
    KnobKind,
    KnobRef,
    MetricQuery,
    NoData,
    OutcomeStatus,
    Phase,
    Series,
    Verdict,
)
from autotuner.runtime.reloader import RuleReloader
from autotuner.runtime.settings import AllowList, Settings, load_settings
from autotuner.runtime.wiring import (
    StartupError,
    connect_metric_source,
    connect_redis,
    prometheus_settings,
    redis_key_settings,
)

REDIS_URL = "redis://127.0.0.1:6379/0"


def _file(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


def test_every_prometheus_option_reaches_the_adapter(tmp_path: Path) -> None:
    ca = _file(tmp_path, "ca.pem", "-----BEGIN CERTIFICATE-----\n")
    password = _file(tmp_path, "prom-password", "p4ss\n")
    settings_file = _file(
        tmp_path,
        "settings.yaml",
        "prometheus_url: https://mimir.example:8080/prometheus\n"
        "prometheus_extra_headers:\n  X-Scope-OrgID: 1234\n  X-Team: crm\n"
        "prometheus_max_response_bytes: 1000000\n",
    )
    settings = load_settings(
        {
            "prometheus_basic_auth_password_file": str(password),
            "prometheus_max_concurrency": "7",
        },
        {
            "AUTOTUNER_PROMETHEUS_BASIC_AUTH_USERNAME": "autotuner",
            "AUTOTUNER_PROMETHEUS_CA_BUNDLE": str(ca),
            "AUTOTUNER_PROMETHEUS_TIMEOUT_SECONDS": "2.5",
        },
        settings_file,
    )

    assert prometheus_settings(settings, 120.0) == PrometheusSettings(
        url="https://mimir.example:8080/prometheus",
        timeout_seconds=2.5,
        staleness_limit_seconds=120.0,
        max_concurrency=7,
        basic_auth_username="autotuner",
        basic_auth_password_file=str(password),
        ca_bundle=str(ca),
        verify_tls=True,
        extra_headers={"X-Scope-OrgID": "1234", "X-Team": "crm"},
        max_response_bytes=1_000_000,
    )


def test_prometheus_secrets_from_the_environment_reach_the_adapter() -> None:
    token = load_settings(
        {"prometheus_url": "http://prometheus:9090"}, {"AUTOTUNER_PROMETHEUS_TOKEN": "t0ken"}
    )
    assert prometheus_settings(token, 300.0).bearer_token == "t0ken"
    basic = load_settings(
        {"prometheus_url": "http://prometheus:9090", "prometheus_basic_auth_username": "me"},
        {"AUTOTUNER_PROMETHEUS_BASIC_AUTH_PASSWORD": "pw"},
    )
    adapter = prometheus_settings(basic, 300.0)
    assert (adapter.basic_auth_username, adapter.basic_auth_password) == ("me", "pw")
    assert "pw" not in repr(adapter)


def test_unset_prometheus_options_keep_the_adapter_defaults() -> None:
    settings = load_settings({"prometheus_url": "http://prometheus:9090"}, {})
    assert prometheus_settings(settings, 300.0) == PrometheusSettings(url="http://prometheus:9090")


def test_tls_verification_can_be_turned_off_by_environment() -> None:
    settings = load_settings(
        {"prometheus_url": "https://prometheus:9090"},
        {"AUTOTUNER_PROMETHEUS_VERIFY_TLS": "false"},
    )
    assert prometheus_settings(settings, 300.0).verify_tls is False


def test_every_redis_option_reaches_the_adapter(tmp_path: Path) -> None:
    ca = _file(tmp_path, "ca.pem", "-----BEGIN CERTIFICATE-----\n")
    user = _file(tmp_path, "redis-user", "autotuner\n")
    password = _file(tmp_path, "redis-password", "hunter2\n")
    settings = load_settings(
        {
            "redis_url": "rediss://redis.crm.svc:6380/2",
            "redis_username_file": str(user),
            "redis_password_file": str(password),
            "redis_write_attempts": "5",
        },
        {
            "AUTOTUNER_REDIS_CA_FILE": str(ca),
            "AUTOTUNER_REDIS_CONNECT_TIMEOUT_SECONDS": "0.5",
            "AUTOTUNER_REDIS_COMMAND_TIMEOUT_SECONDS": "1.5",
            "AUTOTUNER_REDIS_KEY_PREFIX": "tenant-a:",
            "AUTOTUNER_REDIS_PUBLISH_CHANNEL": "autotuner:changes",
        },
    )

    assert redis_key_settings(settings) == RedisKeySettings(
        url="rediss://redis.crm.svc:6380/2",
        username_file=str(user),
        password_file=str(password),
        ca_file=str(ca),
        connect_timeout=0.5,
        command_timeout=1.5,
        key_prefix="tenant-a:",
        publish_channel="autotuner:changes",
        write_attempts=5,
    )


def test_unset_redis_options_keep_the_adapter_defaults() -> None:
    assert redis_key_settings(load_settings({}, {})) == RedisKeySettings()


def test_plain_redis_user_reaches_the_adapter() -> None:
    settings = load_settings({"redis_username": "autotuner"}, {})
    assert redis_key_settings(settings).username == "autotuner"


def test_redis_password_from_the_environment_is_passed_by_variable_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AUTOTUNER_REDIS_PASSWORD", "hunter2")
    settings = load_settings({}, {"AUTOTUNER_REDIS_PASSWORD": "hunter2"})
    adapter = redis_key_settings(settings)
    assert adapter.password_env == "AUTOTUNER_REDIS_PASSWORD"
    assert "hunter2" not in repr(adapter)


def test_redis_password_that_the_adapter_cannot_read_stops_the_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("AUTOTUNER_REDIS_PASSWORD", raising=False)
    settings = Settings(redis_password="hunter2")  # type: ignore[arg-type]
    with pytest.raises(StartupError, match="AUTOTUNER_REDIS_PASSWORD_FILE") as caught:
        redis_key_settings(settings)
    assert "hunter2" not in str(caught.value)


def test_connected_redis_actuator_carries_the_settings(tmp_path: Path) -> None:
    settings = load_settings(
        {"redis_key_prefix": "p:", "redis_publish_channel": "changes", "redis_write_attempts": 2},
        {},
    )
    actuator = connect_redis(settings)
    try:
        assert actuator.settings == redis_key_settings(settings)
        assert actuator.key_of(KnobRef(KnobKind.CONFIG_KEY, "crm:ttl")) == "p:crm:ttl"
    finally:
        actuator.close()


def test_key_prefix_and_channel_act_on_a_real_redis() -> None:
    prefix = f"test-wiring-{uuid.uuid4().hex}:"
    channel = prefix + "changes"
    settings = load_settings(
        {
            "redis_url": REDIS_URL,
            "redis_key_prefix": prefix,
            "redis_publish_channel": channel,
        },
        {},
    )
    direct = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    subscriber = direct.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
    subscriber.subscribe(channel)
    actuator = connect_redis(settings)
    knob = KnobRef(KnobKind.CONFIG_KEY, "crm:cache:ttl:users")
    try:
        direct.set(prefix + knob.name, "300")
        outcome = actuator.apply(_decision(knob, 300.0, 450.0))
        assert outcome.status is OutcomeStatus.APPLIED, outcome.detail
        assert direct.get(prefix + knob.name) == "450"
        message = _next_message(subscriber)
        assert json.loads(message) == {
            "key": prefix + knob.name,
            "old": 300,
            "new": 450,
            "rule": "cache-hit-rate-low",
        }
    finally:
        direct.delete(prefix + knob.name)
        subscriber.close()
        direct.close()
        actuator.close()


def _decision(knob: KnobRef, current: float, final: float) -> Decision:
    return Decision(
        time=0.0,
        rule="cache-hit-rate-low",
        labels=(("cache", "users"),),
        knob=knob,
        verdict=Verdict.CHANGE,
        phase=Phase.FIRING,
        metric="cache_hit_ratio",
        value=0.5,
        threshold=0.7,
        current=current,
        proposed=final,
        final=final,
    )


def _next_message(subscriber: redis.client.PubSub) -> str:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        message = subscriber.get_message(timeout=0.2)
        if message is not None:
            return str(message["data"])
    raise AssertionError("nothing was published on the channel within 5 s")


# ---- a Prometheus query API that records what it was sent --------------------------------


@dataclass
class _QueryApi:
    """Answers every instant query with one sample `sample_age` seconds before the query time."""

    sample_age: float = 200.0
    requests: list[dict[str, str]] = field(default_factory=list)
    url: str = ""


def _query_api_handler(api: _QueryApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            api.requests.append(dict(self.headers.items()))
            query = dict(
                part.split("=", 1) for part in self.path.partition("?")[2].split("&") if part
            )
            at = float(query.get("time", time.time()))
            body = json.dumps(
                {
                    "status": "success",
                    "data": {
                        "resultType": "vector",
                        "result": [
                            {"metric": {"cache": "users"}, "value": [at - api.sample_age, "0.5"]}
                        ],
                    },
                }
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return

    return Handler


@pytest.fixture
def query_api() -> Iterator[_QueryApi]:
    api = _QueryApi()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _query_api_handler(api))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    api.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield api
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


QUERY = MetricQuery("cache_hit_ratio", "cache_hit_ratio")


def test_headers_and_basic_auth_are_sent_with_each_query(
    tmp_path: Path, query_api: _QueryApi
) -> None:
    password = _file(tmp_path, "password", "s3cret\n")
    settings = load_settings(
        {
            "prometheus_url": query_api.url,
            "prometheus_basic_auth_username": "autotuner",
            "prometheus_basic_auth_password_file": str(password),
        },
        {"AUTOTUNER_PROMETHEUS_EXTRA_HEADERS": "X-Scope-OrgID=tenant-a, X-Team=crm"},
    )
    source = connect_metric_source(settings, lambda: 300.0)
    try:
        answers = source.fetch([QUERY], time.time())
    finally:
        source.close()
    assert isinstance(answers[QUERY.name], Series)
    (sent,) = query_api.requests
    assert sent["X-Scope-OrgID"] == "tenant-a"
    assert sent["X-Team"] == "crm"
    assert sent["Authorization"] == "Basic " + base64.b64encode(b"autotuner:s3cret").decode()


RULES = """\
metrics:
  cache_hit_ratio: cache_hit_ratio
settings:
  max_sample_age: {age}
rules:
  - name: cache-hit-rate-low
    metric: cache_hit_ratio
    below: 0.7
    action:
      set_key:
        key: "crm:cache:ttl:{{{{ labels.cache }}}}"
        factor: 1.5
        min: 60
        max: 86400
"""


def test_the_source_follows_the_staleness_limit_of_reloaded_rules(
    tmp_path: Path, query_api: _QueryApi
) -> None:
    rules = _file(tmp_path, "cache.yaml", RULES.format(age="5m"))
    reloader = RuleReloader([rules], AllowList(key_prefixes=("crm:",)))
    settings = load_settings({"prometheus_url": query_api.url}, {})
    source = connect_metric_source(settings, lambda: reloader.ruleset.max_sample_age)
    try:
        assert source.settings.staleness_limit_seconds == 300.0
        # The sample is 200 s old: usable under a 5 minute limit.
        assert isinstance(source.fetch([QUERY], time.time())[QUERY.name], Series)

        rules.write_text(RULES.format(age="1m"), encoding="utf-8")
        assert reloader.refresh().changed
        answer = source.fetch([QUERY], time.time())[QUERY.name]
        assert source.settings.staleness_limit_seconds == 60.0
        assert isinstance(answer, NoData)
        assert "older than the 60 s staleness limit" in answer.reason
        # Everything else is as configured still.
        assert source.settings == prometheus_settings(settings, 60.0)
    finally:
        source.close()


def test_a_closed_source_sends_nothing(query_api: _QueryApi) -> None:
    settings = load_settings({"prometheus_url": query_api.url}, {})
    source = connect_metric_source(settings, lambda: 300.0)
    source.close()
    assert isinstance(source.fetch([QUERY], time.time())[QUERY.name], NoData)
    assert query_api.requests == []


def test_an_unusable_staleness_limit_sends_nothing_and_says_why(query_api: _QueryApi) -> None:
    limits = [0.0, 300.0]  # popped from the end: 300 at the start, then 0
    settings = load_settings({"prometheus_url": query_api.url}, {})
    source = connect_metric_source(settings, lambda: limits.pop() if len(limits) > 1 else limits[0])
    try:
        answer = source.fetch([QUERY], time.time())[QUERY.name]
    finally:
        source.close()
    assert isinstance(answer, NoData)
    assert "max_sample_age cannot be used" in answer.reason
    assert "staleness_limit_seconds" in answer.reason
    assert query_api.requests == []
