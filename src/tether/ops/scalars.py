"""Output scalars: numbers a run prints (`loss: 0.25`, `acc=0.97`) become its metrics.

The default patterns find `key: number` and `key=number`, several per line, for keys that look
like identifiers or paths (`loss`, `val/acc`, `train.loss`, `top-5`). Custom patterns are
regular expressions with either the named groups `key` and `value`, or named groups whose names
are the keys (`loss=(?P<loss>\\S+)`); `\\key` and `\\value` stand for the default key and number
patterns. A `step` scalar sets the step of the scalars after it (on its line and later lines).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import TetherError

NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
KEY = r"[A-Za-z_](?:[\w./-]*\w)?"
# Key at a word boundary, then ':' or '=', then a number that does not run on into a word, a
# time (12:30), a fraction (1/10) or a version (1.2.3).
DEFAULT_PATTERN = re.compile(
    rf"(?<![\w./-])(?P<key>{KEY})\s*(?::|=)\s*(?P<value>{NUMBER})(?![\w:/]|\.\w)"
)
STEP = "step"


@dataclass(frozen=True)
class Pattern:
    regex: re.Pattern[str]
    pair: bool  # groups `key` and `value`; otherwise each named group is a key


def compile_patterns(spec: bool | Sequence[str], where: str = "output-scalars") -> list[Pattern]:
    """The patterns of an op's `output-scalars` (True: the defaults, False/[]: none)."""
    if spec is True:
        return [Pattern(DEFAULT_PATTERN, True)]
    if not spec:
        return []
    if isinstance(spec, str):
        spec = [spec]
    out = []
    for i, text in enumerate(spec):
        if not isinstance(text, str):
            raise TetherError(f"{where}[{i}]: expected a regular expression, got {text!r}")
        source = text.replace(r"\key", f"(?P<key>{KEY})").replace(r"\value", f"(?P<value>{NUMBER})")
        try:
            regex = re.compile(source)
        except re.error as exc:
            raise TetherError(f"{where}[{i}]: bad regular expression {text!r} ({exc})")
        names = set(regex.groupindex)
        if {"key", "value"} <= names:
            out.append(Pattern(regex, True))
        elif names and not names & {"key", "value"}:
            out.append(Pattern(regex, False))
        else:
            raise TetherError(
                f"{where}[{i}]: {text!r} needs the named groups 'key' and 'value', or named "
                "groups named after the scalars, like (?P<loss>...)"
            )
    return out


def _to_number(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if value == value and abs(value) != float("inf") else None


def scan_line(line: str, patterns: Sequence[Pattern]) -> list[tuple[str, float]]:
    """(key, value) pairs of one line, in the order they appear."""
    found: list[tuple[int, str, float]] = []
    for pattern in patterns:
        for m in pattern.regex.finditer(line):
            if pattern.pair:
                value = _to_number(m.group("value"))
                key = m.group("key")
                if key and value is not None:
                    found.append((m.start(), key, value))
                continue
            for key, start in ((k, m.start(k)) for k in pattern.regex.groupindex):
                value = _to_number(m.group(key))
                if value is not None:
                    found.append((start, key, value))
    found.sort(key=lambda item: item[0])
    return [(key, value) for _, key, value in found]


class Scanner:
    """Feeds output lines to `log(values, step)`, one call per group of scalars on a line."""

    def __init__(
        self, patterns: Sequence[Pattern], log: Callable[[dict[str, Any], int | None], None]
    ) -> None:
        self.patterns = list(patterns)
        self.log = log
        self.step: int | None = None
        self._lock = threading.Lock()

    def feed(self, line: str) -> None:
        if not self.patterns:
            return
        line = line.rsplit("\r", 1)[-1]  # a progress bar redraws with \r: the last one counts
        pairs = scan_line(line, self.patterns)
        if not pairs:
            return
        with self._lock:
            group: dict[str, Any] = {}
            for key, value in pairs:
                if key == STEP:
                    if group:
                        self.log(group, self.step)
                        group = {}
                    self.step = int(value)
                    continue
                group[key] = value
            if group:
                self.log(group, self.step)
