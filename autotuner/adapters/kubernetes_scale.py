"""The Kubernetes scale actuator: replicas of Deployments and StatefulSets.

It reads and writes the `scale` subresource with optimistic concurrency: a write carries the
resourceVersion just read, so a concurrent change makes the API server answer 409 instead of
being overwritten. On a 409 the workload is read again once; if its replicas are still those the
decision started from, the same change is written against the new resourceVersion, otherwise
nothing is written and the outcome says who moved it from what to what.

It refuses to fight another autoscaler: a workload that a HorizontalPodAutoscaler
(autoscaling/v2) or a KEDA ScaledObject scales, or that carries `autotuner.io/paused: "true"`,
is read as `KnobUnreadable(skip=True)` and never written. A cluster without KEDA (its API group
answers 404) simply has no ScaledObjects.

Each change is recorded as a Kubernetes Event on the workload. Nothing here raises to the
caller: 404, 403, 409, 5xx, timeouts and unreachable servers become readings and outcomes whose
`extra["error"]` names the kind of failure and whose text says what to do.
"""

from __future__ import annotations

import json
import os
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.incluster_config import (
    SERVICE_CERT_FILENAME,
    SERVICE_TOKEN_FILENAME,
    InClusterConfigLoader,
)
from urllib3.util.retry import Retry

from autotuner.control.actuation import failed_unexpectedly, writable
from autotuner.core.model import (
    Decision,
    KnobKind,
    KnobReading,
    KnobRef,
    KnobUnreadable,
    KnobValue,
    Outcome,
    OutcomeStatus,
    format_labels,
    usable,
)

PAUSED_ANNOTATION = "autotuner.io/paused"
EVENT_REASON = "AutotunerScaled"
# An Event's message is meant for `kubectl describe`; events.k8s.io caps its note at 1 kB.
_EVENT_MESSAGE_LIMIT = 1024


class KubernetesConfigError(Exception):
    """The Kubernetes connection could not be configured; the message says what to fix."""


def _with_safe_retries(configuration: client.Configuration) -> client.Configuration:
    # Retry a request that never reached the server, and a GET whose connection dropped, but
    # never resend a write that may have been received: its outcome would be ambiguous.
    configuration.retries = Retry(
        total=2, connect=2, read=1, status=0, other=0, allowed_methods=frozenset({"GET"})
    )
    return configuration


def api_client_from_kubeconfig(
    path: str | None = None, context: str | None = None
) -> client.ApiClient:
    """An API client from a kubeconfig file ($KUBECONFIG or ~/.kube/config when path is None)."""
    # Looked up now: the client library reads $KUBECONFIG once, when it is imported.
    where = path or os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
    configuration = client.Configuration()
    try:
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=where,
            context=context,
            client_configuration=configuration,
            persist_config=False,
        )
    except (config.ConfigException, OSError, ValueError) as error:
        raise KubernetesConfigError(
            f"cannot use kubeconfig {where}"
            + (f" (context {context})" if context else "")
            + f": {error}; pass a readable kubeconfig file and an existing context"
        ) from error
    return client.ApiClient(_with_safe_retries(configuration))


def api_client_in_cluster(
    token_path: str = SERVICE_TOKEN_FILENAME,
    ca_path: str = SERVICE_CERT_FILENAME,
    environ: Mapping[str, str] | None = None,
) -> client.ApiClient:
    """An API client from the pod's service account (the token file is re-read as it rotates)."""
    configuration = client.Configuration()
    try:
        InClusterConfigLoader(  # type: ignore[no-untyped-call]
            token_filename=token_path,
            cert_filename=ca_path,
            environ=os.environ if environ is None else environ,
        ).load_and_set(configuration)
    except (config.ConfigException, OSError, ValueError) as error:
        raise KubernetesConfigError(
            f"cannot use the in-cluster service account: {error}; run inside a pod with "
            "KUBERNETES_SERVICE_HOST/PORT set and a mounted service account token, "
            "or give a kubeconfig instead"
        ) from error
    return client.ApiClient(_with_safe_retries(configuration))


