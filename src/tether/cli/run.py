"""`tether run OP [k=v ...]`: run an operation of the project file (one run or a batch);
`tether run --restart RUN`: continue a run of one in its own folder."""

from __future__ import annotations

from typing import Any

import click

from .executor_options import executor_options, requested
from .ophelp import OpHelpCommand
from .search import search_options


@click.command(cls=OpHelpCommand, context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("op", required=False, metavar="OP")
@click.argument("flags", nargs=-1, metavar="[FLAG=VALUE]...")
@click.option("--label", metavar="TEXT", help="Label the run (each trial of a batch).")
@click.option("--tag", "tags", multiple=True, metavar="TAG", help="Tag the run (repeatable).")
@click.option(
    "--preview",
    is_flag=True,
    help="Show the command, config, sources, dependencies (and trials); run nothing.",
)
@click.option(
    "--needed",
    is_flag=True,
    help="Skip a run whose config, code and data match a completed run.",
)
@click.option("--batch", "batch_file", metavar="FILE", help="Trials from a CSV, JSON or YAML file.")
@click.option("--random", "random_mode", is_flag=True, help="Sample trials instead of a grid.")
@click.option(
    "-m", "--multirun", is_flag=True, help="Read Hydra's sweeps too: lr=0.1,0.01 n=range(3)."
)
@click.option(
    "--max-runs",
    type=int,
    metavar="N",
    help="Trials to sample with --random (default 20), or the first N of a grid.",
)
@click.option("--seed", type=int, metavar="S", help="Seed of --random (recorded either way).")
@click.option("-y", "--yes", is_flag=True, help="Start a batch without asking.")
@click.option(
    "--secret",
    "secrets",
    multiple=True,
    metavar="KEY",
    help="Record the value of flag KEY redacted (repeatable; see docs/reproducibility.md).",
)
@click.option(
    "--restart",
    metavar="RUN",
    help="Continue RUN (failed, terminated or unknown) in its own folder, as its next attempt.",
)
@executor_options
@search_options
@click.pass_context
def run(
    ctx: click.Context,
    op: str | None,
    flags: tuple[str, ...],
    label: str | None,
    tags: tuple[str, ...],
    preview: bool,
    needed: bool,
    batch_file: str | None,
    random_mode: bool,
    multirun: bool,
    max_runs: int | None,
    seed: int | None,
    yes: bool,
    secrets: tuple[str, ...],
    restart: str | None,
) -> int:
    """Run operation OP of tether.toml with its flags set by FLAG=VALUE words.

    Values are typed like YAML (0.1, true, adam, [1, 2]) and must fit the flag's default. A list,
    range(a,b), linspace(a,b,n) or logspace(a,b,n) value makes a batch: one trial per
    combination; with --random, uniform(a,b), loguniform(a,b) and choice(...) are sampled.

    The run folder gets the op's source code and dependencies, the command runs there, its output
    goes to the console and output.log, and `key: value` scalars it prints become metrics.
    Exits with the op's exit code.

    --restart RUN runs RUN's command again in RUN's folder, with the flags it recorded: the same
    run id and folder, one more attempt in its state; History there resumes after the last step
    the run recorded.
    """
    from ..errors import TetherError, did_you_mean
    from ..project.script import load_for_run
    from .main import store_from

    project = load_for_run(op)  # a project file's, or a script's own (`tether run train.py`)
    for warning in project.warnings:
        click.echo(f"tether: warning: {warning}", err=True)
    if secrets:
        import os

        from ..capture.secrets import check_key_names, policy

        project.secrets += check_key_names(secrets, "--secret")
        # Every record this command makes, here and in the processes it starts (workers of a
        # batch, the op's command), redacts the same keys.
        os.environ.update(policy(project.secrets).env())
    if restart is not None:
        return _restart(ctx, project, restart, op, flags)
    names = sorted(project.ops)
    if op and "=" in op and op not in project.ops:  # `tether run name=Mike`: the default op's
        flags, op = (op, *flags), None
    default = project.default_op()
    if not op and default is not None:  # gage's `default = true`
        op = default.name
    if not op:
        raise TetherError(
            "give the operation to run: tether run OP [FLAG=VALUE ...]",
            f"operations: {', '.join(names)}" if names else f"{project.path} has no operations",
        )
    if op not in project.ops:
        hint = did_you_mean(op, names)
        raise TetherError(
            f"no operation {op!r} in {_shown_path(project.path)}"
            + (f" (did you mean {hint!r}?)" if hint else ""),
            f"operations: {', '.join(names)}" if names else "the project has no operations",
        )
    opdef = project.ops[op]
    store = store_from(ctx)
    executors = _requested(ctx)
    from .search import requested_search, retried_search, run_search_command

    searched = requested_search(ctx)
    if searched.any or searched.resume or retried_search(store, executors.retry_failed):
        kw = {"seed": seed, "label": label, "tags": tags, "executors": executors}
        return run_search_command(project, opdef, store, flags, request=searched, **kw)
    if executors.retry_failed:  # the failed or missing trials of an earlier batch
        from ..batches.ops import retry_op_batch

        return retry_op_batch(
            project,
            opdef,
            store,
            executors.retry_failed,
            executor=executors.executor,
            n_jobs=executors.n_jobs,
            slurm_config=executors.slurm_config,
            label=label,
            tags=tags,
        )

    from ..ops.batch import expand
    from ..ops.flags import parse_flags

    spec = parse_flags(opdef, flags, multirun=multirun)
    batch = expand(
        opdef,
        spec,
        batch_file=batch_file,
        random_mode=random_mode,
        max_runs=max_runs,
        seed=seed,
        confirmed=yes,
        shown=PREVIEW_TRIALS if preview else None,
    )
    needed = needed or opdef.needed
    if preview:
        return _preview(project, opdef, spec, batch, store)
    if batch is None:
        return _single(project, opdef, spec.fixed, store, label, tags, needed)
    if not yes and _interactive():
        click.confirm(f"Run {batch.total} trials of {op}?", default=True, abort=True, err=True)
    command = ["tether", "run", op, *flags, *(w for k in secrets for w in ("--secret", k))]
    if label:
        command += ["--label", label]
    for tag in tags:
        command += ["--tag", tag]
    if batch_file:
        command += ["--batch", batch_file]
    if random_mode:
        command += ["--random", "--seed", str(batch.spec["seed"])]
    if max_runs is not None:
        command += ["--max-runs", str(max_runs)]
    if needed:
        command.append("--needed")
    return _batch(project, opdef, batch, store, label, tags, needed, command)


def _restart(
    ctx: click.Context, project: Any, spec: str, op: str | None, flags: tuple[str, ...]
) -> int:
    from ..errors import TetherError
    from ..ops.restart import restart_trial, restartable
    from .main import store_from

    if op is not None and "=" in op:  # `tether run --restart RUN lr=0.1`: a flag, not an op
        flags, op = (op, *flags), None
    if flags:
        raise TetherError(
            f"--restart continues a run with the flags it recorded, not with {flags[0]!r}",
            "drop the FLAG=VALUE words (or start a new run: tether run OP FLAG=VALUE ...)",
        )
    store = store_from(ctx)
    record = store.resolve_one(spec)
    if op is not None and op != record.name:
        raise TetherError(
            f"run {record.id[:13]} is a run of {record.name!r}, not of {op!r}",
            f"tether run --restart {record.id[:13]} (the run knows its operation)",
        )
    opdef = restartable(project, record)
    state = record.state
    attempt = len(state.attempts) + 1 + (0 if state.attempts or not state.started else 1)
    click.echo(
        f"tether: run {record.id[:13]} ({record.name}): attempt {attempt}, in {record.dir}",
        err=True,
    )
    return _report(restart_trial, (project, opdef, store, record), {}, [record.id])


def _report(call: Any, args: tuple[Any, ...], kwargs: dict[str, Any], started: list[str]) -> int:
    """Run one trial (`call`) and say how it ended; its exit code."""
    from ..session.exits import Terminated

    try:
        result = call(*args, **kwargs)
    except (KeyboardInterrupt, Terminated) as exc:
        which = f"run {started[0][:13]}" if started else "the run"
        click.echo(f"\ntether: {which} terminated ({type(exc).__name__})", err=True)
        return 130 if isinstance(exc, KeyboardInterrupt) else 143
    if result.status == "skipped":
        click.echo(
            f"tether: skipped: run {str(result.twin)[:13]} already completed with the same "
            "config, code and data (--needed)",
            err=True,
        )
        return 0
    short = str(result.run_id)[:13]
    if result.status == "failed":
        click.echo(f"tether: run {short} failed (exit {result.exit_code})", err=True)
        return int(result.exit_code or 1)
    click.echo(f"tether: run {short} {result.status}", err=True)
    return 0


def _requested(ctx: click.Context | None = None) -> Any:
    return requested(ctx)


def _interactive() -> bool:
    import sys

    try:
        return sys.stdin.isatty()
    except (AttributeError, ValueError):
        return False


def _shown_path(path: Any) -> str:
    from ..project.messages import display_path

    return display_path(path)


def _single(
    project: Any,
    op: Any,
    flags: dict[str, Any],
    store: Any,
    label: str | None,
    tags: tuple[str, ...],
    needed: bool,
) -> int:
    from ..ops.exec import check, plan_trial, run_trial

    plan = plan_trial(project, op, flags, store)
    check(plan)
    started: list[str] = []

    def on_start(run_id: str) -> None:
        started.append(run_id)
        click.echo(f"tether: run {run_id[:13]} ({op.name}) in {store.run_dir(run_id)}", err=True)

    kwargs = {"label": label, "tags": tags, "needed": needed, "on_start": on_start}
    return _report(run_trial, (plan, store), kwargs, started)


def _batch(
    project: Any,
    op: Any,
    batch: Any,
    store: Any,
    label: str | None,
    tags: tuple[str, ...],
    needed: bool,
    command: list[str],
) -> int:
    from ..batches.ops import run_batch
    from ..ops.exec import check, plan_trial
    from ..ops.staging import plan_staging
    from .batch_report import TrialLines

    staging = plan_staging(project, op, store)  # one choice of upstream runs for every trial
    check(plan_trial(project, op, batch.trials[0], store, staging))
    # A bad trial stops the batch up front (a streamed batch: its trials are planned as drawn).
    for trial in batch.trials[1:]:
        plan_trial(project, op, trial, store, staging)
    executors = _requested()
    if executors.any:  # --executor / --n-jobs / --slurm-config: the trials on an executor
        from ..batches.ops import run_op_batch

        return run_op_batch(
            project,
            op,
            batch,
            store,
            staging=staging,
            label=label,
            tags=tags,
            needed=needed,
            command=command,
            executor=executors.executor,
            n_jobs=executors.n_jobs,
            slurm_config=executors.slurm_config,
        )
    return run_batch(
        batch,
        lambda flags: plan_trial(project, op, flags, store, staging),
        store,
        root=project.root,
        op_name=op.name,
        command=command,
        report=TrialLines(store),
        label=label,
        tags=tags,
        needed=needed,
    )


# -- preview ----------------------------------------------------------------------------------
PREVIEW_TRIALS = 50  # the trials a preview shows, and all that it expands


def _preview(project: Any, op: Any, spec: Any, batch: Any, store: Any) -> int:
    from ..lock import dump_yaml
    from ..ops.exec import plan_trial
    from ..ops.flags import describe
    from ..ops.staging import plan_staging

    staging = plan_staging(project, op, store)
    flags = batch.trials[0] if batch is not None else spec.fixed
    plan = plan_trial(project, op, flags, store, staging)
    out = click.echo
    out(f"op: {op.name}  ({_shown_path(project.path)})")
    if op.description:
        out(f"  {op.description}")
    out(f"command: {plan.display}")
    out("  (in the run folder)")
    out("config:" + ("" if plan.config else " {}"))
    if plan.config:
        for line in dump_yaml(plan.config).splitlines():
            out(f"  {line}")
    sources = staging.sources
    out(f"sources: {len(sources)} file{'s' if len(sources) != 1 else ''} copied")
    for path in sources[:30]:
        out(f"  {path.dest}")
    if len(sources) > 30:
        out(f"  ... and {len(sources) - 30} more")
    for warning in staging.warnings:
        out(f"  warning: {warning}")
    out("dependencies:" + ("" if staging.deps else " none"))
    for dep in staging.deps:
        _preview_dep(dep, out)
    if plan.patterns:
        out("output scalars: " + ("key: value, key=value" if op.output_scalars is True else ""))
        if op.output_scalars is not True:
            for p in plan.patterns:
                out(f"  {p.regex.pattern}")
    else:
        out("output scalars: off")
    if batch is not None:
        n = batch.total
        out(f"batch: {n} trial{'s' if n != 1 else ''} ({batch.mode}), each a run of its own")
        for note in batch.notes:
            out(f"  {note}")
        for i, trial in enumerate(batch.trials[:PREVIEW_TRIALS], start=1):
            out(f"  {i:>3}  {describe(trial) or '(defaults)'}")
        if n > PREVIEW_TRIALS:
            out(f"  ... and {n - PREVIEW_TRIALS} more")
    errors = staging.errors()
    out("nothing was run (--preview)")
    if errors:
        raise errors[0]
    return 0


def _preview_dep(dep: Any, out: Any) -> None:
    d = dep.dep
    what = [d.type]
    if d.op:
        what.append(f"op={d.op}")
    if d.where:
        what.append(f"where={d.where!r}")
    if d.files:
        what.append("files=" + ",".join(d.files))
    out(f"  {dep.key_path}: {' '.join(what)}")
    if dep.error is not None:
        out(f"    error: {dep.error}")
        return
    if d.type == "run-files" and dep.upstream:
        row = dep.upstream[0]
        out(f"    upstream: run {row.id[:13]} ({row.name}, {row.status}) as stage {dep.stage}")
    if d.type == "runs-summary":
        out(f"    {len(dep.upstream)} run(s) summarised into {dep.summary_file}")
    for path in dep.paths[:20]:
        out(f"    link {path.dest} -> {path.source}")
    if len(dep.paths) > 20:
        out(f"    ... and {len(dep.paths) - 20} more")
