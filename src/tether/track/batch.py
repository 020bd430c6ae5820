"""One flush of History rows, as columns: the values turned into numbers, the JSON lines, and
the rows for the statistics and the sinks.

`History.update` appends one dict per call to the buffer: a copy of the caller's mapping with
its values as they came (floats, ints, bools, NumPy scalars, tensors), then `t` and `step` (the
file's `step` and `t` come first all the same). One object per update, so the garbage collector
has half the objects to go through that a `(step, t, values)` tuple would give it. Everything
else happens here, in the flush thread, a column at a time:

- rows are grouped by their keys (one group in a training loop that logs the same keys every
  step; a group's lines have the keys in the order of its first row), each group a column per
  key (`map(itemgetter(key), rows)`);
- a column of one type is converted in one call (`map(int, ...)` for bools and NumPy integers,
  `float32.shortest` for float32 values, nothing for floats and ints); all the tensor columns
  of one device become numbers with one `torch.cat(...).tolist()`, so one device sync per flush;
- the lines are written with one `%`-template per group (`{"step": %r, "t": %.3f, "k": %r}`:
  floats by `repr`, as the json module writes them, `t` rounded to milliseconds), mapped over
  `zip(*columns)` with no Python code per row;
- a batch that holds NaN or an infinity is written by the json module instead (`NaN`,
  `Infinity`), row by row, as it always was.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from operator import itemgetter
from typing import Any

from .convert import DROP, numbers
from .metrics_file import RESERVED
from .sinks.base import Row
from .sinks.jsonl import encode_json

log = logging.getLogger("tether.history")


class Group:
    """Rows of a batch that have the same keys, as columns: `names` (`step` if they have one,
    `t`, then the metric keys in the order the group's first row logged them) and one column
    per name."""

    __slots__ = ("cols", "index", "keys", "names")

    def __init__(self, order: Sequence[str], rows: Sequence[Row], index: list[int]) -> None:
        self.keys = tuple(k for k in order if k not in RESERVED)
        self.names = (("step", "t") if "step" in order else ("t",)) + self.keys
        # A KeyError here: a row lacks one of the first row's keys (group() sorts them out).
        self.cols: list[Any] = [list(map(itemgetter(name), rows)) for name in self.names]
        self.index = index  # the rows' places in the batch

    def values(self) -> list[Any]:
        """The metric columns (after `step` and `t`)."""
        return self.cols[len(self.names) - len(self.keys) :]

    def rows(self) -> list[Row]:
        names = self.names
        return [dict(zip(names, values, strict=True)) for values in zip(*self.cols, strict=True)]


def group(batch: Sequence[Row]) -> list[Group]:
    """The batch (not empty) as groups of rows with the same keys, each as columns."""
    first = batch[0]
    size = len(first)
    if all(map(size.__eq__, map(len, batch))):
        try:  # a training loop's batch: every row has the first one's keys, one group
            return [Group(tuple(first), batch, [])]
        except KeyError:
            pass
    places: dict[frozenset[str], list[int]] = {}
    for i, row in enumerate(batch):
        found = places.get(frozenset(row))
        if found is None:
            found = places[frozenset(row)] = []
        found.append(i)
    return [
        Group(tuple(batch[index[0]]), [batch[i] for i in index], index) for index in places.values()
    ]


def rows(groups: list[Group], n: int) -> list[Row]:
    """Every row of the batch, in order, as a dict in the file's order (`step`, `t`, the
    keys)."""
    if len(groups) == 1:
        return groups[0].rows()
    out: list[Row] = [{}] * n
    for g in groups:
        for i, row in zip(g.index, g.rows(), strict=True):
            out[i] = row
    return out


def numbered(batch: Sequence[Row]) -> list[Group]:
    """The batch (not empty) as groups, every value a number."""
    groups = group(batch)
    if not numbers(groups):  # a value was left out: the rows without it
        kept = [{k: v for k, v in row.items() if v is not DROP} for row in rows(groups, len(batch))]
        groups = group(kept)
        numbers(groups)
    return groups


def convert(batch: Sequence[Row]) -> list[Row]:
    """The batch as rows of numbers, in the file's order."""
    return rows(numbered(batch), len(batch)) if batch else []


# -- the JSON lines ---------------------------------------------------------------------------
class Encoder:
    """The lines of a batch, one cached `%`-template per key sequence."""

    def __init__(self) -> None:
        self.templates: dict[tuple[str, ...], str] = {}

    def template(self, names: tuple[str, ...]) -> str:
        """`{"step": %r, "t": %.3f, "k": %r, ...}` for the names of a group."""
        found = self.templates.get(names)
        if found is None:
            # `t` (seconds, rounded to ms) as %.3f: the same number, cheaper than its repr.
            fields = (
                encode_json(k).replace("%", "%%") + (": %.3f" if k == "t" else ": %r")
                for k in names
            )
            found = self.templates[names] = "{" + ", ".join(fields) + "}"
        return found

    def encode(self, groups: list[Group], n: int) -> str | None:
        """The batch as JSON lines, or None when a value is NaN or infinite (the json module
        writes those: `dump`)."""
        for g in groups:
            for col in g.values():
                try:
                    if not math.isfinite(sum(col)):
                        return None
                except (OverflowError, TypeError):
                    return None
        if len(groups) == 1:
            g = groups[0]
            return "\n".join(map(self.template(g.names).__mod__, zip(*g.cols, strict=True))) + "\n"
        lines: list[str] = [""] * n
        for g in groups:
            lines_of = map(self.template(g.names).__mod__, zip(*g.cols, strict=True))
            for i, line in zip(g.index, lines_of, strict=True):
                lines[i] = line
        return "\n".join(lines) + "\n"


def columns(groups: list[Group]) -> dict[tuple[str, ...], list[Any]]:
    """The metric columns by key sequence, as summary_stats.fold_stats takes them."""
    out: dict[tuple[str, ...], list[Any]] = {}
    for g in groups:
        if g.keys in out:  # the same keys with and without a step: one entry, both columns
            out[g.keys] = [[*a, *b] for a, b in zip(out[g.keys], g.values(), strict=True)]
        else:
            out[g.keys] = g.values()
    return out


def last_rows(groups: list[Group]) -> list[Row]:
    """The last row of each group, in the batch's order: what the statistics need of the rows
    (each key's last value and step)."""
    ordered = sorted(groups, key=lambda g: g.index[-1]) if len(groups) > 1 else groups
    return [dict(zip(g.names, [col[-1] for col in g.cols], strict=True)) for g in ordered]
