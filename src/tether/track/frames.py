"""Runs as data, for notebooks: `tether.runs()` is a table of runs (one row per run: who it
is, its config flattened to `config.x.y`, its summary metrics as `metrics.<key>`), and
`tether.metrics(runs)` their histories in long form (run, key, step, value, time).

Both results are lists of dicts, so they work with nothing installed; `.to_pandas()` and
`.to_polars()` build a DataFrame, importing pandas or polars only then (each an optional
package: a missing one is named in one line).
"""

from __future__ import annotations

import fnmatch
import os
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path
from typing import Any, overload

from ..errors import TetherError, did_you_mean
from ..store import Store, open_store
from ..store.records import IndexRow
from ..store.select import unknown_fields
from ..store.selection import select_runs
from ..store.state import BUSY
from ..store.values import flatten
from ..store.where import fields_of
from .metrics_file import RESERVED, is_number, iter_metrics, step_of
from .report import metric_summary

# The columns every row of `runs()` starts with, before config.* and metrics.*.
RUN_COLUMNS = ("id", "name", "status", "created", "started", "stopped", "label", "tags", "dir")
METRIC_COLUMNS = ("run", "key", "step", "value", "time")
STATS = ("last", "min", "max", "step")


class MissingExtra(TetherError):
    """pandas or polars is needed for this and is not installed."""


def _import(name: str) -> Any:
    try:
        return import_module(name)
    except ImportError:
        raise MissingExtra(
            f"to_{name}() needs {name}, which is not installed",
            f"pip install 'tether[{name}]' (or {name})",
        ) from None


@dataclass
class Table(Sequence[dict[str, Any]]):
    """Rows (dicts) with a column order; indexable and iterable like a list."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)

    @overload
    def __getitem__(self, i: int) -> dict[str, Any]: ...
    @overload
    def __getitem__(self, i: slice) -> list[dict[str, Any]]: ...
    def __getitem__(self, i: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        return self.rows[i]

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.rows)

    def __repr__(self) -> str:
        shown = ", ".join(self.columns[:8]) + (", ..." if len(self.columns) > 8 else "")
        return f"<{type(self).__name__}: {len(self.rows)} rows; {shown}>"

    def column(self, name: str) -> list[Any]:
        return [row.get(name) for row in self.rows]

    def to_pandas(self) -> Any:
        """A pandas DataFrame, the columns in this table's order (a missing value is None)."""
        pd = _import("pandas")
        return pd.DataFrame.from_records(
            [[row.get(c) for c in self.columns] for row in self.rows], columns=self.columns
        )

    def to_polars(self) -> Any:
        """A polars DataFrame, the columns in this table's order (a missing value is null)."""
        pl = _import("polars")
        data = {c: [row.get(c) for row in self.rows] for c in self.columns}
        return pl.DataFrame(data, strict=False)


class RunTable(Table):
    """`tether.runs()`: one row per run."""

    @property
    def ids(self) -> list[str]:
        return [row["id"] for row in self.rows]


class MetricTable(Table):
    """`tether.metrics()`: one row per logged value."""


def _store(root: str | os.PathLike[str] | Store | None) -> Store:
    return root if isinstance(root, Store) else open_store(root)


