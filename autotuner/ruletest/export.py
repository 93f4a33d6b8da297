"""Rule test results for machines: JSON, and JUnit XML as `promtool test rules --junit` writes.

JUnit's shape: one <testsuite> per test file, one <testcase> per test group, the failing
expectations' diff as the text of its <failure>. A test file that cannot be loaded is a suite
with one <testcase> in <error>, so that a CI system shows it rather than a green empty suite.
"""

from __future__ import annotations

import textwrap
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from autotuner.config.errors import Problem
from autotuner.ruletest.report import format_mismatch
from autotuner.ruletest.runner import FileResult, GroupResult


@dataclass(frozen=True, slots=True)
class FileOutcome:
    """One test file: its results when it could be loaded, else the problems that stopped it."""

    path: str
    result: FileResult | None
    problems: tuple[Problem, ...] = ()

    @property
    def passed(self) -> bool:
        return self.result is not None and self.result.passed


def to_document(outcomes: Sequence[FileOutcome]) -> dict[str, Any]:
    """The shape of `autotuner test --format json`, alike to `autotuner check --format json`."""
    return {
        "success": all(outcome.passed for outcome in outcomes),
        "files": [_file_document(outcome) for outcome in outcomes],
    }


def _file_document(outcome: FileOutcome) -> dict[str, Any]:
    groups = outcome.result.groups if outcome.result is not None else ()
    return {
        "file": outcome.path,
        "success": outcome.passed,
        "problems": [problem.to_dict() for problem in outcome.problems],
        "groups": [
            {
                "name": group.name,
                "line": group.line,
                "evaluations": group.evaluations,
                "success": group.passed,
                "failures": [
                    {
                        "line": mismatch.line,
                        "eval_time": mismatch.eval_time,
                        "subject": mismatch.subject,
                        "diff": list(mismatch.diff),
                        "notes": list(mismatch.notes),
                    }
                    for mismatch in group.mismatches
                ],
            }
            for group in groups
        ],
    }


def to_junit(outcomes: Sequence[FileOutcome]) -> bytes:
    """The JUnit XML document of a whole `autotuner test` run."""
    root = ET.Element("testsuites", name="autotuner test")
    totals = {"tests": 0, "failures": 0, "errors": 0}
    for outcome in outcomes:
        suite = _suite(outcome)
        root.append(suite)
        for name in totals:
            totals[name] += int(suite.get(name, "0"))
    for name, count in totals.items():
        root.set(name, str(count))
    ET.indent(root)
    document: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return document


def _suite(outcome: FileOutcome) -> ET.Element:
    suite = ET.Element("testsuite", name=outcome.path, file=outcome.path)
    if outcome.result is None:
        case = ET.SubElement(suite, "testcase", name=outcome.path, classname=outcome.path)
        error = ET.SubElement(case, "error", message="not a valid test file", type="BadTestFile")
        error.text = "\n".join(str(problem) for problem in outcome.problems)
        suite.set("tests", "1")
        suite.set("errors", "1")
        suite.set("failures", "0")
        return suite
    failures = 0
    for group in outcome.result.groups:
        suite.append(_case(outcome.path, group))
        failures += not group.passed
    suite.set("tests", str(len(outcome.result.groups)))
    suite.set("failures", str(failures))
    suite.set("errors", "0")
    return suite


def _case(path: str, group: GroupResult) -> ET.Element:
    case = ET.Element("testcase", name=group.name, classname=path, file=path, line=str(group.line))
    if not group.passed:
        count = len(group.mismatches)
        failure = ET.SubElement(
            case,
            "failure",
            message=f"{count} expectation{'s' if count > 1 else ''} did not hold "
            f"({path}:{group.line})",
            type="ExpectationFailed",
        )
        failure.text = textwrap.dedent(
            "\n".join(line for m in group.mismatches for line in format_mismatch(path, m))
        )
    return case
