"""`autotuner trace fetch`: a request rate from Prometheus, saved as a trace file to replay.

    autotuner trace fetch --prometheus-url URL --query 'sum(rate(http_requests_total[1m]))' \\
        --start 2026-11-01T00:00Z --end 2026-11-08T00:00Z -o last-week.csv
    autotuner sim SCENARIO --trace last-week.csv

The connection settings are `autotuner run`'s (flags, AUTOTUNER_PROMETHEUS_* variables or the
`--config` file; secrets from the environment or files only). The file records where its
numbers came from in `#` lines, so a replay can be traced back and fetched again.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from datetime import UTC, datetime
from pathlib import Path

from autotuner.config.durations import format_duration, parse_duration

# Flags for the settings `autotuner run` reads too; secrets are read from the environment.
_CONNECTION_HELP = {
    "prometheus_url": "Prometheus base URL (or AUTOTUNER_PROMETHEUS_URL)",
    "prometheus_token_file": "file holding a bearer token (or AUTOTUNER_PROMETHEUS_TOKEN)",
    "prometheus_basic_auth_username": "user for basic auth (password from a file or the environment)",
    "prometheus_basic_auth_password_file": "file holding the basic-auth password",
    "prometheus_ca_bundle": "PEM file of CAs to trust instead of the system's",
    "prometheus_verify_tls": "verify Prometheus's TLS certificate: true (default) or false",
    "prometheus_extra_headers": "headers sent with every query: NAME=VALUE,... (e.g. X-Scope-OrgID=crm)",
    "prometheus_timeout_seconds": f"timeout of each range request (default {60:g} here)",
    "prometheus_max_response_bytes": "refuse answers declaring more bytes than this",
}
# A range query reads far more than the daemon's instant queries: give it longer by default.
_DEFAULT_TIMEOUT_SECONDS = 60.0
DEFAULT_MAX_POINTS = 100_000
DEFAULT_MAX_SPAN = "35d"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="trace_command", metavar="SUBCOMMAND", required=True)
    help_text = "save a request-rate query's answer over a period as a per-minute trace file"
    fetch = sub.add_parser("fetch", help=help_text, description=help_text, allow_abbrev=False)
    fetch.add_argument("--query", required=True, help="a request rate, one series")
    fetch.add_argument("--start", required=True, help="ISO 8601, UTC unless it says otherwise")
    fetch.add_argument("--end", required=True, help="ISO 8601; the period is [start, end)")
    fetch.add_argument("--step", default="1m", help="1m (default), 30s, 15s ...: divides 1m")
    fetch.add_argument(
        "--max-points",
        type=int,
        default=DEFAULT_MAX_POINTS,
        help=f"refuse a period of more samples than this (default {DEFAULT_MAX_POINTS:,})",
    )
    fetch.add_argument(
        "--max-span",
        default=DEFAULT_MAX_SPAN,
        help=f"refuse a period longer than this (default {DEFAULT_MAX_SPAN})",
    )
    fetch.add_argument(
        "--fill-gaps",
        choices=["linear", "zero"],
        help="fill minutes without a usable sample (by default they are refused)",
    )
    fetch.add_argument("-o", "--output", type=Path, required=True, metavar="FILE.csv")
    fetch.add_argument("--config", metavar="FILE", help="YAML settings file, as for `run`")
    for name, text in _CONNECTION_HELP.items():
        fetch.add_argument(
            "--" + name.replace("_", "-"), metavar=name.split("_")[-1].upper(), help=text
        )


class _Refused(Exception):
    """A problem to report in one line; nothing is written."""


def _moment(flag: str, text: str) -> float:
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise _Refused(
            f"{flag} {text!r} is not a time; write it in ISO 8601, e.g. 2026-11-01T00:00Z"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _duration(flag: str, text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as error:
        raise _Refused(f"{flag}: {error}") from None


def run(args: argparse.Namespace) -> int:
    try:
        message = _fetch(args)
    except _Refused as error:
        print(f"autotuner trace fetch: {error}", file=sys.stderr)
        return 2
    print(message)
    return 0


def _fetch(args: argparse.Namespace) -> str:
    # Imported here: they pull in the HTTP client libraries, which `--help` does not need.
    from autotuner.adapters.prometheus import PrometheusSettingsError, PrometheusSource
    from autotuner.adapters.prometheus_trace import (
        TraceFetchError,
        TraceQuery,
        check_bounds,
        fetch_minute_rates,
        filled,
    )
    from autotuner.runtime.settings import SettingsError, load_settings, redact_url
    from autotuner.runtime.wiring import StartupError, prometheus_settings
    from autotuner.sim.trace_file import write_trace_csv

    start, end = _moment("--start", args.start), _moment("--end", args.end)
    step = _duration("--step", args.step)
    max_span = _duration("--max-span", args.max_span)
    output: Path = args.output
    if not output.parent.is_dir():
        raise _Refused(f"-o {output}: the folder {output.parent} does not exist")
    try:
        query = TraceQuery(args.query, start, end, step)
        check_bounds(query, args.max_points, max_span)
    except TraceFetchError as error:
        raise _Refused(str(error)) from None

    flags = {name: getattr(args, name) for name in (*_CONNECTION_HELP, "config")}
    try:
        settings = load_settings(flags)
    except SettingsError as error:
        raise _Refused(str(error)) from None
    if settings.prometheus_url is None:
        raise _Refused("no Prometheus to ask: give --prometheus-url or AUTOTUNER_PROMETHEUS_URL")
    if "prometheus_timeout_seconds" not in settings.model_fields_set:
        settings = settings.model_copy(
            update={"prometheus_timeout_seconds": _DEFAULT_TIMEOUT_SECONDS}
        )
    try:
        connection = prometheus_settings(settings, staleness_limit_seconds=300.0)
    except (StartupError, PrometheusSettingsError) as error:
        raise _Refused(str(error)) from None

    with PrometheusSource(connection) as source:
        try:
            rates = fetch_minute_rates(source, query)
        except TraceFetchError as error:
            raise _Refused(str(error)) from None
    gaps = "none"
    if rates.missing:
        if args.fill_gaps is None:
            raise _Refused(
                f"{rates.missing} of {query.minutes} minutes have no usable sample "
                f"(gaps from {rates.describe_gaps()}); nothing was written: fill them with "
                "--fill-gaps linear (or zero), or choose a period without gaps"
            )
        gaps = f"{rates.missing} minutes filled ({args.fill_gaps}): {rates.describe_gaps()}"
    per_second = filled(rates, args.fill_gaps or "linear")
    headers = sorted(name for name, _ in settings.prometheus_extra_headers)
    comments = [
        "autotuner trace fetch: requests per minute from a Prometheus range query",
        f"query: {json.dumps(query.expr)}",
        f"prometheus: {redact_url(connection.url)}",
        f"period: {query.describe()}",
        f"step: {format_duration(step)} (minute M is the mean of the samples stamped in "
        "(M, M + 1m], as rate() looks back from its sample's time)",
        f"gaps: {gaps}",
    ]
    if headers:
        comments.append(f"headers: {', '.join(headers)} (values not recorded)")
    write_trace_csv(output, query.start, [rate * 60.0 for rate in per_second], comments)
    peak = max(per_second)
    mean = math.fsum(per_second) / len(per_second)
    return (
        f"wrote {output}: {query.describe()} in "
        f"{rates.requests} request{'s' if rates.requests > 1 else ''}, mean {mean:.4g} rps, "
        f"peak {peak:.4g} rps; gaps: {gaps}. Replay it: autotuner sim SCENARIO --trace {output}"
    )
