"""The Prometheus metric source against a real Prometheus, and against fake query APIs for
what a real one cannot be made to do (answer slowly, show the headers it got, speak TLS)."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autotuner.adapters.prometheus import (
    PrometheusSettings,
    PrometheusSettingsError,
    PrometheusSource,
)
from autotuner.config.loader import load_rules
from autotuner.core.engine import evaluate, knobs_to_read
from autotuner.core.model import MetricAnswer, MetricQuery, NoData, Phase, Series, labels_of
from autotuner.core.state import EngineState, TargetState
from tests.integration.prometheus_server import (
    BUCKETS,
    CACHES,
    DB_POOLS,
    LATENCY,
    RATE_WINDOW,
    SCRAPE_INTERVAL_SECONDS,
    FakeQueryApi,
    PrometheusServer,
    self_signed_certificate,
)

pytestmark = pytest.mark.integration

SHIPPED_RULES = Path(__file__).resolve().parents[2] / "rules"

HIT_RATIO = (
    f"sum by (cache) (rate(crm_cache_hits_total[{RATE_WINDOW}]))"
    f" / sum by (cache) (rate(crm_cache_requests_total[{RATE_WINDOW}]))"
)


def fetch_one(source: PrometheusSource, expr: str, at: float | None = None) -> MetricAnswer:
    return source.fetch([MetricQuery("m", expr)], time.time() if at is None else at)["m"]


def values_by(answer: MetricAnswer, label: str) -> Mapping[str, float]:
    """Each sample's value under its `label` ("" for a sample without it)."""
    assert isinstance(answer, Series), answer
    return {dict(sample.labels).get(label, ""): sample.value for sample in answer.samples}


def no_data_reason(answer: MetricAnswer) -> str:
    assert isinstance(answer, NoData), answer
    return answer.reason


def histogram_quantile(q: float, cumulative: tuple[float, ...], total: float) -> float:
    """Prometheus's linear interpolation within the bucket holding rank q x total."""
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in zip(BUCKETS, cumulative, strict=True):
        if count >= rank:
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (
                count - lower_count
            )
        lower_bound, lower_count = bound, count
    return BUCKETS[-1]


@pytest.fixture(scope="module")
def source(prometheus_server: PrometheusServer) -> Iterator[PrometheusSource]:
    with PrometheusSource(PrometheusSettings(prometheus_server.url, timeout_seconds=5)) as shared:
        yield shared


def test_p95_latency_from_real_histogram_buckets(source: PrometheusSource) -> None:
    queries = [
        MetricQuery(
            traffic.deployment,
            "histogram_quantile(0.95, sum by (le, namespace, deployment) "
            f'(rate({traffic.histogram}_bucket{{namespace="crm"}}[{RATE_WINDOW}])))',
        )
        for traffic in LATENCY
    ]

    answers = source.fetch(queries, time.time())

    for traffic in LATENCY:
        expected = histogram_quantile(0.95, traffic.cumulative, traffic.total)
        assert values_by(answers[traffic.deployment], "deployment") == pytest.approx(
            {traffic.deployment: expected}, rel=1e-6
        )
    # The interpolation worked out by hand, as a check on the helper above.
    assert [histogram_quantile(0.95, t.cumulative, t.total) for t in LATENCY] == pytest.approx(
        [0.4875, 1.75]
    )


def test_rate_of_a_counter_per_label_set(source: PrometheusSource) -> None:
    answer = fetch_one(source, f"sum by (cache) (rate(crm_cache_requests_total[{RATE_WINDOW}]))")

    expected = {cache: traffic.requests for cache, traffic in CACHES.items()}
    # Scrape timestamps and the exporter's clock differ by a few milliseconds.
    assert values_by(answer, "cache") == pytest.approx(expected, rel=0.05, abs=1e-9)


def test_hit_ratio_keeps_each_cache_and_passes_the_one_at_zero_over_zero_on_as_nan(
    source: PrometheusSource,
) -> None:
    at = time.time()

    answer = fetch_one(source, HIT_RATIO, at)

    expected = {cache: t.hits / t.requests for cache, t in CACHES.items() if t.requests}
    assert expected == {"profile": 0.75, "session": 0.5}
    values = values_by(answer, "cache")
    assert {cache: value for cache, value in values.items() if cache != "cold"} == pytest.approx(
        expected
    )
    # "cold" has no traffic: its NaN goes to the engine, which holds that target.
    assert math.isnan(values["cold"])
    assert isinstance(answer, Series)
    assert [sample.timestamp for sample in answer.samples] == pytest.approx([at] * 3, abs=1e-3)