def api_client_auto(kubeconfig: str | None = None, context: str | None = None) -> client.ApiClient:
    """The kubeconfig when one is given, else in-cluster inside a pod, else the default kubeconfig."""
    if kubeconfig is None and context is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        return api_client_in_cluster()
    return api_client_from_kubeconfig(kubeconfig, context)


@dataclass(frozen=True, slots=True)
class KubernetesScaleSettings:
    # Seconds for each API request, connection and answer together.
    request_timeout: float = 10.0
    # Written on Events as the reporting component and instance (the pod's name, say).
    component: str = "autotuner"
    instance: str = ""

    def __post_init__(self) -> None:
        if not (usable(self.request_timeout) and self.request_timeout > 0):
            raise ValueError(
                f"request_timeout must be a positive number of seconds, got {self.request_timeout!r}"
            )


@dataclass(frozen=True, slots=True)
class _Failure:
    """A failed API call: `code` is a stable word for the kind of failure, `detail` the sentence."""

    code: str
    detail: str


@dataclass(frozen=True, slots=True)
class _Workload:
    """What the actuator needs to know about one Deployment or StatefulSet."""

    uid: str
    resource_version: str
    replicas: int
    paused: bool
    deleting: bool


_PLURALS = {KnobKind.DEPLOYMENT: "deployments", KnobKind.STATEFULSET: "statefulsets"}


def _describe(knob: KnobRef) -> str:
    return f"{knob.kind.value} {knob.namespace}/{knob.name}"


def _status_message(error: ApiException) -> str:
    """The API server's own sentence from a metav1.Status body, else the HTTP reason."""
    body = error.body
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if isinstance(body, str) and body.strip():
        try:
            parsed = json.loads(body)
        except ValueError:
            return body.strip()[:300]
        if isinstance(parsed, dict) and isinstance(parsed.get("message"), str):
            return cast(str, parsed["message"])
    return str(error.reason or "no reason given")


def _timed_out(error: BaseException) -> bool:
    cause = error.reason if isinstance(error, urllib3.exceptions.MaxRetryError) else error
    # urllib3 files a refused connection under its timeout errors; it is not a slow server.
    if isinstance(cause, urllib3.exceptions.NewConnectionError):
        return False
    return isinstance(cause, urllib3.exceptions.TimeoutError)


