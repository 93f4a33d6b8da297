"""The Prometheus metric source: each named query asked as an instant query at the tick's time.

How an answer becomes data (the engine sees only `Series` or `NoData`):

- vector: one `Sample` per series, labels exactly as Prometheus returns them, sorted.
- scalar: one `Sample` without labels.
- matrix (a range selector such as `x[1m]`): each series' last sample, that is its most recent
  value at or before the tick's time, with that sample's own timestamp.
- string: `NoData`, a string is not a number.

A sample that is NaN (0/0), +Inf or -Inf, or older than `staleness_limit_seconds` at the tick's
time, is dropped and logged; when no sample is left the answer is `NoData` saying why. An empty
result, an HTTP or PromQL error, a timeout or an unreachable server is `NoData` too: the source
never guesses a number. Prometheus stamps instant-vector samples with the evaluation time and
picks them within its own lookback window (`--query.lookback-delta`, 5 minutes by default), so
the staleness limit bites on matrix answers and on servers that report a sample's own time.

Queries run concurrently on a bounded thread pool, each bounded by the timeout, and one failing
query turns only its own metric into `NoData`. Nothing is retried within a tick: the next tick
is the retry, and a retry would push the tick past its interval.

The HTTP calls are made with requests, the library prometheus-api-client is built on, rather
than through `PrometheusConnect.custom_query`: that call discards the answer's `resultType` and
Prometheus's error text, and it takes headers per client where a rotated bearer token needs them
per request.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from types import MappingProxyType, TracebackType
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import NewConnectionError, ReadTimeoutError
from urllib3.util.retry import Retry

from autotuner.core.model import (
    Labels,
    MetricAnswer,
    MetricQuery,
    NoData,
    Sample,
    Series,
    format_labels,
    labels_of,
)

_LOG = logging.getLogger(__name__)

# How many dropped series a NoData reason names before summarising the rest.
_REASONS_SHOWN = 3


class PrometheusSettingsError(ValueError):
    """A Prometheus connection setting is wrong; the message names the field and the fix."""


@dataclass(frozen=True, slots=True, repr=False)
class PrometheusSettings:
    """How to reach Prometheus (or Thanos, Mimir, VictoriaMetrics: anything with its query API).

    Secrets (`bearer_token`, `basic_auth_password`, header values) never appear in the repr.
    Token and password files are re-read whenever they change on disk, so a rotated
    Kubernetes service-account token is picked up without a restart.
    """

    url: str
    # Per query: the answer must start and finish arriving within this; a connection that is
    # slow to open can add up to as much again.
    timeout_seconds: float = 10.0
    staleness_limit_seconds: float = 300.0
    max_concurrency: int = 4
    bearer_token: str | None = None
    bearer_token_file: str | None = None
    basic_auth_username: str | None = None
    basic_auth_password: str | None = None
    basic_auth_password_file: str | None = None
    # A PEM file of the CAs to trust instead of the system's; verification itself stays on.
    ca_bundle: str | None = None
    verify_tls: bool = True
    # Sent with every query, e.g. {"X-Scope-OrgID": "tenant-a"} for Mimir, Cortex or Thanos.
    extra_headers: Mapping[str, str] = field(default_factory=dict, hash=False)
    # An answer larger than this is refused rather than parsed: a query matching far more
    # series than a rule can use is a mistake in the rule.
    max_response_bytes: int = 16 * 1024 * 1024

    def __post_init__(self) -> None:
        object.__setattr__(self, "url", _checked_url(self.url))
        object.__setattr__(self, "extra_headers", MappingProxyType(dict(self.extra_headers)))
        _require(
            math.isfinite(self.timeout_seconds) and self.timeout_seconds > 0,
            "timeout_seconds",
            f"must be a positive number of seconds, got {self.timeout_seconds!r}",
        )
        _require(
            math.isfinite(self.staleness_limit_seconds) and self.staleness_limit_seconds > 0,
            "staleness_limit_seconds",
            f"must be a positive number of seconds, got {self.staleness_limit_seconds!r}",
        )
        _require(
            1 <= self.max_concurrency <= _POOL_CONNECTIONS,
            "max_concurrency",
            f"must be between 1 and {_POOL_CONNECTIONS}, got {self.max_concurrency!r}",
        )
        _require(
            self.max_response_bytes > 0,
            "max_response_bytes",
            f"must be a positive number of bytes, got {self.max_response_bytes!r}",
        )
        _require(
            not (self.bearer_token and self.bearer_token_file),
            "bearer_token_file",
            "set either bearer_token or bearer_token_file, not both",
        )
        _require(
            not (self.basic_auth_password and self.basic_auth_password_file),
            "basic_auth_password_file",
            "set either basic_auth_password or basic_auth_password_file, not both",
        )
        has_password = bool(self.basic_auth_password or self.basic_auth_password_file)
        _require(
            has_password == bool(self.basic_auth_username),
            "basic_auth_username",
            "basic auth needs both a username and a password (or password file)",
        )
        _require(
            not (self.uses_bearer_token and self.basic_auth_username),
            "basic_auth_username",
            "use either a bearer token or basic auth, not both",
        )
        _require(
            not (self.ca_bundle and not self.verify_tls),
            "ca_bundle",
            "a CA bundle is only used when verify_tls is on; drop one of the two",
        )
        for name, value in self.extra_headers.items():
            _require(
                isinstance(name, str) and isinstance(value, str) and name.strip() != "",
                "extra_headers",
                "header names and values must be non-empty strings",
            )
            _require(
                not any(c in name + value for c in "\r\n"),
                "extra_headers",
                f"header {name!r} contains a line break",
            )
            _require(
                name.lower() != "authorization" or not (self.uses_bearer_token or has_password),
                "extra_headers",
                "an Authorization header conflicts with bearer_token or basic auth; keep one",
            )

    @property
    def uses_bearer_token(self) -> bool:
        return bool(self.bearer_token or self.bearer_token_file)

    def __repr__(self) -> str:
        if self.bearer_token_file:
            auth = f"bearer token from {self.bearer_token_file}"
        elif self.bearer_token:
            auth = "bearer token"
        elif self.basic_auth_username:
            auth = f"basic auth as {self.basic_auth_username!r}"
        else:
            auth = "none"
        tls = "ca_bundle=" + repr(self.ca_bundle) if self.ca_bundle else f"verify={self.verify_tls}"
        return (
            f"PrometheusSettings(url={self.url!r}, timeout_seconds={self.timeout_seconds:g}, "
            f"staleness_limit_seconds={self.staleness_limit_seconds:g}, "
            f"max_concurrency={self.max_concurrency}, auth={auth}, tls {tls}, "
            f"extra_headers={sorted(self.extra_headers)})"
        )


# requests' default connection pool size per host; more concurrent queries would open and
# discard a connection each time.
_POOL_CONNECTIONS = 10


def _require(condition: bool, field_name: str, problem: str) -> None:
    if not condition:
        raise PrometheusSettingsError(f"prometheus settings, field {field_name}: {problem}")


def _checked_url(url: str) -> str:
    parts = urlsplit(url)
    _require(
        "@" not in parts.netloc,
        "url",
        "credentials in the URL would end up in logs; use basic_auth_username and "
        "basic_auth_password_file instead",
    )
    _require(
        parts.scheme in ("http", "https") and bool(parts.hostname),
        "url",
        f"expected http(s)://host[:port][/path], got {url!r}",
    )
    _require(
        not parts.query and not parts.fragment,
        "url",
        "the URL must not carry a query string or fragment; extra_headers can carry tenant ids",
    )
    return url.rstrip("/")


class _CredentialError(Exception):
    """A secret could not be read; no query is sent without the credentials it needs."""


class _FileSecret:
    """A secret held in a file, re-read when the file's mtime, size or inode changes.

    The inode matters because Kubernetes rotates projected tokens by swapping a symlink.
    """

    def __init__(self, path: str, what: str) -> None:
        self._path = path
        self._what = what
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._value = ""

    def __repr__(self) -> str:
        return f"_FileSecret({self._path!r})"

    def read(self) -> str:
        try:
            status = os.stat(self._path)
            stamp = (status.st_mtime_ns, status.st_size, status.st_ino)
            with self._lock:
                if stamp != self._stamp:
                    with open(self._path, encoding="utf-8") as handle:
                        value = handle.read().strip()
                    if not value:
                        raise _CredentialError(f"the {self._what} file {self._path} is empty")
                    self._value, self._stamp = value, stamp
                return self._value
        except (OSError, UnicodeDecodeError) as error:
            detail = error.strerror if isinstance(error, OSError) and error.strerror else error
            raise _CredentialError(
                f"cannot read the {self._what} file {self._path}: {detail}"
            ) from error


class _TooSlow(Exception):
    """The answer was still arriving when the query's time was up."""


