"""The Prometheus metric source: each named query asked as an instant query at the tick's time.

How an answer becomes data (the engine sees only `Series` or `NoData`):

- vector: one `Sample` per series, labels exactly as Prometheus returns them, sorted.
- scalar: one `Sample` without labels.
- matrix (a range selector such as `x[1m]`): each series' last sample, that is its most recent
  value at or before the tick's time, with that sample's own timestamp.
- string: `NoData`, a string is not a number.

A sample that is NaN (0/0), +Inf or -Inf, or older than `staleness_limit_seconds` at the tick's
time, is unusable. While one sample of the answer is usable the unusable ones are passed on as
they are, value and timestamp, so that the engine holds those targets ("the value is nan", "the
sample is stale") instead of seeing them vanish and resolving them. When no usable sample is
left the answer is `NoData` saying why. An empty result, an HTTP or PromQL error, a timeout or
an unreachable server is `NoData` too: the source never guesses a number. Prometheus stamps
instant-vector samples with the evaluation time and picks them within its own lookback window
(`--query.lookback-delta`, 5 minutes by default), so the staleness limit bites on matrix answers
and on servers that report a sample's own time.

Queries run concurrently on a bounded thread pool, and one failing query turns only its own
metric into `NoData`. Nothing is retried within a tick: the next tick is the retry, and a retry
would push the tick past its interval.

Each query is one GET (`prometheus_http.get_result`) that keeps only `data.result`. Hence:

- the result type is inferred from the result's shape (a `[time, "value"]` pair is a scalar, or
  a string when the value is not a number; series with `value` form a vector, with `values` a
  matrix), so a PromQL string that reads as a number passes for a scalar;
- an answer other than HTTP 200 is reported in Prometheus's own words, taken from its body;
  warnings are not seen;
- `max_response_bytes` caps what is read, counted while the answer streams in, whether or not
  it declares its length: a larger answer is dropped as soon as it passes the cap;
- `timeout_seconds` bounds the whole query, from sending it to the answer's last byte, so a
  server that trickles its answer cannot hold a tick.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from types import MappingProxyType, TracebackType
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import NewConnectionError, ReadTimeoutError
from urllib3.util.retry import Retry

from autotuner.adapters.prometheus_http import (
    AnswerNotJson,
    AnswerStatus,
    AnswerTooLarge,
    AnswerTooSlow,
    get_result,
)
from autotuner.core.answers import answer_from, summary
from autotuner.core.model import (
    Labels,
    MetricAnswer,
    MetricQuery,
    NoData,
    Series,
    format_labels,
    labels_of,
)
from autotuner.log_events import log_event

_LOG = logging.getLogger(__name__)
_NO_DATA = ("metric.no_data", logging.INFO)


# A range query's series: each label set with its (time, value) samples in time order.
RangeSeries = tuple[Labels, tuple[tuple[float, float], ...]]
RangeAnswer = tuple[RangeSeries, ...] | NoData


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
    # Per query: from sending it to the last byte of the answer.
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
    # What is read of one answer, counted as it streams in; a larger one is dropped at the
    # cap: a query matching far more series than a rule can use is a mistake in the rule.
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


class _Unreadable(Exception):
    """Prometheus answered with something that is not a well-formed query API result."""


# Connection errors are not retried: the next tick retries, within its own interval.
_NO_RETRIES = Retry(total=0, raise_on_status=False)


class PrometheusSource:
    """A `MetricSource` backed by a Prometheus-compatible query API.

    Holds a connection pool and a thread pool: call `close()` (or use `with`) when done.
    One fetch runs at a time, and the credentials read at its start serve all its queries.
    """

    def __init__(self, settings: PrometheusSettings) -> None:
        self._settings = settings
        self._session = requests.Session()
        # Passed with each request (see get_result), so REQUESTS_CA_BUNDLE cannot override a
        # configured CA bundle.
        self._session.verify = settings.ca_bundle or settings.verify_tls
        adapter = HTTPAdapter(
            max_retries=_NO_RETRIES, pool_connections=1, pool_maxsize=_POOL_CONNECTIONS
        )
        for prefix in ("http://", "https://"):
            self._session.mount(prefix, adapter)
        self._pool = ThreadPoolExecutor(
            max_workers=settings.max_concurrency, thread_name_prefix="prometheus-query"
        )
        self._fetch_lock = threading.Lock()
        self._closed = False
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
        self._closed = True
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._session.close()

    def fetch(self, queries: Sequence[MetricQuery], at: float) -> Mapping[str, MetricAnswer]:
        unique = {query.name: query for query in queries}
        if not unique:
            return {}
        closed = NoData("the Prometheus source was closed; no query was sent")
        with self._fetch_lock:
            if self._closed:
                return dict.fromkeys(unique, closed)
            try:
                headers, auth = self._credentials()
            except _CredentialError as error:
                unsent = NoData(f"{error}; the query was not sent")
                log_event(
                    _LOG,
                    "prometheus.credentials_unreadable",
                    logging.WARNING,
                    metrics=list(unique),
                    reason=unsent.reason,
                )
                return dict.fromkeys(unique, unsent)
            try:
                futures: dict[str, Future[MetricAnswer]] = {
                    name: self._pool.submit(self._answer, query, at, headers, auth)
                    for name, query in unique.items()
                }
            except RuntimeError:  # the pool refuses work once shut down
                return dict.fromkeys(unique, closed)
            answers: dict[str, MetricAnswer] = {}
            for name, future in futures.items():
                try:
                    answers[name] = future.result()
                except CancelledError:
                    answers[name] = closed
                except Exception as error:  # a bug here must fail one metric, not the tick
                    log_event(
                        _LOG, "prometheus.query_raised", logging.ERROR, metric=name, exc_info=True
                    )
                    answers[name] = NoData(f"the Prometheus source failed unexpectedly: {error!r}")
            return answers

    def _answer(
        self,
        query: MetricQuery,
        at: float,
        headers: Mapping[str, str],
        auth: tuple[str, str] | None,
    ) -> MetricAnswer:
        answer, failure_event = self._ask(query, at, headers, auth)
        if isinstance(answer, NoData):
            # A failure of the source is a warning; an answer without usable series is the
            # metric's own state, not a fault.
            event, level = (failure_event, logging.WARNING) if failure_event else _NO_DATA
            log_event(_LOG, event, level, metric=query.name, reason=answer.reason)
        return answer

    def _ask(
        self,
        query: MetricQuery,
        at: float,
        headers: Mapping[str, str],
        auth: tuple[str, str] | None,
    ) -> tuple[MetricAnswer, str | None]:
        """The answer, and the event name of the source's failure when it is one."""
        settings = self._settings
        try:
            result = self._get(
                "/api/v1/query", {"query": query.expr, "time": f"{at:.3f}"}, headers, auth
            )
        except Exception as error:
            failure = self._failure(error)
            if failure is None:
                raise
            return failure, _failure_event(error)
        try:
            points = _points(result)
        except _Unreadable as error:
            unreadable = NoData(f"Prometheus sent an answer this source cannot read: {error}")
            return unreadable, "prometheus.answer_unreadable"
        return _to_answer(points, at, settings.staleness_limit_seconds), None

    def _get(
        self,
        path: str,
        params: Mapping[str, str],
        headers: Mapping[str, str],
        auth: tuple[str, str] | None,
    ) -> Any:
        settings = self._settings
        return get_result(
            self._session,
            settings.url + path,
            # Prometheus gives up a little earlier than this source, so that an expensive
            # query is reported as such rather than as a silent server.
            {**params, "timeout": f"{settings.timeout_seconds * 0.9:.3f}"},
            headers=headers,
            auth=auth,
            timeout_seconds=settings.timeout_seconds,
            max_bytes=settings.max_response_bytes,
        )

    def _failure(self, error: Exception) -> NoData | None:
        """Why a query got no answer, or None when `error` is not a query's failure."""
        settings = self._settings
        if isinstance(error, AnswerStatus):
            return _error_answer(error.status, error.body)
        if isinstance(error, AnswerTooLarge):
            return NoData(
                f"the answer is larger than {settings.max_response_bytes} bytes (the source's "
                "max_response_bytes), so reading it stopped there; narrow the query "
                "(aggregate with sum by (...)) so it returns the series the rule uses"
            )
        if isinstance(error, AnswerTooSlow):
            return NoData(
                f"Prometheus at {settings.url} did not send its whole answer within "
                f"{settings.timeout_seconds:g} s"
            )
        if isinstance(error, AnswerNotJson):
            return NoData(
                f"Prometheus answered HTTP 200 with a body that is not JSON: {_excerpt(error.body)}"
            )
        if isinstance(error, requests.exceptions.SSLError):
            return NoData(
                f"TLS with Prometheus at {settings.url} failed ({_root_cause(error)}); "
                "check ca_bundle"
            )
        if isinstance(error, requests.RequestException):
            if _is_timeout(error):
                return NoData(
                    f"Prometheus at {settings.url} did not answer "
                    f"within {settings.timeout_seconds:g} s"
                )
            cause = _root_cause(error)
            return NoData(
                f"cannot reach Prometheus at {settings.url}: {cause[:1].lower()}{cause[1:]}"
            )
        if isinstance(error, KeyError | TypeError):  # looking up data.result
            return NoData("Prometheus sent an answer this source cannot read: no data.result")
        return None

    def query_range(self, expr: str, start: float, end: float, step: float) -> RangeAnswer:
        """Every series of a range query from `start` to `end` (Unix seconds) every `step` s.

        One request, with the credentials and limits of an instant query. The caller bounds the
        points: Prometheus refuses more than 11,000 per series. NoData says why nothing came.
        """
        with self._fetch_lock:
            if self._closed:
                return NoData("the Prometheus source was closed; no query was sent")
            try:
                headers, auth = self._credentials()
            except _CredentialError as error:
                return NoData(f"{error}; the query was not sent")
            try:
                # Whole seconds, as Prometheus's own UI asks.
                params = {"query": expr, "start": str(round(start)), "end": str(round(end))}
                result = self._get(
                    "/api/v1/query_range", {**params, "step": f"{step:g}"}, headers, auth
                )
            except Exception as error:
                failure = self._failure(error)
                if failure is None:
                    raise
                return failure
        try:
            return _range_series(result)
        except _Unreadable as error:
            return NoData(f"Prometheus sent an answer this source cannot read: {error}")

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


