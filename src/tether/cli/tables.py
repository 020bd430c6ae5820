"""Tables that never lie: the layout of `tether runs` and `tether compare`.

Numbers, ids and statuses are printed whole or not at all: a column that does not fit the
terminal is dropped, and the caller names it in a note. Only free text (a name, a label, a text
value) may be shortened, and then it ends in `…`. Piped into a file or another program, a table
is as wide as it needs to be (no width at all); `--tsv` gives tab-separated values instead.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

GAP = 2  # spaces between two columns
MIN_TEXT = 8  # a shortened text column keeps at least this many cells (or its header)
ELLIPSIS = "…"


@dataclass
class Column:
    """One column: its header and one display text per row."""

    header: str
    cells: list[str]
    styles: list[str] = field(default_factory=list)  # rich styles per row, or none
    numeric: bool = False  # right-justified
    shrink: bool = False  # free text: may be shortened, with `…`
    keep: bool = False  # never dropped (`#`, `id`)
    raw: list[Any] = field(default_factory=list)  # full values for --tsv (else `cells`)
    width: int = 0  # set by `fit`

    def natural(self) -> int:
        from rich.cells import cell_len

        return max([cell_len(self.header), *(cell_len(c) for c in self.cells)])

    def floor(self) -> int:
        """The narrowest it may get: whole unless free text; never narrower than its header."""
        from rich.cells import cell_len

        return max(cell_len(self.header), MIN_TEXT) if self.shrink else self.natural()


def fit(columns: Sequence[Column], width: int | None) -> tuple[list[Column], list[Column]]:
    """(the columns shown, each with its width; those dropped), for a line of `width` cells.

    No width: every column whole. Otherwise free-text columns give up cells first (the widest
    first, never below `floor`), then whole columns are dropped from the right, `keep` ones
    never (a line may then be wider than `width`: the ids are worth more than the fit).
    """
    shown = list(columns)
    for col in shown:
        col.width = col.natural()
    if width is None:
        return shown, []

    def total() -> int:
        return sum(c.width for c in shown) + GAP * max(0, len(shown) - 1)

    while total() > width:
        widest = max(
            (c for c in shown if c.shrink and c.width > c.floor()),
            key=lambda c: c.width,
            default=None,
        )
        if widest is None:
            break
        widest.width = max(widest.floor(), widest.width - (total() - width))
    dropped: list[Column] = []
    while total() > width:
        victim = next((c for c in reversed(shown) if not c.keep), None)
        if victim is None:
            break
        shown.remove(victim)
        dropped.insert(0, victim)
        # Room given back: the free text may grow again towards its whole width.
        for col in shown:
            if col.shrink:
                col.width = min(col.natural(), col.width + max(0, width - total()))
    return shown, dropped


def _clip(text: str, width: int) -> str:
    from rich.cells import cell_len, set_cell_size

    if cell_len(text) <= width:
        return text
    return set_cell_size(text, max(0, width - 1)) + ELLIPSIS


def lines(columns: Sequence[Column], header_style: str = "bold") -> list[Any]:
    """The table as rich Text lines (header first), columns at the widths `fit` gave them."""
    from rich.cells import cell_len
    from rich.text import Text

    rows = len(columns[0].cells) if columns else 0
    out = []
    for r in range(-1, rows):
        line = Text()
        for i, col in enumerate(columns):
            last = i == len(columns) - 1
            text = col.header if r < 0 else _clip(col.cells[r], col.width)
            pad = " " * (col.width - cell_len(text))
            style = header_style if r < 0 else (col.styles[r] if col.styles else "")
            if i:
                line.append(" " * GAP)
            if col.numeric:
                line.append(pad)
                line.append(text, style=style)
            else:
                line.append(text, style=style)
                if not last:
                    line.append(pad)
        line.rstrip()
        out.append(line)
    return out


def tsv(columns: Sequence[Column]) -> str:
    """Tab-separated: the header, then one line per row of full values (tabs and newlines in
    a value become spaces, so each row stays one line)."""

    def clean(value: Any) -> str:
        text = "" if value is None else str(value)
        return text.replace("\t", " ").replace("\r", " ").replace("\n", " ")

    rows = len(columns[0].cells) if columns else 0
    out = ["\t".join(clean(c.header) for c in columns)]
    for r in range(rows):
        out.append("\t".join(clean(c.raw[r] if c.raw else c.cells[r]) for c in columns))
    return "\n".join(out) + "\n"


def console_width(console: Any, wide: bool) -> int | None:
    """The width to fit: the terminal's, or none with --wide or when not printing to one."""
    if wide or not console.is_terminal:
        return None
    return int(console.width)


def dropped_note(dropped: Sequence[Column], extra: str = "") -> str:
    """`not shown (too wide): train/loss, host; --wide or --columns to see them`."""
    names = [c.header for c in dropped]
    shown = ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")
    return f"not shown (too wide): {shown}; --wide or --columns to see them{extra}"


def print_table(console: Any, columns: Sequence[Column], *, wide: bool = False) -> list[Column]:
    """Fit `columns` to the console and print them; returns the columns dropped."""
    shown, dropped = fit(columns, console_width(console, wide))
    for line in lines(shown):
        console.print(line, soft_wrap=True)
    return dropped


def plain_text(columns: Sequence[Column], notes: Sequence[str]) -> str | None:
    """The table and its notes exactly as `print_table` and rich print them into a pipe (no
    styles, no width to fit), without importing rich (a third of a listing's start-up); None
    when rich is needed: stdout is a terminal, or a variable or IPython may make rich treat it
    as one, or some text is not printable ASCII (wide characters, tabs, control codes, which
    rich measures, expands or strips)."""
    if not _plain_stdout():
        return None
    texts = [c.header for c in columns] + [t for c in columns for t in c.cells] + list(notes)
    if not all(t.isascii() and t.isprintable() for t in texts):
        return None
    if any(note.count(":") > 1 for note in notes):  # rich may read `:name:` as an emoji
        return None
    for col in columns:
        col.width = max([len(col.header), *map(len, col.cells)])  # ASCII: a cell a character
    rows = len(columns[0].cells) if columns else 0
    out = []
    for r in range(-1, rows):
        parts = []
        for col in columns:
            text = col.header if r < 0 else col.cells[r]
            pad = " " * (col.width - len(text))
            parts.append(pad + text if col.numeric else text + pad)
        out.append((" " * GAP).join(parts).rstrip())
    return "\n".join([*out, *notes]) + "\n"


def _plain_stdout() -> bool:
    """stdout is no terminal as rich sees one (its Console.is_terminal, conservatively)."""
    if os.name == "nt" or "IPython" in sys.modules or "idlelib" in sys.modules:
        return False
    if "TTY_COMPATIBLE" in os.environ or "FORCE_COLOR" in os.environ:
        return False
    isatty = getattr(sys.stdout, "isatty", None)
    if isatty is None:
        return False
    try:
        return not isatty()
    except ValueError:
        return False
