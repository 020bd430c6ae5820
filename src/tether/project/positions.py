"""Where each key of a file is: light scanners over text the parser has already accepted.

Each scanner maps a key path (("ops", "train", "depends", 0, "type")) to the 1-based line and
column of the key's first definition; messages use them for their FILE:LINE:COL.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from ..fileformats import strip_json_comments
from .formats import Lines, yaml_loader
from .messages import KeyPath, Position

_TOML_BARE = re.compile(r"[A-Za-z0-9_-]+")
_TOML_SCALAR = re.compile(r"[^,\]}\n#]*")


class _TomlScanner:
    """Key paths of a valid TOML text -> the line and column of the key (first definition)."""

    def __init__(self, text: str) -> None:
        self.t = text
        self.i = 0
        self.lines = Lines(text)
        self.pos: dict[KeyPath, Position] = {}
        self.spans: dict[KeyPath, tuple[int, int]] = {}  # value offsets, for rewriting one
        self.arrays: dict[KeyPath, int] = {}  # array of tables -> index of its last element

    def mark(self, path: KeyPath, offset: int) -> None:
        self.pos.setdefault(path, self.lines.at(offset))

    def skip(self, newlines: bool) -> None:
        t = self.t
        while self.i < len(t):
            c = t[self.i]
            if c in " \t" or (newlines and c in "\r\n"):
                self.i += 1
            elif c == "#":
                end = t.find("\n", self.i)
                self.i = len(t) if end < 0 else end
            else:
                return

    def key(self) -> list[tuple[str, int]]:
        parts: list[tuple[str, int]] = []
        t = self.t
        while True:
            self.skip(newlines=False)
            start = self.i
            if t[start] == '"':
                end = self._basic_end(start)
                raw = t[start:end]
                try:
                    name = json.loads(raw)
                except ValueError:
                    name = raw[1:-1]
                self.i = end
            elif t[start] == "'":
                end = t.index("'", start + 1)
                name = t[start + 1 : end]
                self.i = end + 1
            else:
                m = _TOML_BARE.match(t, start)
                if m is None or not m.group(0):
                    raise ValueError(f"no key at {start}")
                name = m.group(0)
                self.i = m.end()
            parts.append((name, start))
            self.skip(newlines=False)
            if self.i < len(t) and t[self.i] == ".":
                self.i += 1
                continue
            return parts

    def _basic_end(self, start: int) -> int:
        j = start + 1
        while self.t[j] != '"':
            j += 2 if self.t[j] == "\\" else 1
        return j + 1

    def _multiline_end(self, start: int, quote: str) -> int:
        t, j = self.t, start + 3
        while True:
            k = t.index(quote * 3, j)
            if quote == '"':
                backslashes = 0
                while t[k - 1 - backslashes] == "\\":
                    backslashes += 1
                if backslashes % 2:
                    j = k + 1
                    continue
            extra = 0
            while extra < 2 and t[k + 3 : k + 4] == quote:
                k += 1
                extra += 1
            return k + 3

    def value(self, path: KeyPath) -> None:
        self.skip(newlines=False)
        start = self.i
        self._value(path)
        end = self.i
        while end > start and self.t[end - 1] in " \t\r":
            end -= 1
        self.spans.setdefault(path, (start, end))

    def _value(self, path: KeyPath) -> None:
        t = self.t
        c = t[self.i]
        if t.startswith('"""', self.i) or t.startswith("'''", self.i):
            self.i = self._multiline_end(self.i, c)
        elif c == '"':
            self.i = self._basic_end(self.i)
        elif c == "'":
            self.i = t.index("'", self.i + 1) + 1
        elif c == "[":
            self.i += 1
            index = 0
            while True:
                self.skip(newlines=True)
                if t[self.i] == "]":
                    self.i += 1
                    return
                self.mark((*path, index), self.i)
                self.value((*path, index))
                index += 1
                self.skip(newlines=True)
                if t[self.i] == ",":
                    self.i += 1
        elif c == "{":
            self.i += 1
            while True:
                self.skip(newlines=True)
                if t[self.i] == "}":
                    self.i += 1
                    return
                self.keyval(path)
                self.skip(newlines=True)
                if t[self.i] == ",":
                    self.i += 1
        else:
            m = _TOML_SCALAR.match(t, self.i)
            assert m is not None
            self.i = max(m.end(), self.i + 1)

    def keyval(self, table: KeyPath) -> None:
        path = table
        for name, start in self.key():
            path = (*path, name)
            self.mark(path, start)
        self.skip(newlines=False)
        if self.t[self.i] != "=":
            raise ValueError(f"no '=' at {self.i}")
        self.i += 1
        self.value(path)

    def header_path(self, names: list[str]) -> KeyPath:
        path: KeyPath = ()
        for name in names[:-1]:
            path = (*path, name)
            if path in self.arrays:
                path = (*path, self.arrays[path])
        return (*path, names[-1])

    def scan(self) -> dict[KeyPath, Position]:
        t = self.t
        table: KeyPath = ()
        while True:
            self.skip(newlines=True)
            if self.i >= len(t):
                return self.pos
            start = self.i
            if t.startswith("[[", start):
                self.i += 2
                path = self.header_path([name for name, _ in self.key()])
                self.i = t.index("]]", self.i) + 2
                index = self.arrays.get(path, -1) + 1
                self.arrays[path] = index
                self.mark(path, start)
                table = (*path, index)
                self.mark(table, start)
            elif t[start] == "[":
                self.i += 1
                table = self.header_path([name for name, _ in self.key()])
                self.i = t.index("]", self.i) + 1
                self.mark(table, start)
            else:
                self.keyval(table)


