"""Rule test results as text, in the manner of `promtool test rules`."""

from __future__ import annotations

from collections.abc import Sequence

from autotuner.config.durations import format_duration
from autotuner.config.errors import Problem
from autotuner.ruletest.runner import FileResult, GroupResult, Mismatch


def format_file(result: FileResult) -> list[str]:
    lines = [f"Unit Testing: {result.path}"]
    if not result.groups:
        lines.append("  no test group matched")
        return lines
    for group in result.groups:
        if not group.passed:
            lines.extend(format_group(result.path, group))
    if result.passed:
        evaluations = sum(g.evaluations for g in result.groups)
        lines.append(f"  SUCCESS: {len(result.groups)} test group(s), {evaluations} evaluations")
    return lines


def format_group(path: str, group: GroupResult) -> list[str]:
    lines = [f"  FAILED: {group.name} ({path}:{group.line})"]
    for mismatch in group.mismatches:
        lines.extend(format_mismatch(path, mismatch))
    return lines


def format_mismatch(path: str, mismatch: Mismatch) -> list[str]:
    when = format_duration(mismatch.eval_time)
    lines = [
        f"    {path}:{mismatch.line}: eval_time {when}: {mismatch.subject} (- expected, + got)"
    ]
    lines.extend(f"      {line}" for line in mismatch.diff)
    for note in mismatch.notes:
        lines.append(f"      why: {note}")
    return lines


def format_problems(path: str, problems: Sequence[Problem]) -> list[str]:
    lines = [f"Unit Testing: {path}"]
    lines.extend(f"  BAD TEST FILE: {problem}" for problem in problems)
    return lines
