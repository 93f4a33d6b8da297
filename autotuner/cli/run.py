"""`autotuner run`: the controller daemon.

Every setting can be given as a flag, an AUTOTUNER_* environment variable or in the settings
file (`--config`), in that order of precedence. Secrets only come from the environment or from
files (`--redis-password-file`, `--prometheus-token-file`).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

from autotuner.core.model import Decision, Outcome, OutcomeStatus, Verdict
from autotuner.runtime.logging import configure_logging
from autotuner.runtime.settings import (
    SECRET_FIELDS,
    Settings,
    SettingsError,
    load_settings,
    redact_url,
)

_HELP = {
    "prometheus_url": "Prometheus base URL; without it, run the bundled simulated system",
    "prometheus_token_file": "file holding a bearer token for Prometheus (re-read as it rotates)",
    "prometheus_timeout_seconds": "timeout of each Prometheus query",
    "redis_url": "Redis holding the config keys (redis://host:port/db)",
    "redis_password_file": "file holding the Redis password",
    "prometheus_basic_auth_username": "user for basic auth to Prometheus (password from a file or the environment)",
    "prometheus_basic_auth_password_file": "file holding the Prometheus basic-auth password (re-read as it rotates)",
    "prometheus_ca_bundle": "PEM file of CAs to trust for Prometheus instead of the system's",
    "prometheus_verify_tls": "verify Prometheus's TLS certificate: true (default) or false",
    "prometheus_extra_headers": "headers sent with every query: NAME=VALUE,... (e.g. X-Scope-OrgID=crm)",
    "prometheus_max_concurrency": "Prometheus queries run at once (1 to 10, default 4)",
    "prometheus_max_response_bytes": "refuse Prometheus answers declaring more bytes than this",
    "redis_username": "Redis ACL user",
    "redis_username_file": "file holding the Redis ACL user",
    "redis_ca_file": "PEM file of CAs to trust for rediss:// instead of the system's",
    "redis_connect_timeout_seconds": "timeout of each Redis connection attempt (default 2)",
    "redis_command_timeout_seconds": "timeout of each Redis command (default 2)",
    "redis_key_prefix": "prefix put before every key a rule names",
    "redis_publish_channel": "Redis channel told {key, old, new, rule} after each write",
    "redis_write_attempts": "times a Redis write is sent when the connection fails (default 3)",
    "database_url": "SQLAlchemy URL of the audit and state database (SQLite file by default)",
    "database_url_file": "file holding that URL (it carries the database password); used instead",
    "retention_days": "delete audit records older than this",
    "rules": "rule files or directories, comma-separated",
    "interval_seconds": "seconds between control cycles (default 15)",
    "http_host": "address of the /healthz, /readyz and /metrics server",
    "http_port": "port of that server (0 picks a free one)",
    "ready_max_age_seconds": "not ready when Prometheus last answered longer ago than this",
    "shutdown_grace_seconds": "on SIGTERM, how long the cycle in flight may take to finish",
    "log_level": "DEBUG, INFO, WARNING or ERROR",
    "kubeconfig": "kubeconfig file (in-cluster service account when unset inside a pod)",
    "kube_context": "kubeconfig context",
    "lease_name": "name of the coordination.k8s.io Lease for leader election",
    "lease_namespace": "namespace of that Lease",
    "identity": "this replica's name in the Lease (the pod name)",
    "sim_speed": "embedded mode: simulated seconds per real second",
    "sim_scenario": "embedded mode: a scenario file instead of the built-in flash crowd",
}
_SWITCHES = {
    "dry_run": "evaluate and record decisions without acting",
    "leader_election": "only the replica holding the Lease acts",
}
_ALLOW_HELP = {
    "namespaces": "namespaces rules may touch, comma-separated",
    "workloads": "workload name patterns (fnmatch) rules may scale, comma-separated",
    "key_prefixes": "Redis key prefixes rules may change, comma-separated",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="YAML settings file")
    for name in Settings.model_fields:
        if name in SECRET_FIELDS or name == "allow":
            continue
        flag = "--" + name.replace("_", "-")
        if name in _SWITCHES:
            parser.add_argument(flag, action="store_const", const=True, help=_SWITCHES[name])
        else:
            parser.add_argument(flag, metavar=name.split("_")[-1].upper(), help=_HELP.get(name))
    for name, help_text in _ALLOW_HELP.items():
        parser.add_argument("--allow-" + name.replace("_", "-"), metavar="LIST", help=help_text)


def run(args: argparse.Namespace) -> int:
    flags = {
        name: value for name, value in vars(args).items() if name != "command" and value is not None
    }
    try:
        settings = load_settings(flags)
    except SettingsError as error:
        print(f"autotuner run: {error}", file=sys.stderr)
        return 2
    level = settings.log_level
    if settings.embedded and "log_level" not in settings.model_fields_set:
        # The terminal shows decisions as lines of text; keep the JSON events for problems.
        level = "WARNING"
    configure_logging(level, secrets=settings.secret_values())
    # Imported once the settings are known to be good: it pulls in every client library.
    from autotuner.runtime.wiring import StartupError, build_daemon

    printed = _ChangePrinter()
    on_decision = printed if settings.embedded else None
    try:
        daemon = build_daemon(settings, on_decision)
    except StartupError as error:
        print(f"autotuner run: {error}", file=sys.stderr)
        return 2
    if settings.embedded:
        print(
            "autotuner: no Prometheus URL given, so running the bundled simulated system at "
            f"{settings.sim_speed:g}x real time; each decision is printed as it happens.\n"
            f"Probes and metrics on http://{settings.http_host}:{daemon.http_port}/metrics; "
            "Ctrl-C stops.",
            flush=True,
        )
    daemon.install_signal_handlers()
    status = daemon.run()
    if settings.embedded:
        print(
            f"autotuner: stopped after {printed.changes} changes, all recorded in "
            f"{redact_url(settings.database_url.get_secret_value())}. Next: "
            "`autotuner history`, `autotuner explain deployment/crm/api`.",
            flush=True,
        )
    logging.shutdown()
    return status


class _ChangePrinter:
    """Prints each change as it happens, and counts them."""

    def __init__(self) -> None:
        self.changes = 0

    def __call__(self, decision: Decision, outcome: Outcome) -> None:
        if decision.verdict is Verdict.CHANGE:
            self.changes += 1
            print(describe_decision(decision, outcome), flush=True)


def describe_decision(decision: Decision, outcome: Outcome) -> str:
    """One line for a person watching decisions go by (times in UTC, on the daemon's clock)."""
    when = time.strftime("%H:%M:%S", time.gmtime(decision.time))
    status = outcome.status.value
    if outcome.detail and outcome.status is not OutcomeStatus.APPLIED:
        status += f": {outcome.detail}"
    limited = f" (limited by {decision.limited_by})" if decision.limited_by else ""
    what = decision.reason or f"{decision.knob.id} {decision.current} -> {decision.final}"
    return f"{when}  {decision.rule}: {what}{limited} [{status}]"
