"""The top-level command's habits from promtool: --version, and did-you-mean for typos."""

from __future__ import annotations

import importlib.metadata

import pytest

from autotuner.cli.main import main


def test_version_is_the_installed_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == (
        f"autotuner {importlib.metadata.version('autotuner')}"
    )


def test_version_is_a_flag_of_the_top_level_only(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["history", "--version"])
    assert exit_info.value.code == 2
    assert "usage: autotuner history" in capsys.readouterr().err


def test_a_mistyped_command_gets_a_suggestion(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["chek", "rules/"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "'chek' is not a command" in err
    assert "did you mean 'check'?" in err


def test_an_unknown_flag_prints_the_usage_of_its_command(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--dry-runn"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: autotuner run ")
    assert (
        "autotuner run: error: unrecognized arguments: --dry-runn (did you mean --dry-run?)" in err
    )


def test_the_value_after_an_unknown_flag_is_not_repeated(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        main(["run", "--redis-pasword=hunter2", "--nothing-like-it"])
    err = capsys.readouterr().err
    assert "hunter2" not in err
    assert "--redis-pasword (did you mean --redis-password-file?)" in err
    assert "--nothing-like-it" in err