class _TooLarge(Exception):
    """The answer grew past `max_response_bytes`."""


class _Unreadable(Exception):
    """Prometheus answered with something that is not a well-formed query API answer."""


class PrometheusSource:
    """A `MetricSource` backed by a Prometheus-compatible query API.

    Holds a connection pool and a thread pool: call `close()` (or use `with`) when done.
    """

    def __init__(self, settings: PrometheusSettings) -> None:
        self._settings = settings
        self._query_url = settings.url + "/api/v1/query"
        # Passed with each request: requests lets REQUESTS_CA_BUNDLE override `Session.verify`.
        self._verify: str | bool = settings.ca_bundle or settings.verify_tls
        self._session = requests.Session()
        # Connection errors are not retried: the next tick retries, within its own interval.
        adapter = HTTPAdapter(
            max_retries=Retry(total=0, raise_on_status=False),
            pool_connections=1,
            pool_maxsize=_POOL_CONNECTIONS,
        )
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._pool = ThreadPoolExecutor(
            max_workers=settings.max_concurrency, thread_name_prefix="prometheus-query"
        )
        self._token_file = (
            _FileSecret(settings.bearer_token_file, "bearer token")
            if settings.bearer_token_file
            else None
        )
        self._password_file = (
            _FileSecret(settings.basic_auth_password_file, "basic auth password")
            if settings.basic_auth_password_file
            else None
        )

    def __repr__(self) -> str:
        return f"PrometheusSource({self._settings!r})"

    def __enter__(self) -> PrometheusSource:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._session.close()

    def fetch(self, queries: Sequence[MetricQuery], at: float) -> Mapping[str, MetricAnswer]:
        unique = {query.name: query for query in queries}
        try:
            futures: dict[str, Future[MetricAnswer]] = {
                name: self._pool.submit(self._answer, query, at) for name, query in unique.items()
            }
        except RuntimeError:  # the pool refuses work once shut down
            closed = NoData("the Prometheus source was closed; no query was sent")
            return dict.fromkeys(unique, closed)
        answers: dict[str, MetricAnswer] = {}
        for name, future in futures.items():
            try:
                answers[name] = future.result()
            except Exception as error:  # a bug here must fail one metric, not the tick
                _LOG.exception("query for metric %s failed unexpectedly", name)
                answers[name] = NoData(f"the Prometheus source failed unexpectedly: {error!r}")
        return answers

    def _answer(self, query: MetricQuery, at: float) -> MetricAnswer:
        answer = self._ask(query, at)
        if isinstance(answer, NoData):
            _LOG.info("no data for metric %s: %s", query.name, answer.reason)
        return answer

    def _ask(self, query: MetricQuery, at: float) -> MetricAnswer:
        settings = self._settings
        try:
            headers, auth = self._credentials()
        except _CredentialError as error:
            return NoData(f"{error}; the query was not sent")
        deadline = time.monotonic() + settings.timeout_seconds
        within = f"within {settings.timeout_seconds:g} s"
        try:
            response = self._session.get(
                self._query_url,
                params={
                    "query": query.expr,
                    "time": f"{at:.3f}",
                    # Prometheus gives up a little earlier than this source, so that an
                    # expensive query is reported as such rather than as a silent server.
                    "timeout": f"{settings.timeout_seconds * 0.9:.3f}",
                },
                headers=headers,
                auth=auth,
                verify=self._verify,
                timeout=settings.timeout_seconds,
                stream=True,
            )
            with response:
                body = self._read_body(response, deadline)
        except _TooSlow:
            return NoData(f"Prometheus at {settings.url} did not answer {within}")
        except _TooLarge:
            return NoData(
                f"the answer is larger than {settings.max_response_bytes} bytes; narrow the "
                "query (aggregate with sum by (...)) so it returns the series the rule uses"
            )
        except requests.exceptions.SSLError as error:
            return NoData(
                f"TLS with Prometheus at {settings.url} failed ({_root_cause(error)}); "
                "check ca_bundle"
            )
        except requests.RequestException as error:
            if _is_timeout(error):
                return NoData(f"Prometheus at {settings.url} did not answer {within}")
            cause = _root_cause(error)
            return NoData(
                f"cannot reach Prometheus at {settings.url}: {cause[:1].lower()}{cause[1:]}"
            )
        return self._interpret(response.status_code, body, at)

    def _credentials(self) -> tuple[dict[str, str], tuple[str, str] | None]:
        settings = self._settings
        headers = dict(settings.extra_headers)
        token = self._token_file.read() if self._token_file else settings.bearer_token
        if token:
            headers["Authorization"] = f"Bearer {token}"
        auth = None
        if settings.basic_auth_username:
            password = (
                self._password_file.read()
                if self._password_file
                else settings.basic_auth_password or ""
            )
            auth = (settings.basic_auth_username, password)
        return headers, auth

    def _read_body(self, response: requests.Response, deadline: float) -> bytes:
        limit = self._settings.max_response_bytes
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_content(chunk_size=64 * 1024):
            size += len(chunk)
            if size > limit:
                raise _TooLarge
            if time.monotonic() > deadline:
                raise _TooSlow
            chunks.append(chunk)
        return b"".join(chunks)

    def _interpret(self, status: int, body: bytes, at: float) -> MetricAnswer:
        if status in (401, 403):
            return NoData(
                f"Prometheus refused the credentials (HTTP {status}); check the bearer token "
                "or basic auth settings"
            )
        try:
            document = json.loads(body)
        except ValueError:
            return NoData(
                f"Prometheus answered HTTP {status} with a body that is not JSON: {_excerpt(body)}"
            )
        if not isinstance(document, dict):
            return NoData(
                f"Prometheus answered HTTP {status} with unexpected JSON: {_excerpt(body)}"
            )
        for warning in document.get("warnings") or ():
            _LOG.warning("Prometheus warns: %s", warning)
        if document.get("status") != "success":
            error_type = document.get("errorType") or "error"
            error = document.get("error") or _excerpt(body)
            return NoData(f"Prometheus could not evaluate the query ({error_type}): {error}")
        try:
            points = _points(document.get("data"))
        except _Unreadable as error:
            return NoData(f"Prometheus sent an answer this source cannot read: {error}")
        return _to_answer(points, at, self._settings.staleness_limit_seconds)


