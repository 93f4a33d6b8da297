"""Hot reload of rule files: a changed file is validated first, and a bad one is reported while
the previous rules keep running.

Files are compared by content digest, not modification time, because a ConfigMap update is an
atomic symlink swap whose timestamps need not move forward.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from autotuner.config.errors import ConfigError
from autotuner.config.loader import RULE_FILE_SUFFIXES, load_rules
from autotuner.core.rules import RuleSet
from autotuner.runtime.logging import log_event
from autotuner.runtime.settings import AllowList, AllowListError, check_ruleset

_LOG = logging.getLogger(__name__)


class RulesRejected(Exception):
    """The rule files cannot be used; `problems` lists each, with its file and line."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(self.problems))


@dataclass(frozen=True, slots=True)
class Reload:
    """The result of one look at the rule files."""

    changed: bool
    ruleset: RuleSet
    problems: tuple[str, ...] = ()

    @property
    def rejected(self) -> bool:
        return bool(self.problems)


def fingerprint(paths: Sequence[Path]) -> tuple[tuple[str, str], ...]:
    """(file, digest) of every rule file the paths name; a missing path counts as a change."""
    prints: list[tuple[str, str]] = []
    for path in paths:
        if path.is_dir():
            files = sorted(
                p for p in path.iterdir() if p.is_file() and p.suffix in RULE_FILE_SUFFIXES
            )
        else:
            files = [path]
        for file in files:
            try:
                digest = hashlib.sha256(file.read_bytes()).hexdigest()
            except OSError as error:
                digest = f"unreadable: {error.strerror}"
            prints.append((str(file), digest))
    return tuple(prints)


def load_checked(paths: Sequence[Path], allow: AllowList) -> RuleSet:
    """Load the rules and check them against the allow-list; RulesRejected lists all problems."""
    try:
        ruleset = load_rules(paths)
    except ConfigError as error:
        raise RulesRejected([str(problem) for problem in error.problems]) from None
    try:
        check_ruleset(ruleset, allow)
    except AllowListError as error:
        raise RulesRejected([str(v) for v in error.violations]) from None
    return ruleset


class RuleReloader:
    """Holds the rule set in force and replaces it only with a valid, allowed one."""

    def __init__(
        self,
        paths: Sequence[Path],
        allow: AllowList,
        on_rejected: Callable[[tuple[str, ...]], None] = lambda problems: None,
    ) -> None:
        self._paths = tuple(paths)
        self._allow = allow
        self._on_rejected = on_rejected
        self._lock = threading.Lock()
        # Raises RulesRejected: a daemon does not start without valid rules.
        self._fingerprint = fingerprint(self._paths)
        self._ruleset = load_checked(self._paths, allow)
        self._rejected: tuple[tuple[str, str], ...] | None = None

    @property
    def ruleset(self) -> RuleSet:
        with self._lock:
            return self._ruleset

    def refresh(self) -> Reload:
        """Reload if any rule file changed since the last look."""
        current = fingerprint(self._paths)
        with self._lock:
            if current == self._fingerprint or current == self._rejected:
                return Reload(False, self._ruleset)
        try:
            ruleset = load_checked(self._paths, self._allow)
        except RulesRejected as error:
            with self._lock:
                # Report a bad version once, not at every look, until the files change again.
                self._rejected = current
                kept = self._ruleset
            log_event(
                _LOG,
                "rules.reload_rejected",
                logging.ERROR,
                problems=list(error.problems),
                kept_rules=len(kept.rules),
            )
            self._on_rejected(error.problems)
            return Reload(False, kept, error.problems)
        with self._lock:
            self._ruleset = ruleset
            self._fingerprint = current
            self._rejected = None
        log_event(
            _LOG,
            "rules.reloaded",
            rules=len(ruleset.rules),
            files=[file for file, _ in current],
        )
        return Reload(True, ruleset)
