"""`tether runs`: list runs newest first; `tether runs reindex` rebuilds the index."""

from __future__ import annotations

import click

from .main import store_from


def _list_options(f: click.decorators.FC) -> click.decorators.FC:
    f = click.option("--csv", "as_csv", is_flag=True, help="Print CSV.")(f)
    f = click.option("--json", "as_json", is_flag=True, help="Print JSON.")(f)
    f = click.option("-a", "--all", "show_all", is_flag=True, help="Show every run.")(f)
    f = click.option(
        "-n",
        "limit",
        type=click.IntRange(min=1),
        default=20,
        show_default=True,
        help="Show the N newest runs.",
    )(f)
    return f


@click.group(invoke_without_command=True)
@_list_options
@click.pass_context
def runs(ctx: click.Context, limit: int, show_all: bool, as_json: bool, as_csv: bool) -> None:
    """List runs, newest first. RUN arguments elsewhere use the numbers shown here."""
    if ctx.invoked_subcommand is None:
        _list(ctx, limit, show_all, as_json, as_csv)


@runs.command("list")
@_list_options
@click.pass_context
def list_cmd(ctx: click.Context, limit: int, show_all: bool, as_json: bool, as_csv: bool) -> None:
    """List runs, newest first."""
    _list(ctx, limit, show_all, as_json, as_csv)


def _list(ctx: click.Context, limit: int, show_all: bool, as_json: bool, as_csv: bool) -> None:
    from . import render

    store = store_from(ctx)
    rows = store.list(limit=None if show_all else limit)
    items = render.listing(rows, store.index.ids() if rows else [])
    if as_json:
        click.echo(render.to_json(items))
        return
    if as_csv:
        click.echo(render.to_csv(items), nl=False)
        return
    if not items:
        click.echo(f"no runs in {store.root}")
        return
    _table(items, store.index.count(), store.root)


def _table(items: list[dict], total: int, root: object) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from .render import STATUS_STYLE, format_metric, relative

    table = Table(box=None, pad_edge=False, header_style="bold")
    for col in ("#", "id", "name", "status", "started", "label", "metrics"):
        wraps = col in ("label", "metrics")
        table.add_column(
            col,
            no_wrap=not wraps,
            overflow="fold" if wraps else "ellipsis",
            min_width=None if wraps else len(col),
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
            metrics,
        )
    console = Console(highlight=False)
    console.print(table)
    if total > len(items):
        console.print(f"[dim]{len(items)} of {total} runs shown (-n N or --all for more)[/dim]")


@runs.command()
@click.pass_context
def reindex(ctx: click.Context) -> None:
    """Rebuild the index from the run folders (the index is only a cache)."""
    store = store_from(ctx)
    n = store.reindex()
    click.echo(f"indexed {n} run{'s' if n != 1 else ''} in {store.root}")
    for problem in store.skipped:
        click.echo(f"skipped: {problem}", err=True)
