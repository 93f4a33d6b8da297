"""`autotuner test`: exit codes, the diff of a failing test, and file:line errors."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from autotuner.cli.main import main

REPO = Path(__file__).resolve().parents[2]
SHIPPED_TESTS = sorted((REPO / "rules" / "tests").glob("*.yaml"))

RULES = """\
metrics:
  queue_depth: sum by (queue) (worker_queue_depth)
rules:
  - name: queue-deep
    metric: queue_depth
    above: 100
    for: 2m
    cooldown: 3m
    action:
      scale:
        deployment: workers
        namespace: jobs
        factor: 2
        min: 1
        max: 10
"""


def write_test(tmp_path: Path, body: str) -> Path:
    (tmp_path / "rules.yaml").write_text(RULES)
    path = tmp_path / "rules_test.yaml"
    path.write_text(textwrap.dedent(body))
    return path


PASSING = """\
rule_files: [rules.yaml]
evaluation_interval: 1m
tests:
  - name: deep queue doubles the workers
    input_series:
      - series: 'queue_depth{queue="mail"}'
        values: '150x6'
    initial:
      deployment/jobs/workers: 2
    expect:
      - eval_time: 1m
        actions: []
        phases:
          - {rule: queue-deep, phase: pending}
      - eval_time: 2m
        actions:
          - {rule: queue-deep, knob: deployment/jobs/workers, from: 2, to: 4}
      - eval_time: 5m
        actions:
          - {rule: queue-deep, knob: deployment/jobs/workers, from: 4, to: 8}
