"""metrics.jsonl read back: its rows (tolerant of a torn line), and the rows as series and
summaries for charts and reports.

Each line is one JSON object `{"step": .., "t": .., "<key>": <number>, ...}` (`step` and `t` may
be missing). The writer is History's (tether.track.writer, through the jsonl sink); a line that
does not parse is skipped: the last one is torn when the writer was killed mid-line or is writing
it right now.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeGuard

from ..store.layout import METRICS
from .sinks.base import Row

log = logging.getLogger("tether.history")

RESERVED = ("step", "t")  # columns of a row that are not metric keys


# -- rows -------------------------------------------------------------------------------------
def metrics_path(source: str | os.PathLike[str]) -> Path:
    """`source` is a metrics.jsonl file or a folder holding one (a run folder)."""
    path = Path(source)
    return path / METRICS if path.is_dir() else path


def iter_metrics(source: str | os.PathLike[str], start: int = 0) -> Iterator[Row]:
    """The rows of a metrics.jsonl (or of the one in a run folder), in order, from row `start`.

    Tolerant: a missing file has no rows; a line that is not a JSON object is skipped (the last
    one may be torn by a writer killed mid-line, or being written right now), and counts as no
    row, so row numbers stay those the writer and its sinks used.
    """
    path = metrics_path(source)
    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed below; bytes, so a torn character is fine
    except (FileNotFoundError, NotADirectoryError):
        return
    with fh:
        number = 0
        for lineno, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw)
            except ValueError:
                row = None
            if not isinstance(row, dict):
                if raw.endswith(b"\n"):
                    log.warning("%s:%d: not a JSON object, skipped", path, lineno)
                continue
            if number >= start:
                yield row
            number += 1


def read_metrics(source: str | os.PathLike[str]) -> list[Row]:
    """All rows of a metrics.jsonl or of a run folder's (see `iter_metrics`)."""
    return list(iter_metrics(source))


def read_rows(source: str | os.PathLike[str], start: int = 0) -> list[Row]:
    """The rows `iter_metrics(source, start)` yields, read in one go: a file whose lines are
    all JSON objects is parsed by one `json.loads` (about 3x faster on 10,000 rows, for the
    charts of `tether view`); any other file (a torn line, a line that is not one object) takes
    the tolerant path of `iter_metrics`."""
    path = metrics_path(source)
    try:
        raw = path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return []
    lines = [line for line in raw.split(b"\n") if line.strip()]
    try:
        rows = json.loads(b"[" + b",".join(lines) + b"]")
    except ValueError:
        rows = None
    if (
        not isinstance(rows, list)
        or len(rows) != len(lines)  # `{..}, {..}` on one line is no row for iter_metrics
        or not all(isinstance(r, dict) for r in rows)
    ):
        return list(iter_metrics(path, start))
    return rows[start:]


def count_rows(source: str | os.PathLike[str]) -> int:
    return sum(1 for _ in iter_metrics(source))


TAIL_BLOCK = 1 << 16  # bytes read at a time from the end of the file
TAIL_LIMIT = 1 << 22  # bytes read at most looking for the last step


@dataclass
class LastStep:
    """Where a metrics.jsonl stands: its last step and the keys recorded at that step."""

    step: int
    keys: set[str] = field(default_factory=set)


def last_step(source: str | os.PathLike[str]) -> LastStep | None:
    """The last step of a metrics.jsonl (or of a run folder's) and the keys recorded at it; None
    when it has no row with a step. Read from the end of the file, a block at a time, so the
    cost does not grow with the file: rows without a step and a torn last line are skipped, and
    a file whose last `TAIL_LIMIT` bytes hold no step counts as having none."""
    path = metrics_path(source)
    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed below
    except (FileNotFoundError, NotADirectoryError):
        return None
    found: LastStep | None = None
    with fh:
        end = fh.seek(0, os.SEEK_END)
        pos, carry, read = end, b"", 0
        while pos > 0 and read < TAIL_LIMIT:
            size = min(TAIL_BLOCK, pos)
            pos -= size
            fh.seek(pos)
            block = fh.read(size) + carry
            read += size
            lines = block.split(b"\n")
            carry = lines.pop(0) if pos > 0 else b""  # may be cut: joined with the next block
            for raw in reversed(lines):
                row = _row_or_none(raw)
                if row is None:
                    continue
                step = step_of(row)
                if step is None:
                    continue
                if found is None:
                    found = LastStep(step)
                elif step != found.step:
                    return found
                found.keys.update(k for k in row if k not in RESERVED)
    return found