def _points(data: Any) -> list[tuple[Labels, float, float]]:
    """(labels, timestamp, value) per series of a query API `data` object."""
    if not isinstance(data, dict):
        raise _Unreadable("no data object")
    kind, result = data.get("resultType"), data.get("result")
    if kind == "scalar":
        timestamp, value = _pair(result)
        return [((), timestamp, value)]
    if kind == "string":
        raise _Unreadable("the query returns a string, not a number")
    if kind not in ("vector", "matrix") or not isinstance(result, list):
        raise _Unreadable(f"unknown result type {kind!r}")
    points: list[tuple[Labels, float, float]] = []
    for series in result:
        if not isinstance(series, dict) or not isinstance(series.get("metric"), dict):
            raise _Unreadable("a series without a label set")
        labels = labels_of({str(k): str(v) for k, v in series["metric"].items()})
        if kind == "vector":
            timestamp, value = _pair(series.get("value"))
        else:
            values = series.get("values")
            if not isinstance(values, list) or not values:
                # A series with no sample in the range has nothing to say.
                continue
            timestamp, value = _pair(values[-1])
        points.append((labels, timestamp, value))
    return points


def _pair(raw: Any) -> tuple[float, float]:
    if not (isinstance(raw, list) and len(raw) == 2):
        raise _Unreadable(f"a sample that is not a [time, value] pair: {raw!r}")
    try:
        return float(raw[0]), float(raw[1])
    except (TypeError, ValueError) as error:
        raise _Unreadable(f"a sample that is not numeric: {raw!r}") from error