"""


def test_every_shipped_rule_test_passes(capsys: pytest.CaptureFixture[str]) -> None:
    assert len(SHIPPED_TESTS) >= 4
    assert main(["test", *map(str, SHIPPED_TESTS)]) == 0
    out = capsys.readouterr().out
    assert out.count("SUCCESS") == len(SHIPPED_TESTS)


def test_a_directory_stands_for_its_test_files(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["test", str(REPO / "rules" / "tests")]) == 0
    assert capsys.readouterr().out.count("Unit Testing:") == len(SHIPPED_TESTS)


def test_an_empty_directory_is_a_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["test", str(tmp_path)]) == 2
    assert "holds no *.yaml or *.yml file" in capsys.readouterr().err


def test_every_shipped_rule_has_tests() -> None:
    shipped = {p.name for p in (REPO / "rules").glob("*.yaml")}
    tested = {
        line.split("..", 1)[1].strip(" /]'\"\n")
        for test in SHIPPED_TESTS
        for line in test.read_text().splitlines()
        if line.startswith("rule_files:")
    }
    assert shipped <= {name.removeprefix("/") for name in tested}


def test_passing_file_exits_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_test(tmp_path, PASSING)
    assert main(["test", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"Unit Testing: {path}" in out
    assert "SUCCESS: 1 test group(s), 6 evaluations" in out


def test_wrong_action_fails_with_a_diff_that_points_at_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_test(tmp_path, PASSING.replace("from: 2, to: 4", "from: 2, to: 3"))
    assert main(["test", str(path)]) == 1
    out = capsys.readouterr().out
    assert f"FAILED: deep queue doubles the workers ({path}:4)" in out
    assert f"{path}:15: eval_time 2m: actions (- expected, + got)" in out
    assert "- queue-deep deployment/jobs/workers: 2 -> 3  (line 17)" in out
    assert '+ queue-deep deployment/jobs/workers{queue="mail"}: 2 -> 4' in out
    assert "why: queue-deep: queue_depth 150 > 100: deployment/jobs/workers 2 -> 4" in out
    # The later expectation still runs, on the state the engine really reached.
    assert ":18:" not in out


def test_unexpected_and_missing_actions(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    body = PASSING.replace(
        "      - eval_time: 1m\n        actions: []",
        "      - eval_time: 1m\n        actions:\n"
        "          - {rule: queue-deep, knob: deployment/jobs/workers, to: 4}",
    ).replace(
        "        actions:\n          - {rule: queue-deep, knob: deployment/jobs/workers, from: 2, to: 4}",
        "        actions: []",
    )
    path = write_test(tmp_path, body)
    assert main(["test", str(path)]) == 1
    out = capsys.readouterr().out
    assert f"{path}:11: eval_time 1m: actions" in out
    assert "- queue-deep deployment/jobs/workers: ? -> 4  (line 13)" in out
    assert "+ (nothing was changed)" in out
    assert 'why: queue-deep{queue="mail"} is pending at value 150' in out
    assert f"{path}:16: eval_time 2m: actions" in out
    assert "+ queue-deep deployment/jobs/workers" in out


def test_wrong_phase_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_test(tmp_path, PASSING.replace("phase: pending", "phase: firing"))
    assert main(["test", str(path)]) == 1
    out = capsys.readouterr().out
    assert f"{path}:14: eval_time 1m: phase of queue-deep" in out
    assert "- firing" in out
    assert "+ pending" in out


def test_phase_of_a_rule_with_several_targets_needs_labels(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    body = PASSING.replace(
        "        values: '150x6'\n",
        "        values: '150x6'\n      - series: 'queue_depth{queue=\"sms\"}'\n"
        "        values: '10x6'\n",
    )
    path = write_test(tmp_path, body)
    assert main(["test", str(path)]) == 1
    out = capsys.readouterr().out
    assert '+ 2 targets: {queue="mail"}, {queue="sms"}' in out
    assert "give `labels:`" in out
    fixed = body.replace(
        "{rule: queue-deep, phase: pending}",
        "{rule: queue-deep, labels: {queue: mail}, phase: pending}",
    )
    path.write_text(fixed)
    assert main(["test", str(path)]) == 0


def test_input_interval_may_differ_from_evaluation_interval(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Values every 2m, evaluations every 1m: at 1m the sample of 0m still answers.
    body = PASSING.replace("    input_series:", "    interval: 2m\n    input_series:").replace(
        "'150x6'", "'150 150 10'"
    )
    body = body.replace(
        "      - eval_time: 5m\n        actions:\n"
        "          - {rule: queue-deep, knob: deployment/jobs/workers, from: 4, to: 8}\n",
        "      - eval_time: 4m\n        actions: []\n        phases:\n"
        "          - {rule: queue-deep, phase: inactive}\n",
    )
    assert "interval: 2m" in body and "eval_time: 4m" in body
    path = write_test(tmp_path, body)
    assert main(["test", str(path)]) == 0, capsys.readouterr().out


def test_run_selects_groups_by_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    failing = PASSING.replace("from: 2, to: 4", "from: 2, to: 3")
    path = write_test(tmp_path, failing)
    assert main(["test", "--run", "^nothing", str(path)]) == 0
    assert "no test group matched" in capsys.readouterr().out
    assert main(["test", "--run", "deep queue", str(path)]) == 1


def test_a_failing_file_does_not_hide_the_others(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = write_test(tmp_path, PASSING)
    bad = tmp_path / "broken_test.yaml"
    bad.write_text("rule_files: [rules.yaml]\ntests: []\n")
    assert main(["test", str(bad), str(good)]) == 2
    captured = capsys.readouterr()
    assert "SUCCESS" in captured.out
    assert f"{bad}:2:8: tests:" in captured.out


@pytest.mark.parametrize(
    ("change", "where", "message"),
    [
        (("expect:", "expects:"), "10:5: tests[0].expects", "did you mean 'expect'?"),
        (
            ("values: '150x6'", "values: '150x6 1m'"),
            "7:24: tests[0].input_series[0].values",
            "bad number '1m'",
        ),
        (
            ("{rule: queue-deep, phase", "{rule: queue-dep, phase"),
            "14:20: tests[0].expect[0].phases[0].rule",
            "did you mean 'queue-deep'?",
        ),
        (
            ("queue_depth{queue", "queue_dept{queue"),
            "6:17: tests[0].input_series[0].series",
            "no rule file declares a metric 'queue_dept'; did you mean 'queue_depth'?",
        ),
        (
            ("queue_depth{queue", "queue_depth{queues"),
            "6:17: tests[0].input_series[0].series",
            "cannot carry queues: its query gives queue; did you mean 'queue'?",
        ),
        (
            ("eval_time: 5m", "eval_time: 90s"),
            "18:20: tests[0].expect[2].eval_time",
            "falls between two evaluations",
        ),
        (
            ("knob: deployment/jobs/workers, from: 2", "knob: workers, from: 2"),
            "17:38: tests[0].expect[1].actions[0].knob",
            "not a knob reference",
        ),
        (
            ("deployment/jobs/workers: 2", "deployments/jobs/workers: 2"),
            "9:7: tests[0].initial.deployments/jobs/workers",
            "not a knob reference",
        ),
        (
            ("rule_files: [rules.yaml]", "rule_files: [nowhere.yaml]"),
            "1:14: rule_files[0]",
            "no rule file matches",
        ),
        (
            ("phase: pending", "phase: waiting"),
            "14:39: tests[0].expect[0].phases[0].phase",
            "'inactive', 'pending' or 'firing'",
        ),
        (("to: 4}", "to: four}"), "17:76: tests[0].expect[1].actions[0].to", "valid number"),
        (
            (
                "      - eval_time: 1m\n        actions: []\n        phases:\n          - {rule: queue-deep, phase: pending}\n",
                "      - eval_time: 1m\n",
            ),
            "11:9: tests[0].expect[0]",
            "an expectation needs actions",
        ),
        (
            ("evaluation_interval: 1m", "evaluation_interval: 1"),
            "2:22: evaluation_interval",
            "has no unit",
        ),
    ],
)
def test_bad_test_file_exits_2_naming_file_line_and_field(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    change: tuple[str, str],
    where: str,
    message: str,
) -> None:
    assert change[0] in PASSING
    path = write_test(tmp_path, PASSING.replace(*change))
    assert main(["test", str(path)]) == 2
    out = capsys.readouterr().out
    assert f"BAD TEST FILE: {path}:{where}" in out, out
    assert message in out


def test_yaml_syntax_error_and_empty_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_test(tmp_path, "rule_files: [rules.yaml\n")
    assert main(["test", str(path)]) == 2
    assert "not valid YAML" in capsys.readouterr().out
    path.write_text("")
    assert main(["test", str(path)]) == 2
    assert "the file is empty" in capsys.readouterr().out


def test_missing_test_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "absent.yaml"
    assert main(["test", str(missing)]) == 2
    assert f"{missing}:1:1: cannot read the file" in capsys.readouterr().out


def test_a_broken_rule_file_is_reported_with_its_own_position(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_test(tmp_path, PASSING)
    (tmp_path / "rules.yaml").write_text(RULES.replace("above: 100", "abov: 100"))
    assert main(["test", str(path)]) == 2
    out = capsys.readouterr().out
    assert f"{tmp_path / 'rules.yaml'}:6:5" in out


def test_rule_files_accept_globs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_test(tmp_path, PASSING.replace("[rules.yaml]", "['[r]ules.y*ml']"))
    assert main(["test", str(path)]) == 0


def test_bad_run_pattern(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_test(tmp_path, PASSING)
    assert main(["test", "--run", "(", str(path)]) == 2
    assert "--run: not a regular expression" in capsys.readouterr().err
