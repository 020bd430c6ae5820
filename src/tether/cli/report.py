"""`tether report RUN`: write report.md with the run's record, summary table and charts."""

from __future__ import annotations

import click

from .args import run_argument
from .main import store_from


@click.command()
@run_argument()
@click.option(
    "-o",
    "--output",
    "output",
    type=click.Path(dir_okay=True, file_okay=True),
    metavar="FILE",
    help="Where to write the report (default: <run>/report.md).",
)
@click.option(
    "-k",
    "--key",
    "keys",
    multiple=True,
    metavar="K",
    help="Plot only these keys, groups or globs (the table keeps every key).",
)
@click.option("--no-plots", is_flag=True, help="Leave the PNG charts out.")
@click.pass_context
def report(
    ctx: click.Context, run: str, output: str | None, keys: tuple[str, ...], no_plots: bool
) -> None:
    """Write report.md for RUN and print its path: id, name, status, times and duration, the
    config, the summary of each metric (last, min, max, step) and PNG charts (saved in
    <run>/plots, linked relative to the report)."""
    from ..track.report import write_report

    wanted = [k.strip() for spec in keys for k in spec.split(",") if k.strip()]
    record = store_from(ctx).resolve_one(run)
    path = write_report(record.dir, output, plots=not no_plots, keys=wanted or None)
    click.echo(str(path))
