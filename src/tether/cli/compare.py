"""`tether compare RUNS...`: runs side by side, one row each: the config keys that differ among
them (or the columns asked for) and the last value of each metric."""

from __future__ import annotations

import json
from typing import Any

import click

from .args import complete_runs
from .main import store_from

FIELDS = ("id", "short_id", "name", "op", "status", "label", "tags", "created", "started",
          "stopped", "host", "dir")  # fmt: skip
STATS = ("last", "min", "max", "step")
MISSING: Any = None


def _config(record: Any) -> dict[str, Any]:
    from ..store.values import flatten

    return flatten(record.lock.config)


def _field(record: Any, name: str, short: str) -> Any:
    state = record.state
    return {
        "id": record.id,
        "short_id": short,
        "name": record.name,
        "op": record.name,
        "status": record.status,
        "label": record.attrs.label,
        "tags": list(record.attrs.tags),
        "created": record.lock.created,
        "started": state.started,
        "stopped": state.stopped,
        "host": state.host,
        "dir": str(record.dir),
    }[name]


def _metric(record: Any, key: str) -> Any:
    """`metrics.<key>` is the last value; `metrics.<key>.min` (max, step, last) a statistic."""
    metrics = record.metrics()
    if key in metrics and isinstance(metrics[key], dict):
        return metrics[key].get("last")
    head, _, stat = key.rpartition(".")
    if stat in STATS and isinstance(metrics.get(head), dict):
        return metrics[head].get(stat)
    return MISSING


def _has_metric(record: Any, key: str) -> bool:
    metrics = record.metrics()
    head, _, stat = key.rpartition(".")
    return key in metrics or (stat in STATS and head in metrics)


def default_columns(records: list[Any]) -> list[str]:
    """Config keys whose values differ among the runs (save_dir aside), then every metric."""
    configs = [_config(r) for r in records]
    keys: dict[str, None] = {}
    for cfg in configs:
        keys.update(dict.fromkeys(cfg))
    differing = []
    for key in keys:
        if key == "save_dir":
            continue  # always the run's own folder
        values = [json.dumps(c.get(key, "\0missing"), sort_keys=True, default=str) for c in configs]
        if len(set(values)) > 1:
            differing.append(f"config.{key}")
    metric_keys: dict[str, None] = {}
    for r in records:
        metric_keys.update(dict.fromkeys(sorted(r.metrics())))
    return differing + [f"metrics.{k}" for k in sorted(metric_keys)]


def check_columns(columns: list[str], records: list[Any]) -> None:
    from ..errors import TetherError, did_you_mean

    known: set[str] = set(FIELDS)
    for r in records:
        known.update(f"config.{k}" for k in _config(r))
        known.update(f"metrics.{k}" for k in r.metrics())
    for col in columns:
        if col.startswith("config."):
            found = any(col[len("config.") :] in _config(r) for r in records)
        elif col.startswith("metrics."):
            found = any(_has_metric(r, col[len("metrics.") :]) for r in records)
        else:
            found = col in FIELDS
        if not found:
            hint = did_you_mean(col, known)
            raise TetherError(
                f"no run has column {col!r}",
                f"did you mean {hint!r}?"
                if hint
                else "columns are config.<key>, metrics.<key>[.min|.max|.step] and "
                + ", ".join(FIELDS),
            )


def value(record: Any, column: str, short: str) -> Any:
    if column.startswith("config."):
        return _config(record).get(column[len("config.") :], MISSING)
    if column.startswith("metrics."):
        return _metric(record, column[len("metrics.") :])
    return _field(record, column, short)


def compare_rows(
    records: list[Any], columns: list[str] | None, shorts: dict[str, str]
) -> tuple[list[str], list[dict[str, Any]]]:
    """(columns, one dict per run): id, name, status, then `columns` or the default ones."""
    if columns:
        check_columns(columns, records)
    chosen = columns or default_columns(records)
    header = ["id", "name", "status", *[c for c in chosen if c not in ("id", "name", "status")]]
    rows = []
    for r in records:
        short = shorts.get(r.id, r.id[:13])
        rows.append({c: value(r, c, short) for c in header})
    return header, rows


