"""`tether launch [OPTIONS] [LAUNCHER FLAGS] -- CMD...`: run CMD on MPI/Slurm/PBS ranks."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

import click

# click matches an option as a long one first, and when that fails it makes a "no such option"
# error, with difflib's suggestions, before trying it as a short one: `-n 2` would import and
# run difflib in every launch. `-np` is the same option in click's long table.
_LONG_SPELLING = {"-n": "-np"}


class _LaunchCommand(click.Command):
    """Everything after the first `--` is the command, untouched (its own --help included).
    Without `--`, the command starts at the first word that is not an option. Options tether
    does not know are launcher flags, passed through; a launcher flag with a separate value
    (`--bind-to core`) needs the `--` form, or `--bind-to=core`."""

    def collect_usage_pieces(self, ctx: click.Context) -> list[str]:
        return [*super().collect_usage_pieces(ctx), "[LAUNCHER FLAGS] -- CMD..."]

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta["tether.launch.argv"] = list(args)
        command: list[str] | None = None
        if "--" in args:
            cut = args.index("--")
            args, command = args[:cut], args[cut + 1 :]
        rest = super().parse_args(ctx, self._long_spellings(args))
        extra = list(ctx.args)
        if command is None:
            first = next((i for i, word in enumerate(extra) if not word.startswith("-")), None)
            command = [] if first is None else extra[first:]
            extra = extra if first is None else extra[:first]
        ctx.meta["tether.launch"] = (extra, command)
        ctx.args = []
        return rest

    def _long_spellings(self, args: list[str]) -> list[str]:
        """args with `-n` spelled `-np` where it is an option (not an option's value, not a
        word of the command), walking them as click's parser does."""
        valued = {
            name
            for p in self.params
            if isinstance(p, click.Option) and not p.is_flag and not p.count
            for name in p.opts
        }
        out = list(args)
        i = 0
        while i < len(out) and out[i].startswith("-") and out[i] != "-":
            word = out[i]
            out[i] = _LONG_SPELLING.get(word, word)
            i += 2 if word in valued else 1  # an unknown option is a launcher flag: one word
        return out


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """The cyclic garbage collector off while `tether launch` sets up, until its run record is
    written (`_collect_again`): what that allocates lives until the exit (modules, classes, the
    record), so the collector's passes free nothing; they cost ~5% of the CPU a launch spends,
    CPU that the job's own start-up shares on a small machine."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _collect_again() -> None:
    """The run record is written: what the launch has made so far stays until the exit, so it
    is frozen (gc.freeze), and the collector is back on for the job's duration (output,
    retries). Later passes skip the frozen objects, and so does the one at the interpreter's
    exit, which would walk all of them (~9 ms, after the job has ended)."""
    gc.freeze()
    gc.enable()


@click.command(
    cls=_LaunchCommand,
    context_settings={
        "help_option_names": ["-h", "--help"],
        "ignore_unknown_options": True,
        "allow_extra_args": True,
        "allow_interspersed_args": False,
    },
)
@click.option("-n", "-np", "nprocs", type=int, metavar="N", help="Total ranks.")
@click.option("-ppn", "--ppn", "ppn", type=int, metavar="P", help="Ranks per host.")
@click.option("--nhosts", type=int, metavar="H", help="Hosts to use (the first H of the job's).")
@click.option(
    "--hostfile",
    envvar="TETHER_HOSTFILE",
    metavar="FILE",
    help="Hosts to run on (`host`, `host slots=N`, `host:N`; default TETHER_HOSTFILE, "
    "else the scheduler's: PBS_NODEFILE, SLURM_JOB_NODELIST).",
)
@click.option("--cpu-bind", metavar="KIND", help="CPU binding, in the launcher's words.")
@click.option(
    "--launcher",
    metavar="NAME",
    help="mpiexec, srun or torchrun (default: the scheduler's: srun under Slurm, else mpiexec).",
)
@click.option(
    "--mpi",
    metavar="FLAVOUR",
    help="openmpi|mpich|pals|intel, assumed only when `mpiexec --version` does not tell.",
)
@click.option(
    "--scheduler",
    metavar="NAME",
    help="Use this scheduler plug-in instead of detecting one (also TETHER_SCHEDULER).",
)
@click.option(
    "--template", metavar="NAME", help="Merge a site template (or a .toml file) under the flags."
)
@click.option("--list-templates", is_flag=True, help="List the shipped templates and exit.")
@click.option(
    "--env",
    "env_pairs",
    multiple=True,
    metavar="KEY=VALUE",
    help="Set a variable for the ranks (and forward it to every host); repeatable.",
)
@click.option("--dry-run", is_flag=True, help="Print the launch command; run nothing.")
@click.option(
    "--json-out",
    metavar="FILE",
    help="Also write launch.json here (command, hosts, attempts, outcome).",
)
@click.option("--rank-prefix", is_flag=True, help="Prefix each output line with `[rank]`.")
@click.option(
    "--idle-timeout",
    type=float,
    metavar="S",
    help="Stop the job when it prints nothing for S seconds (exit 124).",
)
@click.option(
    "--retries", type=int, default=0, show_default=True, metavar="K", help="Retry a failed job."
)
@click.option(
    "--backoff",
    type=float,
    default=2.0,
    show_default=True,
    metavar="S",
    help="Wait before retry k: S x 2^(k-1) seconds.",
)
@click.option("--label", metavar="TEXT", help="Label the run.")
@click.option("--tag", "tags", multiple=True, metavar="TAG", help="Tag the run (repeatable).")
@click.option(
    "--snapshot/--no-snapshot",
    default=None,
    help="Snapshot the git repository of the working folder (default: when there is one).",
)
@click.pass_context
@_collector_paused()
def launch(
    ctx: click.Context,
    nprocs: int | None,
    ppn: int | None,
    nhosts: int | None,
    hostfile: str | None,
    cpu_bind: str | None,
    launcher: str | None,
    mpi: str | None,
    scheduler: str | None,
    template: str | None,
    list_templates: bool,
    env_pairs: tuple[str, ...],
    dry_run: bool,
    json_out: str | None,
    rank_prefix: bool,
    idle_timeout: float | None,
    retries: int,
    backoff: float,
    label: str | None,
    tags: tuple[str, ...],
    snapshot: bool | None,
) -> int:
    """Launch CMD on ranks: `tether launch -n 4 -ppn 2 -- python train.py`.

    The scheduler is detected (Slurm, PBS, a plug-in, else this machine), its hosts are read,
    the MPI flavour is taken from `mpiexec --version`, and the command is built for it (as
    root under Open MPI with --allow-run-as-root, and --oversubscribe past the cores). The
    launch is a run named `launch`: its output, state and launch.json (command, hosts, each
    attempt's exit code and duration) are in the run folder. Exits with the job's exit code.
    """
    from ..errors import TetherError

    extra, command = ctx.meta.get("tether.launch", ([], []))
    if list_templates:
        return _list_templates()
    if not command:
        raise TetherError(
            "no command to launch", "put it after `--`: tether launch -n 2 -- python train.py"
        )
    if mpi is not None:
        from ..distributed.mpi import FLAVOURS

        if mpi not in FLAVOURS:
            raise TetherError(f"--mpi {mpi!r} is not one of {', '.join(FLAVOURS)}")
    from ..distributed.spec import LaunchSpec

    spec = LaunchSpec(
        command=list(command),
        nprocs=nprocs,
        ppn=ppn,
        nhosts=nhosts,
        hostfile=hostfile,
        cpu_bind=cpu_bind,
        launcher=launcher,
        extra_args=list(extra),
        env=_env_pairs(env_pairs),
        mpi=mpi,
        rank_prefix=rank_prefix,
        scheduler=scheduler,
    )
    from ..distributed.launch import display, end_line, run_launch, start_line, write_dry_run
    from ..distributed.resolver import resolve

    if template:
        from ..distributed.templates import apply_template

        spec = apply_template(spec, template)
    resolved, sched = resolve(spec)
    argv = sched.build(resolved)
    if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv) or not argv:
        raise TetherError(f"scheduler plug-in {sched.name!r} built no command: {argv!r}")
    if dry_run:
        click.echo(display(argv))
        if json_out:
            write_dry_run(resolved, argv, json_out, template)
        return 0
    if retries < 0:
        raise TetherError(f"--retries {retries} is negative")
    from ..distributed.launchers import check_command

    check_command(resolved)  # one line, exit 2, instead of the launcher's own report per rank
    root = ctx.find_root().obj or {}
    click.echo(start_line(argv), err=True)
    result = run_launch(
        resolved,
        argv,
        runs_dir=root.get("runs_dir"),
        command=["tether", "launch", *ctx.meta.get("tether.launch.argv", [])],
        json_out=json_out,
        idle_timeout=idle_timeout,
        retries=retries,
        backoff=backoff,
        template=template,
        label=label,
        tags=tags,
        snapshot=snapshot,
        recorded=_collect_again,
    )
    ending = end_line(result)
    if ending is not None:
        click.echo(ending, err=True)
    return result.exit_code


def _env_pairs(pairs: tuple[str, ...]) -> dict[str, str]:
    from ..errors import TetherError

    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key or not key.replace("_", "a").isalnum() or key[0].isdigit():
            raise TetherError(f"--env {pair!r} is not KEY=VALUE")
        out[key] = value
    return out


def _list_templates() -> int:
    from ..distributed.templates import TEMPLATES_DIR, template_table

    for line in template_table():
        click.echo(line)
    click.echo(f"(in {TEMPLATES_DIR}; --template also takes a path to a .toml file)", err=True)
    return 0
