"""`tether reproduce RUN`: re-run from run.lock in a clean checkout and compare metrics."""

from __future__ import annotations

import dataclasses
import json
import sys

import click

from .args import run_argument
from .main import store_from


@click.command()
@run_argument()
@click.option("--force", is_flag=True, help="Re-run even when the data digests changed.")
@click.option(
    "--rel-tol",
    type=float,
    default=0.0,
    show_default=True,
    help="Relative tolerance when comparing metrics.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
@click.pass_context
def reproduce(ctx: click.Context, run: str, force: bool, rel_tol: float, as_json: bool) -> None:
    """Re-run RUN from its snapshot, config and data, and compare the new metrics with the old.

    The re-run works in a temporary git worktree of the snapshot, laid out as the project was,
    with the recorded upstream runs and data; the new run records `reproduces: RUN`. A warning
    names the packages (and Python, GPU stack, container) that differ from the recorded run's.
    Exit 0 when the metrics match, 1 when they differ, the run's exit code when it fails.
    """
    from ..reproduce import reproduce as do_reproduce

    store = store_from(ctx)
    record = store.resolve_one(run)
    click.echo(f"reproducing run {record.id} ({record.name}) ...", err=True)
    result = do_reproduce(store, record, force=force, stream=not as_json)
    identical = result.identical(rel_tol)
    for warning in result.warnings:
        click.echo(f"tether: warning: {warning}", err=True)
    if result.environment or result.packages:
        facts = [f"{c.key} {c.old} -> {c.new}" for c in result.environment]
        click.echo(
            "tether: warning: the environment differs from the recorded run's: "
            + ", ".join([*facts, *(str(p) for p in result.packages)]),
            err=True,
        )
    if as_json:
        click.echo(
            json.dumps(
                {
                    "original": result.original,
                    "new": result.new,
                    "exit_code": result.exit_code,
                    "same_inputs": result.same_inputs,
                    "identical": identical,
                    "metrics": [{"key": m.key, "old": m.old, "new": m.new} for m in result.metrics],
                    "environment": [dataclasses.asdict(c) for c in result.environment],
                    "packages": [dataclasses.asdict(p) for p in result.packages],
                    "warnings": result.warnings,
                },
                indent=2,
            )
        )
    else:
        if result.new is None:
            click.echo(f"the re-run made no run record (exit code {result.exit_code})", err=True)
        else:
            inputs = "identical" if result.same_inputs else "differ: see tether diff"
            click.echo(f"\nnew run {result.new}  (inputs {inputs})")
            for m in result.metrics:
                mark = "=" if m.same(rel_tol) else "≠"
                click.echo(f"  {mark} {m.key}: {m.old} -> {m.new}")
            click.echo("metrics identical" if identical else "metrics differ")
    if result.exit_code != 0:
        sys.exit(result.exit_code)
    sys.exit(0 if identical else 1)
