"""`autotuner test --junit/--format json/--run`: the reports a CI system reads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from junitparser import Error, Failure, JUnitXml, TestSuite

from autotuner.cli.main import main
from tests.ruletest.test_ruletest_cli import PASSING, write_test

SECOND_GROUP = """\
  - name: a quiet queue keeps the workers
    input_series:
      - series: 'queue_depth{queue="mail"}'
        values: '5x6'
    initial:
      deployment/jobs/workers: 2
    expect:
      - eval_time: 5m
        actions: []
"""
FAILING = PASSING.replace("from: 4, to: 8", "from: 4, to: 7") + SECOND_GROUP


def _suites(path: Path) -> list[TestSuite]:
    xml = JUnitXml.fromfile(str(path))
    return list(xml) if isinstance(xml, JUnitXml) else [xml]


def test_junit_has_a_suite_per_file_and_a_case_per_group_with_the_failure_text(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_test(tmp_path, FAILING)
    junit = tmp_path / "out" / "report.xml"
    junit.parent.mkdir()
    assert main(["test", "--junit", str(junit), str(path)]) == 1
    assert "FAILED: deep queue doubles the workers" in capsys.readouterr().out
    [suite] = _suites(junit)
    assert suite.name == str(path)
    assert (suite.tests, suite.failures, suite.errors) == (2, 1, 0)
    cases = {case.name: case for case in suite}
    assert set(cases) == {"deep queue doubles the workers", "a quiet queue keeps the workers"}
    assert cases["a quiet queue keeps the workers"].is_passed
    [failure] = cases["deep queue doubles the workers"].result
    assert isinstance(failure, Failure)
    assert "- queue-deep deployment/jobs/workers: 4 -> 7" in failure.text
    assert '+ queue-deep deployment/jobs/workers{queue="mail"}: 4 -> 8' in failure.text
    assert f"{path}:" in failure.message


def test_junit_shows_a_bad_test_file_as_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = write_test(tmp_path, PASSING)
    bad = tmp_path / "broken_test.yaml"
    bad.write_text("rule_files: [rules.yaml]\ntests: []\n")
    junit = tmp_path / "report.xml"
    assert main(["test", "--junit", str(junit), str(bad), str(good)]) == 2
    captured = capsys.readouterr()
    assert captured.err == ""
    bad_suite, good_suite = _suites(junit)
    assert (bad_suite.errors, good_suite.tests, good_suite.failures) == (1, 1, 0)
    [case] = bad_suite
    [error] = case.result
    assert isinstance(error, Error)
    assert f"{bad}:2:8: tests:" in error.text


def test_run_selects_the_groups_in_every_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_test(tmp_path, FAILING)
    junit = tmp_path / "report.xml"
    args = ["test", "--run", "^a quiet", "--format", "json", "--junit", str(junit), str(path)]
    assert main(args) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["success"] is True
    assert [g["name"] for g in document["files"][0]["groups"]] == [
        "a quiet queue keeps the workers"
    ]
    [suite] = _suites(junit)
    assert [case.name for case in suite] == ["a quiet queue keeps the workers"]


def test_json_report_names_each_failing_expectation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_test(tmp_path, FAILING)
    assert main(["test", "--format", "json", str(path)]) == 1
    captured = capsys.readouterr()
    assert captured.err == ""
    document = json.loads(captured.out)
    assert document["success"] is False
    [file] = document["files"]
    assert (file["file"], file["success"], file["problems"]) == (str(path), False, [])
    failing = next(g for g in file["groups"] if not g["success"])
    [failure] = failing["failures"]
    assert failure["subject"] == "actions"
    assert failure["eval_time"] == 300.0
    assert "- queue-deep deployment/jobs/workers: 4 -> 7" in failure["diff"][0]


def test_json_report_of_a_bad_test_file_carries_its_problems(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_test(tmp_path, PASSING.replace("expect:", "expects:"))
    assert main(["test", "--format", "json", str(path)]) == 2
    [file] = json.loads(capsys.readouterr().out)["files"]
    assert (10, "tests[0].expects") in [(p["line"], p["field"]) for p in file["problems"]]


def test_junit_into_a_missing_folder_is_refused_before_running(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_test(tmp_path, PASSING)
    assert main(["test", "--junit", str(tmp_path / "nope" / "r.xml"), str(path)]) == 2
    captured = capsys.readouterr()
    assert "the folder" in captured.err
    assert captured.out == ""
