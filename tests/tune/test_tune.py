"""`autotuner tune`: the search file, candidates, determinism, outputs, and shared storage."""

from __future__ import annotations

import contextlib
import json
import math
import subprocess
import sys
import uuid
from pathlib import Path

import optuna
import pytest
import yaml

from autotuner.cli.main import main
from autotuner.config.errors import ConfigError
from autotuner.tune.space import load_tune_file
from autotuner.tune.study import REFUSED, Search, TrafficChoice, measure, optimize, scenario_for

HERE = Path(__file__).resolve().parent
SEARCH = HERE / "search.yaml"
POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _search(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "search.yaml"
    path.write_text(text.replace("../../", f"{HERE.parents[1]}/"))
    return path


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("rule: ml-latency-slo", "rule: ml-latency", "no rule 'ml-latency' in the files"),
        ("field: objective.aim", "field: objective.lead", "does not set objective.lead"),
        ("low: 0.25, high: 0.48", "low: 0.1, high: 0.3", "is outside the range"),
        ("[2m, 5m, 10m]", "[2m, 10m]", "is outside the range"),
        ("  - replicas.replica_hours", "  - replicas.replica hours", "is not a report path"),
        ("tune_days: [10.5, 10.75]", "tune_days: [3, 1]", "the first under the end"),
    ],
)
def test_search_file_mistakes_name_file_line_and_field(
    tmp_path: Path, old: str, new: str, message: str
) -> None:
    text = SEARCH.read_text()
    assert old in text
    path = _search(tmp_path, text.replace(old, new))
    with pytest.raises(ConfigError) as error:
        load_tune_file(path)
    (problem,) = error.value.problems
    assert problem.file == str(path) and problem.line > 1
    assert message in problem.message


def test_a_candidate_the_rule_language_refuses_is_never_run() -> None:
    tune = load_tune_file(SEARCH)
    scenario = scenario_for(tune, TrafficChoice(days=tune.tune_days))
    # An aim above the SLO is an error at `autotuner check`.
    values = {**tune.current(), "api-latency-slo.objective.aim": 0.6}
    assert measure(tune, values, scenario) == (REFUSED, REFUSED)
    assert all(math.isfinite(v) for v in measure(tune, tune.current(), scenario))


def _trials(seed: int) -> list[tuple[dict[str, object], tuple[float, ...]]]:
    search = Search(SEARCH, TrafficChoice(days=(10.5, 10.75)), None, seed, uuid.uuid4().hex, None)
    study = optimize(search, 4)
    return [(t.params, tuple(t.values)) for t in study.trials]


def test_a_search_is_the_same_for_the_same_seed() -> None:
    first = _trials(7)
    assert first == _trials(7)
    # Trial 0 is always today's rules.
    assert first[0][0] == load_tune_file(SEARCH).current()


def test_the_cli_prints_the_front_writes_the_chosen_rules_and_draws(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, picture = tmp_path / "tuned", tmp_path / "front.png"
    code = main(["tune", str(SEARCH), "--json", "--out", str(out), "--plot", str(picture)])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["trials"] == 4 and report["front"]
    assert report["current"]["trial"] == 0
    assert set(report["hpa"]) == {"tuning", "validation"}
    chosen = next(p for p in report["front"] if p["trial"] == report["chosen"])
    assert chosen["validation"] is not None
    assert set(report["chosen_held_up"]) == set(report["objectives"])
    written = yaml.safe_load((out / "api.yaml").read_text())
    (rule,) = written["rules"]
    assert rule["objective"]["aim"] == chosen["parameters"]["api-latency-slo.objective.aim"]
    assert picture.stat().st_size > 10_000


@pytest.mark.integration
def test_two_workers_share_one_study_in_postgresql(tmp_path: Path) -> None:
    name = f"autotuner-test-{uuid.uuid4().hex[:12]}"
    command = [
        sys.executable,
        "-m",
        "autotuner",
        "tune",
        str(SEARCH),
        "--worker",
        "--storage",
        POSTGRES,
        "--study",
        name,
        "--trials",
        "6",
    ]
    try:
        workers = [
            subprocess.Popen([*command, "--seed", str(seed)], stderr=subprocess.PIPE, text=True)
            for seed in (1, 2)
        ]
        for worker in workers:
            _, err = worker.communicate(timeout=300)
            assert worker.returncode == 0, err
        study = optuna.load_study(study_name=name, storage=POSTGRES)
        finished = [t for t in study.trials if t.state is optuna.trial.TrialState.COMPLETE]
        assert len(finished) >= 6
        # Both workers ran trials of the one study.
        assert len({t.user_attrs["worker"] for t in finished if "worker" in t.user_attrs}) == 2
        # An interrupted search resumes from the storage: two more trials, not eight.
        resumed = subprocess.run(
            [*command[:-1], "8"], capture_output=True, text=True, timeout=300, check=False
        )
        assert resumed.returncode == 0, resumed.stderr
        again = optuna.load_study(study_name=name, storage=POSTGRES)
        assert len([t for t in again.trials if t.state.is_finished()]) >= 8
    finally:
        with contextlib.suppress(KeyError):
            optuna.delete_study(study_name=name, storage=POSTGRES)


def test_the_kubernetes_job_carries_a_search_that_loads(tmp_path: Path) -> None:
    documents = list(yaml.safe_load_all((HERE.parents[1] / "deploy/tune-job.yaml").read_text()))
    (configmap,) = [d for d in documents if d["kind"] == "ConfigMap"]
    rules = str(HERE.parents[1] / "rules")
    for name, text in configmap["data"].items():
        (tmp_path / name).write_text(text.replace("/etc/autotuner/rules", rules))
    tune = load_tune_file(tmp_path / "search.yaml")
    assert tune.trials == 200 and len(tune.parameters) == 3
    (job,) = [d for d in documents if d["kind"] == "Job"]
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[:3] == ["tune", "/etc/autotuner/tune/search.yaml", "--worker"]
