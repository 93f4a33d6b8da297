"""Rule files as a careless or hostile user writes them: alias bombs, huge files, non-finite
numbers, and the YAML habits (merge keys, `x-` anchor blocks) that must simply work."""

from __future__ import annotations

import io
import json
import logging
import time
from pathlib import Path

import pytest

from autotuner.cli.main import main
from autotuner.config.errors import ConfigError
from autotuner.config.loader import load_rules, load_text
from autotuner.config.yaml_positions import MAX_ALIAS_NODES, MAX_FILE_BYTES, load_located
from autotuner.runtime.logging import configure_logging
from autotuner.runtime.reloader import RuleReloader
from autotuner.runtime.settings import AllowList

ALLOW = AllowList(namespaces=("crm",), workloads=("*",))

RULE = """\
metrics:
  m: sum by (deployment) (up)
rules:
  - name: {name}
    metric: m
    above: {above}
    action:
      scale:
        deployment: "{{{{ labels.deployment }}}}"
        namespace: crm
        factor: {factor}
        max: {max}
"""


def rule_file(name: str = "r", above: str = "0.5", factor: str = "1.5", max: str = "20") -> str:
    return RULE.format(name=name, above=above, factor=factor, max=max)


def alias_bomb() -> str:
    """Nine levels of nine aliases each: 387 million nodes once expanded, from under 1 KB."""
    lines = ['x-0: &l0 {a: "lol", b: "lol", c: "lol"}']
    for level in range(1, 10):
        aliases = ", ".join(f"{key}: *l{level - 1}" for key in "abcdefghi")
        lines.append(f"x-{level}: &l{level} {{{aliases}}}")
    return rule_file() + "\n".join(lines) + "\n"


def check_json(
    path: Path, capsys: pytest.CaptureFixture[str]
) -> tuple[int, list[dict[str, object]]]:
    code = main(["check", "--format", "json", str(path)])
    report = json.loads(capsys.readouterr().out)
    return code, [p for f in report["files"] for p in f["problems"]]


