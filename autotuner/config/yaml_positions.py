"""YAML documents with the line and column of every key and value.

PyYAML composes a node tree that knows positions; this walks it once and keeps them by path,
so a validation error on `rules[3].action.scale.max` can point at the line that wrote it.
Duplicate keys, which YAML loaders silently accept, are reported here (a key that overrides
one merged in with `<<` is not a duplicate), and so are files and alias expansions too large
to load safely.
"""

from __future__ import annotations

from array import array
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
    # By id() of each mapping and sequence in `data`: where its parts were written, flat. For
    # a mapping, key line, key column, value line, value column per entry, in the dict's
    # order; for a sequence, line and column per item. Four integers an entry in an array
    # take a small fraction of what a dict of paths would, for files of 10 MB.
    marks: dict[int, array[int]] = field(default_factory=dict)
    root: tuple[int, int] = (1, 1)

    def position(self, path: Sequence[str | int], key: bool = False) -> tuple[int, int]:
        """The position of the deepest known part of `path` (of its key, if asked)."""
        current, found = self.data, self.root
        for depth, part in enumerate(path):
            marks = self.marks.get(id(current))
            if marks is None:
                break
            if isinstance(current, dict):
                if part not in current:
                    break
                at = 4 * list(current).index(part)
                if key and depth == len(path) - 1:
                    return marks[at], marks[at + 1]
                found, current = (marks[at + 2], marks[at + 3]), current[part]
            elif isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current):
                found, current = (marks[2 * part], marks[2 * part + 1]), current[part]
            else:
                break
        return found

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


# Larger than any sensible rule file (a ConfigMap holds at most 1 MiB). Built from the parser's
# events, a file takes some 15 times its text in memory while it is compiled: a 10 MB file of
# 36,000 rules peaks under 200 MB (bench/bench_check.py).
MAX_FILE_BYTES = 16 * 1024 * 1024
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
    # libyaml's parser, where PyYAML was built with it, is an order of magnitude faster.
    loader = (yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader)(text)
    try:
        return _Builder(file, loader).document()
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


class _Open:
    """A mapping or sequence being read: its parts so far, and how many nodes it expands to."""

    __slots__ = ("anchor", "is_mapping", "items", "key", "mark", "merges", "path", "size")

    def __init__(self, is_mapping: bool, anchor: str | None, mark: Any, path: Path) -> None:
        self.is_mapping = is_mapping
        self.anchor = anchor
        self.mark = mark
        self.path = path
        # A mapping's (key, key position, value, value position) entries; a sequence's items.
        self.items: list[Any] = []
        self.key: Any = _NO_KEY
        self.merges: list[tuple[Any, Any]] = []  # (merged value, where `<<` was written)
        self.size = 1

    def child_path(self) -> Path:
        if not self.is_mapping:
            return (*self.path, len(self.items))
        if self.key is _NO_KEY:
            return self.path
        return (*self.path, str(self.key[0]))


_NO_KEY = object()
_MERGE = object()
_STR_TAG = "tag:yaml.org,2002:str"
_PLAIN_CACHE_LIMIT = 65_536


