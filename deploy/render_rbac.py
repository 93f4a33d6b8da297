"""Write deploy/rbac.yaml from the allow-list in deploy/settings.yaml, so that what Kubernetes
lets the controller do is what the controller's own allow-list lets its rules do.

- one Role and RoleBinding per allowed namespace: read its workloads and who else autoscales
  them, record events, and get and update (never patch: the code does not) the `scale`
  subresource, of the allowed workloads by name when every pattern is a plain name;
- in the controller's own namespace: its leader-election Lease, by name, and its events.

Run from the repository root:  python deploy/render_rbac.py
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = ROOT / "deploy" / "settings.yaml"
OUTPUT = ROOT / "deploy" / "rbac.yaml"
SERVICE_ACCOUNT = {"kind": "ServiceAccount", "name": "autotuner", "namespace": "autotuner"}
LABELS = {"app.kubernetes.io/name": "autotuner"}

HEADER = (
    "# Generated from the allow-list in deploy/settings.yaml by deploy/render_rbac.py; edit the\n"
    "# settings, then run that script. Least privilege: namespaced Roles only, no ClusterRole.\n"
)
# fnmatch's special characters: a pattern with one of them names no single object.
_PATTERN_CHARACTERS = frozenset("*?[")


def _settings() -> dict[str, Any]:
    configmap = yaml.safe_load(SETTINGS.read_text(encoding="utf-8"))
    settings: dict[str, Any] = yaml.safe_load(configmap["data"]["settings.yaml"])
    return settings


def _scale_rule(workloads: list[str]) -> dict[str, Any]:
    rule: dict[str, Any] = {
        "apiGroups": ["apps"],
        "resources": ["deployments/scale", "statefulsets/scale"],
    }
    if workloads and not any(_PATTERN_CHARACTERS & set(name) for name in workloads):
        rule["resourceNames"] = sorted(workloads)
    rule["verbs"] = ["get", "update"]
    return rule


def _binding(name: str, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": name, "namespace": namespace, "labels": LABELS},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [SERVICE_ACCOUNT],
    }


def _tuner(namespace: str, workloads: list[str]) -> list[dict[str, Any]]:
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "autotuner-tuner", "namespace": namespace, "labels": LABELS},
        "rules": [
            # Lists cannot be narrowed by name; reading is all they allow.
            {
                "apiGroups": ["apps"],
                "resources": ["deployments", "statefulsets"],
                "verbs": ["get", "list"],
            },
            _scale_rule(workloads),
            {
                "apiGroups": ["autoscaling"],
                "resources": ["horizontalpodautoscalers"],
                "verbs": ["get", "list"],
            },
            {"apiGroups": ["keda.sh"], "resources": ["scaledobjects"], "verbs": ["get", "list"]},
            {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
        ],
    }
    return [role, _binding("autotuner-tuner", namespace)]


def _leader_election(lease: str, namespace: str) -> list[dict[str, Any]]:
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "autotuner-leader-election", "namespace": namespace, "labels": LABELS},
        "rules": [
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
            {
                "apiGroups": ["coordination.k8s.io"],
                "resources": ["leases"],
                "resourceNames": [lease],
                "verbs": ["get", "update"],
            },
            {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
        ],
    }
    return [role, _binding("autotuner-leader-election", namespace)]


def render() -> str:
    settings = _settings()
    allow = settings.get("allow", {})
    documents: list[dict[str, Any]] = []
    for namespace in allow.get("namespaces", []):
        documents += _tuner(namespace, list(allow.get("workloads", [])))
    documents += _leader_election(
        settings.get("lease_name", "autotuner"), settings.get("lease_namespace", "autotuner")
    )
    body = yaml.safe_dump_all(documents, sort_keys=False, width=100)
    return HEADER + body


def main() -> int:
    OUTPUT.write_text(render(), encoding="utf-8")
    print(f"wrote {OUTPUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
