"""`tether doctor [--json] [-n N ...]`: check this machine and job for launching; exit 1 on any
failure."""

from __future__ import annotations

from typing import Any

import click

_MARK = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL", "skip": "skip"}
_COLOUR = {"ok": "green", "warn": "yellow", "fail": "red", "skip": "bright_black"}


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--json", "as_json", is_flag=True, help="Print the checks as JSON.")
@click.option(
    "--hostfile",
    envvar="TETHER_HOSTFILE",
    metavar="FILE",
    help="Check this hostfile too (default TETHER_HOSTFILE, else PBS_NODEFILE).",
)
@click.option("-n", "-np", "nprocs", type=int, metavar="N", help="Ranks the launch will start.")
@click.option("-ppn", "--ppn", "ppn", type=int, metavar="P", help="Ranks per host.")
@click.option("--nhosts", "--nodes", "nhosts", type=int, metavar="H", help="Hosts to use.")
@click.option(
    "--launcher",
    type=click.Choice(["mpiexec", "srun", "torchrun"]),
    help="The launcher (default: the scheduler's).",
)
@click.option("--mpi", metavar="FLAVOUR", help="The MPI flavour, if mpiexec does not say.")
@click.option("--rank-prefix", is_flag=True, help="The launch will use --rank-prefix.")
@click.option(
    "--min-free-gb",
    type=float,
    default=1.0,
    show_default=True,
    metavar="GB",
    help="Fail below this much free disk under the runs root (warn below 5x).",
)
@click.option(
    "--torch-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=60.0,
    show_default=True,
    metavar="S",
    help="Give up on `import torch` (in a child process) after this many seconds.",
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
    nprocs: int | None,
    ppn: int | None,
    nhosts: int | None,
    launcher: str | None,
    mpi: str | None,
    rank_prefix: bool,
    min_free_gb: float,
    torch_timeout: float,
    only: tuple[str, ...],
) -> int:
    """Check what a launch depends on: Python and tether, the environment's filesystem, MPI
    launchers, the scheduler and the hostfile, the allocation against the request (-n, -ppn,
    --nhosts), the launch command and its rank prefixes, MASTER_ADDR/MASTER_PORT and the
    network interfaces, torch, its devices, backends and collective timeouts, W&B and MLflow,
    the runs root and free disk. Each check prints ok, WARN, FAIL or skip, with a one-line
    fix; exits 1 on any FAIL, 0 otherwise (warnings included)."""
    import json
    import os

    from ..distributed.doctor import CHECKS, Context, report, run_checks
    from ..errors import TetherError, did_you_mean

    add_remotes_check(CHECKS)
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
        nprocs=nprocs,
        ppn=ppn,
        nhosts=nhosts,
        launcher=launcher,
        mpi=mpi,
        rank_prefix=rank_prefix,
        torch_timeout=torch_timeout,
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
                mark = click.style(mark, fg=_COLOUR[c.status], bold=c.status in ("warn", "fail"))
            click.echo(f"{mark}  {c.name:<{width}}  {c.summary}")
            if c.remedy:
                click.echo(f"      {'':<{width}}  -> {c.remedy}")
        counts = {s: sum(c.status == s for c in checks) for s in ("ok", "warn", "fail", "skip")}
        skipped = f", {counts['skip']} skipped" if counts["skip"] else ""
        click.echo(
            f"\n{counts['ok']} ok, {counts['warn']} warning{'s' if counts['warn'] != 1 else ''}"
            f", {counts['fail']} failed{skipped}"
        )
    return 1 if result["status"] == "fail" else 0


def add_remotes_check(checks: Any) -> None:
    """The remotes of tether push|pull as a doctor check (sync/ and distributed/ are siblings
    in the layers, so the command line joins them); once per process."""
    from ..distributed.doctor import Check
    from ..sync.health import remotes_health

    if any(name == "remotes" for name, _ in checks):
        return

    def check_remotes(ctx: object) -> Check:
        health = remotes_health()
        return Check("remotes", health.status, health.summary, health.remedy, health.details)

    checks.register("remotes")(check_remotes)
