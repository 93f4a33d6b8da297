"""The composition root: settings in, a ready-to-run `Daemon` out.

Production: Prometheus, Kubernetes and Redis adapters, the SQL store, a Lease when leader
election is on. Embedded (no Prometheus URL): the bundled modelled system on an accelerated
clock, with the same controller, and each decision printed as it happens.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from autotuner.adapters.sql_store import SqlStore, StoreError
from autotuner.config.errors import ConfigError
from autotuner.control.ports import Actuator, Clock, MetricSource
from autotuner.core.model import MetricAnswer, MetricQuery, NoData
from autotuner.runtime.controller import (
    Controller,
    DecisionListener,
    Leadership,
    SoleReplica,
    StateStore,
)
from autotuner.runtime.daemon import Daemon
from autotuner.runtime.embedded import (
    AcceleratedClock,
    LiveSimulation,
    WallTimeAudit,
    default_scenario,
    embedded_allow_list,
)
from autotuner.runtime.guards import FailureBackOff, WatchedSource
from autotuner.runtime.http import ControllerMetrics
from autotuner.runtime.logging import log_event
from autotuner.runtime.reloader import RuleReloader, RulesRejected
from autotuner.runtime.settings import AllowList, Settings
from autotuner.sim.scenario import Scenario, load_scenario

if TYPE_CHECKING:
    # Imported where used: the embedded mode needs none of these client libraries.
    from autotuner.adapters.prometheus import PrometheusSettings
    from autotuner.adapters.redis_keys import RedisKeyActuator, RedisKeySettings

_LOG = logging.getLogger(__name__)

# The environment variable the Redis adapter reads the password from, when it came from there.
_REDIS_PASSWORD_ENV = "AUTOTUNER_REDIS_PASSWORD"


class StartupError(Exception):
    """The daemon cannot start; the message says what to fix."""


class SystemClock:
    def now(self) -> float:
        return time.time()


@dataclass
class _Parts:
    source: MetricSource
    actuators: list[Actuator]
    clock: Clock
    allow: AllowList
    interval: float  # real seconds between cycles
    closers: list[Callable[[], None]] = field(default_factory=list)
    on_cycle: Callable[[], bool] | None = None
    leadership: Leadership = field(default_factory=SoleReplica)
    restore_state: bool = True
    # How the controller sees the audit store (the embedded run keeps it in wall time).
    audit_view: Callable[[SqlStore], StateStore] | None = None


def build_daemon(settings: Settings, on_decision: DecisionListener | None = None) -> Daemon:
    """Everything connected and checked; raises StartupError naming what is wrong.

    The cheap checks (scenario, rules, allow-list, store) come before connecting anything.
    """
    scenario = _scenario(settings) if settings.embedded else None
    allow = settings.allow
    if scenario is not None and not (allow.namespaces or allow.workloads or allow.key_prefixes):
        allow = embedded_allow_list(scenario)
    try:
        reloader = RuleReloader(settings.rules, allow)
    except RulesRejected as error:
        raise StartupError(
            "the rule files cannot be used:\n  " + "\n  ".join(error.problems)
        ) from None
    try:
        store = SqlStore(settings.database_url.get_secret_value())
    except StoreError as error:
        raise StartupError(str(error)) from None
    try:
        parts = (
            _embedded(settings, scenario, allow) if scenario else _production(settings, reloader)
        )
    except StartupError:
        store.close()
        raise
    parts.closers.append(store.close)
    metrics = ControllerMetrics(CollectorRegistry())
    controller = Controller(
        reloader=reloader,
        source=WatchedSource(
            parts.source,
            lambda metric, reason: metrics.query_errors.labels(metric=metric).inc(),
        ),
        actuators=parts.actuators,
        store=parts.audit_view(store) if parts.audit_view else store,
        leadership=parts.leadership,
        metrics=metrics,
        clock=parts.clock,
        allow=parts.allow,
        dry_run=settings.dry_run,
        on_decision=on_decision,
        ready_max_age=settings.ready_max_age_seconds,
        retention=settings.retention_days * 86_400.0,
        restore_state=parts.restore_state,
        # On the controller's clock, which the embedded mode accelerates.
        back_off=FailureBackOff.for_interval(settings.interval_seconds),
    )
    log_event(
        _LOG,
        "daemon.configured",
        mode="embedded simulation" if settings.embedded else "production",
        rules=len(reloader.ruleset.rules),
        store=store.url,
        settings=settings.redacted(),
    )
    try:
        return Daemon(
            controller,
            interval=parts.interval,
            metrics=metrics,
            leadership=parts.leadership,
            http_bind=(settings.http_host, _http_port(settings)),
            closers=parts.closers,
            shutdown_grace=settings.shutdown_grace_seconds,
            on_cycle=parts.on_cycle,
        )
    except OSError as error:
        _close_all(parts.closers)
        parts.leadership.release()
        raise StartupError(
            f"cannot serve HTTP on {settings.http_host}:{settings.http_port}: {error.strerror}; "
            "choose another port with --http-port or AUTOTUNER_HTTP_PORT"
        ) from None


def _http_port(settings: Settings) -> int:
    # A demo on a laptop should not fail because something else holds 8080: unless a port was
    # asked for, the embedded mode takes a free one (and prints it).
    if settings.embedded and "http_port" not in settings.model_fields_set:
        return 0
    return settings.http_port


def _scenario(settings: Settings) -> Scenario:
    if settings.sim_scenario is None:
        return default_scenario()
    try:
        return load_scenario(settings.sim_scenario)
    except ConfigError as error:
        raise StartupError(f"the simulation scenario cannot be used:\n  {error}") from None


def _embedded(settings: Settings, scenario: Scenario, allow: AllowList) -> _Parts:
    clock = AcceleratedClock(settings.sim_speed)
    simulation = LiveSimulation(scenario, clock.origin)

    def keep_running() -> bool:
        if simulation.finished:
            log_event(_LOG, "simulation.finished", scenario=scenario.name)
            return False
        return True

    return _Parts(
        source=simulation,
        actuators=[simulation.actuator],
        clock=clock,
        allow=allow,
        interval=settings.interval_seconds / settings.sim_speed,
        on_cycle=keep_running,
        # The modelled system starts afresh each run, so must the engine's memory of it.
        restore_state=False,
        audit_view=lambda store: WallTimeAudit(store, clock),
    )


def _production(settings: Settings, reloader: RuleReloader) -> _Parts:
    # Imported here: the embedded mode needs none of these client libraries.
    from autotuner.adapters.kubernetes_scale import (
        KubernetesConfigError,
        KubernetesScaleActuator,
        KubernetesScaleSettings,
        api_client_auto,
    )
    from autotuner.runtime.leader import LeaseElector

    closers: list[Callable[[], None]] = []
    source = connect_metric_source(settings, lambda: reloader.ruleset.max_sample_age)
    closers.append(source.close)
    actuators: list[Actuator] = []
    try:
        redis_actuator = connect_redis(settings)
    except StartupError:
        _close_all(closers)
        raise
    closers.append(redis_actuator.close)
    actuators.append(redis_actuator)

    leadership: Leadership = SoleReplica()
    try:
        api_client = api_client_auto(
            str(settings.kubeconfig) if settings.kubeconfig else None, settings.kube_context
        )
    except KubernetesConfigError as error:
        if settings.leader_election or settings.kubeconfig is not None:
            _close_all(closers)
            raise StartupError(str(error)) from None
        # Rules that only tune Redis keys need no Kubernetes; workload knobs then read as
        # "no actuator is configured" and are never acted on.
        log_event(_LOG, "kubernetes.unavailable", logging.WARNING, error=str(error))
    else:
        kube_actuator = KubernetesScaleActuator(
            api_client, KubernetesScaleSettings(instance=settings.identity)
        )
        closers.append(kube_actuator.close)
        actuators.insert(0, kube_actuator)
        if settings.leader_election:
            elector = LeaseElector(
                api_client,
                namespace=settings.lease_namespace,
                name=settings.lease_name,
                identity=settings.identity,
            )
            elector.start()
            leadership = elector
    return _Parts(
        source=source,
        actuators=actuators,
        clock=SystemClock(),
        allow=settings.allow,
        interval=settings.interval_seconds,
        closers=closers,
        leadership=leadership,
    )


def prometheus_settings(settings: Settings, staleness_limit_seconds: float) -> PrometheusSettings:
    """The Prometheus adapter's settings: every connection option of `settings`, passed on."""
    from autotuner.adapters.prometheus import PrometheusSettings

    if settings.prometheus_url is None:
        raise StartupError("no Prometheus URL is set; give --prometheus-url")
    return PrometheusSettings(
        url=settings.prometheus_url,
        timeout_seconds=settings.prometheus_timeout_seconds,
        staleness_limit_seconds=staleness_limit_seconds,
        max_concurrency=settings.prometheus_max_concurrency,
        bearer_token=_revealed(settings.prometheus_token),
        bearer_token_file=_path_text(settings.prometheus_token_file),
        basic_auth_username=settings.prometheus_basic_auth_username,
        basic_auth_password=_revealed(settings.prometheus_basic_auth_password),
        basic_auth_password_file=_path_text(settings.prometheus_basic_auth_password_file),
        ca_bundle=_path_text(settings.prometheus_ca_bundle),
        verify_tls=settings.prometheus_verify_tls,
        extra_headers=dict(settings.prometheus_extra_headers),
        max_response_bytes=settings.prometheus_max_response_bytes,
    )


