"""One file of a project as validation sees it, and the checker that reports on it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .formats import parse_text
from .messages import KeyPath, Position, display_path, dym, found, keypath, one_of
from .positions import POSITION_SCANNERS


class Doc:
    """One file of a project (the project file or a config file it names): its text, its data,
    and where a key path sits in it."""

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

    def parse(self) -> Any:
        """The file's data; ProjectError for a syntax error."""
        return parse_text(self.text, self.fmt, self.name, self.path)

    def where(self, segs: KeyPath) -> str:
        pos = self.position(segs)
        return f"{self.name}:{pos[0]}:{pos[1]}" if pos else self.name

    def message(self, segs: KeyPath, text: str) -> str:
        return (
            f"{self.where(segs)}: {keypath(segs)}: {text}"
            if segs
            else f"{self.where(segs)}: {text}"
        )


class Checker:
    """Collects the problems and warnings of one file, and checks the simplest kinds of value."""

    def __init__(self, doc: Doc) -> None:
        self.doc = doc
        self.root = doc.path.parent
        self.problems: list[str] = []
        self.warnings: list[str] = []

    # messages
    def error(self, segs: KeyPath, text: str, doc: Doc | None = None) -> None:
        self.problems.append((doc or self.doc).message(segs, text))

    def warn(self, segs: KeyPath, text: str) -> None:
        self.warnings.append(self.doc.message(segs, text))

    def expected(
        self, segs: KeyPath, what: str, value: Any, doc: Doc | None = None, hint: str = ""
    ) -> None:
        self.error(segs, f"expected {what}, found {found(value)}{hint}", doc)

    def unknown_key(self, segs: KeyPath, options: tuple[str, ...], kind: str = "key") -> None:
        word = str(segs[-1])
        self.error(segs, f"unknown {kind}; expected one of {one_of(options)}{dym(word, options)}")

    # values
    def string(self, value: Any, segs: KeyPath) -> str | None:
        if isinstance(value, str):
            return value
        self.expected(segs, "a string", value)
        return None

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
