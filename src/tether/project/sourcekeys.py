"""Config that lives in the project's own source files: `config = "train.py"`, `"add.py#x"`.

The keys of a file and where each value is written: module-level literal assignments of a
Python file (read with `ast`, never imported or run), the keys of a JSON, YAML or TOML file.
`rewrite` writes new values into a text by replacing only the source span of each value, so
comments and layout stay as they were (ops/sourceconfig.py does that to a run's staged copy).

Selections (`file#key`, `#key` for the file of the entry before, `*` within one dotted part,
`**` across parts, a leading `-` to exclude) are parsed here too; `flags.FlagReader` applies them.
"""

from __future__ import annotations

import ast
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .formats import FORMATS, parse_text
from .positions import json_value_spans, toml_value_spans, yaml_value_spans

SOURCE_SUFFIXES = (".py", ".json", ".yaml", ".yml", ".toml")


@dataclass
class SourceKey:
    """One key of a source file: its dotted name, its value, where the value is written."""

    name: str
    value: Any
    span: tuple[int, int]  # offsets into the text
    description: str | None = None  # Python: the comment after the value (`lr = 0.1  # ...`)


@dataclass
class Selection:
    """One entry of a `config` list: which keys of which file(s)."""

    file: str  # a path or a glob, relative to the project root
    pattern: str  # a key pattern (`**`: every key)
    exclude: bool = False


class SourceError(ValueError):
    """A source file that cannot be read as config (its syntax): the message names it."""


def kind_of(path: Path | str) -> str | None:
    """ "python", "json", "yaml", "toml", or None for a file that holds no config."""
    suffix = Path(path).suffix.lower()
    return "python" if suffix == ".py" else FORMATS.get(suffix)


def _plain(value: Any) -> bool:
    if value is None or isinstance(value, (str, bool, int)):
        return True
    if isinstance(value, float):
        return math.isfinite(value)  # nan and inf cannot be written back as literals
    if isinstance(value, list):
        return all(_plain(v) and not isinstance(v, list) for v in value)
    return False


# -- reading ----------------------------------------------------------------------------------
def python_keys(text: str) -> dict[str, SourceKey]:
    """Module-level `NAME = literal` (and `NAME: T = literal`) assignments; anything else (a
    call, a name, an f-string, a tuple target) is not config and is skipped."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError) as exc:
        line = getattr(exc, "lineno", None)
        where = f":{line}:{getattr(exc, 'offset', 0) or 1}" if line else ""
        raise SourceError(f"{where}: Python syntax error: {getattr(exc, 'msg', exc)}") from None
    lines = text.splitlines(keepends=True)
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line))

    def offset(lineno: int, col: int) -> int:
        # ast columns count UTF-8 bytes
        line = lines[lineno - 1] if lineno - 1 < len(lines) else ""
        return starts[lineno - 1] + len(line.encode("utf-8")[:col].decode("utf-8", "ignore"))

    out: dict[str, SourceKey] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            target, value = node.target, node.value
        else:
            continue
        if not isinstance(target, ast.Name) or target.id.startswith("__"):
            continue
        try:
            literal = ast.literal_eval(value)  # a literal's value: never runs code
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            continue
        if isinstance(literal, tuple):
            continue  # written back as a list it would change type
        if not _plain(literal) or value.end_lineno is None or value.end_col_offset is None:
            continue
        start = offset(value.lineno, value.col_offset)
        end = offset(value.end_lineno, value.end_col_offset)
        newline = text.find("\n", end)
        rest = text[end : len(text) if newline < 0 else newline].strip()
        note = rest[1:].strip() or None if rest.startswith("#") else None
        out[target.id] = SourceKey(target.id, literal, (start, end), note)  # the last counts
    return out


def data_keys(
    text: str, fmt: str, name: str = "", path: Path | None = None
) -> dict[str, SourceKey]:
    """The leaf keys of a JSON, YAML or TOML text, dotted (`model.lr`), with their spans."""
    data = parse_text(text, fmt, name, path or Path(name))
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SourceError(": expected a table of keys at the top")
    scanners = {"json": json_value_spans, "yaml": yaml_value_spans, "toml": toml_value_spans}
    spans = scanners[fmt](text)
    out: dict[str, SourceKey] = {}

    def walk(table: dict[Any, Any], segs: tuple[str, ...]) -> None:
        for key, value in table.items():
            here = (*segs, str(key))
            if isinstance(value, dict) and value:
                walk(value, here)
            elif _plain(value) and here in spans:
                dotted = ".".join(here)
                out[dotted] = SourceKey(dotted, value, spans[here])

    walk(data, ())
    return out


def read_keys(path: Path, text: str) -> dict[str, SourceKey]:
    """The config keys of a source file's text, by kind of file (ProjectError, SourceError)."""
    kind = kind_of(path)
    if kind == "python":
        return python_keys(text)
    if kind is None:
        raise SourceError(": expected a .py, .json, .yaml, .yml or .toml file")
    return data_keys(text, kind, str(path), path)


