"""`python -m tests.kube_api` serves the test API from its own process, for end-to-end tests."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from kubernetes import client

from tests.kube_api import objects

REPO = Path(__file__).resolve().parents[2]


def test_serves_seeded_objects_until_sigterm(tmp_path: Path) -> None:
    seed, port_file = tmp_path / "seed.json", tmp_path / "port"
    seed.write_text(json.dumps([objects.deployment("crm", "api", 3)]))
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.kube_api",
            "--seed",
            str(seed),
            "--port-file",
            str(port_file),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 10
        while not port_file.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        configuration = client.Configuration(host=f"http://127.0.0.1:{port_file.read_text()}")
        with client.ApiClient(configuration) as api_client:
            scale = client.AppsV1Api(api_client).read_namespaced_deployment_scale("api", "crm")
        assert scale.spec.replicas == 3
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    assert process.stdout is not None
    assert process.stdout.read().startswith("http://127.0.0.1:")