def _to_answer(
    points: Iterable[tuple[Labels, float, float]], at: float, staleness_limit: float
) -> MetricAnswer:
    kept: list[Sample] = []
    dropped: list[str] = []
    for labels, timestamp, value in points:
        where = format_labels(labels) if labels else "the value"
        if math.isnan(value):
            dropped.append(f"{where} is NaN (for example 0/0)")
        elif math.isinf(value):
            dropped.append(f"{where} is {'+' if value > 0 else '-'}Inf (a division by zero)")
        elif at - timestamp > staleness_limit:
            dropped.append(
                f"{where} is {at - timestamp:.0f} s old, older than the "
                f"{staleness_limit:g} s staleness limit"
            )
        else:
            kept.append(Sample(labels, value, timestamp))
    if not kept and not dropped:
        return NoData("the query returned no series")
    if not kept:
        return NoData("no usable value: " + _summary(dropped))
    if dropped:
        _LOG.info("ignored %d series: %s", len(dropped), _summary(dropped))
    return Series(tuple(sorted(kept, key=lambda sample: sample.labels)))


def _summary(reasons: Sequence[str]) -> str:
    shown = "; ".join(reasons[:_REASONS_SHOWN])
    rest = len(reasons) - _REASONS_SHOWN
    return shown + (f"; and {rest} more" if rest > 0 else "")


def _excerpt(body: bytes, limit: int = 200) -> str:
    text = body.decode("utf-8", errors="replace").strip().replace("\n", " ")
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _causes(error: BaseException) -> Iterable[BaseException]:
    """The chain below a requests error: urllib3 keeps its cause in `.reason` and `args`."""
    seen: set[int] = set()
    pending: list[BaseException] = [error]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        linked = [current.__cause__, current.__context__, getattr(current, "reason", None)]
        linked += [arg for arg in current.args if isinstance(arg, BaseException)]
        pending.extend(link for link in linked if isinstance(link, BaseException))


def _is_timeout(error: BaseException) -> bool:
    # urllib3 files "connection refused" under ConnectTimeoutError too, hence the exclusion.
    causes = list(_causes(error))
    if any(isinstance(cause, NewConnectionError) for cause in causes):
        return False
    return any(
        isinstance(cause, TimeoutError | requests.Timeout | ReadTimeoutError) for cause in causes
    )


def _root_cause(error: BaseException) -> str:
    """The plainest description in the chain: the OS error if there is one."""
    for cause in _causes(error):
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror
    innermost = list(_causes(error))[-1]
    return str(innermost) or type(innermost).__name__
