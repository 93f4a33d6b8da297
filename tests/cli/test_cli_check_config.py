"""`autotuner check config FILE`: the settings file checked as `promtool check config` does,
beside `check [rules] FILE|DIR...`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autotuner.cli.main import main

ROOT = Path(__file__).resolve().parents[2]

SOUND = """\
interval_seconds: 30
dry_run: true
rules: [{rules}]
allow:
  namespaces: [crm]
  workloads: ["*"]
  key_prefixes: ["crm:"]
"""


def _write(tmp_path: Path, text: str, name: str = "settings.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_sound_settings_file_and_the_rules_it_names_pass(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, SOUND.format(rules=ROOT / "rules"))
    assert main(["check", "config", str(path)]) == 0
    captured = capsys.readouterr()
    assert f"Checking {path}\n  SUCCESS: the settings are valid" in captured.out
    assert captured.err == ""


def test_an_empty_settings_file_means_every_default(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "config", "/dev/null"]) == 0


def test_each_problem_names_file_line_column_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(
        tmp_path, "dry_run: true\ninterval_seconds: -3\nallow:\n  namespace: [crm]\ndry_runn: 1\n"
    )
    assert main(["check", "config", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"FAILED: {path}:2:1: interval_seconds: Input should be greater than 0" in err
    assert f"{path}:4:3: allow.namespace: not a setting; did you mean 'allow.namespaces'?" in err
    assert f"{path}:5:1: dry_runn: not a setting; did you mean 'dry_run'?" in err


def test_a_secret_in_the_file_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, "redis_url: redis://r:6379/0\nredis_password: hunter2\n")
    assert main(["check", "config", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"{path}:2:1: redis_password: secrets are not accepted" in err
    assert "hunter2" not in err


def test_a_missing_file_and_bad_yaml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "absent.yaml"
    assert main(["check", "config", str(missing)]) == 1
    assert f"{missing}:1:1: cannot read the file" in capsys.readouterr().err
    broken = _write(tmp_path, "dry_run: [true\n")
    assert main(["check", "config", str(broken)]) == 1
    assert "not valid YAML" in capsys.readouterr().err


def test_rules_outside_the_files_allow_list_fail_at_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = SOUND.format(rules=ROOT / "rules").replace("[crm]", "[shop]")
    path = _write(tmp_path, text)
    assert main(["check", "config", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"{path}:4:1: allow: " in err
    assert "namespace 'crm' is not in the allow-list" in err


def test_a_broken_rule_file_it_names_is_reported_at_its_own_place(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "bad.yaml").write_text("rules:\n  - nme: x\n")
    path = _write(tmp_path, SOUND.format(rules=rules))
    assert main(["check", "config", str(path)]) == 1
    assert f"{rules / 'bad.yaml'}:2:" in capsys.readouterr().err


def test_json_lists_the_problems_as_check_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, "interval_seconds: 0\n")
    # Flags go before the mode or after the files: argparse ends a list of words at a flag.
    assert main(["check", "--format", "json", "config", str(path)]) == 1
    assert json.loads(capsys.readouterr().out)["success"] is False
    assert main(["check", "config", str(path), "--format", "json"]) == 1
    document = json.loads(capsys.readouterr().out)
    assert document["success"] is False
    [problem] = document["files"][0]["problems"]
    assert (problem["line"], problem["field"]) == (1, "interval_seconds")


def test_config_without_a_file_says_how_to_name_a_directory_called_config(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["check", "config"]) == 2
    assert "./config" in capsys.readouterr().err


def test_rule_paths_keep_working_beside_the_modes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    (config_dir / "bad.yaml").write_text("rules:\n  - nme: x\n")
    monkeypatch.chdir(tmp_path)
    # A rule directory named config is a path when written as one.
    assert main(["check", "./config"]) == 1
    assert main(["check", str(config_dir)]) == 1
    capsys.readouterr()
    monkeypatch.chdir(ROOT)
    # `check rules FILE...` is the explicit form; `check rules` alone is the directory ./rules.
    assert main(["check", "rules", "rules/api.yaml"]) == 0
    assert "Checking rules/api.yaml" in capsys.readouterr().out
    assert main(["check", "rules"]) == 0
    assert main(["check", "rules/"]) == 0