def toml_positions(text: str) -> dict[KeyPath, Position]:
    return _TomlScanner(text).scan()


def toml_value_spans(text: str) -> dict[KeyPath, tuple[int, int]]:
    """Key paths of a valid TOML text -> the offsets (start, end) of their values."""
    scanner = _TomlScanner(text)
    scanner.scan()
    return scanner.spans


def yaml_value_spans(text: str) -> dict[KeyPath, tuple[int, int]]:
    """Key paths of a valid YAML text -> the offsets (start, end) of their values (no aliases
    or merges followed: a value written elsewhere is not this key's to rewrite)."""
    import yaml

    out: dict[KeyPath, tuple[int, int]] = {}

    def walk(node: Any, path: KeyPath) -> None:
        if path:
            out.setdefault(path, (node.start_mark.index, node.end_mark.index))
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                    walk(value, (*path, key.value))

    root = yaml.compose(text, Loader=yaml_loader())
    if root is not None:
        walk(root, ())
    return out


def yaml_positions(text: str) -> dict[KeyPath, Position]:
    import yaml

    out: dict[KeyPath, Position] = {}
    seen: set[int] = set()

    def mark(path: KeyPath, node: Any) -> None:
        out.setdefault(path, (node.start_mark.line + 1, node.start_mark.column + 1))

    def walk(node: Any, path: KeyPath) -> None:
        if id(node) in seen:
            return
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            merges = []
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode):
                    if key.tag == "tag:yaml.org,2002:merge":
                        merges.append(value)
                        continue
                    mark((*path, key.value), key)
                    walk(value, (*path, key.value))
            for value in merges:  # `<<: *base`: the keys of base, after the explicit ones
                for item in value.value if isinstance(value, yaml.SequenceNode) else [value]:
                    walk(item, path)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                mark((*path, index), item)
                walk(item, (*path, index))

    root = yaml.compose(text, Loader=yaml_loader())
    if root is not None:
        walk(root, ())
    return out


_JSON_SCALAR = re.compile(r"[^,\]}\s]*")


def json_positions(text: str) -> dict[KeyPath, Position]:
    """Key paths of a valid JSON text (comments allowed) -> line and column of the key."""
    return _json_scan(text)[0]


def json_value_spans(text: str) -> dict[KeyPath, tuple[int, int]]:
    """Key paths of a valid JSON text (comments allowed) -> the offsets of their values."""
    return _json_scan(text)[1]


def _json_scan(text: str) -> tuple[dict[KeyPath, Position], dict[KeyPath, tuple[int, int]]]:
    t = strip_json_comments(text)
    spans: dict[KeyPath, tuple[int, int]] = {}
    lines = Lines(t)
    out: dict[KeyPath, Position] = {}
    i = 0

    def skip() -> None:
        nonlocal i
        while i < len(t) and t[i] in " \t\r\n":
            i += 1

    def string() -> str:
        nonlocal i
        j = i + 1
        while t[j] != '"':
            j += 2 if t[j] == "\\" else 1
        raw = t[i : j + 1]
        i = j + 1
        value = json.loads(raw)
        assert isinstance(value, str)
        return value

    def value(path: KeyPath) -> None:
        skip()
        start = i
        value_at(path)
        spans.setdefault(path, (start, i))

    def value_at(path: KeyPath) -> None:
        nonlocal i
        c = t[i]
        if c == "{":
            i += 1
            while True:
                skip()
                if t[i] == "}":
                    i += 1
                    return
                if t[i] == ",":
                    i += 1
                    continue
                start = i
                key = string()
                out.setdefault((*path, key), lines.at(start))
                skip()
                i += 1  # the colon
                value((*path, key))
        elif c == "[":
            i += 1
            index = 0
            while True:
                skip()
                if t[i] == "]":
                    i += 1
                    return
                if t[i] == ",":
                    i += 1
                    continue
                out.setdefault((*path, index), lines.at(i))
                value((*path, index))
                index += 1
        elif c == '"':
            string()
        else:
            m = _JSON_SCALAR.match(t, i)
            assert m is not None
            i = max(m.end(), i + 1)

    value(())
    return out, spans


POSITION_SCANNERS: dict[str, Callable[[str], dict[KeyPath, Position]]] = {
    "toml": toml_positions,
    "yaml": yaml_positions,
    "json": json_positions,
}