def test_the_shipped_rules_get_answers_whose_labels_name_their_knobs(
    source: PrometheusSource,
) -> None:
    ruleset = load_rules([SHIPPED_RULES])

    answers = source.fetch(ruleset.queries, time.time())

    assert {name: answer for name, answer in answers.items() if isinstance(answer, NoData)} == {}
    in_use, size = (sum(pool) for pool in zip(*DB_POOLS.values(), strict=True))
    assert values_by(answers["db_pool_usage"], "") == pytest.approx({"": in_use / size})
    knobs = {knob.id for knob in knobs_to_read(ruleset, answers)}
    assert {
        "deployment/crm/api",
        "deployment/crm/ml",
        "key/crm:cache:ttl:profile",
        "key/crm:cache:ttl:session",
        "key/crm:db:pool_size",
    } <= knobs


def test_a_firing_target_whose_ratio_turns_zero_over_zero_is_held_not_resolved(
    source: PrometheusSource,
) -> None:
    ruleset = load_rules([SHIPPED_RULES])
    at = time.time()
    cold = labels_of({"cache": "cold"})
    key = ("cache-hit-rate-low", cold)
    # Firing since ten minutes ago, last seen true long enough ago for keep_firing_for to
    # be over: a series absent from the answer would resolve now.
    firing = EngineState(
        targets={
            key: TargetState(
                phase=Phase.FIRING,
                active_since=at - 600,
                last_true=at - 600,
                knob="key/crm:cache:ttl:cold",
            )
        }
    )

    answers = source.fetch(ruleset.queries, at)
    result = evaluate(at, ruleset, answers, {}, firing, dry_run=True)

    [held] = [e for e in result.evaluations if (e.rule, e.labels) == key]
    assert held.no_data == "the value is nan"
    assert held.phase is Phase.FIRING
    assert result.state.targets[key].phase is Phase.FIRING


def test_zero_over_zero_alone_is_no_data_saying_nan(source: PrometheusSource) -> None:
    cold_ratio = (
        f'rate(crm_cache_hits_total{{cache="cold"}}[{RATE_WINDOW}])'
        f' / rate(crm_cache_requests_total{{cache="cold"}}[{RATE_WINDOW}])'
    )

    reason = no_data_reason(fetch_one(source, cold_ratio))

    assert "NaN" in reason
    assert 'cache="cold"' in reason


def test_division_by_zero_is_no_data_never_infinity(source: PrometheusSource) -> None:
    answer = fetch_one(source, f"sum(rate(crm_cache_hits_total[{RATE_WINDOW}])) / 0")

    assert "+Inf" in no_data_reason(answer)


def test_empty_result_is_no_data(source: PrometheusSource) -> None:
    answer = fetch_one(source, 'crm_cache_requests_total{cache="no-such-cache"}')

    assert no_data_reason(answer) == "the query returned no series"


def test_syntax_error_fails_only_its_own_metric(source: PrometheusSource) -> None:
    answers = source.fetch(
        [
            MetricQuery("broken", f"rate(crm_cache_requests_total[{RATE_WINDOW}]"),
            MetricQuery("ratio", HIT_RATIO),
        ],
        time.time(),
    )

    reason = no_data_reason(answers["broken"])
    assert "bad_data" in reason and "parse error" in reason
    assert set(values_by(answers["ratio"], "cache")) == {"profile", "session", "cold"}


def test_scalar_answer_is_one_sample_without_labels(source: PrometheusSource) -> None:
    answer = fetch_one(source, f"scalar(sum(rate(crm_cache_hits_total[{RATE_WINDOW}])))")

    assert isinstance(answer, Series)
    [sample] = answer.samples
    assert sample.labels == ()
    assert sample.value == pytest.approx(sum(traffic.hits for traffic in CACHES.values()), rel=0.05)


def test_queries_are_evaluated_at_the_ticks_time(source: PrometheusSource) -> None:
    at = time.time() - 2.5

    answer = fetch_one(source, "time()", at)

    assert isinstance(answer, Series)
    assert answer.samples[0].value == pytest.approx(at, abs=1e-3)
    assert answer.samples[0].timestamp == pytest.approx(at, abs=1e-3)


