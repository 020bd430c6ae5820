"""`tether plot RUNS`: charts of logged metrics in the terminal, or as PNG files."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from .args import complete_runs
from .main import store_from


@click.command()
@click.argument("runs", metavar="RUNS...", nargs=-1, required=True, shell_complete=complete_runs)
@click.option(
    "-k",
    "--key",
    "keys",
    multiple=True,
    metavar="K",
    help="A metric key (eval/acc), a group (eval) or a glob (*/acc); repeat or comma-separate.",
)
@click.option(
    "--png",
    "png",
    is_flag=False,
    flag_value="",
    default=None,
    metavar="[DIR]",
    help="Write PNG files into DIR (one run: default <run>/plots) and print their paths.",
)
@click.option("-W", "--width", type=click.IntRange(min=30), help="Terminal chart width.")
@click.option("-H", "--height", type=click.IntRange(min=8), help="Terminal chart height.")
@click.pass_context
def plot(
    ctx: click.Context,
    runs: tuple[str, ...],
    keys: tuple[str, ...],
    png: str | None,
    width: int | None,
    height: int | None,
) -> None:
    """Plot the metrics of RUNS: one chart per key group (train/*, eval/*) for one run, one
    chart per key with a line per run for several, step on the x axis.

    \b
      tether plot 1                    # the newest run, in the terminal
      tether plot 1 2 3 --key eval/acc # three runs compared
      tether plot 1 --png              # PNGs into the run's plots/ folder
    """
    from ..errors import TetherError
    from ..ids import short_ids
    from ..store.lifecycle import resolve_many
    from ..track.metrics_file import read_metrics, to_series
    from ..track.plots import charts_for_runs, default_png_dir, render_text, save_pngs, use_color

    wanted = [k.strip() for spec in keys for k in spec.split(",") if k.strip()]
    store = store_from(ctx)
    rows = resolve_many(store, runs)
    shorts = short_ids(store.index.ids())
    found: list[tuple[str, Any]] = []
    dirs: list[Path] = []
    for row in rows:
        label = f"{shorts.get(row.id, row.id[:13])} {row.name}"
        series = to_series(read_metrics(row.dir))
        if not series:
            why = (
                "only summary values, no metrics.jsonl"
                if row.metrics and not (Path(row.dir) / "metrics.jsonl").exists()
                else "nothing logged with log_metrics or History"
            )
            if len(rows) == 1:
                raise TetherError(f"run {label} has no metrics to plot ({why})")
            click.echo(f"tether: run {label} has no metrics to plot ({why}); left out", err=True)
            continue
        found.append((label, series))
        dirs.append(Path(row.dir))
    if not found:
        raise TetherError("none of these runs has metrics to plot")
    charts = charts_for_runs(found, wanted or None)
    if png is not None:
        if png:
            folder = Path(png)
        elif len(found) == 1:
            folder = default_png_dir(dirs[0])
        else:
            raise click.UsageError("give --png DIR to plot several runs to PNG files")
        for path in save_pngs(charts, folder):
            click.echo(str(path))
        return
    color = use_color(sys.stdout)
    text = render_text(charts, width=width, height=height, color=color)
    click.echo(text, nl=False, color=color)
