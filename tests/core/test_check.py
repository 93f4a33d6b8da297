"""`autotuner check`: the shipped rules pass; each broken fixture gives one precise error."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from autotuner.cli.main import main

ROOT = Path(__file__).resolve().parents[2]
BROKEN = sorted((ROOT / "tests/fixtures/broken_rules").glob("*.yaml"))


def _expectation(path: Path) -> tuple[int, str, str]:
    header = path.read_text().splitlines()[0]
    where, _, message = header.removeprefix("# expect: ").partition(" :: ")
    line, _, field = where.partition(" ")
    return int(line), field, message


def test_shipped_rules_pass(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(ROOT / "rules")]) == 0
    out = capsys.readouterr().out
    assert out.count("SUCCESS") == len(list((ROOT / "rules").glob("*.yaml")))


@pytest.mark.parametrize("path", BROKEN, ids=[p.stem for p in BROKEN])
def test_broken_file_gives_one_precise_error(
    path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line, field, message = _expectation(path)
    assert main(["check", "--format", "json", str(path)]) == 1
    report = json.loads(capsys.readouterr().out)
    problems = [p for f in report["files"] for p in f["problems"]]
    assert len(problems) == 1, problems
    problem = problems[0]
    assert problem["file"] == str(path)
    assert problem["line"] == line
    assert problem["column"] >= 1
    assert problem["field"] == ("" if field == "-" else field)
    assert message in problem["message"]


def test_a_directory_of_broken_files_reports_each_and_exits_1() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "autotuner", "check", str(ROOT / "tests/fixtures/broken_rules")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr + result.stdout
    failed = [line for line in result.stderr.splitlines() if "FAILED:" in line]
    assert len(failed) == len(BROKEN)
    assert all(":" in line.split("FAILED: ", 1)[1] for line in failed)


def test_missing_path_is_an_error_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", str(tmp_path / "nope.yaml")]) == 1
    assert "no such file or directory" in capsys.readouterr().err


def test_rule_names_clash_across_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rule = (ROOT / "rules/ml.yaml").read_text()
    (tmp_path / "a.yaml").write_text(rule)
    (tmp_path / "b.yaml").write_text(rule)
    assert main(["check", str(tmp_path)]) == 1
    assert "is already defined at" in capsys.readouterr().err


def test_a_mistyped_flag_is_named_without_its_value(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--redis-password", "hunter2"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--redis-password" in err and "hunter2" not in err


LINTED = """\
metrics:
  usage: sum by (deployment) (rate(requests_total[5m]))
  load: sum(rate(requests_total[1m]))
  cpu: avg(rate(cpu_seconds_total[1m]))
budgets:
  - name: nobody
    limit: 10
    terms:
      - [{key: "crm:pool"}]
  - name: tight
    limit: 50
    terms:
      - [{key: "crm:db:pool"}, {deployment: crm/api}]
rules:
  - name: up
    metric: usage
    above: 0.8
    action:
      scale: {deployment: api, namespace: crm, factor: 2, min: 2, max: 10}
  - name: down
    metric: usage
    below: 0.2
    action:
      scale: {deployment: api, namespace: crm, factor: 0.5, min: 2, max: 10}
  - name: pool
    metric: usage
    above: 0.8
    action:
      set_key: {key: "crm:db:pool", step: 5, min: 30, max: 100}
  - name: never
    metric: usage
    above: 0.9
    action:
      set_key: {key: "crm:flag", step: 1, max: 0}