def _metric_columns(summary: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """`metrics.<key>` (the last value) and `metrics.<key>.<stat>` of a run's summary."""
    out: dict[str, Any] = {}
    for key, stats in summary.items():
        out[f"metrics.{key}"] = stats.get("last")
        for stat in STATS:
            if stat in stats:
                out[f"metrics.{key}.{stat}"] = stats[stat]
    return out


def _row(store: Store, index_row: IndexRow) -> dict[str, Any]:
    record = store.load(index_row.id)
    row: dict[str, Any] = {
        "id": record.id,
        "name": record.name,
        "status": record.status,
        "created": record.lock.created,
        "started": record.state.started,
        "stopped": record.state.stopped,
        "label": record.attrs.label,
        "tags": list(record.attrs.tags),
        "dir": str(record.dir),
    }
    row.update({f"config.{k}": v for k, v in flatten(record.lock.config).items()})
    # summary.json is complete once a run has ended; a live run's lags its metrics.jsonl.
    live = record.status in BUSY
    row.update(_metric_columns(metric_summary(record.dir) if live else record.metrics()))
    return row


def _default_columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The fixed columns, then config.* and metrics.* (last values) in first-seen order; the
    per-stat columns (metrics.<key>.min, ...) only when asked for."""
    seen: dict[str, None] = {}
    for row in rows:
        seen.update(dict.fromkeys(row))
    stats = {k for row in rows for k in row if _is_stat(k, row)}
    config = [k for k in seen if k.startswith("config.")]
    metrics = [k for k in seen if k.startswith("metrics.") and k not in stats]
    return [*RUN_COLUMNS, *config, *metrics]


def _is_stat(column: str, row: Mapping[str, Any]) -> bool:
    head, _, stat = column.rpartition(".")
    return stat in STATS and head.startswith("metrics.") and head in row


def _pick_columns(wanted: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Names or globs (`config.*`, `metrics.eval/*`) to columns; `id` always first."""
    known: dict[str, None] = dict.fromkeys(RUN_COLUMNS)
    for row in rows:
        known.update(dict.fromkeys(row))
    out: dict[str, None] = {"id": None}
    for item in wanted:
        if item in known:
            out[item] = None
            continue
        hits = [k for k in known if fnmatch.fnmatchcase(k, item)]
        if not hits and rows:
            hint = did_you_mean(item, list(known))
            raise TetherError(
                f"columns: no run has {item!r}",
                f"did you mean {hint!r}?" if hint else "see tether.runs().columns",
            )
        out.update(dict.fromkeys(hits))
    return list(out)


def runs(
    where: str | None = None,
    sort: str | None = None,
    columns: str | Sequence[str] | None = None,
    *,
    runs: str | Sequence[str] = (),
    root: str | os.PathLike[str] | Store | None = None,
    limit: int | None = None,
) -> RunTable:
    """The runs matching `where` (the `--where` language of docs/queries.md) in `sort` order
    (newest first by default), one row each: id, name, status, times, label, tags, folder,
    `config.<dotted key>` and `metrics.<key>` (the last value; `metrics.<key>.min` and the other
    stats when `columns` names them). `columns` (names or globs, a list or comma-separated)
    picks the columns; `runs` narrows to RUN specs as on the command line (`"1:4"`, ids);
    `root` is the runs root (default: as `tether runs` finds it)."""
    store = _store(root)
    specs = [runs] if isinstance(runs, str) else list(runs)
    if specs:
        picked = select_runs(store, specs, where=where, sort=sort)
    elif where is not None or sort:
        picked = store.query(where=where, sort=sort)
    else:
        picked = store.list()
    if where is not None and store.root.is_dir():
        _warn_unknown(store, where)
    if limit is not None:
        picked = picked[:limit]
    rows = [_row(store, r) for r in picked]
    if columns is None:
        names = _default_columns(rows)
    else:
        wanted = [c.strip() for c in columns.split(",")] if isinstance(columns, str) else columns
        names = _pick_columns([c for c in wanted if c], rows)
    return RunTable([{c: r.get(c) for c in names} for r in rows], names)


def _warn_unknown(store: Store, where: str) -> None:
    """A warning per config/metric key of `where` that no run has (with the nearest one some
    run has): a misspelt key otherwise matches nothing, silently."""
    for fld, hint in unknown_fields(store.index, fields_of(where)):
        tail = f"; did you mean {hint!r}?" if hint else ""
        warnings.warn(f"tether.runs(): no run has {fld.name!r}{tail}", stacklevel=3)


def _run_dirs(store: Store, given: Any) -> list[tuple[str, Path]]:
    """(id, folder) of each run `given`: a RunTable, a Run, rows with `id` and `dir`, run
    specs ("1:4", ids, names), or folders."""
    if isinstance(given, (str, os.PathLike)) or hasattr(given, "dir"):
        given = [given]
    out: list[tuple[str, Path]] = []
    for item in given:
        if isinstance(item, Mapping) and item.get("id"):
            folder = item.get("dir")
            out.append(
                (str(item["id"]), Path(folder) if folder else store.load(str(item["id"])).dir)
            )
        elif hasattr(item, "dir") and hasattr(item, "id"):
            out.append((str(item.id), Path(item.dir)))
        elif isinstance(item, os.PathLike) or (isinstance(item, str) and os.sep in item):
            folder = Path(item)
            out.append((folder.name, folder))
        elif isinstance(item, str):
            out += [(row.id, Path(row.dir)) for row in select_runs(store, [item])]
        else:
            raise TetherError(
                f"metrics(): cannot tell which run {item!r} is",
                "pass tether.runs(...), Run objects, run ids or specs like '1:4'",
            )
    return out


def _wanted(key: str, keys: Sequence[str] | None) -> bool:
    if keys is None:
        return True
    return any(
        key == k or fnmatch.fnmatchcase(key, k) or key.startswith(k.rstrip("/") + "/") for k in keys
    )


def metrics(
    runs: Any,
    keys: str | Sequence[str] | None = None,
    *,
    root: str | os.PathLike[str] | Store | None = None,
) -> MetricTable:
    """The logged values of `runs` (a RunTable, Runs, ids or specs) in long form: one row per
    value with `run` (the id), `key`, `step` (None when logged without one), `value` and `time`
    (the row's `t`, seconds since the epoch). `keys` (keys, groups like `eval` or globs) picks
    the metrics."""
    store = _store(root)
    picked = [keys] if isinstance(keys, str) else list(keys) if keys is not None else None
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for run_id, folder in _run_dirs(store, runs):
        for row in _values(run_id, folder):
            seen.add(row["key"])
            if _wanted(row["key"], picked):
                rows.append(row)
    for k in picked or []:
        if not any(_wanted(s, [k]) for s in seen):
            hint = did_you_mean(k, sorted(seen))
            raise TetherError(
                f"metrics(): no run logged {k!r}",
                f"did you mean {hint!r}?" if hint else "see tether.runs() for the metric keys",
            )
    return MetricTable(rows, list(METRIC_COLUMNS))


def _values(run_id: str, folder: Path) -> Iterable[dict[str, Any]]:
    for row in iter_metrics(folder):
        step = step_of(row)
        t = row.get("t")
        for key, value in row.items():
            if key in RESERVED or not is_number(value):
                continue
            yield {"run": run_id, "key": key, "step": step, "value": float(value), "time": t}
