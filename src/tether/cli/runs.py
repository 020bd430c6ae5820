"""`tether runs`: list runs newest first, filter (--where), sort and add columns;
`tether runs reindex` rebuilds the index."""

from __future__ import annotations

from typing import Any

import click

from .main import store_from


class _RunsGroup(click.Group):
    """`tether runs` and its subcommands; `runs adopt` (cli/adopt.py, with the shell
    completion it uses) loads on first use, so a listing does not import it."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, "adopt"})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name == "adopt" and cmd_name not in self.commands:
            from .adopt import adopt

            self.add_command(adopt)
        return super().get_command(ctx, cmd_name)


def _list_options(f: click.decorators.FC) -> click.decorators.FC:
    f = click.option(
        "--tsv", "as_tsv", is_flag=True, help="Print the table tab-separated, values in full."
    )(f)
    f = click.option("--csv", "as_csv", is_flag=True, help="Print CSV.")(f)
    f = click.option("--json", "as_json", is_flag=True, help="Print JSON.")(f)
    f = click.option(
        "--wide",
        is_flag=True,
        help="Show every column, however wide (otherwise those that do not fit are left out).",
    )(f)
    f = click.option(
        "--columns",
        metavar="FIELDS",
        help="The columns after # and id, comma-separated: name,status,config.lr,metrics.loss "
        "(default: [runs] columns of tether.toml, or name, status, started, label and the "
        "metrics the runs share).",
    )(f)
    f = click.option(
        "--sort",
        metavar="KEYS",
        help="Sort by fields, comma-separated, '-' first for descending: -metrics.acc,config.lr.",
    )(f)
    f = click.option(
        "--where",
        metavar="EXPR",
        help="Only runs matching EXPR: 'op = train and config.lr >= 0.01' (see docs/queries.md).",
    )(f)
    f = click.option(
        "--project", metavar="ID|this", help="Only the runs of project ID ('this': this one's)."
    )(f)
    f = click.option("-a", "--all", "show_all", is_flag=True, help="Show every run.")(f)
    f = click.option(
        "-n",
        "limit",
        type=click.IntRange(min=1),
        default=20,
        show_default=True,
        help="Show the N first runs (newest, unless --sort).",
    )(f)
    return f


@click.group(cls=_RunsGroup, invoke_without_command=True)
@_list_options
@click.option("--remote", metavar="NAME", help="List what remote NAME holds (docs/sharing.md).")
@click.pass_context
def runs(ctx: click.Context, remote: str | None = None, **opts: Any) -> None:
    """List runs, newest first. RUN arguments elsewhere use the numbers shown here.

    With --where or --sort the numbers count that listing only: pass ids to other commands.
    """
    if ctx.invoked_subcommand is None and remote is not None:
        from .remote import show_remote_runs  # --where and --json apply; the rest do not

        show_remote_runs(remote, opts["where"], opts["as_json"])
    elif ctx.invoked_subcommand is None:
        _list(ctx, **opts)


@runs.command("list")
@_list_options
@click.pass_context
def list_cmd(ctx: click.Context, **opts: Any) -> None:
    """List runs, newest first (the same as `tether runs`)."""
    _list(ctx, **opts)


def _list(
    ctx: click.Context,
    limit: int,
    show_all: bool,
    as_json: bool,
    as_csv: bool,
    as_tsv: bool,
    wide: bool,
    where: str | None,
    sort: str | None,
    columns: str | None,
    project: str | None = None,
) -> None:
    from ..store.select import count, short_ids_of, values_of
    from ..store.sorting import parse_columns
    from . import render

    given = [name for name, on in (("--json", as_json), ("--csv", as_csv), ("--tsv", as_tsv)) if on]
    if len(given) > 1:
        raise click.UsageError(f"{', '.join(given[:-1])} and {given[-1]} do not go together")
    fields = parse_columns(columns) if columns else project_columns()
    if project is not None:  # --project ID|this (cli/adopt.py)
        from .adopt import project_where

        where = project_where(project, where)
    store = store_from(ctx)
    _reconcile(store)
    rows = store.query(where=where, sort=sort, limit=None if show_all else limit)
    if store.root.is_dir():
        _warn_unknown(store, where, sort, fields)
    ids = [r.id for r in rows]
    shorts = short_ids_of(store.index, ids) if rows else {}
    items = [render.row_dict(r, i, shorts.get(r.id, r.id[:13])) for i, r in enumerate(rows, 1)]
    # The default columns are the table's: --json and --csv have every metric already.
    default = [] if as_json or as_csv else _default_fields(items)
    chosen = fields if fields is not None else default
    keys = [f.key for f in chosen if f.kind == "val"]
    found = values_of(store.index, ids, keys)
    for it in items:
        it["columns"] = {
            f.name: (found[it["id"]].get(f.key) if f.kind == "val" else _field(it, f.name))
            for f in chosen
        }
    names = [f.name for f in fields or []]
    if as_json:
        if fields is None:  # the default columns are the table's business, not the data's
            for it in items:
                del it["columns"]
        click.echo(render.to_json(items))
        return
    if as_csv:
        click.echo(render.to_csv(items, names), nl=False)
        return
    if not items:
        if where is not None and store.root.is_dir() and store.index.count():
            click.echo(f"no runs match {where!r} in {store.root}")
        else:
            click.echo(f"no runs in {store.root}")
        return
    table = _columns(items, chosen, default=fields is None)
    if as_tsv:
        from .tables import tsv

        click.echo(tsv(table), nl=False)
        return
    plain = where is None and not sort
    total = count(store.index, where) if len(items) == limit and not show_all else len(items)
    _print(table, total, len(items), plain=plain, filtered=where is not None, wide=wide)


def project_columns() -> list[Any] | None:
    """`[runs] columns = [...]` of the project's tether.toml (or .yaml/.json), parsed; None
    when there is no project file or it chooses none."""
    from ..errors import TetherError, did_you_mean
    from ..store.fields import WhereError
    from ..store.sorting import parse_columns
    from ..workspace import find_project_file, read_project_data

    path = find_project_file()
    if path is None:
        return None
    section = read_project_data(path).get("runs")
    if section is None:
        return None
    example = '["name", "status", "metrics.loss"]'
    if not isinstance(section, dict):
        raise TetherError(
            f"{path}: runs: expected a table such as `[runs] columns = {example}`, "
            f"found {section!r}"
        )
    for key in section:
        if key != "columns":  # a newer tether's setting, or a typo: said, not fatal
            hint = " (did you mean 'columns'?)" if did_you_mean(str(key), ["columns"]) else ""
            click.echo(
                f"tether: warning: {path}: runs.{key}: unknown key, ignored; expected columns"
                + hint,
                err=True,
            )
    value = section.get("columns")
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TetherError(
            f"{path}: runs.columns: expected a list of fields such as {example}, found {value!r}",
            "see docs/managing-runs.md#choosing-the-columns",
        )
    out = []
    for entry in value:
        try:
            out += parse_columns(entry)
        except WhereError as exc:
            raise TetherError(f"{path}: runs.columns: {entry!r}: {exc.detail}") from None
    return out


def _warn_unknown(store: Any, where: str | None, sort: str | None, fields: Any) -> None:
    """One stderr line per config/metric/... key that no run of the index has, with the
    nearest key some run has: a filter, sort or column on a misspelt key is otherwise silent."""
    from ..store.select import unknown_fields
    from ..store.sorting import parse_sort
    from ..store.where import fields_of

    named = fields_of(where) if where else []
    named += [k.field for k in parse_sort(sort)] if sort else []
    named += fields or []
    if not any(f.kind == "val" for f in named):
        return
    for field, hint in unknown_fields(store.index, named):
        tail = f"; did you mean {hint!r}?" if hint else "; `tether show RUN` lists a run's keys"
        click.echo(f"tether: warning: no run has {field.name!r}{tail}", err=True)


def _default_fields(items: list[dict[str, Any]]) -> list[Any]:
    """name, status, started, the label (when a run shown has one or tags), and the metrics
    of the runs shown: those most of them have first, at most six."""
    from ..store.fields import Field, parse_field

    chosen = [parse_field(n) for n in ("name", "status", "started")]
    if any(it["label"] or it["tags"] for it in items):
        chosen.append(parse_field("label"))
    counts: dict[str, int] = {}
    for it in items:
        for key in it["metrics"]:
            counts[key] = counts.get(key, 0) + 1
    ranked = sorted(counts, key=lambda k: (-counts[k], k))[:MAX_METRICS]
    # Made directly, not parsed: a metric named `acc.min` or `x.` is a key, not a statistic.
    return chosen + [Field(f"metrics.{k}", "val", key=f"metrics.{k}.last") for k in ranked]


MAX_METRICS = 6


def _reconcile(store: Any) -> None:
    """Runs of Slurm or PBS jobs that ended without a word get the state they really have
    (cheap when no run is queued or running: one query of the index)."""
    from ..store.state import IN_FLIGHT

    if not store.root.is_dir():
        return
    marks = ", ".join("?" * len(IN_FLIGHT))
    rows = store.index.rows(where_sql=f"runs.status IN ({marks})", params=list(IN_FLIGHT))
    if not rows:
        return  # nothing in flight: nothing to ask a scheduler (batches not even imported)
    from ..batches.reconcile import reconcile

    try:
        reconcile(store, rows)
    except Exception as exc:  # the listing goes on: the index is what it is
        click.echo(f"tether: runs of scheduler jobs not brought in step: {exc}", err=True)


def _field(item: dict[str, Any], name: str) -> Any:
    if name == "op":
        return item["name"]
    if name == "tag":
        return item["tags"]
    return item.get(name)


# Fields whose values are ids or digests: printed whole, never shortened.
_WHOLE = ("id", "parent", "source.commit", "status", "started", "stopped", "created")


def _columns(items: list[dict[str, Any]], fields: list[Any], *, default: bool) -> list[Any]:
    """The table: `#` and the short id, then one column per field. In the default listing the
    label column also holds the `#tags`, and a metric's header is its key (`eval/acc`)."""
    from .render import STATUS_STYLE, format_cell, relative
    from .tables import Column

    cols = [
        Column("#", [str(it["index"]) for it in items], numeric=True, keep=True),
        Column(
            "id",
            [it["short_id"] for it in items],
            keep=True,
            raw=[it["id"] for it in items],
        ),
    ]
    for f in fields:
        values = [it["columns"][f.name] for it in items]
        header = f.name
        if default and f.name.startswith("metrics."):
            header = f.name[len("metrics.") :]
        if default and f.name == "label":
            values = [
                " ".join([it["label"] or "", *(f"#{t}" for t in it["tags"])]).strip()
                for it in items
            ]
        if f.kind == "time":
            cells = [relative(v) if v else "" for v in values]
        else:
            cells = [format_cell(v) for v in values]
        present = [v for v in values if v is not None and v != ""]
        numeric = bool(present) and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in present
        )
        cols.append(
            Column(
                header,
                cells,
                styles=[STATUS_STYLE.get(str(v), "") for v in values] if f.name == "status" else [],
                numeric=numeric,
                shrink=not numeric and f.name not in _WHOLE,
                raw=[_raw(v) for v in values],
            )
        )
    return cols


