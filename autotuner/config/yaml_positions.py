"""YAML documents with the line and column of every key and value.

PyYAML composes a node tree that knows positions; this walks it once and keeps them by path,
so a validation error on `rules[3].action.scale.max` can point at the line that wrote it.
Duplicate keys, which YAML loaders silently accept, are reported here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path as FilePath
from typing import Any

import yaml

from autotuner.config.errors import ConfigError, Problem

Path = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Located:
    """A parsed document and where each of its parts was written (1-based line and column)."""

    file: str
    data: Any
    values: dict[Path, tuple[int, int]] = field(default_factory=dict)
    keys: dict[Path, tuple[int, int]] = field(default_factory=dict)

    def position(self, path: Sequence[str | int], key: bool = False) -> tuple[int, int]:
        """The position of the deepest known part of `path`."""
        index = self.keys if key else self.values
        probe = tuple(path)
        while probe:
            if probe in index:
                return index[probe]
            if probe in self.values:
                return self.values[probe]
            probe = probe[:-1]
        return self.values.get((), (1, 1))

    def problem(self, path: Sequence[str | int], message: str, key: bool = False) -> Problem:
        line, column = self.position(path, key)
        return Problem(self.file, line, column, dotted(path), message)


def dotted(path: Sequence[str | int]) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _mark(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def read_located(path: str | FilePath) -> Located:
    """Read a YAML file with positions; an unreadable file is a ConfigError, not a traceback."""
    file = str(path)
    try:
        text = FilePath(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError([Problem(file, 1, 1, "", f"cannot read the file: {error}")]) from None
    return load_located(text, file)


def load_located(text: str, file: str) -> Located:
    """Parse one YAML document; a syntax error or duplicate key raises ConfigError."""
    # libyaml's loader, where PyYAML was built with it, is an order of magnitude faster.
    loader = (yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader)(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return Located(file, None)
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise ConfigError(
            [Problem(file, line, column, "", f"not valid YAML: {error.problem}")]
        ) from None
    except yaml.YAMLError as error:
        raise ConfigError([Problem(file, 1, 1, "", f"not valid YAML: {error}")]) from None
    finally:
        loader.dispose()
    located = Located(file, data)
    problems: list[Problem] = []
    _walk(node, (), located, problems)
    if problems:
        raise ConfigError(problems)
    return located


def _walk(node: yaml.Node, path: Path, located: Located, problems: list[Problem]) -> None:
    located.values[path] = _mark(node)
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            child = (*path, key)
            if key in seen:
                line, column = _mark(key_node)
                problems.append(
                    Problem(located.file, line, column, dotted(child), "this key is written twice")
                )
            seen.add(key)
            located.keys[child] = _mark(key_node)
            _walk(value_node, child, located, problems)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk(item, (*path, index), located, problems)
