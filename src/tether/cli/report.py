"""`tether report RUNS`: report.md of one run (its record, summary table and charts), or of a
sweep of several (what differs, final metrics, overlaid curves, the best run's record)."""

from __future__ import annotations

import click

from .args import complete_runs
from .main import store_from
from .plot import chart_options, where_option


@click.command()
@click.argument("runs", metavar="RUNS...", nargs=-1, shell_complete=complete_runs)
@where_option
@click.option(
    "-o",
    "--output",
    "output",
    type=click.Path(dir_okay=True, file_okay=True),
    metavar="PATH",
    help="Where to write the report: a .md file or a folder (default: <run>/report.md for one "
    "run, sweep-report/report.md for several).",
)
@click.option(
    "-k",
    "--key",
    "keys",
    multiple=True,
    metavar="K",
    help="Plot only these keys, groups or globs (the tables keep every key).",
)
@click.option(
    "--best",
    metavar="KEY[:min|max]",
    help="Several runs: the metric that picks the best run (default: the first metric every "
    "run has; min for names with loss or err, else max).",
)
@click.option("--svg", is_flag=True, help="Draw the charts as SVG files instead of PNG.")
@click.option(
    "--html", is_flag=True, help="Also write report.html: one page, the charts inlined as SVG."
)
@click.option("--no-plots", is_flag=True, help="Leave the charts out.")
@chart_options
@click.pass_context
def report(
    ctx: click.Context,
    runs: tuple[str, ...],
    where: str | None,
    output: str | None,
    keys: tuple[str, ...],
    best: str | None,
    svg: bool,
    html: bool,
    no_plots: bool,
    size: str | None,
    title: str | None,
    legend: bool,
) -> None:
    """Write report.md for RUNS and print its path (and report.html's with --html).

    One run: id, name, status, times and duration, command, the source commit, data digests,
    the environment, the config, the summary of each metric (last, min, max, step) and charts
    (saved in <run>/plots, linked relative to the report).

    Several runs (a slice 1:4, a list, or --where): a table of the config that differs and the
    final metrics, one chart per metric with a line per run named by its differing config
    values, and the best run's record.

    \b
      tether report 1                         # the newest run
      tether report 1:4 --svg                 # a sweep of the four newest runs
      tether report --where 'op = train' --best eval/loss --html
    """
    from ..store.select import short_ids_of
    from ..store.selection import select_runs
    from ..track.plots import Style, parse_size

    wanted = [k.strip() for spec in keys for k in spec.split(",") if k.strip()]
    style = Style(title=title, legend=legend)
    if size is not None:
        style.size = parse_size(size)
    fmt = "svg" if svg else "png"
    store = store_from(ctx)
    rows = select_runs(store, runs, where=where)
    if len(rows) == 1:
        from ..track.report import write_report

        if best:
            raise click.UsageError("--best picks among several runs; these select one")
        path = write_report(
            rows[0].dir,
            output,
            plots=not no_plots,
            keys=wanted or None,
            fmt=fmt,
            html=html,
            style=style,
        )
        click.echo(str(path))
        if html:
            click.echo(str(path.with_suffix(".html")))
        return
    from ..track.sweep_report import write_sweep_report

    records = [store.load(row.id) for row in rows]
    written = write_sweep_report(
        records,
        output,
        shorts=short_ids_of(store.index, [r.id for r in rows]),
        keys=wanted or None,
        best=best,
        plots=not no_plots,
        fmt=fmt,
        html=html,
        style=style,
    )
    for path in written:
        click.echo(str(path))