def redis_key_settings(settings: Settings) -> RedisKeySettings:
    """The Redis actuator's settings: every connection option of `settings`, passed on.

    The actuator holds no password, only where to read it, so a password given in the
    environment reaches it as the name of that variable.
    """
    from autotuner.adapters.redis_keys import RedisKeySettings

    password_env = None
    if settings.redis_password is not None:
        if os.environ.get(_REDIS_PASSWORD_ENV) != settings.redis_password.get_secret_value():
            raise StartupError(
                f"the Redis password reaches the actuator only through {_REDIS_PASSWORD_ENV} "
                f"or {_REDIS_PASSWORD_ENV}_FILE; set one of them"
            )
        password_env = _REDIS_PASSWORD_ENV
    return RedisKeySettings(
        url=settings.redis_url,
        username=settings.redis_username,
        username_file=_path_text(settings.redis_username_file),
        password_file=_path_text(settings.redis_password_file),
        password_env=password_env,
        ca_file=_path_text(settings.redis_ca_file),
        connect_timeout=settings.redis_connect_timeout_seconds,
        command_timeout=settings.redis_command_timeout_seconds,
        key_prefix=settings.redis_key_prefix,
        publish_channel=settings.redis_publish_channel,
        write_attempts=settings.redis_write_attempts,
    )