def _failure_event(error: Exception) -> str:
    """The log event of a query's failure, one per kind an alert may tell apart."""
    if isinstance(error, AnswerStatus):
        return "prometheus.query_refused"
    if isinstance(error, AnswerTooLarge):
        return "prometheus.answer_too_large"
    if isinstance(error, AnswerTooSlow):
        return "prometheus.timeout"
    if isinstance(error, requests.exceptions.SSLError):
        return "prometheus.tls_failed"
    if isinstance(error, requests.RequestException):
        return "prometheus.timeout" if _is_timeout(error) else "prometheus.unreachable"
    return "prometheus.answer_unreadable"


def _error_answer(status: int, body: bytes) -> NoData:
    """Prometheus's own words for an answer other than HTTP 200, taken from its body."""
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
    if not isinstance(document, dict) or document.get("status") != "error":
        return NoData(f"Prometheus answered HTTP {status} with unexpected JSON: {_excerpt(body)}")
    error_type = document.get("errorType") or "error"
    error = document.get("error") or _excerpt(body)
    # A reason is one line: PromQL parse errors can quote a multi-line query.
    explained = f"Prometheus could not evaluate the query ({error_type}): {error}"
    return NoData(" ".join(explained.split()))


def _points(result: Any) -> list[tuple[Labels, float, float]]:
    """(labels, timestamp, value) per series of a query API result, its type told by its shape."""
    if not isinstance(result, list):
        raise _Unreadable(f"a result that is not a list: {_truncated(repr(result))}")
    if len(result) == 2 and not isinstance(result[0], dict) and isinstance(result[1], str):
        if not _is_number(result[1]):
            raise _Unreadable("the query returns a string, not a number")
        timestamp, value = _pair(result)
        return [((), timestamp, value)]
    points: list[tuple[Labels, float, float]] = []
    for series in result:
        if not isinstance(series, dict) or not isinstance(series.get("metric"), dict):
            raise _Unreadable("a series without a label set")
        labels = labels_of({str(k): str(v) for k, v in series["metric"].items()})
        if "value" in series:
            timestamp, value = _pair(series["value"])
        elif "values" in series:
            values = series["values"]
            if not isinstance(values, list):
                raise _Unreadable(f"the samples of {format_labels(labels)} are not a list")
            if not values:
                # A series with no sample in the range has nothing to say.
                continue
            timestamp, value = _pair(values[-1])
        else:
            raise _Unreadable(f"the series {format_labels(labels)} has no value")
        points.append((labels, timestamp, value))
    return points