# -- selecting --------------------------------------------------------------------------------
def parse_selection(entry: str, previous: str | None) -> Selection | str:
    """`file#key`, `#key` (the file of `previous`), `-...` excludes; a message when it is
    not one."""
    text = entry.strip()
    exclude = text.startswith("-")
    if exclude:
        text = text[1:].strip()
    file, hash_, pattern = text.partition("#")
    file = file.strip()
    pattern = pattern.strip() if hash_ else "**"
    if not file:
        if previous is None:
            return "expected 'FILE#KEY' ('#KEY' names a key of the file of the entry before)"
        file = previous
    if not pattern:
        return "expected a key after '#'"
    if any(c.isspace() for c in pattern):
        return "expected a key pattern without spaces"
    return Selection(file, pattern, exclude)


def key_regex(pattern: str) -> re.Pattern[str]:
    """`*` matches within one dotted part, `**` across parts, `?` one character."""
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^.]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^.]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


# -- writing ----------------------------------------------------------------------------------
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\"}


def _quoted(value: str, quote: str) -> str:
    """A double- (or single-) quoted string literal Python, TOML and YAML all read back as
    `value`: backslash escapes for the quote, line breaks and every unprintable character."""
    out = [quote]
    for ch in value:
        if ch == quote:
            out.append("\\" + ch)
        elif ch in _NAMED:
            out.append(_NAMED[ch])
        elif not ch.isprintable() or ch in "\x85\u2028\u2029":
            code = ord(ch)
            out.append(f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}")
        else:
            out.append(ch)
    out.append(quote)
    return "".join(out)


def format_value(value: Any, kind: str, old: str = "") -> str:
    """`value` as a literal of the file's kind (a string in the quotes the old one had)."""
    if isinstance(value, list):
        return "[" + ", ".join(format_value(v, kind) for v in value) + "]"
    if kind == "python":
        if isinstance(value, str):
            quote = "'" if old.lstrip("rbuRBU").startswith("'") else '"'
            return _quoted(value, quote)
        return repr(value)
    if value is None:
        if kind == "toml":
            raise ValueError("TOML has no null")
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{value} cannot be written as a {kind} literal")
    literal = kind == "toml" and old.startswith("'")
    if isinstance(value, str) and literal and value.isprintable() and "'" not in value:
        return "'" + value + "'"  # a literal string stays one
    if isinstance(value, str) and kind in ("toml", "yaml"):
        return _quoted(value, '"')
    if isinstance(value, float) and kind == "yaml":
        mantissa, e, exponent = repr(value).partition("e")
        if e and "." not in mantissa:
            return f"{mantissa}.0e{exponent}"  # YAML 1.1 reads `1e-05` as a string
    return json.dumps(value, ensure_ascii=False)


def rewrite(text: str, kind: str, keys: dict[str, SourceKey], values: dict[str, Any]) -> str:
    """`text` with each key of `values` given its new value, in place: only the span of each
    value changes (comments, layout, other keys stay byte for byte)."""
    edits = []
    for name, value in values.items():
        key = keys[name]
        start, end = key.span
        old = text[start:end]
        new = format_value(value, kind, old)
        edits.append((start, end, new))
    for start, end, new in sorted(edits, reverse=True):
        text = text[:start] + new + text[end:]
    return text