def connect_metric_source(
    settings: Settings, staleness_limit: Callable[[], float]
) -> RuleStalenessSource:
    """The Prometheus source, following the staleness limit of the rules in force."""
    from autotuner.adapters.prometheus import PrometheusSettingsError

    try:
        return RuleStalenessSource(
            lambda limit: prometheus_settings(settings, limit), staleness_limit
        )
    except PrometheusSettingsError as error:
        raise StartupError(f"Prometheus settings: {error}") from None


def connect_redis(settings: Settings) -> RedisKeyActuator:
    from autotuner.adapters.redis_keys import RedisKeyActuator, RedisSettingsError

    try:
        return RedisKeyActuator(redis_key_settings(settings))
    except RedisSettingsError as error:
        raise StartupError(f"Redis settings: {error}") from None


class RuleStalenessSource:
    """The Prometheus source with the staleness limit of the rules in force.

    The engine ignores samples older than the rule set's `max_sample_age`, and the source turns
    an answer made only of such samples into "no data" with the reason; both must use the same
    limit. The limit changes only when rules are reloaded, so the source is rebuilt with the
    new limit at the first fetch after such a change; building one opens no connection.
    """

    def __init__(
        self,
        settings_for: Callable[[float], PrometheusSettings],
        staleness_limit: Callable[[], float],
    ) -> None:
        from autotuner.adapters.prometheus import PrometheusSource

        self._settings_for = settings_for
        self._open = PrometheusSource
        self._staleness_limit = staleness_limit
        self._lock = threading.Lock()
        self._settings = settings_for(staleness_limit())
        self._source = PrometheusSource(self._settings)
        self._closed = False

    @property
    def settings(self) -> PrometheusSettings:
        """The settings of the source that queries currently go to."""
        with self._lock:
            return self._settings

    def fetch(self, queries: Sequence[MetricQuery], at: float) -> Mapping[str, MetricAnswer]:
        from autotuner.adapters.prometheus import PrometheusSettingsError

        limit = self._staleness_limit()
        with self._lock:
            if limit != self._settings.staleness_limit_seconds and not self._closed:
                try:
                    replacement = self._settings_for(limit)
                except PrometheusSettingsError as error:
                    unusable = NoData(f"the rules' max_sample_age cannot be used: {error}")
                    return {query.name: unusable for query in queries}
                self._source.close()
                self._settings, self._source = replacement, self._open(replacement)
                log_event(_LOG, "prometheus.staleness_limit_changed", seconds=limit)
            source = self._source
        return source.fetch(queries, at)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._source.close()


def _revealed(secret: SecretStr | None) -> str | None:
    return secret.get_secret_value() if secret is not None else None


def _path_text(path: Path | None) -> str | None:
    return str(path) if path is not None else None


def _close_all(closers: list[Callable[[], None]]) -> None:
    for close in closers:
        try:
            close()
        except Exception as error:
            log_event(_LOG, "startup.close_failed", logging.WARNING, error=repr(error))
