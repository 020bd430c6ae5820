"""`tether mlflow sync [RUNS]`: create or update MLflow runs for past tether runs."""

from __future__ import annotations

import json

import click

from .args import complete_runs
from .main import store_from


@click.group()
def mlflow() -> None:
    """MLflow: sync runs into an MLflow tracking store.

    The store is --tracking-uri (for that sync only), else MLFLOW_TRACKING_URI, else the one
    the run logged to, else sqlite:///<runs root>/mlflow.db (see it with
    `mlflow ui --backend-store-uri ...`).
    """


@mlflow.command()
@click.argument("runs", metavar="[RUNS]...", nargs=-1, shell_complete=complete_runs)
@click.option("--where", metavar="EXPR", help="Only the runs matching EXPR (see `tether runs`).")
@click.option(
    "--tracking-uri",
    metavar="URI",
    help="MLflow tracking URI for this sync only (default: see above).",
)
@click.option("--experiment", metavar="NAME", help="MLflow experiment (default: each run's name).")
@click.option("--new", is_flag=True, help="Open new MLflow runs that supersede existing ones.")
@click.option(
    "--wait",
    is_flag=True,
    help="Wait for the syncs in progress (a run's background sync) instead of skipping them.",
)
@click.option(
    "--timeout",
    type=float,
    default=600.0,
    show_default=True,
    metavar="SECONDS",
    help="With --wait: how long to wait for each run.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def sync(
    ctx: click.Context,
    runs: tuple[str, ...],
    where: str | None,
    tracking_uri: str | None,
    experiment: str | None,
    new: bool,
    wait: bool,
    timeout: float,
    as_json: bool,
) -> None:
    """Create or update the MLflow runs of RUNS (default: every run), idempotently.

    Params from run.lock, the metric rows the store lacks (from metrics.jsonl), run.lock,
    config, output.log and report as artifacts, and the final status. A run logged with
    MLflow is synced in the background when it ends: a run whose sync is in progress is
    skipped, or waited for with --wait (then what it missed is sent). Runs still running are
    skipped. Exits 1 when a run could not be synced.
    """
    import os

    from ..ids import short_ids
    from ..store.lifecycle import resolve_many
    from ..sync.mlflow import sync_run

    if timeout <= 0:
        raise click.BadParameter(
            f"{timeout:g} is not a positive number of seconds", param_hint="--timeout"
        )
    os.environ.pop("TETHER_SINKS", None)  # this command sends to MLflow, and only there
    store = store_from(ctx)
    if runs:
        rows = resolve_many(store, runs)
        if where:
            keep = {r.id for r in store.query(where)}
            rows = [r for r in rows if r.id in keep]
    else:
        rows = store.query(where)
    rows = list(reversed(rows))  # oldest first, as they were made
    shorts = short_ids(store.index.ids())
    results = []
    for row in rows:
        result = sync_run(
            store,
            row.id,
            tracking_uri=tracking_uri,
            experiment=experiment,
            new=new,
            wait=timeout if wait else None,
        )
        results.append(result)
        if not as_json:
            short = shorts.get(row.id, row.id[:13])
            if result.action in ("skipped", "failed"):
                click.echo(f"{short} {row.name}: {result.action}: {result.detail}")
            else:
                where_to = f" in {result.experiment}" if result.experiment else ""
                extra = f", {result.detail}" if result.detail else ""
                click.echo(
                    f"{short} {row.name}: {result.action} MLflow run {result.mlflow_run}"
                    f"{where_to} ({result.rows} new metric rows{extra})"
                )
    if as_json:
        click.echo(json.dumps([r.as_dict() for r in results], indent=2))
    elif not results:
        click.echo("no runs to sync")
    if any(r.action == "failed" for r in results):
        ctx.exit(1)
