"""The project file (tether.toml, tether.yaml or tether.json): find it, parse it, validate it.

`load_project()` returns the records of `project_types`; every problem becomes one line

    FILE:LINE:COL: KEY.PATH: expected X, found Y (did you mean Z?)

(LINE:COL left out where the file gives no position for the key). All problems of a file are
collected and raised together as one `ProjectError`; unknown top-level keys are warnings, kept in
`Project.warnings`. The rules are documented in docs/projects.md.
"""

from __future__ import annotations

import json
import os
import re
import sys
import uuid
from bisect import bisect_right
from collections.abc import Callable
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

from .errors import TetherError, did_you_mean
from .project_types import DependencyDef, FlagDef, OpDef, Project
from .store.layout import PROJECT_FILES, find_project_file

Seg = str | int
KeyPath = tuple[Seg, ...]
Position = tuple[int, int]  # 1-based line and column

TOP_KEYS = ("project-id", "runs-dir", "ops")
OP_KEYS = ("exec", "description", "config", "sourcecode", "depends", "output-scalars", "needed")
DEP_KEYS = ("type", "files", "op", "where", "name", "target")
DEP_TYPES = ("project-files", "run-files", "runs-summary")
SHORTHAND_KEYS = ("op", "name", "target")
PLATFORMS = ("linux", "darwin", "windows")
FLAG_SPEC_KEYS = ("default", "description", "choices")
CONFIG_SUFFIXES = (".yaml", ".yml", ".json", ".toml")
FORMATS = {".toml": "toml", ".yaml": "yaml", ".yml": "yaml", ".json": "json"}

# Words people write for a platform, mapped to the key tether expects.
_PLATFORM_ALIASES = {
    "mac": "darwin",
    "macos": "darwin",
    "macosx": "darwin",
    "osx": "darwin",
    "win": "windows",
    "win32": "windows",
    "win64": "windows",
}
_OP_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\Z")
_BARE_SEG = re.compile(r"[A-Za-z0-9_-]+\Z")
_SHORT_KEY = re.compile(r"([A-Za-z][A-Za-z_-]*)=(.*)\Z", re.S)
# `{name}` in an exec command: a flag to fill in (not `${VAR}`, not `{{`, not `{a,b}`).
# The same tokens `tether run` fills (ops/exec.py): `{{` and `}}` are literal braces, `${VAR}`
# is the shell's, and only `{key}` with a key-like name is a placeholder (not `{print $1}`).
_PLACEHOLDER = re.compile(r"\{\{|\}\}|(?<!\$)\{([^{}\s]*)\}")
_PLACEHOLDER_KEY = re.compile(r"[A-Za-z_][\w.-]*")
_BUILTIN_PLACEHOLDERS = ("save_dir",)


class ProjectError(TetherError):
    """The project file is missing or wrong. `problems` holds every message, one line each."""

    exit_code = 2

    def __init__(
        self, problems: str | list[str], path: Path | None = None, warnings: list[str] | None = None
    ) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        self.path = path
        self.warnings = list(warnings or [])  # found before the problems stopped the load
        extra = len(self.problems) - 1
        hint = (
            f"{extra} more problem{'s' if extra > 1 else ''}: see `tether check`" if extra else None
        )
        super().__init__(self.problems[0], hint)


def current_platform() -> str:
    """The key of `exec` tables for this machine: linux, darwin or windows."""
    if sys.platform.startswith("linux"):
        return "linux"
    if sys.platform in ("win32", "cygwin", "msys"):
        return "windows"
    return sys.platform


