"""Reading the text formats of tether's own files: TOML's parser, JSON with comments.

Foundation: `workspace` (the runs root, the project id), `project/` (the full parse of a project
file) and the launch templates of `distributed/` all read these formats.
"""

from __future__ import annotations

import re
from typing import Any

from .patterns import LazyPattern

_JSON_COMMENTS = LazyPattern(r'"(?:\\.|[^"\\\n])*"|//[^\n]*|/\*.*?\*/|/\*', re.S)


def toml_module() -> Any:
    """`tomllib` (Python 3.11+) or `tomli` (3.10), imported when first needed."""
    try:
        import tomllib  # noqa: PLC0415 (only for TOML files)
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]  # noqa: PLC0415
    return tomllib


def strip_json_comments(text: str) -> str:
    """Blank out // and /* */ comments outside strings, keeping every line and column in place.

    An unterminated /* is left as it is (the JSON parser then reports it where it starts).
    """
    return strip_json_comments_at(text)[0]


def strip_json_comments_at(text: str) -> tuple[str, int | None]:
    """`strip_json_comments`, and the offset of the first unterminated /* (None if none)."""
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