def test_matrix_answer_is_each_series_last_sample(source: PrometheusSource) -> None:
    at = time.time()

    answer = fetch_one(source, 'crm_cache_requests_total{cache="profile"}[30s]', at)

    assert isinstance(answer, Series)
    [sample] = answer.samples
    # The last scrape, with its own timestamp rather than the evaluation time.
    assert at - 2 * SCRAPE_INTERVAL_SECONDS <= sample.timestamp <= at
    assert sample.timestamp != pytest.approx(at, abs=1e-3)
    assert sample.value > 0


def test_matrix_sample_older_than_the_staleness_limit_is_no_data(
    prometheus_server: PrometheusServer,
) -> None:
    settings = PrometheusSettings(prometheus_server.url, staleness_limit_seconds=3)
    with PrometheusSource(settings) as strict:
        # Ten seconds ahead the newest sample is at least ten seconds old.
        answer = fetch_one(
            strict, 'crm_cache_requests_total{cache="profile"}[1m]', time.time() + 10
        )

    reason = no_data_reason(answer)
    assert "older than the 3 s staleness limit" in reason


def test_a_query_slower_than_the_timeout_on_a_real_prometheus_is_no_data(
    prometheus_server: PrometheusServer,
) -> None:
    # A constant at every second of 30 days: seconds of work for this Prometheus.
    expensive = "count_over_time(vector(1)[30d:1s])"
    with PrometheusSource(PrometheusSettings(prometheus_server.url, timeout_seconds=0.5)) as own:
        started = time.monotonic()
        reason = no_data_reason(fetch_one(own, expensive))
        elapsed = time.monotonic() - started

    assert elapsed < 1.5
    # Prometheus is asked to stop a little before the source gives up, but it looks at the
    # clock only between evaluation steps, so either may speak first.
    assert reason in (
        "Prometheus could not evaluate the query (timeout): query timed out in query execution",
        f"Prometheus at {prometheus_server.url} did not answer within 0.5 s",
    )


def test_stopped_server_is_no_data_saying_it_cannot_be_reached() -> None:
    with PrometheusServer() as server:
        settings = PrometheusSettings(server.url, timeout_seconds=2)
        with PrometheusSource(settings) as own:
            assert isinstance(fetch_one(own, "vector(1)"), Series)
            server.stop()

            reason = no_data_reason(fetch_one(own, "vector(1)"))

    assert reason == f"cannot reach Prometheus at {server.url}: connection refused"


def test_slow_server_times_out_only_the_slow_query() -> None:
    with FakeQueryApi(slow=frozenset({"slow_query"}), slow_seconds=5) as api:
        settings = PrometheusSettings(api.url, timeout_seconds=0.5)
        with PrometheusSource(settings) as own:
            started = time.monotonic()
            answers = own.fetch(
                [MetricQuery("slow", "slow_query"), MetricQuery("fast", "fast_query")],
                time.time(),
            )
            elapsed = time.monotonic() - started

    assert no_data_reason(answers["slow"]) == f"Prometheus at {api.url} did not answer within 0.5 s"
    assert isinstance(answers["fast"], Series)
    assert elapsed < 2.5


def test_queries_run_concurrently_up_to_the_bound() -> None:
    queries = [MetricQuery(f"m{i}", f"slow_{i}") for i in range(6)]
    slow = frozenset(query.expr for query in queries)
    with FakeQueryApi(slow=slow, slow_seconds=0.4) as api:
        own = PrometheusSource(PrometheusSettings(api.url, max_concurrency=3))
        started = time.monotonic()
        answers = own.fetch(queries, time.time())
        elapsed = time.monotonic() - started
        own.close()

    assert all(isinstance(answer, Series) for answer in answers.values())
    assert api.peak_in_flight == 3
    # Two waves of three, not six in a row.
    assert 0.8 <= elapsed < 2.0