def _raw(value: Any) -> Any:
    """A value for --tsv: numbers in full, lists space-separated, booleans as words."""
    from .render import csv_cell

    if isinstance(value, list):
        return " ".join(str(v) for v in value)
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)  # the index keeps every number as a float: 450.0 was 450
    return csv_cell(value)


def _print(
    table: list[Any], total: int, shown: int, *, plain: bool, filtered: bool, wide: bool
) -> None:
    from .tables import dropped_note, plain_text, print_table

    what = "matching runs" if filtered else "runs"
    counted = f"{shown} of {total} {what} shown (-n N or --all for more)"
    numbered = "# numbers this listing only: pass ids to other commands"
    # Into a pipe, with nothing to style or fit: the same text, without importing rich.
    text = plain_text(
        table, [n for n, on in ((counted, total > shown), (numbered, not plain)) if on]
    )
    if text is not None:
        click.echo(text, nl=False)
        return
    from rich.console import Console  # rich only for a terminal: a pipe gets plain_text

    console = Console(highlight=False)
    dropped = print_table(console, table, wide=wide)
    notes = []
    if total > shown:
        notes.append(counted)
    if dropped:
        notes.append(dropped_note(dropped))
    if not plain:
        notes.append(numbered)
    for note in notes:  # prose: wrapped at a terminal's width, whole into a pipe
        console.print(note, style="dim", markup=False, soft_wrap=not console.is_terminal)


@runs.command()
@click.pass_context
def reindex(ctx: click.Context) -> None:
    """Rebuild the index from the run folders (the index is only a cache)."""
    store = store_from(ctx)
    n = store.reindex()
    click.echo(f"indexed {n} run{'s' if n != 1 else ''} in {store.root}")
    for problem in store.skipped:
        click.echo(f"skipped: {problem}", err=True)
