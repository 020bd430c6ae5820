"""`tether plot RUNS`: charts of logged metrics in the terminal, or as PNG, SVG or PDF files."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from .args import complete_runs
from .main import store_from

_FILE_HELP = (
    "Write {fmt} files into DIR (one run: default <run>/plots), or into FILE.{fmt} (every "
    "chart in that one file), and print their paths."
)


def chart_options(f: Any) -> Any:
    """--size, --title and --legend/--no-legend, shared with `tether report`."""
    f = click.option(
        "--legend/--no-legend", default=True, help="Name the lines in a legend (default: on)."
    )(f)
    f = click.option("--title", metavar="TEXT", help="The chart title (several: before each).")(f)
    f = click.option(
        "--size", metavar="WxH", help="Chart file size in pixels, per chart (default 720x400)."
    )(f)
    return f


def where_option(f: Any) -> Any:
    return click.option(
        "--where",
        metavar="EXPR",
        help="Only runs matching EXPR (docs/queries.md); RUNS then count that listing, "
        "as `tether runs --where` numbers it. Without RUNS: every matching run.",
    )(f)


@click.command()
@click.argument("runs", metavar="RUNS...", nargs=-1, shell_complete=complete_runs)
@where_option
@click.option(
    "-k",
    "--key",
    "keys",
    multiple=True,
    metavar="K",
    help="A metric key (eval/acc), a group (eval) or a glob (*/acc); repeat or comma-separate.",
)
@click.option(
    "--png", is_flag=False, flag_value="", default=None, metavar="[DIR|FILE]",
    help=_FILE_HELP.format(fmt="png"),
)  # fmt: skip
@click.option(
    "--svg", is_flag=False, flag_value="", default=None, metavar="[DIR|FILE]",
    help=_FILE_HELP.format(fmt="svg"),
)  # fmt: skip
@click.option(
    "--pdf", is_flag=False, flag_value="", default=None, metavar="[DIR|FILE]",
    help=_FILE_HELP.format(fmt="pdf"),
)  # fmt: skip
@click.option(
    "-o",
    "--output",
    metavar="PATH",
    help="Write the charts to PATH: a .png, .svg or .pdf file (the suffix picks the format) "
    "or a folder (PNGs).",
)
@chart_options
@click.option("-W", "--width", type=click.IntRange(min=30), help="Terminal chart width.")
@click.option("-H", "--height", type=click.IntRange(min=8), help="Terminal chart height.")
@click.pass_context
def plot(
    ctx: click.Context,
    runs: tuple[str, ...],
    where: str | None,
    keys: tuple[str, ...],
    png: str | None,
    svg: str | None,
    pdf: str | None,
    output: str | None,
    size: str | None,
    title: str | None,
    legend: bool,
    width: int | None,
    height: int | None,
) -> None:
    """Plot the metrics of RUNS: one chart per key group (train/*, eval/*) for one run, one
    chart per key with a line per run for several (each line named by the config values that
    differ among the runs, `lr=0.03`), step on the x axis.

    \b
      tether plot 1                    # the newest run, in the terminal
      tether plot 1:3 --key eval/acc   # three runs compared
      tether plot --where 'op = train' # every train run
      tether plot 1 --png              # PNGs into the run's plots/ folder
      tether plot 1:3 --svg cmp.svg    # the charts in one SVG file
    """
    from ..errors import TetherError
    from ..store.selection import select_runs
    from ..track.metrics_file import read_metrics, to_series
    from ..track.plots import (
        Style,
        charts_for_runs,
        default_png_dir,
        format_of,
        parse_size,
        render_text,
        save_charts,
        use_color,
    )

    wanted = [k.strip() for spec in keys for k in spec.split(",") if k.strip()]
    outputs = [(f, v) for f, v in (("png", png), ("svg", svg), ("pdf", pdf)) if v is not None]
    if output is not None:
        outputs.append((format_of(output) or "png", output))
    if len(outputs) > 1:
        raise click.UsageError("give one of --png, --svg, --pdf and --output")
    style = Style(title=title, legend=legend)
    if size is not None:
        style.size = parse_size(size)
    store = store_from(ctx)
    rows = select_runs(store, runs, where=where)
    labels = run_labels(store, rows)
    found: list[tuple[str, Any]] = []
    dirs: list[Path] = []
    for row, label in zip(rows, labels, strict=True):
        series = to_series(read_metrics(row.dir))
        if not series:
            why = (
                "only summary values, no metrics.jsonl"
                if row.metrics and not (Path(row.dir) / "metrics.jsonl").exists()
                else "nothing logged with log_metrics or History"
            )
            who = f"{row.id[:13]} {row.name}"
            if len(rows) == 1:
                raise TetherError(f"run {who} has no metrics to plot ({why})")
            click.echo(f"tether: run {who} has no metrics to plot ({why}); left out", err=True)
            continue
        found.append((label, series))
        dirs.append(Path(row.dir))
    if not found:
        raise TetherError("none of these runs has metrics to plot")
    charts = charts_for_runs(found, wanted or None)
    if outputs:
        fmt, target = outputs[0]
        if target:
            path = Path(target)
        elif len(found) == 1:
            path = default_png_dir(dirs[0])
        else:
            raise click.UsageError(f"give --{fmt} DIR (or FILE.{fmt}) to plot several runs")
        for written in save_charts(charts, path, fmt, style):
            click.echo(str(written))
        return
    color = use_color(sys.stdout)
    text = render_text(charts, width=width, height=height, color=color, title=title, legend=legend)
    click.echo(text, nl=False, color=color)


def run_labels(store: Any, rows: list[Any]) -> list[str]:
    """A legend label per run: the config values that differ among them (`lr=0.03`), or the
    short id and name when nothing differs (or for one run)."""
    from ..store.select import short_ids_of
    from ..track.sweep import config_labels

    shorts = short_ids_of(store.index, [r.id for r in rows])
    fallbacks = [f"{shorts.get(r.id, r.id[:13])} {r.name}" for r in rows]
    if len(rows) < 2:
        return fallbacks
    configs = [store.load(r.id).lock.config for r in rows]
    return config_labels(configs, fallbacks)
