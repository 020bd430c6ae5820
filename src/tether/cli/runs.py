"""`tether runs`: list runs newest first, filter (--where), sort and add columns;
`tether runs reindex` rebuilds the index."""

from __future__ import annotations

from typing import Any

import click

from .main import store_from


def _list_options(f: click.decorators.FC) -> click.decorators.FC:
    f = click.option("--csv", "as_csv", is_flag=True, help="Print CSV.")(f)
    f = click.option("--json", "as_json", is_flag=True, help="Print JSON.")(f)
    f = click.option(
        "--columns",
        metavar="FIELDS",
        help="Extra columns, comma-separated: config.lr,metrics.loss,host ...",
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


@click.group(invoke_without_command=True)
@_list_options
@click.pass_context
def runs(ctx: click.Context, **opts: Any) -> None:
    """List runs, newest first. RUN arguments elsewhere use the numbers shown here.

    With --where or --sort the numbers count that listing only: pass ids to other commands.
    """
    if ctx.invoked_subcommand is None:
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
    where: str | None,
    sort: str | None,
    columns: str | None,
) -> None:
    from ..store.select import count, short_ids_of, values_of
    from ..store.sorting import parse_columns
    from . import render

    fields = parse_columns(columns) if columns else []
    store = store_from(ctx)
    _reconcile(store)
    rows = store.query(where=where, sort=sort, limit=None if show_all else limit)
    ids = [r.id for r in rows]
    shorts = short_ids_of(store.index, ids) if rows else {}
    items = [render.row_dict(r, i, shorts.get(r.id, r.id[:13])) for i, r in enumerate(rows, 1)]
    names = [f.name for f in fields]
    if fields:
        keys = [f.key for f in fields if f.kind == "val"]
        found = values_of(store.index, ids, keys)
        for it in items:
            it["columns"] = {
                f.name: (found[it["id"]].get(f.key) if f.kind == "val" else _field(it, f.name))
                for f in fields
            }
    if as_json:
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
    plain = where is None and not sort
    total = count(store.index, where) if len(items) == limit and not show_all else len(items)
    _table(items, names, total, plain=plain, filtered=where is not None)


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


def _table(
    items: list[dict[str, Any]], extra: list[str], total: int, *, plain: bool, filtered: bool
) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from .render import STATUS_STYLE, format_cell, format_metric, relative

    table = Table(box=None, pad_edge=False, header_style="bold")
    # Chosen columns take the place of the summary of metrics.
    for col in ("#", "id", "name", "status", "started", "label", *(extra or ["metrics"])):
        wraps = col in ("label", "metrics")
        table.add_column(
            col,
            no_wrap=not wraps,
            overflow="fold" if wraps else "ellipsis",
            min_width=None if wraps else len(col),
            justify="right" if col in extra and _numeric(items, col) else "left",
        )
    for it in items:
        status = it["status"]
        label = " ".join([it["label"] or "", *(f"#{t}" for t in it["tags"])]).strip()
        metrics = " ".join(f"{k}={format_metric(v)}" for k, v in list(it["metrics"].items())[:3])
        table.add_row(
            str(it["index"]),
            it["short_id"],
            it["name"],
            Text(status, style=STATUS_STYLE.get(status, "")),
            relative(it["started"] or it["created"]),
            label,
            *([format_cell(it["columns"][name]) for name in extra] or [metrics]),
        )
    console = Console(highlight=False)
    console.print(table)
    what = "matching runs" if filtered else "runs"
    if total > len(items):
        console.print(
            f"[dim]{len(items)} of {total} {what} shown (-n N or --all for more)[/dim]",
            soft_wrap=True,
        )
    if not plain:
        console.print(
            "[dim]# numbers this listing only: pass ids to other commands[/dim]", soft_wrap=True
        )


def _numeric(items: list[dict[str, Any]], name: str) -> bool:
    values = [it["columns"][name] for it in items if it["columns"][name] is not None]
    return bool(values) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in values
    )


@runs.command()
@click.pass_context
def reindex(ctx: click.Context) -> None:
    """Rebuild the index from the run folders (the index is only a cache)."""
    store = store_from(ctx)
    n = store.reindex()
    click.echo(f"indexed {n} run{'s' if n != 1 else ''} in {store.root}")
    for problem in store.skipped:
        click.echo(f"skipped: {problem}", err=True)