def display_path(path: Path) -> str:
    """`path` relative to the working folder when it lies inside it, else absolute."""
    try:
        return str(path.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def keypath(segs: KeyPath) -> str:
    """("ops", "train", "depends", 1, "type") -> ops.train.depends[1].type"""
    out = ""
    for seg in segs:
        if isinstance(seg, int):
            out += f"[{seg}]"
        else:
            part = seg if _BARE_SEG.match(seg) else json.dumps(seg)
            out += f".{part}" if out else part
    return out


def found(value: Any) -> str:
    """How a value is named after `found` in a message: 'abc', 3, true, null, a table, ..."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        if not value:
            return "an empty string"
        shown = value if len(value) <= 60 else value[:57] + "..."
        # Quoted as written (a regex keeps its single backslashes); control characters escaped.
        return "'" + "".join(c if c.isprintable() else repr(c)[1:-1] for c in shown) + "'"
    if isinstance(value, dict):
        return "a table" if value else "an empty table"
    if isinstance(value, list):
        return "a list" if value else "an empty list"
    if isinstance(value, datetime):
        return "a date and time"
    if isinstance(value, date):
        return "a date"
    if isinstance(value, time):
        return "a time"
    return f"a {type(value).__name__}"


def _one_of(options: tuple[str, ...] | list[str]) -> str:
    return ", ".join(options)


def _dym(
    word: str, options: tuple[str, ...] | list[str], aliases: dict[str, str] | None = None
) -> str:
    hint = (aliases or {}).get(word.lower()) or did_you_mean(word, list(options))
    return f" (did you mean {hint!r}?)" if hint else ""


# -- parsing ------------------------------------------------------------------------------------
_JSON_COMMENTS = re.compile(r'"(?:\\.|[^"\\\n])*"|//[^\n]*|/\*.*?\*/|/\*', re.S)


def strip_json_comments(text: str) -> str:
    """Blank out // and /* */ comments outside strings, keeping every line and column in place.

    An unterminated /* is left as it is (`_parse` reports it where it starts).
    """
    return _strip_json_comments(text)[0]


def _strip_json_comments(text: str) -> tuple[str, int | None]:
    unterminated: list[int] = []

    def blank(m: re.Match[str]) -> str:
        s = m.group(0)
        if s == "/*":
            unterminated.append(m.start())
            return s
        if s.startswith('"'):
            return s
        return re.sub(r"[^\r\n]", " ", s)

    stripped = _JSON_COMMENTS.sub(blank, text)
    return stripped, (unterminated[0] if unterminated else None)


def _toml_module() -> Any:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    return tomllib


def _yaml_loader() -> Any:
    import yaml

    # The pure-Python loader on purpose: its messages are the same with or without libyaml, and
    # project files are small.
    return yaml.SafeLoader


class _Doc:
    """One parsed file, able to say where a key path sits in it."""

    def __init__(self, path: Path, text: str, fmt: str) -> None:
        self.path = path
        self.text = text
        self.fmt = fmt
        self.name = display_path(path)
        self._positions: dict[KeyPath, Position] | None = None

    def position(self, segs: KeyPath) -> Position | None:
        if self._positions is None:
            try:
                self._positions = POSITION_SCANNERS[self.fmt](self.text)
            except Exception:  # best effort: a message without LINE:COL is still a message
                self._positions = {}
        for n in range(len(segs), 0, -1):
            pos = self._positions.get(tuple(segs[:n]))
            if pos is not None:
                return pos
        return None

    def where(self, segs: KeyPath) -> str:
        pos = self.position(segs)
        return f"{self.name}:{pos[0]}:{pos[1]}" if pos else self.name

    def message(self, segs: KeyPath, text: str) -> str:
        return (
            f"{self.where(segs)}: {keypath(segs)}: {text}"
            if segs
            else f"{self.where(segs)}: {text}"
        )


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ProjectError(f"{display_path(path)}: no such file", path)
    except OSError as exc:
        raise ProjectError(f"{display_path(path)}: cannot be read ({exc.strerror})", path)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ProjectError(
            f"{display_path(path)}: expected UTF-8 text, found byte 0x{data[exc.start]:02x} "
            f"at offset {exc.start}",
            path,
        )


def _syntax_error(doc: _Doc, kind: str, message: str, line: int | None, col: int | None) -> str:
    where = f"{doc.name}:{line}:{col}" if line else doc.name
    message = " ".join(message.split()) or "invalid"
    return f"{where}: {kind} syntax error: {message}"


def _parse(doc: _Doc) -> Any:
    """The data of a file; a syntax error raises ProjectError with the parser's line and column."""
    text = doc.text
    if doc.fmt == "toml":
        tomllib = _toml_module()
        try:
            return tomllib.loads(text)
        except ValueError as exc:  # TOMLDecodeError, or an integer past Python's digit limit
            line, col = getattr(exc, "lineno", None), getattr(exc, "colno", None)
            msg = getattr(exc, "msg", None) or str(exc)
            m = re.match(r"(?s)(.*?)\s*\(at line (\d+), column (\d+)\)\s*\Z", msg)
            if m:
                msg, line, col = m.group(1), int(m.group(2)), int(m.group(3))
            elif msg.endswith("(at end of document)"):
                msg = msg[: -len("(at end of document)")]
                line = text.count("\n") + 1
                col = len(text) - (text.rfind("\n") + 1) + 1
            raise ProjectError(_syntax_error(doc, "TOML", msg, line, col), doc.path)
    if doc.fmt == "yaml":
        import yaml

        try:
            return yaml.load(text, Loader=_yaml_loader())
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            msg = exc.problem or exc.context or "invalid"
            if exc.problem and exc.context:
                msg = f"{exc.problem} ({exc.context})"
            line, col = (mark.line + 1, mark.column + 1) if mark else (None, None)
            raise ProjectError(_syntax_error(doc, "YAML", msg, line, col), doc.path)
        except (yaml.YAMLError, ValueError) as exc:
            raise ProjectError(_syntax_error(doc, "YAML", str(exc), None, None), doc.path)
    stripped, unterminated = _strip_json_comments(text)
    if unterminated is not None:
        line, col = _Lines(text).at(unterminated)
        raise ProjectError(
            _syntax_error(doc, "JSON", "unterminated /* comment", line, col), doc.path
        )
    try:
        return json.loads(stripped)
    except json.JSONDecodeError as exc:
        raise ProjectError(_syntax_error(doc, "JSON", exc.msg, exc.lineno, exc.colno), doc.path)
    except ValueError as exc:
        raise ProjectError(_syntax_error(doc, "JSON", str(exc), None, None), doc.path)


# -- where keys are: light scanners over text the parser has already accepted ------------------
class _Lines:
    def __init__(self, text: str) -> None:
        self.starts = [0, *(m.end() for m in re.finditer("\n", text))]

    def at(self, offset: int) -> Position:
        line = bisect_right(self.starts, offset)
        return line, offset - self.starts[line - 1] + 1


_TOML_BARE = re.compile(r"[A-Za-z0-9_-]+")
_TOML_SCALAR = re.compile(r"[^,\]}\n#]*")


class _TomlScanner:
    """Key paths of a valid TOML text -> the line and column of the key (first definition)."""

    def __init__(self, text: str) -> None:
        self.t = text
        self.i = 0
        self.lines = _Lines(text)
        self.pos: dict[KeyPath, Position] = {}
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
        t = self.t
        self.skip(newlines=False)
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

    root = yaml.compose(text, Loader=_yaml_loader())
    if root is not None:
        walk(root, ())
    return out


_JSON_SCALAR = re.compile(r"[^,\]}\s]*")


def json_positions(text: str) -> dict[KeyPath, Position]:
    """Key paths of a valid JSON text (comments allowed) -> line and column of the key."""
    t = strip_json_comments(text)
    lines = _Lines(t)
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
        nonlocal i
        skip()
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
    return out


POSITION_SCANNERS: dict[str, Callable[[str], dict[KeyPath, Position]]] = {
    "toml": toml_positions,
    "yaml": yaml_positions,
    "json": json_positions,
}


# -- validation ---------------------------------------------------------------------------------
def _is_plain(value: Any) -> bool:
    """A value a flag may hold: JSON's kinds (string, number, boolean, null, list, table)."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return True
    if isinstance(value, list):
        return all(_is_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_plain(v) for k, v in value.items())
    return False


def _first_unplain(value: Any) -> Any:
    if isinstance(value, list):
        for v in value:
            if not _is_plain(v):
                return _first_unplain(v)
    if isinstance(value, dict):
        for v in value.values():
            if not _is_plain(v):
                return _first_unplain(v)
    return value


_VALUE_KINDS = "a string, number, true/false, null, list or table"


class _Validator:
    def __init__(self, doc: _Doc) -> None:
        self.doc = doc
        self.root = doc.path.parent
        self.problems: list[str] = []
        self.warnings: list[str] = []
        self.op_names: list[str] = []

    # messages
    def error(self, segs: KeyPath, text: str, doc: _Doc | None = None) -> None:
        self.problems.append((doc or self.doc).message(segs, text))

    def warn(self, segs: KeyPath, text: str) -> None:
        self.warnings.append(self.doc.message(segs, text))

    def expected(
        self, segs: KeyPath, what: str, value: Any, doc: _Doc | None = None, hint: str = ""
    ) -> None:
        self.error(segs, f"expected {what}, found {found(value)}{hint}", doc)

    def unknown_key(self, segs: KeyPath, options: tuple[str, ...], kind: str = "key") -> None:
        word = str(segs[-1])
        self.error(segs, f"unknown {kind}; expected one of {_one_of(options)}{_dym(word, options)}")

    # top level
    def project(self, data: Any) -> Project:
        project = Project(path=self.doc.path)
        if data is None:  # an empty YAML file
            data = {}
        if not isinstance(data, dict):
            self.expected((), "a table of project keys at the top", data)
            return project
        for key in data:
            if str(key) not in TOP_KEYS:
                word = str(key)
                self.warn(
                    (word,),
                    f"unknown top-level key, ignored; expected one of {_one_of(TOP_KEYS)}"
                    f"{_dym(word, TOP_KEYS)}",
                )
        if "project-id" in data:
            project.project_id = self.project_id(data["project-id"])
        if "runs-dir" in data:
            value = data["runs-dir"]
            if isinstance(value, str) and value.strip():
                path = Path(os.path.expanduser(value))
                project.runs_dir = path if path.is_absolute() else self.root / path
            else:
                self.expected(("runs-dir",), "a folder path", value)
        ops = data.get("ops", {})
        if not isinstance(ops, dict):
            self.expected(("ops",), "a table of operations", ops)
            ops = {}
        self.op_names = [str(name) for name in ops]
        for name, value in ops.items():
            op = self.op(str(name), value)
            if op is not None:
                project.ops[op.name] = op
        self.check_cycles(project)
        return project

    def project_id(self, value: Any) -> str | None:
        if isinstance(value, str):
            try:
                return str(uuid.UUID(value.strip()))
            except ValueError:
                pass
        self.expected(("project-id",), "a UUID (`tether init` writes one)", value)
        return None

    # operations
    def op(self, name: str, value: Any) -> OpDef | None:
        segs: KeyPath = ("ops", name)
        if not _OP_NAME.match(name):
            self.expected(segs, "an operation name of letters, digits, '_', '-' and '.'", name)
            return None
        if isinstance(value, (str, list)):  # `train = "python train.py"`: a command alone
            value = {"exec": value}
        elif not isinstance(value, dict):
            self.expected(segs, "a table of operation keys or a command", value)
            return None
        before = len(self.problems)
        for key in value:
            if str(key) not in OP_KEYS:
                self.unknown_key((*segs, str(key)), OP_KEYS)
        command: str | list[str] | None = None
        if "exec" in value:
            command = self.exec_(value["exec"], (*segs, "exec"))
        else:
            self.error(segs, "expected an 'exec' command, found none")
        op = OpDef(name=name, exec=command if command is not None else "")
        if "description" in value:
            op.description = self.string(value["description"], (*segs, "description"))
        if "config" in value:
            op.flags, op.config_files = self.config(value["config"], (*segs, "config"))
        if "sourcecode" in value:
            op.sourcecode = self.globs(value["sourcecode"], (*segs, "sourcecode"), excludes=True)
        if "depends" in value:
            op.depends = self.depends(name, value["depends"], (*segs, "depends"))
        if "output-scalars" in value:
            op.output_scalars = self.output_scalars(
                value["output-scalars"], (*segs, "output-scalars")
            )
        if "needed" in value:
            needed = value["needed"]
            if isinstance(needed, bool):
                op.needed = needed
            else:
                self.expected((*segs, "needed"), "true or false", needed)
        if len(self.problems) == before:
            self.check_placeholders(op, (*segs, "exec"))
        return op

    def string(self, value: Any, segs: KeyPath) -> str | None:
        if isinstance(value, str):
            return value
        self.expected(segs, "a string", value)
        return None

    def exec_(self, value: Any, segs: KeyPath) -> str | list[str] | None:
        if isinstance(value, dict):
            platform = current_platform()
            picked: str | list[str] | None = None
            for key, command in value.items():
                word = str(key)
                if word not in PLATFORMS:
                    self.error(
                        (*segs, word),
                        f"unknown platform; expected one of {_one_of(PLATFORMS)}"
                        f"{_dym(word, PLATFORMS, _PLATFORM_ALIASES)}",
                    )
                    continue
                if isinstance(command, dict):
                    self.expected((*segs, word), "a string or a list of strings", command)
                    continue
                checked = self.command(command, (*segs, word))
                if word == platform:
                    picked = checked
            if platform not in value:
                present = [str(k) for k in value if str(k) in PLATFORMS]
                self.error(
                    segs,
                    f"expected a command for {platform}, found "
                    + (f"only {', '.join(present)}" if present else found(value)),
                )
            return picked
        return self.command(value, segs)

    def command(self, value: Any, segs: KeyPath) -> str | list[str] | None:
        if isinstance(value, str):
            if not value.strip():
                self.expected(segs, "a command", value)
                return None
            return value
        if isinstance(value, list):
            if not value:
                self.expected(segs, "a command", value)
                return None
            ok = True
            for index, item in enumerate(value):
                if not isinstance(item, str):
                    self.expected((*segs, index), "a string", item)
                    ok = False
            if ok and not value[0].strip():
                self.expected((*segs, 0), "a program", value[0])
                ok = False
            return list(value) if ok else None
        self.expected(
            segs,
            "a command: a string, a list of strings or a table of platforms "
            f"({_one_of(PLATFORMS)})",
            value,
        )
        return None

    def check_placeholders(self, op: OpDef, segs: KeyPath) -> None:
        words = [op.exec] if isinstance(op.exec, str) else op.exec
        names = [*op.flags, *_BUILTIN_PLACEHOLDERS]
        for word in words:
            for m in _PLACEHOLDER.finditer(word):
                key = m.group(1)
                if key is None or not _PLACEHOLDER_KEY.fullmatch(key) or key in names:
                    continue
                if any(name.startswith(key + ".") for name in op.flags):
                    continue  # {model}: the table of the flags model.*
                self.warn(segs, f"{{{key}}} names no flag of {op.name}{_dym(key, names)}")

    # config and flags
    def config(self, value: Any, segs: KeyPath) -> tuple[dict[str, FlagDef], list[Path]]:
        flags: dict[str, FlagDef] = {}
        files: list[Path] = []
        entries: list[tuple[Any, KeyPath]]
        if isinstance(value, list):
            entries = [(item, (*segs, index)) for index, item in enumerate(value)]
        elif isinstance(value, (dict, str)):
            entries = [(value, segs)]
        else:
            self.expected(segs, "a table of flags, a config file or a list of them", value)
            return flags, files
        for entry, where in entries:
            if isinstance(entry, dict):
                new = self.inline_flags(entry, where, "")
            elif isinstance(entry, str):
                loaded = self.config_file(entry, where)
                if loaded is None:
                    continue
                path, new = loaded
                files.append(path)
            else:
                self.expected(where, "a table of flags or a config file", entry)
                continue
            self.merge_flags(flags, new, where)
        return flags, files

    def merge_flags(
        self, flags: dict[str, FlagDef], new: dict[str, FlagDef], segs: KeyPath
    ) -> None:
        for name, flag in new.items():
            clash = next(
                (
                    other
                    for other in flags
                    if other != name
                    and (other.startswith(name + ".") or name.startswith(other + "."))
                ),
                None,
            )
            if clash is not None:
                inner, outer = (name, clash) if name.startswith(clash + ".") else (clash, name)
                self.error(
                    segs,
                    f"flag {inner!r} conflicts with flag {outer!r}: a flag cannot also hold "
                    "other flags",
                )
                continue
            flags[name] = flag  # a later entry sets the default again

    def inline_flags(self, table: dict[Any, Any], segs: KeyPath, prefix: str) -> dict[str, FlagDef]:
        out: dict[str, FlagDef] = {}
        for key, value in table.items():
            word = str(key)
            here = (*segs, word)
            if not word:
                self.error(here, "expected a flag name, found an empty key")
                continue
            name = f"{prefix}.{word}" if prefix else word
            if isinstance(value, dict) and value and all(str(k) in FLAG_SPEC_KEYS for k in value):
                flag = self.flag_spec(name, value, here)
                if flag is not None:
                    out[name] = flag
            elif isinstance(value, dict) and value:
                out.update(self.inline_flags(value, here, name))
            elif _is_plain(value):
                out[name] = FlagDef(name=name, default=value)
            else:
                self.expected(here, _VALUE_KINDS, _first_unplain(value))
        return out

    def flag_spec(self, name: str, spec: dict[Any, Any], segs: KeyPath) -> FlagDef | None:
        flag = FlagDef(name=name)
        ok = True
        if "default" in spec:
            default = spec["default"]
            if isinstance(default, dict) or not _is_plain(default):
                self.expected(
                    (*segs, "default"),
                    "a string, number, true/false, null or list",
                    _first_unplain(default) if not isinstance(default, dict) else default,
                )
                ok = False
            else:
                flag.default = default
        if "description" in spec:
            flag.description = self.string(spec["description"], (*segs, "description"))
            ok = ok and flag.description is not None
        if "choices" in spec:
            choices = spec["choices"]
            if not isinstance(choices, list) or not choices:
                self.expected((*segs, "choices"), "a list of values", choices)
                ok = False
            elif not all(_is_plain(c) and not isinstance(c, (dict, list)) for c in choices):
                bad = next(c for c in choices if not _is_plain(c) or isinstance(c, (dict, list)))
                self.expected((*segs, "choices"), "a list of strings, numbers or true/false", bad)
                ok = False
            else:
                flag.choices = list(choices)
                if "default" in spec and flag.default is not None and flag.default not in choices:
                    shown = ", ".join(json.dumps(c) for c in choices)
                    self.expected((*segs, "default"), f"one of {shown}", flag.default)
                    ok = False
        return flag if ok else None

    def config_file(self, name: str, segs: KeyPath) -> tuple[Path, dict[str, FlagDef]] | None:
        if not name.strip():
            self.expected(segs, "a config file", name)
            return None
        path = Path(os.path.expanduser(name))
        if not path.is_absolute():
            path = self.root / path
        if path.suffix.lower() not in CONFIG_SUFFIXES:
            self.expected(segs, "a .yaml, .yml, .json or .toml config file", name)
            return None
        if not path.is_file():
            self.expected(segs, "an existing config file", name)
            return None
        try:
            doc = _Doc(path, _read_text(path), FORMATS[path.suffix.lower()])
            data = _parse(doc)
        except ProjectError as exc:
            self.problems.extend(exc.problems)
            return None
        if data is None:
            data = {}
        if not isinstance(data, dict):
            self.expected((), "a table of config keys at the top", data, doc)
            return None
        flags: dict[str, FlagDef] = {}
        self.file_flags(data, (), "", name, doc, flags)
        return path, flags

    def file_flags(
        self,
        table: dict[Any, Any],
        segs: KeyPath,
        prefix: str,
        source: str,
        doc: _Doc,
        out: dict[str, FlagDef],
    ) -> None:
        # Keys of a config file are plain config: no flag-spec tables here (see the docs).
        for key, value in table.items():
            word = str(key)
            here = (*segs, word)
            name = f"{prefix}.{word}" if prefix else word
            if not word:
                self.error(here, "expected a flag name, found an empty key", doc)
            elif isinstance(value, dict) and value:
                self.file_flags(value, here, name, source, doc, out)
            elif _is_plain(value):
                out[name] = FlagDef(name=name, default=value, source=source)
            else:
                self.expected(here, _VALUE_KINDS, _first_unplain(value), doc)

    # sourcecode, files
    def globs(self, value: Any, segs: KeyPath, excludes: bool = False) -> list[str]:
        items: list[tuple[Any, KeyPath]]
        if isinstance(value, str):
            items = [(value, segs)]
        elif isinstance(value, list):
            items = [(v, (*segs, i)) for i, v in enumerate(value)]
        else:
            self.expected(segs, "a glob or a list of globs", value)
            return []
        out = []
        for item, where in items:
            if not isinstance(item, str) or not item.strip() or (excludes and item.strip() == "-"):
                self.expected(where, "a glob", item)
            else:
                out.append(item)
        return out

    # dependencies
    def depends(self, op: str, value: Any, segs: KeyPath) -> list[DependencyDef]:
        items = value if isinstance(value, list) else [value]
        if not isinstance(value, (list, dict, str)):
            self.expected(segs, "a list of dependencies", value)
            return []
        out = []
        names: dict[str, int] = {}
        for index, item in enumerate(items):
            where: KeyPath = (*segs, index) if isinstance(value, list) else segs
            dep = self.dependency(op, item, where)
            if dep is None:
                continue
            stage = dep.name or dep.op  # the stage run.lock records for a run-files input
            if dep.type == "run-files" and stage is not None:
                if stage in names:
                    self.expected(
                        (*where, "name"), f"a stage name not used by depends[{names[stage]}]", stage
                    )
                    continue
                names[stage] = index
            out.append(dep)
        return out

    def dependency(self, op: str, item: Any, segs: KeyPath) -> DependencyDef | None:
        if isinstance(item, str):
            table = self.shorthand(item, segs)
            if table is None:
                return None
        elif isinstance(item, dict):
            table = item
        else:
            self.expected(segs, "a dependency table or a string like 'run-files: op=prepare'", item)
            return None
        if not table:
            self.expected(segs, "a dependency", item)
            return None
        before = len(self.problems)
        for key in table:
            if str(key) not in DEP_KEYS:
                self.unknown_key((*segs, str(key)), DEP_KEYS)
        kind = table.get("type")
        if "type" not in table:
            self.error(segs, f"expected a 'type' ({_one_of(DEP_TYPES)}), found none")
        elif kind not in DEP_TYPES:
            hint = _dym(kind, DEP_TYPES) if isinstance(kind, str) else ""
            self.expected((*segs, "type"), f"one of {_one_of(DEP_TYPES)}", kind, hint=hint)
        dep = DependencyDef(type=kind if isinstance(kind, str) else "", key_path=keypath(segs))
        if "files" in table:
            dep.files = self.globs(table["files"], (*segs, "files"))
        for key in ("op", "where", "name", "target"):
            if key in table:
                text = table[key]
                if not isinstance(text, str) or not text.strip():
                    what = {"op": "an operation name", "where": "a --where expression"}.get(
                        key, "a name" if key == "name" else "a folder"
                    )
                    self.expected((*segs, key), what, text)
                else:
                    setattr(dep, key, text)
        if dep.target is not None:
            target = Path(dep.target)
            if target.is_absolute() or ".." in target.parts or dep.target.startswith(("/", "\\")):
                self.expected((*segs, "target"), "a folder inside the run folder", dep.target)
        if dep.type == "project-files":
            for key in ("op", "where"):
                if key in table:
                    self.error(
                        (*segs, key),
                        "not used by a project-files dependency (only run-files and "
                        "runs-summary select runs)",
                    )
            if "files" not in table:
                self.error(segs, "expected 'files' for a project-files dependency, found none")
        elif dep.type in ("run-files", "runs-summary"):
            if dep.type == "run-files" and "op" not in table:
                self.error(segs, "expected 'op', the operation whose runs it reads, found none")
            elif "op" not in table and "where" not in table:
                self.error(
                    segs, "expected 'op' or 'where' to select the upstream runs, found neither"
                )
            if dep.op is not None and dep.op not in self.op_names:
                hint = _dym(dep.op, self.op_names)
                self.expected((*segs, "op"), "an operation of this project", dep.op, hint=hint)
            elif dep.op == op and dep.type == "run-files":
                self.error(segs, "an operation cannot depend on its own runs")
        return dep if len(self.problems) == before else None

    def shorthand(self, text: str, segs: KeyPath) -> dict[str, Any] | None:
        """'run-files: op=prepare data.csv' -> {type: run-files, op: prepare, files: [data.csv]}"""
        if not text.strip():
            self.expected(segs, "a dependency", text)
            return None
        kind, colon, rest = text.partition(":")
        if not colon or not kind.strip() or any(c.isspace() for c in kind.strip()):
            self.expected(segs, "'TYPE: ...' like 'run-files: op=prepare'", text)
            return None
        table: dict[str, Any] = {"type": kind.strip()}
        files: list[str] = []
        ok = True
        for word in rest.split():
            m = _SHORT_KEY.match(word)
            if m is None:
                files.append(word)
            elif m.group(1) not in SHORTHAND_KEYS:
                self.unknown_key((*segs, m.group(1)), SHORTHAND_KEYS)
                ok = False
            else:
                table[m.group(1)] = m.group(2)
        if files:
            table["files"] = files
        return table if ok else None

    def check_cycles(self, project: Project) -> None:
        # Only run-files edges: such an op cannot start before an upstream run exists, so a
        # cycle of them can never start. A runs-summary of no runs is an empty summary.
        edges: dict[str, list[tuple[str, str]]] = {}
        for op in project.ops.values():
            edges[op.name] = [
                (dep.op, dep.key_path)
                for dep in op.depends
                if dep.type == "run-files" and dep.op is not None and dep.op != op.name
            ]
        reported: set[frozenset[str]] = set()
        state: dict[str, int] = {}  # 1: on the stack, 2: done
        stack: list[tuple[str, str]] = []  # (op, key path of the edge leaving it)

        def visit(name: str) -> None:
            state[name] = 1
            for upstream, where in edges.get(name, []):
                stack.append((name, where))
                if state.get(upstream) == 1:
                    start = next(i for i, (n, _) in enumerate(stack) if n == upstream)
                    cycle = stack[start:]
                    members = frozenset(n for n, _ in cycle)
                    if members not in reported:
                        reported.add(members)
                        chain = " -> ".join([*(n for n, _ in cycle), upstream])
                        segs = _parse_keypath(cycle[0][1])
                        self.error(segs, f"dependency cycle: {chain}")
                elif upstream not in state and upstream in edges:
                    visit(upstream)
                stack.pop()
            state[name] = 2

        for name in edges:
            if name not in state:
                visit(name)

    # output scalars
    def output_scalars(self, value: Any, segs: KeyPath) -> bool | list[str]:
        if isinstance(value, bool):
            return value
        items: list[tuple[Any, KeyPath]]
        if isinstance(value, str):
            items = [(value, segs)]
        elif isinstance(value, list):
            items = [(v, (*segs, i)) for i, v in enumerate(value)]
        else:
            self.expected(segs, "true, false or a list of patterns", value)
            return True
        out = []
        for item, where in items:
            if not isinstance(item, str) or not item:
                self.expected(where, "a regular expression", item)
                continue
            # \key and \value stand for the default key and number patterns (ops/scalars.py).
            source = item.replace(r"\key", "(?P<key>k)").replace(r"\value", "(?P<value>0)")
            try:
                pattern = re.compile(source)
            except (re.error, OverflowError, RecursionError, ValueError) as exc:
                self.error(where, f"expected a regular expression, found {found(item)} ({exc})")
                continue
            groups = set(pattern.groupindex)
            if ("key" in groups) != ("value" in groups) or not groups:
                self.expected(
                    where,
                    "a pattern with named groups (?P<key>...) and (?P<value>...), or (?P<NAME>...)",
                    item,
                )
                continue
            out.append(item)
        return out


def _parse_keypath(text: str) -> KeyPath:
    """The inverse of `keypath` for the simple paths tether writes into DependencyDef.key_path."""
    segs: list[Seg] = []
    for m in re.finditer(r'"((?:\\.|[^"\\])*)"|\[(\d+)\]|([^.\[\]"]+)', text):
        if m.group(1) is not None:
            segs.append(json.loads(f'"{m.group(1)}"'))
        elif m.group(2) is not None:
            segs.append(int(m.group(2)))
        else:
            segs.append(m.group(3))
    return tuple(segs)


# -- entry points -------------------------------------------------------------------------------
def parse_project_file(path: Path) -> Project:
    """Load and validate one project file; ProjectError (all problems) if anything is wrong."""
    path = Path(path).absolute()
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ProjectError(f"{display_path(path)}: expected a .toml, .yaml or .json file", path)
    doc = _Doc(path, _read_text(path), fmt)
    try:
        data = _parse(doc)
        validator = _Validator(doc)
        project = validator.project(data)
    except RecursionError:
        raise ProjectError(
            f"{doc.name}: nested too deeply (or a YAML alias refers to itself)", path
        )
    if validator.problems:
        raise ProjectError(validator.problems, path, validator.warnings)
    project.warnings.extend(validator.warnings)
    if path.name in PROJECT_FILES:
        for name in PROJECT_FILES[PROJECT_FILES.index(path.name) + 1 :]:
            if (path.parent / name).is_file():
                project.warnings.append(
                    f"{display_path(path.parent / name)}: ignored, {path.name} comes first"
                )
    return project


def load_project(start: Path | None = None, path: Path | None = None) -> Project:
    """The project of `path`, or of the nearest tether.toml/.yaml/.json from `start` upward."""
    if path is None:
        path = find_project_file(start)
        if path is None:
            here = (start or Path.cwd()).resolve()
            raise ProjectError(
                f"no {', '.join(PROJECT_FILES[:-1])} or {PROJECT_FILES[-1]} in {here} or a "
                "parent folder; `tether init` writes one"
            )
    return parse_project_file(Path(path))