class KubernetesScaleActuator:
    """Implements the Actuator port for Deployment and StatefulSet knobs."""

    def __init__(
        self,
        api_client: client.ApiClient,
        settings: KubernetesScaleSettings | None = None,
        *,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._api_client = api_client
        self._settings = settings or KubernetesScaleSettings()
        self._clock = clock or time.time
        self._apps = client.AppsV1Api(api_client)
        self._autoscaling = client.AutoscalingV2Api(api_client)
        self._custom = client.CustomObjectsApi(api_client)
        self._core = client.CoreV1Api(api_client)

    def close(self) -> None:
        self._api_client.close()  # type: ignore[no-untyped-call]

    def handles(self, knob: KnobRef) -> bool:
        return knob.kind in _PLURALS

    # Reading ---------------------------------------------------------------------------------

    def read(self, knobs: Sequence[KnobRef]) -> Mapping[KnobRef, KnobReading]:
        """One list per namespace and kind, plus the HPAs and ScaledObjects of each namespace."""
        readings: dict[KnobRef, KnobReading] = {}
        by_namespace: dict[str, list[KnobRef]] = defaultdict(list)
        for knob in knobs:
            if self.handles(knob):
                by_namespace[knob.namespace].append(knob)
            else:
                readings[knob] = KnobUnreadable(
                    f"{knob.id} is not a Deployment or StatefulSet; the Kubernetes actuator "
                    "scales only workloads"
                )
        for namespace, wanted in sorted(by_namespace.items()):
            readings.update(self._read_namespace(namespace, wanted))
        return readings

    def _read_namespace(self, namespace: str, knobs: list[KnobRef]) -> dict[KnobRef, KnobReading]:
        try:
            owners = self._owners(namespace)
            if isinstance(owners, _Failure):
                return {knob: KnobUnreadable(owners.detail) for knob in knobs}
            listed: dict[KnobKind, dict[str, _Workload] | _Failure] = {
                kind: self._list_workloads(namespace, kind) for kind in {k.kind for k in knobs}
            }
        except Exception as error:  # the adapter never raises: an unforeseen error is data too
            detail = f"reading workloads in namespace {namespace} failed unexpectedly: {error!r}"
            return {knob: KnobUnreadable(detail) for knob in knobs}
        readings: dict[KnobRef, KnobReading] = {}
        for knob in knobs:
            workloads = listed[knob.kind]
            if isinstance(workloads, _Failure):
                readings[knob] = KnobUnreadable(workloads.detail)
                continue
            workload = workloads.get(knob.name)
            refusal = self._refusal(knob, workload, owners)
            if refusal is not None:
                readings[knob] = refusal[1]
            elif workload is not None:
                readings[knob] = KnobValue(float(workload.replicas))
        return readings

    @staticmethod
    def _refusal(
        knob: KnobRef, workload: _Workload | None, owners: Mapping[tuple[str, str], str]
    ) -> tuple[str, KnobUnreadable] | None:
        """Why this workload must not be scaled now, if it must not: a code word and the reading."""
        where = _describe(knob)
        if workload is None:
            return "not_found", KnobUnreadable(f"{where} not found", missing=True)
        if workload.paused:
            return "paused", KnobUnreadable(
                f'{where} is paused by its annotation {PAUSED_ANNOTATION}: "true"', skip=True
            )
        owner = owners.get((knob.kind.value, knob.name))
        if owner is not None:
            return "owned", KnobUnreadable(
                f"{where} is owned by {owner}; not scaling it", skip=True
            )
        if workload.deleting:
            return "deleting", KnobUnreadable(f"{where} is being deleted", skip=True)
        return None

    def _owners(self, namespace: str) -> dict[tuple[str, str], str] | _Failure:
        """(kind, name) of each workload another autoscaler scales -> that autoscaler."""
        owners: dict[tuple[str, str], str] = {}
        try:
            hpas = self._autoscaling.list_namespaced_horizontal_pod_autoscaler(
                namespace, _request_timeout=self._settings.request_timeout
            )
        except Exception as error:
            return self._failure(
                error,
                f"cannot tell whether a HorizontalPodAutoscaler owns workloads in {namespace}, "
                "so not scaling them",
                permission=f"list horizontalpodautoscalers.autoscaling in {namespace}",
            )
        for hpa in hpas.items or []:
            hpa_target = hpa.spec.scale_target_ref if hpa.spec else None
            hpa_name = hpa.metadata.name if hpa.metadata else None
            if hpa_target is not None and hpa_target.kind and hpa_target.name:
                owners.setdefault(
                    (hpa_target.kind, hpa_target.name),
                    f"HorizontalPodAutoscaler {namespace}/{hpa_name}",
                )
        try:
            scaled_objects = self._custom.list_namespaced_custom_object(
                "keda.sh",
                "v1alpha1",
                namespace,
                "scaledobjects",
                _request_timeout=self._settings.request_timeout,
            )
        except ApiException as error:
            if error.status == 404:
                return owners  # KEDA is not installed: no ScaledObject can own anything.
            return self._failure(
                error,
                f"cannot tell whether a KEDA ScaledObject owns workloads in {namespace}, "
                "so not scaling them",
                permission=f"list scaledobjects.keda.sh in {namespace}",
            )
        except Exception as error:
            return self._failure(
                error, f"cannot tell whether a KEDA ScaledObject owns workloads in {namespace}"
            )
        for (kind, name), scaled_object in _scaled_object_targets(scaled_objects).items():
            owners.setdefault((kind, name), f"KEDA ScaledObject {namespace}/{scaled_object}")
        return owners

    def _list_workloads(self, namespace: str, kind: KnobKind) -> dict[str, _Workload] | _Failure:
        plural = _PLURALS[kind]
        lister = (
            self._apps.list_namespaced_deployment
            if kind is KnobKind.DEPLOYMENT
            else self._apps.list_namespaced_stateful_set
        )
        try:
            listing = lister(namespace, _request_timeout=self._settings.request_timeout)
        except Exception as error:
            return self._failure(
                error,
                f"listing {plural} in {namespace} failed",
                permission=f"list {plural}.apps in {namespace}",
            )
        items: list[Any] = list(listing.items or [])
        return {str(item.metadata.name): _workload_of(item) for item in items}

    def _get_workload(self, knob: KnobRef) -> _Workload | _Failure:
        reader = (
            self._apps.read_namespaced_deployment
            if knob.kind is KnobKind.DEPLOYMENT
            else self._apps.read_namespaced_stateful_set
        )
        try:
            found = reader(
                knob.name, knob.namespace, _request_timeout=self._settings.request_timeout
            )
        except Exception as error:
            return self._failure(
                error,
                f"reading {_describe(knob)} failed",
                permission=f"get {_PLURALS[knob.kind]}.apps in {knob.namespace}",
            )
        return _workload_of(found)

    # Applying --------------------------------------------------------------------------------

    def apply(self, decision: Decision) -> Outcome:
        checked = self._check(decision)
        if isinstance(checked, Outcome):
            return checked
        current, final = checked
        try:
            return self._scale(decision, current, final)
        except Exception as error:
            return failed_unexpectedly(
                decision,
                f"scaling {_describe(decision.knob)}",
                error,
                {"error": "unexpected", "target": decision.knob.id},
            )

    def _check(self, decision: Decision) -> Outcome | tuple[int, int]:
        """The outcome of a decision that must not be written, or its (current, final) replicas."""
        knob = decision.knob
        if not self.handles(knob):
            return Outcome(
                OutcomeStatus.FAILED,
                f"{knob.id} is not a Deployment or StatefulSet; the Kubernetes actuator scales "
                "only workloads",
                extra={"error": "invalid", "target": knob.id},
            )
        where = _describe(knob)
        checked = writable(decision, where)
        if isinstance(checked, Outcome):
            return checked
        current, final = int(checked[0]), int(checked[1])
        if decision.dry_run:
            return Outcome(
                OutcomeStatus.DRY_RUN,
                f"dry run: would scale {where} from {current} to {final} replicas",
                old=current,
                new=final,
                extra={"target": knob.id},
            )
        return current, final

    def _scale(self, decision: Decision, current: int, final: int) -> Outcome:
        knob = decision.knob
        where = _describe(knob)
        extra = {"target": knob.id}

        def failed(failure: _Failure) -> Outcome:
            return Outcome(
                OutcomeStatus.FAILED,
                failure.detail,
                old=current,
                extra=extra | {"error": failure.code},
            )

        # A conflict means the object changed between our read and our write: read it again and
        # try once more, but only if its replicas are still those the decision started from.
        for attempt in (1, 2):
            workload = self._get_workload(knob)
            if isinstance(workload, _Failure):
                return failed(workload)
            owners = self._owners(knob.namespace)
            if isinstance(owners, _Failure):
                return failed(owners)
            refusal = self._refusal(knob, workload, owners)
            if refusal is not None:
                code, reading = refusal
                return Outcome(
                    OutcomeStatus.SKIPPED,
                    reading.reason,
                    old=current,
                    extra=extra | {"error": code},
                )
            if workload.replicas != current:
                return Outcome(
                    OutcomeStatus.SKIPPED,
                    f"{where} has {workload.replicas} replicas, not the {current} this decision "
                    "started from: another writer changed it; nothing written, the next cycle "
                    "decides again from the new count",
                    old=current,
                    extra=extra | {"error": "changed", "found": str(workload.replicas)},
                )
            written = self._replace_scale(knob, workload.resource_version, final)
            if isinstance(written, _Failure) and written.code == "conflict" and attempt == 1:
                continue
            if isinstance(written, _Failure):
                if written.code == "conflict":
                    written = _Failure(
                        "conflict",
                        f"{where} changed again while being scaled (409 twice); nothing "
                        "written, the next cycle decides again",
                    )
                if written.code == "timeout":
                    # Sent, no answer: counted as done (its cooldown starts) until re-read.
                    return Outcome(
                        OutcomeStatus.UNCERTAIN,
                        written.detail,
                        old=current,
                        new=final,
                        extra=extra | {"error": written.code},
                    )
                return failed(written)
            event = self._record_event(decision, knob, workload, written, current, final)
            detail = f"scaled {where} from {current} to {final} replicas"
            if attempt == 2:
                detail += " (after re-reading it on a 409 conflict)"
            if event.startswith("not recorded"):
                detail += f"; event {event}"
            return Outcome(
                OutcomeStatus.APPLIED,
                detail,
                old=current,
                new=final,
                extra=extra | {"resource_version": written, "event": event},
            )
        raise AssertionError("unreachable: the second attempt always returns")

    def _replace_scale(self, knob: KnobRef, resource_version: str, replicas: int) -> str | _Failure:
        """Writes the scale; the new resourceVersion, or why not."""
        body = client.V1Scale(
            api_version="autoscaling/v1",
            kind="Scale",
            metadata=client.V1ObjectMeta(
                name=knob.name, namespace=knob.namespace, resource_version=resource_version
            ),
            spec=client.V1ScaleSpec(replicas=replicas),
        )
        writer = (
            self._apps.replace_namespaced_deployment_scale
            if knob.kind is KnobKind.DEPLOYMENT
            else self._apps.replace_namespaced_stateful_set_scale
        )
        try:
            written = writer(
                knob.name, knob.namespace, body, _request_timeout=self._settings.request_timeout
            )
        except Exception as error:
            return self._failure(
                error,
                f"scaling {_describe(knob)} to {replicas} failed",
                permission=f"update {_PLURALS[knob.kind]}/scale in {knob.namespace}",
                write=True,
            )
        return str(cast(Any, written).metadata.resource_version)

    def _record_event(
        self,
        decision: Decision,
        knob: KnobRef,
        workload: _Workload,
        resource_version: str,
        current: int,
        final: int,
    ) -> str:
        """Creates the Event; its name, or `not recorded: why` (the scale stands either way)."""
        now = self._clock()
        moment = datetime.fromtimestamp(now, UTC)
        event = client.CoreV1Event(
            metadata=client.V1ObjectMeta(
                # client-go's recorder names events <object>.<unix nanoseconds in hex>.
                name=f"{knob.name}.{int(now * 1e9):x}",
                namespace=knob.namespace,
            ),
            involved_object=client.V1ObjectReference(
                api_version="apps/v1",
                kind=knob.kind.value,
                name=knob.name,
                namespace=knob.namespace,
                uid=workload.uid,
                resource_version=resource_version,
            ),
            reason=EVENT_REASON,
            message=event_message(decision, current, final),
            type="Normal",
            action="Scale",
            source=client.V1EventSource(component=self._settings.component),
            reporting_component=self._settings.component,
            reporting_instance=self._settings.instance or self._settings.component,
            first_timestamp=moment,
            last_timestamp=moment,
            count=1,
        )
        try:
            created = self._core.create_namespaced_event(
                knob.namespace, event, _request_timeout=self._settings.request_timeout
            )
        except Exception as error:
            failure = self._failure(
                error,
                "creating the event failed",
                permission=f"create events in {knob.namespace}",
            )
            return f"not recorded: {failure.detail}"
        return str(created.metadata.name)

    # Errors ----------------------------------------------------------------------------------

    def _failure(
        self, error: Exception, doing: str, *, permission: str = "", write: bool = False
    ) -> _Failure:
        """Names the kind of failure and says what to do about it."""
        if isinstance(error, ApiException):
            status = int(error.status or 0)
            message = _status_message(error)
            if status == 404:
                return _Failure("not_found", f"{doing}: not found (404): {message}")
            if status == 403:
                grant = (
                    f"; grant the controller's service account RBAC to {permission}"
                    if permission
                    else ""
                )
                return _Failure("forbidden", f"{doing}: forbidden (403): {message}{grant}")
            if status == 401:
                return _Failure(
                    "unauthorized",
                    f"{doing}: unauthorized (401): {message}; check the token or kubeconfig credentials",
                )
            if status == 409:
                return _Failure("conflict", f"{doing}: conflict (409): {message}")
            if status == 429:
                return _Failure(
                    "throttled", f"{doing}: throttled by the API server (429): {message}"
                )
            if status >= 500:
                return _Failure(
                    "server_error",
                    f"{doing}: the API server failed ({status}): {message}; retried next cycle",
                )
            if status == 0:
                return _Failure("transport", f"{doing}: {message}")
            return _Failure("rejected", f"{doing}: rejected ({status}): {message}")
        if _timed_out(error):
            unknown = (
                "; the change may or may not have taken effect, the next cycle reads the actual count"
                if write
                else ""
            )
            return _Failure(
                "timeout",
                f"{doing}: no answer from the API server within {self._settings.request_timeout:g}s"
                + unknown,
            )
        if isinstance(error, urllib3.exceptions.HTTPError | OSError):
            host = self._api_client.configuration.host
            return _Failure(
                "unreachable", f"{doing}: cannot reach the API server at {host}: {error}"
            )
        return _Failure("unexpected", f"{doing}: {type(error).__name__}: {error}")


def event_message(decision: Decision, current: int, final: int) -> str:
    """One line for `kubectl describe`: which rule, what metric value, what threshold."""
    value = "no value" if decision.value is None else f"{decision.value:g}"
    labels = format_labels(decision.labels) if decision.labels else ""
    message = (
        f"rule {decision.rule}: {decision.metric}{labels} = {value} against threshold "
        f"{decision.threshold:g}; replicas {current} -> {final}"
    )
    if decision.limited_by:
        message += f" (limited by {decision.limited_by})"
    return message[:_EVENT_MESSAGE_LIMIT]


def _scaled_object_targets(listing: object) -> dict[tuple[str, str], str]:
    """(kind, name) of each workload a KEDA ScaledObject list targets -> the ScaledObject's name."""
    targets: dict[tuple[str, str], str] = {}
    items = listing.get("items") if isinstance(listing, dict) else None
    for item in items if isinstance(items, list) else []:
        spec = item.get("spec") if isinstance(item, dict) else None
        target = spec.get("scaleTargetRef") if isinstance(spec, dict) else None
        if not isinstance(target, dict) or not target.get("name"):
            continue
        metadata = item.get("metadata") or {}
        # KEDA's default target kind is a Deployment.
        kind = str(target.get("kind") or KnobKind.DEPLOYMENT.value)
        targets.setdefault((kind, str(target["name"])), str(metadata.get("name", "?")))
    return targets


def _workload_of(obj: Any) -> _Workload:
    metadata = obj.metadata
    annotations = metadata.annotations or {}
    replicas = obj.spec.replicas if obj.spec is not None else None
    return _Workload(
        uid=str(metadata.uid or ""),
        resource_version=str(metadata.resource_version or ""),
        # The API server defaults an unset replica count to 1.
        replicas=1 if replicas is None else int(replicas),
        paused=str(annotations.get(PAUSED_ANNOTATION, "")).strip().lower() == "true",
        deleting=metadata.deletion_timestamp is not None,
    )
