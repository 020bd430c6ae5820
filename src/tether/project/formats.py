"""The text of a project or config file, parsed: TOML, YAML or JSON with comments.

A syntax error becomes one ProjectError line with the parser's own line and column.
"""

from __future__ import annotations

import json
import re
from bisect import bisect_right
from pathlib import Path
from typing import Any

from ..fileformats import strip_json_comments_at, toml_module
from .messages import Position, ProjectError, display_path

CONFIG_SUFFIXES = (".yaml", ".yml", ".json", ".toml")
FORMATS = {".toml": "toml", ".yaml": "yaml", ".yml": "yaml", ".json": "json"}


def yaml_loader() -> Any:
    import yaml

    # The pure-Python loader on purpose: its messages are the same with or without libyaml, and
    # project files are small.
    return yaml.SafeLoader


class Lines:
    """Offsets in a text -> (line, column), both 1-based."""

    def __init__(self, text: str) -> None:
        self.starts = [0, *(m.end() for m in re.finditer("\n", text))]

    def at(self, offset: int) -> Position:
        line = bisect_right(self.starts, offset)
        return line, offset - self.starts[line - 1] + 1


def read_text(path: Path) -> str:
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


def syntax_error(name: str, kind: str, message: str, line: int | None, col: int | None) -> str:
    where = f"{name}:{line}:{col}" if line else name
    message = " ".join(message.split()) or "invalid"
    return f"{where}: {kind} syntax error: {message}"


def parse_text(text: str, fmt: str, name: str, path: Path) -> Any:
    """The data of a file's text (`name`: the file as messages show it); a syntax error raises
    ProjectError with the parser's line and column."""
    if fmt == "toml":
        tomllib = toml_module()
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
            raise ProjectError(syntax_error(name, "TOML", msg, line, col), path)
    if fmt == "yaml":
        import yaml

        try:
            return yaml.load(text, Loader=yaml_loader())
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            msg = exc.problem or exc.context or "invalid"
            if exc.problem and exc.context:
                msg = f"{exc.problem} ({exc.context})"
            line, col = (mark.line + 1, mark.column + 1) if mark else (None, None)
            raise ProjectError(syntax_error(name, "YAML", msg, line, col), path)
        except (yaml.YAMLError, ValueError) as exc:
            raise ProjectError(syntax_error(name, "YAML", str(exc), None, None), path)
    stripped, unterminated = strip_json_comments_at(text)
    if unterminated is not None:
        line, col = Lines(text).at(unterminated)
        raise ProjectError(syntax_error(name, "JSON", "unterminated /* comment", line, col), path)
    try:
        return json.loads(stripped)
    except json.JSONDecodeError as exc:
        raise ProjectError(syntax_error(name, "JSON", exc.msg, exc.lineno, exc.colno), path)
    except ValueError as exc:
        raise ProjectError(syntax_error(name, "JSON", str(exc), None, None), path)
