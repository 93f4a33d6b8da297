"""The composition root: settings in, a ready-to-run `Daemon` out.

Production: Prometheus, Kubernetes and Redis adapters, the SQL store, a Lease when leader
election is on. Embedded (no Prometheus URL): the bundled modelled system on an accelerated
clock, with the same controller, and each decision printed as it happens.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry

from autotuner.adapters.sql_store import SqlStore, StoreError
from autotuner.config.errors import ConfigError
from autotuner.control.ports import Actuator, Clock, MetricSource
from autotuner.runtime.controller import Controller, DecisionListener, Leadership, SoleReplica
from autotuner.runtime.daemon import Daemon
from autotuner.runtime.embedded import (
    AcceleratedClock,
    LiveSimulation,
    default_scenario,
    embedded_allow_list,
)
from autotuner.runtime.guards import WatchedSource
from autotuner.runtime.http import ControllerMetrics
from autotuner.runtime.logging import log_event
from autotuner.runtime.reloader import RuleReloader, RulesRejected
from autotuner.runtime.settings import AllowList, Settings
from autotuner.sim.scenario import Scenario, load_scenario

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
        parts = _embedded(settings, scenario, allow) if scenario else _production(settings)
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
        store=store,
        leadership=parts.leadership,
        metrics=metrics,
        clock=parts.clock,
        allow=parts.allow,
        dry_run=settings.dry_run,
        on_decision=on_decision,
        ready_max_age=settings.ready_max_age_seconds,
        retention=settings.retention_days * 86_400.0,
        restore_state=parts.restore_state,
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
    )


def _production(settings: Settings) -> _Parts:
    # Imported here: the embedded mode needs none of these client libraries.
    from autotuner.adapters.kubernetes_scale import (
        KubernetesConfigError,
        KubernetesScaleActuator,
        KubernetesScaleSettings,
        api_client_auto,
    )
    from autotuner.adapters.prometheus import (
        PrometheusSettings,
        PrometheusSettingsError,
        PrometheusSource,
    )
    from autotuner.adapters.redis_keys import (
        RedisKeyActuator,
        RedisKeySettings,
        RedisSettingsError,
    )
    from autotuner.runtime.leader import LeaseElector

    assert settings.prometheus_url is not None
    closers: list[Callable[[], None]] = []
    try:
        source = PrometheusSource(
            PrometheusSettings(
                url=settings.prometheus_url,
                timeout_seconds=settings.prometheus_timeout_seconds,
                bearer_token=(
                    settings.prometheus_token.get_secret_value()
                    if settings.prometheus_token
                    else None
                ),
                bearer_token_file=(
                    str(settings.prometheus_token_file) if settings.prometheus_token_file else None
                ),
            )
        )
    except PrometheusSettingsError as error:
        raise StartupError(f"Prometheus settings: {error}") from None
    closers.append(source.close)
    actuators: list[Actuator] = []
    try:
        redis_actuator = RedisKeyActuator(
            RedisKeySettings(
                url=settings.redis_url,
                password_file=(
                    str(settings.redis_password_file) if settings.redis_password_file else None
                ),
                password_env=(
                    _REDIS_PASSWORD_ENV
                    if settings.redis_password is not None and _REDIS_PASSWORD_ENV in os.environ
                    else None
                ),
            )
        )
    except RedisSettingsError as error:
        _close_all(closers)
        raise StartupError(f"Redis settings: {error}") from None
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


def _close_all(closers: list[Callable[[], None]]) -> None:
    for close in closers:
        try:
            close()
        except Exception as error:
            log_event(_LOG, "close_failed", logging.WARNING, error=repr(error))