def _cell(v: Any) -> str:
    """CSV: numbers in full, lists and mappings as JSON."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, dict)):
        return json.dumps(v, sort_keys=True, default=str)
    return str(v)


def _text(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        from .render import format_metric

        return format_metric(v)
    if isinstance(v, (list, dict)):
        return json.dumps(v, sort_keys=True, default=str)
    return str(v)


@click.command()
@click.argument("runs", metavar="RUNS...", nargs=-1, required=True, shell_complete=complete_runs)
@click.option(
    "-c",
    "--columns",
    "columns",
    multiple=True,
    metavar="COLS",
    help="Columns to show, comma-separated: config.<key>, metrics.<key>[.min|.max|.step], "
    "label, tags, started, ... (default: the config keys that differ, and every metric).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON: one object per run.")
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV.")
@click.option("--tsv", "as_tsv", is_flag=True, help="Print the table tab-separated, in full.")
@click.option(
    "--wide",
    is_flag=True,
    help="Show every column, however wide (otherwise those that do not fit are left out).",
)
@click.pass_context
def compare(
    ctx: click.Context,
    runs: tuple[str, ...],
    columns: tuple[str, ...],
    as_json: bool,
    as_csv: bool,
    as_tsv: bool,
    wide: bool,
) -> None:
    """Compare RUNS side by side: one row per run with its id, name and status, the config keys
    whose values differ among the runs, and the last value of each metric.

    RUNS: indexes, slices (1:5), id or name prefixes, several allowed (commas too).
    """
    from ..ids import short_ids
    from ..store.lifecycle import resolve_many

    given = [name for name, on in (("--json", as_json), ("--csv", as_csv), ("--tsv", as_tsv)) if on]
    if len(given) > 1:
        raise click.UsageError(f"{', '.join(given[:-1])} and {given[-1]} do not go together")
    cols = [c.strip() for spec in columns for c in spec.split(",") if c.strip()]
    store = store_from(ctx)
    records = [store.load(r.id) for r in resolve_many(store, runs)]
    shorts = short_ids(store.index.ids())
    header, rows = compare_rows(records, cols or None, shorts)
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    if as_csv:
        import csv
        import io

        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(header)
        for row in rows:
            writer.writerow([_cell(v) for v in row.values()])
        click.echo(buf.getvalue(), nl=False)
        return
    table = _columns(header, rows, shorts)
    if as_tsv:
        from .tables import tsv

        click.echo(tsv(table), nl=False)
        return
    _print(table, header, rows, cols, wide=wide)


def _columns(header: list[str], rows: list[dict[str, Any]], shorts: dict[str, str]) -> list[Any]:
    """One table column per compared field: numbers whole and right-justified, ids whole,
    other text shortened with `…` only when the terminal is too narrow."""
    from .render import STATUS_STYLE
    from .tables import Column

    cols = []
    for col in header:
        values = [r[col] for r in rows]
        present = [v for v in values if v is not None]
        numeric = bool(present) and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in present
        )
        if col == "id":
            cells = [shorts.get(v, v[:13]) for v in values]
        elif col == "tags":
            cells = [" ".join(v or []) for v in values]
        else:
            cells = [_text(v) for v in values]
        cols.append(
            Column(
                col,
                cells,
                styles=[STATUS_STYLE.get(v, "") for v in values] if col == "status" else [],
                numeric=numeric,
                shrink=not numeric and col not in ("id", "short_id", "status"),
                keep=col in ("id", "name", "status"),
                raw=[_cell(v) for v in values],
            )
        )
    return cols


def _print(
    table: list[Any],
    header: list[str],
    rows: list[dict[str, Any]],
    cols: list[str],
    *,
    wide: bool,
) -> None:
    from rich.console import Console

    from .tables import dropped_note, print_table

    console = Console(highlight=False)
    dropped = print_table(console, table, wide=wide)
    if dropped:
        console.print(dropped_note(dropped), style="dim", markup=False)
    if not cols and len(rows) > 1 and not any(c.startswith("config.") for c in header):
        console.print("[dim]the runs have the same config[/dim]")