class _Builder:
    """Python data and its positions straight from the parser's events, in one pass.

    No node tree is composed: for a 10 MB file PyYAML's tree takes seconds to build and some
    60 times the text in memory. Anchors keep the value built for them (an alias shares it,
    as PyYAML's constructor does) and the number of nodes it expands to, so that aliases that
    multiply are refused as they are met, before anything is built from them.
    """

    def __init__(self, file: str, loader: Any) -> None:
        self.file = file
        self.loader = loader
        self.marks: dict[int, array[int]] = {}
        self.anchors: dict[str, tuple[Any, int]] = {}  # value, expanded size
        self.open_anchors: set[str] = set()
        self.added = 0
        self.problems: list[Problem] = []
        self.plain: dict[str, Any] = {}  # plain scalars already resolved: keys repeat a lot
        self.constructors = loader.yaml_constructors

    def document(self) -> Located:
        get = self.loader.get_event
        get()  # StreamStart
        event = get()
        if isinstance(event, yaml.StreamEndEvent):
            return Located(self.file, None)
        root = self.node(get(), ())
        get()  # DocumentEnd
        following = get()
        if not isinstance(following, yaml.StreamEndEvent):
            raise yaml.composer.ComposerError(
                "expected a single document in the stream",
                None,
                "but found another document",
                following.start_mark,
            )
        if self.problems:
            raise ConfigError(self.problems)
        data, mark = root
        return Located(self.file, data, self.marks, mark)

    def fail(self, mark: Any, message: str, path: Path = ()) -> ConfigError:
        return ConfigError(
            [Problem(self.file, mark.line + 1, mark.column + 1, dotted(path), message)]
        )

    def node(self, event: Any, path: Path) -> tuple[Any, tuple[int, int]]:
        """The value of the node that starts with `event`, iteratively: a file may nest as
        deep as the parser allows."""
        get = self.loader.get_event
        stack: list[_Open] = []
        plain = self.plain
        value: Any
        while True:
            kind = type(event)
            # The common case first, kept cheap: an untagged scalar, seen before if plain, as
            # a key or an ordinary value of the mapping being read.
            if kind is yaml.ScalarEvent and stack and event.anchor is None and event.tag is None:
                text = event.value
                value = plain.get(text, _NO_KEY) if event.implicit[0] else text
                parent = stack[-1]
                if value is not _NO_KEY and value is not _MERGE and parent.is_mapping:
                    mark = event.start_mark
                    position = (mark.line + 1, mark.column + 1)
                    parent.size += 1
                    key = parent.key
                    if key is _NO_KEY:
                        parent.key = (value, position)
                        event = get()
                        continue
                    if key[0] is not _MERGE:
                        parent.key = _NO_KEY
                        parent.items.append((key[0], key[1], value, position))
                        event = get()
                        continue
                    parent.size -= 1  # a scalar given to `<<`: the general path says why
            if kind is yaml.MappingStartEvent or kind is yaml.SequenceStartEvent:
                where = stack[-1].child_path() if stack else path
                self.check_tag(event, where)
                stack.append(
                    _Open(kind is yaml.MappingStartEvent, event.anchor, event.start_mark, where)
                )
                if event.anchor is not None:
                    self.open_anchors.add(event.anchor)
                event = get()
                continue
            anchor = None
            if kind is yaml.ScalarEvent:
                value = self.scalar(event)
                size, mark, anchor = 1, event.start_mark, event.anchor
            elif kind is yaml.AliasEvent:
                value, size = self.alias(event)
                mark = event.start_mark
            else:  # the end of the innermost open mapping or sequence
                done = stack.pop()
                value, size, mark, anchor = self.close(done), done.size, done.mark, done.anchor
                if anchor is not None:
                    self.open_anchors.discard(anchor)
            if anchor is not None:
                self.anchors[anchor] = (value, size)
            position = (mark.line + 1, mark.column + 1)
            if not stack:
                return value, position
            self.add(stack[-1], value, position, size)
            event = get()

    def add(self, parent: _Open, value: Any, position: tuple[int, int], size: int) -> None:
        parent.size += size
        if value is _MERGE and (not parent.is_mapping or parent.key is not _NO_KEY):
            value = "<<"  # a merge only as a key
        if not parent.is_mapping:
            parent.items.append((value, position))
        elif parent.key is _NO_KEY:
            if isinstance(value, dict | list):
                line, column = position
                raise ConfigError(
                    [
                        Problem(
                            self.file,
                            line,
                            column,
                            dotted(parent.path),
                            "a key must be a plain value, not a mapping or list",
                        )
                    ]
                )
            parent.key = (value, position)
        else:
            key, key_position = parent.key
            parent.key = _NO_KEY
            if key is _MERGE:
                parent.merges.append((value, key_position))
            else:
                parent.items.append((key, key_position, value, position))

    def close(self, done: _Open) -> Any:
        if not done.is_mapping:
            items = [value for value, _ in done.items]
            self.marks[id(items)] = array("i", [n for _, position in done.items for n in position])
            return items
        if not done.merges:
            # The common case, cheaply: no merge, and as many keys as were written.
            try:
                mapping = {key: value for key, _, value, _ in done.items}
            except TypeError:
                mapping = {}  # an unhashable key: the general path says where
            if len(mapping) == len(done.items):
                flat: list[int] = []
                extend = flat.extend
                for _, key_position, _, position in done.items:
                    extend(key_position)
                    extend(position)
                self.marks[id(mapping)] = array("i", flat)
                return mapping
        entries: dict[Any, tuple[tuple[int, int], Any, tuple[int, int]]] = {}
        # Merged first, the first mapping given to `<<` winning, then the mapping's own keys
        # over them: as PyYAML builds it. Only a key written twice by the mapping itself is
        # a duplicate.
        for merged, where in done.merges:
            for source in merged if isinstance(merged, list) else [merged]:
                if not isinstance(source, dict):
                    line, column = where
                    raise ConfigError(
                        [
                            Problem(
                                self.file,
                                line,
                                column,
                                dotted(done.path),
                                "`<<` merges a mapping, or a list of mappings, into this one",
                            )
                        ]
                    )
                source_marks = self.marks.get(id(source))
                for index, (key, value) in enumerate(source.items()):
                    if key not in entries and source_marks is not None:
                        at = 4 * index
                        entries[key] = (
                            (source_marks[at], source_marks[at + 1]),
                            value,
                            (source_marks[at + 2], source_marks[at + 3]),
                        )
        own: set[Any] = set()
        for key, key_position, value, position in done.items:
            try:
                if key in own:
                    line, column = key_position
                    self.problems.append(
                        Problem(
                            self.file,
                            line,
                            column,
                            dotted((*done.path, str(key))),
                            "this key is written twice",
                        )
                    )
                own.add(key)
            except TypeError:
                line, column = key_position
                raise ConfigError(
                    [
                        Problem(
                            self.file,
                            line,
                            column,
                            dotted(done.path),
                            "a key must be a plain value",
                        )
                    ]
                ) from None
            entries[key] = (key_position, value, position)
        mapping = {key: value for key, (_, value, _) in entries.items()}
        self.marks[id(mapping)] = array("i", [n for k, _, v in entries.values() for n in (*k, *v)])
        return mapping

    def scalar(self, event: Any) -> Any:
        plain = event.implicit[0] and event.tag is None
        if plain:
            cached = self.plain.get(event.value, _NO_KEY)
            if cached is not _NO_KEY:
                return cached
            tag = self.loader.resolve(yaml.ScalarNode, event.value, event.implicit)
        elif event.tag is None or event.tag == "!":
            return event.value
        else:
            tag = event.tag
        if tag == _STR_TAG:
            value: Any = event.value
        elif tag == _MERGE_TAG:
            value = _MERGE
        else:
            constructor = self.constructors.get(tag)
            if constructor is None:
                raise self.fail(
                    event.start_mark, f"not valid YAML here: the tag {tag!r} is not supported"
                )
            node = yaml.ScalarNode(tag, event.value, event.start_mark, event.end_mark, event.style)
            value = constructor(self.loader, node)
        if plain and len(self.plain) < _PLAIN_CACHE_LIMIT:
            self.plain[event.value] = value
        return value

    def check_tag(self, event: Any, path: Path) -> None:
        if event.tag not in (None, "!", "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"):
            raise self.fail(
                event.start_mark,
                f"not valid YAML here: the tag {event.tag!r} is not supported",
                path,
            )

    def alias(self, event: Any) -> tuple[Any, int]:
        name = event.anchor
        if name in self.open_anchors:
            raise self.fail(event.start_mark, "an alias refers to a node that contains it")
        if name not in self.anchors:
            raise self.fail(event.start_mark, f"not valid YAML: found undefined alias {name!r}")
        value, size = self.anchors[name]
        self.added += size
        if self.added > MAX_ALIAS_NODES:
            raise self.fail(
                event.start_mark,
                f"aliases expand the document by more than {MAX_ALIAS_NODES:,} nodes "
                "(nested anchors multiply); refer to fewer or smaller anchors",
            )
        return value, size
