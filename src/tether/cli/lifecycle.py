"""`tether delete`, `tether restore`, `tether purge`: the trash at `<runs root>/.trash`."""

from __future__ import annotations

import sys
from typing import Any

import click

from ..store.state import BUSY
from .args import complete_runs
from .main import store_from


def _interactive() -> bool:
    try:
        return sys.stdin.isatty()
    except (AttributeError, ValueError):
        return False


@click.command()
@click.argument("runs", metavar="RUNS...", nargs=-1, required=True, shell_complete=complete_runs)
@click.option("-y", "--yes", is_flag=True, help="Do not ask (it asks only at a terminal).")
@click.option("--force", is_flag=True, help="Delete runs that are still pending or running.")
@click.pass_context
def delete(ctx: click.Context, runs: tuple[str, ...], yes: bool, force: bool) -> None:
    """Move RUNS to the trash; `tether restore` brings them back, `tether purge` ends them.

    RUNS: indexes, slices (1:3), id or name prefixes, several allowed. A run still pending or
    running is refused unless --force. The run's folder (or, for a run with its own save_dir,
    the link to it) moves to <runs root>/.trash/<id> and leaves the listing.
    """
    from ..ids import short_ids
    from ..store import lifecycle
    from ..store.attrs import author

    store = store_from(ctx)
    rows = lifecycle.resolve_many(store, runs)
    shorts = short_ids(store.index.ids())
    if not force:
        for row in rows:
            status = row.effective_status()
            if status in BUSY:
                from ..errors import TetherError

                raise TetherError(
                    f"run {shorts[row.id]} ({row.name}) is {status}",
                    "stop it first, or pass --force to delete it anyway",
                )
    if not yes and _interactive():
        listed = ", ".join(f"{shorts[r.id]} ({r.name})" for r in rows[:5])
        more = f" and {len(rows) - 5} more" if len(rows) > 5 else ""
        if not click.confirm(f"Move {_n(len(rows))} to the trash: {listed}{more}?", default=True):
            click.echo("nothing deleted")
            ctx.exit(1)
    who = author()[0]
    for row in rows:
        users = lifecycle.consumers(store, row.id)
        lifecycle.delete(store, row.id, force=force, author=who)
        click.echo(f"deleted {shorts[row.id]} ({row.name})")
        for run_id, stage in users:
            if run_id not in {r.id for r in rows}:
                click.echo(
                    f"  note: run {shorts.get(run_id, run_id[:13])} consumed it as stage "
                    f"{stage!r}; its lineage will show it missing",
                    err=True,
                )
    them = "it" if len(rows) == 1 else "them"
    click.echo(f"`tether restore {' '.join(shorts[r.id] for r in rows)}` brings {them} back")


def _n(count: int) -> str:
    return f"{count} run{'s' if count != 1 else ''}"


@click.command()
@click.argument("runs", metavar="[RUNS]...", nargs=-1)
@click.option("--list", "list_", is_flag=True, help="List the runs in the trash.")
@click.option("--json", "as_json", is_flag=True, help="With --list: print JSON.")
@click.pass_context
def restore(ctx: click.Context, runs: tuple[str, ...], list_: bool, as_json: bool) -> None:
    """Bring RUNS back from the trash (id prefixes, or names, of trashed runs).

    `tether restore --list` shows what the trash holds.
    """
    from ..store import lifecycle

    store = store_from(ctx)
    if list_ or as_json:
        if runs:
            raise click.UsageError("--list takes no RUNS")
        _list_trash(lifecycle.trashed(store), as_json, store.root)
        return
    if not runs:
        raise click.UsageError("give RUNS to restore (id prefixes), or --list to see the trash")
    entries = lifecycle.resolve_trashed(store, runs)
    for entry in entries:
        lifecycle.restore(store, entry)
        click.echo(f"restored {entry.id[:13]} ({entry.name})")


