"""`tether archive export RUNS -o FILE.tar.gz` and `tether archive import FILE`."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .args import complete_runs
from .byte_progress import ByteBar, human_size
from .main import store_from


@click.group()
def archive() -> None:
    """Export runs to a .tar.gz, or import them from one."""


@archive.command("export")
@click.argument("runs", metavar="RUNS...", nargs=-1, required=True, shell_complete=complete_runs)
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The archive to write (FILE.tar.gz).",
)
@click.option(
    "--with-snapshots",
    is_flag=True,
    help="Add git bundles of the runs' source snapshots (refs/tether/snapshots/<id>).",
)
@click.option("--force", is_flag=True, help="Overwrite FILE if it exists.")
@click.pass_context
def export_cmd(
    ctx: click.Context, runs: tuple[str, ...], output: Path, with_snapshots: bool, force: bool
) -> None:
    """Write RUNS (their whole folders, with a manifest) into one .tar.gz.

    A run with its own save_dir is exported from that folder. Links inside a run folder that
    point outside it are left out (and listed). `tether archive import` reads the file back.
    """
    from ..store import archive as arc
    from ..store.lifecycle import resolve_many

    store = store_from(ctx)
    records = [store.load(r.id) for r in resolve_many(store, runs)]
    plan = arc.plan_export(records)
    bar = ByteBar("exporting", total=plan[2])
    try:
        result = arc.export_runs(
            store,
            records,
            output,
            with_snapshots=with_snapshots,
            overwrite=force,
            progress=bar.advance,
            plan=plan,
        )
    finally:
        bar.close()
    n = len(result.runs)
    click.echo(
        f"exported {n} run{'s' if n != 1 else ''} ({result.files} files, "
        f"{human_size(result.bytes)}) to {output}"
    )
    if result.bundles:
        click.echo(f"with {len(result.bundles)} snapshot bundle(s)")
    for what in result.skipped:
        click.echo(f"  left out: {what}", err=True)


@archive.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--snapshots-into",
    type=click.Path(file_okay=False, path_type=Path),
    metavar="REPO",
    help="Fetch the archive's snapshot refs into this git repository "
    "(default: the repository the runs recorded, when it exists here). Importing again with "
    "it fetches the refs that runs imported before still lack.",
)
@click.pass_context
def import_cmd(ctx: click.Context, file: Path, snapshots_into: Path | None) -> None:
    """Add the runs of an archive made by `tether archive export` to the runs root.

    Every member is checked before anything is written: absolute paths, `..`, links leaving
    their run folder and device files are refused. Runs already in the runs root (or in its
    trash) are skipped; the snapshot refs of those already there are still fetched when the
    repository lacks them.
    """
    from ..ids import short_ids
    from ..store import archive as arc

    store = store_from(ctx)
    bar = ByteBar("importing", total=arc.archive_size(file) if sys.stderr.isatty() else 0)
    try:
        result = arc.import_archive(
            store, file, snapshots_into=snapshots_into, progress=bar.advance
        )
    finally:
        bar.close()
    shorts = short_ids(store.index.ids()) if result.imported else {}
    for record in result.imported:
        click.echo(f"imported {shorts.get(record.id, record.id[:13])} ({record.name})")
    for why in result.skipped:
        click.echo(f"skipped {why}")
    for refs in result.refs:
        click.echo(f"snapshot refs: {refs}")
    for note in result.notes:
        click.echo(f"note: {note}", err=True)
    n = len(result.imported)
    click.echo(
        f"{n} run{'s' if n != 1 else ''} imported into {store.root}"
        + (f", {len(result.skipped)} skipped" if result.skipped else "")
    )
