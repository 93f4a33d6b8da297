"""YAML documents with the line and column of every key and value.

PyYAML composes a node tree that knows positions; this walks it once and keeps them by path,
so a validation error on `rules[3].action.scale.max` can point at the line that wrote it.
Duplicate keys, which YAML loaders silently accept, are reported here (a key that overrides
one merged in with `<<` is not a duplicate), and so are files and alias expansions too large
to load safely.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
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


# Larger than any sensible rule file (a ConfigMap holds at most 1 MiB), and small enough that
# parsing stays within the daemon's memory: PyYAML's node tree takes some 60 times the text.
MAX_FILE_BYTES = 2 * 1024 * 1024
# Nodes that aliases may add beyond those written: reusing a block across thousands of rules
# fits, while nested anchors that multiply (an "alias bomb", a billion nodes from 1 KB) stop
# here before anything is built from them.
MAX_ALIAS_NODES = 100_000

_MERGE_TAG = "tag:yaml.org,2002:merge"


def read_located(path: str | FilePath, max_bytes: int = MAX_FILE_BYTES) -> Located:
    """Read a YAML file with positions; an unreadable file is a ConfigError, not a traceback."""
    file = str(path)
    try:
        with open(path, "rb") as handle:
            # Bounded, so that a huge file (or a device that never ends) is not read whole.
            raw = handle.read(max_bytes + 1)
        if len(raw) > max_bytes:
            raise ConfigError([_too_large(file, max_bytes)])
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError([Problem(file, 1, 1, "", f"cannot read the file: {error}")]) from None
    return load_located(text, file, max_bytes)


def _too_large(file: str, max_bytes: int) -> Problem:
    return Problem(
        file,
        1,
        1,
        "",
        f"the file is larger than {max_bytes:,} bytes, the limit for one file; "
        "split it into several files in one directory",
    )


def load_located(text: str, file: str, max_bytes: int = MAX_FILE_BYTES) -> Located:
    """Parse one YAML document; a syntax error, duplicate key, recursive anchor or alias
    expansion past MAX_ALIAS_NODES raises ConfigError."""
    if len(text) > max_bytes:
        raise ConfigError([_too_large(file, max_bytes)])
    # libyaml's loader, where PyYAML was built with it, is an order of magnitude faster.
    loader = (yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader)(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return Located(file, None)
        # Composing shares an anchored node between its aliases; building Python data from
        # it, or walking it, would visit each alias's whole subtree, so count that first.
        expansion = _alias_problem(node, file)
        if expansion is not None:
            raise ConfigError([expansion])
        # Walked before it is built: building flattens `<<` merges into the mappings, after
        # which an overriding key would look like a key written twice.
        walk = _Walk(file)
        walk.node(node, ())
        if walk.problems:
            raise ConfigError(walk.problems)
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
    return Located(file, data, walk.values, walk.keys)


def _children(node: yaml.Node) -> Iterator[tuple[yaml.Node, yaml.Node]]:
    """(where it is written, child) for each key and value of a mapping, item of a sequence."""
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            yield key_node, key_node
            yield key_node, value_node
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            yield node, item


def _alias_problem(root: yaml.Node, file: str) -> Problem | None:
    """Counts, in one pass over the distinct nodes, how many nodes aliases add; the problem
    where that passes MAX_ALIAS_NODES, or where an alias refers to a node containing it."""
    sizes: dict[int, int] = {}  # the expanded size of each node counted so far
    added = 0
    active = {id(root)}
    # Iterative, as a file may nest as deep as the parser allows.
    stack = [(root, _children(root), [1])]
    while stack:
        node, pending, size = stack[-1]
        for where, child in pending:
            if id(child) in sizes:  # counted before: this is an alias of it
                size[0] += sizes[id(child)]
                added += sizes[id(child)]
                if added > MAX_ALIAS_NODES:
                    line, column = _mark(where)
                    return Problem(
                        file,
                        line,
                        column,
                        "",
                        f"aliases expand the document by more than {MAX_ALIAS_NODES:,} nodes "
                        "(nested anchors multiply); refer to fewer or smaller anchors",
                    )
            elif id(child) in active:
                line, column = _mark(where)
                return Problem(file, line, column, "", "an alias refers to a node that contains it")
            elif isinstance(child, yaml.ScalarNode):
                sizes[id(child)] = 1
                size[0] += 1
            else:
                active.add(id(child))
                stack.append((child, _children(child), [1]))
                break
        else:
            stack.pop()
            active.discard(id(node))
            sizes[id(node)] = size[0]
            if stack:
                stack[-1][2][0] += size[0]
    return None


class _Walk:
    """Positions by path, and keys written twice (each reported once, aliases being shared)."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.values: dict[Path, tuple[int, int]] = {}
        self.keys: dict[Path, tuple[int, int]] = {}
        self.problems: list[Problem] = []
        self._checked: set[int] = set()

    def node(self, node: yaml.Node, path: Path) -> None:
        self.values[path] = _mark(node)
        if isinstance(node, yaml.MappingNode):
            first_visit = id(node) not in self._checked
            self._checked.add(id(node))
            seen: set[str] = set()
            for key_node, value_node in _own_pairs(node):
                key = str(key_node.value)
                if key in seen and first_visit:
                    line, column = _mark(key_node)
                    self.problems.append(
                        Problem(
                            self.file,
                            line,
                            column,
                            dotted((*path, key)),
                            "this key is written twice",
                        )
                    )
                seen.add(key)
                self.pair(key_node, value_node, (*path, key))
            # A merged key is one the mapping does not write itself; the first merged
            # mapping that has it wins, as when PyYAML builds the mapping.
            for key_node, value_node in _merged_pairs(node):
                key = str(key_node.value)
                if key not in seen:
                    seen.add(key)
                    self.pair(key_node, value_node, (*path, key))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self.node(item, (*path, index))

    def pair(self, key_node: yaml.Node, value_node: yaml.Node, path: Path) -> None:
        self.keys[path] = _mark(key_node)
        self.node(value_node, path)


def _own_pairs(node: yaml.MappingNode) -> list[tuple[yaml.Node, yaml.Node]]:
    return [(k, v) for k, v in node.value if k.tag != _MERGE_TAG]


def _merged_pairs(node: yaml.MappingNode) -> Iterator[tuple[yaml.Node, yaml.Node]]:
    """The pairs `<<` brings into a mapping, in order of precedence (a recursive anchor has
    been refused before this runs)."""
    for key_node, value_node in node.value:
        if key_node.tag != _MERGE_TAG:
            continue
        sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
        for source in sources:
            if isinstance(source, yaml.MappingNode):
                yield from _own_pairs(source)
                yield from _merged_pairs(source)
