"""`autotuner run` as a process: the embedded simulation, probes, signals, bad configuration."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from autotuner.adapters.sql_store import SqlStore
from autotuner.cli.main import main

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "rules"

# Half an hour of model time: a flash crowd at 5 minutes makes the API scale within seconds.
SCENARIO = f"""
name: short-flash-crowd
rules: ["{RULES}"]
duration: 30m
tick: 15s
seed: 3
load:
  base: {{constant: 300}}
  events:
    - flash_crowd: {{at: 5m, multiplier: 4, ramp: 1m, hold: 20m, decay: 5m}}
"""


def _environment(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOTUNER_")}
    env["AUTOTUNER_DATABASE_URL"] = f"sqlite:///{tmp_path / 'audit.sqlite'}"
    env["AUTOTUNER_RULES"] = str(RULES)
    env["AUTOTUNER_HTTP_HOST"] = "127.0.0.1"
    env["AUTOTUNER_HTTP_PORT"] = "0"
    return env


def _start(tmp_path: Path, *extra: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(SCENARIO)
    return subprocess.Popen(
        [sys.executable, "-m", "autotuner", "run", "--sim-scenario", str(scenario), *extra],
        cwd=tmp_path,
        env=env or _environment(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def stop_process() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(5)


def _read_until(process: subprocess.Popen[str], pattern: str, timeout: float) -> list[str]:
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if re.search(pattern, line):
            return lines
    raise AssertionError(f"no line matching {pattern!r} within {timeout} s; got {lines}")


def test_embedded_run_scales_prints_and_audits(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "autotuner",
            "run",
            "--sim-scenario",
            str(_scenario(tmp_path)),
            "--sim-speed",
            "900",
        ],
        cwd=tmp_path,
        env=_environment(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "running the bundled simulated system" in done.stdout
    scaled = [line for line in done.stdout.splitlines() if "api-latency-slo" in line]
    assert scaled, done.stdout
    assert "deployment/crm/api" in scaled[0]
    assert "[applied]" in scaled[0]
    assert "Traceback" not in done.stderr
    store = SqlStore(f"sqlite:///{tmp_path / 'audit.sqlite'}")
    try:
        records = store.history(rule="api-latency-slo")
        assert records
        assert all(r.outcome is not None for r in records)
        assert store.unfinished() == []
    finally:
        store.close()


def test_embedded_run_audits_in_wall_time_with_the_simulated_time_as_data(
    tmp_path: Path,
) -> None:
    started = time.time()
    # Half an hour of model time in about two seconds: on the simulated clock, the last
    # decisions are some 30 minutes ahead of the wall.
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "autotuner",
            "run",
            "--sim-scenario",
            str(_scenario(tmp_path)),
            "--sim-speed",
            "900",
        ],
        cwd=tmp_path,
        env=_environment(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    finished = time.time()
    assert done.returncode == 0, done.stderr
    store = SqlStore(f"sqlite:///{tmp_path / 'audit.sqlite'}")
    try:
        records = store.history()
    finally:
        store.close()
    assert records
    assert all(started - 1 <= r.decision.time <= finished + 1 for r in records)
    simulated = [r.outcome.extra["simulated_time"] for r in records if r.outcome is not None]
    assert len(simulated) == len(records)
    latest = max(datetime.fromisoformat(stamp).timestamp() for stamp in simulated)
    assert latest > finished + 5 * 60  # the model's clock ran ahead, and that is kept as data
    history = subprocess.run(
        [
            sys.executable,
            "-m",
            "autotuner",
            "history",
            "--since",
            "30m",
            "--json",
            "--limit",
            "100000",
        ],
        cwd=tmp_path,
        env=_environment(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert history.returncode == 0, history.stderr
    assert len(json.loads(history.stdout)) == len(records)


def _scenario(tmp_path: Path) -> Path:
    path = tmp_path / "scenario.yaml"
    path.write_text(SCENARIO)
    return path


def test_sigterm_stops_cleanly_with_exit_0(
    tmp_path: Path, stop_process: list[subprocess.Popen[str]]
) -> None:
    env = _environment(tmp_path)
    env["AUTOTUNER_REDIS_PASSWORD"] = "hunter2-never-logged"
    env["AUTOTUNER_REDIS_URL"] = "redis://:url-password-never-logged@127.0.0.1:1/0"
    process = _start(tmp_path, "--sim-speed", "120", "--log-level", "debug", env=env)
    stop_process.append(process)
    header = _read_until(process, r"metrics", timeout=30)
    port = int(re.search(r":(\d+)/metrics", "".join(header)).group(1))  # type: ignore[union-attr]
    assert _get(port, "/healthz")[0] == 200
    deadline = time.monotonic() + 20
    while _get(port, "/readyz")[0] != 200 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _get(port, "/readyz")[0] == 200
    status, body = _get(port, "/metrics")
    assert status == 200
    assert "autotuner_cycles_total" in body
    assert "autotuner_rules_loaded 8.0" in body or "autotuner_rules_loaded" in body
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 0
    assert process.stderr is not None
    log = process.stderr.read()
    events = [json.loads(line) for line in log.splitlines() if line.strip()]
    names = [e["event"] for e in events]
    assert "daemon.configured" in names
    assert "daemon.stopped" in names
    assert "never-logged" not in log
    store = SqlStore(f"sqlite:///{tmp_path / 'audit.sqlite'}")
    try:
        assert store.unfinished() == []
    finally:
        store.close()


def test_sigint_also_exits_0(tmp_path: Path, stop_process: list[subprocess.Popen[str]]) -> None:
    process = _start(tmp_path, "--sim-speed", "60")
    stop_process.append(process)
    _read_until(process, r"metrics", timeout=30)
    time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    assert process.wait(30) == 0


def _run_in_process(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    *args: str,
    **env: str,
) -> tuple[int, str]:
    for name in list(os.environ):
        if name.startswith("AUTOTUNER_"):
            monkeypatch.delenv(name)
    for name, value in {**_environment(tmp_path), **env}.items():
        if name.startswith("AUTOTUNER_"):
            monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    status = main(["run", *args])
    return status, capsys.readouterr().err


def test_bad_setting_is_a_clear_error_not_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    status, err = _run_in_process(tmp_path, monkeypatch, capsys, AUTOTUNER_INTERVAL_SECONDS="soon")
    assert status == 2
    assert "environment variable AUTOTUNER_INTERVAL_SECONDS" in err
    assert "interval_seconds" in err


def test_rules_outside_the_allow_list_stop_the_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    status, err = _run_in_process(
        tmp_path,
        monkeypatch,
        capsys,
        "--allow-namespaces",
        "crm",
        "--allow-workloads",
        "api",
        "--allow-key-prefixes",
        "crm:cache:",
    )
    assert status == 2
    assert "rule files cannot be used" in err
    assert re.search(r"rules/db\.yaml:\d+: rule 'db-pool-busy'.*crm:db:pool_size", err), err
    assert "budget 'db-connections'" in err


def test_broken_rule_file_is_reported_with_its_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "bad.yaml").write_text("metrics:\n  m: up\nrules:\n  - name: x\n    metric: m\n")
    status, err = _run_in_process(tmp_path, monkeypatch, capsys, AUTOTUNER_RULES=str(rules))
    assert status == 2
    assert re.search(r"bad\.yaml:\d+:\d+", err), err


def test_busy_http_port_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        status, err = _run_in_process(tmp_path, monkeypatch, capsys, AUTOTUNER_HTTP_PORT=str(port))
    assert status == 2
    assert f"cannot serve HTTP on 127.0.0.1:{port}" in err
    assert "--http-port" in err


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