def _list_trash(entries: list[Any], as_json: bool, root: object) -> None:
    if as_json:
        import json

        click.echo(json.dumps([e.to_dict() for e in entries], indent=2))
        return
    if not entries:
        click.echo(f"the trash of {root} is empty")
        return
    from rich.console import Console
    from rich.table import Table

    from .render import relative

    table = Table(box=None, pad_edge=False, header_style="bold")
    for col in ("id", "name", "status", "created", "deleted", "by"):
        table.add_column(col, no_wrap=col != "by", overflow="fold")
    for e in entries:
        table.add_row(
            e.id[:13],
            e.name,
            e.status,
            relative(e.created),
            relative(e.deleted),
            (e.deleted_by or "").split(" <")[0],
        )
    console = Console(highlight=False)
    console.print(table)
    console.print(
        f"[dim]{_n(len(entries))} in the trash: `tether restore ID` brings one back, "
        "`tether purge ID` deletes it for good[/dim]"
    )


def _purge_orphans(store: Any, yes: bool) -> None:
    from ..errors import TetherError
    from ..store import lifecycle
    from ..store.orphans import find_orphans

    found = find_orphans(store.root)
    if not found:
        click.echo(f"no orphan run folders in {store.root}")
        return
    if not yes:
        if not _interactive():
            raise TetherError(
                f"purge would delete {len(found)} orphan run folder(s), and there is no "
                "terminal to confirm on",
                "pass -y to confirm",
            )
        if not click.confirm(f"Delete {len(found)} orphan run folder(s) (no run.lock)?"):
            click.echo("nothing purged")
            return
    for orphan in found:
        lifecycle.remove_orphan(orphan)
        click.echo(f"removed orphan {orphan.folder} (left by {orphan.creator})")


@click.command()
@click.argument("runs", metavar="[RUNS]...", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Purge everything in the trash.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option(
    "--force", is_flag=True, help="Also delete files added to a run folder after the run ended."
)
@click.option(
    "--orphans", is_flag=True, help="Remove run folders left by killed creators (no run.lock)."
)
@click.pass_context
def purge(
    ctx: click.Context, runs: tuple[str, ...], all_: bool, yes: bool, force: bool, orphans: bool
) -> None:
    """Delete RUNS in the trash for good (id prefixes of trashed runs), or --all of them.

    Removes the run folders (a run's own save_dir folder too) and their snapshot refs
    (refs/tether/snapshots/<id>) in the repositories they recorded. Asks first unless -y; with no
    terminal to ask on, it refuses without -y.

    A run folder holding a file its manifest.json does not list, and that tether did not make
    (put there after the run ended), is refused, and nothing is purged, unless --force.

    --orphans removes the run folders a killed creator left in the runs root (marked by tether,
    no run.lock, older than ten minutes, creator gone), which `tether check` lists.
    """
    from ..errors import TetherError
    from ..store import lifecycle

    store = store_from(ctx)
    if orphans:
        if runs or all_:
            raise click.UsageError("give --orphans alone, not with RUNS or --all")
        _purge_orphans(store, yes)
        return
    if all_ and runs:
        raise click.UsageError("give RUNS or --all, not both")
    if not all_ and not runs:
        raise click.UsageError("give RUNS (id prefixes of trashed runs) or --all")
    entries = lifecycle.trashed(store) if all_ else lifecycle.resolve_trashed(store, runs)
    if not entries:
        click.echo(f"the trash of {store.root} is empty")
        return
    if not force:
        for entry in entries:  # before anything is deleted: all or nothing
            lifecycle.refuse_unlisted(store, entry)
    if not yes:
        if not _interactive():
            raise TetherError(
                f"purge would delete {_n(len(entries))} for good, and there is no terminal "
                "to confirm on",
                "pass -y to confirm",
            )
        listed = ", ".join(f"{e.id[:13]} ({e.name})" for e in entries[:5])
        more = f" and {len(entries) - 5} more" if len(entries) > 5 else ""
        if not click.confirm(f"Delete {_n(len(entries))} for good: {listed}{more}?"):
            click.echo("nothing purged")
            ctx.exit(1)
    left_alone = []
    for entry in entries:
        result = lifecycle.purge(store, entry, force=force)
        extra = f", {len(result.refs)} snapshot ref(s)" if result.refs else ""
        click.echo(f"purged {entry.id[:13]} ({entry.name}){extra}")
        for problem in result.problems:
            click.echo(f"  warning: {problem}", err=True)
        if result.left_alone:
            left_alone.append(result.left_alone)
    if left_alone:
        more = f" (and {len(left_alone) - 1} more)" if len(left_alone) > 1 else ""
        raise TetherError(f"{left_alone[0]}{more}", "tether deletes only folders it made")