def test_bearer_token_file_is_read_again_when_it_changes(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("first-token\n")
    with FakeQueryApi() as api:
        settings = PrometheusSettings(api.url, bearer_token_file=str(token_file))
        with PrometheusSource(settings) as own:
            fetch_one(own, "q")
            fetch_one(own, "q")
            token_file.write_text("second-token\n")
            # The same mtime would hide the change on a coarse-grained file system.
            stat = token_file.stat()
            os.utime(token_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
            fetch_one(own, "q")

    sent = [query.headers["Authorization"] for query in api.received]
    assert sent == ["Bearer first-token", "Bearer first-token", "Bearer second-token"]


def test_unreadable_token_file_sends_no_query(tmp_path: Path) -> None:
    missing = tmp_path / "absent"
    with FakeQueryApi() as api:
        settings = PrometheusSettings(api.url, bearer_token_file=str(missing))
        with PrometheusSource(settings) as own:
            answer = fetch_one(own, "q")

    assert no_data_reason(answer) == (
        f"cannot read the bearer token file {missing}: No such file or directory; "
        "the query was not sent"
    )
    assert api.received == []


def test_extra_headers_and_basic_auth_are_sent(tmp_path: Path) -> None:
    password_file = tmp_path / "password"
    password_file.write_text("s3cret")
    with FakeQueryApi() as api:
        settings = PrometheusSettings(
            api.url,
            basic_auth_username="autotuner",
            basic_auth_password_file=str(password_file),
            extra_headers={"X-Scope-OrgID": "tenant-a"},
        )
        with PrometheusSource(settings) as own:
            fetch_one(own, "q", at=1_700_000_000.5)

    [query] = api.received
    assert query.headers["X-Scope-OrgID"] == "tenant-a"
    # base64 of "autotuner:s3cret"
    assert query.headers["Authorization"] == "Basic YXV0b3R1bmVyOnMzY3JldA=="
    assert query.time == "1700000000.500"


def test_tls_is_verified_by_default_and_a_ca_bundle_makes_it_trusted(tmp_path: Path) -> None:
    certificate, key = self_signed_certificate(tmp_path)
    with FakeQueryApi(tls=(certificate, key)) as api:
        with PrometheusSource(PrometheusSettings(api.url)) as default:
            refused = fetch_one(default, "q")
        with PrometheusSource(PrometheusSettings(api.url, ca_bundle=str(certificate))) as trusting:
            trusted = fetch_one(trusting, "q")

    assert "certificate verify failed" in no_data_reason(refused)
    assert "check ca_bundle" in no_data_reason(refused)
    assert isinstance(trusted, Series)


def vector_of(count: int) -> object:
    return {
        "status": "success",
        "data": {
            "resultType": "vector",
            "result": [
                {"metric": {"pod": f"pod-{i}"}, "value": [1_700_000_000, "1"]} for i in range(count)
            ],
        },
    }


@pytest.mark.parametrize(
    ("answers", "raw", "expected"),
    [
        ({}, {"q": (401, b"Unauthorized")}, "Prometheus refused the credentials (HTTP 401)"),
        (
            {},
            {"q": (502, b"<html>Bad Gateway</html>")},
            "Prometheus answered HTTP 502 with a body that is not JSON: '<html>Bad Gateway</html>'",
        ),
        (
            {},
            {"q": (422, b'{"status":"error","errorType":"execution","error":"too many samples"}')},
            "Prometheus could not evaluate the query (execution): too many samples",
        ),
        (
            {},
            {"q": (400, b'{"status":"error","errorType":"bad_data","error":"1:5: parse\\nerror"}')},
            "Prometheus could not evaluate the query (bad_data): 1:5: parse error",
        ),
        (
            {"q": {"status": "success", "data": {"resultType": "string", "result": [1, "x"]}}},
            {},
            "the query returns a string, not a number",
        ),
        (
            {},
            {"q": (200, b"<html>Login</html>")},
            "Prometheus answered HTTP 200 with a body that is not JSON: '<html>Login</html>'",
        ),
        (
            {},
            {"q": (200, b'{"status":"success"}')},
            "Prometheus sent an answer this source cannot read: no data.result",
        ),
        (
            {"q": {"status": "success", "data": {"resultType": "vector", "result": [{}]}}},
            {},
            "cannot read: a series without a label set",
        ),
        (
            {"q": {"status": "success", "data": {"result": [{"metric": {"pod": "a"}}]}}},
            {},
            'cannot read: the series {pod="a"} has no value',
        ),
        # The fake API declares each answer's length, which is checked before the answer is
        # read; the library reads an answer without a declared length whole.
        ({"q": vector_of(2000)}, {}, "the answer is larger than 65536 bytes"),
    ],
    ids=[
        "unauthorized",
        "html-from-a-proxy",
        "execution-error",
        "multi-line-error",
        "string",
        "html-with-200",
        "no-result",
        "malformed",
        "series-without-value",
        "declared-too-large",
    ],
)
def test_answers_that_are_not_numbers_are_no_data_saying_why(
    answers: Mapping[str, object], raw: Mapping[str, tuple[int, bytes]], expected: str
) -> None:
    with FakeQueryApi(answers=answers, raw=raw) as api:
        settings = PrometheusSettings(api.url, max_response_bytes=65536)
        with PrometheusSource(settings) as own:
            answer = fetch_one(own, "q")

    assert expected in no_data_reason(answer)


def test_an_answer_other_than_200_is_asked_for_once() -> None:
    # A retry within the tick would push the tick past its interval; the next tick retries.
    with (
        FakeQueryApi(raw={"q": (503, b"Service Unavailable")}) as api,
        PrometheusSource(PrometheusSettings(api.url)) as own,
    ):
        answer = fetch_one(own, "q")

    assert "HTTP 503" in no_data_reason(answer)
    assert len(api.received) == 1


def test_unusable_samples_beside_a_usable_one_are_passed_on_as_they_are() -> None:
    at = 1_700_000_000.0
    result = [
        {"metric": {"cache": "profile"}, "value": [at, "0.75"]},
        {"metric": {"cache": "cold"}, "value": [at, "NaN"]},
        {"metric": {"cache": "broken"}, "value": [at, "+Inf"]},
        {"metric": {"cache": "old"}, "value": [at - 600, "0.5"]},
    ]
    document = {"status": "success", "data": {"resultType": "vector", "result": result}}
    with FakeQueryApi(answers={"q": document}) as api:
        settings = PrometheusSettings(api.url, staleness_limit_seconds=300)
        with PrometheusSource(settings) as own:
            answer = fetch_one(own, "q", at)

    assert isinstance(answer, Series)
    samples = {dict(sample.labels)["cache"]: sample for sample in answer.samples}
    assert list(samples) == ["broken", "cold", "old", "profile"]
    assert math.isnan(samples["cold"].value)
    assert samples["broken"].value == math.inf
    assert (samples["old"].value, samples["old"].timestamp) == (0.5, at - 600)
    assert (samples["profile"].value, samples["profile"].timestamp) == (0.75, at)


def test_matrix_answer_with_one_fresh_series_passes_the_stale_one_on() -> None:
    at = 1_700_000_000.0
    result = [
        {"metric": {"pod": "a"}, "values": [[at - 20, "1"], [at - 10, "2"]]},
        {"metric": {"pod": "b"}, "values": [[at - 900, "3"]]},
        {"metric": {"pod": "c"}, "values": []},
    ]
    document = {"status": "success", "data": {"resultType": "matrix", "result": result}}
    with (
        FakeQueryApi(answers={"q": document}) as api,
        PrometheusSource(PrometheusSettings(api.url)) as own,
    ):
        answer = fetch_one(own, "q", at)

    assert isinstance(answer, Series)
    assert [(dict(s.labels)["pod"], s.value, s.timestamp) for s in answer.samples] == [
        ("a", 2.0, at - 10),
        ("b", 3.0, at - 900),
    ]


def test_a_closed_source_answers_no_data() -> None:
    with FakeQueryApi() as api:
        own = PrometheusSource(PrometheusSettings(api.url))
        own.close()

        answer = fetch_one(own, "q")

    assert no_data_reason(answer) == "the Prometheus source was closed; no query was sent"
    assert api.received == []


def test_secrets_never_appear_in_reprs(tmp_path: Path) -> None:
    with_token = PrometheusSettings("https://prom.example", bearer_token="tok-123")
    with_password = PrometheusSettings(
        "https://prom.example",
        basic_auth_username="me",
        basic_auth_password="pw-456",
        extra_headers={"X-Api-Key": "key-789"},
    )

    with PrometheusSource(with_password) as source:
        shown = repr(with_token) + repr(with_password) + repr(source)

    for secret in ("tok-123", "pw-456", "key-789"):
        assert secret not in shown
    assert "X-Api-Key" in shown


@pytest.mark.parametrize(
    ("options", "field", "hint"),
    [
        ({"url": "prom:9090"}, "url", "http(s)://host"),
        ({"url": "http://me:pw@prom:9090"}, "url", "basic_auth_username"),
        ({"timeout_seconds": 0}, "timeout_seconds", "positive"),
        ({"max_concurrency": 0}, "max_concurrency", "between 1 and"),
        ({"bearer_token": "a", "bearer_token_file": "/t"}, "bearer_token_file", "not both"),
        ({"basic_auth_username": "me"}, "basic_auth_username", "password"),
        (
            {"bearer_token": "a", "basic_auth_username": "me", "basic_auth_password": "p"},
            "basic_auth_username",
            "not both",
        ),
        ({"ca_bundle": "/ca.pem", "verify_tls": False}, "ca_bundle", "verify_tls"),
        (
            {"bearer_token": "a", "extra_headers": {"Authorization": "x"}},
            "extra_headers",
            "conflicts",
        ),
        ({"extra_headers": {"X-Tenant": "a\r\nEvil: 1"}}, "extra_headers", "line break"),
    ],
)
def test_bad_settings_name_the_field_and_the_fix(
    options: dict[str, object], field: str, hint: str
) -> None:
    arguments: dict[str, object] = {"url": "http://prom:9090", **options}

    with pytest.raises(PrometheusSettingsError) as raised:
        PrometheusSettings(**arguments)  # type: ignore[arg-type]

    assert f"field {field}:" in str(raised.value)
    assert hint in str(raised.value)


def test_a_url_with_credentials_is_refused_without_echoing_them() -> None:
    with pytest.raises(PrometheusSettingsError) as raised:
        PrometheusSettings("https://me:hunter2@prom.example")

    assert "hunter2" not in str(raised.value)


AT = 1_700_000_000.0
STALENESS = 300.0

json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=12,
)
sample_values = st.sampled_from(["NaN", "+Inf", "-Inf", "0", "1e+06"]) | st.floats(
    allow_nan=False, allow_infinity=False
).map(repr)
label_sets = st.dictionaries(
    st.from_regex(r"[a-z_][a-z0-9_]{0,6}", fullmatch=True), st.text(max_size=6), max_size=3
)
# Samples from well within the staleness limit to well past it.
timestamps = st.floats(min_value=AT - 2 * STALENESS, max_value=AT)


@st.composite
def vector_answers(draw: st.DrawFn) -> dict[str, object]:
    labels = draw(st.lists(label_sets, max_size=5, unique_by=lambda d: tuple(sorted(d.items()))))
    result = [
        {"metric": metric, "value": [draw(timestamps), draw(sample_values)]} for metric in labels
    ]
    return {"status": "success", "data": {"resultType": "vector", "result": result}}


@pytest.fixture(scope="module")
def fake_api() -> Iterator[FakeQueryApi]:
    with FakeQueryApi() as api:
        yield api


def usable(series: Any) -> bool:
    timestamp, value = series["value"]
    return math.isfinite(float(value)) and AT - timestamp <= STALENESS


@given(document=vector_answers())
@settings(max_examples=150, deadline=None)
def test_a_vector_answer_is_passed_on_whole_while_one_sample_is_usable(
    fake_api: FakeQueryApi, document: Any
) -> None:
    fake_api.answers = {"q": document}
    fake_api.received.clear()
    with PrometheusSource(
        PrometheusSettings(fake_api.url, staleness_limit_seconds=STALENESS)
    ) as source:
        answer = fetch_one(source, "q", AT)

    result = document["data"]["result"]
    if not any(usable(series) for series in result):
        assert isinstance(answer, NoData)
        assert answer.reason.strip() and "\n" not in answer.reason
        return
    assert isinstance(answer, Series)
    sent = {
        tuple(sorted(series["metric"].items())): (float(series["value"][1]), series["value"][0])
        for series in result
    }
    received = {sample.labels: (sample.value, sample.timestamp) for sample in answer.samples}
    assert list(received) == sorted(sent)
    for labels, (value, timestamp) in received.items():
        sent_value, sent_timestamp = sent[labels]
        assert timestamp == sent_timestamp
        assert value == sent_value or (math.isnan(value) and math.isnan(sent_value))


@given(document=json_values)
@settings(max_examples=150, deadline=None)
def test_whatever_json_the_server_sends_is_samples_or_a_plain_reason(
    fake_api: FakeQueryApi, document: object
) -> None:
    fake_api.answers = {"q": document}
    fake_api.received.clear()
    with PrometheusSource(
        PrometheusSettings(fake_api.url, staleness_limit_seconds=STALENESS)
    ) as source:
        answer = fetch_one(source, "q", AT)

    if isinstance(answer, NoData):
        assert answer.reason.strip() and "\n" not in answer.reason
        return
    assert any(
        math.isfinite(sample.value) and AT - sample.timestamp <= STALENESS
        for sample in answer.samples
    )
    for sample in answer.samples:
        assert sample.labels == tuple(sorted(sample.labels))
