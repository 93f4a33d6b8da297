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