def not_recorded(rows: list[Row], resumed: LastStep) -> list[Row]:
    """`rows` less what a file at `resumed` holds already: rows at earlier steps, and at its
    last step the keys recorded there (a row without a step is no step: it stays). The keys
    written at the last step join `resumed.keys`."""
    last, seen = resumed.step, resumed.keys
    kept: list[Row] = []
    for row in rows:
        step = row.get("step")
        if step is None or step > last:
            kept.append(row)
        elif step == last:
            rest = {k: v for k, v in row.items() if k in RESERVED or k not in seen}
            if any(k not in RESERVED for k in rest):
                kept.append(rest)
                seen.update(k for k in rest if k not in RESERVED)
    return kept


def _row_or_none(raw: bytes) -> dict[str, Any] | None:
    if not raw.strip():
        return None
    try:
        row = json.loads(raw)
    except ValueError:
        return None
    return row if isinstance(row, dict) else None


# -- series and summaries ---------------------------------------------------------------------
def is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def step_of(row: dict[str, Any]) -> int | None:
    """The row's step, when it has a usable one."""
    step = row.get("step")
    return int(step) if is_number(step) and math.isfinite(step) else None


@dataclass
class Series:
    """The values of one metric key, in logging order, with their x positions."""

    key: str
    xs: list[float] = field(default_factory=list)
    ys: list[float] = field(default_factory=list)
    x_is_step: bool = True  # False: x is the position of the value among the key's rows

    def finite(self) -> tuple[list[float], list[float]]:
        """(xs, ys) without NaN and infinities, which cannot be drawn."""
        pairs = [(x, y) for x, y in zip(self.xs, self.ys, strict=True) if math.isfinite(y)]
        return [p[0] for p in pairs], [p[1] for p in pairs]


def to_series(rows: Iterable[dict[str, Any]]) -> dict[str, Series]:
    """One Series per metric key, in order of first appearance.

    x is the row's `step` when every row of that key has one, else the value's position among
    that key's values (0, 1, 2, ...). Non-numeric values are left out; NaN and inf are kept (the
    summary reports them; `Series.finite` drops them for drawing).
    """
    values: dict[str, list[tuple[int | None, float]]] = {}
    for row in rows:
        step = step_of(row)
        for key, value in row.items():
            if key in RESERVED or not is_number(value):
                continue
            values.setdefault(key, []).append((step, float(value)))
    out: dict[str, Series] = {}
    for key, pairs in values.items():
        steps = [float(s) for s, _ in pairs if s is not None]
        with_steps = len(steps) == len(pairs)
        xs = steps if with_steps else [float(i) for i in range(len(pairs))]
        out[key] = Series(key, xs, [v for _, v in pairs], x_is_step=with_steps)
    return out


def summarize(rows: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """`{key: {"last", "min", "max", "step"}}` computed from rows, as History keeps them in
    summary.json (min and max skip NaN; `step` only when the last value had one)."""
    out: dict[str, dict[str, Any]] = {}
    for row in rows:
        step = step_of(row)
        for key, value in row.items():
            if key in RESERVED or not is_number(value):
                continue
            number = float(value)
            stats = out.setdefault(key, {"last": number, "min": None, "max": None})
            stats["last"] = number
            if number == number:  # not NaN
                stats["min"] = number if stats["min"] is None else min(stats["min"], number)
                stats["max"] = number if stats["max"] is None else max(stats["max"], number)
            if step is not None:
                stats["step"] = step
            else:
                stats.pop("step", None)
    return out