def test_an_alias_bomb_is_refused_at_once_where_it_multiplies(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(alias_bomb())
    assert path.stat().st_size < 1024
    started = time.perf_counter()
    code, problems = check_json(path, capsys)
    elapsed = time.perf_counter() - started
    assert code == 1
    [problem] = problems
    assert problem["file"] == str(path)
    # Level 5 is the first whose aliases add more than MAX_ALIAS_NODES (3 x 9^5 > 100,000).
    assert (
        problem["line"]
        == path.read_text()
        .splitlines()
        .index(next(line for line in path.read_text().splitlines() if line.startswith("x-5:")))
        + 1
    )
    assert f"more than {MAX_ALIAS_NODES:,} nodes" in str(problem["message"])
    # Counting is linear in the nodes written; expanding took minutes and gigabytes.
    assert elapsed < 2.0


def test_a_recursive_anchor_is_an_error_not_a_recursion(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"f.yaml:2:11: an alias refers to a node that contains"):
        load_located("a: 1\nb: &b [1, *b]\n", "f.yaml")


def test_reusing_an_anchor_across_many_rules_is_fine() -> None:
    rules = "\n".join(
        f"""  - name: r{i}
    metric: m
    above: 0.5
    action:
      scale: {{<<: *scale, deployment: d{i}}}"""
        for i in range(500)
    )
    text = f"""\
x-scale: &scale {{namespace: crm, factor: 1.5, max: 20, rate_limits: [{{pods: 4, period: 1m}}]}}
metrics:
  m: sum(up)
rules:
{rules}
"""
    ruleset = load_text(text, "many.yaml")
    assert len(ruleset.rules) == 500
    assert ruleset.rules[499].action.maximum == 20


def test_a_file_over_the_size_limit_is_refused_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "huge.yaml"
    padding = "# " + "x" * 1000 + "\n"
    path.write_text(rule_file() + padding * (MAX_FILE_BYTES // len(padding) + 1))
    code, problems = check_json(path, capsys)
    assert code == 1
    [problem] = problems
    assert problem["file"] == str(path)
    assert (problem["line"], problem["column"]) == (1, 1)
    assert f"larger than {MAX_FILE_BYTES:,} bytes" in str(problem["message"])
    assert "split it into several files" in str(problem["message"])


def test_a_reload_of_an_alias_bomb_keeps_the_rules_and_logs_why(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(rule_file(name="before"))
    reloader = RuleReloader([path], ALLOW)
    path.write_text(alias_bomb().replace("name: r", "name: after"))
    stream = io.StringIO()
    handler = configure_logging("INFO", stream=stream)
    try:
        started = time.perf_counter()
        result = reloader.refresh()
        elapsed = time.perf_counter() - started
    finally:
        logging.getLogger().removeHandler(handler)
    assert result.rejected and not result.changed
    assert [rule.name for rule in reloader.ruleset.rules] == ["before"]
    [event] = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert event["event"] == "rules.reload_rejected"
    assert event["kept_rules"] == 1
    assert f"{path}:" in event["problems"][0] and "nested anchors" in event["problems"][0]
    assert elapsed < 2.0


@pytest.mark.parametrize(
    ("fields", "line", "field", "message"),
    [
        ({"factor": "1.0e+308", "max": "20"}, 11, "rules[0].action.scale.factor", "too large"),
        ({"max": "1e400"}, 12, "rules[0].action.scale.max", "must be a finite number"),
        ({"above": ".nan"}, 6, "rules[0].above", "must be a finite number"),
        ({"above": ".inf"}, 6, "rules[0].above", "must be a finite number"),
        ({"above": "-.inf"}, 6, "rules[0].above", "must be a finite number"),
    ],
    ids=["factor-overflows-max", "max-infinite", "above-nan", "above-inf", "above-minus-inf"],
)
def test_non_finite_numbers_are_errors_at_check(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    fields: dict[str, str],
    line: int,
    field: str,
    message: str,
) -> None:
    path = tmp_path / "f.yaml"
    path.write_text(rule_file(**fields))
    code, problems = check_json(path, capsys)
    assert code == 1
    [problem] = problems
    assert (problem["file"], problem["line"], problem["field"]) == (str(path), line, field)
    assert isinstance(problem["column"], int) and problem["column"] > 1
    assert message in str(problem["message"])


def test_a_duration_too_long_to_compute_with_is_an_error() -> None:
    text = rule_file().replace("    above: 0.5\n", f"    above: 0.5\n    for: 1{'0' * 400}s\n")
    with pytest.raises(ConfigError, match=r"f.yaml:7:10: rules\[0\].for: .* too long a duration"):
        load_text(text, "f.yaml")


def test_a_merge_key_with_an_override_is_accepted_and_the_override_wins() -> None:
    text = """\
x-defaults:
  scale: &scale
    namespace: crm
    factor: 1.5
    min: 2
    max: 20
metrics:
  m: sum by (deployment) (up)
rules:
  - name: api
    metric: m
    above: 0.5
    action:
      scale:
        <<: *scale
        deployment: api
        max: 40
"""
    ruleset = load_text(text, "merge.yaml")
    action = ruleset.rules[0].action
    assert (action.minimum, action.maximum) == (2, 40)


def test_a_key_written_twice_beside_a_merge_is_still_an_error() -> None:
    text = """\
x-scale: &scale {namespace: crm, factor: 1.5, max: 20}
metrics:
  m: sum(up)
rules:
  - name: api
    metric: m
    above: 0.5
    action:
      scale:
        <<: *scale
        deployment: api
        deployment: web
"""
    with pytest.raises(ConfigError, match=r"merge.yaml:12:9: .*deployment: this key is written"):
        load_text(text, "merge.yaml")


def test_an_error_in_a_merged_value_points_at_where_it_is_written() -> None:
    text = """\
x-scale: &scale
  namespace: crm
  factor: 1.5
  max: .inf
metrics:
  m: sum(up)
rules:
  - name: api
    metric: m
    above: 0.5
    action:
      scale: {<<: *scale, deployment: api}
"""
    with pytest.raises(ConfigError, match=r"merge.yaml:4:8: rules\[0\].action.scale.max: must"):
        load_text(text, "merge.yaml")


def test_top_level_x_blocks_hold_anchors_and_are_otherwise_ignored(tmp_path: Path) -> None:
    path = tmp_path / "x.yaml"
    path.write_text(
        """\
x-thresholds:
  high: &high 0.5
x-notes: anything at all, [even, lists]
metrics:
  m: sum by (deployment) (up)
rules:
  - name: api
    metric: m
    above: *high
    action:
      scale: {deployment: api, namespace: crm, factor: 1.5, max: 20}
"""
    )
    ruleset = load_rules([path])
    assert ruleset.rules[0].condition.threshold == 0.5


def test_an_unknown_top_level_field_without_the_prefix_is_still_an_error() -> None:
    with pytest.raises(ConfigError, match=r"unknown field 'xdefaults'"):
        load_text("xdefaults: {}\n" + rule_file(), "f.yaml")
