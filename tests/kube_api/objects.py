"""Kubernetes objects in the JSON shapes the real API server returns, for seeding the test server."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

JsonObject = dict[str, Any]


def timestamp(moment: datetime | None = None) -> str:
    """A metav1.Time: RFC 3339 in UTC, whole seconds."""
    return (moment or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")


def micro_timestamp(moment: datetime | None = None) -> str:
    """A metav1.MicroTime: RFC 3339 in UTC with microseconds (leases, event times)."""
    return (moment or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _metadata(
    namespace: str, name: str, labels: Mapping[str, str], annotations: Mapping[str, str]
) -> JsonObject:
    metadata: JsonObject = {
        "name": name,
        "namespace": namespace,
        "uid": str(uuid.uuid4()),
        "generation": 1,
        "creationTimestamp": timestamp(),
        "labels": dict(labels) or {"app": name},
    }
    if annotations:
        metadata["annotations"] = dict(annotations)
    return metadata


def _pod_template(name: str) -> JsonObject:
    return {
        "metadata": {"labels": {"app": name}},
        "spec": {
            "containers": [
                {
                    "name": name,
                    "image": f"registry.example/{name}:1.0",
                    "resources": {},
                    "terminationMessagePath": "/dev/termination-log",
                    "terminationMessagePolicy": "File",
                    "imagePullPolicy": "IfNotPresent",
                }
            ],
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst",
            "schedulerName": "default-scheduler",
            "securityContext": {},
        },
    }


def deployment(
    namespace: str,
    name: str,
    replicas: int = 1,
    *,
    annotations: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
) -> JsonObject:
    return {
        "kind": "Deployment",
        "apiVersion": "apps/v1",
        "metadata": _metadata(namespace, name, labels or {}, annotations or {}),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": _pod_template(name),
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"},
            },
            "revisionHistoryLimit": 10,
            "progressDeadlineSeconds": 600,
        },
        "status": {
            "observedGeneration": 1,
            "replicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": replicas,
            "availableReplicas": replicas,
        },
    }


def statefulset(
    namespace: str,
    name: str,
    replicas: int = 1,
    *,
    annotations: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
) -> JsonObject:
    return {
        "kind": "StatefulSet",
        "apiVersion": "apps/v1",
        "metadata": _metadata(namespace, name, labels or {}, annotations or {}),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": _pod_template(name),
            "serviceName": name,
            "podManagementPolicy": "OrderedReady",
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
            "revisionHistoryLimit": 10,
        },
        "status": {
            "observedGeneration": 1,
            "replicas": replicas,
            "readyReplicas": replicas,
            "currentReplicas": replicas,
            "updatedReplicas": replicas,
            "availableReplicas": replicas,
        },
    }


def horizontal_pod_autoscaler(
    namespace: str,
    name: str,
    target_name: str,
    *,
    target_kind: str = "Deployment",
    min_replicas: int = 1,
    max_replicas: int = 10,
) -> JsonObject:
    """An autoscaling/v2 HorizontalPodAutoscaler scaling `target_kind/target_name` on CPU."""
    return {
        "kind": "HorizontalPodAutoscaler",
        "apiVersion": "autoscaling/v2",
        "metadata": _metadata(namespace, name, {}, {}),
        "spec": {
            "scaleTargetRef": {"kind": target_kind, "name": target_name, "apiVersion": "apps/v1"},
            "minReplicas": min_replicas,
            "maxReplicas": max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": 80},
                    },
                }
            ],
        },
        "status": {"currentReplicas": min_replicas, "desiredReplicas": min_replicas},
    }


def scaled_object(
    namespace: str, name: str, target_name: str, *, target_kind: str | None = None
) -> JsonObject:
    """A KEDA keda.sh/v1alpha1 ScaledObject; KEDA defaults the target kind to Deployment."""
    target: JsonObject = {"name": target_name}
    if target_kind is not None:
        target["kind"] = target_kind
        target["apiVersion"] = "apps/v1"
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": _metadata(namespace, name, {}, {}),
        "spec": {
            "scaleTargetRef": target,
            "minReplicaCount": 1,
            "maxReplicaCount": 10,
            "triggers": [
                {
                    "type": "prometheus",
                    "metadata": {
                        "serverAddress": "http://prometheus.monitoring:9090",
                        "query": "sum(rate(http_requests_total[1m]))",
                        "threshold": "100",
                    },
                }
            ],
        },
    }


def lease(
    namespace: str,
    name: str,
    holder: str,
    *,
    duration_seconds: int = 15,
    acquired: datetime | None = None,
    renewed: datetime | None = None,
    transitions: int = 0,
) -> JsonObject:
    return {
        "kind": "Lease",
        "apiVersion": "coordination.k8s.io/v1",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": str(uuid.uuid4()),
            "creationTimestamp": timestamp(),
        },
        "spec": {
            "holderIdentity": holder,
            "leaseDurationSeconds": duration_seconds,
            "acquireTime": micro_timestamp(acquired),
            "renewTime": micro_timestamp(renewed or acquired),
            "leaseTransitions": transitions,
        },
    }