def _range_series(result: Any) -> tuple[RangeSeries, ...]:
    """(labels, ((time, value), ...)) per series of a range query's matrix result."""
    if not isinstance(result, list):
        raise _Unreadable(f"a result that is not a list: {_truncated(repr(result))}")
    series_list: list[RangeSeries] = []
    for series in result:
        if not isinstance(series, dict) or not isinstance(series.get("metric"), dict):
            raise _Unreadable("a series without a label set")
        labels = labels_of({str(k): str(v) for k, v in series["metric"].items()})
        values = series.get("values")
        if not isinstance(values, list):
            raise _Unreadable(f"the series {format_labels(labels)} has no list of values")
        series_list.append((labels, tuple(_pair(value) for value in values)))
    return tuple(sorted(series_list))


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _pair(raw: Any) -> tuple[float, float]:
    if not (isinstance(raw, list) and len(raw) == 2):
        raise _Unreadable(f"a sample that is not a [time, value] pair: {_truncated(repr(raw))}")
    try:
        return float(raw[0]), float(raw[1])
    except (TypeError, ValueError) as error:
        raise _Unreadable(f"a sample that is not numeric: {_truncated(repr(raw))}") from error


def _to_answer(
    points: Iterable[tuple[Labels, float, float]], at: float, staleness_limit: float
) -> MetricAnswer:
    answer, unusable = answer_from(points, at, staleness_limit)
    if unusable and isinstance(answer, Series):
        log_event(_LOG, "prometheus.unusable_series", count=len(unusable), series=summary(unusable))
    return answer


def _excerpt(body: bytes | str) -> str:
    """A body as one quoted line, short enough for a reason."""
    text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
    return repr(_truncated(text.strip().replace("\n", " ")))


def _truncated(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


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
