"""One-line messages about a project file, and the key paths they name.

Every problem is one line

    FILE:LINE:COL: KEY.PATH: expected X, found Y (did you mean Z?)

(LINE:COL left out where the file gives no position for the key); `ProjectError` carries all of
a file's problems at once.
"""

from __future__ import annotations

import json
import re
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

from ..errors import TetherError, did_you_mean

Seg = str | int
KeyPath = tuple[Seg, ...]
Position = tuple[int, int]  # 1-based line and column

_BARE_SEG = re.compile(r"[A-Za-z0-9_-]+\Z")


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


def parse_keypath(text: str) -> KeyPath:
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


def one_of(options: tuple[str, ...] | list[str]) -> str:
    return ", ".join(options)


def dym(
    word: str, options: tuple[str, ...] | list[str], aliases: dict[str, str] | None = None
) -> str:
    hint = (aliases or {}).get(word.lower()) or did_you_mean(word, list(options))
    return f" (did you mean {hint!r}?)" if hint else ""