"""


def _check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, *flags: str
) -> tuple[int, list[str]]:
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    code = main(["check", "--format", "json", *flags, str(path)])
    report = json.loads(capsys.readouterr().out)
    return code, [w["message"] for f in report["files"] for w in f["warnings"]]


def test_lint_warnings_exit_0_or_3_with_lint_fatal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, warnings = _check(tmp_path, capsys, LINTED)
    assert code == 0
    assert len(warnings) == 4, warnings
    assert "no enabled rule acts on key 'crm:pool'" in warnings[0]
    assert "the rules' minimums alone use 60 of the limit 50" in warnings[1]
    assert "'up'" in warnings[2] and "opposite directions" in warnings[2]
    assert "0 on a rule that raises its knob" in warnings[3]
    assert _check(tmp_path, capsys, LINTED, "--lint-fatal")[0] == 3
    assert _check(tmp_path, capsys, LINTED, "--lint=none", "--lint-fatal") == (0, [])


def test_lint_warnings_in_text_name_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(LINTED)
    assert main(["check", "--lint-fatal", str(path)]) == 3
    err = capsys.readouterr().err
    assert f"WARNING: {path}:30:1: rule never: max: 0 on a rule that raises" in err


def test_a_stabilization_window_or_a_rule_elsewhere_silences_lint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    damped = LINTED.replace(
        "0.5, min: 2, max: 10}", "0.5, min: 2, max: 10, stabilization_window: 5m}"
    )
    damped = damped.replace("max: 0}", "max: 5}").replace("min: 30", "min: 10")
    damped = damped.replace('[{key: "crm:pool"}]', '[{key: "crm:db:pool"}]')
    assert _check(tmp_path, capsys, damped, "--lint-fatal") == (0, [])


OBJECTIVE = """metrics:
  p95: histogram_quantile(0.95, sum by (le) (rate(latency_bucket[5m])))
  load: sum(rate(latency_count[1m]))
  cpu: avg(rate(cpu_seconds_total[1m]))
rules:
  - name: slo
    metric: p95
    objective: {at_most: 0.5, aim: 0.4, load: load, utilisation: cpu}
    action:
      scale: {deployment: api, namespace: crm, min: 2, max: 20WINDOW}
  - name: night-floor
    metric: load
    above: 100
    action:
      scale: {deployment: api, namespace: crm, step: 2, max: 20}
"""


def test_an_objective_rule_moves_both_ways(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, warnings = _check(tmp_path, capsys, OBJECTIVE.replace("WINDOW", ""))
    assert len(warnings) == 1 and "'slo'" in warnings[0], warnings
    windowed = OBJECTIVE.replace("WINDOW", ", stabilization_window: 5m")
    assert _check(tmp_path, capsys, windowed) == (0, [])


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("deployment", "API_Service!", "deployment name 'API_Service!' is not a name Kubernetes"),
        ("namespace", "CRM NS", "namespace 'CRM NS' is not a name Kubernetes accepts"),
        ("deployment", "web-{{ labels.x", "unclosed placeholder"),
    ],
)
def test_names_kubernetes_refuses_are_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], field: str, value: str, message: str
) -> None:
    rule = {"deployment": "api", "namespace": "crm"} | {field: value}
    text = (
        "metrics:\n  m: sum(up)\nrules:\n  - name: r\n    metric: m\n    above: 1\n"
        f"    action:\n      scale: {{deployment: {json.dumps(rule['deployment'])}, "
        f"namespace: {json.dumps(rule['namespace'])}, factor: 2, max: 5}}\n"
    )
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    assert main(["check", "--format", "json", str(path)]) == 1
    problems = json.loads(capsys.readouterr().out)["files"][0]["problems"]
    assert [p["field"] for p in problems] == [f"rules[0].action.scale.{field}"]
    assert message in problems[0]["message"]


def test_a_budget_naming_a_name_kubernetes_refuses_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = LINTED.replace("{deployment: crm/api}", "{deployment: CRM NS/api}")
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    assert main(["check", str(path)]) == 1
    assert "budgets[1].terms[0][1].deployment: namespace 'CRM NS'" in capsys.readouterr().err


def test_an_empty_file_holds_no_rules(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "/dev/null"]) == 0
    captured = capsys.readouterr()
    assert "SUCCESS: 0 rules" in captured.out and "no such file" not in captured.err


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("- a\n- b\n", "1:1: expected a mapping of fields (name: value), not a list"),
        (
            "metrics: {m: up}\nrules:\n  - name: r\n    metric: m\n    above: 1\n    action: 5\n",
            "rules[0].action: expected a mapping of fields (name: value), not the number 5",
        ),
        ("rules: {a: 1}\n", "rules: expected a list, not a mapping"),
    ],
)
def test_messages_say_it_in_the_files_words(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, said: str
) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    assert main(["check", str(path)]) == 1
    err = capsys.readouterr().err
    assert said in err and "instance of" not in err and "Spec" not in err
