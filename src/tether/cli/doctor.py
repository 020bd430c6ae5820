"""`tether doctor [--json]`: check this machine for launching; exit 1 on any failure."""

from __future__ import annotations

import click

_MARK = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL"}
_COLOUR = {"ok": "green", "warn": "yellow", "fail": "red"}


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--json", "as_json", is_flag=True, help="Print the checks as JSON.")
@click.option(
    "--hostfile",
    envvar="TETHER_HOSTFILE",
    metavar="FILE",
    help="Check this hostfile too (default TETHER_HOSTFILE, else PBS_NODEFILE).",
)
@click.option(
    "--min-free-gb",
    type=float,
    default=1.0,
    show_default=True,
    metavar="GB",
    help="Fail below this much free disk under the runs root (warn below 5x).",
)
@click.option(
    "--check",
    "only",
    multiple=True,
    metavar="NAME",
    help="Run only this check (repeatable); names as in the output.",
)
@click.pass_context
def doctor(
    ctx: click.Context,
    as_json: bool,
    hostfile: str | None,
    min_free_gb: float,
    only: tuple[str, ...],
) -> int:
    """Check Python and tether, MPI launchers and their flavour, the scheduler and its hosts,
    the hostfile, torch and its accelerators and backends, W&B and MLflow settings, the runs
    root and free disk. Each check prints ok, WARN or FAIL with a remedy; exits 1 on any
    FAIL, 0 otherwise (warnings included)."""
    import json
    import os

    from ..distributed.doctor import CHECKS, Context, report, run_checks
    from ..errors import TetherError, did_you_mean

    names = [name for name, _ in CHECKS]
    for name in only:
        if name not in names:
            hint = did_you_mean(name, names)
            raise TetherError(
                f"no check {name!r}",
                f"did you mean {hint!r}?" if hint else f"checks: {', '.join(names)}",
            )
    root = ctx.find_root().obj or {}
    context = Context(
        env=dict(os.environ),
        hostfile=hostfile,
        runs_dir=root.get("runs_dir"),
        min_free_gb=min_free_gb,
    )
    checks = run_checks(context, list(only) or None)
    result = report(checks)
    if as_json:
        click.echo(json.dumps(result, indent=2, default=str))
    else:
        colour = "NO_COLOR" not in os.environ
        width = max(len(c.name) for c in checks)
        for c in checks:
            mark = _MARK[c.status]
            if colour:
                mark = click.style(mark, fg=_COLOUR[c.status], bold=c.status != "ok")
            click.echo(f"{mark}  {c.name:<{width}}  {c.summary}")
            if c.remedy:
                click.echo(f"      {'':<{width}}  -> {c.remedy}")
        counts = {s: sum(c.status == s for c in checks) for s in ("ok", "warn", "fail")}
        click.echo(
            f"\n{counts['ok']} ok, {counts['warn']} warning{'s' if counts['warn'] != 1 else ''}"
            f", {counts['fail']} failed"
        )
    return 1 if result["status"] == "fail" else 0
